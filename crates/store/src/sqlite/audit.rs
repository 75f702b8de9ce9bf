//! The audit log in SQLite: chained appends, search and streaming reads, verification scans,
//! checkpoints, holds, retention removals and erasure.

use jitgate_audit::archive::{ArchivedEvent, Manifest};
use jitgate_audit::chain::{self, GENESIS, Hash, Skeleton};
use jitgate_audit::retention::{Candidate, Hold};
use jitgate_audit::{
    AuditEvent, Checkpoint, EventFilter, Gap, Item, Problem, Span, Verifier, glob_to_like,
};
use jitgate_core::EventDraft;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::Result;
use super::{Where, from_us, us};
use crate::{Head, LiveEvent, StoreError};
use fallible_streaming_iterator::FallibleStreamingIterator;

fn blob_hash(v: ValueRef<'_>, what: &str) -> Result<Hash> {
    match v {
        ValueRef::Blob(b) => chain::hash_from(b),
        _ => None,
    }
    .ok_or_else(|| StoreError::db(format!("{what} is not a 32-byte digest")))
}

/// Reads the head from the table itself, so another process that appended since is followed.
pub(super) fn read_head(conn: &Connection) -> Result<Head> {
    let event = conn
        .prepare_cached("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    let gap = conn
        .prepare_cached(
            "SELECT last_seq, last_hash FROM audit_gaps ORDER BY last_seq DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    let best = match (event, gap) {
        (Some(e), Some(g)) => Some(if e.0 >= g.0 { e } else { g }),
        (e, g) => e.or(g),
    };
    match best {
        None => Ok(Head::EMPTY),
        Some((seq, hash)) => Ok(Head {
            seq,
            hash: blob_hash(ValueRef::Blob(&hash), "the head's hash")?,
        }),
    }
}

/// One event as it is written, borrowed from its draft.
pub(super) struct NewEvent<'a> {
    pub ts_us: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub resource: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub grant_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub payload: &'a str,
    pub salt: &'a [u8; chain::SALT_LEN],
    pub commitment: &'a Hash,
}

/// An event ready for the chain: its payload serialised, salted and committed to. Sealing needs
/// nothing from the log, so callers do it on their own threads and the writer thread only links
/// and inserts. Serialised only into the intake journal.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SealedEvent {
    draft: EventDraft,
    payload: String,
    #[serde(with = "hex::serde")]
    salt: [u8; chain::SALT_LEN],
    #[serde(with = "hex::serde")]
    commitment: Hash,
}

impl SealedEvent {
    pub fn seal(mut draft: EventDraft) -> Self {
        // The details live on as the payload text; freeing them here spares the writer thread.
        let payload = std::mem::take(&mut draft.details).to_string();
        let salt = chain::new_salt();
        let commitment = chain::commitment(&salt, payload.as_bytes());
        Self {
            draft,
            payload,
            salt,
            commitment,
        }
    }

    pub fn seal_all(drafts: Vec<EventDraft>) -> Vec<Self> {
        drafts.into_iter().map(Self::seal).collect()
    }
}

/// Appends one event after `head`, advancing it.
pub(super) fn append(
    conn: &Connection,
    head: &mut Head,
    e: NewEvent<'_>,
    scratch: &mut Vec<u8>,
) -> Result<()> {
    let seq = head.seq + 1;
    let skeleton = Skeleton {
        seq,
        ts_us: e.ts_us,
        actor: e.actor,
        action: e.action,
        outcome: e.outcome,
        resource: e.resource,
        subject: e.subject,
        request_id: e.request_id,
        grant_id: e.grant_id,
        session_id: e.session_id,
        commitment: e.commitment,
    };
    let hash = skeleton.link(&head.hash, scratch);
    conn.prepare_cached(
        "INSERT INTO audit_events (seq, ts_us, actor, action, outcome, resource, subject, request_id, grant_id, session_id, commitment, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        seq, e.ts_us, e.actor, e.action, e.outcome, e.resource, e.subject, e.request_id, e.grant_id,
        e.session_id, &e.commitment[..], &hash[..]
    ])?;
    conn.prepare_cached("INSERT INTO audit_payloads (seq, salt, body) VALUES (?1, ?2, ?3)")?
        .execute(params![seq, &e.salt[..], e.payload])?;
    *head = Head { seq, hash };
    Ok(())
}

