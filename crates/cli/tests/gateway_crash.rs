//! A durable gateway killed with SIGKILL in the middle of a write workload: after the restart,
//! every statement that ran in PostgreSQL is in the audit log, and the chain verifies.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn durable_statements_that_ran_survive_a_kill_9() {
    if psql("postgres", "SELECT 1").is_none() {
        assert!(
            std::env::var("JITGATE_REQUIRE_SERVICES").is_err(),
            "PostgreSQL is not reachable at 127.0.0.1:5432"
        );
        eprintln!("SKIPPED: PostgreSQL is not reachable");
        return;
    }
    // Short: the resource's role prefix (`{tag}_`) may have at most 12 characters.
    let tag = format!("jgk{}", std::process::id());
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
    psql(
        &tag,
        &format!("CREATE TABLE t (id int); CREATE ROLE {tag}_rw; GRANT INSERT ON t TO {tag}_rw"),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (port, gateway) = (free_port(), free_port());
    let cfg = config_with(
        dir.path(),
        port,
        &format!(
            r#"
[gateway.postgres]
listen = "127.0.0.1:{gateway}"
audit = "durable"

[[resources]]
name = "crash-db"
kind = "postgres"
admin_url = "postgres://postgres@127.0.0.1:5432/{tag}"
role_prefix = "{tag}_"
[resources.roles.rw]
grants = ["{tag}_rw"]

[[policies]]
name = "crash"
principals = ["service:ci-bot"]
resources = ["crash-db"]
roles = ["rw"]
max_duration = "10m"
[policies.approval]
required = 0
"#
        ),
    );
    let server = Server::start(&cfg, port);
    let r = server.json(
        "ci-bot",
        &[
            "request",
            "create",
            "--resource",
            "crash-db",
            "--role",
            "rw",
            "--duration",
            "10m",
        ],
    );
    assert_eq!(r["state"], "active", "{r}");

    let script = dir.path().join("insert.sql");
    std::fs::write(&script, "INSERT INTO t VALUES (1);\n").unwrap();
    let mut load = Command::new(jitgate_testkit::pgbench())
        .args(["-n", "-c", "4", "-j", "2", "-T", "20", "-f"])
        .arg(&script)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &gateway.to_string(),
            "-U",
            "ci-bot",
        ])
        .arg("crash-db")
        .env("PGPASSWORD", "tok-ci-bot")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbench runs");
    std::thread::sleep(Duration::from_secs(3));
    server.kill9();
    let _ = load.wait();

    let ran: i64 = psql(&tag, "SELECT count(*) FROM t")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ran > 0, "no statement ran before the kill");
    let audited = || -> i64 {
        let db = rusqlite::Connection::open(dir.path().join("data/jitgate.db")).unwrap();
        db.query_row(
            "SELECT count(*) FROM audit_events e JOIN audit_payloads p USING (seq)
             WHERE e.action = 'session.statement' AND p.body LIKE '%INSERT INTO t VALUES (1)%'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let chained_at_kill = audited();
    // The restart takes in what the intake journal held before it serves anything.
    let server = Server::start(&cfg, port);
    drop(server);
    let audited = audited();
    eprintln!(
        "{ran} inserts ran; {chained_at_kill} were in the chain at the kill, {audited} after the restart"
    );
    // A statement is audited before it is forwarded, so some audited ones may not have run.
    assert!(audited >= ran, "{ran} inserts ran, {audited} were audited");
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    cleanup();
}
