//! The intake journal: events that must be durable before their caller goes on (the statements a
//! gateway in durable mode holds back) are made durable in a plain file, and the writer takes them
//! into the chain behind.
//!
//! Committing a group of statement events to SQLite writes about a dozen pages to the WAL (the
//! events, their payloads, four indexes) and syncs it: about 0.7 ms per group on this project's
//! test machine, all of it on the statement's path. Appending the sealed events to a file and
//! syncing that is one write and one `fdatasync` (about 0.2 ms). Every few milliseconds the writer
//! takes the records written since into the chain, in order, in one transaction that also notes
//! the last record's number (`audit_intake.taken`); after a crash, `recover` takes in exactly the
//! records after it.
//!
//! A record: `len: u32 LE` (of what follows the checksum), `crc32: u32 LE` (of what follows),
//! `number: u64 LE`, then the sealed events as a JSON array. A caller hears "durable" only after
//! `fdatasync`, so a record cut short at the end of the file was never acknowledged and is
//! dropped; a bad record with more after it is damage, and opening the store refuses.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jitgate_core::EventDraft;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::audit::{self, SealedEvent};
use super::{Job, Result, run_batch};
use crate::{Head, StoreError};

/// Once the file is this long and every record in it is in the log, it starts again from empty.
const RESTART_AT: u64 = 64 << 20;
/// The file is written with zeros this far ahead of its records, so that syncing a record only
/// flushes data: a sync after the file grew also writes its inode and block map (about 0.28 ms
/// instead of 0.2 ms on an idle disk here).
const ZEROED_AHEAD: u64 = 4 << 20;
/// Most callers made durable by one write.
const MOST: usize = 1024;
/// A record stops gathering callers at this size (its length field has 32 bits).
const MOST_BYTES: usize = 256 << 20;
/// How long written events wait to be handed to the writer, at most, so that the log takes
/// them in a few large commits rather than one per record (its syncs would compete with ours).
const HAND_OVER_AFTER: std::time::Duration = std::time::Duration::from_millis(5);
/// Hand over sooner once this many events wait.
const HAND_OVER_MOST: usize = 4096;
const HEADER: usize = 8;
const NUMBER: usize = 8;

/// Where the intake journal of the database at `db` lives.
pub fn path_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".intake");
    PathBuf::from(name)
}

