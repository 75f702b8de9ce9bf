//! `jitgate audit verify|export|erase|rotate-key|restore`, `jitgate hold …` and
//! `jitgate retention …`.
//!
//! Verification, restore and retention work on the server's files (with `--config` or
//! `--data-dir`), so they run on the host even while the server is down; the rest go through the
//! API as the caller.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use jitgate_core::{Clock, SystemClock};
use jitgate_server::Config;
use jitgate_server::audit_offline::{self, VerifyFailure, VerifyOptions};
use serde_json::{Value, json};

use crate::client::{Client, Failure, enc, query, usage};
use crate::output::out;
use crate::{Conn, Output, output, when};

/// Where the server's files are.
#[derive(Args, Clone, Debug)]
pub struct Local {
    /// The server's config: its data directory, database and file anchors are used.
    #[arg(long, env = "JITGATE_CONFIG", conflicts_with = "data_dir")]
    pub config: Option<PathBuf>,
    /// The server's data directory, when no config is at hand (its jitgate.db).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Local {
    /// `(data_dir, database, config)`, once the data directory is seen to hold a jitgate log.
    fn resolve(&self) -> anyhow::Result<(PathBuf, PathBuf, Option<Config>)> {
        let found = match (&self.config, &self.data_dir) {
            (Some(path), _) => {
                let c = Config::load(path)?;
                (c.data_dir.clone(), c.database_path.clone(), Some(c))
            }
            (None, Some(dir)) => (dir.clone(), dir.join("jitgate.db"), None),
            (None, None) => {
                return Err(usage(
                    "say where the log is: --config FILE or --data-dir DIR",
                ));
            }
        };
        audit_offline::check_data_dir(&found.0, &found.1)
            .map_err(|e| Failure::Refused(e.to_string()))?;
        Ok(found)
    }

    fn config(&self) -> anyhow::Result<Config> {
        match &self.config {
            Some(path) => Ok(Config::load(path)?),
            None => Err(usage(
                "this needs the server's config (--config FILE): its rules and archive",
            )),
        }
    }
}

#[derive(Subcommand)]
pub enum HoldCommand {
    /// Place a legal hold: covered events are never deleted or archived away.
    Create {
        /// The case or matter the hold is for, kept in the audit log.
        #[arg(long)]
        reason: String,
        /// Events about this resource.
        #[arg(long)]
        resource: Option<String>,
        /// Events this principal acted in or was the subject of.
        #[arg(long)]
        principal: Option<String>,
        /// Events of this request (by id).
        #[arg(long)]
        request: Option<String>,
        /// Events of this grant (by id).
        #[arg(long)]
        grant: Option<String>,
        /// Events from this time: RFC 3339, or a duration meaning that long ago.
        #[arg(long)]
        from: Option<String>,
        /// Events before this time: RFC 3339, or a duration meaning that long ago.
        #[arg(long)]
        until: Option<String>,
    },
    /// Active holds (all with --all).
    List {
        /// Released holds too.
        #[arg(long)]
        all: bool,
    },
    /// Release a hold.
    Release {
        /// The hold's id.
        id: String,
        /// Why it may go, kept in the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Run a retention sweep now (the server also runs one every `[audit] retention_every`).
    Run {
        #[command(flatten)]
        local: Local,
        /// Show what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Per-class counts, oldest events, next due action, active holds.
    Status {
        #[command(flatten)]
        local: Local,
    },
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}} [{{elapsed}}] {{per_sec}}"
        ))
        .expect("template"),
    );
    pb
}

