//! `/metrics`: what an operator alerts on, in a valid Prometheus exposition.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::helpers::{STANDARD, TestApp, read};

pub async fn scrape(app: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every sample as `name{labels}` → value, after checking the text is a valid exposition:
/// each family declared once with HELP and TYPE before its samples, each sample a number.
pub fn parse(text: &str) -> HashMap<String, f64> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped = HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            typed.contains_key(family) && helped.contains(family),
            "{name} has no TYPE or HELP before it"
        );
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            samples.insert(series.to_owned(), v).is_none(),
            "{series} twice"
        );
    }
    samples
}

#[tokio::test]
async fn the_exposition_shows_what_stands_and_what_happened() {
    let app = TestApp::start(STANDARD).await;
    app.request("alice", read("10m")).await; // pending
    app.request(
        "ci-bot",
        json!({"resource": "orders-db", "role": "deploy", "duration": "10m"}),
    )
    .await; // active at once
    let m = parse(&scrape(&app).await);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:?}"));
    assert_eq!(
        get(r#"jitgate_requests{state="pending",resource="orders-db"}"#),
        1.0
    );
    assert_eq!(
        get(r#"jitgate_requests{state="active",resource="orders-db"}"#),
        1.0
    );
    assert_eq!(get("jitgate_grants_revoking"), 0.0);
    assert_eq!(get("jitgate_grants_revoking_oldest_seconds"), 0.0);
    assert_eq!(get("jitgate_store_up"), 1.0);
    assert_eq!(get("jitgate_requests_created_total"), 2.0);
    assert!(get("jitgate_audit_head_seq") >= 4.0, "{m:?}");
    assert!(
        get("jitgate_audit_append_lag_seconds_count") >= 2.0,
        "{m:?}"
    );
    assert!(get("jitgate_audit_checkpoint_age_seconds") < 60.0);
    // The audit log signs a checkpoint within its interval (1 s): its age is then fresh.
    let start = std::time::Instant::now();
    loop {
        let m = parse(&scrape(&app).await);
        if m["jitgate_audit_checkpoint_age_seconds"] < 1.5 && start.elapsed().as_secs_f64() > 1.2 {
            break;
        }
        assert!(start.elapsed().as_secs() < 5, "{m:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A refusal is counted once it is recorded; a refused change that wrote nothing is not a
/// grant activated, and what ended leaves the gauges.
#[tokio::test]
async fn counters_follow_committed_events_and_gauges_follow_state() {
    let app = TestApp::start(STANDARD).await;
    let (s, _) = app
        .post(
            "mallory",
            "/api/v1/requests",
            json!({"resource": "orders-db", "role": "read", "duration": "1m", "reason": "x"}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::FORBIDDEN);
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "deploy", "duration": "10m"}),
        )
        .await;
    let grant = r["grant_id"].as_str().unwrap();
    let (s, _) = app
        .post(
            "root",
            &format!("/api/v1/grants/{grant}/release"),
            json!({}),
        )
        .await;
    assert_eq!(
        s,
        reqwest::StatusCode::FORBIDDEN,
        "only the holder releases"
    );
    let (s, _) = app
        .post(
            "ci-bot",
            &format!("/api/v1/grants/{grant}/release"),
            json!({}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK);
    let m = parse(&scrape(&app).await);
    assert_eq!(m["jitgate_refusals_total"], 2.0, "{m:?}");
    assert_eq!(m["jitgate_grants_activated_total"], 1.0);
    assert_eq!(m["jitgate_grants_ended_total"], 1.0);
    assert!(
        !m.keys().any(|k| k.starts_with("jitgate_requests{")),
        "nothing stands: {m:?}"
    );
}

/// Anchors are named without what a webhook URL may hide, and a failing one shows in the
/// failures counter while a file anchor's write age stays fresh.
#[tokio::test]
async fn anchor_writes_and_failures_are_exposed() {
    let anchors = tempfile::tempdir().unwrap();
    let file = anchors.path().join("checkpoints");
    let config = format!(
        "{STANDARD}\n[audit]\nanchors = [\"file://{}\", \"http://127.0.0.1:9/hook?token=s3cret\"]\n",
        file.display()
    );
    let app = TestApp::start(&config).await;
    app.request(
        "ci-bot",
        json!({"resource": "orders-db", "role": "deploy", "duration": "10m"}),
    )
    .await;
    let start = std::time::Instant::now();
    let file_series = format!(
        r#"jitgate_audit_anchor_write_age_seconds{{anchor="file://{}"}}"#,
        file.display()
    );
    let hook = r#"jitgate_audit_anchor_failures_total{anchor="http://127.0.0.1:9"}"#;
    loop {
        let text = scrape(&app).await;
        assert!(!text.contains("s3cret"), "{text}");
        let m = parse(&text);
        if m.get(hook).is_some_and(|n| *n >= 1.0) && file.is_file() {
            assert!(m[&file_series] < 5.0, "{m:?}");
            break;
        }
        assert!(start.elapsed().as_secs() < 10, "{m:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