/// The running journal: a thread that writes and syncs records, feeding the writer.
pub(super) struct Intake {
    /// `None` once dropping: closing it ends the thread.
    tx: Option<mpsc::Sender<Message>>,
    progress: Arc<Progress>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Intake {
    /// Waits for the thread to hand its last records over and let go of the file, so the
    /// database can be opened again at once and find the journal free.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Progress {
    /// The number of the last record made durable.
    durable: AtomicU64,
    /// The number of the last record in the log, or why intake stopped (fail closed).
    taken: watch::Sender<std::result::Result<u64, String>>,
}

enum Message {
    Append {
        entries: Vec<u8>,
        events: Vec<SealedEvent>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Empty the file (overwritten first) once everything in it is in the log.
    Clear(oneshot::Sender<Result<()>>),
}

/// An opened, locked journal whose records are all in the log.
pub(super) struct Recovered {
    file: File,
    taken: u64,
}

/// Opens the journal beside `db`, takes in what a crash left in it, and empties it. `None` when
/// another process holds it: that process takes its records in, and this one appends directly.
pub(super) fn recover(db: &Path, conn: &Connection) -> Result<Option<Recovered>> {
    let path = path_for(db);
    let io = |what: &str, e: std::io::Error| {
        StoreError::caused(
            &format!("intake journal {}: cannot {what}", path.display()),
            e,
        )
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("open", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", e)),
    }
    let mut taken = read_taken(conn)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| io("read", e))?;
    let mut jobs: Vec<Box<dyn Job>> = Vec::new();
    let mut count = 0;
    for (number, body) in records(&bytes).map_err(|why| corrupt(&path, why))? {
        if number <= taken {
            continue;
        }
        if number != taken + 1 {
            return Err(corrupt(
                &path,
                format!("record {number} follows record {taken}: records are missing"),
            ));
        }
        let events: Vec<SealedEvent> = serde_json::from_slice(body)
            .map_err(|e| corrupt(&path, format!("record {number}: {e}")))?;
        count += events.len();
        jobs.push(Box::new(Ingest::new(number..=number, events, None)));
        taken = number;
    }
    if !jobs.is_empty() {
        run_batch(conn, &mut jobs)?;
        tracing::warn!(
            events = count,
            records = jobs.len(),
            "took into the audit log the events the intake journal held at the last stop"
        );
    }
    file.set_len(0).map_err(|e| io("empty", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    Ok(Some(Recovered { file, taken }))
}

fn corrupt(path: &Path, why: String) -> StoreError {
    StoreError::Corrupt {
        id: format!("intake journal {}", path.display()),
        why,
    }
}

fn read_taken(conn: &Connection) -> Result<u64> {
    let taken: i64 = conn
        .prepare_cached("SELECT taken FROM audit_intake")?
        .query_row([], |r| r.get(0))?;
    Ok(taken as u64)
}

/// The records in `bytes`, in order, up to the zeros after them; a record cut short at the end
/// is left out.
fn records(bytes: &[u8]) -> std::result::Result<Vec<(u64, &[u8])>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.iter().all(|&b| b == 0) {
            break; // the zeros written ahead of the records
        }
        let len = rest
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
        let data = len.and_then(|len| rest.get(HEADER..HEADER + len));
        let Some(data) = data else {
            tracing::warn!(
                bytes = rest.len(),
                "the intake journal ends in a record cut short (never acknowledged); dropped"
            );
            break;
        };
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if data.len() < NUMBER || crc32fast::hash(data) != crc {
            let size = HEADER + data.len();
            if rest[size..].iter().all(|&b| b == 0) {
                tracing::warn!(
                    bytes = rest.len(),
                    "the intake journal ends in a torn record (never acknowledged); dropped"
                );
                break;
            }
            return Err(format!("bad record at byte {at}, with more after it"));
        }
        let number = u64::from_le_bytes(data[..NUMBER].try_into().expect("8 bytes"));
        out.push((number, &data[NUMBER..]));
        at += HEADER + data.len();
    }
    Ok(out)
}

impl Intake {
    pub(super) fn start(r: Recovered, writer: mpsc::Sender<Box<dyn Job>>) -> Result<Self> {
        let (tx, rx) = mpsc::channel(MOST * 4);
        let (taken, _) = watch::channel(Ok(r.taken));
        let progress = Arc::new(Progress {
            durable: AtomicU64::new(r.taken),
            taken,
        });
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("jitgate-intake".into())
            .spawn(move || run(r, rx, writer, shared))
            .map_err(|e| StoreError::caused("cannot start the intake thread", e))?;
        Ok(Self {
            tx: Some(tx),
            progress,
            thread: Some(thread),
        })
    }

    /// Returns once `events` are durable in the journal; they join the chain shortly after.
    pub(super) async fn append(&self, events: Vec<EventDraft>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let events = SealedEvent::seal_all(events);
        // Encoded here, on the caller's thread, so the journal thread only writes.
        let mut entries = Vec::with_capacity(events.len() * 512);
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                entries.push(b',');
            }
            serde_json::to_writer(&mut entries, e)
                .map_err(|e| StoreError::caused("cannot encode an event", e))?;
        }
        let (reply, answer) = oneshot::channel();
        self.send(Message::Append {
            entries,
            events,
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits until every record made durable before the call is in the log, so a reader sees
    /// what was acknowledged. Returns at once if intake has stopped (what is in the log is all
    /// there is to read), and after 10 s at most, so a stuck writer cannot hang every reader.
    pub(super) async fn caught_up(&self) {
        let target = self.progress.durable.load(Ordering::Acquire);
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.progress.in_log(target),
        )
        .await;
        if waited.is_err() {
            tracing::warn!(
                record = target,
                "the log has not taken in the intake journal's records for 10 s; reading without them"
            );
        }
    }

    /// Overwrites and empties the journal once all it holds is in the log: after an erasure, no
    /// copy of an erased payload may remain here either.
    pub(super) async fn clear(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Clear(reply)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn send(&self, m: Message) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(m).await.map_err(|_| StoreError::Closed)
    }
}

/// The journal thread's state: the file, the record being gathered for the callers waiting, and
/// the events written but not yet handed to the writer.
struct Journal {
    file: File,
    /// Bytes of records in the file.
    len: u64,
    /// Bytes of the file written (records, then zeros).
    zeroed: u64,
    /// The number of the last record written.
    number: u64,
    record: Vec<u8>,
    waiting: Vec<oneshot::Sender<Result<()>>>,
    events: Vec<SealedEvent>,
    /// Events of records `taking_from..=number`, durable, for the writer's next hand-over.
    taking: Vec<SealedEvent>,
    taking_from: u64,
    /// When `taking` goes to the writer at the latest.
    hand_over_at: Option<tokio::time::Instant>,
    writer: mpsc::Sender<Box<dyn Job>>,
    progress: Arc<Progress>,
}

/// The journal thread: on a runtime of its own, for the hand-over timer; its file I/O blocks
/// nobody else.
fn run(
    r: Recovered,
    rx: mpsc::Receiver<Message>,
    writer: mpsc::Sender<Box<dyn Job>>,
    progress: Arc<Progress>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            progress.stop(format!("cannot start the intake thread's runtime: {e}"));
            return;
        }
    };
    let mut j = Journal {
        file: r.file,
        len: 0,
        zeroed: 0,
        number: r.taken,
        record: Vec::with_capacity(64 * 1024),
        waiting: Vec::with_capacity(MOST),
        events: Vec::new(),
        taking: Vec::new(),
        taking_from: r.taken + 1,
        hand_over_at: None,
        writer,
        progress,
    };
    runtime.block_on(j.serve(rx));
}

