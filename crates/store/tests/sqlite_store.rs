//! Contract tests for the Store trait, run against SQLite. The PostgreSQL store will run these too.

use std::sync::Arc;
use std::time::Duration;

use jitgate_audit::EventFilter;
use jitgate_core::policy::{AccessAsk, Decision};
use jitgate_core::{AccessRequest, CoreError, EventDraft, Principal, State, Timestamp, duration};
use jitgate_store::{AuditStore, RequestFilter, RequestKey, SqliteStore, Store, StoreError};

fn now() -> Timestamp {
    "2026-01-14T10:00:00Z".parse().unwrap()
}

fn new_request(who: &str, policy: &str) -> (AccessRequest, Vec<EventDraft>) {
    let p = Principal::user(who, &[]);
    let ask = AccessAsk {
        principal: &p,
        resource: "orders-db",
        role: "read",
        duration: Duration::from_secs(600),
        reason: Some("why"),
        ticket: None,
        start_at: None,
        break_glass: false,
        extension: None,
    };
    let d = Decision::NeedsApproval {
        policies: vec![policy.into()],
        pending_timeout: Duration::from_secs(60),
    };
    AccessRequest::create(&ask, d, now()).unwrap()
}

fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("jitgate.db")).unwrap();
    (dir, Arc::new(s))
}

