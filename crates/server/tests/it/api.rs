use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{STANDARD, TestApp, read};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn request_approve_release_is_audited_end_to_end() {
    let app = TestApp::start(STANDARD).await;
    let r = app.request("alice", read("30m")).await;
    assert_eq!(r["state"], "pending");
    assert_eq!(r["policies"], json!(["engineers-read-orders"]));
    assert!(r["grant_id"].is_null());
    let id = id(&r);

    let (s, v) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{id}/approve"),
            json!({"comment": "go"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "active");
    assert_eq!(v["approvals"][0]["by"], "dora");
    let grant = v["grant_id"].as_str().unwrap().to_owned();
    let starts: jiff::Timestamp = v["grant"]["starts_at"].as_str().unwrap().parse().unwrap();
    let ends: jiff::Timestamp = v["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(ends.duration_since(starts).as_secs(), 1800);

    let (s, v) = app.get("alice", "/api/v1/grants?active=true").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], grant.as_str());
    assert_eq!(v[0]["needs_review"], false);

    let (s, v) = app
        .post(
            "alice",
            &format!("/api/v1/grants/{grant}/release"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "released");
    assert_eq!(v["end_reason"], "released");
    assert_eq!(
        app.actions(&id).await,
        [
            "request.created",
            "request.approved",
            "grant.activated",
            "grant.revoking",
            "grant.released"
        ]
    );
    let (_, events) = app
        .get("root", &format!("/api/v1/audit/events?request={id}"))
        .await;
    assert_eq!(events[0]["actor"], "alice");
    assert_eq!(events[0]["details"]["reason"], "INC-1 look at orders");
    assert_eq!(events[0]["details"]["duration"], "30m");
    assert_eq!(events[1]["details"]["comment"], "go");
    assert_eq!(events[4]["grant_id"], grant.as_str());
    // "done" retires it: releasing again changes nothing, using it again is impossible
    let (s, _) = app
        .post(
            "alice",
            &format!("/api/v1/grants/{grant}/release"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.actions(&id).await.len(), 5);
    let (s, v) = app
        .post("dan", &format!("/api/v1/requests/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "conflict");
}

const PEER: &str = r#"
[[resources]]
name = "peer-db"
kind = "none"
[resources.roles.read]

[[policies]]
name = "peer-review"
principals = ["group:engineering"]
resources = ["peer-db"]
roles = ["read"]
max_duration = "1h"
[policies.approval]
approvers = ["group:engineering"]
required = 1
"#;

#[tokio::test]
async fn self_approval_is_refused_and_audited() {
    let app = TestApp::start(PEER).await;
    let r = app
        .request(
            "alice",
            json!({"resource": "peer-db", "role": "read", "duration": "10m"}),
        )
        .await;
    let (s, v) = app
        .post(
            "alice",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("you are the requester"),
        "{v}"
    );
    assert_eq!(app.read_request(&id(&r)).await["state"], "pending");
    let (_, events) = app
        .get(
            "root",
            &format!("/api/v1/audit/events?request={}&outcome=denied", id(&r)),
        )
        .await;
    assert_eq!(events[0]["action"], "request.approve");
    assert_eq!(events[0]["actor"], "alice");
    // a peer may approve
    let (s, v) = app
        .post(
            "bob",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "active");
}

#[tokio::test]
async fn approval_by_a_non_approver_is_refused_in_policy_terms() {
    let app = TestApp::start(STANDARD).await;
    let r = app.request("alice", read("10m")).await;
    let (s, v) = app
        .post(
            "bob",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    // bob cannot see alice's request (not an approver), so it does not exist for him
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = app
        .post(
            "audrey",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs 1 approval(s) from group:dba (policy engineers-read-orders)"),
        "{v}"
    );
}

#[tokio::test]
async fn k_of_n_approvals_count_distinct_people() {
    let app = TestApp::start(STANDARD).await;
    let body =
        json!({"resource": "orders-db", "role": "admin", "duration": "20m", "ticket": "INC-4411"});
    let r = app.request("alice", body).await;
    let path = format!("/api/v1/requests/{}/approve", id(&r));
    let (_, v) = app.post("dora", &path, json!({})).await;
    assert_eq!(v["state"], "pending");
    let (_, v) = app.post("dora", &path, json!({})).await;
    assert_eq!(v["state"], "pending", "the same person twice counts once");
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    let (_, v) = app.post("dan", &path, json!({})).await;
    assert_eq!(v["state"], "active");
    assert_eq!(
        app.actions(&id(&r)).await,
        [
            "request.created",
            "request.approval_recorded",
            "request.approved",
            "grant.activated"
        ]
    );
}

#[tokio::test]
async fn limits_are_refused_with_the_rule_and_audited() {
    let app = TestApp::start(STANDARD).await;
    let (s, v) = app.post("alice", "/api/v1/requests", read("5h")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds max_duration 4h"),
        "{v}"
    );
    let (s, v) = app
        .post(
            "alice",
            "/api/v1/requests",
            json!({"resource": "orders-db", "role": "read", "duration": "1h"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reason is required"),
        "{v}"
    );
    let admin = |ticket: Option<&str>| json!({"resource": "orders-db", "role": "admin", "duration": "20m", "ticket": ticket});
    let (s, v) = app.post("alice", "/api/v1/requests", admin(None)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ticket matching"),
        "{v}"
    );
    let (s, v) = app
        .post("alice", "/api/v1/requests", admin(Some("JIRA-12")))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{v}"
    );
    let (s, _) = app
        .post("alice", "/api/v1/requests", admin(Some("CHG-7")))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // default deny
    let (s, v) = app.post("mallory", "/api/v1/requests", read("10m")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("default deny"),
        "{v}"
    );
    let (_, refused) = app
        .get("audrey", "/api/v1/audit/events?action=request.refused")
        .await;
    assert_eq!(refused.as_array().unwrap().len(), 5);
    assert!(
        refused
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] == "denied")
    );
    // malformed input changes nothing and says why
    let (s, v) = app
        .post(
            "alice",
            "/api/v1/requests",
            json!({"resource": "orders-db", "role": "read", "duration": "soon", "reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "invalid_argument");
    let (s, v) = app
        .post(
            "alice",
            "/api/v1/requests",
            json!({"resource": "nope-db", "role": "read", "duration": "1m"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown resource"),
        "{v}"
    );
    let (s, _) = app
        .post(
            "alice",
            "/api/v1/requests",
            json!({"resource": "orders-db", "rolle": "read"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn auto_approval_names_the_rule_and_honours_its_schedule() {
    let today = jitgate_core::Clock::now(&jitgate_core::SystemClock)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .weekday();
    let other_day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        [(today.to_monday_zero_offset() as usize + 2) % 7];
    let policies = format!(
        r#"
[[resources]]
name = "orders-db"
kind = "none"
[resources.roles.read]

[[policies]]
name = "p"
principals = ["group:engineering"]
resources = ["orders-db"]
roles = ["read"]
max_duration = "1h"
[policies.approval]
approvers = ["group:dba"]
[[policies.auto_approve]]
name = "oncall-now"
principals = ["group:oncall"]
max_duration = "30m"
schedule = "daily 00:00-24:00 UTC"
[[policies.auto_approve]]
name = "engineers-other-day"
principals = ["group:engineering"]
max_duration = "30m"
schedule = "{other_day} 00:00-24:00 UTC"
"#
    );
    let app = TestApp::start(&policies).await;
    let r = app
        .request(
            "bob",
            json!({"resource": "orders-db", "role": "read", "duration": "20m"}),
        )
        .await;
    assert_eq!(r["state"], "active", "{r}");
    assert_eq!(r["approved_by_rule"], "p/oncall-now");
    let (_, events) = app
        .get(
            "root",
            &format!(
                "/api/v1/audit/events?request={}&action=request.approved",
                id(&r)
            ),
        )
        .await;
    assert_eq!(events[0]["actor"], "jitgate");
    assert_eq!(events[0]["details"]["rule"], "p/oncall-now");
    // outside its schedule the other rule does not apply: alice waits for approval
    let r = app
        .request(
            "alice",
            json!({"resource": "orders-db", "role": "read", "duration": "20m"}),
        )
        .await;
    assert_eq!(r["state"], "pending");
    // longer than the rule allows: bob waits too (once his first grant is released)
    let grant = events[0]["grant_id"].as_str().unwrap();
    let (s, _) = app
        .post("bob", &format!("/api/v1/grants/{grant}/release"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = app
        .request(
            "bob",
            json!({"resource": "orders-db", "role": "read", "duration": "45m"}),
        )
        .await;
    assert_eq!(r["state"], "pending");
}

#[tokio::test]
async fn service_accounts_use_the_api_and_expiry_ends_grants_on_time() {
    let app = TestApp::start(STANDARD).await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "deploy", "duration": "2s"}),
        )
        .await;
    assert_eq!(r["state"], "active");
    let expires: jiff::Timestamp = r["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    let v = app
        .wait_state(&id(&r), "expired", Duration::from_secs(6))
        .await;
    assert_eq!(v["grant"]["end_reason"], "expired");
    let (_, events) = app
        .get(
            "root",
            &format!(
                "/api/v1/audit/events?request={}&action=grant.expired",
                id(&r)
            ),
        )
        .await;
    let ended: jiff::Timestamp = events[0]["ts"].as_str().unwrap().parse().unwrap();
    let lag = ended.duration_since(expires);
    assert!(
        lag.as_millis() >= 0 && lag.as_millis() < 1000,
        "expired {lag:?} after expires_at"
    );
}

#[tokio::test]
async fn pending_requests_time_out() {
    let app =
        TestApp::start(&STANDARD.replace("pending_timeout = \"1h\"", "pending_timeout = \"1s\""))
            .await;
    let r = app.request("alice", read("10m")).await;
    app.wait_state(&id(&r), "timed_out", Duration::from_secs(5))
        .await;
    assert_eq!(
        app.actions(&id(&r)).await,
        ["request.created", "request.timed_out"]
    );
    let (s, _) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn deny_and_cancel() {
    let app = TestApp::start(STANDARD).await;
    let r = app.request("alice", read("10m")).await;
    let (s, v) = app
        .post(
            "alice",
            &format!("/api/v1/requests/{}/deny", id(&r)),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/deny", id(&r)),
            json!({"reason": "change freeze"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "denied");
    assert_eq!(v["denial"]["comment"], "change freeze");
    let r = app.request("alice", read("10m")).await;
    let (s, _) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/cancel", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only the requester cancels");
    let (s, v) = app
        .post(
            "alice",
            &format!("/api/v1/requests/{}/cancel", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "cancelled");
    assert_eq!(v["cancellation"]["by"], "alice", "{v}");
}

#[tokio::test]
async fn admins_revoke_others_cannot() {
    let app = TestApp::start(STANDARD).await;
    let r = app.request("bob", read("30m")).await;
    let grant = r["grant_id"].as_str().unwrap();
    let (s, v) = app
        .post(
            "dora",
            &format!("/api/v1/grants/{grant}/revoke"),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = app
        .post(
            "root",
            &format!("/api/v1/grants/{grant}/revoke"),
            json!({"reason": "suspicious"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "revoked");
    assert_eq!(v["ended_by"], "root");
    assert_eq!(v["end_comment"], "suspicious");
    let (_, denied) = app
        .get(
            "root",
            "/api/v1/audit/events?action=grant.revoke&outcome=denied",
        )
        .await;
    assert_eq!(denied[0]["actor"], "dora");
}

#[tokio::test]
async fn extension_needs_approval_and_continues_without_a_gap() {
    let app = TestApp::start(STANDARD).await;
    let r = app.request("alice", read("30m")).await;
    let (_, v) = app
        .post(
            "dora",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    let grant = v["grant_id"].as_str().unwrap().to_owned();
    let before: jiff::Timestamp = v["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    let (s, v) = app
        .post(
            "alice",
            &format!("/api/v1/grants/{grant}/extend"),
            json!({"duration": "5h"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "an extension is judged by the same limits: {v}"
    );
    let (s, v) = app
        .post(
            "alice",
            &format!("/api/v1/grants/{grant}/extend"),
            json!({"duration": "1h", "reason": "still fixing"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["extensions"][0]["state"], "pending");
    assert_eq!(v["expires_at"], before.to_string());
    let (s, _) = app
        .post(
            "alice",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no self-approval of extensions");
    let (s, v) = app
        .post(
            "dan",
            &format!("/api/v1/requests/{}/approve", id(&r)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "active");
    let after: jiff::Timestamp = v["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        after.duration_since(before).as_secs(),
        3600,
        "extended from the old end: no gap"
    );
    assert!(
        app.actions(&id(&r))
            .await
            .contains(&"grant.extended".to_owned())
    );
    // an on-call engineer's short extension is approved automatically
    let r = app.request("bob", read("10m")).await;
    let g = r["grant_id"].as_str().unwrap();
    let (_, v) = app
        .post(
            "bob",
            &format!("/api/v1/grants/{g}/extend"),
            json!({"duration": "10m"}),
        )
        .await;
    assert_eq!(v["extensions"][0]["state"], "approved");
}

#[tokio::test]
async fn break_glass_is_flagged_until_reviewed_by_someone_else() {
    let app = TestApp::start(STANDARD).await;
    let (s, v) = app.post("alice", "/api/v1/requests", json!({"resource": "orders-db", "role": "read", "duration": "10m", "reason": "outage", "break_glass": true})).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "alice is not in the break-glass group: {v}"
    );
    let r = app.request("sam", json!({"resource": "orders-db", "role": "read", "duration": "30m", "reason": "outage", "break_glass": true})).await;
    assert_eq!(r["state"], "active");
    assert_eq!(r["break_glass"], true);
    let grant = r["grant_id"].as_str().unwrap();
    assert_eq!(r["grant"]["needs_review"], true);
    let (s, _) = app
        .post("sam", &format!("/api/v1/grants/{grant}/review"), json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "never by the holder");
    let (s, v) = app
        .post(
            "dora",
            &format!("/api/v1/grants/{grant}/review"),
            json!({"comment": "justified by INC-9"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["needs_review"], false);
    assert_eq!(v["review"]["by"], "dora");
}

#[tokio::test]
async fn scheduled_start_activates_at_start_at() {
    let app = TestApp::start(STANDARD).await;
    let start = jitgate_core::duration::add(
        jitgate_core::Clock::now(&jitgate_core::SystemClock),
        Duration::from_secs(2),
    );
    let mut body = read("10m");
    body["start_at"] = json!(start.to_string());
    let r = app.request("bob", body).await;
    assert_eq!(r["state"], "approved");
    assert_eq!(r["grant"]["starts_at"], start.to_string());
    let v = app
        .wait_state(&id(&r), "active", Duration::from_secs(5))
        .await;
    let activated: jiff::Timestamp = v["grant"]["activated_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(activated >= start);
    // The window runs from activation for the whole duration, as for every kind of resource.
    let starts: jiff::Timestamp = v["grant"]["starts_at"].as_str().unwrap().parse().unwrap();
    let ends: jiff::Timestamp = v["grant"]["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(starts >= start && starts <= activated, "{v}");
    assert_eq!(ends.duration_since(starts).as_secs(), 600);
    let mut past = read("10m");
    past["start_at"] = json!("2020-01-01T00:00:00Z");
    let (s, _) = app.post("bob", "/api/v1/requests", past).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn restart_ends_grants_that_expired_while_down() {
    let mut app = TestApp::start(STANDARD).await;
    let r = app
        .request(
            "ci-bot",
            json!({"resource": "orders-db", "role": "deploy", "duration": "1s"}),
        )
        .await;
    app.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.boot().await;
    // catch-up runs before the server accepts a request: no waiting here
    let v = app.read_request(&id(&r)).await;
    assert_eq!(v["state"], "expired", "{v}");
}

#[tokio::test]
async fn people_see_their_own_history_auditors_see_all() {
    let app = TestApp::start(STANDARD).await;
    let a = app.request("alice", read("10m")).await;
    let b = app.request("bob", read("10m")).await;
    let (s, _) = app
        .get("bob", &format!("/api/v1/requests/{}", id(&a)))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, mine) = app.get("bob", "/api/v1/requests").await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["id"], b["id"]);
    let (_, approver) = app.get("dora", "/api/v1/requests?state=pending").await;
    assert_eq!(
        approver.as_array().unwrap().len(),
        1,
        "dora sees what awaits her approval"
    );
    let (_, bobs) = app.get("bob", "/api/v1/audit/events").await;
    assert!(
        bobs.as_array()
            .unwrap()
            .iter()
            .all(|e| e["request_id"] == b["id"]),
        "{bobs}"
    );
    let (_, all) = app.get("audrey", "/api/v1/audit/events").await;
    assert!(all.as_array().unwrap().len() >= 4);
    let (s, v) = app.get("bob", "/api/v1/requests?state=bogus").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn unauthenticated_calls_get_401_in_the_error_shape() {
    let app = TestApp::start(STANDARD).await;
    let (s, v) = app.get("nobody", "/api/v1/requests").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthenticated");
    let resp = reqwest::get(format!("{}/api/v1/requests", app.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (s, v) = app.get("alice", "/api/v1/nothing-here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
}

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let app = TestApp::start(STANDARD).await;
    app.request(
        "ci-bot",
        json!({"resource": "orders-db", "role": "deploy", "duration": "1m"}),
    )
    .await;
    let health = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("jitgate_requests_created_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jitgate_grants_activated_total 1"),
        "{metrics}"
    );
    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/requests",
        "/api/v1/requests/{id}/approve",
        "/api/v1/grants/{id}/extend",
        "/api/v1/audit/events",
    ] {
        assert!(doc["paths"][path].is_object(), "missing {path}");
    }
    assert!(doc["components"]["schemas"]["RequestView"]["properties"]["grant_id"].is_object());
}

#[tokio::test]
async fn driving_a_stale_copy_never_provisions_twice() {
    let app = TestApp::start(STANDARD).await;
    let start = jitgate_core::duration::add(
        jitgate_core::Clock::now(&jitgate_core::SystemClock),
        Duration::from_millis(500),
    );
    let mut body = read("10m");
    body["start_at"] = json!(start.to_string());
    let r = app.request("bob", body).await;
    let running = app.running.as_ref().unwrap();
    let stale = running
        .app
        .store
        .get_request(jitgate_store::RequestKey::Request(id(&r)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stale.state, jitgate_core::State::Approved);
    app.wait_state(&id(&r), "active", Duration::from_secs(5))
        .await;
    // The scheduler activated it; a driver holding the old copy must see that, not activate again.
    let now = running.app.drive(stale).await.unwrap();
    assert_eq!(now.state, jitgate_core::State::Active);
    assert_eq!(
        app.actions(&id(&r))
            .await
            .iter()
            .filter(|a| *a == "grant.activated")
            .count(),
        1
    );
}
