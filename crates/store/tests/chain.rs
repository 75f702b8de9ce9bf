//! The audit chain as an attacker with write access to the database sees it: every edit, removal,
//! insertion, reordering or truncation is found by verification, at the right `seq`.

use std::path::{Path, PathBuf};

use jitgate_audit::{Checkpoint, Problem, ProblemKind, Report, Signer, Verifier};
use jitgate_core::{EventDraft, Timestamp};
use jitgate_store::{AuditStore, LogFile, SqliteStore, Store};
use proptest::prelude::*;
use rusqlite::Connection;

const EVENTS: i64 = 40;

struct Log {
    _dir: tempfile::TempDir,
    path: PathBuf,
    signer: Signer,
    anchor: Vec<Checkpoint>,
}

fn draft(i: i64) -> EventDraft {
    let ts = Timestamp::from_second(1_700_000_000 + i).unwrap();
    let mut e = EventDraft::new(ts, &format!("user{}", i % 3), "session.statement");
    e.resource = Some("orders-db".into());
    e.subject = Some(format!("user{}", i % 3));
    e.request_id = Some(format!("req_{i}"));
    e.grant_id = Some(format!("grant_{i}"));
    e.session_id = Some(format!("sess_{i}"));
    e.details(serde_json::json!({ "sql": format!("SELECT {i}") }))
}

/// A log of `EVENTS` events with a checkpoint every 8 events and at the end, each also anchored.
fn build() -> Log {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitgate.db");
    let signer = Signer::generate();
    let mut anchor = Vec::new();
    rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        for i in 1..=EVENTS {
            store.append_events(vec![draft(i)]).await.unwrap();
            if i % 8 == 0 || i == EVENTS {
                let head = *store.head().borrow();
                assert_eq!(head.seq, i);
                let cp = signer.sign_checkpoint(head.seq, head.hash, i);
                store.add_checkpoint(cp.clone()).await.unwrap();
                anchor.push(cp);
            }
        }
    });
    Log {
        _dir: dir,
        path,
        signer,
        anchor,
    }
}

fn verify_with(path: &Path, signer: &Signer, anchor: &[Checkpoint]) -> Result<Report, Problem> {
    let log = LogFile::open(path).unwrap();
    let mut checkpoints = log.checkpoints().unwrap();
    checkpoints.extend(anchor.iter().cloned());
    let mut v = Verifier::new(vec![signer.public()], checkpoints)?;
    match log.scan(&mut v, &mut |_, _| Ok(None), &mut |_| {}) {
        Ok(()) => v.finish(),
        Err(jitgate_store::ScanError::Problem(p)) => Err(p),
        Err(jitgate_store::ScanError::Store(e)) => panic!("store error: {e}"),
    }
}

fn verify(log: &Log) -> Result<Report, Problem> {
    verify_with(&log.path, &log.signer, &log.anchor)
}

/// Opens the database as an attacker would: with the append-only triggers dropped.
fn tamper(log: &Log) -> Connection {
    let c = Connection::open(&log.path).unwrap();
    c.execute_batch(
        "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;
         DROP TRIGGER audit_payloads_no_update; DROP TRIGGER audit_payloads_no_delete;
         DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;",
    )
    .unwrap();
    c
}

fn expect(log: &Log, seq: i64, kind: ProblemKind) {
    let p = verify(log).expect_err("tampering must be found");
    assert_eq!((p.seq, p.kind), (seq, kind), "{p}");
}

#[test]
fn an_untouched_log_verifies() {
    let log = build();
    let r = verify(&log).unwrap();
    assert_eq!(
        (r.events, r.payloads_checked, r.last_seq, r.signed_through),
        (40, 40, 40, 40)
    );
    assert_eq!(r.checkpoints, 5);
}

