//! The OpenAPI document against the running server: every operation documents the errors it
//! answers with, and a schema-driven fuzzer (schemathesis) finds no undocumented status, no
//! server error and no answer that breaks the document.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{STANDARD, TestApp, read, token};

const ADMIN_SELF_SERVICE: &str = r#"
[[policies]]
name = "security-self-service"
principals = ["group:security"]
resources = ["*"]
roles = ["*"]
max_duration = "1h"
[policies.approval]
approvers = ["group:security"]
required = 1
allow_self_approval = true
"#;

async fn document(app: &TestApp) -> Value {
    reqwest::get(format!("{}/api/v1/openapi.json", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_operation_documents_its_error_responses() {
    let app = TestApp::start(STANDARD).await;
    let doc = document(&app).await;
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let has = |code: &str| responses.contains_key(code);
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let takes_input = op.get("requestBody").is_some()
                || op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["in"] == "query");
            let mut want = Vec::new();
            if secured {
                want.push("401");
            }
            if path.contains('{') {
                want.push("404");
            }
            if takes_input {
                want.push("400");
            }
            if method == "post" && path.contains('{') {
                want.extend(["403", "409"]);
            }
            for code in want {
                if !has(code) {
                    missing.push(format!("{method} {path}: {code}"));
                }
            }
            for (code, r) in responses.iter().filter(|(c, _)| c.starts_with('4')) {
                let schema = &r["content"]["application/json"]["schema"]["$ref"];
                if schema != "#/components/schemas/ErrorBody" {
                    missing.push(format!("{method} {path}: {code} is not an ErrorBody"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
    for path in ["/healthz", "/metrics"] {
        assert!(
            doc["paths"][path]["get"]["responses"]["200"].is_object(),
            "{path}"
        );
    }
    let export = &doc["paths"]["/api/v1/audit/export"]["get"]["responses"]["200"]["content"];
    assert!(export["application/x-ndjson"].is_object() && export["text/csv"].is_object());
    let state = doc["paths"]["/api/v1/requests"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "state")
        .unwrap();
    assert_eq!(state["in"], "query");
    assert_eq!(state["schema"]["enum"][9], "timed_out", "{state}");
    // What the document says about a refusal is what the server answers.
    let (s, v) = app
        .post("alice", "/api/v1/requests/req_nothing/approve", json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // A body is an object: serde alone would read `[null]` as a struct (the fuzzer found it).
    let r = app.request("alice", read("10m")).await;
    let path = format!("/api/v1/requests/{}/deny", r["id"].as_str().unwrap());
    let (s, v) = app.post("dora", &path, json!([null])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        app.read_request(r["id"].as_str().unwrap()).await["state"],
        "pending"
    );
}

/// schemathesis, installed when missing, runs every check but one against the live server
/// for a minute with an admin's token. Left out: `positive_data_acceptance`, which expects any
/// schema-valid body to be accepted, while a request for an unknown resource or a hold whose
/// `from` is after its `until` is schema-valid and rightly refused (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // schemathesis blocks this thread
async fn a_schema_driven_fuzzer_finds_nothing_undocumented() {
    jitgate_testkit::require_python_module("schemathesis", "schemathesis==4.32.5");
    // root may ask for (and approve their own) access, so the fuzzer's requests succeed and it
    // follows the links from a created request to approving, releasing, extending it...
    let app = TestApp::start(&format!("{STANDARD}{ADMIN_SELF_SERVICE}")).await;
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/api/v1/openapi.json", app.base))
        .args(["-H", &format!("Authorization: Bearer {}", token("root"))])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-time", "60", "--workers", "2", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("Tested: "), "{said}");
}
