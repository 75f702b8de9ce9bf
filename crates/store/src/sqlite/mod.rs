//! SQLite store: one writer thread that group-commits, and a small pool of readers (WAL mode lets
//! them read while the writer writes).
//!
//! A durable SQLite commit costs an fsync (about 0.15 ms here), so commits are shared: the writer
//! takes every change that is waiting, runs each in its own savepoint (a failing change rolls back
//! alone), commits once, and only then answers each caller. Nobody hears "done" before their
//! change is durable.
//!
//! The writer also holds the head of the audit chain: it reads it at the start of every batch (so
//! a second process appending to the same file is followed, not forked) and advances it as events
//! are appended; a change that rolls back rolls the head back with it.

mod audit;
mod audit_store;
mod counts;
mod holds;
mod intake;
mod sessions;

use audit::SealedEvent;
pub use audit::{ArchiveLookup, ScanError};
pub use intake::path_for as intake_path;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use async_trait::async_trait;
use jitgate_audit::{Checkpoint, Verifier};
use jitgate_core::{AccessRequest, EventDraft, State, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use tokio::sync::{mpsc, oneshot, watch};

use crate::sessions::{AuthSession, EndRecord, SessionKey, UsedJti};
use crate::{Change, Head, RequestFilter, RequestKey, Store, StoreError};

/// Schema steps, in order; `user_version` records how many have run.
enum Migration {
    Sql(&'static str),
    /// SQL, then code that moves data into the new shape, in the same transaction.
    SqlThen(&'static str, fn(&Connection) -> Result<()>),
}

const MIGRATIONS: &[Migration] = &[
    Migration::Sql(include_str!("../../migrations/sqlite/0001_init.sql")),
    Migration::SqlThen(
        include_str!("../../migrations/sqlite/0002_chain.sql"),
        audit::migrate_v1,
    ),
    Migration::Sql(include_str!("../../migrations/sqlite/0003_time_blocks.sql")),
    Migration::Sql(include_str!(
        "../../migrations/sqlite/0004_subject_index.sql"
    )),
    Migration::Sql(include_str!("../../migrations/sqlite/0005_intake.sql")),
    Migration::Sql(include_str!(
        "../../migrations/sqlite/0006_auth_sessions.sql"
    )),
];
/// Most changes committed together; bounds the time one transaction holds the write lock.
const MAX_BATCH: usize = 2048;
const MAX_LIST: u32 = 1000;

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<ReadPool>,
    head: watch::Receiver<Head>,
    /// `None` when another process holds the journal (it appends directly then).
    intake: Option<intake::Intake>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies migrations, starts the writer.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = open_connection(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            Reads::Scans,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&mut conn)?;
        let recovered = intake::recover(path, &conn)?;
        let (head_tx, head) = watch::channel(audit::read_head(&conn)?);
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        thread::Builder::new()
            .name("jitgate-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, head_tx))
            .map_err(|e| StoreError::caused("cannot start the writer thread", e))?;
        let intake = recovered
            .map(|r| intake::Intake::start(r, tx.clone()))
            .transpose()?;
        Ok(Self {
            intake,
            writer: tx,
            readers: Arc::new(ReadPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
            head,
        })
    }

    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Head) -> Result<T> + Send + 'static,
    {
        self.submit(work, true).await
    }

    /// Like `write`, for work that fails only when the database does (appending events): it
    /// runs without a savepoint of its own, and if it fails after all, the whole batch is rolled
    /// back and every caller in it gets the error. A savepoint makes SQLite copy each page the
    /// work touches into a sub-journal, and consecutive appends touch the same pages: without
    /// it appends run several times faster.
    async fn write_unisolated<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Head) -> Result<T> + Send + 'static,
    {
        self.submit(work, false).await
    }

    async fn submit<T, F>(&self, work: F, isolated: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Head) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
            isolated,
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits until the events the intake journal acknowledged so far are in the log.
    async fn caught_up(&self) {
        if let Some(intake) = &self.intake {
            intake.caught_up().await;
        }
    }

    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.with(work))
            .await
            .map_err(|e| StoreError::caused("reader task failed", e))?
    }
}

/// How a connection reads the database file.
#[derive(Debug, Clone, Copy)]
enum Reads {
    /// Whole-log passes (verification; the writer's sweeps): through a memory map, with no copy
    /// per page read. SQLite caps the map at its compile-time limit (2 GiB).
    Scans,
    /// Short reads while others commit (logins, API requests, sweep batches): copied. A read
    /// that begins after any commit makes SQLite drop the connection's whole map, and tearing a
    /// map down flushes every core's TLB; that was a fifth of a gateway login's grant lookup.
    Short,
}