pub fn verify(
    local: &Local,
    anchors: Vec<PathBuf>,
    public_keys: Option<PathBuf>,
    archive: Option<PathBuf>,
    out: Output,
) -> anyhow::Result<()> {
    let (data_dir, database, config) = local.resolve()?;
    let keys = match &public_keys {
        Some(file) => {
            jitgate_audit::PublicKey::read_file(file).map_err(|e| usage(e.to_string()))?
        }
        None => {
            eprintln!(
                "trusting the public keys in {}; pass --public-key FILE (kept elsewhere) for an independent check",
                data_dir
                    .join(jitgate_server::audit_log::PUBLIC_KEYS_FILE)
                    .display()
            );
            audit_offline::data_dir_keys(&data_dir).map_err(|e| Failure::Refused(e.to_string()))?
        }
    };
    let mut all_anchors = anchors;
    if let Some(c) = &config {
        for a in &c.audit.anchors {
            if let jitgate_server::config::Anchor::File(f) = a
                && !all_anchors.contains(f)
            {
                all_anchors.push(f.clone());
            }
        }
    }
    let head = jitgate_store::LogFile::open(&database)
        .and_then(|l| l.head())
        .map(|h| h.seq)
        .unwrap_or(0);
    let pb = bar(head as u64, "verifying seq");
    let opts = VerifyOptions {
        database,
        keys,
        anchors: all_anchors.clone(),
        archive,
    };
    let result = audit_offline::verify(&opts, &mut |seq| pb.set_position(seq as u64));
    pb.finish_and_clear();
    match result {
        Ok(report) => {
            if out == Output::Json {
                out!(
                    "{}",
                    json!({ "ok": true, "report": report, "anchors": all_anchors })
                );
            } else {
                out!(
                    "ok: {} events verified through seq {} ({} payloads checked, {} removed by retention or erasure), {} range boundaries covering {} events, {} checkpoints; signed through seq {}{}",
                    report.events,
                    report.last_seq,
                    report.payloads_checked,
                    report.payloads_removed,
                    report.gaps,
                    report.events_in_gaps,
                    report.checkpoints,
                    report.signed_through,
                    if all_anchors.is_empty() {
                        "; no anchor checked (truncation of the tail cannot be ruled out)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Err(VerifyFailure::Tampered(p)) => {
            if out == Output::Json {
                out!(
                    "{}",
                    json!({ "ok": false, "seq": p.seq, "problem": p.kind.as_str(), "detail": p.detail })
                );
            }
            Err(Failure::Refused(format!("verification failed: {p}")).into())
        }
        Err(VerifyFailure::Cannot(why)) => {
            Err(Failure::Refused(format!("cannot verify: {why}")).into())
        }
    }
}

pub async fn export(
    conn: &Conn,
    filters: Vec<(&str, Option<String>)>,
    format: &str,
    output_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    if !matches!(format, "jsonl" | "csv") {
        return Err(usage(format!("--format {format:?}: use jsonl or csv")));
    }
    let client = Client::new(&conn.url, conn.token.clone())?;
    let mut pairs = filters;
    pairs.push(("format", Some(format.to_owned())));
    let mut resp = client
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/audit/export{}", query(&pairs)),
            None,
        )
        .await?;
    let mut sink: Box<dyn Write> = match &output_file {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} exported {pos} events, {bytes} [{elapsed}] {per_sec}",
        )
        .expect("template"),
    );
    let mut lines = 0u64;
    while let Some(chunk) = resp.chunk().await.context("the export broke off")? {
        sink.write_all(&chunk)?;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        pb.set_position(lines);
    }
    sink.flush()?;
    pb.finish_and_clear();
    if let Some(path) = output_file {
        let events = if format == "csv" {
            lines.saturating_sub(1)
        } else {
            lines
        };
        eprintln!("exported {events} events to {}", path.display());
    }
    Ok(())
}

pub fn restore(
    archive: PathBuf,
    since: Option<String>,
    until: Option<String>,
    output_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let us = |t: Option<String>| -> anyhow::Result<Option<i64>> {
        t.map(|t| {
            let s = when(&t, true)?;
            Ok(s.parse::<jitgate_core::Timestamp>()?.as_microsecond())
        })
        .transpose()
    };
    let (since, until) = (us(since)?, us(until)?);
    let mut sink: Box<dyn Write> = match &output_file {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let n = audit_offline::restore(&archive, since, until, |e| {
        serde_json::to_writer(&mut sink, &e)
            .map_err(std::io::Error::from)
            .and_then(|()| sink.write_all(b"\n"))
            .inspect_err(|e| {
                // The reader went away (`| head`): the restore's own error would hide that.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    output::end_on_output_error(e)
                }
            })
    })
    .map_err(|e| Failure::Refused(format!("cannot restore: {e}")))?;
    sink.flush()?;
    eprintln!("restored {n} archived events (each segment matched its manifest's checksum)");
    Ok(())
}

pub async fn hold(conn: &Conn, command: HoldCommand) -> anyhow::Result<()> {
    let client = Client::new(&conn.url, conn.token.clone())?;
    let columns = [
        ("ID", "id"),
        ("REASON", "reason"),
        ("RESOURCE", "resource"),
        ("PRINCIPAL", "principal"),
        ("REQUEST", "request"),
        ("GRANT", "grant"),
        ("FROM", "from"),
        ("UNTIL", "until"),
        ("ACTIVE", "active"),
    ];
    let v = match command {
        HoldCommand::Create {
            reason,
            resource,
            principal,
            request,
            grant,
            from,
            until,
        } => {
            let body = json!({
                "reason": reason,
                "resource": resource,
                "principal": principal,
                "request": request,
                "grant": grant,
                "from": from.map(|t| when(&t, true)).transpose()?,
                "until": until.map(|t| when(&t, true)).transpose()?,
            });
            client.post("/api/v1/holds", body).await?
        }
        HoldCommand::List { all } => {
            let v = client
                .get(&format!(
                    "/api/v1/holds{}",
                    query(&[("all", all.then(|| "true".into()))])
                ))
                .await?;
            if conn.output == Output::Json {
                out!("{v}");
            } else {
                output::rows(&v, &columns);
            }
            return Ok(());
        }
        HoldCommand::Release { id, reason } => {
            client
                .post(
                    &format!("/api/v1/holds/{}/release", enc(&id)),
                    json!({ "reason": reason }),
                )
                .await?
        }
    };
    if conn.output == Output::Json {
        out!("{v}");
    } else {
        output::fields(
            &v,
            &[
                "id",
                "reason",
                "created_by",
                "resource",
                "principal",
                "request",
                "grant",
                "from",
                "until",
                "active",
                "released_by",
            ],
        );
    }
    Ok(())
}