pub(super) fn insert_events(
    conn: &Connection,
    head: &mut Head,
    events: &[SealedEvent],
) -> Result<()> {
    let mut scratch = Vec::with_capacity(512);
    for s in events {
        let e = &s.draft;
        append(
            conn,
            head,
            NewEvent {
                ts_us: us(e.ts),
                actor: &e.actor,
                action: &e.action,
                outcome: e.outcome.as_str(),
                resource: e.resource.as_deref(),
                subject: e.subject.as_deref(),
                request_id: e.request_id.as_deref(),
                grant_id: e.grant_id.as_deref(),
                session_id: e.session_id.as_deref(),
                payload: &s.payload,
                salt: &s.salt,
                commitment: &s.commitment,
            },
            &mut scratch,
        )?;
    }
    Ok(())
}

/// Most events one time block covers: bounds how far past a time window a search may scan.
const BLOCK_EVENTS: i64 = 4096;

/// Records the timestamps of the events `first..=last` just appended, in the last time block if
/// it has room, else in a new one. They are read back rather than tracked while appending, so
/// a job rolled back in the batch can never widen the block.
pub(super) fn note_time_block(conn: &Connection, first: i64, last: i64) -> Result<()> {
    let (lo, hi): (i64, i64) = conn
        .prepare_cached(
            "SELECT min(ts_us), max(ts_us) FROM audit_events WHERE seq BETWEEN ?1 AND ?2",
        )?
        .query_row(params![first, last], |r| Ok((r.get(0)?, r.get(1)?)))?;
    // The newest block, found through the primary key (a condition on `last_seq` would scan).
    let newest: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT first_seq, last_seq FROM audit_time_blocks ORDER BY first_seq DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let open = newest
        .filter(|&(from, to)| to == first - 1 && last - from < BLOCK_EVENTS)
        .map(|(from, _)| from);
    match open {
        Some(block) => conn
            .prepare_cached(
                "UPDATE audit_time_blocks SET last_seq = ?2, min_ts_us = min(min_ts_us, ?3),
                 max_ts_us = max(max_ts_us, ?4) WHERE first_seq = ?1",
            )?
            .execute(params![block, last, lo, hi])?,
        None => conn
            .prepare_cached(
                "INSERT INTO audit_time_blocks (first_seq, last_seq, min_ts_us, max_ts_us) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![first, last, lo, hi])?,
    };
    Ok(())
}

/// The seq range that holds every event with `since <= ts < until`, from the time blocks;
/// `(1, 0)`, an empty range, when no block can hold one.
pub(super) fn seq_range(
    conn: &Connection,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<(i64, i64)> {
    let lo: Option<i64> = match since {
        None => Some(1),
        Some(t) => conn
            .prepare_cached("SELECT min(first_seq) FROM audit_time_blocks WHERE max_ts_us >= ?1")?
            .query_row([t], |r| r.get(0))?,
    };
    let hi: Option<i64> = match until {
        None => Some(i64::MAX),
        Some(t) => conn
            .prepare_cached("SELECT max(last_seq) FROM audit_time_blocks WHERE min_ts_us < ?1")?
            .query_row([t], |r| r.get(0))?,
    };
    Ok(match (lo, hi) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (1, 0),
    })
}

/// Chains the events of the schema-1 table, in order, into the new one.
pub(super) fn migrate_v1(conn: &Connection) -> Result<()> {
    let mut head = read_head(conn)?;
    let mut scratch = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT ts_us, actor, action, outcome, resource, subject, request_id, grant_id, session_id, details
         FROM audit_events_v1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let text = |i| -> rusqlite::Result<Option<String>> { r.get(i) };
        let (actor, action, outcome): (String, String, String) = (r.get(1)?, r.get(2)?, r.get(3)?);
        let (resource, subject, request_id, grant_id, session_id) =
            (text(4)?, text(5)?, text(6)?, text(7)?, text(8)?);
        let payload: String = r.get(9)?;
        let salt = chain::new_salt();
        let commitment = chain::commitment(&salt, payload.as_bytes());
        append(
            conn,
            &mut head,
            NewEvent {
                ts_us: r.get(0)?,
                actor: &actor,
                action: &action,
                outcome: &outcome,
                resource: resource.as_deref(),
                subject: subject.as_deref(),
                request_id: request_id.as_deref(),
                grant_id: grant_id.as_deref(),
                session_id: session_id.as_deref(),
                payload: &payload,
                salt: &salt,
                commitment: &commitment,
            },
            &mut scratch,
        )?;
    }
    drop(rows);
    drop(stmt);
    conn.execute_batch("DROP TABLE audit_events_v1")?;
    Ok(())
}