fn open_connection(path: &Path, flags: OpenFlags, reads: Reads) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    configure(&conn, reads)?;
    Ok(conn)
}

/// The settings every connection runs with.
fn configure(conn: &Connection, reads: Reads) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // FULL: a commit is on disk when it returns, WAL or not.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each change runs in a savepoint; keep savepoint sub-journals in memory, not in temp files.
    // Durability comes from the WAL, which this does not touch.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -65536)?; // 64 MiB
    let mmap_size: i64 = match reads {
        Reads::Scans => 1 << 31,
        Reads::Short => 0,
    };
    conn.pragma_update(None, "mmap_size", mmap_size)?;
    // Deleted audit payloads (retention, erasure) are overwritten, not left in free space.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Plan each statement once. Without this, SQLite (built with STAT4) re-plans some cached
    // statements on every run after new values are bound, which `perf` showed as a third of a
    // gateway login's grant lookup.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Runs the migrations not yet run, up to `target` of them (tests stop short to build old logs).
fn migrate_to(conn: &mut Connection, target: usize) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::db(format!(
            "the database schema is version {version}, newer than this jitgate knows ({known}); upgrade jitgate"
        )));
    }
    for (i, step) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target)
        .skip(version as usize)
    {
        let tx = conn.transaction()?;
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::SqlThen(sql, code) => {
                tx.execute_batch(sql)?;
                code(&tx)?;
            }
        }
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
            None => open_connection(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY, Reads::Short)?,
        };
        let out = work(&conn);
        self.idle.lock().expect("pool lock").push(conn);
        out
    }
}

/// One change waiting for the writer: run inside the batch's transaction, answered after commit.
trait Job: Send {
    /// Runs the work; `false` if it failed (its savepoint is then rolled back).
    fn run(&mut self, conn: &Connection, head: &mut Head) -> bool;
    /// Whether it runs in a savepoint of its own, so that its failure fails it alone.
    fn isolated(&self) -> bool;
    fn finish(self: Box<Self>, commit: Result<()>);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    isolated: bool,
}

impl<T: Send, F: FnOnce(&Connection, &mut Head) -> Result<T> + Send> Job for Pending<T, F> {
    fn run(&mut self, conn: &Connection, head: &mut Head) -> bool {
        let work = self.work.take().expect("a job runs once");
        let result = work(conn, head);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn isolated(&self) -> bool {
        self.isolated
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        let result = match commit {
            Ok(()) => self.result.unwrap_or(Err(StoreError::Closed)),
            Err(e) => Err(e),
        };
        let _ = self.reply.send(result); // the caller may have gone away; the write stands
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>, heads: watch::Sender<Head>) {
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
        match &commit {
            Ok(head) => {
                heads.send_if_modified(|h| std::mem::replace(h, *head) != *head);
            }
            Err(e) => {
                tracing::error!(error = %e, changes = batch.len(), "audit/state commit failed; callers get the error")
            }
        }
        let commit = commit.map(|_| ());
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
}

/// Runs a batch in one transaction; returns the chain head after it.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<Head> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let outcome = (|| {
        let start = audit::read_head(conn)?;
        let mut head = start;
        for job in batch.iter_mut() {
            if !job.isolated() {
                if !job.run(conn, &mut head) {
                    return Err(StoreError::db(
                        "an append failed; the batch it was in is rolled back",
                    ));
                }
                continue;
            }
            conn.prepare_cached("SAVEPOINT job")?.execute([])?;
            let before = head;
            if !job.run(conn, &mut head) {
                conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
                head = before;
            }
            conn.prepare_cached("RELEASE job")?.execute([])?;
        }
        if head.seq > start.seq {
            audit::note_time_block(conn, start.seq + 1, head.seq)?;
        }
        conn.execute_batch("COMMIT")?;
        Ok(head)
    })();
    if outcome.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    outcome
}

