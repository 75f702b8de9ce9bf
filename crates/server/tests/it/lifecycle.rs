//! The lifecycle's edges over the API: grants that begin ending, extensions, overlaps, repeated
//! decisions and what requesters and approvers are told.

use std::time::Duration;

use jitgate_core::{Clock, SystemClock};
use jitgate_store::RequestKey;
use serde_json::{Value, json};

use crate::helpers::{STANDARD, TestApp};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_scheduler_finishes_a_grant_left_revoking_at_once() {
    let app = TestApp::start(STANDARD).await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "deploy", "duration": "10m"}),
        )
        .await;
    assert_eq!(r["state"], "active", "{r}");
    // What a request cut short after its commit used to leave behind: `revoking`, and nobody
    // driving it.
    let running = app.running.as_ref().unwrap();
    let bot = running
        .app
        .config
        .principals
        .iter()
        .find(|p| p.principal.name == "ci-bot")
        .unwrap()
        .principal
        .clone();
    let left = running
        .app
        .store
        .update_request(
            RequestKey::Request(id(&r)),
            Box::new(move |r| r.release(&bot, SystemClock.now())),
        )
        .await
        .unwrap();
    assert_eq!(left.state, jitgate_core::State::Revoking);
    app.wait_state(&id(&r), "released", Duration::from_secs(2))
        .await;
}

#[tokio::test]
async fn auto_approval_bounds_an_extended_grants_whole_length() {
    let app = TestApp::start(STANDARD).await;
    // bob is on call: up to 30 minutes are approved without a person.
    let r = app.request("bob", crate::helpers::read("15m")).await;
    assert_eq!(r["state"], "active", "{r}");
    let grant = r["grant_id"].as_str().unwrap();
    let extend = |minutes: &str| {
        let path = format!("/api/v1/grants/{grant}/extend");
        let body = json!({ "duration": minutes, "reason": "still on it" });
        let app = &app;
        async move { app.post("bob", &path, body).await }
    };
    let (s, g) = extend("10m").await;
    assert_eq!(s, reqwest::StatusCode::OK, "{g}");
    assert_eq!(g["extensions"][0]["state"], "approved", "25m in all: {g}");
    let (s, g) = extend("10m").await;
    assert_eq!(s, reqwest::StatusCode::OK, "{g}");
    assert_eq!(
        g["extensions"][1]["state"], "pending",
        "35m in all is past the rule's 30m: a person decides: {g}"
    );
    let (s, v) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    assert_eq!(v["grant"]["extensions"][1]["state"], "approved");
    // 35m + 4h is past the policy's 4h in all: refused, and the refusal is audited.
    let (s, e) = extend("4h").await;
    assert_eq!(s, reqwest::StatusCode::FORBIDDEN, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("would last 4h 35m in all, over max_duration 4h"),
        "{e}"
    );
    let (_, ev) = app
        .get(
            "root",
            &format!("/api/v1/audit/events?grant={grant}&action=grant.extend&outcome=denied"),
        )
        .await;
    assert_eq!(ev.as_array().unwrap().len(), 1, "{ev}");
}

