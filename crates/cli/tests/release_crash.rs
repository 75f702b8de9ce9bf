//! A `jitgate serve` killed with SIGKILL right after a release was recorded: the grant's login
//! was disabled before the release was, and a restarted server ends the grant before it serves.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The grant's state as the server's database records it.
fn state_of(dir: &std::path::Path, grant: &str) -> String {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("data/jitgate.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row(
        "SELECT state FROM requests WHERE grant_id = ?1",
        [grant],
        |r| r.get(0),
    )
    .unwrap()
}

/// Whether a login with this connection string works.
fn login_works(dsn: &str) -> bool {
    Command::new(jitgate_testkit::psql())
        .args(["-X", "-q", "-At", "-c", "SELECT 1", dsn])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_release_recorded_before_a_kill_9_never_leaves_a_working_login() {
    if psql("postgres", "SELECT 1").is_none() {
        assert!(
            std::env::var("JITGATE_REQUIRE_SERVICES").is_err(),
            "PostgreSQL is not reachable at 127.0.0.1:5432"
        );
        eprintln!("SKIPPED: PostgreSQL is not reachable");
        return;
    }
    let tag = format!("jgr{}", std::process::id());
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
        &format!("CREATE ROLE {tag}_rw; GRANT CREATE ON SCHEMA public TO {tag}_rw"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config_with(
        dir.path(),
        port,
        &format!(
            r#"
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
    let grant = r["grant_id"].as_str().unwrap().to_owned();
    let creds = server.json("ci-bot", &["credentials", &grant]);
    let dsn = creds["dsn"].as_str().unwrap().to_owned();
    let login = creds["username"].as_str().unwrap().to_owned();
    // The login owns a table; while another session reads it, the revocation's REASSIGN OWNED
    // waits, which holds the grant in `revoking` long enough to kill the server there.
    let made = Command::new(jitgate_testkit::psql())
        .args(["-X", "-q", "-c", "CREATE TABLE mine (x int)", &dsn])
        .status()
        .unwrap();
    assert!(made.success());
    let mut reader = Command::new(jitgate_testkit::psql())
        .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", &tag])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut hold = reader.stdin.take().unwrap();
    writeln!(hold, "BEGIN; LOCK TABLE mine IN ACCESS SHARE MODE;").unwrap();
    hold.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(login_works(&dsn), "the login works before the release");

    let mut release = Command::new(BIN)
        .args(["grant", "release", &grant])
        .env("JITGATE_URL", &server.url)
        .env("JITGATE_TOKEN", "tok-ci-bot")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let asked = Instant::now();
    while state_of(dir.path(), &grant) != "revoking" {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "the release was never recorded"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    let _ = release.kill();
    let _ = release.wait();

    assert_eq!(state_of(dir.path(), &grant), "revoking");
    assert!(
        !login_works(&dsn),
        "the release was recorded, so its login must already be disabled while jitgate is down"
    );
    // Let the revocation through, then restart: the grant ends before the server serves.
    writeln!(hold, "COMMIT;").unwrap();
    drop(hold);
    let _ = reader.wait();
    let server = Server::start(&cfg, port);
    assert_eq!(
        state_of(dir.path(), &grant),
        "released",
        "a restarted server ends a revoking grant first"
    );
    assert_eq!(
        psql(
            &tag,
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{login}'")
        )
        .as_deref(),
        Some("0"),
        "the login is dropped"
    );
    drop(server);
    cleanup();
}