const EVENT_COLUMNS: &str = "e.seq, e.ts_us, e.actor, e.action, e.outcome, e.resource, e.subject, e.request_id, e.grant_id, e.session_id, p.body";

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    let details: Option<String> = r.get(10)?;
    Ok(AuditEvent {
        seq: r.get(0)?,
        ts: from_us(r.get(1)?),
        actor: r.get(2)?,
        action: r.get(3)?,
        outcome: r.get(4)?,
        resource: r.get(5)?,
        subject: r.get(6)?,
        request_id: r.get(7)?,
        grant_id: r.get(8)?,
        session_id: r.get(9)?,
        details: match details {
            Some(d) => serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d)),
            None => serde_json::Value::Null,
        },
    })
}

/// Events that parameter `?n` acted in or was the subject of. The subject is indexed only where
/// it is not the actor (migration 0004), and this form lets SQLite use that index.
fn involving(n: usize) -> String {
    format!("(e.actor = ?{n} OR (e.subject = ?{n} AND e.subject <> e.actor))")
}

fn filter_sql(conn: &Connection, f: &EventFilter) -> Result<Where> {
    let mut w = Where::default();
    w.cmp("e.seq", ">", f.after_seq);
    if f.since.is_some() || f.until.is_some() {
        let (lo, hi) = seq_range(conn, f.since.map(us), f.until.map(us))?;
        w.cmp("e.seq", ">=", Some(lo));
        w.cmp("e.seq", "<=", Some(hi));
    }
    w.cmp("e.ts_us", ">=", f.since.map(us));
    w.cmp("e.ts_us", "<", f.until.map(us));
    w.eq("e.actor", f.actor.clone());
    w.eq("e.resource", f.resource.clone());
    w.eq("e.request_id", f.request_id.clone());
    w.eq("e.grant_id", f.grant_id.clone());
    w.eq("e.session_id", f.session_id.clone());
    w.eq("e.outcome", f.outcome.clone());
    if let Some(glob) = &f.action {
        w.clauses
            .push(format!("e.action LIKE ?{} ESCAPE '\\'", w.next()));
        w.params.push(glob_to_like(glob).into());
    }
    if let Some(glob) = &f.exclude_action {
        w.clauses
            .push(format!("e.action NOT LIKE ?{} ESCAPE '\\'", w.next()));
        w.params.push(glob_to_like(glob).into());
    }
    if let Some(who) = &f.involving {
        let n = w.next();
        w.clauses.push(involving(n));
        w.params.push(who.clone().into());
    }
    Ok(w)
}

