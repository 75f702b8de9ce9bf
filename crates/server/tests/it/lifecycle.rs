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
