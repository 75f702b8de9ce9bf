//! Short-lived gateway passwords: issued to the grantee of an active grant, good for that
//! principal and resource only, and only until the grant ends; API tokens keep working.

use serde_json::json;

use crate::helpers::TestApp;
use crate::services::{PgDb, pg_connect};

async fn setup() -> Option<(PgDb, TestApp)> {
    let mut db = PgDb::create().await?;
    let read = format!("{}read", db.prefix);
    db.role(&read, &format!("GRANT SELECT ON orders TO {read};"))
        .await;
    let app = TestApp::start(&format!(
        r#"
[gateway.postgres]
listen = "127.0.0.1:0"

[[resources]]
name = "orders-db"
kind = "postgres"
admin_url = "{url}"
role_prefix = "{prefix}"
[resources.roles.read]
grants = ["{read}"]

[[resources]]
name = "other-db"
kind = "postgres"
admin_url = "{url}"
role_prefix = "{prefix}"
[resources.roles.read]
grants = ["{read}"]

[[policies]]
name = "ci"
principals = ["service:ci-bot", "group:engineering"]
resources = ["orders-db", "other-db"]
roles = ["read"]
max_duration = "1h"
[policies.approval]
required = 0
"#,
        url = db.admin_url,
        prefix = db.prefix,
    ))
    .await;
    Some((db, app))
}

async fn login(
    app: &TestApp,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let port = app.gateway_port();
    pg_connect(&format!(
        "host=127.0.0.1 port={port} dbname={dbname} user={user} password={password}"
    ))
    .await
}

fn sqlstate(e: tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn a_gateway_password_lets_its_grantee_in_to_its_resource_until_the_grant_ends() {
    let Some((_db, app)) = setup().await else {
        return;
    };
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
        )
        .await;
    let grant = r["grant_id"].as_str().unwrap();
    app.request(
        "alice",
        json!({"resource": "orders-db", "role": "read", "duration": "10m"}),
    )
    .await;
    let path = format!("/api/v1/grants/{grant}/gateway-password");
    // Only the grantee gets one, and the refusal is audited.
    let (s, _) = app.post("root", &path, json!({})).await;
    assert_eq!(s, reqwest::StatusCode::FORBIDDEN);
    let (s, issued) = app.post("ci-bot", &path, json!({})).await;
    assert_eq!(s, reqwest::StatusCode::OK, "{issued}");
    let password = issued["password"].as_str().unwrap().to_owned();
    assert!(password.starts_with("jgp_"), "{issued}");
    assert_eq!(issued["user"], "ci-bot");
    assert_eq!(issued["resource"], "orders-db");

    let c = login(&app, "ci-bot", &password, "orders-db").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // Not for another principal, nor another resource: the same refusal as a wrong password.
    for (user, dbname) in [("alice", "orders-db"), ("ci-bot", "other-db")] {
        let e = login(&app, user, &password, dbname).await.unwrap_err();
        assert_eq!(sqlstate(e), "28P01", "{user} on {dbname}");
    }
    // API tokens keep working.
    login(&app, "ci-bot", "tok-ci-bot", "orders-db")
        .await
        .unwrap();
    // Issued events are audited, the password never is.
    let (_, ev) = app
        .get(
            "root",
            &format!("/api/v1/audit/events?grant={grant}&action=grant.gateway_password*"),
        )
        .await;
    let actions: Vec<&str> = ev
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["grant.gateway_password", "grant.gateway_password_issued"],
        "{ev}"
    );
    assert!(!ev.to_string().contains(&password));
    // When the grant ends, the password stops working.
    let (s, _) = app
        .post(
            "ci-bot",
            &format!("/api/v1/grants/{grant}/release"),
            json!({}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK);
    assert!(login(&app, "ci-bot", &password, "orders-db").await.is_err());
    let (s, _) = app.post("ci-bot", &path, json!({})).await;
    assert_eq!(s, reqwest::StatusCode::CONFLICT, "none for an ended grant");
}