pub async fn retention(command: RetentionCommand, out: Output) -> anyhow::Result<()> {
    match command {
        RetentionCommand::Run { local, dry_run } => {
            let config = local.config()?;
            let log = open_log(&config).await?;
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("template"),
            );
            let report = log
                .sweep(dry_run, &|r| {
                    pb.set_message(format!(
                        "examined {} events: {} deleted, {} archived, {} held (through seq {})",
                        r.examined, r.deleted, r.archived, r.held, r.through_seq
                    ))
                })
                .await?;
            pb.finish_and_clear();
            // Sign what the sweep wrote, so the log is covered when this process ends.
            log.checkpoint().await?;
            if out == Output::Json {
                out!("{}", serde_json::to_string(&report)?);
            } else {
                out!(
                    "{}{} events examined: {} deleted, {} archived into {} segments, {} kept under {} active holds; {} batches, longest {:.1} ms, {:.1} s in all",
                    if dry_run {
                        "dry run (nothing removed): "
                    } else {
                        ""
                    },
                    report.examined,
                    report.deleted,
                    report.archived,
                    report.segments,
                    report.held,
                    report.active_holds,
                    report.batches,
                    report.max_batch_ms,
                    report.seconds
                );
            }
            Ok(())
        }
        RetentionCommand::Status { local } => {
            let config = local.config()?;
            let store = jitgate_store::SqliteStore::open(&config.database_path)?;
            let store: Arc<dyn jitgate_store::Store> = Arc::new(store);
            let counts = store.action_counts().await?;
            let holds = store.list_holds(true).await?;
            let now = SystemClock.now();
            let mut classes = Vec::new();
            for class in jitgate_audit::retention::CLASSES {
                let (count, oldest) = counts
                    .iter()
                    .filter(|(a, ..)| jitgate_audit::retention::class_of(a) == *class)
                    .fold((0u64, None::<i64>), |(n, o), (_, c, t)| {
                        (n + c, Some(o.map_or(*t, |o| o.min(*t))))
                    });
                let rule = config.audit.retention.iter().find(|r| r.class == *class);
                let next_due = match (rule, oldest) {
                    (Some(r), Some(t)) => {
                        let due = jitgate_core::duration::add(
                            jitgate_core::Timestamp::from_microsecond(t)?,
                            r.keep,
                        );
                        Some(if due <= now {
                            "now".to_owned()
                        } else {
                            due.to_string()
                        })
                    }
                    _ => None,
                };
                classes.push(json!({
                    "class": class,
                    "events": count,
                    "oldest": oldest.and_then(|t| jitgate_core::Timestamp::from_microsecond(t).ok()).map(|t| t.to_string()),
                    "keep": rule.map(|r| jitgate_core::duration::format(r.keep)),
                    "action": rule.map(|r| r.action.as_str()).unwrap_or("keep forever"),
                    "next_due": next_due,
                }));
            }
            let v = json!({ "classes": classes, "active_holds": holds.len(), "holds": holds });
            if out == Output::Json {
                out!("{v}");
            } else {
                output::rows(
                    &Value::Array(classes),
                    &[
                        ("CLASS", "class"),
                        ("EVENTS", "events"),
                        ("OLDEST", "oldest"),
                        ("KEEP", "keep"),
                        ("THEN", "action"),
                        ("NEXT DUE", "next_due"),
                    ],
                );
                out!("\nactive holds: {}", holds.len());
                for h in holds {
                    out!("  {}  {}  (by {})", h.id, h.reason, h.created_by);
                }
            }
            Ok(())
        }
    }
}

async fn open_log(config: &Config) -> anyhow::Result<jitgate_server::AuditLog> {
    let store = jitgate_store::SqliteStore::open(&config.database_path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(jitgate_server::AuditLog::open(config, Arc::new(store), clock).await?)
}