/// Events matching `f`, oldest first, at most `limit`. Paging is by `after_seq`, which stays
/// fast however deep the page (the primary key, not an offset).
pub(super) fn search(conn: &Connection, f: &EventFilter, limit: u32) -> Result<Vec<AuditEvent>> {
    let w = filter_sql(conn, f)?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events e LEFT JOIN audit_payloads p ON p.seq = e.seq
         {} ORDER BY e.seq LIMIT {limit}",
        w.sql()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(w.params), event_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Calls `each` for every event matching `f` (no limit), oldest first, until it returns false.
pub(super) fn stream(
    conn: &Connection,
    f: &EventFilter,
    mut each: impl FnMut(AuditEvent) -> bool,
) -> Result<()> {
    let w = filter_sql(conn, f)?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events e LEFT JOIN audit_payloads p ON p.seq = e.seq
         {} ORDER BY e.seq",
        w.sql()
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(w.params))?;
    while let Some(r) = rows.next()? {
        if !each(event_from_row(r)?) {
            break;
        }
    }
    Ok(())
}

// ---- checkpoints --------------------------------------------------------------------------

pub(super) fn insert_checkpoint(conn: &Connection, cp: &Checkpoint) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO audit_checkpoints (seq, hash, ts_us, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![cp.seq, &cp.hash[..], cp.ts_us, cp.key_id, &cp.signature[..]])?;
    Ok(())
}

/// `(seq, hash, ts_us, key_id, signature)` as stored, checked by [`to_checkpoint`].
type CheckpointRow = (i64, Vec<u8>, i64, String, Vec<u8>);

fn checkpoint_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_checkpoint(row: CheckpointRow) -> Result<Checkpoint> {
    let (seq, hash, ts_us, key_id, sig) = row;
    Ok(Checkpoint {
        seq,
        hash: chain::hash_from(&hash).ok_or_else(|| bad_checkpoint(seq))?,
        ts_us,
        key_id,
        signature: sig.try_into().map_err(|_| bad_checkpoint(seq))?,
    })
}

fn bad_checkpoint(seq: i64) -> StoreError {
    StoreError::Corrupt {
        id: format!("checkpoint {seq}"),
        why: "malformed hash or signature".into(),
    }
}

pub(super) fn checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>> {
    let mut stmt = conn.prepare(
        "SELECT seq, hash, ts_us, key_id, signature FROM audit_checkpoints ORDER BY seq",
    )?;
    let rows = stmt.query_map([], checkpoint_from_row)?;
    rows.map(|r| to_checkpoint(r?)).collect()
}

pub(super) fn last_checkpoint(conn: &Connection) -> Result<Option<Checkpoint>> {
    conn.prepare_cached(
        "SELECT seq, hash, ts_us, key_id, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
    )?
    .query_row([], checkpoint_from_row)
    .optional()?
    .map(to_checkpoint)
    .transpose()
}

// ---- gaps ---------------------------------------------------------------------------------

fn gap_from_row(r: &rusqlite::Row<'_>) -> Result<(Gap, Option<String>)> {
    let first_seq: i64 = r.get(0)?;
    let bad = || StoreError::Corrupt {
        id: format!("range boundary {first_seq}"),
        why: "malformed hash or signature".into(),
    };
    let gap = Gap {
        span: Span {
            first_seq,
            last_seq: r.get(1)?,
            prev_hash: blob_hash(r.get_ref(2)?, "prev_hash").map_err(|_| bad())?,
            last_hash: blob_hash(r.get_ref(3)?, "last_hash").map_err(|_| bad())?,
        },
        key_id: r.get(4)?,
        signature: r.get::<_, Vec<u8>>(5)?.try_into().map_err(|_| bad())?,
    };
    Ok((gap, r.get(6)?))
}

pub(super) fn gaps(conn: &Connection) -> Result<Vec<(Gap, Option<String>)>> {
    let mut stmt = conn.prepare(
        "SELECT first_seq, last_seq, prev_hash, last_hash, key_id, signature, segment FROM audit_gaps ORDER BY first_seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(gap_from_row(r)?);
    }
    Ok(out)
}

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

// ---- holds --------------------------------------------------------------------------------

pub(super) fn put_hold(conn: &Connection, hold: &Hold) -> Result<()> {
    let body =
        serde_json::to_string(hold).map_err(|e| StoreError::caused("cannot encode a hold", e))?;
    conn.prepare_cached(
        "INSERT INTO holds (id, active, body) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET active = excluded.active, body = excluded.body",
    )?
    .execute(params![hold.id, hold.is_active(), body])?;
    Ok(())
}

