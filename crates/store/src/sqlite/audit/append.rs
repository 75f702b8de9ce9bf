//! Sealing and appending: the chain head, linking and inserting sealed events, the time
//! blocks that bound time-window searches, and chaining a schema-1 log into the new table.

use jitgate_audit::chain::{self, Hash, Skeleton};
use jitgate_core::EventDraft;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use super::blob_hash;
use crate::Head;
use crate::sqlite::{Result, us};

/// Reads the head from the table itself, so another process that appended since is followed.
pub(crate) fn read_head(conn: &Connection) -> Result<Head> {
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
pub(crate) struct NewEvent<'a> {
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
pub(crate) fn append(
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

pub(crate) fn insert_events(
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
pub(crate) fn note_time_block(conn: &Connection, first: i64, last: i64) -> Result<()> {
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
pub(crate) fn seq_range(
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
pub(crate) fn migrate_v1(conn: &Connection) -> Result<()> {
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
