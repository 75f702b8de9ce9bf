//! `GET /api/v1/access`: what the caller may ask for, as the policy evaluator sees it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{STANDARD, TestApp};

fn entry<'a>(list: &'a Value, resource: &str, role: &str) -> Option<&'a Value> {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"] == resource && e["role"] == role)
}

#[tokio::test]
async fn each_principal_sees_the_roles_the_policies_let_them_ask_for() {
    let app = TestApp::start(STANDARD).await;
    let (s, alice) = app.get("alice", "/api/v1/access").await;
    assert_eq!(s, StatusCode::OK, "{alice}");
    let read = entry(&alice, "orders-db", "read").unwrap();
    assert_eq!(
        read["policies"][0],
        json!({
            "policy": "engineers-read-orders", "max_duration": "4h", "require_reason": true,
            "ticket_pattern": null, "approvals_required": 1, "approvers": ["group:dba"],
            "allow_self_approval": false, "pending_timeout": "1h", "auto_approve": [],
            "break_glass_max": null,
        })
    );
    let admin = entry(&alice, "orders-db", "admin").unwrap();
    assert_eq!(admin["policies"][0]["ticket_pattern"], "(INC|CHG)-[0-9]+");
    assert_eq!(admin["policies"][0]["approvals_required"], 2);
    assert!(entry(&alice, "orders-db", "deploy").is_none(), "{alice}");

    // bob is on call, sam may break glass: each sees only what names them.
    let (_, bob) = app.get("bob", "/api/v1/access").await;
    let bob_read = &entry(&bob, "orders-db", "read").unwrap()["policies"][0];
    assert_eq!(
        bob_read["auto_approve"],
        json!([{"rule": "oncall", "max_duration": "30m", "schedule": null}])
    );
    assert!(bob_read["break_glass_max"].is_null());
    let (_, sam) = app.get("sam", "/api/v1/access").await;
    assert_eq!(
        entry(&sam, "orders-db", "read").unwrap()["policies"][0]["break_glass_max"],
        "1h"
    );

    // What the list offers, the evaluator grants; what it leaves out, the evaluator refuses.
    let r = app
        .request(
            "bob",
            json!({"resource": "orders-db", "role": "read", "duration": "30m", "reason": "pager"}),
        )
        .await;
    assert_eq!(
        r["state"], "active",
        "approved at once by the oncall rule: {r}"
    );
    let (_, mallory) = app.get("mallory", "/api/v1/access").await;
    assert_eq!(mallory, json!([]));
    let (s, _) = app
        .post(
            "mallory",
            "/api/v1/requests",
            json!({"resource": "orders-db", "role": "read", "duration": "1m", "reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get("nobody", "/api/v1/access").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
