//! The expiry scheduler: sleeps until the earliest deadline in the store, then drives everything
//! that is due (time-outs, activations at a scheduled start, expiries, revocation retries).

use std::sync::Arc;
use std::time::Duration;

use jitgate_core::duration;
use tokio::sync::watch;

use crate::service::App;

/// Most requests picked up per round.
const ROUND: u32 = 10_000;
/// The longest it sleeps without looking, so a deadline written by another process is not missed.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How often targets are checked for logins that no live grant accounts for.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);
/// When everything due is already being driven, look again after this long.
const BUSY_SLEEP: Duration = Duration::from_millis(20);

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut next_reconcile = tokio::time::Instant::now() + RECONCILE_EVERY;
    loop {
        if tokio::time::Instant::now() >= next_reconcile {
            next_reconcile = tokio::time::Instant::now() + RECONCILE_EVERY;
            if let Err(e) = app.reconcile().await {
                tracing::error!(error = %e, "reconciliation failed; retrying later");
            }
        }
        let wait = match round(&app).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::error!(error = %e, "scheduler round failed; retrying");
                MAX_SLEEP
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = app.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Starts driving what is due; returns how long to sleep.
async fn round(app: &Arc<App>) -> Result<Duration, crate::Error> {
    let now = app.clock.now();
    let due = app.store.due_requests(now, ROUND).await?;
    let full = due.len() as u32 == ROUND;
    for id in due {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = app.drive_id(id.clone()).await {
                tracing::debug!(request = %id, error = %e, "scheduled step did not apply");
            }
        });
    }
    if full {
        return Ok(Duration::ZERO);
    }
    Ok(match app.store.next_deadline().await? {
        Some(next) if next > now => duration::until(now, next).min(MAX_SLEEP),
        Some(_) => BUSY_SLEEP,
        None => MAX_SLEEP,
    })
}

/// Runs a retention sweep every `[audit] retention_every` while any rule is configured.
pub async fn retention(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    if app.audit.rules().is_empty() {
        return;
    }
    let every = app.config.audit.retention_every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        match app.audit.sweep(false, &|_| {}).await {
            Ok(r) if r.deleted + r.archived > 0 => {
                tracing::info!(
                    deleted = r.deleted,
                    archived = r.archived,
                    held = r.held,
                    "retention sweep"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "retention sweep failed; retrying at the next one")
            }
        }
    }
}
