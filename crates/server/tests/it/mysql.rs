//! The MariaDB connector against the machine's real MariaDB.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;
use crate::services::MyDb;

fn config(db: &MyDb, read_role: &str) -> String {
    format!(
        r#"
[[resources]]
name = "shop-db"
kind = "mysql"
admin_url = "{url}"
role_prefix = "{prefix}"
[resources.roles.read]
grants = [{read}]

[[policies]]
name = "read"
principals = ["group:engineering", "service:ci-bot"]
resources = ["shop-db"]
roles = ["read"]
max_duration = "1h"
[policies.approval]
approvers = ["group:dba"]
[[policies.auto_approve]]
principals = ["service:ci-bot"]
max_duration = "10m"
"#,
        url = db.admin_url,
        prefix = db.prefix,
        read = serde_json::to_string(read_role).unwrap(),
    )
}

async fn setup(role_name: &str) -> Option<(MyDb, String)> {
    let mut db = MyDb::create().await?;
    let read = format!("{}{role_name}", db.prefix);
    let grant = format!("GRANT SELECT ON {}.orders TO {{role}}", db.name);
    db.role(&read, &grant).await;
    Some((db, read))
}

async fn connect(dsn: &str) -> Result<mysql_async::Conn, mysql_async::Error> {
    crate::services::my_connect(dsn).await
}

#[tokio::test]
async fn grant_gives_the_role_and_ends_with_it() {
    let Some((db, read)) = setup("read").await else {
        return;
    };
    let app = TestApp::start(&config(&db, &read)).await;
    let r = app
        .request(
            "alice",
            json!({"resource": "shop-db", "role": "read", "duration": "30m"}),
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
    let (s, _) = app
        .get("root", &format!("/api/v1/grants/{grant}/credentials"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let c = app.credentials("alice", grant).await;
    let login = c["username"].as_str().unwrap().to_owned();
    assert!(
        login.len() <= 32 && login.starts_with(&db.prefix),
        "{login}"
    );
    assert!(
        c["env"].get("MYSQL_USER").is_none(),
        "mysql ignores it: {c}"
    );
    let option_file = c["option_file"].as_str().unwrap();
    assert!(
        option_file.contains(&format!("user=\"{login}\"")),
        "{option_file}"
    );

    let mut session = connect(c["dsn"].as_str().unwrap()).await.unwrap();
    let n: Option<i64> = session
        .query_first("SELECT count(*) FROM orders")
        .await
        .unwrap();
    assert_eq!(n, Some(2), "the default role is active on login");
    let denied = session
        .query_drop("INSERT INTO orders VALUES (3, 'pen')")
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("denied"), "{denied}");

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
        session.query_drop("SELECT 1").await.is_err(),
        "the open connection was killed"
    );
    assert!(
        connect(c["dsn"].as_str().unwrap()).await.is_err(),
        "the login no longer works"
    );
    let left = db.users().await;
    assert!(
        left.is_empty(),
        "the user is dropped: {left:?} (login {login})"
    );
}

#[tokio::test]
async fn open_connection_is_killed_within_one_second_of_expiry() {
    let Some((db, read)) = setup("read").await else {
        return;
    };
    let app = TestApp::start(&config(&db, &read)).await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "shop-db", "role": "read", "duration": "2s"}),
        )
        .await;
    assert_eq!(r["state"], "active", "{r}");
    let expires: jiff::Timestamp = r["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    let c = app
        .credentials("ci-bot", r["grant_id"].as_str().unwrap())
        .await;
    let mut session = connect(c["dsn"].as_str().unwrap()).await.unwrap();
    let started = Instant::now();
    let cut = loop {
        if session.query_drop("SELECT 1").await.is_err() {
            break jitgate_core::Clock::now(&jitgate_core::SystemClock);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never cut");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lag = cut.duration_since(expires);
    assert!(
        lag < jiff::SignedDuration::from_secs(1),
        "cut {lag:?} after the end"
    );
    app.wait_state(r["id"].as_str().unwrap(), "expired", Duration::from_secs(5))
        .await;
    assert!(db.users().await.is_empty());
}

#[tokio::test]
async fn orphans_are_reconciled_and_hostile_role_names_are_quoted() {
    let Some((db, read)) = setup("we`ird 'role'; DROP DATABASE x; --").await else {
        return;
    };
    let app = TestApp::start(&config(&db, &read)).await;
    let live = app
        .request(
            "ci-bot",
            json!({"resource": "shop-db", "role": "read", "duration": "5m"}),
        )
        .await;
    assert_eq!(live["state"], "active", "{live}");
    let c = app
        .credentials("ci-bot", live["grant_id"].as_str().unwrap())
        .await;
    let mut s = connect(c["dsn"].as_str().unwrap()).await.unwrap();
    let n: Option<i64> = s.query_first("SELECT count(*) FROM orders").await.unwrap();
    assert_eq!(n, Some(2), "granted through the oddly named role");
    s.disconnect().await.unwrap();
    let orphan = format!("{}lost_abcdefghijkl", db.prefix);
    db.exec(&format!("CREATE USER '{orphan}'@'%' IDENTIFIED BY 'x'"))
        .await;
    let running = app.running.as_ref().unwrap();
    assert_eq!(running.app.reconcile().await.unwrap(), 1);
    let users = db.users().await;
    assert!(!users.contains(&orphan), "{users:?}");
    assert!(
        users.contains(&c["username"].as_str().unwrap().to_owned()),
        "the live grant's user stays"
    );
    let (_, ev) = app
        .get(
            "root",
            "/api/v1/audit/events?action=connector.orphan_removed",
        )
        .await;
    assert_eq!(ev[0]["grant_id"], "grt_abcdefghijkl");
    // A crash between locking a login and recording its grant's end: the reconciler unlocks
    // the login of the grant that is still active.
    let login = c["username"].as_str().unwrap();
    db.exec(&format!("ALTER USER '{login}'@'%' ACCOUNT LOCK"))
        .await;
    assert!(connect(c["dsn"].as_str().unwrap()).await.is_err());
    running.app.reconcile().await.unwrap();
    assert!(
        connect(c["dsn"].as_str().unwrap()).await.is_ok(),
        "the active grant's login is unlocked"
    );
}

/// An admin URL on 127.0.0.1 logs in as `user@127.0.0.1`, as it says, not as `user@localhost`
/// through the server's unix socket. Here the two are different accounts: only the TCP one may
/// create users, so a grant activates only if jitgate connects the way the URL says.
#[tokio::test]
async fn an_admin_url_on_127_0_0_1_logs_in_over_tcp() {
    let Some((db, read)) = setup("read").await else {
        return;
    };
    let admin = format!("{}adm", db.prefix);
    let password = "Adm1nPassw0rd";
    db.exec(&format!(
        "CREATE USER '{admin}'@'127.0.0.1' IDENTIFIED BY '{password}'"
    ))
    .await;
    db.exec(&format!(
        "GRANT ALL ON *.* TO '{admin}'@'127.0.0.1' WITH GRANT OPTION"
    ))
    .await;
    db.exec(&format!(
        "GRANT {} TO '{admin}'@'127.0.0.1' WITH ADMIN OPTION",
        jitgate_connectors::naming::my_ident(&read)
    ))
    .await;
    // The same name on the socket: may read the database, nothing more.
    db.exec(&format!(
        "CREATE USER '{admin}'@'localhost' IDENTIFIED BY '{password}'"
    ))
    .await;
    db.exec(&format!(
        "GRANT SELECT ON {}.* TO '{admin}'@'localhost'",
        db.name
    ))
    .await;
    let url = format!("mysql://{admin}:{password}@127.0.0.1:3306/{}", db.name);
    let text = config(&db, &read).replace(&db.admin_url, &url);
    let app = TestApp::start(&text).await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "shop-db", "role": "read", "duration": "5m"}),
        )
        .await;
    assert_eq!(r["state"], "active", "{r}");
    for host in ["127.0.0.1", "localhost"] {
        db.exec(&format!("DROP USER IF EXISTS '{admin}'@'{host}'"))
            .await;
    }
}

