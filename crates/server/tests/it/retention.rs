//! Retention sweeps in process: a hold placed while a sweep runs is honoured by every batch after
//! it, including the one the sweep had already read and planned ahead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jitgate_audit::retention::Hold;
use jitgate_core::{Clock, EventDraft, SystemClock, Timestamp};
use jitgate_server::audit_log::SWEEP_BATCH;
use jitgate_server::audit_offline::{self, VerifyOptions};
use jitgate_server::{AuditLog, Config};
use jitgate_store::{SqliteStore, Store};

#[tokio::test]
async fn a_hold_placed_mid_sweep_keeps_what_it_covers_even_in_a_batch_planned_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\ndata_dir = \"{}\"\n\n[[retention]]\nclass = \"session\"\nkeep = \"1d\"\naction = \"delete\"\n\n\
         [[principals]]\nname = \"alice\"\n\n[[resources]]\nname = \"orders-db\"\nkind = \"none\"\n[resources.roles.read]\n",
        dir.path().join("data").display()
    );
    let config = Config::parse_in(&text, "test", dir.path()).unwrap();
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.database_path).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let log = AuditLog::open(&config, store.clone(), clock.clone())
        .await
        .unwrap();

    // Four batches of due session events, alice's and bob's alternating.
    let old = Timestamp::from_second(clock.now().as_second() - 2 * 86_400).unwrap();
    let total = i64::from(SWEEP_BATCH) * 4;
    let events: Vec<EventDraft> = (0..total)
        .map(|i| {
            let who = if i % 2 == 0 { "alice" } else { "bob" };
            let mut e = EventDraft::new(old, who, "session.statement");
            e.subject = Some(who.into());
            e
        })
        .collect();
    for chunk in events.chunks(1000) {
        store.append_events(chunk.to_vec()).await.unwrap();
    }

    // Once the first batch is removed (the second is being read and planned by then), bob's
    // events go under a hold. The progress callback is synchronous: the hold is written from a
    // thread of its own.
    let placed = AtomicBool::new(false);
    let report = log
        .sweep(false, &|r| {
            if r.batches == 1 && !placed.swap(true, Ordering::SeqCst) {
                let hold = Hold {
                    id: "hold_mid_sweep".into(),
                    reason: "case 9".into(),
                    created_by: "root".into(),
                    created_at: clock.now(),
                    resource: None,
                    principal: Some("bob".into()),
                    request_id: None,
                    grant_id: None,
                    from: None,
                    until: None,
                    released_at: None,
                    released_by: None,
                };
                let store = store.clone();
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap()
                        .block_on(store.put_hold(hold, vec![]))
                })
                .join()
                .unwrap()
                .unwrap();
            }
        })
        .await
        .unwrap();
    assert!(
        placed.load(Ordering::SeqCst),
        "the sweep ran more than one batch"
    );

    let db = rusqlite::Connection::open(&config.database_path).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let batch = i64::from(SWEEP_BATCH);
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE actor = 'alice'"),
        0,
        "every unheld due event is gone"
    );
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE actor = 'bob'"),
        (total - batch) / 2,
        "bob's events after the first batch are all kept"
    );
    assert!(count("SELECT min(seq) FROM audit_events WHERE actor = 'bob'") > batch);
    assert_eq!(report.held, ((total - batch) / 2) as u64);
    assert_eq!(report.deleted, (batch + (total - batch) / 2) as u64);
    // The sweep lifts the append-only guards inside its own transactions only: afterwards
    // they stand again.
    for table in ["audit_events", "audit_payloads"] {
        let e = db.execute(&format!("DELETE FROM {table}"), []).unwrap_err();
        assert!(
            e.to_string().contains("append-only") || e.to_string().contains("deleted only by"),
            "{table}: {e}"
        );
    }

    let opts = VerifyOptions {
        database: config.database_path.clone(),
        keys: audit_offline::data_dir_keys(&config.data_dir).unwrap(),
        anchors: vec![],
        archive: None,
    };
    let verified = audit_offline::verify(&opts, &mut |_| {}).unwrap();
    assert!(verified.events_in_gaps >= (batch + (total - batch) / 2) as u64);
}

/// A legal hold on a grant, or on the approver, keeps the whole story of the request: who asked
/// and why (`request.created`, which carries no grant id), the approval, the grant, its sessions
/// and statements. An unheld request's story goes.
#[tokio::test]
async fn a_hold_keeps_the_whole_story_of_the_requests_it_covers() {
    use crate::helpers::{STANDARD, TestApp, read};
    use serde_json::json;
    let app = TestApp::start(&format!(
        "{STANDARD}\n[[retention]]\nclass = \"access\"\nkeep = \"1s\"\naction = \"delete\"\n\n[[retention]]\nclass = \"session\"\nkeep = \"1s\"\naction = \"delete\"\n"
    ))
    .await;
    let running = app.running.as_ref().unwrap();
    // Three requests: one whose grant is held, one approved by a held approver, one unheld.
    let mut stories = Vec::new();
    for (who, approver) in [("alice", "dora"), ("sam", "dan"), ("alice", "dora")] {
        let r = app.request(who, read("30m")).await;
        let id = r["id"].as_str().unwrap().to_owned();
        let (_, v) = app
            .post(
                approver,
                &format!("/api/v1/requests/{id}/approve"),
                json!({}),
            )
            .await;
        let grant = v["grant_id"].as_str().unwrap().to_owned();
        // What a gateway session records: events of the grant's session and its statements.
        let mut events = Vec::new();
        for action in ["session.started", "session.statement", "session.ended"] {
            let mut e = EventDraft::new(running.app.clock.now(), who, action);
            e.subject = Some(who.into());
            e.resource = Some("orders-db".into());
            e.request_id = Some(id.clone());
            e.grant_id = Some(grant.clone());
            e.session_id = Some(format!("ses_{who}"));
            events.push(e);
        }
        running.app.store.append_events(events).await.unwrap();
        let (s, _) = app
            .post(who, &format!("/api/v1/grants/{grant}/release"), json!({}))
            .await;
        assert_eq!(s, reqwest::StatusCode::OK);
        stories.push((id, grant));
    }
    let (held_grant, held_approver) = (&stories[0], &stories[1]);
    for body in [
        json!({"reason": "case 17", "grant": held_grant.1}),
        json!({"reason": "case 18", "principal": "dan"}),
    ] {
        let (s, v) = app.post("root", "/api/v1/holds", body).await;
        assert!(s.is_success(), "{v}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = running.app.audit.sweep(false, &|_| {}).await.unwrap();
    assert!(report.deleted > 0, "{report:?}");

    let db = rusqlite::Connection::open(app.data_dir().join("jitgate.db")).unwrap();
    let actions = |request: &str| -> Vec<String> {
        let mut stmt = db
            .prepare("SELECT action FROM audit_events WHERE request_id = ?1 ORDER BY seq")
            .unwrap();
        stmt.query_map([request], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<String>>>()
            .unwrap()
    };
    let whole = [
        "request.created",
        "request.approved",
        "grant.activated",
        "session.started",
        "session.statement",
        "session.ended",
        "grant.revoking",
        "grant.released",
    ];
    assert_eq!(actions(&held_grant.0), whole, "the held grant's request");
    assert_eq!(actions(&held_approver.0), whole, "the request dan approved");
    assert!(
        actions(&stories[2].0).is_empty(),
        "the unheld request's story went"
    );
}
