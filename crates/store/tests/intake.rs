//! The intake journal: events acknowledged as durable are in the log for every reader, after a
//! crash the next open takes in exactly those not yet in, a record cut short is dropped, damage
//! is refused, and an erasure leaves no copy behind in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jitgate_audit::{EventFilter, Verifier};
use jitgate_core::{EventDraft, Timestamp};
use jitgate_store::{AuditStore, LogFile, SqliteStore, Store, StoreError, intake_path};

fn draft(who: &str, i: usize) -> EventDraft {
    let ts = Timestamp::from_second(1_700_000_000 + i as i64).unwrap();
    let mut e = EventDraft::new(ts, who, "session.statement");
    e.resource = Some("orders-db".into());
    e.subject = Some(who.into());
    e.session_id = Some(format!("sess_{who}"));
    e.details(
        serde_json::json!({ "statement": i, "sql": format!("SELECT {i} /* {who}-secret */") }),
    )
}

async fn statements(s: &SqliteStore) -> Vec<i64> {
    s.search_events(EventFilter {
        action: Some("session.statement".into()),
        limit: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
    .iter()
    .filter_map(|e| e.details["statement"].as_i64()) // erased payloads have none
    .collect()
}

/// Verifies the whole chain in the file; returns how many events it holds.
fn verify(path: &Path) -> u64 {
    let log = LogFile::open(path).unwrap();
    let mut v = Verifier::new(vec![], vec![]).unwrap();
    log.scan(&mut v, &mut |_, _| Ok(None), &mut |_| {}).unwrap();
    v.finish().unwrap().events
}

/// A database with one event, and beside it the journal a crash would leave: records for
/// events 1..=`n` made durable, none taken in. Returns the database path.
async fn crashed(dir: &Path, n: usize) -> PathBuf {
    let crashed = dir.join("crashed.db");
    let other = dir.join("other.db");
    for path in [&crashed, &other] {
        let s = SqliteStore::open(path).unwrap();
        s.append_events(vec![draft("setup", 0)]).await.unwrap();
    }
    // The records, written by another database in the same state (nothing taken in yet)...
    let s = SqliteStore::open(&other).unwrap();
    for i in 1..=n {
        s.journal_events(vec![draft("alice", i)]).await.unwrap();
    }
    assert_eq!(statements(&s).await.len(), n + 1);
    drop(s);
    // ...and left beside this one, as if it had stopped right after syncing them.
    std::fs::copy(intake_path(&other), intake_path(&crashed)).unwrap();
    crashed
}

#[tokio::test]
async fn acknowledged_events_are_in_the_log_for_every_reader_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitgate.db");
    let s = Arc::new(SqliteStore::open(&path).unwrap());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                s.journal_events(vec![draft(&format!("u{t}"), t * 100 + i)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = statements(&s).await;
    assert_eq!(seen.len(), 200, "every acknowledged event is found at once");
    // Each caller's events keep the order they were acknowledged in.
    for t in 0..8 {
        let mine: Vec<i64> = seen.iter().copied().filter(|n| n / 100 == t).collect();
        assert_eq!(mine, (t * 100..t * 100 + 25).collect::<Vec<_>>());
    }
    drop(s);
    assert_eq!(verify(&path), 200);
}

#[tokio::test]
async fn after_a_crash_the_next_open_takes_in_exactly_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = crashed(dir.path(), 5).await;
    {
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(statements(&s).await, vec![0, 1, 2, 3, 4, 5]);
    }
    assert_eq!(journal_len(&path), 0);
    // Taken in once: opening again adds nothing, and the chain holds.
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(statements(&s).await, vec![0, 1, 2, 3, 4, 5]);
    drop(s);
    assert_eq!(verify(&path), 6);
}

#[tokio::test]
async fn records_already_in_the_log_are_not_taken_in_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitgate.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        for i in 1..=3 {
            s.journal_events(vec![draft("alice", i)]).await.unwrap();
        }
        assert_eq!(statements(&s).await.len(), 3);
    }
    // The journal still holds all three records (it empties only when reopened or large); its
    // length alone says nothing, as the file is zeroed ahead of its records.
    assert!(records_end(&std::fs::read(intake_path(&path)).unwrap()) > 0);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(statements(&s).await, vec![1, 2, 3]);
}

fn journal_len(db: &Path) -> u64 {
    std::fs::metadata(intake_path(db)).unwrap().len()
}

/// Where the records in a journal end: the file is zeroed ahead of them.
fn records_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

