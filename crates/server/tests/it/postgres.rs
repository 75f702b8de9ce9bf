//! The PostgreSQL connector against the machine's real PostgreSQL.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;
use crate::services::{PgDb, pg_connect};

const HOSTILE: &str = "o'brien \"x\"; DROP ROLE postgres; --";

fn config(db: &PgDb, read_role: &str, write_role: &str, owner: &str) -> String {
    format!(
        r#"
[[principals]]
name = "o'brien \"x\"; DROP ROLE postgres; --"
groups = ["engineering"]
token_sha256 = "{hostile}"

[[resources]]
name = "orders-db"
kind = "postgres"
admin_url = "{url}"
owner_role = "{owner}"
role_prefix = "{prefix}"
[resources.roles.read]
grants = [{read}]
[resources.roles.write]
grants = [{write}]

[[policies]]
name = "read"
principals = ["group:engineering"]
resources = ["orders-db"]
roles = ["read"]
max_duration = "1h"
[policies.approval]
approvers = ["group:dba"]

[[policies]]
name = "ci-write"
principals = ["service:ci-bot"]
resources = ["orders-db"]
roles = ["write", "read"]
max_duration = "1h"
[policies.approval]
required = 0
"#,
        hostile = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            crate::helpers::token(HOSTILE).as_bytes()
        )),
        url = db.admin_url,
        prefix = db.prefix,
        read = serde_json::to_string(read_role).unwrap(),
        write = serde_json::to_string(write_role).unwrap(),
    )
}

/// A database with a read role (SELECT on orders), a write role (CREATE on public, INSERT), an owner.
async fn setup() -> Option<(PgDb, String, String, String)> {
    let mut db = PgDb::create().await?;
    let (read, write, owner) = (
        format!("{}read", db.prefix),
        format!("{}write", db.prefix),
        format!("{}owner", db.prefix),
    );
    db.role(&read, &format!("GRANT SELECT ON orders TO {read};"))
        .await;
    db.role(
        &write,
        &format!(
            "GRANT SELECT, INSERT ON orders TO {write}; GRANT CREATE ON SCHEMA public TO {write};"
        ),
    )
    .await;
    db.role(&owner, "").await;
    Some((db, read, write, owner))
}

