//! `jitgate connect` through the gateway with a short-lived password, never the API token.

mod common;

use std::process::Command;

use common::*;

#[test]
fn connect_uses_a_short_lived_password_and_never_the_api_token() {
    if psql("postgres", "SELECT 1").is_none() {
        assert!(
            std::env::var("JITGATE_REQUIRE_SERVICES").is_err(),
            "PostgreSQL is not reachable at 127.0.0.1:5432"
        );
        eprintln!("SKIPPED: PostgreSQL is not reachable");
        return;
    }
    let tag = format!("jgc{}", std::process::id());
    let cleanup = || {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {tag} WITH (FORCE)"),
        );
        let roles = psql(
            "postgres",
            &format!("SELECT rolname FROM pg_roles WHERE rolname LIKE '{tag}\\_%'"),
        )
        .unwrap_or_default();
        for r in roles.lines() {
            psql("postgres", &format!("DROP ROLE IF EXISTS \"{r}\""));
        }
    };
    cleanup();
    psql("postgres", &format!("CREATE DATABASE {tag}")).unwrap();
    psql(&tag, &format!("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2); CREATE ROLE {tag}_r; GRANT SELECT ON t TO {tag}_r")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, gateway) = (free_port(), free_port());
    let cfg = config_with(
        dir.path(),
        port,
        &format!(
            r#"
[gateway.postgres]
listen = "127.0.0.1:{gateway}"

[[resources]]
name = "pg-db"
kind = "postgres"
admin_url = "postgres://postgres@127.0.0.1:5432/{tag}"
role_prefix = "{tag}_"
[resources.roles.r]
grants = ["{tag}_r"]

[[policies]]
name = "pg"
principals = ["service:ci-bot"]
resources = ["pg-db"]
roles = ["r"]
max_duration = "10m"
[policies.approval]
required = 0
"#
        ),
    );
    let server = Server::start(&cfg, port);
    let none = server.cli("ci-bot", &["connect", "pg-db"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no active grant on pg-db"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    server.json(
        "ci-bot",
        &[
            "request",
            "create",
            "--resource",
            "pg-db",
            "--role",
            "r",
            "--duration",
            "10m",
        ],
    );
    let c = server.json("ci-bot", &["connect", "pg-db"]);
    let (dsn, password) = (c["dsn"].as_str().unwrap(), c["password"].as_str().unwrap());
    assert!(!dsn.contains("tok-ci-bot"), "no API token in {dsn}");
    assert!(
        password.starts_with("jgp_") && dsn.contains(password),
        "{c}"
    );
    // The printed password works with psql (given through PGPASSWORD, as a user would).
    let out = Command::new(jitgate_testkit::psql())
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            &gateway.to_string(),
            "-U",
            "ci-bot",
            "-d",
            "pg-db",
        ])
        .args(["-c", "SELECT count(*) FROM t"])
        .env("PGPASSWORD", password)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --exec runs psql with a fresh one in its environment, never on its command line.
    let out = server.cli(
        "ci-bot",
        &[
            "connect",
            "pg-db",
            "--exec",
            "--",
            "-X",
            "-At",
            "-c",
            "SELECT count(*) FROM t",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = server.cli("ci-bot", &["connect", "pg-db"]);
    let printed = String::from_utf8_lossy(&table.stdout);
    assert!(
        printed.contains(":jgp_") && !printed.contains("tok-"),
        "{printed}"
    );
    drop(server);
    cleanup();
}
