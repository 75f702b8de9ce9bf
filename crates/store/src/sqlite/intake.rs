//! The intake journal: events that must be durable before their caller goes on (the statements a
//! gateway in durable mode holds back) are made durable in a plain file, and the writer takes them
//! into the chain behind.
//!
//! Committing a group of statement events to SQLite writes about a dozen pages to the WAL (the
//! events, their payloads, four indexes) and syncs it: about 0.7 ms per group on this project's
//! test machine, all of it on the statement's path. Appending the sealed events to a file and
//! syncing that is one write and one `fdatasync` (about 0.2 ms). The writer then takes each record
//! into the chain, in order, in the same transaction as it notes the record's number
//! (`audit_intake.taken`); after a crash, `recover` takes in exactly the records after it.
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

use super::audit::{self, Head, SealedEvent};
use super::{Job, Result, run_batch};
use crate::StoreError;

/// Once the file is this long and every record in it is in the log, it starts again from empty.
const RESTART_AT: u64 = 64 << 20;
/// Most callers made durable by one write.
const MOST: usize = 1024;
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
    tx: mpsc::Sender<Message>,
    progress: Arc<Progress>,
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
        StoreError::Db(format!(
            "intake journal {}: cannot {what}: {e}",
            path.display()
        ))
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
        jobs.push(Box::new(Ingest::new(number, events, None)));
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

/// The records in `bytes`, in order; a record cut short at the end is left out.
fn records(bytes: &[u8]) -> std::result::Result<Vec<(u64, &[u8])>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
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
            if size == rest.len() || rest.iter().all(|&b| b == 0) {
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
        std::thread::Builder::new()
            .name("jitgate-intake".into())
            .spawn(move || run(r, rx, writer, shared))
            .map_err(|e| StoreError::Db(format!("cannot start the intake thread: {e}")))?;
        Ok(Self { tx, progress })
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
                .map_err(|e| StoreError::Db(format!("cannot encode an event: {e}")))?;
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
    /// there is to read).
    pub(super) async fn caught_up(&self) {
        let target = self.progress.durable.load(Ordering::Acquire);
        let mut taken = self.progress.taken.subscribe();
        let _ = taken
            .wait_for(|t| t.as_ref().map_or(true, |n| *n >= target))
            .await;
    }

    /// Overwrites and empties the journal once all it holds is in the log: after an erasure, no
    /// copy of an erased payload may remain here either.
    pub(super) async fn clear(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Clear(reply)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn send(&self, m: Message) -> Result<()> {
        self.tx.send(m).await.map_err(|_| StoreError::Closed)
    }
}

/// The journal thread's state: the file, and the record being gathered for the callers waiting.
struct Journal {
    file: File,
    /// Bytes of records in the file.
    len: u64,
    /// The number of the last record written.
    number: u64,
    record: Vec<u8>,
    waiting: Vec<oneshot::Sender<Result<()>>>,
    events: Vec<SealedEvent>,
    writer: mpsc::Sender<Box<dyn Job>>,
    progress: Arc<Progress>,
}

/// The journal thread: gathers waiting callers, writes one record for them all, syncs, answers,
/// and hands the events to the writer.
fn run(
    r: Recovered,
    mut rx: mpsc::Receiver<Message>,
    writer: mpsc::Sender<Box<dyn Job>>,
    progress: Arc<Progress>,
) {
    let mut j = Journal {
        file: r.file,
        len: 0,
        number: r.taken,
        record: Vec::with_capacity(64 * 1024),
        waiting: Vec::with_capacity(MOST),
        events: Vec::new(),
        writer,
        progress,
    };
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Message::Append {
                    entries,
                    events,
                    reply,
                } => j.gather(&entries, events, reply),
                Message::Clear(reply) => {
                    // What was gathered before the clear is written first, and cleared with the rest.
                    j.flush();
                    let _ = reply.send(j.clear());
                }
            }
            if j.waiting.len() < MOST {
                next = rx.try_recv().ok();
            }
        }
        j.flush();
    }
}