pub(super) fn holds(conn: &Connection, active_only: bool) -> Result<Vec<Hold>> {
    let sql = if active_only {
        "SELECT id, body FROM holds WHERE active ORDER BY id"
    } else {
        "SELECT id, body FROM holds ORDER BY id"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|row| {
        let (id, body) = row?;
        serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
            id,
            why: e.to_string(),
        })
    })
    .collect()
}

pub(super) fn hold(conn: &Connection, id: &str) -> Result<Option<Hold>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM holds WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    body.map(|b| {
        serde_json::from_str(&b).map_err(|e| StoreError::Corrupt {
            id: id.to_owned(),
            why: e.to_string(),
        })
    })
    .transpose()
}

// ---- retention ----------------------------------------------------------------------------

/// Up to `limit` live events from `from_seq` on, in order, each with the hash the chain had
/// just before it.
pub(super) fn live_batch(conn: &Connection, from_seq: i64, limit: u32) -> Result<Vec<LiveEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.seq, e.ts_us, e.actor, e.action, e.outcome, e.resource, e.subject, e.request_id, e.grant_id, e.session_id,
                e.commitment, e.hash, p.salt, p.body
         FROM audit_events e LEFT JOIN audit_payloads p ON p.seq = e.seq
         WHERE e.seq >= ?1 ORDER BY e.seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![from_seq, limit])?;
    let mut out = Vec::with_capacity(limit as usize);
    let mut last: Option<(i64, Hash)> = None;
    while let Some(r) = rows.next()? {
        let record = ArchivedEvent {
            seq: r.get(0)?,
            ts_us: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            outcome: r.get(4)?,
            resource: r.get(5)?,
            subject: r.get(6)?,
            request_id: r.get(7)?,
            grant_id: r.get(8)?,
            session_id: r.get(9)?,
            commitment: blob_hash(r.get_ref(10)?, "commitment")?,
            hash: blob_hash(r.get_ref(11)?, "hash")?,
            salt: r.get::<_, Option<Vec<u8>>>(12)?.map(hex::encode),
            payload: r.get(13)?,
        };
        let prev = match &last {
            Some((seq, hash)) if *seq == record.seq - 1 => *hash,
            _ => hash_before(conn, record.seq)?,
        };
        last = Some((record.seq, record.hash));
        out.push(LiveEvent { prev, record });
    }
    Ok(out)
}

/// The chain hash just before `seq`: the previous event's, or the boundary's that ends there.
pub(super) fn hash_before(conn: &Connection, seq: i64) -> Result<Hash> {
    if seq <= 1 {
        return Ok(GENESIS);
    }
    let event: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hash FROM audit_events WHERE seq = ?1")?
        .query_row([seq - 1], |r| r.get(0))
        .optional()?;
    let stored = match event {
        Some(h) => Some(h),
        None => conn
            .prepare_cached("SELECT last_hash FROM audit_gaps WHERE last_seq = ?1")?
            .query_row([seq - 1], |r| r.get(0))
            .optional()?,
    };
    let stored = stored.ok_or_else(|| StoreError::Corrupt {
        id: format!("audit event {}", seq - 1),
        why: "neither the event nor a range boundary ending at it is in the log".into(),
    })?;
    blob_hash(ValueRef::Blob(&stored), "hash")
}

/// Up to this many ranges in one removal are deleted range by range.
const RANGE_DELETES: usize = 64;

