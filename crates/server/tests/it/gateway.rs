//! The gateway with real clients (tokio-postgres, psql, pgbench) against the real PostgreSQL.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, TryStreamExt};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::services::PgDb;

async fn setup() -> Option<(PgDb, TestApp)> {
    setup_with("").await
}

/// Like `setup`, with `gateway` added to the `[gateway.postgres]` section.
async fn setup_with(gateway: &str) -> Option<(PgDb, TestApp)> {
    let mut db = PgDb::create().await?;
    let (read, write) = (format!("{}read", db.prefix), format!("{}write", db.prefix));
    db.role(
        &read,
        &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {read};"),
    )
    .await;
    db.role(&write, &format!("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {write}; GRANT CREATE ON SCHEMA public TO {write};")).await;
    let config = format!(
        r#"
[gateway.postgres]
listen = "127.0.0.1:0"
{gateway}

[[resources]]
name = "orders-db"
kind = "postgres"
admin_url = "{url}"
role_prefix = "{prefix}"
[resources.roles.read]
grants = ["{read}"]
[resources.roles.write]
grants = ["{write}"]

[[policies]]
name = "read"
principals = ["group:engineering"]
resources = ["orders-db"]
roles = ["read"]
max_duration = "1h"
[policies.approval]
approvers = ["group:dba"]

[[policies]]
name = "ci"
principals = ["service:ci-bot"]
resources = ["orders-db"]
roles = ["read", "write"]
max_duration = "1h"
[policies.approval]
required = 0
"#,
        url = db.admin_url,
        prefix = db.prefix,
    );
    let app = TestApp::start(&config).await;
    Some((db, app))
}

/// Like `setup_with(masking)`, for the gateway's own masking layer alone: orders-db is served
/// through one shared upstream login (`provisioning = "none"`), the `{prefix}write` role, so no
/// masked views are made in the database and the login reads the raw columns. (With per-grant
/// logins PostgreSQL would mask first, and a role reading raw columns would not be activated.)
async fn setup_gateway_masking(masking: &str) -> Option<(PgDb, TestApp)> {
    let mut db = PgDb::create().await?;
    let write = format!("{}write", db.prefix);
    db.role(
        &write,
        &format!(
            "ALTER ROLE {write} LOGIN PASSWORD 's3cret'; GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {write}; GRANT CREATE ON SCHEMA public TO {write};"
        ),
    )
    .await;
    let config = format!(
        r#"
[gateway.postgres]
listen = "127.0.0.1:0"
{masking}

[[resources]]
name = "orders-db"
kind = "postgres"
provisioning = "none"
upstream_url = "postgres://{write}:s3cret@127.0.0.1:5432/{name}"
[resources.roles.write]

[[policies]]
name = "ci"
principals = ["service:ci-bot"]
resources = ["orders-db"]
roles = ["write"]
max_duration = "1h"
[policies.approval]
required = 0
"#,
        name = db.name,
    );
    let app = TestApp::start(&config).await;
    Some((db, app))
}

fn conninfo(app: &TestApp, who: &str) -> String {
    format!(
        "host=127.0.0.1 port={} dbname=orders-db user={who} password=tok-{who}",
        app.gateway_port()
    )
}

async fn connect(
    app: &TestApp,
    who: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    crate::services::pg_connect(&conninfo(app, who)).await
}

async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let (_, v) = app
        .get("root", &format!("/api/v1/audit/events?{query}&limit=1000"))
        .await;
    v.as_array().unwrap().clone()
}

