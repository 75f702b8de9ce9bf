//! SQLite store: one writer thread that group-commits, and a small pool of readers (WAL mode lets
//! them read while the writer writes).
//!
//! A durable SQLite commit costs an fsync (about 0.15 ms here), so commits are shared: the writer
//! takes every change that is waiting, runs each in its own savepoint (a failing change rolls back
//! alone), commits once, and only then answers each caller. Nobody hears "done" before their
//! change is durable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use async_trait::async_trait;
use jitgate_audit::{AuditEvent, EventFilter, glob_to_like};
use jitgate_core::{AccessRequest, EventDraft, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use tokio::sync::{mpsc, oneshot};

use crate::{Change, RequestFilter, RequestKey, Store, StoreError};

const MIGRATIONS: &[&str] = &[include_str!("../migrations/sqlite/0001_init.sql")];
/// Most changes committed together; bounds the time one transaction holds the write lock.
const MAX_BATCH: usize = 2048;
const MAX_LIST: u32 = 1000;

type Result<T> = std::result::Result<T, StoreError>;

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<ReadPool>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies migrations, starts the writer.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = open_connection(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        thread::Builder::new()
            .name("jitgate-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            writer: tx,
            readers: Arc::new(ReadPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.with(work))
            .await
            .map_err(|e| StoreError::Db(format!("reader task failed: {e}")))?
    }
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // FULL: a commit is on disk when it returns, WAL or not.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each change runs in a savepoint; keep savepoint sub-journals in memory, not in temp files.
    // Durability comes from the WAL, which this does not touch.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -65536)?; // 64 MiB
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Db(format!(
            "the database schema is version {version}, newer than this jitgate knows ({known}); upgrade jitgate"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn with<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.idle.lock().expect("pool lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => open_connection(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
        };
        let out = work(&conn);
        self.idle.lock().expect("pool lock").push(conn);
        out
    }
}

/// One change waiting for the writer: run inside the batch's transaction, answered after commit.
trait Job: Send {
    /// Runs the work; `false` if it failed (its savepoint is then rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    fn finish(self: Box<Self>, commit: Result<()>);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T> + Send> Job for Pending<T, F> {
    fn run(&mut self, conn: &Connection) -> bool {
        let work = self.work.take().expect("a job runs once");
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        let result = match commit {
            Ok(()) => self.result.unwrap_or(Err(StoreError::Closed)),
            Err(e) => Err(e),
        };
        let _ = self.reply.send(result); // the caller may have gone away; the write stands
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = run_batch(&conn, &mut batch);
        if let Err(e) = &commit {
            tracing::error!(error = %e, changes = batch.len(), "audit/state commit failed; callers get the error");
        }
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let outcome = (|| {
        for job in batch.iter_mut() {
            conn.prepare_cached("SAVEPOINT job")?.execute([])?;
            if !job.run(conn) {
                conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            }
            conn.prepare_cached("RELEASE job")?.execute([])?;
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    if outcome.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    outcome
}

fn us(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn from_us(v: i64) -> Timestamp {
    Timestamp::from_microsecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn insert_events(conn: &Connection, events: &[EventDraft]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO audit_events (ts_us, actor, action, outcome, resource, subject, request_id, grant_id, session_id, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for e in events {
        stmt.execute(params![
            us(e.ts),
            e.actor,
            e.action,
            e.outcome.as_str(),
            e.resource,
            e.subject,
            e.request_id,
            e.grant_id,
            e.session_id,
            e.details.to_string(),
        ])?;
    }
    Ok(())
}

fn write_request(conn: &Connection, r: &AccessRequest, insert: bool) -> Result<()> {
    let body = serde_json::to_string(r)
        .map_err(|e| StoreError::Db(format!("cannot encode request {}: {e}", r.id)))?;
    let deadline = r.next_deadline().map(us);
    if insert {
        conn.prepare_cached(
            "INSERT INTO requests (id, grant_id, principal, resource, state, has_grant, created_us, next_deadline_us, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![r.id, r.grant_id, r.principal, r.resource, r.state.as_str(), r.grant.is_some(), us(r.created_at), deadline, body])?;
        let mut link = conn
            .prepare_cached("INSERT INTO request_policies (policy, request_id) VALUES (?1, ?2)")?;
        for p in &r.policies {
            link.execute(params![p, r.id])?;
        }
    } else {
        conn.prepare_cached("UPDATE requests SET state = ?2, has_grant = ?3, next_deadline_us = ?4, body = ?5 WHERE id = ?1")?
            .execute(params![r.id, r.state.as_str(), r.grant.is_some(), deadline, body])?;
    }
    Ok(())
}

fn load_request(conn: &Connection, key: &RequestKey) -> Result<Option<AccessRequest>> {
    let (sql, id) = match key {
        RequestKey::Request(id) => ("SELECT id, body FROM requests WHERE id = ?1", id),
        RequestKey::Grant(id) => (
            "SELECT id, body FROM requests WHERE grant_id = ?1 AND has_grant",
            id,
        ),
    };
    let row = conn
        .prepare_cached(sql)?
        .query_row([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    row.map(|(id, body)| decode(&id, &body)).transpose()
}

fn decode(id: &str, body: &str) -> Result<AccessRequest> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        id: id.to_owned(),
        why: e.to_string(),
    })
}

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    let details: String = r.get(10)?;
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
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
    })
}

/// Builds `WHERE a AND b ...` with numbered parameters.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Where {
    fn next(&self) -> usize {
        self.params.len() + 1
    }

    fn eq(&mut self, column: &str, value: Option<impl Into<Value>>) {
        if let Some(v) = value {
            self.clauses.push(format!("{column} = ?{}", self.next()));
            self.params.push(v.into());
        }
    }

    fn cmp(&mut self, column: &str, op: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.clauses.push(format!("{column} {op} ?{}", self.next()));
            self.params.push(v.into());
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_request(&self, request: AccessRequest, events: Vec<EventDraft>) -> Result<()> {
        self.write(move |conn| {
            write_request(conn, &request, true)?;
            insert_events(conn, &events)
        })
        .await
    }

    async fn update_request(&self, key: RequestKey, change: Change) -> Result<AccessRequest> {
        self.write(move |conn| {
            let mut request =
                load_request(conn, &key)?.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
            let events = change(&mut request)?;
            if !events.is_empty() {
                write_request(conn, &request, false)?;
                insert_events(conn, &events)?;
            }
            Ok(request)
        })
        .await
    }

    async fn append_events(&self, events: Vec<EventDraft>) -> Result<()> {
        self.write(move |conn| insert_events(conn, &events)).await
    }

    async fn get_request(&self, key: RequestKey) -> Result<Option<AccessRequest>> {
        self.read(move |conn| load_request(conn, &key)).await
    }

    async fn list_requests(&self, f: RequestFilter) -> Result<Vec<AccessRequest>> {
        self.read(move |conn| {
            let mut w = Where::default();
            w.eq("state", f.state.map(|s| s.as_str().to_owned()));
            w.eq("principal", f.principal);
            w.eq("resource", f.resource);
            if f.with_grant {
                w.clauses.push("has_grant".into());
            }
            if let Some((who, policies)) = f.visible_to {
                let mut alt = format!("principal = ?{}", w.next());
                w.params.push(who.into());
                if !policies.is_empty() {
                    let first = w.next();
                    let marks: Vec<String> = (first..first + policies.len())
                        .map(|i| format!("?{i}"))
                        .collect();
                    alt += &format!(
                        " OR id IN (SELECT request_id FROM request_policies WHERE policy IN ({}))",
                        marks.join(", ")
                    );
                    w.params.extend(policies.into_iter().map(Value::from));
                }
                w.clauses.push(format!("({alt})"));
            }
            let limit = if f.limit == 0 {
                100
            } else {
                f.limit.min(MAX_LIST)
            };
            let sql = format!(
                "SELECT id, body FROM requests {} ORDER BY created_us DESC, id LIMIT {limit}",
                w.sql()
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(w.params), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.map(|row| {
                let (id, body) = row?;
                decode(&id, &body)
            })
            .collect()
        })
        .await
    }

    async fn due_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<String>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM requests WHERE next_deadline_us <= ?1 ORDER BY next_deadline_us LIMIT ?2",
            )?;
            let ids = stmt.query_map(params![us(now), limit], |r| r.get(0))?;
            Ok(ids.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        self.read(|conn| {
            let v: Option<i64> = conn
                .prepare_cached(
                    "SELECT min(next_deadline_us) FROM requests WHERE next_deadline_us IS NOT NULL",
                )?
                .query_row([], |r| r.get(0))?;
            Ok(v.map(from_us))
        })
        .await
    }

    async fn search_events(&self, f: EventFilter) -> Result<Vec<AuditEvent>> {
        self.read(move |conn| {
            let mut w = Where::default();
            w.cmp("seq", ">", f.after_seq);
            w.cmp("ts_us", ">=", f.since.map(us));
            w.cmp("ts_us", "<", f.until.map(us));
            w.eq("actor", f.actor);
            w.eq("resource", f.resource);
            w.eq("request_id", f.request_id);
            w.eq("grant_id", f.grant_id);
            w.eq("session_id", f.session_id);
            w.eq("outcome", f.outcome);
            if let Some(glob) = f.action {
                w.clauses.push(format!("action LIKE ?{} ESCAPE '\\'", w.next()));
                w.params.push(glob_to_like(&glob).into());
            }
            if let Some(who) = f.involving {
                let n = w.next();
                w.clauses.push(format!("(actor = ?{n} OR subject = ?{n})"));
                w.params.push(who.into());
            }
            let limit = if f.limit == 0 { 100 } else { f.limit.min(MAX_LIST) };
            let sql = format!(
                "SELECT seq, ts_us, actor, action, outcome, resource, subject, request_id, grant_id, session_id, details
                 FROM audit_events {} ORDER BY seq LIMIT {limit}",
                w.sql()
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(w.params), event_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