pub(crate) fn us(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(crate) fn from_us(v: i64) -> Timestamp {
    Timestamp::from_microsecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn write_request(conn: &Connection, r: &AccessRequest, insert: bool) -> Result<()> {
    let body = serde_json::to_string(r)
        .map_err(|e| StoreError::caused(&format!("cannot encode request {}", r.id), e))?;
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
        let events = SealedEvent::seal_all(events);
        self.write(move |conn, head| {
            write_request(conn, &request, true)?;
            audit::insert_events(conn, head, &events)
        })
        .await
    }

    async fn update_request(&self, key: RequestKey, change: Change) -> Result<AccessRequest> {
        self.write(move |conn, head| {
            let mut request =
                load_request(conn, &key)?.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
            let events = change(&mut request)?;
            if !events.is_empty() {
                write_request(conn, &request, false)?;
                audit::insert_events(conn, head, &SealedEvent::seal_all(events))?;
            }
            Ok(request)
        })
        .await
    }

    async fn append_events(&self, events: Vec<EventDraft>) -> Result<()> {
        let events = SealedEvent::seal_all(events);
        // The events come back to be freed here, not on the writer thread.
        self.write_unisolated(move |conn, head| {
            audit::insert_events(conn, head, &events)?;
            Ok(events)
        })
        .await
        .map(drop)
    }

    async fn journal_events(&self, events: Vec<EventDraft>) -> Result<()> {
        match &self.intake {
            Some(intake) => intake.append(events).await,
            None => self.append_events(events).await,
        }
    }

    async fn get_request(&self, key: RequestKey) -> Result<Option<AccessRequest>> {
        self.read(move |conn| load_request(conn, &key)).await
    }

    async fn list_requests(&self, f: RequestFilter) -> Result<Vec<AccessRequest>> {
        self.read(move |conn| {
            let mut w = Where::default();
            if f.include_pending_extensions && f.state == Some(State::Pending) {
                w.clauses.push(
                    "(state = 'pending' OR (state = 'active' AND EXISTS (SELECT 1 FROM \
                     json_each(body, '$.grant.extensions') WHERE value ->> 'state' = 'pending')))"
                        .into(),
                );
            } else {
                w.eq("state", f.state.map(|s| s.as_str().to_owned()));
            }
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

    async fn insert_session(
        &self,
        session: AuthSession,
        jti: Option<UsedJti>,
        events: Vec<EventDraft>,
    ) -> Result<bool> {
        let events = SealedEvent::seal_all(events);
        self.write(move |conn, head| {
            let fresh = sessions::insert(conn, &session, jti.as_ref(), session.created_at)?;
            if fresh {
                audit::insert_events(conn, head, &events)?;
            }
            Ok(fresh)
        })
        .await
    }

    async fn session(&self, digest: [u8; 32]) -> Result<Option<AuthSession>> {
        self.read(move |conn| sessions::by_digest(conn, &digest))
            .await
    }

    async fn live_sessions(
        &self,
        principal: Option<String>,
        now: Timestamp,
    ) -> Result<Vec<AuthSession>> {
        self.read(move |conn| sessions::live(conn, principal.as_deref(), now))
            .await
    }

    async fn end_sessions(
        &self,
        key: SessionKey,
        now: Timestamp,
        record: EndRecord,
    ) -> Result<Vec<AuthSession>> {
        self.write(move |conn, head| {
            let ended = sessions::end(conn, &key, now)?;
            let events = record(&ended);
            if !events.is_empty() {
                audit::insert_events(conn, head, &SealedEvent::seal_all(events))?;
            }
            Ok(ended)
        })
        .await
    }

    async fn live_counts(&self) -> Result<crate::LiveCounts> {
        self.read(counts::live).await
    }
}

/// A read-only view of a log file, for offline verification while the server may be running.
pub struct LogFile {
    conn: Connection,
}

impl LogFile {
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(StoreError::NotFound(format!("database {}", path.display())));
        }
        let conn = open_connection(path, OpenFlags::SQLITE_OPEN_READ_ONLY, Reads::Scans)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < MIGRATIONS.len() as i64 {
            return Err(StoreError::db(format!(
                "the database schema is version {version}; start `jitgate serve` once to upgrade it"
            )));
        }
        Ok(Self { conn })
    }

    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        audit::checkpoints(&self.conn)
    }

    pub fn head(&self) -> Result<Head> {
        audit::read_head(&self.conn)
    }

    /// Streams the log through `verifier`; see [`audit::scan`].
    pub fn scan(
        &self,
        verifier: &mut Verifier,
        archive: &mut ArchiveLookup<'_>,
        progress: &mut dyn FnMut(i64),
    ) -> std::result::Result<(), ScanError> {
        audit::scan(&self.conn, verifier, archive, progress)
    }
}
