//! The streaming scan that feeds the whole log, in one read snapshot, to the verifier.

use jitgate_audit::chain::Skeleton;
use jitgate_audit::{Gap, Item, Problem, Verifier};
use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::blob_hash;
use super::read::gaps;
use crate::StoreError;
use fallible_streaming_iterator::FallibleStreamingIterator;

/// What verification does at a range boundary that names an archive segment: `Ok(None)` to
/// check the boundary's signature only, `Ok(Some(items))` to walk the archived events instead.
pub type ArchiveLookup<'a> = dyn FnMut(
        &Gap,
        &str,
    ) -> std::result::Result<Option<Vec<jitgate_audit::archive::SegmentItem>>, String>
    + 'a;

/// Why a verification scan stopped.
#[derive(Debug)]
pub enum ScanError {
    Problem(Problem),
    Store(StoreError),
}

impl From<StoreError> for ScanError {
    fn from(e: StoreError) -> Self {
        ScanError::Store(e)
    }
}

impl From<rusqlite::Error> for ScanError {
    fn from(e: rusqlite::Error) -> Self {
        ScanError::Store(e.into())
    }
}

impl From<Problem> for ScanError {
    fn from(p: Problem) -> Self {
        ScanError::Problem(p)
    }
}

/// Streams the whole log (events, payloads and range boundaries merged in `seq` order, in one
/// read snapshot) through `verifier`. `progress` hears the `seq` reached now and then.
pub fn scan(
    conn: &Connection,
    verifier: &mut Verifier,
    archive: &mut ArchiveLookup<'_>,
    progress: &mut dyn FnMut(i64),
) -> std::result::Result<(), ScanError> {
    conn.execute_batch("BEGIN")?;
    let out = scan_in_snapshot(conn, verifier, archive, progress);
    let _ = conn.execute_batch("COMMIT");
    out
}

fn scan_in_snapshot(
    conn: &Connection,
    verifier: &mut Verifier,
    archive: &mut ArchiveLookup<'_>,
    progress: &mut dyn FnMut(i64),
) -> std::result::Result<(), ScanError> {
    let gaps = gaps(conn)?;
    let mut gaps = gaps.into_iter().peekable();
    let mut events = conn.prepare(
        "SELECT seq, ts_us, actor, action, outcome, resource, subject, request_id, grant_id, session_id, commitment, hash
         FROM audit_events ORDER BY seq",
    )?;
    let mut payloads = conn.prepare("SELECT seq, salt, body FROM audit_payloads ORDER BY seq")?;
    let mut events = events.query([])?;
    let mut payloads = payloads.query([])?;
    let mut payload_seq = advance(&mut payloads)?;
    let mut n: u64 = 0;
    while let Some(e) = events.next()? {
        let seq: i64 = e.get(0)?;
        while let Some((gap, segment)) = gaps.next_if(|(g, _)| g.span.first_seq < seq) {
            feed_gap(verifier, archive, &gap, segment.as_deref())?;
        }
        if payload_seq.is_some_and(|p| p < seq) {
            return Err(Problem {
                seq: payload_seq.expect("checked"),
                kind: jitgate_audit::ProblemKind::Edited,
                detail: "a payload with no event".into(),
            }
            .into());
        }
        let payload = if payload_seq == Some(seq) {
            let r = payloads.get().expect("current row");
            Some((blob(r.get_ref(1)?), blob(r.get_ref(2)?)))
        } else {
            None
        };
        // A field of the wrong type or not valid text is an edit at this seq, not a read error.
        let edited = |what: &str| Problem {
            seq,
            kind: jitgate_audit::ProblemKind::Edited,
            detail: format!("{what} is not of its stored type"),
        };
        let commitment = blob_hash(e.get_ref(10)?, "commitment").unwrap_or([0; 32]);
        let str_at = |i| {
            e.get_ref(i)
                .ok()
                .and_then(|v| v.as_str().ok())
                .ok_or_else(|| edited("a text field"))
        };
        let opt_at = |i| {
            e.get_ref(i)
                .ok()
                .and_then(|v| v.as_str_or_null().ok())
                .ok_or_else(|| edited("a text field"))
        };
        let skeleton = Skeleton {
            seq,
            ts_us: e.get::<_, i64>(1).map_err(|_| edited("the timestamp"))?,
            actor: str_at(2)?,
            action: str_at(3)?,
            outcome: str_at(4)?,
            resource: opt_at(5)?,
            subject: opt_at(6)?,
            request_id: opt_at(7)?,
            grant_id: opt_at(8)?,
            session_id: opt_at(9)?,
            commitment: &commitment,
        };
        verifier.feed(Item::Event {
            skeleton,
            stored_hash: blob(e.get_ref(11)?),
            payload,
        })?;
        if payload_seq == Some(seq) {
            payload_seq = advance(&mut payloads)?;
        }
        n += 1;
        if n.is_multiple_of(65536) {
            progress(seq);
        }
    }
    if let Some(p) = payload_seq {
        return Err(Problem {
            seq: p,
            kind: jitgate_audit::ProblemKind::Edited,
            detail: "a payload with no event".into(),
        }
        .into());
    }
    for (gap, segment) in gaps {
        feed_gap(verifier, archive, &gap, segment.as_deref())?;
    }
    Ok(())
}

fn advance(rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Option<i64>> {
    rows.advance()?;
    match rows.get() {
        Some(r) => Ok(Some(r.get(0)?)),
        None => Ok(None),
    }
}

fn feed_gap(
    verifier: &mut Verifier,
    archive: &mut ArchiveLookup<'_>,
    gap: &Gap,
    segment: Option<&str>,
) -> std::result::Result<(), ScanError> {
    let items = match segment {
        Some(name) => archive(gap, name).map_err(StoreError::db)?,
        None => None,
    };
    match items {
        None => verifier.feed(Item::Gap(gap))?,
        Some(items) => verifier.archived_gap(gap, &items)?,
    }
    Ok(())
}

fn blob<'a>(v: ValueRef<'a>) -> &'a [u8] {
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => b,
        _ => &[],
    }
}
