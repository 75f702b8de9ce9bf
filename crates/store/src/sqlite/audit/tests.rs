use super::read::{filter_sql, involving};
use super::*;
use jitgate_audit::EventFilter;
use jitgate_core::EventDraft;
use rusqlite::Connection;

/// A log written before migration 0003 has no time blocks; the migration builds them, so
/// time windows over old events still find them after an upgrade.
#[test]
fn upgrading_an_old_log_keeps_its_events_findable_by_time() {
    let mut conn = Connection::open_in_memory().unwrap();
    super::super::migrate_to(&mut conn, 2).unwrap();
    let at = |s: i64| jitgate_core::Timestamp::from_second(1_000_000 + s).unwrap();
    let drafts: Vec<EventDraft> = (0..10_000)
        .map(|i| EventDraft::new(at(i), "alice", "session.statement"))
        .collect();
    let mut head = read_head(&conn).unwrap();
    insert_events(&conn, &mut head, &SealedEvent::seal_all(drafts)).unwrap();
    super::super::migrate(&mut conn).unwrap();
    let f = EventFilter {
        since: Some(at(5_000)),
        until: Some(at(5_010)),
        ..Default::default()
    };
    let seqs: Vec<i64> = search(&conn, &f, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (5_001..=5_010).collect::<Vec<_>>());
}

/// The searches that cannot use a per-event index any more (time, subject) must still not
/// scan the whole log.
#[test]
fn time_and_involvement_searches_use_an_index() {
    let mut conn = Connection::open_in_memory().unwrap();
    super::super::configure(&conn, super::super::Reads::Short).unwrap();
    super::super::migrate(&mut conn).unwrap();
    let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(params, |r| r.get::<_, String>(3)).unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    };
    let involving = plan(
        &format!("SELECT e.seq FROM audit_events e WHERE {}", involving(1)),
        &[&"alice"],
    );
    assert!(
        involving.contains("audit_by_actor") && involving.contains("audit_by_subject"),
        "{involving}"
    );
    let f = EventFilter {
        since: Some(jitgate_core::Timestamp::from_second(1_000).unwrap()),
        until: Some(jitgate_core::Timestamp::from_second(2_000).unwrap()),
        ..Default::default()
    };
    let w = filter_sql(&conn, &f).unwrap();
    let params: Vec<&dyn rusqlite::ToSql> =
        w.params.iter().map(|p| p as &dyn rusqlite::ToSql).collect();
    let window = plan(
        &format!(
            "SELECT e.seq FROM audit_events e {} ORDER BY e.seq",
            w.sql()
        ),
        &params,
    );
    assert!(
        window.contains("INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
        "{window}"
    );
}
