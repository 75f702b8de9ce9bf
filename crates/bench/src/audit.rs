//! `jitgate-bench audit --events N`: durable appends with group commit, offline verification,
//! and a retention sweep of the whole log while a writer keeps appending.
//!
//! Baseline, in the same run: a plain batched SQLite insert of the same number of rows with
//! `synchronous=FULL` (no chain, no salt, no payload table).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jitgate_core::{Clock, EventDraft, SystemClock, Timestamp};
use jitgate_server::audit_offline::{self, VerifyOptions};
use jitgate_server::{AuditLog, Config};
use jitgate_store::{SqliteStore, Store};

/// `writers` concurrent writers append one event per call each, as gateway sessions do.
pub async fn run(events: u64, writers: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let baseline = baseline_insert(&dir.path().join("baseline.db"), events.min(2_000_000))?;
    println!("baseline: plain batched SQLite insert, synchronous=FULL: {baseline:.0} rows/s");

    let text = format!(
        "[server]\ndata_dir = \"{}\"\n\n[audit]\ncheckpoint_events = 1000\n\n\
         [[retention]]\nclass = \"session\"\nkeep = \"1d\"\naction = \"delete\"\n\n\
         [[retention]]\nclass = \"access\"\nkeep = \"1d\"\naction = \"archive\"\n",
        dir.path().join("data").display()
    );
    let config = Config::parse_in(&text, "bench", dir.path())?;
    std::fs::create_dir_all(&config.data_dir)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.database_path)?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let log = Arc::new(AuditLog::open(&config, store.clone(), clock.clone()).await?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signer = tokio::spawn(log.clone().run(stopped));

    // Appends: events two days old, so the sweep below finds them all due. One in ten is an
    // access event (archived), the rest session statements (deleted).
    let old = Timestamp::from_second(clock.now().as_second() - 2 * 86_400)?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (store, next) = (store.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return Ok::<_, jitgate_store::StoreError>(());
                }
                store.append_events(vec![event(old, i)]).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let append_s = started.elapsed().as_secs_f64();
    let append_per_s = events as f64 / append_s;
    let _ = stop.send(true);
    signer.await?;
    println!(
        "append: {events} events, one per call from {writers} concurrent writers, durable: {append_per_s:.0}/s ({:.2}x the plain insert)",
        append_per_s / baseline
    );

    // Verification, offline, one thread.
    let started = Instant::now();
    let report = verify(&config, None).await?;
    let verify_s = started.elapsed().as_secs_f64();
    let verify_per_s = report.events as f64 / verify_s;
    println!(
        "verify: {} events, {} payloads, {} checkpoints in {verify_s:.2} s: {verify_per_s:.0} events/s",
        report.events, report.payloads_checked, report.checkpoints
    );

    // The sweep, with a writer appending throughout: the longest single append is how long the
    // sweep blocked writers.
    let writing = Arc::new(AtomicBool::new(true));
    let worst_us = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, writing, worst_us, clock) = (
            store.clone(),
            writing.clone(),
            worst_us.clone(),
            clock.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while writing.load(Ordering::Relaxed) {
                let t = Instant::now();
                store.append_events(vec![event(clock.now(), n)]).await?;
                worst_us.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok::<_, jitgate_store::StoreError>(n)
        })
    };
    let started = Instant::now();
    let sweep = log.sweep(false, &|_| {}).await?;
    let sweep_s = started.elapsed().as_secs_f64();
    writing.store(false, Ordering::Relaxed);
    let during = writer.await??;
    let max_writer_block_ms = worst_us.load(Ordering::Relaxed) as f64 / 1000.0;
    println!(
        "sweep: {} events examined, {} deleted, {} archived in {} segments, {} batches (longest {:.1} ms) in {sweep_s:.2} s; \
         a writer appended {during} events meanwhile, its longest wait {max_writer_block_ms:.1} ms",
        sweep.examined,
        sweep.deleted,
        sweep.archived,
        sweep.segments,
        sweep.batches,
        sweep.max_batch_ms
    );
    // What the sweep left, live log and archive, verifies as one chain.
    let started = Instant::now();
    let after = verify(&config, Some(config.audit.archive.clone())).await?;
    println!(
        "verify after the sweep, with the archive: {} events, {} in gaps, {} checkpoints in {:.2} s",
        after.events,
        after.events_in_gaps,
        after.checkpoints,
        started.elapsed().as_secs_f64()
    );
    println!(
        "append_per_s={append_per_s:.0} verify_per_s={verify_per_s:.0} sweep_s={sweep_s:.2} max_writer_block_ms={max_writer_block_ms:.1}"
    );
    Ok(())
}

async fn verify(
    config: &Config,
    archive: Option<std::path::PathBuf>,
) -> anyhow::Result<jitgate_audit::Report> {
    let opts = VerifyOptions {
        database: config.database_path.clone(),
        keys: audit_offline::data_dir_keys(&config.data_dir)?,
        anchors: vec![],
        archive,
    };
    Ok(tokio::task::spawn_blocking(move || audit_offline::verify(&opts, &mut |_| {})).await??)
}

pub(crate) fn event(ts: Timestamp, i: u64) -> EventDraft {
    let action = if i.is_multiple_of(10) {
        "grant.activated"
    } else {
        "session.statement"
    };
    let mut e = EventDraft::new(ts, "alice", action);
    e.resource = Some("orders-db".into());
    e.subject = Some("alice".into());
    e.grant_id = Some("grt_0123456789ab".into());
    e.session_id = Some(format!("ses_{:012}", i / 100));
    e.details(serde_json::json!({ "sql": format!("SELECT * FROM orders WHERE id = {i}"), "rows": 1, "ms": 0.2 }))
}

/// Rows per second for a plain batched insert of `n` rows with `synchronous=FULL`.
fn baseline_insert(path: &Path, n: u64) -> anyhow::Result<f64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, ts_us INTEGER, actor TEXT, action TEXT, details TEXT)",
    )?;
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO t (ts_us, actor, action, details) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for _ in 0..1000.min(n - i) {
                stmt.execute(rusqlite::params![
                    i as i64,
                    "alice",
                    "session.statement",
                    "{\"sql\":\"SELECT 1\"}"
                ])?;
                i += 1;
            }
        }
        tx.commit()?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
