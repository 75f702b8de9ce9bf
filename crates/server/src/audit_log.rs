//! The audit log's moving parts inside jitgate: the signing key, checkpoints every second or every
//! N events (also sent to each anchor), key rotation, and retention sweeps with archives.
//!
//! Writers never wait for any of this: events are group-committed by the store, and only the
//! chain head is signed, after the fact.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jitgate_audit::archive::{self, Manifest, SegmentItem};
use jitgate_audit::retention::{Fate, Policy, RetentionAction, Rule, class_of, runs};
use jitgate_audit::{Checkpoint, Gap, PublicKey, Signer, SkipDigest, Span};
use jitgate_core::event::SYSTEM_ACTOR;
use jitgate_core::{Clock, EventDraft};
use jitgate_store::{LiveEvent, Store, StoreError};
use object_store::ObjectStore;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::config::{Anchor, Config};
use crate::error::Error;
use crate::metrics::AuditHealth;

/// The private key's file in the data directory (mode 0600).
pub const KEY_FILE: &str = "audit-signing.key";
/// Every public key this installation has signed with, one hex key per line, oldest first.
pub const PUBLIC_KEYS_FILE: &str = "audit-signing.pub";
/// Events removed per retention transaction: bounds how long a sweep holds the writer.
pub const SWEEP_BATCH: u32 = 5_000;

pub struct AuditLog {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    data_dir: PathBuf,
    signer: Mutex<Arc<Signer>>,
    anchors: Vec<Anchor>,
    http: reqwest::Client,
    every_events: u64,
    interval: Duration,
    rules: Vec<Rule>,
    archive: Arc<dyn ObjectStore>,
    /// Serialises checkpointing, so two callers never sign out of order.
    last: tokio::sync::Mutex<Option<Checkpoint>>,
    /// Serialises sweeps in this process.
    sweeping: tokio::sync::Mutex<()>,
    /// For the metrics: when this log was opened, the last checkpoint's time (µs, 0: none),
    /// and per anchor its last successful write (µs, 0: none yet) and its failed writes.
    opened_at: jitgate_core::Timestamp,
    checkpoint_us: AtomicI64,
    anchor_writes: Vec<(AtomicI64, AtomicU64)>,
}