/// The statement outcomes inside `session.results` events.
fn outcomes(batches: &[Value]) -> Vec<Value> {
    batches
        .iter()
        .flat_map(|b| {
            b["details"]["results"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// ci-bot's `write` grant on orders-db, auto-approved by the `ci` policy.
async fn write_grant(app: &TestApp) -> Value {
    app.request(
        "ci-bot",
        json!({"resource": "orders-db", "role": "write", "duration": "10m"}),
    )
    .await
}

/// Polls the audit log until `pred` holds on the matching events.
async fn wait_events(app: &TestApp, query: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let ev = events(app, query).await;
        if pred(&ev) {
            return ev;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "events for {query} never matched: {ev:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn clients_work_through_the_gateway_and_every_statement_is_audited() {
    let Some((_db, app)) = setup().await else {
        return;
    };
    let r = write_grant(&app).await;
    let grant = r["grant_id"].as_str().unwrap().to_owned();
    let c = connect(&app, "ci-bot").await.unwrap();

    // simple protocol, several statements in one message
    let rows = c
        .simple_query("SELECT count(*) FROM orders; SELECT 1")
        .await
        .unwrap();
    assert!(
        rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("2"))
        )
    );
    // extended protocol with parameters
    let item: String = c
        .query_one("SELECT item FROM orders WHERE id = $1", &[&2i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(item, "lamp");
    // pipelined: three statements in flight at once
    let (a, b, d) = tokio::join!(
        c.query_one("SELECT $1::int + 1", &[&1i32]),
        c.query_one("SELECT $1::text", &[&"x"]),
        c.query_one("SELECT count(*) FROM orders", &[])
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 2);
    assert_eq!(b.unwrap().get::<_, String>(0), "x");
    assert_eq!(d.unwrap().get::<_, i64>(0), 2);
    // COPY in and out
    let sink = c
        .copy_in("COPY orders (id, item) FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"10\tpen\n11\tink\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    let out: Vec<bytes::Bytes> = c
        .copy_out("COPY orders TO STDOUT")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let text: String = out
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(text.contains("11\tink"), "{text}");
    // large rows pass through whole
    let big: String = c
        .query_one("SELECT repeat('x', 5000000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 5_000_000);
    // errors come back as they are
    let e = c
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
    );
    // cancel: the client's cancel key reaches the upstream backend
    let token = c.cancel_token();
    let sleeper =
        tokio::spawn(async move { c.simple_query("SELECT pg_sleep(20)").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), sleeper)
        .await
        .expect("cancel took effect")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );

    let statements = wait_events(
        &app,
        &format!("grant={grant}&action=session.statement"),
        |e| e.len() >= 9,
    )
    .await;
    let sqls: Vec<&str> = statements
        .iter()
        .map(|e| e["details"]["sql"].as_str().unwrap())
        .collect();
    assert!(
        sqls.contains(&"SELECT count(*) FROM orders; SELECT 1"),
        "{sqls:?}"
    );
    let by_param = statements
        .iter()
        .find(|e| e["details"]["sql"] == "SELECT item FROM orders WHERE id = $1")
        .unwrap();
    assert_eq!(
        by_param["details"]["params"],
        json!(["<binary 4 bytes>"]),
        "binary parameters are recorded by size"
    );
    assert!(statements.iter().all(|e| {
        e["session_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("ses_"))
            && e["actor"] == "ci-bot"
    }));
    // Outcomes arrive in batches (session.results), at most a second late.
    let batches = wait_events(
        &app,
        &format!("grant={grant}&action=session.results"),
        |e| outcomes(e).iter().any(|r| r["sqlstate"] == "42P01"),
    )
    .await;
    let results = outcomes(&batches);
    assert!(
        results.iter().any(|r| r["sqlstate"] == "57014"),
        "the cancelled statement's outcome"
    );
    assert!(results.iter().any(|r| r["tag"] == "COPY 2"));
    assert!(
        results
            .iter()
            .any(|r| r["statement"] == 1 && r["tags"] == json!(["SELECT 1", "SELECT 1"])),
        "{results:?}"
    );
    assert!(
        batches.iter().any(|b| b["outcome"] == "failure"),
        "a batch with a failed statement says so"
    );
    assert_eq!(
        events(&app, &format!("grant={grant}&action=session.opened"))
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // psql and pgbench block this thread
async fn psql_and_pgbench_work_through_the_gateway() {
    let Some((db, app)) = setup().await else {
        return;
    };
    let init = Command::new(jitgate_testkit::pgbench())
        .args(["-i", "-s", "1", "-q", &db.admin_url])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    db.exec(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}read",
        db.prefix
    ))
    .await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
        )
        .await;
    assert_eq!(r["state"], "active");
    let psql = Command::new(jitgate_testkit::psql())
        .args([
            "-X",
            "-At",
            "-c",
            "SELECT count(*) FROM orders",
            &conninfo(&app, "ci-bot"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    for mode in ["simple", "extended", "prepared"] {
        let out = Command::new(jitgate_testkit::pgbench())
            .args([
                "-n",
                "-S",
                "-M",
                mode,
                "-c",
                "2",
                "-j",
                "1",
                "-t",
                "50",
                &conninfo(&app, "ci-bot"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("number of failed transactions: 0"),
            "{mode}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let statements = wait_events(
        &app,
        &format!(
            "grant={}&action=session.statement",
            r["grant_id"].as_str().unwrap()
        ),
        |e| e.len() >= 300,
    )
    .await;
    assert!(
        statements
            .iter()
            .any(|e| e["details"]["protocol"] == "extended" && e["details"]["params"].is_array())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // raw std sockets block this thread
async fn refusals_are_clean_errors() {
    let Some((_db, app)) = setup().await else {
        return;
    };
    // wrong token
    let e = crate::services::pg_connect(&format!(
        "host=127.0.0.1 port={} dbname=orders-db user=alice password=nope",
        app.gateway_port()
    ))
    .await
    .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{e}"
    );
    // someone else's token
    let e = crate::services::pg_connect(&format!(
        "host=127.0.0.1 port={} dbname=orders-db user=alice password=tok-bob",
        app.gateway_port()
    ))
    .await
    .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD)
    );
    // no active grant: the message says how to ask for one
    let e = connect(&app, "alice").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    );
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(
        msg.contains("no active grant on orders-db")
            && msg.contains("jitgate request create --resource orders-db"),
        "{msg}"
    );
    // unknown resource
    let e = crate::services::pg_connect(&format!(
        "host=127.0.0.1 port={} dbname=nope user=alice password=tok-alice",
        app.gateway_port()
    ))
    .await
    .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
    );
    let refused = wait_events(&app, "action=session.refused", |e| e.len() >= 4).await;
    assert!(
        refused.iter().all(|e| e["outcome"] == "denied"
            && e["actor"].as_str().unwrap().ends_with("(unauthenticated)"))
    );

    // Garbage, truncated and oversized input: a clean close or error, never a hang or a panic.
    let port = app.gateway_port();
    let raw = |bytes: &[u8]| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    let garbage = raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(garbage.is_empty() || garbage[0] == b'E', "{garbage:?}");
    let truncated = raw(&[0, 0, 0, 40, 0, 3, 0, 0, b'u']);
    assert!(
        truncated.is_empty() || truncated[0] == b'E',
        "a truncated startup is closed: {truncated:?}"
    );
    let answer = raw(&0x7fff_ffffi32.to_be_bytes());
    assert!(
        answer.first() == Some(&b'E'),
        "an absurd length is refused: {answer:?}"
    );
    // the gateway still serves after all that
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
        )
        .await;
    assert_eq!(r["state"], "active");
    assert!(connect(&app, "ci-bot").await.is_ok());
}

#[tokio::test]
async fn sessions_are_cut_within_a_second_of_expiry_even_mid_query() {
    let Some((db, app)) = setup().await else {
        return;
    };
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "3s"}),
        )
        .await;
    let expires: jiff::Timestamp = r["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    let idle = connect(&app, "ci-bot").await.unwrap();
    let busy = connect(&app, "ci-bot").await.unwrap();
    let running = tokio::spawn(async move {
        let e = busy.simple_query("SELECT pg_sleep(30)").await.unwrap_err();
        (e, jitgate_core::Clock::now(&jitgate_core::SystemClock))
    });
    let start = Instant::now();
    let idle_cut = loop {
        if let Err(e) = idle.simple_query("SELECT 1").await {
            break (e, jitgate_core::Clock::now(&jitgate_core::SystemClock));
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never cut");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let busy_cut = running.await.unwrap();
    for (what, (e, at)) in [("idle", idle_cut), ("mid-query", busy_cut)] {
        let lag = at.duration_since(expires);
        assert!(
            lag < jiff::SignedDuration::from_secs(1),
            "{what} session cut {lag:?} after the end"
        );
        if let Some(db_err) = e.as_db_error() {
            assert_eq!(
                db_err.code(),
                &tokio_postgres::error::SqlState::ADMIN_SHUTDOWN,
                "{what}"
            );
            assert!(db_err.message().contains("expired"), "{}", db_err.message());
        }
    }
    app.wait_state(r["id"].as_str().unwrap(), "expired", Duration::from_secs(5))
        .await;
    // Nothing is left running upstream under the grant's login.
    let like = format!("{}%", db.prefix);
    let left = db
        .query_one_opt(
            "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE $1",
            &like,
        )
        .await
        .unwrap();
    assert_eq!(left.get::<_, i64>(0), 0);
    let closed = wait_events(
        &app,
        &format!(
            "grant={}&action=session.closed",
            r["grant_id"].as_str().unwrap()
        ),
        |e| e.len() >= 2,
    )
    .await;
    assert!(
        closed
            .iter()
            .all(|e| e["details"]["reason"].as_str().unwrap().contains("expired")),
        "{closed:?}"
    );
}

/// Users ask to extend a grant without dropping their sessions: an open session lives on past
/// the grant's first end, a new one can still log in (the upstream login's validity moved too),
/// and both are cut at the new end.
#[tokio::test]
async fn an_extended_grant_keeps_its_sessions_until_the_new_end() {
    let Some((_db, app)) = setup().await else {
        return;
    };
    extended_grant_keeps_its_sessions(&app).await;
}

/// The same for sessions on the async gateway's session threads.
#[tokio::test]
async fn an_extended_grant_keeps_its_sessions_on_the_session_threads() {
    let Some((_db, app)) = setup_with("audit = \"async\"").await else {
        return;
    };
    extended_grant_keeps_its_sessions(&app).await;
}

async fn extended_grant_keeps_its_sessions(app: &TestApp) {
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "3s"}),
        )
        .await;
    let first_end: jiff::Timestamp = r["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    let early = connect(app, "ci-bot").await.unwrap();
    let (s, v) = app
        .post(
            "ci-bot",
            &format!("/api/v1/grants/{}/extend", r["grant_id"].as_str().unwrap()),
            json!({"duration": "4s", "reason": "still looking"}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    assert_eq!(v["extensions"][0]["state"], "approved", "{v}");
    let new_end: jiff::Timestamp = v["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(new_end.duration_since(first_end).as_secs(), 4, "{v}");

    // Past the first end, with a margin for the scheduler.
    let now = || jitgate_core::Clock::now(&jitgate_core::SystemClock);
    let past_first = first_end.duration_since(now()) + jiff::SignedDuration::from_millis(1200);
    tokio::time::sleep(past_first.try_into().unwrap_or_default()).await;
    assert!(
        now() < new_end,
        "the test ran too slowly to check between the ends"
    );
    early
        .simple_query("SELECT 1")
        .await
        .expect("a session outlives the grant's first end once it is extended");
    let late = connect(app, "ci-bot")
        .await
        .expect("a new session logs in after the first end");

    // Both are polled in turn, so each one's cut is seen when it happens.
    let start = Instant::now();
    let mut cut_at = [None, None];
    while cut_at.contains(&None) {
        for (client, at) in [&early, &late].into_iter().zip(&mut cut_at) {
            if at.is_none() && client.simple_query("SELECT 1").await.is_err() {
                *at = Some(now());
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never cut: {cut_at:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (what, at) in ["early", "late"].into_iter().zip(cut_at) {
        let lag = at.expect("cut").duration_since(new_end);
        assert!(
            lag > jiff::SignedDuration::from_millis(-50)
                && lag < jiff::SignedDuration::from_secs(1),
            "{what} session cut {lag:?} from the new end"
        );
    }
    app.wait_state(r["id"].as_str().unwrap(), "expired", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn revoking_cuts_a_running_query_at_once() {
    let Some((_db, app)) = setup().await else {
        return;
    };
    revoking_cuts_running_queries(&app).await;
}

/// Async-mode sessions run on the gateway's session threads, dealt out in turn; the grant's end
/// reaches every one of them just the same.
#[tokio::test]
async fn revoking_cuts_running_queries_on_the_session_threads() {
    let Some((_db, app)) = setup_with("audit = \"async\"").await else {
        return;
    };
    revoking_cuts_running_queries(&app).await;
}

/// Two sessions run a long query; a revoke cuts both within a second, and no new session gets in.
async fn revoking_cuts_running_queries(app: &TestApp) {
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
        )
        .await;
    let mut running = Vec::new();
    for _ in 0..2 {
        let busy = connect(app, "ci-bot").await.unwrap();
        running.push(tokio::spawn(async move {
            busy.simple_query("SELECT pg_sleep(30)").await.unwrap_err()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let (s, _) = app
        .post(
            "root",
            &format!("/api/v1/grants/{}/revoke", r["grant_id"].as_str().unwrap()),
            json!({"reason": "incident"}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK);
    for session in running {
        let e = tokio::time::timeout(Duration::from_secs(2), session)
            .await
            .expect("cut promptly")
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_else(|| e.to_string());
        assert!(msg.contains("revoked") || msg.contains("terminat"), "{msg}");
    }
    let e = connect(app, "ci-bot").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "no new sessions after revoke"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // psql blocks this thread
async fn tls_is_offered_and_used_when_configured() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = Command::new(jitgate_testkit::openssl())
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let keys = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let Some((_db, app)) = setup_with(&keys).await else {
        return;
    };
    app.request(
        "ci-bot",
        json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
    )
    .await;
    let psql = |sslmode: &str| {
        let out = Command::new(jitgate_testkit::psql())
            .args([
                "-X",
                "-c",
                "\\conninfo",
                "-c",
                "SELECT count(*) FROM orders",
                &format!("{} sslmode={sslmode}", conninfo(&app, "ci-bot")),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sslmode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let encrypted = psql("require");
    assert!(
        encrypted.contains("SSL connection (protocol: TLSv1.3"),
        "{encrypted}"
    );
    let plain = psql("disable");
    assert!(
        !plain.contains("SSL connection") && plain.contains(" 2"),
        "plain logins from loopback still work: {plain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // psql blocks this thread
async fn function_calls_without_sql_are_audited_too() {
    let Some((_db, app)) = setup().await else {
        return;
    };
    let r = write_grant(&app).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"large object content").unwrap();
    // psql's \lo_import goes through libpq's fastpath: FunctionCall messages, no SQL text.
    let out = Command::new(jitgate_testkit::psql())
        .args([
            "-X",
            "-c",
            &format!("\\lo_import '{}'", file.path().display()),
            &conninfo(&app, "ci-bot"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = wait_events(
        &app,
        &format!(
            "grant={}&action=session.statement",
            r["grant_id"].as_str().unwrap()
        ),
        |e| {
            e.iter()
                .any(|s| s["details"]["protocol"] == "function_call")
        },
    )
    .await;
    let call = calls
        .iter()
        .find(|s| s["details"]["protocol"] == "function_call")
        .unwrap();
    assert!(
        call["details"]["sql"]
            .as_str()
            .unwrap()
            .starts_with("<function call: oid "),
        "{call}"
    );
}

#[tokio::test]
async fn a_shared_upstream_login_serves_grants_without_per_grant_logins() {
    let Some(mut db) = PgDb::create().await else {
        return;
    };
    let shared = format!("{}shared", db.prefix);
    db.role(
        &shared,
        &format!(
            "ALTER ROLE {shared} LOGIN PASSWORD 's3cret'; GRANT SELECT ON orders TO {shared};"
        ),
    )
    .await;
    let config = format!(
        r#"
[gateway.postgres]
listen = "127.0.0.1:0"

[[resources]]
name = "shared-db"
kind = "postgres"
provisioning = "none"
upstream_url = "postgres://{shared}:s3cret@127.0.0.1:5432/{name}"

[resources.roles.read]

[[policies]]
name = "ci"
principals = ["service:ci-bot"]
resources = ["shared-db"]
roles = ["read"]
max_duration = "1h"
[policies.approval]
required = 0
"#,
        name = db.name,
    );
    let app = TestApp::start(&config).await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "shared-db", "role": "read", "duration": "10m"}),
        )
        .await;
    assert_eq!(r["state"], "active");
    let (s, _) = app
        .get(
            "ci-bot",
            &format!(
                "/api/v1/grants/{}/credentials",
                r["grant_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(
        s,
        reqwest::StatusCode::BAD_REQUEST,
        "no database password is ever handed out"
    );
    let url = format!(
        "host=127.0.0.1 port={} dbname=shared-db user=ci-bot password=tok-ci-bot",
        app.gateway_port()
    );
    let c = crate::services::pg_connect(&url).await.unwrap();
    let who: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, shared);
    let n: i64 = c
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let created = db.query_one_opt("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'jit%' AND shobj_description(oid, 'pg_authid') LIKE $1", &format!("%{}%", r["grant_id"].as_str().unwrap())).await.unwrap();
    assert_eq!(created.get::<_, i64>(0), 0, "nothing is created per grant");
    let (s, _) = app
        .post(
            "ci-bot",
            &format!("/api/v1/grants/{}/release", r["grant_id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK);
    assert!(
        c.query_one("SELECT 1", &[]).await.is_err(),
        "the session ends with the grant"
    );
    let e = crate::services::pg_connect(&url).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    );
}

#[tokio::test]
async fn async_auditing_still_records_every_statement() {
    let Some((_db, app)) = setup_with("audit = \"async\"").await else {
        return;
    };
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
        )
        .await;
    let c = connect(&app, "ci-bot").await.unwrap();
    for i in 0..20 {
        c.query_one("SELECT $1::int", &[&i]).await.unwrap();
    }
    let statements = wait_events(
        &app,
        &format!(
            "grant={}&action=session.statement",
            r["grant_id"].as_str().unwrap()
        ),
        |e| e.len() >= 20,
    )
    .await;
    assert!(
        statements
            .iter()
            .all(|s| s["details"]["sql"] == "SELECT $1::int")
    );
}

#[tokio::test]
async fn durable_auditing_fails_closed_when_the_log_cannot_be_written() {
    let Some((db, app)) = setup().await else {
        return;
    };
    let r = write_grant(&app).await;
    assert_eq!(r["state"], "active");
    let c = connect(&app, "ci-bot").await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    // Break the audit log from outside: the writer can no longer take events into the chain.
    let sqlite = rusqlite::Connection::open(app.data_dir().join("jitgate.db")).unwrap();
    sqlite
        .execute_batch("ALTER TABLE audit_events RENAME TO audit_events_gone")
        .unwrap();
    // A statement goes on only once its event is durable in the intake journal; when the
    // writer fails to take a record in, intake stops and every later statement is refused.
    let mut tried = Vec::new();
    let mut refusal = None;
    for id in 100..200 {
        tried.push(id);
        match c
            .simple_query(&format!("INSERT INTO orders VALUES ({id}, 'unaudited?')"))
            .await
        {
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let e = refusal.expect("the session was never refused");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string());
    assert!(
        msg.contains("audit log cannot be written") || c.is_closed(),
        "{msg}"
    );
    assert!(tried.len() < 100);
    // The refused statement never reached the database, and each one that did is durably
    // recorded: in the journal, from which the next start takes it into the chain.
    let refused = tried.last().unwrap().to_string();
    assert!(
        db.query_one_opt("SELECT 1 FROM orders WHERE id = $1::text::int", &refused)
            .await
            .is_none(),
        "an unaudited statement ran"
    );
    let journal = std::fs::read(jitgate_store::intake_path(
        &app.data_dir().join("jitgate.db"),
    ))
    .unwrap();
    let journal = String::from_utf8_lossy(&journal);
    for id in &tried[..tried.len() - 1] {
        assert!(
            journal.contains(&format!("INSERT INTO orders VALUES ({id}, 'unaudited?')")),
            "statement {id} ran but is not in the intake journal"
        );
    }
}

#[tokio::test]
async fn guardrails_block_dangerous_statements_and_the_session_goes_on() {
    let Some((db, app)) = setup_with(
        r#"
[[guardrails]]
name = "no-destruction"
resources = ["orders-db"]
roles = ["write"]
deny = ["ddl", "truncate", "update_without_where", "delete_without_where", "copy_program"]
tables = ["public.payments"]
"#,
    )
    .await
    else {
        return;
    };
    db.exec(&format!(
        "CREATE TABLE payments (id int, card text); INSERT INTO payments VALUES (1, '4111111111111111'); GRANT SELECT ON payments TO {}write",
        db.prefix
    ))
    .await;
    let r = write_grant(&app).await;
    let grant = r["grant_id"].as_str().unwrap().to_owned();
    let c = connect(&app, "ci-bot").await.unwrap();
    let blocked = |e: tokio_postgres::Error, what: &str| {
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{what}: {e:?}"
        );
        let msg = e.as_db_error().unwrap().message().to_owned();
        assert!(msg.contains("\"no-destruction\""), "{what}: {msg}");
        msg
    };

    // Simple protocol, and a hidden second statement behind a comment: nothing of it runs.
    let msg = blocked(
        c.simple_query("UPDATE orders SET item = 'gone'")
            .await
            .unwrap_err(),
        "update without where",
    );
    assert!(msg.contains("UPDATE without WHERE"), "{msg}");
    blocked(
        c.simple_query("SELECT 1; /* nothing to see */ CREATE TABLE sneaky (id int)")
            .await
            .unwrap_err(),
        "hidden DDL",
    );
    blocked(
        c.simple_query("SELECT $$;$$; -- ;\n TRUNCATE orders")
            .await
            .unwrap_err(),
        "dollar quotes and comments",
    );
    blocked(
        c.simple_query("COPY orders TO PROGRAM 'cat > /tmp/x'")
            .await
            .unwrap_err(),
        "copy program",
    );
    // Extended protocol, and a protected table reached through an alias in a join.
    blocked(
        c.execute("UPDATE orders SET item = $1", &[&"gone"])
            .await
            .unwrap_err(),
        "extended",
    );
    let msg = blocked(
        c.query(
            "SELECT o.id, p.card FROM orders o JOIN public.payments AS p ON p.id = o.id WHERE o.id = $1",
            &[&1i32],
        )
        .await
        .unwrap_err(),
        "protected table",
    );
    assert!(msg.contains("public.payments"), "{msg}");

    // The session goes on, nothing blocked ran, and what is allowed still works.
    let gone: i64 = c
        .query_one("SELECT count(*) FROM orders WHERE item = 'gone'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, 0);
    c.execute("UPDATE orders SET item = 'desk' WHERE id = 1", &[])
        .await
        .unwrap();
    let exists: bool = c
        .query_one("SELECT to_regclass('sneaky') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "the hidden CREATE TABLE ran");

    // Inside a transaction a blocked statement aborts it, as any error does.
    c.batch_execute("BEGIN; UPDATE orders SET item = 'chair' WHERE id = 2")
        .await
        .unwrap();
    blocked(
        c.batch_execute("DELETE FROM orders").await.unwrap_err(),
        "in a transaction",
    );
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
    );
    c.batch_execute("ROLLBACK").await.unwrap();

    // Pipelined: a blocked statement between two allowed ones answers in its place.
    let (a, b, d) = tokio::join!(
        c.query_one("SELECT 1::int", &[]),
        c.execute("DELETE FROM orders", &[]),
        c.query_one("SELECT 2::int", &[])
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    blocked(b.unwrap_err(), "pipelined");
    assert_eq!(d.unwrap().get::<_, i32>(0), 2);
    let rows: i64 = c
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2);

    // Each blocked statement is on record with its rule, and no SQL it hid ran.
    let ev = wait_events(
        &app,
        &format!("grant={grant}&action=session.statement&outcome=blocked"),
        |ev| ev.len() >= 8,
    )
    .await;
    assert_eq!(ev.len(), 8, "{ev:#?}");
    assert!(
        ev.iter()
            .all(|e| e["details"]["rule"] == "no-destruction"
                && e["details"]["outcome"] == "blocked")
    );
    assert!(
        ev.iter()
            .any(|e| e["details"]["sql"] == "COPY orders TO PROGRAM 'cat > /tmp/x'")
    );
}

#[tokio::test]
async fn masking_hides_sensitive_values_by_column_and_by_detector() {
    let Some((db, app)) = setup_gateway_masking(
        r#"
[[masking]]
name = "pii"
resources = ["orders-db"]
roles = ["write"]
columns = ["public.customers.email"]
strategy = "partial"
keep = 4

[[masking]]
name = "pseudonyms"
columns = ["customers.name"]
strategy = "hash"

[[masking]]
name = "cards"
detectors = ["card", "ssn"]
strategy = "redact"
"#,
    )
    .await
    else {
        return;
    };
    db.exec(&format!(
        "CREATE TABLE customers (id int PRIMARY KEY, name text, email text, note text, card_num bigint);
         INSERT INTO customers VALUES
           (1, 'Ann', 'ann@example.com', 'card 4111 1111 1111 1111', 4111111111111111),
           (2, 'Bob', NULL, 'ssn 123-45-6789', 42),
           (3, 'Ann', 'ann2@example.com', 'nothing to hide', 7);
         CREATE VIEW contacts AS SELECT id, email AS contact FROM customers;
         GRANT SELECT ON customers, contacts TO {}write",
        db.prefix
    ))
    .await;
    let r = write_grant(&app).await;
    let grant = r["grant_id"].as_str().unwrap().to_owned();
    let c = connect(&app, "ci-bot").await.unwrap();
    let simple_rows = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<Vec<Option<String>>> {
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    };
    let s = |v: &str| Some(v.to_owned());

    // Text format (simple protocol): an alias does not unmask a column, NULL stays NULL,
    // detectors mask inside free text, two statements in one Query are both masked.
    let rows = simple_rows(
        c.simple_query(
            "SELECT id, email AS e, note FROM customers WHERE id < 3 ORDER BY id; SELECT contact FROM contacts WHERE id = 3",
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        rows,
        vec![
            vec![s("1"), s("***********.com"), s("card *****")],
            vec![s("2"), None, s("ssn *****")],
            vec![s("************.com")],
        ]
    );

    // Binary format (extended protocol): the same masks; a card number held in a bigint cannot
    // carry a mask, so it is withheld; a plain number passes.
    let rows = c
        .query(
            "SELECT c.email, c.note, c.card_num FROM customers c JOIN orders o ON o.id = c.id ORDER BY c.id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].get::<_, Option<String>>(0).as_deref(),
        Some("***********.com")
    );
    assert_eq!(rows[0].get::<_, String>(1), "card *****");
    assert_eq!(rows[0].get::<_, Option<i64>>(2), None);
    assert_eq!(rows[1].get::<_, Option<i64>>(2), Some(42));

    // A value computed from a masked table has no table behind it: it is redacted (a partial
    // mask of a value the user chose what to compute from would show what they chose), or
    // withheld where the mask does not fit its type.
    let computed = c
        .query_one(
            "SELECT lower(email) AS l, email::bytea AS b, x FROM customers, (SELECT upper(email) AS x FROM customers WHERE id = 3) s WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(computed.get::<_, String>("l"), "*****");
    assert_eq!(computed.get::<_, Option<Vec<u8>>>("b"), None);
    assert_eq!(computed.get::<_, String>("x"), "*****");

    // SELECT * masks the same columns by identity.
    let star = c
        .query_one("SELECT * FROM customers WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(star.get::<_, String>("email"), "***********.com");
    assert_eq!(star.get::<_, String>("note"), "card *****");
    assert_ne!(star.get::<_, String>("name"), "Ann");

    // Hashing is deterministic, so grouping still lines up, and the names never appear.
    let groups = c
        .query(
            "SELECT name, count(*) FROM customers GROUP BY name ORDER BY 2 DESC",
            &[],
        )
        .await
        .unwrap();
    let (ann, bob): (String, String) = (groups[0].get(0), groups[1].get(0));
    assert_eq!(groups[0].get::<_, i64>(1), 2);
    assert_eq!(ann.len(), 16);
    assert_ne!(ann, bob);
    assert!(ann != "Ann" && bob != "Bob");
    let ann_again: String = c
        .query_one("SELECT name FROM customers WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ann_again, ann);

    // COPY TO STDOUT is masked the same, in text and CSV format. COPY output is text, so
    // the card number held in a bigint carries the mask instead of being withheld.
    let copy = |sql: &'static str| {
        let c = &c;
        async move {
            let chunks: Vec<bytes::Bytes> =
                c.copy_out(sql).await.unwrap().try_collect().await.unwrap();
            chunks
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<String>()
        }
    };
    let text = copy("COPY customers (id, email, note, card_num) TO STDOUT").await;
    assert_eq!(
        text,
        "1\t***********.com\tcard *****\t*****\n2\t\\N\tssn *****\t42\n3\t************.com\tnothing to hide\t7\n"
    );
    let csv = copy("COPY public.customers (email) TO STDOUT WITH (FORMAT csv, HEADER)").await;
    assert_eq!(csv, "email\n\"***********.com\"\n\n\"************.com\"\n");
    // A query's COPY does not say which columns it reads: refused, and the session goes on.
    let e = c
        .simple_query("COPY (SELECT email FROM customers) TO STDOUT")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // The record says how many values each rule masked, never the values.
    drop(c);
    let batches = wait_events(
        &app,
        &format!("grant={grant}&action=session.results"),
        |ev| {
            outcomes(ev)
                .iter()
                .filter(|o| o.get("masked").is_some())
                .count()
                >= 4
        },
    )
    .await;
    let masked: Vec<Value> = outcomes(&batches)
        .into_iter()
        .filter_map(|o| o.get("masked").cloned())
        .collect();
    assert_eq!(
        masked[0],
        json!({"pii": 2, "cards:card": 1, "cards:ssn": 1}),
        "{masked:?}"
    );
    let all = serde_json::to_string(&batches).unwrap();
    assert!(
        !all.contains("ann@example.com") && !all.contains("4111"),
        "{all}"
    );
}

/// psycopg (Python), in text and in binary result format and through COPY (simple protocol),
/// sees the same masks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // python blocks this thread
async fn masking_holds_for_psycopg_in_text_and_binary_format() {
    let Some((db, app)) = setup_gateway_masking(
        r#"
[[masking]]
name = "pii"
columns = ["customers.email"]
detectors = ["card"]
strategy = "partial"
keep = 4
"#,
    )
    .await
    else {
        return;
    };
    db.exec(&format!(
        "CREATE TABLE customers (id int, email text, note text, card_num bigint);
         INSERT INTO customers VALUES (1, 'ann@example.com', 'card 4111 1111 1111 1111', 4111111111111111);
         GRANT SELECT ON customers TO {}write",
        db.prefix
    ))
    .await;
    write_grant(&app).await;
    let script = r#"
import json, sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    out = {}
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT e, note, card_num FROM (SELECT id, email AS e, note, card_num FROM customers) s WHERE id = %s", (1,))
        out["binary" if binary else "text"] = list(cur.fetchone())
    with conn.cursor().copy("COPY customers (email, note) TO STDOUT") as cp:
        out["copy"] = b"".join(bytes(b) for b in cp).decode()
    print(json.dumps(out))
"#;
    jitgate_testkit::require_python_module("psycopg", "psycopg[binary]");
    let out = Command::new("python3")
        .args(["-c", script, &conninfo(&app, "ci-bot")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psycopg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = json!(["***********.com", "card ***************1111", null]);
    assert_eq!(v["text"], want, "{v}");
    assert_eq!(v["binary"], want, "{v}");
    assert_eq!(
        v["copy"], "***********.com\tcard ***************1111\n",
        "{v}"
    );
}

/// Every detector finds its kind through the gateway, hostile spacing and all, and `null`
/// empties a whole value.
#[tokio::test]
async fn every_detector_masks_through_the_gateway() {
    let Some((db, app)) = setup_gateway_masking(
        r#"
[[masking]]
name = "found"
detectors = ["email", "card", "iban", "ssn", "phone", "secret"]
strategy = "redact"

[[masking]]
name = "gone"
columns = ["notes.secret_note"]
strategy = "null"
"#,
    )
    .await
    else {
        return;
    };
    db.exec(&format!(
        "CREATE TABLE notes (id int, body text, secret_note text);
         INSERT INTO notes VALUES
           (1, 'mail jane.doe+x@example.co.uk', 'a'),
           (2, 'card 5555-5555-5555-4444 thanks', 'b'),
           (3, 'iban GB82 WEST 1234 5698 7654 32.', 'c'),
           (4, 'ssn 078-05-1120', 'd'),
           (5, 'call +49 30 1234567', 'e'),
           (6, 'key AKIAIOSFODNN7EXAMPLE', 'f'),
           (7, 'order 4111111111111112 is not a card', 'g');
         GRANT SELECT ON notes TO {}write",
        db.prefix
    ))
    .await;
    write_grant(&app).await;
    let c = connect(&app, "ci-bot").await.unwrap();
    let rows = c
        .query("SELECT body, secret_note FROM notes ORDER BY id", &[])
        .await
        .unwrap();
    let bodies: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        bodies,
        [
            "mail *****",
            "card ***** thanks",
            "iban *****.",
            "ssn *****",
            "call *****",
            "key *****",
            "order 4111111111111112 is not a card",
        ]
    );
    assert!(rows.iter().all(|r| r.get::<_, Option<String>>(1).is_none()));
}

/// `/metrics` counts the gateway's sessions, statements and blocked statements by resource,
/// once their events are in the log.
#[tokio::test]
async fn metrics_count_gateway_sessions_statements_and_blocks() {
    let Some((_db, app)) = setup_with(
        r#"
[[guardrails]]
name = "no-ddl"
deny = ["ddl"]
"#,
    )
    .await
    else {
        return;
    };
    write_grant(&app).await;
    let c = connect(&app, "ci-bot").await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    c.simple_query("SELECT 2").await.unwrap();
    c.simple_query("CREATE TABLE nope (id int)")
        .await
        .unwrap_err();
    let series = |m: &std::collections::HashMap<String, f64>, name: &str| {
        m.get(&format!("{name}{{resource=\"orders-db\"}}"))
            .copied()
            .unwrap_or(0.0)
    };
    let start = Instant::now();
    loop {
        let m = crate::metrics::parse(&crate::metrics::scrape(&app).await);
        if series(&m, "jitgate_gateway_statements_total") >= 3.0 {
            assert_eq!(series(&m, "jitgate_gateway_statements_blocked_total"), 1.0);
            assert_eq!(series(&m, "jitgate_gateway_sessions"), 1.0, "{m:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(c);
    let start = Instant::now();
    loop {
        let m = crate::metrics::parse(&crate::metrics::scrape(&app).await);
        if series(&m, "jitgate_gateway_sessions") == 0.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the session never closed: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
