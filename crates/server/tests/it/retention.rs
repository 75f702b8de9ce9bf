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
        "[server]\ndata_dir = \"{}\"\n\n[[retention]]\nclass = \"session\"\nkeep = \"1d\"\naction = \"delete\"\n",
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