#[tokio::test]
async fn grant_gives_exactly_the_role_for_its_window() {
    let Some((db, read, write, owner)) = setup().await else {
        return;
    };
    let app = TestApp::start(&config(&db, &read, &write, &owner)).await;
    let r = app
        .request(
            "alice",
            json!({"resource": "orders-db", "role": "read", "duration": "30m"}),
        )
        .await;
    let (_, r) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/approve", r["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(r["state"], "active", "{r}");
    let grant = r["grant_id"].as_str().unwrap();

    // Only the grantee reads credentials; each read is audited.
    let (s, _) = app
        .get("root", &format!("/api/v1/grants/{grant}/credentials"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not even an admin");
    let (s, _) = app
        .get("dora", &format!("/api/v1/grants/{grant}/credentials"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let c = app.credentials("alice", grant).await;
    let login = c["username"].as_str().unwrap().to_owned();
    assert!(
        login.starts_with(&format!("{}alice_", db.prefix)),
        "{login}"
    );
    assert_eq!(c["env"]["PGUSER"], login.as_str());
    assert_eq!(c["env"]["PGDATABASE"], db.name.as_str());
    let (_, events) = app
        .get(
            "root",
            &format!("/api/v1/audit/events?grant={grant}&action=grant.credentials_issued"),
        )
        .await;
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert!(
        !events.to_string().contains(c["password"].as_str().unwrap()),
        "the password is never in the audit log"
    );

    // The login can read, and nothing more.
    let session = pg_connect(c["dsn"].as_str().unwrap()).await.unwrap();
    let n: i64 = session
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let denied = session
        .batch_execute("INSERT INTO orders VALUES (3, 'pen')")
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );

    // PostgreSQL itself knows the end of the window.
    let row = db.query_one_opt("SELECT rolvaliduntil::text, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", &login).await.unwrap();
    let until: String = row.get(0);
    let expires: jiff::Timestamp = r["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    let until: jiff::Timestamp = until
        .replace(' ', "T")
        .parse::<jiff::Timestamp>()
        .or_else(|_| format!("{}:00", until.replace(' ', "T")).parse())
        .unwrap();
    assert!(
        until.duration_since(expires).abs() < jiff::SignedDuration::from_secs(1),
        "VALID UNTIL {until} vs {expires}"
    );
    let comment: String = row.get(1);
    assert!(comment.contains(&format!("grant={grant}")), "{comment}");

    // Extending moves VALID UNTIL.
    let (_, g) = app
        .post(
            "alice",
            &format!("/api/v1/grants/{grant}/extend"),
            json!({"duration": "10m"}),
        )
        .await;
    assert_eq!(g["extensions"][0]["state"], "pending");
    let (_, r2) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/approve", r["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let new_end: jiff::Timestamp = r2["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    let row = db
        .query_one_opt(
            "SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = $1",
            &login,
        )
        .await
        .unwrap();
    let until: String = row.get(0);
    let until: jiff::Timestamp = until
        .replace(' ', "T")
        .parse::<jiff::Timestamp>()
        .or_else(|_| format!("{}:00", until.replace(' ', "T")).parse())
        .unwrap();
    assert!(
        until.duration_since(new_end).abs() < jiff::SignedDuration::from_secs(1),
        "extended VALID UNTIL {until} vs {new_end}"
    );

    // "Done": the role is gone, the open session is cut, new logins fail.
    let (s, g) = app
        .post(
            "alice",
            &format!("/api/v1/grants/{grant}/release"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(g["state"], "released");
    assert!(
        session.query_one("SELECT 1", &[]).await.is_err(),
        "the open session was terminated"
    );
    assert!(
        pg_connect(c["dsn"].as_str().unwrap()).await.is_err(),
        "the login no longer works"
    );
    assert!(
        db.query_one_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &login)
            .await
            .is_none(),
        "the role is dropped"
    );
    let (s, _) = app
        .get("alice", &format!("/api/v1/grants/{grant}/credentials"))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "no credentials for an ended grant");
}

#[tokio::test]
async fn open_session_and_running_query_are_cut_within_one_second_of_expiry() {
    let Some((db, read, write, owner)) = setup().await else {
        return;
    };
    let app = TestApp::start(&config(&db, &read, &write, &owner)).await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "write", "duration": "3s"}),
        )
        .await;
    assert_eq!(r["state"], "active", "{r}");
    let expires: jiff::Timestamp = r["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    let c = app
        .credentials("ci-bot", r["grant_id"].as_str().unwrap())
        .await;
    let idle = pg_connect(c["dsn"].as_str().unwrap()).await.unwrap();
    let busy = pg_connect(c["dsn"].as_str().unwrap()).await.unwrap();
    let long_query = tokio::spawn(async move {
        let r = busy.batch_execute("SELECT pg_sleep(30)").await;
        (r, jitgate_core::Clock::now(&jitgate_core::SystemClock))
    });
    let started = Instant::now();
    let idle_cut = loop {
        if idle.query_one("SELECT 1", &[]).await.is_err() {
            break jitgate_core::Clock::now(&jitgate_core::SystemClock);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "idle session never cut"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (query, query_cut) = long_query.await.unwrap();
    assert!(query.is_err(), "the running query was terminated");
    for (what, at) in [("idle session", idle_cut), ("running query", query_cut)] {
        let lag = at.duration_since(expires);
        assert!(
            lag < jiff::SignedDuration::from_secs(1),
            "{what} cut {lag:?} after the end of the grant"
        );
    }
    app.wait_state(r["id"].as_str().unwrap(), "expired", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn objects_created_under_a_grant_pass_to_the_owner_role() {
    let Some((db, read, write, owner)) = setup().await else {
        return;
    };
    let app = TestApp::start(&config(&db, &read, &write, &owner)).await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "write", "duration": "10m"}),
        )
        .await;
    let grant = r["grant_id"].as_str().unwrap();
    let c = app.credentials("ci-bot", grant).await;
    let s = pg_connect(c["dsn"].as_str().unwrap()).await.unwrap();
    s.batch_execute("CREATE TABLE made_under_grant (x int); INSERT INTO orders VALUES (3, 'pen');")
        .await
        .unwrap();
    drop(s);
    let (st, g) = app
        .post(
            "ci-bot",
            &format!("/api/v1/grants/{grant}/release"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{g}");
    let row = db
        .query_one_opt(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
            "made_under_grant",
        )
        .await
        .unwrap();
    let table_owner: String = row.get(0);
    assert_eq!(table_owner, owner);
}

#[tokio::test]
async fn orphans_are_reconciled_and_audited() {
    let Some((db, read, write, owner)) = setup().await else {
        return;
    };
    let app = TestApp::start(&config(&db, &read, &write, &owner)).await;
    let running = app.running.as_ref().unwrap();
    let instance = std::fs::read_to_string(app.data_dir().join("instance_id")).unwrap();
    // A login as jitgate would make it, for a grant jitgate does not know (a crash left it).
    let orphan = format!("{}lost_abcdefghijkl", db.prefix);
    db.exec(&format!("CREATE ROLE {orphan} LOGIN PASSWORD 'x'; COMMENT ON ROLE {orphan} IS 'jitgate instance={instance} grant=grt_abcdefghijkl principal=lost'")).await;
    // Another installation's login is not ours to touch.
    let foreign = format!("{}other_mnopqrstuvwx", db.prefix);
    db.exec(&format!("CREATE ROLE {foreign} LOGIN; COMMENT ON ROLE {foreign} IS 'jitgate instance=jg_someoneelse grant=grt_mnopqrstuvwx principal=x'")).await;
    // And a live grant's login stays.
    let live = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
        )
        .await;
    assert_eq!(running.app.reconcile().await.unwrap(), 1);
    assert!(
        db.query_one_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &orphan)
            .await
            .is_none()
    );
    assert!(
        db.query_one_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &foreign)
            .await
            .is_some()
    );
    let c = app
        .credentials("ci-bot", live["grant_id"].as_str().unwrap())
        .await;
    assert!(
        pg_connect(c["dsn"].as_str().unwrap()).await.is_ok(),
        "the live grant's login survives"
    );
    let (_, ev) = app
        .get(
            "root",
            "/api/v1/audit/events?action=connector.orphan_removed",
        )
        .await;
    assert_eq!(ev[0]["grant_id"], "grt_abcdefghijkl");
    assert_eq!(ev[0]["resource"], "orders-db");
}

#[tokio::test]
async fn hostile_principal_and_role_names_are_quoted_safely() {
    let mut db = match PgDb::create().await {
        Some(db) => db,
        None => return,
    };
    let weird = format!("{}weird \"role\"; DROP TABLE orders; --", db.prefix);
    let ident = jitgate_connectors::naming::pg_ident(&weird);
    db.role(&weird, &format!("GRANT SELECT ON orders TO {ident};"))
        .await;
    let owner = format!("{}owner", db.prefix);
    db.role(&owner, "").await;
    let app = TestApp::start(&config(&db, &weird, &weird, &owner)).await;
    let r = app
        .request(
            HOSTILE,
            json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
        )
        .await;
    let (_, r) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/approve", r["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(r["state"], "active", "{r}");
    let grant = r["grant_id"].as_str().unwrap();
    let c = app.credentials(HOSTILE, grant).await;
    let login = c["username"].as_str().unwrap();
    assert!(
        login
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_'),
        "{login}"
    );
    let s = pg_connect(c["dsn"].as_str().unwrap()).await.unwrap();
    let n: i64 = s
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 2,
        "the table is still there and readable through the weird role"
    );
    assert!(
        db.query_one_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", "postgres")
            .await
            .is_some()
    );
    let (st, _) = app
        .post(
            HOSTILE,
            &format!("/api/v1/grants/{grant}/release"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        db.query_one_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", login)
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_target_down_at_revocation_leaves_the_grant_revoking_until_it_is_back() {
    let Some((db, read, write, owner)) = setup().await else {
        return;
    };
    let proxy = crate::helpers::Forwarder::start("127.0.0.1:5432").await;
    let url = db
        .admin_url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let text = config(&db, &read, &write, &owner).replace(&db.admin_url, &url);
    let app = TestApp::start(&text).await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "2s"}),
        )
        .await;
    assert_eq!(r["state"], "active", "{r}");
    let login = app
        .credentials("ci-bot", r["grant_id"].as_str().unwrap())
        .await["username"]
        .as_str()
        .unwrap()
        .to_owned();
    proxy.down().await;
    let id = r["id"].as_str().unwrap();
    app.wait_state(id, "revoking", Duration::from_secs(6)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        app.read_request(id).await["state"],
        "revoking",
        "not ended while the target is unreachable"
    );
    let (_, failed) = app
        .get(
            "root",
            &format!("/api/v1/audit/events?request={id}&action=grant.revoke_failed"),
        )
        .await;
    assert!(!failed.as_array().unwrap().is_empty());
    assert_eq!(failed[0]["outcome"], "failure");
    // What an operator's alert sees: a grant stuck revoking, and the connector failing.
    let m = crate::metrics::parse(&crate::metrics::scrape(&app).await);
    assert_eq!(m["jitgate_grants_revoking"], 1.0, "{m:?}");
    assert!(m["jitgate_grants_revoking_oldest_seconds"] >= 1.0, "{m:?}");
    assert!(
        m[r#"jitgate_connector_errors_total{resource="orders-db",operation="revoke"}"#] >= 1.0,
        "{m:?}"
    );
    assert!(
        db.query_one_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &login)
            .await
            .is_some(),
        "still there"
    );
    proxy.up().await;
    app.wait_state(id, "expired", Duration::from_secs(20)).await;
    assert!(
        db.query_one_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &login)
            .await
            .is_none(),
        "removed once the target was back"
    );
}

/// Sends `POST path` with a bearer token over a raw connection and hangs up a millisecond later,
/// before any answer: what a client killed mid-request, or a proxy timing out, does.
async fn post_and_hang_up(base: &str, who: &str, path: &str) {
    use tokio::io::AsyncWriteExt;
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
        crate::helpers::token(who)
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    drop(conn);
}

#[tokio::test]
async fn a_release_whose_client_hangs_up_still_ends_the_login_at_once() {
    let Some((db, read, write, owner)) = setup().await else {
        return;
    };
    let app = TestApp::start(&config(&db, &read, &write, &owner)).await;
    for attempt in 0..3 {
        let r = app
            .request(
                "ci-bot",
                json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
            )
            .await;
        assert_eq!(r["state"], "active", "{r}");
        let grant = r["grant_id"].as_str().unwrap();
        let dsn = app.credentials("ci-bot", grant).await["dsn"]
            .as_str()
            .unwrap()
            .to_owned();
        let session = pg_connect(&dsn).await.expect("the login works before");
        post_and_hang_up(
            &app.base,
            "ci-bot",
            &format!("/api/v1/grants/{grant}/release"),
        )
        .await;
        let hung_up = Instant::now();
        // The login stops working within a second or two, whatever happened to the caller.
        loop {
            if pg_connect(&dsn).await.is_err() && session.query_one("SELECT 1", &[]).await.is_err()
            {
                break;
            }
            assert!(
                hung_up.elapsed() < Duration::from_secs(2),
                "attempt {attempt}: the login still works {:?} after the release",
                hung_up.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.wait_state(
            r["id"].as_str().unwrap(),
            "released",
            Duration::from_secs(2),
        )
        .await;
    }
}

#[tokio::test]
async fn a_grant_that_stays_active_keeps_or_gets_back_its_login() {
    let Some((db, read, write, owner)) = setup().await else {
        return;
    };
    let app = TestApp::start(&config(&db, &read, &write, &owner)).await;
    let r = app
        .request(
            "alice",
            json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
        )
        .await;
    let id = r["id"].as_str().unwrap();
    let (_, r) = app
        .post("dora", &format!("/api/v1/requests/{id}/approve"), json!({}))
        .await;
    assert_eq!(r["state"], "active", "{r}");
    let grant = r["grant_id"].as_str().unwrap();
    let c = app.credentials("alice", grant).await;
    let (dsn, login) = (c["dsn"].as_str().unwrap(), c["username"].as_str().unwrap());
    // The approver sees the grant but may not release it: refused before the login is touched.
    let (s, _) = app
        .post(
            "dora",
            &format!("/api/v1/grants/{grant}/release"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        pg_connect(dsn).await.is_ok(),
        "a refused release disables nothing"
    );
    // A crash between disabling the login and recording the release: the reconciler gives the
    // still-active grant its login back.
    db.exec(&format!("ALTER ROLE {login} NOLOGIN")).await;
    assert!(pg_connect(dsn).await.is_err());
    app.app().reconcile().await.unwrap();
    assert!(pg_connect(dsn).await.is_ok(), "the login is back");
    let (_, ev) = app
        .get(
            "root",
            &format!("/api/v1/audit/events?grant={grant}&action=grant.login_restored"),
        )
        .await;
    assert_eq!(ev.as_array().unwrap().len(), 1, "{ev}");
}

/// As for MariaDB: a grant whose target was down at approval gets its whole window from
/// activation, and PostgreSQL's own end (VALID UNTIL) is that window's end.
#[tokio::test]
async fn a_grant_whose_target_was_down_gets_its_whole_window_once_activated() {
    let Some((db, read, write, owner)) = setup().await else {
        return;
    };
    let proxy = crate::helpers::Forwarder::start("127.0.0.1:5432").await;
    let url = db
        .admin_url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let text = config(&db, &read, &write, &owner).replace(&db.admin_url, &url);
    let app = TestApp::start(&text).await;
    proxy.down().await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "5s"}),
        )
        .await;
    assert_eq!(r["state"], "approved", "the target is down: {r}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.up().await;
    let v = app
        .wait_state(r["id"].as_str().unwrap(), "active", Duration::from_secs(10))
        .await;
    let at = |k: &str| -> jiff::Timestamp { v["grant"][k].as_str().unwrap().parse().unwrap() };
    assert!(
        at("expires_at").duration_since(at("activated_at"))
            > jiff::SignedDuration::from_millis(4900),
        "the whole window is left after activation: {v}"
    );
    let login = app
        .credentials("ci-bot", r["grant_id"].as_str().unwrap())
        .await["username"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = db
        .query_one_opt(
            "SELECT extract(epoch from rolvaliduntil)::float8 FROM pg_roles WHERE rolname = $1",
            &login,
        )
        .await
        .unwrap();
    let until: f64 = row.get(0);
    let expires = at("expires_at").as_millisecond() as f64 / 1000.0;
    assert!(
        (until - expires).abs() < 0.1,
        "VALID UNTIL {until} vs {expires}"
    );
}
