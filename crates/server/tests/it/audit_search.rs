//! The audit log's search and export filters over HTTP.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{STANDARD, TestApp};

/// `n` deploy grants of ci-bot's, one after another (each released before the next, since a
/// second grant of a role already held is refused).
async fn deploys(app: &TestApp, n: usize) {
    for _ in 0..n {
        let r = app
            .request(
                "ci-bot",
                json!({"resource": "orders-db", "role": "deploy", "duration": "1m"}),
            )
            .await;
        let release = format!("/api/v1/grants/{}/release", r["grant_id"].as_str().unwrap());
        let (s, v) = app.post("ci-bot", &release, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

/// An outcome that does not exist is refused with the ones that do, like `state`, instead of
/// quietly matching nothing.
#[tokio::test]
async fn an_unknown_outcome_is_refused_with_the_known_ones() {
    let app = TestApp::start(STANDARD).await;
    deploys(&app, 1).await;
    let (s, v) = app.get("root", "/api/v1/audit/events?outcome=succes").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("success, denied, failure, blocked"),
        "{v}"
    );
    let (s, _) = app.get("root", "/api/v1/audit/export?outcome=nope").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = app
        .get("root", "/api/v1/audit/events?outcome=success")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!v.as_array().unwrap().is_empty());
}

/// `limit` bounds an export as it bounds a search, and the export's own event records it.
#[tokio::test]
async fn export_honours_limit_and_after() {
    let app = TestApp::start(STANDARD).await;
    deploys(&app, 3).await;
    let export = |q: &'static str| {
        let url = format!("{}/api/v1/audit/export{q}", app.base);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth("tok-root")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let all = export("").await;
    assert!(all.lines().count() > 5, "{all}");
    let two = export("?limit=2").await;
    let seqs: Vec<i64> = two
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), 2, "{two}");
    let after = export("?after=2&limit=1").await;
    assert_eq!(after.lines().count(), 1, "{after}");
    assert!(after.contains("\"seq\":3"), "{after}");
    let csv = export("?limit=1&format=csv").await;
    assert_eq!(csv.lines().count(), 2, "the header and one event: {csv}");
    let (_, exported) = app
        .get("root", "/api/v1/audit/events?action=audit.exported")
        .await;
    assert_eq!(exported[1]["details"]["limit"], 2, "{exported}");
}