impl AuditLog {
    /// Loads (or creates) the signing key in the data directory and prepares anchors and archive.
    pub async fn open(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let signer = Signer::load_or_create(&config.data_dir.join(KEY_FILE))?;
        remember_public_key(&config.data_dir, &signer.public())?;
        let dir = &config.audit.archive;
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::io(
                format!("cannot create the archive directory {}", dir.display()),
                e,
            )
        })?;
        let archive = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| Error::io(format!("archive {}", dir.display()), e))?,
        );
        let last = store.last_checkpoint().await?;
        let checkpoint_us = AtomicI64::new(last.as_ref().map_or(0, |c| c.ts_us));
        let anchor_writes = config
            .audit
            .anchors
            .iter()
            .map(|_| (AtomicI64::new(0), AtomicU64::new(0)))
            .collect();
        let opened_at = clock.now();
        Ok(Self {
            store,
            clock,
            data_dir: config.data_dir.clone(),
            signer: Mutex::new(Arc::new(signer)),
            anchors: config.audit.anchors.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| Error::io("cannot build the webhook client", e))?,
            every_events: config.audit.checkpoint_events,
            interval: config.audit.checkpoint_interval,
            rules: config.audit.retention.clone(),
            archive,
            last: tokio::sync::Mutex::new(last),
            sweeping: tokio::sync::Mutex::new(()),
            opened_at,
            checkpoint_us,
            anchor_writes,
        })
    }

    /// When the log last signed a checkpoint and last reached each anchor, for the metrics.
    pub fn health(&self) -> AuditHealth {
        let at = |us: i64| (us > 0).then(|| jitgate_core::Timestamp::from_microsecond(us).ok())?;
        AuditHealth {
            checkpoint_at: at(self.checkpoint_us.load(Ordering::Relaxed)),
            anchors: self
                .anchors
                .iter()
                .zip(&self.anchor_writes)
                .map(|(a, (ok, failed))| {
                    (
                        shown(a),
                        at(ok.load(Ordering::Relaxed)),
                        failed.load(Ordering::Relaxed),
                    )
                })
                .collect(),
            started: Some(self.opened_at),
        }
    }

    fn signer(&self) -> Arc<Signer> {
        self.signer.lock().expect("signer lock").clone()
    }

    pub fn public_key(&self) -> PublicKey {
        self.signer().public()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Signs the chain head if it moved since the last checkpoint, stores the checkpoint and sends
    /// it to every anchor. Returns it, or `None` if there was nothing new to sign.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, Error> {
        let mut last = self.last.lock().await;
        let head = *self.store.head().borrow();
        if head.seq == 0 || last.as_ref().is_some_and(|c| c.seq >= head.seq) {
            return Ok(None);
        }
        let cp =
            self.signer()
                .sign_checkpoint(head.seq, head.hash, self.clock.now().as_microsecond());
        self.store.add_checkpoint(cp.clone()).await?;
        self.checkpoint_us.store(cp.ts_us, Ordering::Relaxed);
        *last = Some(cp.clone());
        drop(last);
        self.send_to_anchors(&cp).await;
        Ok(Some(cp))
    }

    async fn send_to_anchors(&self, cp: &Checkpoint) {
        for (anchor, (ok, failed)) in self.anchors.iter().zip(&self.anchor_writes) {
            let sent = match anchor {
                Anchor::File(path) => {
                    let (path, cp) = (path.clone(), cp.clone());
                    tokio::task::spawn_blocking(move || jitgate_audit::anchor::append(&path, &[cp]))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                }
                Anchor::Webhook(url) => match self.http.post(url).json(cp).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("answered {}", r.status())),
                    Err(e) => Err(e.to_string()),
                },
            };
            match sent {
                Ok(()) => ok.store(self.clock.now().as_microsecond(), Ordering::Relaxed),
                Err(why) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    // The next checkpoint covers this one, so a missed send loses nothing but time.
                    tracing::error!(%anchor, seq = cp.seq, error = %why, "could not anchor a checkpoint");
                }
            }
        }
    }

    /// Signs a checkpoint every `interval`, or as soon as `every_events` events are waiting.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut heads = self.store.head();
        let mut deadline = tokio::time::Instant::now() + self.interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                changed = heads.changed() => {
                    if changed.is_err() { return; }
                    let waiting = {
                        let head = heads.borrow_and_update().seq;
                        let last = self.last.lock().await.as_ref().map(|c| c.seq).unwrap_or(0);
                        (head - last) as u64
                    };
                    if waiting < self.every_events { continue; }
                }
                _ = shutdown.changed() => {
                    if let Err(e) = self.checkpoint().await {
                        tracing::error!(error = %e, "could not sign the final checkpoint");
                    }
                    return;
                }
            }
            if let Err(e) = self.checkpoint().await {
                tracing::error!(error = %e, "could not sign a checkpoint; retrying");
            }
            deadline = tokio::time::Instant::now() + self.interval;
        }
    }

    /// Replaces the signing key. The rotation is an event, and a checkpoint signed by the old key
    /// covers it, so a verifier that trusts the old key learns to trust the new one.
    pub async fn rotate_key(&self, actor: &str) -> Result<PublicKey, Error> {
        let old = self.signer();
        let new = Signer::generate();
        let staged = self.data_dir.join(format!("{KEY_FILE}.new"));
        let _ = std::fs::remove_file(&staged);
        new.write_new(&staged)
            .map_err(|e| Error::io(format!("cannot write {}", staged.display()), e))?;
        let event = EventDraft::new(self.clock.now(), actor, jitgate_audit::verify::KEY_ROTATED)
            .details(json!({
                "old_key_id": old.id(),
                "key_id": new.id(),
                "public_key": new.public().to_hex(),
            }));
        self.store.append_events(vec![event]).await?;
        self.checkpoint().await?;
        let current = self.data_dir.join(KEY_FILE);
        let retired = self
            .data_dir
            .join(format!("{KEY_FILE}.{}.retired", old.id()));
        let io = |e: std::io::Error| Error::io("key rotation", e);
        std::fs::rename(&current, &retired).map_err(io)?;
        std::fs::rename(&staged, &current).map_err(io)?;
        remember_public_key(&self.data_dir, &new.public())?;
        let public = new.public();
        *self.signer.lock().expect("signer lock") = Arc::new(new);
        tracing::info!(
            old = old.id(),
            new = public.id(),
            "audit signing key rotated"
        );
        Ok(public)
    }

    /// The active holds, each with the requests it covers (whose every event it keeps).
    async fn active_holds(&self) -> Result<Vec<jitgate_audit::retention::ScopedHold>, Error> {
        let holds = self.store.list_holds(true).await?;
        Ok(self.store.hold_scopes(holds).await?)
    }

    /// One retention sweep: removes (archiving first where the rule says so) every event that is
    /// due and not held, in batches that each commit on their own, so a sweep that is killed
    /// leaves a log that verifies and the next one carries on. `progress` hears each batch.
    pub async fn sweep(
        &self,
        dry_run: bool,
        progress: &(dyn Fn(&SweepReport) + Sync),
    ) -> Result<SweepReport, Error> {
        let _one = self.sweeping.lock().await;
        let started = Instant::now();
        let mut report = SweepReport {
            dry_run,
            ..SweepReport::default()
        };
        let now = self.clock.now();
        let holds = self.active_holds().await?;
        report.active_holds = holds.len() as u64;
        let mut policy = Policy::new(&self.rules, holds, now);
        let Some(latest_cutoff) = policy.latest_cutoff() else {
            return Ok(report);
        };
        let mut from = 1;
        let mut attempts = 0;
        // The next batch is read and planned (its boundaries signed) while the store removes the
        // current one: the two use different cores, and the sweep takes as long as the slower.
        let mut ahead: Option<tokio::task::JoinHandle<Result<Planned, Error>>> = None;
        let plan_from = |from: i64, policy: &Policy| {
            tokio::spawn(read_and_plan(
                self.store.clone(),
                self.signer(),
                from,
                policy.clone(),
            ))
        };
        loop {
            let Planned { batch, plan } = ahead
                .take()
                .unwrap_or_else(|| plan_from(from, &policy))
                .await
                .map_err(|e| Error::io("retention planning failed", e))??;
            // Events are appended in time order: once a batch starts after every cutoff, nothing
            // later can be due either.
            let Some(first) = batch.first() else { break };
            if first.record.ts_us >= latest_cutoff {
                break;
            }
            report.examined += batch.len() as u64;
            report.held += plan.held;
            let next = batch.last().expect("non-empty").record.seq + 1;
            if dry_run || plan.gaps.is_empty() {
                report.deleted += plan.deleted;
                report.archived += plan.archived;
                from = next;
                progress(&report);
                continue;
            }
            let manifest = match plan.segment_name.as_deref() {
                None => None,
                Some(name) => {
                    Some(write_segment(self.archive.as_ref(), name, &plan.segment).await?)
                }
            };
            let event = self.swept_event(&plan, manifest.as_ref());
            let hold_ids = policy.holds().map(|h| h.id.clone()).collect();
            ahead = Some(plan_from(next, &policy));
            let t = Instant::now();
            match self
                .store
                .remove_ranges(plan.gaps, manifest.clone(), hold_ids, vec![event])
                .await
            {
                Ok(_) => {
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    report.max_batch_ms = report.max_batch_ms.max(ms);
                    report.deleted += plan.deleted;
                    report.archived += plan.archived;
                    report.batches += 1;
                    report.segments += u64::from(manifest.is_some());
                    report.through_seq = next - 1;
                    from = next;
                    attempts = 0;
                    progress(&report);
                }
                Err(StoreError::Conflict(why)) if attempts < 3 => {
                    // A hold appeared or the events moved: plan this batch again with fresh holds,
                    // and the one read ahead too, since it was planned with the old ones.
                    tracing::info!(%why, "retention batch planned again");
                    if let Some(task) = ahead.take() {
                        task.abort();
                    }
                    attempts += 1;
                    let holds = self.active_holds().await?;
                    report.active_holds = holds.len() as u64;
                    policy = Policy::new(&self.rules, holds, self.clock.now().min(now));
                }
                Err(e) => {
                    if let Some(task) = ahead.take() {
                        task.abort();
                    }
                    return Err(e.into());
                }
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        if !dry_run {
            self.record_completed(&report).await?;
        }
        Ok(report)
    }

    /// The event recording one batch removed (and archived, when `manifest` names its segment).
    fn swept_event(&self, plan: &Plan, manifest: Option<&Manifest>) -> EventDraft {
        EventDraft::new(self.clock.now(), SYSTEM_ACTOR, "retention.swept").details(json!({
            "deleted": plan.deleted,
            "archived": plan.archived,
            "first_seq": plan.gaps.first().map(|(g, _)| g.span.first_seq),
            "last_seq": plan.gaps.last().map(|(g, _)| g.span.last_seq),
            "ranges": plan.gaps.len(),
            "segment": manifest.map(|m| m.name.clone()),
            "classes": plan.classes,
        }))
    }

    /// Records the end of a sweep that removed for real, with its totals.
    async fn record_completed(&self, report: &SweepReport) -> Result<(), Error> {
        let event =
            EventDraft::new(self.clock.now(), SYSTEM_ACTOR, "retention.completed").details(json!({
                "deleted": report.deleted,
                "archived": report.archived,
                "held": report.held,
                "through_seq": report.through_seq,
                "active_holds": report.active_holds,
            }));
        self.store.append_events(vec![event]).await?;
        Ok(())
    }
}

/// A batch of live events and what the sweep will do with them.
struct Planned {
    batch: Vec<LiveEvent>,
    plan: Plan,
}

/// Reads up to [`SWEEP_BATCH`] live events from `from` on and plans them, signing on a blocking
/// thread (signatures are most of a plan's cost).
async fn read_and_plan(
    store: Arc<dyn Store>,
    signer: Arc<Signer>,
    from: i64,
    policy: Policy,
) -> Result<Planned, Error> {
    let batch = store.live_batch(from, SWEEP_BATCH).await?;
    tokio::task::spawn_blocking(move || {
        let plan = plan(&policy, &batch, &signer);
        Planned { batch, plan }
    })
    .await
    .map_err(|e| Error::io("retention planning failed", e))
}

/// What a sweep did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    pub dry_run: bool,
    pub examined: u64,
    pub deleted: u64,
    pub archived: u64,
    /// Due events kept because a hold covers them.
    pub held: u64,
    pub active_holds: u64,
    pub batches: u64,
    pub segments: u64,
    /// Every event up to here was looked at and, if due and not held, removed.
    pub through_seq: i64,
    /// The longest a batch held the store's writer.
    pub max_batch_ms: f64,
    pub seconds: f64,
}

