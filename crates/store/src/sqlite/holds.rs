//! Which requests a legal hold covers. A hold matches events by their fields, but the story of a
//! request is spread over events that do not all carry the same fields: `request.created` (who
//! asked and why) has no grant id, a statement names no policy. So a hold keeps every event of
//! each request one of its matched events belongs to: creation, approvals, the grant, its
//! sessions and statements.

use jitgate_audit::retention::{Candidate, Hold, Scope, ScopedHold};
use rusqlite::{Connection, params};

use super::Result;
use super::audit::seq_range;

/// Each active hold with the requests it covers.
pub(super) fn scoped(conn: &Connection, holds: Vec<Hold>) -> Result<Vec<ScopedHold>> {
    holds
        .into_iter()
        .filter(Hold::is_active)
        .map(|hold| {
            Ok(ScopedHold {
                scope: scope(conn, &hold)?,
                hold,
            })
        })
        .collect()
}

/// The requests `hold` covers: of the requests that could have an event it matches (found
/// through the requests table by id, grant, principal or resource, or for a hold that sets only
/// a time window, through the events in it), those that do.
fn scope(conn: &Connection, hold: &Hold) -> Result<Scope> {
    let (sql, param): (&str, String) = if let Some(id) = &hold.request_id {
        (
            "SELECT id, grant_id FROM requests WHERE id = ?1",
            id.clone(),
        )
    } else if let Some(id) = &hold.grant_id {
        (
            "SELECT id, grant_id FROM requests WHERE grant_id = ?1",
            id.clone(),
        )
    } else if let Some(p) = &hold.principal {
        // Their own requests, and those they decided on (approved, denied, revoked, reviewed):
        // the body names them as a JSON string. A superset; each is checked below.
        let quoted = serde_json::to_string(p).unwrap_or_default();
        return covered(
            conn,
            hold,
            "SELECT id, grant_id FROM requests WHERE principal = ?1 OR instr(body, ?2) > 0",
            params![p, quoted],
        );
    } else if let Some(r) = &hold.resource {
        (
            "SELECT id, grant_id FROM requests WHERE resource = ?1",
            r.clone(),
        )
    } else if hold.from.is_some() || hold.until.is_some() {
        let (from, until) = window(hold);
        let (lo, hi) = seq_range(
            conn,
            hold.from.map(|t| t.as_microsecond()),
            hold.until.map(|t| t.as_microsecond()),
        )?;
        return covered(
            conn,
            hold,
            "SELECT DISTINCT e.request_id, r.grant_id FROM audit_events e
             LEFT JOIN requests r ON r.id = e.request_id
             WHERE e.seq BETWEEN ?1 AND ?2 AND e.ts_us >= ?3 AND e.ts_us < ?4
               AND e.request_id IS NOT NULL",
            params![lo, hi, from, until],
        );
    } else {
        return Ok(Scope::default()); // a hold with no criteria covers every event already
    };
    covered(conn, hold, sql, params![param])
}

/// The candidate requests (`sql` yields each one's id and grant id) that have an event the hold
/// matches.
fn covered(
    conn: &Connection,
    hold: &Hold,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Scope> {
    let mut scope = Scope::default();
    let mut stmt = conn.prepare(sql)?;
    let candidates = stmt
        .query_map(params, |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (request, grant) in candidates {
        if matches_any_event(conn, hold, &request, grant.as_deref())? {
            scope.request_ids.insert(request);
            scope.grant_ids.extend(grant);
        }
    }
    Ok(scope)
}

/// The hold's time window in microseconds, open ends as the extremes.
fn window(hold: &Hold) -> (i64, i64) {
    (
        hold.from.map_or(i64::MIN, |t| t.as_microsecond()),
        hold.until.map_or(i64::MAX, |t| t.as_microsecond()),
    )
}

/// Whether any event of the request (by its id, or its grant's) is one the hold matches. Stops
/// at the first: a request's first events usually decide it.
fn matches_any_event(
    conn: &Connection,
    hold: &Hold,
    request: &str,
    grant: Option<&str>,
) -> Result<bool> {
    let (from, until) = window(hold);
    let lookups = [("request_id", Some(request)), ("grant_id", grant)];
    for (column, id) in lookups {
        let Some(id) = id else { continue };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT seq, ts_us, action, actor, subject, resource, request_id, grant_id
             FROM audit_events WHERE {column} = ?1 AND ts_us >= ?2 AND ts_us < ?3"
        ))?;
        let mut rows = stmt.query(params![id, from, until])?;
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
            if hold.covers(&c) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
