//! `POST /api/v1/policy/explain`: the caller's own what-if, with the same decision a request
//! would get, and nothing recorded.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{STANDARD, TestApp};

#[tokio::test]
async fn explain_tells_the_caller_the_decision_a_request_would_get() {
    let app = TestApp::start(STANDARD).await;
    let ask =
        json!({"resource": "orders-db", "role": "read", "duration": "20m", "reason": "INC-1"});
    // bob is on call: the rule approves at once; alice waits for one dba.
    let (s, bob) = app.post("bob", "/api/v1/policy/explain", ask.clone()).await;
    assert_eq!(s, StatusCode::OK, "{bob}");
    assert_eq!(bob["decision"], "auto_approved", "{bob}");
    assert_eq!(bob["rule"], "oncall");
    let (_, alice) = app
        .post("alice", "/api/v1/policy/explain", ask.clone())
        .await;
    assert_eq!(alice["decision"], "needs_approval", "{alice}");
    assert_eq!(alice["approvals"][0]["required"], 1);
    assert_eq!(alice["approvals"][0]["approvers"], json!(["group:dba"]));
    assert!(
        alice["approvals"][0].get("eligible").is_none(),
        "names stay offline"
    );
    assert_eq!(alice["max_duration"], "4h");
    // Only the policies that match the caller are shown.
    let shown: Vec<&str> = alice["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["engineers-read-orders"]);
    assert_eq!(alice["unmatched_hidden"], 2);
    // Too long: refused, naming the limit, exactly as a request would be.
    let long = json!({"resource": "orders-db", "role": "read", "duration": "5h", "reason": "x"});
    let (_, e) = app
        .post("alice", "/api/v1/policy/explain", long.clone())
        .await;
    assert_eq!(e["decision"], "denied");
    let (s, refused) = app.post("alice", "/api/v1/requests", long).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(e["message"], refused["error"]["message"], "one evaluator");
    // An unknown role is bad input; no token is unauthenticated.
    let bad = json!({"resource": "orders-db", "role": "nope", "duration": "5m"});
    let (s, _) = app.post("alice", "/api/v1/policy/explain", bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.post("nobody", "/api/v1/policy/explain", ask).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A what-if records nothing: only alice's refused request is in her requests.
    let (_, list) = app.get("alice", "/api/v1/requests").await;
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
}