struct Plan {
    gaps: Vec<(Gap, Option<String>)>,
    segment: Vec<SegmentItem>,
    segment_name: Option<String>,
    deleted: u64,
    archived: u64,
    held: u64,
    classes: std::collections::BTreeMap<&'static str, u64>,
}

/// Decides the fate of each event in a batch and signs a boundary for each run of removed ones.
/// A run's archived events go to the batch's segment, with a skip over each stretch of deleted
/// events between them and one seal that signs all the run's skips.
fn plan(policy: &Policy, batch: &[LiveEvent], signer: &Signer) -> Plan {
    let fates: Vec<(i64, Fate)> = batch
        .iter()
        .map(|e| (e.record.seq, policy.fate(&e.record.candidate())))
        .collect();
    let mut plan = Plan {
        gaps: Vec::new(),
        segment: Vec::new(),
        segment_name: None,
        deleted: 0,
        archived: 0,
        held: fates.iter().filter(|(_, f)| *f == Fate::Held).count() as u64,
        classes: Default::default(),
    };
    let runs = runs(&fates);
    let name = runs
        .first()
        .zip(runs.last())
        .map(|((a, _), (_, b))| archive::segment_name(batch[*a].record.seq, batch[*b].record.seq));
    for (start, end) in runs {
        let span = |from: usize, to: usize| Span {
            first_seq: batch[from].record.seq,
            last_seq: batch[to].record.seq,
            prev_hash: batch[from].prev,
            last_hash: batch[to].record.hash,
        };
        let mut archived_here = false;
        let mut deleted_from: Option<usize> = None;
        let mut items = Vec::new();
        for i in start..=end {
            let Fate::Remove(action) = fates[i].1 else {
                unreachable!("runs hold removable events")
            };
            *plan
                .classes
                .entry(class_of(&batch[i].record.action))
                .or_default() += 1;
            match action {
                RetentionAction::Delete => {
                    plan.deleted += 1;
                    deleted_from.get_or_insert(i);
                }
                RetentionAction::Archive => {
                    plan.archived += 1;
                    archived_here = true;
                    if let Some(d) = deleted_from.take() {
                        items.push(SegmentItem::Skip(span(d, i - 1)));
                    }
                    items.push(SegmentItem::Event(batch[i].record.clone()));
                }
            }
        }
        if let Some(d) = deleted_from.take() {
            items.push(SegmentItem::Skip(span(d, end)));
        }
        let gap = signer.sign_gap(span(start, end));
        if archived_here {
            let mut skips = SkipDigest::default();
            for item in &items {
                if let SegmentItem::Skip(s) = item {
                    skips.add(s);
                }
            }
            plan.segment.push(SegmentItem::Seal(signer.sign_seal(
                gap.span.first_seq,
                gap.span.last_seq,
                skips.finish(),
            )));
            plan.segment.extend(items);
            plan.segment_name = name.clone();
            plan.gaps.push((gap, name.clone()));
        } else {
            plan.gaps.push((gap, None));
        }
    }
    plan
}

