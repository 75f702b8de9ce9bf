//! `jitgate resource check` against the machine's real PostgreSQL.

mod common;

use std::process::Command;

use common::{BIN, psql};

/// Short, so `{name}_` is a valid role prefix (at most 12 characters).
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{:x}",
        (std::process::id() ^ rand_tail()) & 0xffffff
    )
}

fn rand_tail() -> u32 {
    std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map(|d| d.subsec_nanos())
        .unwrap_or_default()
}

/// Whether this PostgreSQL lets a login in with a wrong password (trust authentication).
fn trusts_wrong_passwords(db: &str, role: &str) -> bool {
    psql(db, &format!("CREATE ROLE {role}_t LOGIN PASSWORD 'right'")).unwrap();
    let ok = Command::new(jitgate_testkit::psql())
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-U",
            &format!("{role}_t"),
            "-d",
            db,
            "-c",
            "select 1",
        ])
        .env("PGPASSWORD", "wrong")
        .output()
        .unwrap()
        .status
        .success();
    psql(db, &format!("DROP ROLE {role}_t")).unwrap();
    ok
}

#[test]
fn resource_check_names_the_role_that_exposes_a_masked_column_and_fails() {
    if psql("postgres", "select 1").is_none() {
        assert!(
            std::env::var("JITGATE_REQUIRE_SERVICES").is_err(),
            "PostgreSQL is unreachable"
        );
        eprintln!("SKIPPED: PostgreSQL is unreachable");
        return;
    }
    let db = unique("jgrc");
    let reader = format!("{db}_read");
    psql("postgres", &format!("CREATE DATABASE {db}")).unwrap();
    psql(
        &db,
        &format!(
            "CREATE TABLE customers (id int, email text); CREATE ROLE {reader} NOLOGIN; GRANT SELECT ON customers TO {reader};"
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_with(
        dir.path(),
        common::free_port(),
        &format!(
            r#"
[[resources]]
name = "crm"
kind = "postgres"
admin_url = "postgres://postgres@127.0.0.1:5432/{db}"
role_prefix = "{db}_"
[resources.roles.read]
grants = ["{reader}"]

[[masking]]
name = "pii"
resources = ["crm"]
columns = ["public.customers.email"]
strategy = "redact"
"#
        ),
    );
    let check = || {
        Command::new(BIN)
            .args(["resource", "check", "crm", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let exposed = check();
    let text = String::from_utf8_lossy(&exposed.stdout);
    assert_eq!(
        exposed.status.code(),
        Some(1),
        "{text} {}",
        String::from_utf8_lossy(&exposed.stderr)
    );
    assert!(
        text.contains(&format!("target role {reader} can read"))
            && text.contains("public.customers.email"),
        "{text} {}",
        String::from_utf8_lossy(&exposed.stderr)
    );
    psql(&db, &format!("REVOKE SELECT ON customers FROM {reader}")).unwrap();
    let trusted = trusts_wrong_passwords(&db, &db);
    let fixed = check();
    let text = String::from_utf8_lossy(&fixed.stdout);
    assert!(!text.contains("can read"), "{text}");
    assert_eq!(
        fixed.status.code(),
        Some(if trusted { 1 } else { 0 }),
        "{text}"
    );
    assert_eq!(text.contains("error: authentication"), trusted, "{text}");
    psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
    psql("postgres", &format!("DROP ROLE {reader}"));
}