#[tokio::test]
async fn a_record_cut_short_at_the_end_is_dropped() {
    // What a write cut short by a crash leaves after the last record: part of a header, part of
    // a record, or a record whose length came through but not its bytes.
    for tail in [
        &[0x40, 0, 0, 0, 1, 2][..],
        &[7; 3][..],
        &[9, 0, 0, 0, 0, 0, 0, 0, 1][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = crashed(dir.path(), 2).await;
        let journal = intake_path(&path);
        let mut bytes = std::fs::read(&journal).unwrap();
        let end = records_end(&bytes);
        bytes[end..end + tail.len()].copy_from_slice(tail);
        std::fs::write(&journal, bytes).unwrap();
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(statements(&s).await, vec![0, 1, 2], "tail {tail:?}");
    }
    // The last record itself torn: its events were never acknowledged, the rest are kept.
    let dir = tempfile::tempdir().unwrap();
    let path = crashed(dir.path(), 3).await;
    let journal = intake_path(&path);
    let mut bytes = std::fs::read(&journal).unwrap();
    let end = records_end(&bytes);
    bytes[end - 10..end].fill(0);
    std::fs::write(&journal, &bytes).unwrap();
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(statements(&s).await, vec![0, 1, 2]);
}

#[tokio::test]
async fn a_damaged_record_with_more_after_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = crashed(dir.path(), 3).await;
    let journal = intake_path(&path);
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[30] ^= 0x20;
    std::fs::write(&journal, &bytes).unwrap();
    let err = SqliteStore::open(&path).err().expect("damage is refused");
    match err {
        StoreError::Corrupt { id, why } => {
            assert!(id.contains("intake journal"), "{id}");
            assert!(why.contains("bad record at byte 0"), "{why}");
        }
        other => panic!("unexpected error: {other}"),
    }
    // Nothing was taken in, and the journal is left as it was for an operator to look at.
    assert_eq!(std::fs::read(&journal).unwrap(), bytes);
}

#[tokio::test]
async fn a_second_opener_appends_directly_and_leaves_the_journal_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitgate.db");
    let first = SqliteStore::open(&path).unwrap();
    first.journal_events(vec![draft("alice", 1)]).await.unwrap();
    assert_eq!(statements(&first).await, vec![1]);
    let journal = std::fs::read(intake_path(&path)).unwrap();
    let second = SqliteStore::open(&path).unwrap();
    second.journal_events(vec![draft("bob", 2)]).await.unwrap();
    assert_eq!(std::fs::read(intake_path(&path)).unwrap(), journal);
    assert_eq!(statements(&second).await, vec![1, 2]);
    first.journal_events(vec![draft("alice", 3)]).await.unwrap();
    assert_eq!(statements(&first).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn an_erasure_leaves_no_copy_in_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitgate.db");
    let s = SqliteStore::open(&path).unwrap();
    for i in 1..=3 {
        s.journal_events(vec![draft("bob", i), draft("carol", 10 + i)])
            .await
            .unwrap();
    }
    let journal = std::fs::read(intake_path(&path)).unwrap();
    assert!(contains(&journal, b"bob-secret"));
    let erased = s
        .erase("bob".into(), Box::new(|_, _| vec![draft("admin", 99)]))
        .await
        .unwrap();
    assert_eq!(erased, 3);
    let journal = std::fs::read(intake_path(&path)).unwrap();
    assert!(!contains(&journal, b"bob-secret"));
    // The journal goes on working after it was emptied.
    s.journal_events(vec![draft("carol", 20)]).await.unwrap();
    assert_eq!(statements(&s).await, vec![11, 12, 13, 99, 20]);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_long_journal_starts_again_once_the_log_has_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitgate.db");
    let s = SqliteStore::open(&path).unwrap();
    // 280 events of 256 KiB each: past the 64 MiB at which the journal starts again.
    let big = "x".repeat(256 << 10);
    let mut longest = 0;
    for i in 0..280 {
        let mut e = draft("alice", i);
        e.details["pad"] = big.clone().into();
        s.journal_events(vec![e]).await.unwrap();
        longest = longest.max(journal_len(&path));
    }
    let len = journal_len(&path);
    assert!(longest >= 64 << 20, "the journal reached {longest} bytes");
    assert!(
        len < 16 << 20,
        "the journal did not start again: {len} bytes"
    );
    assert_eq!(statements(&s).await, (0..280).collect::<Vec<_>>());
    assert_eq!(s.head().borrow().seq, 280);
    drop(s);
    // Nothing taken in twice from what the restarted file holds.
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(statements(&s).await.len(), 280);
    assert_eq!(s.head().borrow().seq, 280);
}