const EVENT_FIELDS: &[&str] = &[
    "ts_us",
    "actor",
    "action",
    "outcome",
    "resource",
    "subject",
    "request_id",
    "grant_id",
    "session_id",
    "commitment",
    "hash",
    "seq",
];
const PAYLOAD_FIELDS: &[&str] = &["salt", "body"];

fn flip(log: &Log, table: &str, field: &str, seq: i64, byte: usize, bit: u8) {
    let c = tamper(log);
    let sql = format!("SELECT {field} FROM {table} WHERE seq = ?1");
    let value: rusqlite::types::Value = c.query_row(&sql, [seq], |r| r.get(0)).unwrap();
    use rusqlite::types::Value::*;
    let new = match value {
        Integer(i) if field == "seq" => Integer(i ^ (1 << 40)),
        Integer(i) => Integer(i ^ (1 << (bit as u32 % 60))),
        Text(t) => {
            let mut b = t.into_bytes();
            let i = byte % b.len();
            b[i] ^= 1 << (bit % 8);
            // Stored back as text, valid UTF-8 or not, as a raw edit of the file would leave it.
            let sql = format!("UPDATE {table} SET {field} = CAST(?1 AS TEXT) WHERE seq = ?2");
            c.execute(&sql, rusqlite::params![Blob(b), seq]).unwrap();
            return;
        }
        Blob(mut b) => {
            let i = byte % b.len();
            b[i] ^= 1 << (bit % 8);
            Blob(b)
        }
        other => panic!("unexpected {other:?}"),
    };
    c.execute(
        &format!("UPDATE {table} SET {field} = ?1 WHERE seq = ?2"),
        rusqlite::params![new, seq],
    )
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn flipping_any_bit_of_any_stored_field_is_found_at_its_seq(
        seq in 1..=EVENTS,
        field in 0..(EVENT_FIELDS.len() + PAYLOAD_FIELDS.len()),
        byte in 0usize..64,
        bit in 0u8..64,
    ) {
        let log = build();
        if field < EVENT_FIELDS.len() {
            flip(&log, "audit_events", EVENT_FIELDS[field], seq, byte, bit);
        } else {
            flip(&log, "audit_payloads", PAYLOAD_FIELDS[field - EVENT_FIELDS.len()], seq, byte, bit);
        }
        let p = verify(&log).expect_err("a flipped bit must be found");
        prop_assert_eq!(p.seq, seq, "{}", p);
        if field == EVENT_FIELDS.len() - 1 {
            // The event moved away: its seq is missing, and its payload is left without it.
            prop_assert!(matches!(p.kind, ProblemKind::Missing | ProblemKind::Edited), "{}", p);
        } else {
            prop_assert_eq!(p.kind, ProblemKind::Edited, "{}", p);
        }
    }
}

#[test]
fn a_deleted_event_is_missing() {
    let log = build();
    let c = tamper(&log);
    c.execute("DELETE FROM audit_payloads WHERE seq = 17", [])
        .unwrap();
    c.execute("DELETE FROM audit_events WHERE seq = 17", [])
        .unwrap();
    expect(&log, 17, ProblemKind::Missing);
}

#[test]
fn swapped_events_are_found_at_the_first_of_them() {
    let log = build();
    let c = tamper(&log);
    c.execute_batch(
        "UPDATE audit_events SET seq = -1 WHERE seq = 12;
         UPDATE audit_events SET seq = 12 WHERE seq = 20;
         UPDATE audit_events SET seq = 20 WHERE seq = -1;
         UPDATE audit_payloads SET seq = -1 WHERE seq = 12;
         UPDATE audit_payloads SET seq = 12 WHERE seq = 20;
         UPDATE audit_payloads SET seq = 20 WHERE seq = -1;",
    )
    .unwrap();
    expect(&log, 12, ProblemKind::Edited);
}

