//! Counts for the operator's gauges, read at scrape time.

use jitgate_core::{State, Timestamp};
use rusqlite::Connection;

use super::Result;
use crate::{LiveCounts, StoreError};

pub(super) fn live(conn: &Connection) -> Result<LiveCounts> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, resource, count(*) FROM requests
         WHERE state IN ('pending', 'approved', 'active', 'revoking')
         GROUP BY state, resource ORDER BY resource, state",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut counts = Vec::new();
    for row in rows {
        let (state, resource, n) = row?;
        let state: State = state
            .parse()
            .map_err(|e| StoreError::caused("a request's state", e))?;
        counts.push((state, resource, n as u64));
    }
    // Few rows (only grants between "ending" and "ended"); times are compared parsed.
    let mut stmt = conn.prepare_cached(
        "SELECT json_extract(body, '$.grant.ending.at') FROM requests WHERE state = 'revoking'",
    )?;
    let revoking_since = stmt
        .query_map([], |r| r.get::<_, Option<String>>(0))?
        .filter_map(|t| t.ok().flatten()?.parse::<Timestamp>().ok())
        .min();
    Ok(LiveCounts {
        counts,
        revoking_since,
    })
}