async fn write_segment(
    store: &dyn ObjectStore,
    name: &str,
    items: &[SegmentItem],
) -> Result<Manifest, Error> {
    let (bytes, manifest) = archive::encode(name, items)?;
    let io = |e: object_store::Error| Error::io("archive", e);
    store
        .put(&object_store::path::Path::from(name), bytes.into())
        .await
        .map_err(io)?;
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("manifests serialise");
    store
        .put(
            &object_store::path::Path::from(Manifest::object_name(name)),
            manifest_json.into(),
        )
        .await
        .map_err(io)?;
    Ok(manifest)
}

/// Adds `key` to the public key file if it is not there yet.
/// An anchor as the metrics name it: a webhook by scheme, host and port only, since its path or
/// query may hold a secret.
fn shown(anchor: &Anchor) -> String {
    match anchor {
        Anchor::File(_) => anchor.to_string(),
        Anchor::Webhook(url) => match reqwest::Url::parse(url) {
            Ok(u) => format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            Err(_) => "webhook".into(),
        },
    }
}

fn remember_public_key(data_dir: &Path, key: &PublicKey) -> Result<(), Error> {
    let path = data_dir.join(PUBLIC_KEYS_FILE);
    let known = std::fs::read_to_string(&path).unwrap_or_default();
    if known.lines().any(|l| l.trim() == key.to_hex()) {
        return Ok(());
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| Error::io(path.display().to_string(), e))?;
    writeln!(f, "{}", key.to_hex()).map_err(|e| Error::io(path.display().to_string(), e))
}