impl Journal {
    /// Gathers waiting callers, writes one record for them all, syncs, answers; hands what was
    /// written to the writer every few milliseconds.
    async fn serve(&mut self, mut rx: mpsc::Receiver<Message>) {
        loop {
            let next = match self.hand_over_at {
                None => rx.recv().await,
                Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                    Ok(m) => m,
                    Err(_) => {
                        self.hand_over().await;
                        continue;
                    }
                },
            };
            let Some(first) = next else { break };
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Message::Append {
                        entries,
                        events,
                        reply,
                    } => self.gather(&entries, events, reply),
                    Message::Clear(reply) => {
                        // What came before the clear is written and taken in first.
                        self.flush();
                        self.hand_over().await;
                        let _ = reply.send(self.clear().await);
                    }
                }
                if self.waiting.len() < MOST && self.record.len() < MOST_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            self.flush();
            if self.taking.len() >= HAND_OVER_MOST {
                self.hand_over().await;
            }
            if self.len >= RESTART_AT {
                // Let the log catch up, so that the next record starts the file again; under
                // steady load it would otherwise always be a few milliseconds behind.
                self.hand_over().await;
                let _ = self.in_log().await; // an error stops the next write anyway
            }
        }
        self.hand_over().await;
    }

    fn gather(
        &mut self,
        entries: &[u8],
        events: Vec<SealedEvent>,
        reply: oneshot::Sender<Result<()>>,
    ) {
        if self.waiting.is_empty() {
            self.record.clear();
            self.record.extend_from_slice(&[0; HEADER + NUMBER]);
            self.record.push(b'[');
        } else {
            self.record.push(b',');
        }
        self.record.extend_from_slice(entries);
        self.events.extend(events);
        self.waiting.push(reply);
    }

    /// Writes and syncs the gathered record, answers its callers, and keeps its events for the
    /// writer.
    fn flush(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let outcome = self.write();
        if outcome.is_ok() {
            self.progress.durable.store(self.number, Ordering::Release);
            if self.taking.is_empty() {
                self.hand_over_at = Some(tokio::time::Instant::now() + HAND_OVER_AFTER);
            }
            self.taking.append(&mut self.events);
        } else {
            self.events.clear();
        }
        for reply in self.waiting.drain(..) {
            let _ = reply.send(outcome.clone());
        }
    }

    /// Gives the writer the events of every record written since the last hand-over, as one job.
    async fn hand_over(&mut self) {
        self.hand_over_at = None;
        if self.taking.is_empty() {
            return;
        }
        let job = Ingest::new(
            self.taking_from..=self.number,
            std::mem::take(&mut self.taking),
            Some(self.progress.clone()),
        );
        self.taking_from = self.number + 1;
        if self.writer.send(Box::new(job)).await.is_err() {
            self.progress.stop("the store's writer has stopped".into());
        }
    }

    fn write(&mut self) -> Result<()> {
        let taken = self.progress.taken.borrow().clone();
        let taken =
            taken.map_err(|why| StoreError::db(format!("audit intake has stopped: {why}")))?;
        if self.len >= RESTART_AT && taken == self.number {
            // Every record so far is in the log: start the file again rather than let it grow.
            self.file
                .set_len(0)
                .map_err(|e| self.progress.fail("empty", e))?;
            self.len = 0;
            self.zeroed = 0;
        }
        let number = self.number + 1;
        let record = &mut self.record;
        record.push(b']');
        let size = u32::try_from(record.len() - HEADER)
            .map_err(|_| StoreError::db("an intake record would exceed 4 GiB"))?;
        record[HEADER..HEADER + NUMBER].copy_from_slice(&number.to_le_bytes());
        let crc = crc32fast::hash(&record[HEADER..]);
        record[..4].copy_from_slice(&size.to_le_bytes());
        record[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        let end = self.len + record.len() as u64;
        if end > self.zeroed {
            let upto = end.max(self.zeroed + ZEROED_AHEAD);
            zero(&self.file, self.zeroed..upto).map_err(|e| self.progress.fail("extend", e))?;
            self.zeroed = upto;
        }
        self.file
            .write_all_at(record, self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.progress.fail("write", e))?;
        self.len += record.len() as u64;
        self.number = number;
        Ok(())
    }

    /// Waits until every record written is in the log.
    async fn in_log(&self) -> Result<()> {
        self.progress.in_log(self.number).await.map_err(|why| {
            StoreError::db(format!(
                "audit intake has stopped ({why}); its journal keeps what it holds until the next start"
            ))
        })
    }

    /// Waits until every record written is in the log, then overwrites and empties the file.
    async fn clear(&mut self) -> Result<()> {
        self.in_log().await?;
        zero(&self.file, 0..self.len).map_err(|e| self.progress.fail("overwrite", e))?;
        self.len = 0;
        Ok(())
    }
}

