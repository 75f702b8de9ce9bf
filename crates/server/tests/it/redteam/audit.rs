//! Class 7 of issue 17: the audit records what ran, what it ran under, and who was turned away.

use serde_json::Value;

use super::Lab;
use super::raw::{bind, execute, query, sync};

async fn events(lab: &Lab, q: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = std::time::Instant::now();
    loop {
        let (_, v) = lab
            .app
            .get("root", &format!("/api/v1/audit/events?{q}&limit=1000"))
            .await;
        let ev = v.as_array().cloned().unwrap_or_default();
        if pred(&ev) {
            return ev;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "events for {q} never matched: {ev:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_executed_statement_its_options_and_upstream_refusals_are_on_record() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    // An Execute bound to a statement made by SQL PREPARE is recorded with the PREPARE's SQL.
    let prepare = "PREPARE audited AS SELECT count(*) FROM payments";
    let mut s = lab
        .gateway("guarded-db", &[("options", "-c statement_timeout=5000")])
        .await;
    s.query(prepare).await;
    let reply = s
        .exchange(&[bind("", "audited", false), execute(""), sync()], 1)
        .await;
    assert!(reply.errors().is_empty(), "{:?}", reply.errors());
    s.exchange(&[query("SELECT 1")], 1).await;
    let statements = events(&lab, "action=session.statement", |ev| ev.len() >= 3).await;
    let extended: Vec<&Value> = statements
        .iter()
        .filter(|e| e["details"]["protocol"] == "extended")
        .collect();
    assert_eq!(extended.len(), 1, "{statements:#?}");
    assert_eq!(extended[0]["details"]["sql"], prepare);
    // The startup options are on the session's opening record.
    let opened = events(&lab, "action=session.opened", |ev| {
        ev.iter()
            .any(|e| e["details"]["options"] == "-c statement_timeout=5000")
    })
    .await;
    assert!(!opened.is_empty());
    // A login jitgate admits and PostgreSQL then refuses (its database does not exist) is on
    // record with the upstream's SQLSTATE.
    let refused = super::raw::Raw::connect(
        lab.port,
        &[("user", "ci-bot"), ("database", "gone-db")],
        Some("tok-ci-bot"),
    )
    .await
    .err()
    .expect("the upstream refuses");
    assert_eq!(refused.errors()[0].0, "3D000");
    let ev = events(&lab, "action=session.refused", |ev| {
        ev.iter().any(|e| e["details"]["code"] == "3D000")
    })
    .await;
    let e = ev.iter().find(|e| e["details"]["code"] == "3D000").unwrap();
    assert_eq!(e["actor"], "ci-bot");
    assert_eq!(e["resource"], "gone-db");
    assert_eq!(e["details"]["refused_by"], "upstream");
    assert!(
        e["grant_id"]
            .as_str()
            .is_some_and(|g| g.starts_with("grt_"))
    );
}