/// While provisioning keeps failing the window does not run: it starts once the login exists,
/// and lasts the whole duration.
#[tokio::test]
async fn a_grant_whose_target_was_down_gets_its_whole_window_once_activated() {
    let Some((db, read)) = setup("read").await else {
        return;
    };
    let proxy = crate::helpers::Forwarder::start("127.0.0.1:3306").await;
    let url = db
        .admin_url
        .replace("127.0.0.1:3306", &format!("127.0.0.1:{}", proxy.port));
    let app = TestApp::start(&config(&db, &read).replace(&db.admin_url, &url)).await;
    proxy.down().await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "shop-db", "role": "read", "duration": "5s"}),
        )
        .await;
    assert_eq!(r["state"], "approved", "the target is down: {r}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.up().await;
    let v = app
        .wait_state(r["id"].as_str().unwrap(), "active", Duration::from_secs(10))
        .await;
    let at = |k: &str| -> jiff::Timestamp { v["grant"][k].as_str().unwrap().parse().unwrap() };
    let approved: jiff::Timestamp = r["grant"]["starts_at"].as_str().unwrap().parse().unwrap();
    assert!(
        at("starts_at") >= approved + jiff::SignedDuration::from_millis(1500),
        "{v}"
    );
    assert_eq!(
        at("expires_at").duration_since(at("starts_at")),
        jiff::SignedDuration::from_secs(5),
        "{v}"
    );
    assert!(
        at("expires_at").duration_since(at("activated_at"))
            > jiff::SignedDuration::from_millis(4900),
        "the whole window is left after activation: {v}"
    );
}
