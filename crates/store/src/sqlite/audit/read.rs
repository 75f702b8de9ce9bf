//! Reading the log: filters, search and streaming reads, checkpoints and recorded gaps.

use jitgate_audit::chain;
use jitgate_audit::{AuditEvent, Checkpoint, EventFilter, Gap, Span, glob_to_like};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::append::seq_range;
use super::blob_hash;
use crate::StoreError;
use crate::sqlite::{Result, Where, from_us, us};

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
pub(super) fn involving(n: usize) -> String {
    format!("(e.actor = ?{n} OR (e.subject = ?{n} AND e.subject <> e.actor))")
}

pub(super) fn filter_sql(conn: &Connection, f: &EventFilter) -> Result<Where> {
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
pub(crate) fn search(conn: &Connection, f: &EventFilter, limit: u32) -> Result<Vec<AuditEvent>> {
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
pub(crate) fn stream(
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

pub(crate) fn insert_checkpoint(conn: &Connection, cp: &Checkpoint) -> Result<()> {
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

pub(crate) fn checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>> {
    let mut stmt = conn.prepare(
        "SELECT seq, hash, ts_us, key_id, signature FROM audit_checkpoints ORDER BY seq",
    )?;
    let rows = stmt.query_map([], checkpoint_from_row)?;
    rows.map(|r| to_checkpoint(r?)).collect()
}

pub(crate) fn last_checkpoint(conn: &Connection) -> Result<Option<Checkpoint>> {
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

pub(crate) fn gaps(conn: &Connection) -> Result<Vec<(Gap, Option<String>)>> {
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