/// Writes zeros over `range` of the file and syncs them.
fn zero(file: &File, range: std::ops::Range<u64>) -> std::io::Result<()> {
    let zeros = vec![0u8; 256 << 10];
    let mut at = range.start;
    while at < range.end {
        let n = zeros.len().min((range.end - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

impl Progress {
    /// Waits until record `number` is in the log; why not, if intake stopped first.
    async fn in_log(&self, number: u64) -> std::result::Result<(), String> {
        let mut taken = self.taken.subscribe();
        match taken
            .wait_for(|t| t.as_ref().map_or(true, |n| *n >= number))
            .await
        {
            Ok(t) => t.clone().map(drop),
            Err(_) => Err("the store has shut down".into()),
        }
    }

    fn stop(&self, why: String) {
        tracing::error!(%why, "audit intake stopped; durable gateway statements are refused until jitgate restarts");
        let _ = self.taken.send_replace(Err(why));
    }

    fn fail(&self, what: &str, e: std::io::Error) -> StoreError {
        let error = StoreError::caused(&format!("cannot {what} the intake journal"), e);
        if let StoreError::Db { message, .. } = &error {
            self.stop(message.clone());
        }
        error
    }
}

/// Takes records' events into the chain, and notes the last record's number with them.
struct Ingest {
    records: std::ops::RangeInclusive<u64>,
    events: Vec<SealedEvent>,
    /// Told how it went; `None` while recovering at open.
    progress: Option<Arc<Progress>>,
    outcome: std::result::Result<(), String>,
}

impl Ingest {
    fn new(
        records: std::ops::RangeInclusive<u64>,
        events: Vec<SealedEvent>,
        progress: Option<Arc<Progress>>,
    ) -> Self {
        Self {
            records,
            events,
            progress,
            outcome: Ok(()),
        }
    }
}

impl Job for Ingest {
    fn run(&mut self, conn: &Connection, head: &mut Head) -> bool {
        // Checked before anything is written, so a gap fails this record alone.
        match read_taken(conn) {
            Ok(t) if t + 1 == *self.records.start() => {}
            Ok(t) => {
                self.outcome = Err(format!(
                    "intake records {:?} arrived after record {t}; the journal keeps them for the next start",
                    self.records
                ));
                return true;
            }
            Err(e) => {
                self.outcome = Err(e.to_string());
                return false;
            }
        }
        let written = audit::insert_events(conn, head, &self.events).and_then(|()| {
            conn.prepare_cached("UPDATE audit_intake SET taken = ?1")?
                .execute([*self.records.end() as i64])?;
            Ok(())
        });
        if let Err(e) = written {
            self.outcome = Err(e.to_string());
            return false;
        }
        true
    }

    fn isolated(&self) -> bool {
        false
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        let Some(progress) = self.progress else {
            return;
        };
        match commit.map_err(|e| e.to_string()).and(self.outcome) {
            Ok(()) => {
                progress.taken.send_if_modified(|t| match t {
                    Ok(n) if *n < *self.records.end() => {
                        *t = Ok(*self.records.end());
                        true
                    }
                    _ => false,
                });
            }
            Err(why) => progress.stop(why),
        }
    }
}
