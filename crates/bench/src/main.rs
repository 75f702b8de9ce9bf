//! `jitgate-bench`: measured performance of each capability. Every subcommand prints its figures
//! and, as its last line, `key=value` pairs for scripts. Each compares against a baseline taken
//! in the same run on the same machine.

/// The allocator the `jitgate` binary runs with, so in-process figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod audit;
mod auth;
mod connector;
mod gateway;
mod intake;
mod masking;
mod masking_db;
mod policy;

use clap::{Parser, Subcommand};
use jitgate_audit::EventFilter;
use jitgate_core::{Clock, SystemClock, Timestamp, duration};
use jitgate_server::auth::Caller;
use jitgate_server::service::NewRequest;
use jitgate_server::{Config, Running};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(name = "jitgate-bench", about = "jitgate benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Request creation (policy decision + durable audit event) and create+approve over HTTP.
    Lifecycle {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// A database connector: provision/revoke latency, and N grants ending at once.
    Connector {
        #[arg(long, value_parser = ["postgres", "mysql"])]
        kind: String,
        #[arg(long, default_value_t = 200)]
        grants: usize,
    },
    /// The `policy who-can` matrix over a generated config (target: ≤ 1 s), against judging
    /// every policy for every cell.
    Policy {
        #[arg(long, default_value_t = 1000)]
        principals: usize,
        #[arg(long, default_value_t = 200)]
        resources: usize,
        #[arg(long, default_value_t = 100)]
        policies: usize,
    },
    /// The gateway's resident memory per idle session.
    Gateway {
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
    },
    /// The audit log: durable appends, offline verification, a retention sweep under load.
    Audit {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Concurrent writers, one event per call each: each waits for its own durable
        /// commit, so a group commit holds at most this many events.
        #[arg(long, default_value_t = 256)]
        writers: usize,
    },
    /// What a durable gateway statement waits for: the intake journal against a SQLite commit.
    Intake {
        /// Concurrent callers, each waiting for its own event (gateway sessions in durable mode).
        #[arg(long, default_value_t = 8)]
        callers: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// A 1,000-row, 10-column result with 3 masked columns through the gateway, against the
    /// same result unmasked.
    Masking,
    /// The same result read with a grant's own login, masked by PostgreSQL itself (masked
    /// views), against a role without masking.
    MaskingDb {
        /// One strategy for both masked columns (redact, partial, hash, null); by default
        /// partial for one and hash for the other.
        #[arg(long)]
        strategy: Option<String>,
    },
    /// Workload token exchanges per second, and a session token's authentication cost against
    /// a static token's.
    Auth {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// N grants ending in the same instant: lag from expires_at to fully expired.
    Expiry {
        #[arg(long, default_value_t = 10_000)]
        grants: usize,
        /// Length of each grant.
        #[arg(long, default_value = "3s")]
        duration: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Bench::Lifecycle {
                seconds,
                concurrency,
            } => lifecycle(Duration::from_secs(seconds), concurrency).await,
            Bench::Expiry { grants, duration } => expiry(grants, &duration).await,
            Bench::Connector { kind, grants } => connector::run(&kind, grants).await,
            Bench::Gateway { sessions } => gateway::run(sessions).await,
            Bench::Audit { events, writers } => audit::run(events, writers).await,
            Bench::Masking => masking::run().await,
            Bench::Policy {
                principals,
                resources,
                policies,
            } => policy::run(principals, resources, policies),
            Bench::MaskingDb { strategy } => masking_db::run(strategy).await,
            Bench::Intake { callers, seconds } => intake::run(callers, seconds).await,
            Bench::Auth {
                seconds,
                concurrency,
            } => auth::run(seconds, concurrency).await,
        }
    })
}

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "data"

[[principals]]
name = "alice"
groups = ["engineering"]
token_sha256 = "ALICE"

[[principals]]
name = "dora"
groups = ["dba"]
token_sha256 = "DORA"

[[principals]]
name = "ci-bot"
kind = "service"
groups = ["ci"]

[[resources]]
name = "orders-db"
kind = "none"
[resources.roles.read]
[resources.roles.deploy]

[[policies]]
name = "engineers-read-orders"
principals = ["group:engineering"]
resources = ["orders-*"]
roles = ["read"]
max_duration = "4h"
require_reason = true
ticket_pattern = "(INC|CHG)-[0-9]+"
[policies.approval]
approvers = ["group:dba"]
required = 1

[[policies]]
name = "ci-deploys"
principals = ["service:ci-bot"]
resources = ["orders-db"]
roles = ["deploy"]
max_duration = "1h"
allow_overlapping = true          # the expiry benchmark holds thousands of grants at once
[policies.approval]
required = 0
"#;

async fn start(dir: &std::path::Path) -> anyhow::Result<Running> {
    start_with(dir, "").await
}

/// Starts a server with the bench principals and policies, plus `extra` config.
async fn start_with(dir: &std::path::Path, extra: &str) -> anyhow::Result<Running> {
    // The placeholders are in CONFIG only; the caller's text is taken as it is.
    let text = CONFIG
        .replace("ALICE", &hex::encode(Sha256::digest(b"tok-alice")))
        .replace("DORA", &hex::encode(Sha256::digest(b"tok-dora")))
        + extra;
    let path = dir.join("jitgate.toml");
    std::fs::write(&path, text)?;
    Ok(jitgate_server::start(Config::load(&path)?, Arc::new(SystemClock)).await?)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `op` from `concurrency` workers for `time`; returns (ops/s, sorted latencies in ms).
async fn load<F, Fut>(time: Duration, concurrency: usize, op: F) -> (f64, Vec<f64>)
where
    F: Fn(reqwest::Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, stop, errors, client) = (op.clone(), stop.clone(), errors.clone(), client.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if let Err(e) = op(client.clone()).await
                    && errors.fetch_add(1, Ordering::Relaxed) == 0
                {
                    eprintln!("first error: {e:#}");
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    tokio::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let errs = errors.load(Ordering::Relaxed);
    assert!(errs == 0, "{errs} operations failed");
    all.sort_by(f64::total_cmp);
    (all.len() as f64 / elapsed, all)
}

async fn lifecycle(time: Duration, concurrency: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let running = start(dir.path()).await?;
    let base = format!("http://{}", running.addr);
    eprintln!(
        "lifecycle: {concurrency} concurrent HTTP clients, {}s per phase, server and client on this machine",
        time.as_secs()
    );

    let url = format!("{base}/healthz");
    let (healthz_per_s, _) = load(time, concurrency, move |c| {
        let url = url.clone();
        async move {
            c.get(&url).send().await?.error_for_status()?;
            Ok(())
        }
    })
    .await;

    let url = format!("{base}/api/v1/requests");
    let body = json!({"resource": "orders-db", "role": "read", "duration": "30m", "reason": "bench", "ticket": "INC-1"});
    let (create_per_s, create_lat) = {
        let (url, body) = (url.clone(), body.clone());
        load(time, concurrency, move |c| {
            let (url, body) = (url.clone(), body.clone());
            async move {
                c.post(&url)
                    .bearer_auth("tok-alice")
                    .json(&body)
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .await
    };

    let (lifecycle_per_s, life_lat) = load(time, concurrency, move |c| {
        let (url, body) = (url.clone(), body.clone());
        let base = base.clone();
        async move {
            let r: serde_json::Value = c
                .post(&url)
                .bearer_auth("tok-alice")
                .json(&body)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let id = r["id"].as_str().unwrap_or_default();
            let resp = c
                .post(format!("{base}/api/v1/requests/{id}/approve"))
                .bearer_auth("tok-dora")
                .json(&json!({}))
                .send()
                .await?;
            let status = resp.status();
            let a: serde_json::Value = resp.json().await?;
            anyhow::ensure!(status.is_success(), "approve {id}: {status} {a}");
            anyhow::ensure!(a["state"] == "active", "approval did not activate: {a}");
            Ok(())
        }
    })
    .await;
    running.stop().await;

    let p99 = percentile(&life_lat, 99.0);
    println!("baseline  GET /healthz                      {healthz_per_s:>9.0}/s");
    println!(
        "create    POST /requests (policy+audit)       {create_per_s:>9.0}/s   p50 {:.2} ms  p99 {:.2} ms   {:.2} of healthz",
        percentile(&create_lat, 50.0),
        percentile(&create_lat, 99.0),
        create_per_s / healthz_per_s
    );
    println!(
        "lifecycle create + approve + activate        {lifecycle_per_s:>9.0}/s   p50 {:.2} ms  p99 {p99:.2} ms",
        percentile(&life_lat, 50.0)
    );
    println!(
        "lifecycle_per_s={lifecycle_per_s:.0} p99_ms={p99:.2} create_per_s={create_per_s:.0} create_p99_ms={:.2} healthz_per_s={healthz_per_s:.0} create_over_healthz={:.2}",
        percentile(&create_lat, 99.0),
        create_per_s / healthz_per_s
    );
    Ok(())
}

async fn expiry(n: usize, length: &str) -> anyhow::Result<()> {
    let length = duration::parse(length)?;
    let dir = tempfile::tempdir()?;
    let running = start(dir.path()).await?;
    let app = running.app.clone();
    let bot = app
        .config
        .principals
        .iter()
        .find(|p| p.principal.name == "ci-bot")
        .expect("ci-bot")
        .principal
        .clone();
    let caller = Caller {
        principal: bot,
        is_admin: false,
        is_auditor: false,
        session: None,
    };
    // Every grant starts at the same instant, so every grant also ends at the same instant.
    let lead = Duration::from_millis(2000 + n as u64 / 2);
    let start_at = duration::add(SystemClock.now(), lead);
    let expires_at = duration::add(start_at, length);
    eprintln!("expiry: creating {n} grants that all start at {start_at} and end at {expires_at}");
    let created = Instant::now();
    let mut tasks = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(64).max(1)) {
        let (app, caller, len) = (app.clone(), caller.clone(), chunk.len());
        tasks.push(tokio::spawn(async move {
            let reqs = (0..len).map(|_| {
                app.create_request(
                    &caller,
                    NewRequest {
                        resource: "orders-db".into(),
                        role: "deploy".into(),
                        duration: duration::format(length),
                        start_at: Some(start_at),
                        ..Default::default()
                    },
                )
            });
            for r in futures_util::future::join_all(reqs).await {
                r.expect("create");
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    eprintln!(
        "expiry: created in {:.2}s; waiting for the end",
        created.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        SystemClock.now() < start_at,
        "creating took longer than the lead time; use fewer grants"
    );

    // Baseline: N bare tokio timers set for the same instant, in the same process.
    let timer_lag = timer_baseline(n.min(10_000), duration::add(expires_at, Duration::ZERO)).await;

    let deadline = Instant::now() + lead + length + Duration::from_secs(60);
    while app.metrics.grants_ended.get() < n as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} grants ended",
            app.metrics.grants_ended.get()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lags = Vec::with_capacity(n);
    let mut after = None;
    loop {
        let page = app
            .store
            .search_events(EventFilter {
                action: Some("grant.expired".into()),
                after_seq: after,
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for e in &page {
            let end: Timestamp = e.details["expires_at"]
                .as_str()
                .unwrap_or_default()
                .parse()?;
            lags.push(e.ts.duration_since(end).as_secs_f64() * 1000.0);
        }
    }
    running.stop().await;
    anyhow::ensure!(
        lags.len() == n,
        "expected {n} grant.expired events, found {}",
        lags.len()
    );
    lags.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags[lags.len() - 1],
    );
    println!(
        "baseline  {} tokio timers at one instant: lag p99 {:.2} ms",
        n.min(10_000),
        percentile(&timer_lag, 99.0)
    );
    println!(
        "expiry    {n} grants ending at one instant:   lag p50 {p50:.1} ms  p99 {p99:.1} ms  max {max:.1} ms"
    );
    println!(
        "grants={n} expiry_p50_ms={p50:.1} expiry_p99_ms={p99:.1} expiry_max_ms={max:.1} timer_p99_ms={:.2}",
        percentile(&timer_lag, 99.0)
    );
    Ok(())
}

/// How late N tokio timers for the same wall-clock instant fire.
async fn timer_baseline(n: usize, at: Timestamp) -> Vec<f64> {
    let wait = duration::until(SystemClock.now(), at);
    let fire = tokio::time::Instant::now() + wait;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::sleep_until(fire).await;
                (tokio::time::Instant::now() - fire).as_secs_f64() * 1000.0
            })
        })
        .collect();
    let mut lags = Vec::with_capacity(n);
    for t in tasks {
        lags.push(t.await.unwrap_or(f64::NAN));
    }
    lags.sort_by(f64::total_cmp);
    lags
}