/// Removes the events each gap stands for and records the gaps (and the segment that holds the
/// archived ones), after checking that nothing moved since they were planned.
pub(super) fn remove_ranges(
    conn: &Connection,
    gaps: &[(Gap, Option<String>)],
    segment: Option<&Manifest>,
    planned_holds: &[String],
) -> Result<u64> {
    let now_holds: Vec<String> = holds(conn, true)?.into_iter().map(|h| h.id).collect();
    if now_holds != planned_holds {
        return Err(StoreError::Conflict(
            "the legal holds changed while the sweep ran; it plans again".into(),
        ));
    }
    // Check every range against what is there now, in one pass over the batch's rows.
    let (Some(lo), Some(hi)) = (gaps.first(), gaps.last()) else {
        return Ok(0);
    };
    let guards = lift_delete_guards(conn)?;
    let mut present = conn.prepare_cached(
        "SELECT seq, hash FROM audit_events WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
    )?;
    let mut rows = present.query(params![lo.0.span.first_seq, hi.0.span.last_seq])?;
    let mut seqs: Vec<i64> = Vec::new();
    let mut pending = gaps.iter().peekable();
    let mut in_gap = 0;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        while pending.peek().is_some_and(|(g, _)| g.span.last_seq < seq) {
            let (g, _) = pending.next().expect("peeked");
            check_range(g, in_gap, None)?;
            in_gap = 0;
        }
        if let Some((g, _)) = pending.peek()
            && g.span.first_seq <= seq
        {
            seqs.push(seq);
            in_gap += 1;
            if seq == g.span.last_seq {
                let hash: Vec<u8> = r.get(1)?;
                check_range(g, in_gap, Some(&hash))?;
                pending.next();
                in_gap = 0;
            }
        }
    }
    if let Some((g, _)) = pending.next() {
        check_range(g, in_gap, None)?;
    }
    drop(rows);
    if gaps.len() <= RANGE_DELETES {
        // Few ranges: delete each as a range scan of the primary key.
        let mut payloads =
            conn.prepare_cached("DELETE FROM audit_payloads WHERE seq BETWEEN ?1 AND ?2")?;
        let mut events =
            conn.prepare_cached("DELETE FROM audit_events WHERE seq BETWEEN ?1 AND ?2")?;
        for (g, _) in gaps {
            payloads.execute(params![g.span.first_seq, g.span.last_seq])?;
            events.execute(params![g.span.first_seq, g.span.last_seq])?;
        }
    } else {
        // Many short ranges: one statement per table. A statement per range made SQLite
        // truncate its statement journal once per range, which grew quadratic with thousands.
        let list = serde_json::to_string(&seqs).expect("numbers serialise");
        conn.prepare_cached(
            "DELETE FROM audit_payloads WHERE seq IN (SELECT value FROM json_each(?1))",
        )?
        .execute([&list])?;
        conn.prepare_cached(
            "DELETE FROM audit_events WHERE seq IN (SELECT value FROM json_each(?1))",
        )?
        .execute([&list])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit_gaps (first_seq, last_seq, prev_hash, last_hash, key_id, signature, segment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (gap, segment) in gaps {
        insert.execute(params![
            gap.span.first_seq,
            gap.span.last_seq,
            &gap.span.prev_hash[..],
            &gap.span.last_hash[..],
            gap.key_id,
            &gap.signature[..],
            segment
        ])?;
    }
    let removed = seqs.len() as u64;
    if let Some(m) = segment {
        let manifest = serde_json::to_string(m)
            .map_err(|e| StoreError::caused("cannot encode a segment manifest", e))?;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO audit_segments (name, manifest, first_seq, last_seq) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![m.name, manifest, m.first_seq, m.last_seq])?;
    }
    // Time blocks that end before the oldest live event describe nothing any more.
    let oldest: i64 = conn
        .prepare_cached("SELECT coalesce(min(seq), ?1) FROM audit_events")?
        .query_row([hi.0.span.last_seq + 1], |r| r.get(0))?;
    conn.prepare_cached("DELETE FROM audit_time_blocks WHERE first_seq < ?1 AND last_seq < ?1")?
        .execute([oldest])?;
    restore_delete_guards(conn, &guards)?;
    Ok(removed)
}

/// The triggers that keep events and payloads from being deleted outside retention and
/// erasure.
const DELETE_GUARDS: [&str; 2] = ["audit_events_no_delete", "audit_payloads_no_delete"];

