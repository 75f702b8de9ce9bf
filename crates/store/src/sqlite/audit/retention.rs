//! Holds, retention removals (with the delete guards they lift and restore) and erasure.

use jitgate_audit::Gap;
use jitgate_audit::archive::{ArchivedEvent, Manifest};
use jitgate_audit::chain::{GENESIS, Hash};
use jitgate_audit::retention::{Candidate, Hold};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use super::blob_hash;
use super::read::involving;
use crate::sqlite::Result;
use crate::{LiveEvent, StoreError};

// ---- holds --------------------------------------------------------------------------------

pub(crate) fn put_hold(conn: &Connection, hold: &Hold) -> Result<()> {
    let body =
        serde_json::to_string(hold).map_err(|e| StoreError::caused("cannot encode a hold", e))?;
    conn.prepare_cached(
        "INSERT INTO holds (id, active, body) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET active = excluded.active, body = excluded.body",
    )?
    .execute(params![hold.id, hold.is_active(), body])?;
    Ok(())
}

pub(crate) fn holds(conn: &Connection, active_only: bool) -> Result<Vec<Hold>> {
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

pub(crate) fn hold(conn: &Connection, id: &str) -> Result<Option<Hold>> {
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
pub(crate) fn live_batch(conn: &Connection, from_seq: i64, limit: u32) -> Result<Vec<LiveEvent>> {
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
pub(crate) fn hash_before(conn: &Connection, seq: i64) -> Result<Hash> {
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
pub(crate) fn remove_ranges(
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
pub(crate) fn action_counts(conn: &Connection) -> Result<Vec<(String, u64, i64)>> {
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
pub(crate) fn erase(conn: &Connection, principal: &str) -> Result<(u64, Option<(i64, i64)>)> {
    let active = crate::sqlite::holds::scoped(conn, holds(conn, true)?)?;
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
