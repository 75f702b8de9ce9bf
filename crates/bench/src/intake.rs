//! `jitgate-bench intake --callers N --seconds S`: what a durable gateway statement waits for.
//! N callers each append one event at a time and wait for it to be durable, as sessions in
//! durable mode do: through the store's intake journal, against the baseline in the same run,
//! a SQLite group commit of the same events (`Store::append_events`). Each runs twice,
//! alternated, and the better run of each is printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jitgate_core::{Clock, SystemClock};
use jitgate_store::{AuditStore, SqliteStore, Store};

pub async fn run(callers: usize, seconds: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("jitgate.db"))?);
    let window = Duration::from_secs(seconds);
    // Alternated, so drift in the disk's speed hits both alike.
    let mut commit = Vec::new();
    let mut intake = Vec::new();
    for _ in 0..2 {
        commit.push(measure(&store, callers, window, false).await?);
        intake.push(measure(&store, callers, window, true).await?);
    }
    let best = |runs: &[Figures]| {
        runs.iter()
            .copied()
            .max_by(|a, b| a.per_s.total_cmp(&b.per_s))
    };
    let (commit, intake) = (best(&commit).expect("runs"), best(&intake).expect("runs"));
    for (name, f) in [
        ("sqlite commit (baseline)", commit),
        ("intake journal", intake),
    ] {
        println!(
            "{name}: {:.0} durable events/s, wait p50 {:.3} ms, p99 {:.3} ms",
            f.per_s, f.p50_ms, f.p99_ms
        );
    }
    // Everything acknowledged is in the log once the intake catches up.
    let found = store.head().borrow().seq;
    anyhow::ensure!(found > 0, "no events reached the log");
    println!(
        "callers={callers} intake_per_s={:.0} commit_per_s={:.0} ratio={:.2} intake_p50_ms={:.3} commit_p50_ms={:.3}",
        intake.per_s,
        commit.per_s,
        intake.per_s / commit.per_s,
        intake.p50_ms,
        commit.p50_ms
    );
    Ok(())
}

#[derive(Clone, Copy)]
struct Figures {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn measure(
    store: &Arc<SqliteStore>,
    callers: usize,
    window: Duration,
    journal: bool,
) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let clock = SystemClock;
            let mut waits = Vec::new();
            let mut i = 0u64;
            while started.elapsed() < window {
                let e = crate::audit::event(clock.now(), c as u64 * 1_000_000 + i);
                let t = Instant::now();
                if journal {
                    store.journal_events(vec![e]).await?;
                } else {
                    store.append_events(vec![e]).await?;
                }
                waits.push(t.elapsed());
                i += 1;
            }
            Ok::<_, jitgate_store::StoreError>(waits)
        }));
    }
    let mut waits = Vec::new();
    for t in tasks {
        waits.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    waits.sort();
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    Ok(Figures {
        per_s: waits.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}