#[tokio::test]
async fn a_second_grant_of_a_role_already_held_is_refused_unless_a_policy_allows_it() {
    use crate::helpers::read;
    let app = TestApp::start(STANDARD).await;
    let r = app.request("bob", read("20m")).await;
    assert_eq!(r["state"], "active", "{r}");
    let grant = r["grant_id"].as_str().unwrap();
    let (s, e) = app.post("bob", "/api/v1/requests", read("10m")).await;
    assert_eq!(s, reqwest::StatusCode::FORBIDDEN, "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("bob already holds role read on orders-db")
            && message.contains(&format!("jitgate grant extend {grant}")),
        "{message}"
    );
    let (_, ev) = app
        .get(
            "root",
            "/api/v1/audit/events?action=request.refused&actor=bob",
        )
        .await;
    assert_eq!(ev.as_array().unwrap().len(), 1, "{ev}");
    assert_eq!(ev[0]["outcome"], "denied");
    assert_eq!(ev[0]["details"]["message"], message);
    // Another role, or a window after this one ends, is not an overlap.
    let mut later = read("10m");
    let ends: jiff::Timestamp = r["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    later["start_at"] = json!(ends.to_string());
    app.request("bob", later).await;
    // A policy may allow overlapping grants.
    let mut app2 = app;
    app2.stop().await;
    let text = std::fs::read_to_string(&app2.config_path)
        .unwrap()
        .replacen(
            "max_duration = \"4h\"\n",
            "max_duration = \"4h\"\nallow_overlapping = true\n",
            1,
        );
    std::fs::write(&app2.config_path, text).unwrap();
    app2.boot().await;
    let again = app2.request("bob", read("10m")).await;
    assert_eq!(again["state"], "active", "{again}");
}

#[tokio::test]
async fn approvers_see_pending_extensions_and_are_told_what_they_decided() {
    use crate::helpers::read;
    let app = TestApp::start(STANDARD).await;
    let r = app.request("alice", read("30m")).await;
    let (_, v) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(v["state"], "active", "{v}");
    assert_eq!(
        v["decided"],
        json!({"kind": "request", "outcome": "approved", "duration": "30m"})
    );
    let grant = v["grant_id"].as_str().unwrap();
    let (_, g) = app
        .post(
            "alice",
            &format!("/api/v1/grants/{grant}/extend"),
            json!({"duration": "10m", "reason": "almost there"}),
        )
        .await;
    assert_eq!(g["extensions"][0]["state"], "pending", "{g}");
    // Every approver sees it among what is pending, marked as an extension.
    for approver in ["dora", "dan"] {
        let (_, list) = app.get(approver, "/api/v1/requests?state=pending").await;
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 1, "{approver}: {list:?}");
        assert_eq!(list[0]["id"], id(&r).as_str());
        assert_eq!(list[0]["state"], "active");
        assert_eq!(list[0]["awaiting"]["kind"], "extension");
        assert_eq!(list[0]["awaiting"]["duration"], "10m");
        assert_eq!(list[0]["awaiting"]["reason"], "almost there");
    }
    let (_, list) = app.get("mallory", "/api/v1/requests?state=pending").await;
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    let (_, active) = app.get("dora", "/api/v1/requests?state=active").await;
    assert_eq!(active.as_array().unwrap().len(), 1);
    // Approving says it was the extension that was approved, not the 30m request.
    let (_, v) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(
        v["decided"],
        json!({"kind": "extension", "outcome": "approved", "duration": "10m"})
    );
    assert!(v["awaiting"].is_null(), "{v}");
    let (_, list) = app.get("dora", "/api/v1/requests?state=pending").await;
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    // And denying one says so too.
    app.post(
        "alice",
        &format!("/api/v1/grants/{grant}/extend"),
        json!({"duration": "5m"}),
    )
    .await;
    let (_, v) = app
        .post(
            "dan",
            &format!("/api/v1/requests/{}/deny", id(&r)),
            json!({"reason": "wrap it up"}),
        )
        .await;
    assert_eq!(
        v["decided"],
        json!({"kind": "extension", "outcome": "denied", "duration": "5m"})
    );
    // The requester reads who decided the extension, and why.
    let (_, shown) = app
        .get("alice", &format!("/api/v1/requests/{}", id(&r)))
        .await;
    let decision = &shown["grant"]["extensions"][1]["decision"];
    assert_eq!(decision["by"], "dan", "{shown}");
    assert_eq!(decision["comment"], "wrap it up", "{shown}");
}

#[tokio::test]
async fn repeating_a_decision_is_a_no_op_for_the_same_person_and_409_for_others() {
    use crate::helpers::read;
    use reqwest::StatusCode;
    let app = TestApp::start(STANDARD).await;
    // Each call is made twice by the same person (200, nothing new audited), then once by
    // someone else (409, naming who decided).
    let twice = |who: &'static str, path: String, body: Value| {
        let app = &app;
        async move {
            let (s1, v1) = app.post(who, &path, body.clone()).await;
            assert_eq!(s1, StatusCode::OK, "{path}: {v1}");
            let (s2, v2) = app.post(who, &path, body).await;
            assert_eq!(s2, StatusCode::OK, "{path} again: {v2}");
            assert_eq!(v1["state"], v2["state"]);
        }
    };
    let conflict = |who: &'static str, path: String, names: &'static str| {
        let app = &app;
        async move {
            let (s, v) = app.post(who, &path, json!({})).await;
            assert_eq!(s, StatusCode::CONFLICT, "{path}: {v}");
            let m = v["error"]["message"].as_str().unwrap();
            assert!(m.contains(names), "{m}");
        }
    };
    // deny
    let r = app.request("alice", read("10m")).await;
    let path = format!("/api/v1/requests/{}/deny", id(&r));
    twice("dora", path.clone(), json!({"reason": "freeze"})).await;
    conflict("dan", path, "already denied by dora").await;
    let denials = app.actions(&id(&r)).await;
    assert_eq!(denials.iter().filter(|a| *a == "request.denied").count(), 1);
    // cancel
    let r = app.request("alice", read("10m")).await;
    twice(
        "alice",
        format!("/api/v1/requests/{}/cancel", id(&r)),
        json!({}),
    )
    .await;
    conflict(
        "dora",
        format!("/api/v1/requests/{}/approve", id(&r)),
        "cancelled by alice",
    )
    .await;
    // approve
    let r = app.request("alice", read("10m")).await;
    let path = format!("/api/v1/requests/{}/approve", id(&r));
    twice("dora", path.clone(), json!({})).await;
    conflict("dan", path, "already approved by dora").await;
    // review
    let bg = app.request("sam", json!({"resource": "orders-db", "role": "read", "duration": "30m", "reason": "outage", "break_glass": true})).await;
    let path = format!("/api/v1/grants/{}/review", bg["grant_id"].as_str().unwrap());
    twice("dora", path.clone(), json!({"comment": "ok"})).await;
    conflict("root", path, "already reviewed by dora").await;
    // revoke
    let path = format!("/api/v1/grants/{}/revoke", bg["grant_id"].as_str().unwrap());
    twice("root", path.clone(), json!({"reason": "done"})).await;
    // release
    let grant = app.read_request(&id(&r)).await["grant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    twice(
        "alice",
        format!("/api/v1/grants/{grant}/release"),
        json!({}),
    )
    .await;
}