/// Drops the delete guards for a sweep and returns their SQL, to be put back with
/// [`restore_delete_guards`] in the same transaction. A guard is a row trigger: it would run
/// once for each row a sweep deletes (a third of a plain delete's time in a test of SQLite
/// alone; sweeps got 5-10 % faster without it). The sweep runs inside the writer's transaction
/// and in a savepoint of its own, so if it fails the guards are rolled back with the rest, and
/// no committed state of the database is ever without them. Erasure, which deletes a few
/// payloads, goes through `maintenance_permit` instead.
fn lift_delete_guards(conn: &Connection) -> Result<Vec<String>> {
    let mut sql = Vec::with_capacity(DELETE_GUARDS.len());
    for name in DELETE_GUARDS {
        let create: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(create) = create else {
            // Someone removed it: stop, rather than sweep a log whose guard is gone.
            return Err(StoreError::db(format!(
                "the append-only trigger {name} is missing from the database; a retention sweep \
                 will not run until it is restored (run `jitgate audit verify` first)"
            )));
        };
        conn.execute_batch(&format!("DROP TRIGGER \"{name}\""))?;
        sql.push(create);
    }
    Ok(sql)
}

fn restore_delete_guards(conn: &Connection, guards: &[String]) -> Result<()> {
    for create in guards {
        conn.execute_batch(create)?;
    }
    Ok(())
}

/// A range is removed only if every event it names is still there, ending in the hash planned.
fn check_range(gap: &Gap, present: i64, last_hash: Option<&[u8]>) -> Result<()> {
    if present != gap.span.last_seq - gap.span.first_seq + 1
        || last_hash != Some(&gap.span.last_hash[..])
    {
        return Err(StoreError::Conflict(format!(
            "events {}..={} changed while the sweep ran; it plans again",
            gap.span.first_seq, gap.span.last_seq
        )));
    }
    Ok(())
}

/// Counts of live events by action, with the oldest timestamp of each.
pub(super) fn action_counts(conn: &Connection) -> Result<Vec<(String, u64, i64)>> {
    let mut stmt =
        conn.prepare("SELECT action, count(*), min(ts_us) FROM audit_events GROUP BY action")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

// ---- erasure ------------------------------------------------------------------------------

/// Deletes the payloads of every live event `principal` acted in or was the subject of, unless a
/// hold covers one of them (then nothing is erased). Returns how many, and the seq range.
pub(super) fn erase(conn: &Connection, principal: &str) -> Result<(u64, Option<(i64, i64)>)> {
    let active = super::holds::scoped(conn, holds(conn, true)?)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT e.seq, e.ts_us, e.action, e.actor, e.subject, e.resource, e.request_id, e.grant_id
         FROM audit_events e JOIN audit_payloads p ON p.seq = e.seq
         WHERE {} ORDER BY e.seq",
        involving(1)
    ))?;
    let mut rows = stmt.query([principal])?;
    let mut seqs = Vec::new();
    while let Some(r) = rows.next()? {
        let text = |i| r.get_ref(i).and_then(|v| Ok(v.as_str_or_null()?));
        let c = Candidate {
            seq: r.get(0)?,
            ts_us: r.get(1)?,
            action: text(2)?.unwrap_or_default(),
            actor: text(3)?.unwrap_or_default(),
            subject: text(4)?,
            resource: text(5)?,
            request_id: text(6)?,
            grant_id: text(7)?,
        };
        if let Some(h) = active.iter().find(|h| h.keeps(&c)).map(|h| &h.hold) {
            return Err(StoreError::Held {
                hold: h.id.clone(),
                why: format!(
                    "event {} is under legal hold {} ({})",
                    c.seq, h.id, h.reason
                ),
            });
        }
        seqs.push(c.seq);
    }
    drop(rows);
    conn.execute(
        "INSERT INTO maintenance_permit (reason) VALUES ('erasure')",
        [],
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM audit_payloads WHERE seq = ?1")?;
    for seq in &seqs {
        delete.execute([seq])?;
    }
    conn.execute("DELETE FROM maintenance_permit", [])?;
    let range = seqs.first().zip(seqs.last()).map(|(a, b)| (*a, *b));
    Ok((seqs.len() as u64, range))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