#[tokio::test]
async fn request_and_its_events_are_written_together() {
    let (_d, s) = store();
    let (r, ev) = new_request("alice", "p");
    s.insert_request(r.clone(), ev).await.unwrap();
    let back = s
        .get_request(RequestKey::Request(r.id.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, r);
    let events = s
        .search_events(EventFilter {
            request_id: Some(r.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "request.created");
    assert_eq!(events[0].details["role"], "read");
    assert_eq!(s.next_deadline().await.unwrap(), Some(r.pending_until));
}

#[tokio::test]
async fn a_refused_change_writes_nothing_and_others_in_the_batch_still_commit() {
    let (_d, s) = store();
    let (a, ev) = new_request("alice", "p");
    s.insert_request(a.clone(), ev).await.unwrap();
    let (b, ev) = new_request("bob", "p");
    s.insert_request(b.clone(), ev).await.unwrap();
    let s1 = s.clone();
    let a_id = a.id.clone();
    let refused = tokio::spawn(async move {
        s1.update_request(
            RequestKey::Request(a_id),
            Box::new(|r| {
                r.state = State::Denied; // mutated, then refused: must not be written
                Err(CoreError::Refused("no".into()))
            }),
        )
        .await
    });
    let ok = s.update_request(
        RequestKey::Request(b.id.clone()),
        Box::new(|r| r.cancel(&Principal::user("bob", &[]), now())),
    );
    let (refused, ok) = (refused.await.unwrap(), ok.await);
    assert!(matches!(
        refused,
        Err(StoreError::Domain(CoreError::Refused(_)))
    ));
    assert_eq!(ok.unwrap().state, State::Cancelled);
    assert_eq!(
        s.get_request(RequestKey::Request(a.id.clone()))
            .await
            .unwrap()
            .unwrap()
            .state,
        State::Pending
    );
    assert_eq!(
        s.get_request(RequestKey::Request(b.id.clone()))
            .await
            .unwrap()
            .unwrap()
            .state,
        State::Cancelled
    );
    let a_events = s
        .search_events(EventFilter {
            request_id: Some(a.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a_events.len(), 1, "only request.created");
}

#[tokio::test]
async fn concurrent_changes_to_one_request_are_not_lost() {
    let (_d, s) = store();
    let (r, ev) = new_request("alice", "p");
    s.insert_request(r.clone(), ev).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        let id = r.id.clone();
        tasks.push(tokio::spawn(async move {
            s.update_request(
                RequestKey::Request(id),
                Box::new(move |r| {
                    r.approvals.push(jitgate_core::lifecycle::Approval {
                        by: format!("a{i}"),
                        at: now(),
                        comment: None,
                        counts_for: vec![],
                    });
                    Ok(vec![EventDraft::new(now(), "t", "test.touch")])
                }),
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let back = s
        .get_request(RequestKey::Request(r.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.approvals.len(), 50);
}

#[tokio::test]
async fn unknown_keys_are_not_found() {
    let (_d, s) = store();
    let e = s
        .update_request(
            RequestKey::Grant("grt_nope".into()),
            Box::new(|_| Ok(vec![])),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound(ref k) if k == "grant grt_nope"),
        "{e}"
    );
    // a request without a grant yet is not found by its reserved grant id
    let (r, ev) = new_request("alice", "p");
    s.insert_request(r.clone(), ev).await.unwrap();
    assert!(
        s.get_request(RequestKey::Grant(r.grant_id))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn audit_events_are_append_only_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitgate.db");
    let s = SqliteStore::open(&path).unwrap();
    s.append_events(vec![EventDraft::new(now(), "x", "test.one")])
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let e = conn
        .execute("UPDATE audit_events SET actor = 'mallory'", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = conn.execute("DELETE FROM audit_events", []).unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

#[tokio::test]
async fn visibility_filter_shows_own_requests_and_those_awaiting_my_policies() {
    let (_d, s) = store();
    for (who, pol) in [("alice", "p"), ("bob", "q"), ("carol", "p")] {
        let (r, ev) = new_request(who, pol);
        s.insert_request(r, ev).await.unwrap();
    }
    let names = |v: Vec<AccessRequest>| {
        let mut n: Vec<String> = v.into_iter().map(|r| r.principal).collect();
        n.sort();
        n
    };
    let mine = s
        .list_requests(RequestFilter {
            visible_to: Some(("bob".into(), vec![])),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(mine), ["bob"]);
    let approver = s
        .list_requests(RequestFilter {
            visible_to: Some(("dora".into(), vec!["p".into()])),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(approver), ["alice", "carol"]);
    let all = s.list_requests(RequestFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn event_search_filters_and_pages() {
    let (_d, s) = store();
    let mut events = Vec::new();
    for i in 0..10 {
        let mut e = EventDraft::new(
            duration::add(now(), Duration::from_secs(i)),
            if i % 2 == 0 { "alice" } else { "bob" },
            if i < 5 {
                "request.created"
            } else {
                "grant.expired"
            },
        );
        e.subject = Some("carol".into());
        events.push(e);
    }
    s.append_events(events).await.unwrap();
    let by_glob = s
        .search_events(EventFilter {
            action: Some("grant.*".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_glob.len(), 5);
    let without = s
        .search_events(EventFilter {
            exclude_action: Some("grant.*".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        without.len() == 5 && without.iter().all(|e| e.action == "request.created"),
        "{without:?}"
    );
    let by_actor = s
        .search_events(EventFilter {
            actor: Some("alice".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_actor.len(), 5);
    let window = s
        .search_events(EventFilter {
            since: Some(duration::add(now(), Duration::from_secs(2))),
            until: Some(duration::add(now(), Duration::from_secs(4))),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 2);
    let page1 = s
        .search_events(EventFilter {
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    let page2 = s
        .search_events(EventFilter {
            limit: 4,
            after_seq: Some(page1[3].seq),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2.len(), 4);
    assert!(page2[0].seq > page1[3].seq);
    let involving = s
        .search_events(EventFilter {
            involving: Some("carol".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(involving.len(), 10, "subject counts as involvement");
    let as_actor = s
        .search_events(EventFilter {
            involving: Some("alice".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(as_actor.len(), 5, "so does acting");
    let underscore = s
        .search_events(EventFilter {
            action: Some("request_created".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(underscore.is_empty(), "_ in a glob is literal");
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitgate.db");
    let (r, ev) = new_request("alice", "p");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.insert_request(r.clone(), ev).await.unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.get_request(RequestKey::Request(r.id.clone()))
            .await
            .unwrap()
            .unwrap(),
        r
    );
    assert_eq!(
        s.due_requests(duration::add(now(), Duration::from_secs(61)), 10)
            .await
            .unwrap(),
        vec![r.id]
    );
}

/// Time windows are answered from per-block timestamp ranges, not an index: events that arrive
/// out of time order, across many blocks and batches of every size, must all still be found.
#[tokio::test]
async fn time_windows_find_exactly_the_events_in_them_even_out_of_order() {
    let (_d, s) = store();
    let base = now().as_second();
    let mut stamps = Vec::new();
    let mut pending = Vec::new();
    let mut chunk = 1;
    for i in 0..12_000i64 {
        // Mostly in order, with late and early arrivals mixed in.
        let offset = match i % 97 {
            0 => -50_000,
            13 => 90_000,
            _ => i,
        };
        let ts = Timestamp::from_second(base + offset).unwrap();
        stamps.push(ts);
        pending.push(EventDraft::new(ts, "alice", "session.statement"));
        if pending.len() == chunk {
            s.append_events(std::mem::take(&mut pending)).await.unwrap();
            chunk = chunk % 300 + 7;
        }
    }
    s.append_events(pending).await.unwrap();
    for (from, to) in [
        (0, 10),
        (-60_000, -40_000),
        (5_000, 5_001),
        (4_000, 9_000),
        (80_000, 100_000),
        (200_000, 300_000),
        (-100_000, 200_000),
    ] {
        let (since, until) = (
            Timestamp::from_second(base + from).unwrap(),
            Timestamp::from_second(base + to).unwrap(),
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let reader = {
            let s = s.clone();
            tokio::spawn(async move {
                s.stream_events(
                    EventFilter {
                        since: Some(since),
                        until: Some(until),
                        ..Default::default()
                    },
                    tx,
                )
                .await
            })
        };
        let mut found = Vec::new();
        while let Some(e) = rx.recv().await {
            found.push(e.seq);
        }
        reader.await.unwrap().unwrap();
        let expected: Vec<i64> = (1..)
            .zip(&stamps)
            .filter(|(_, t)| **t >= since && **t < until)
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(found, expected, "window {from}..{to}");
    }
}
