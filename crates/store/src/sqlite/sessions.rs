//! Sessions and used JWT ids in SQLite (migration 0006).

use jitgate_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, from_us, us};
use crate::StoreError;
use crate::sessions::{AuthSession, SessionBody, SessionKey, UsedJti};

const COLUMNS: &str = "id, digest, body, created_us, expires_us, ended_us";

/// Writes `session` unless `jti` was already used; `false` (nothing written) if it was.
/// Records of JWTs expired by `now` go first.
pub(super) fn insert(
    conn: &Connection,
    s: &AuthSession,
    jti: Option<&UsedJti>,
    now: Timestamp,
) -> Result<bool> {
    if let Some(j) = jti {
        conn.prepare_cached("DELETE FROM \"auth_jtis\" WHERE \"expires_us\" < ?1")?
            .execute(params![us(now)])?;
        let fresh = conn
            .prepare_cached(
                "INSERT INTO \"auth_jtis\" (\"provider\", \"jti\", \"expires_us\") VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![j.provider, j.jti, us(j.expires_at)])?;
        if fresh == 0 {
            return Ok(false);
        }
    }
    let body = serde_json::to_string(&s.body)
        .map_err(|e| StoreError::caused(&format!("cannot encode session {}", s.id), e))?;
    conn.prepare_cached(
        "INSERT INTO \"auth_sessions\" (\"id\", \"digest\", \"principal\", \"body\", \"created_us\", \"expires_us\", \"ended_us\")
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        s.id,
        &s.digest[..],
        s.body.principal.name,
        body,
        us(s.created_at),
        us(s.expires_at),
        s.ended_at.map(us)
    ])?;
    Ok(true)
}

pub(super) fn by_digest(conn: &Connection, digest: &[u8; 32]) -> Result<Option<AuthSession>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM \"auth_sessions\" WHERE \"digest\" = ?1"
    ))?
    .query_row(params![&digest[..]], row)
    .optional()?
    .transpose()
}

/// Live sessions at `now`: of `principal`, or everyone's.
pub(super) fn live(
    conn: &Connection,
    principal: Option<&str>,
    now: Timestamp,
) -> Result<Vec<AuthSession>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM \"auth_sessions\"
         WHERE \"ended_us\" IS NULL AND \"expires_us\" > ?1 AND (?2 IS NULL OR \"principal\" = ?2)
         ORDER BY \"created_us\""
    ))?;
    let rows = stmt.query_map(params![us(now), principal], row)?;
    rows.map(|r| r?).collect()
}

/// Marks the live sessions `key` names as ended at `now`; returns them.
pub(super) fn end(conn: &Connection, key: &SessionKey, now: Timestamp) -> Result<Vec<AuthSession>> {
    let (column, value): (&str, rusqlite::types::Value) = match key {
        SessionKey::Digest(d) => ("digest", d.to_vec().into()),
        SessionKey::Id(id) => ("id", id.clone().into()),
        SessionKey::Principal(p) => ("principal", p.clone().into()),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE \"auth_sessions\" SET \"ended_us\" = ?1
         WHERE \"{column}\" = ?2 AND \"ended_us\" IS NULL AND \"expires_us\" > ?1
         RETURNING {COLUMNS}"
    ))?;
    let rows = stmt.query_map(params![us(now), value], row)?;
    rows.map(|r| r?).collect()
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AuthSession>> {
    let id: String = r.get(0)?;
    let digest: Vec<u8> = r.get(1)?;
    let body: String = r.get(2)?;
    let (created, expires, ended): (i64, i64, Option<i64>) = (r.get(3)?, r.get(4)?, r.get(5)?);
    Ok((|| {
        let digest = <[u8; 32]>::try_from(digest.as_slice())
            .map_err(|_| corrupt(&id, "digest is not 32 bytes"))?;
        let body: SessionBody =
            serde_json::from_str(&body).map_err(|e| corrupt(&id, &e.to_string()))?;
        Ok(AuthSession {
            digest,
            body,
            created_at: from_us(created),
            expires_at: from_us(expires),
            ended_at: ended.map(from_us),
            id: id.clone(),
        })
    })())
}

fn corrupt(id: &str, why: &str) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        why: why.to_owned(),
    }
}