impl Journal {
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

    /// Writes and syncs the gathered record, answers its callers, and passes its events on.
    fn flush(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let outcome = self.write();
        let events = std::mem::take(&mut self.events);
        if outcome.is_ok() {
            self.progress.durable.store(self.number, Ordering::Release);
            let job = Ingest::new(self.number, events, Some(self.progress.clone()));
            if self.writer.blocking_send(Box::new(job)).is_err() {
                self.progress.stop("the store's writer has stopped".into());
            }
        }
        for reply in self.waiting.drain(..) {
            let _ = reply.send(outcome.clone());
        }
    }

    fn write(&mut self) -> Result<()> {
        let taken = self.progress.taken.borrow().clone();
        let taken =
            taken.map_err(|why| StoreError::Db(format!("audit intake has stopped: {why}")))?;
        if self.len >= RESTART_AT && taken == self.number {
            // Every record so far is in the log: start the file again rather than let it grow.
            self.file
                .set_len(0)
                .map_err(|e| self.progress.fail("empty", e))?;
            self.len = 0;
        }
        let number = self.number + 1;
        let record = &mut self.record;
        record.push(b']');
        let size = (record.len() - HEADER) as u32;
        record[HEADER..HEADER + NUMBER].copy_from_slice(&number.to_le_bytes());
        let crc = crc32fast::hash(&record[HEADER..]);
        record[..4].copy_from_slice(&size.to_le_bytes());
        record[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        self.file
            .write_all_at(record, self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.progress.fail("write", e))?;
        self.len += record.len() as u64;
        self.number = number;
        Ok(())
    }

    /// Waits until every record written is in the log, then overwrites and empties the file.
    fn clear(&mut self) -> Result<()> {
        loop {
            match &*self.progress.taken.borrow() {
                Ok(n) if *n >= self.number => break,
                Ok(_) => {}
                Err(why) => {
                    return Err(StoreError::Db(format!(
                        "audit intake has stopped ({why}); its journal keeps what it holds until the next start"
                    )));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let zeros = vec![0u8; 64 * 1024];
        let mut at = 0;
        while at < self.len {
            let n = zeros.len().min((self.len - at) as usize);
            self.file
                .write_all_at(&zeros[..n], at)
                .map_err(|e| self.progress.fail("overwrite", e))?;
            at += n as u64;
        }
        self.file
            .sync_data()
            .and_then(|()| self.file.set_len(0))
            .map_err(|e| self.progress.fail("empty", e))?;
        self.len = 0;
        Ok(())
    }
}

impl Progress {
    fn stop(&self, why: String) {
        tracing::error!(%why, "audit intake stopped; durable gateway statements are refused until jitgate restarts");
        let _ = self.taken.send_replace(Err(why));
    }

    fn fail(&self, what: &str, e: std::io::Error) -> StoreError {
        let why = format!("cannot {what} the intake journal: {e}");
        self.stop(why.clone());
        StoreError::Db(why)
    }
}

/// Takes one record's events into the chain, and notes the record's number with them.
struct Ingest {
    number: u64,
    events: Vec<SealedEvent>,
    /// Told how it went; `None` while recovering at open.
    progress: Option<Arc<Progress>>,
    outcome: std::result::Result<(), String>,
}

impl Ingest {
    fn new(number: u64, events: Vec<SealedEvent>, progress: Option<Arc<Progress>>) -> Self {
        Self {
            number,
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
            Ok(t) if t + 1 == self.number => {}
            Ok(t) => {
                self.outcome = Err(format!(
                    "intake record {} arrived after record {t}; the journal keeps it for the next start",
                    self.number
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
                .execute([self.number as i64])?;
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
                    Ok(n) if *n < self.number => {
                        *t = Ok(self.number);
                        true
                    }
                    _ => false,
                });
            }
            Err(why) => progress.stop(why),
        }
    }
}