#[test]
fn an_inserted_event_with_rechained_hashes_fails_the_next_checkpoint() {
    let log = build();
    // The strongest attacker without the key: renumber everything after seq 10, insert a forged
    // event at 11 and recompute every stored hash so each row links to the one before.
    let c = tamper(&log);
    c.execute_batch(
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq > 10;
         UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000;
         UPDATE audit_payloads SET seq = seq + 1000 WHERE seq > 10;
         UPDATE audit_payloads SET seq = seq - 999 WHERE seq > 1000;
         INSERT INTO audit_events SELECT 11, ts_us, 'mallory', action, outcome, resource, subject, request_id, grant_id, session_id, commitment, hash FROM audit_events WHERE seq = 10;
         INSERT INTO audit_payloads SELECT 11, salt, body FROM audit_payloads WHERE seq = 10;",
    )
    .unwrap();
    rechain(&c);
    expect(&log, 16, ProblemKind::Mismatch);
}

/// An event's kept fields as stored: seq, ts_us, actor, action, outcome, the five optional
/// references, and the payload commitment.
type StoredFields = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<u8>,
);

/// Recomputes every stored hash from the fields, as an attacker who knows the encoding would.
fn rechain(c: &Connection) {
    let rows: Vec<StoredFields> = c
        .prepare("SELECT seq, ts_us, actor, action, outcome, resource, subject, request_id, grant_id, session_id, commitment FROM audit_events ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = jitgate_audit::chain::GENESIS;
    let mut scratch = Vec::new();
    for r in rows {
        let commitment: [u8; 32] = r.10.clone().try_into().unwrap();
        let s = jitgate_audit::Skeleton {
            seq: r.0,
            ts_us: r.1,
            actor: &r.2,
            action: &r.3,
            outcome: &r.4,
            resource: r.5.as_deref(),
            subject: r.6.as_deref(),
            request_id: r.7.as_deref(),
            grant_id: r.8.as_deref(),
            session_id: r.9.as_deref(),
            commitment: &commitment,
        };
        prev = s.link(&prev, &mut scratch);
        c.execute(
            "UPDATE audit_events SET hash = ?1 WHERE seq = ?2",
            rusqlite::params![&prev[..], r.0],
        )
        .unwrap();
    }
}

#[test]
fn a_truncated_tail_is_found_even_when_re_signed() {
    let log = build();
    let c = tamper(&log);
    c.execute_batch(
        "DELETE FROM audit_payloads WHERE seq > 35; DELETE FROM audit_events WHERE seq > 35;
         DELETE FROM audit_checkpoints WHERE seq > 35;",
    )
    .unwrap();
    // Without the anchor, the last checkpoint left in the database is at 32: the log verifies.
    assert!(verify_with(&log.path, &log.signer, &[]).is_ok());
    // The attacker holds the key and re-signs the new head: still caught by the anchor.
    let hash: Vec<u8> = c
        .query_row("SELECT hash FROM audit_events WHERE seq = 35", [], |r| {
            r.get(0)
        })
        .unwrap();
    let forged = log.signer.sign_checkpoint(35, hash.try_into().unwrap(), 99);
    c.execute(
        "INSERT INTO audit_checkpoints VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            forged.seq,
            &forged.hash[..],
            forged.ts_us,
            forged.key_id,
            &forged.signature[..]
        ],
    )
    .unwrap();
    expect(&log, 40, ProblemKind::Truncated);
}

#[test]
fn checkpoints_signed_by_another_key_or_edited_are_refused() {
    let log = build();
    let other = Signer::generate();
    let p = verify_with(&log.path, &other, &[]).unwrap_err();
    assert_eq!((p.seq, p.kind), (8, ProblemKind::BadSignature), "{p}");
    let c = tamper(&log);
    c.execute(
        "UPDATE audit_checkpoints SET ts_us = ts_us + 1 WHERE seq = 24",
        [],
    )
    .unwrap();
    let p = verify_with(&log.path, &log.signer, &[]).unwrap_err();
    assert_eq!((p.seq, p.kind), (24, ProblemKind::BadSignature), "{p}");
}
