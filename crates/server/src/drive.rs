//! Connector work: provisioning when a grant starts, ending it in the target (suspend before the
//! end is recorded, then revoke), expiries, catch-up after a restart and reconciliation. Shared
//! by the API and the expiry scheduler; an in-flight map ensures only one task drives a request
//! at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use jitgate_connectors::GrantSpec;
use jitgate_core::lifecycle::Due;
use jitgate_core::{AccessRequest, CoreError, EventDraft, State, Timestamp};
use jitgate_store::{Change, RequestKey};
use serde_json::json;
use tokio::sync::Notify;

use crate::auth::Caller;
use crate::error::Error;
use crate::service::App;

type Result<T> = std::result::Result<T, Error>;

/// How a person ends a grant before its window is over.
pub(crate) enum EndBy {
    /// The holder is done.
    Release,
    /// An admin ends it, with an optional reason.
    Revoke(Option<String>),
}

impl App {
    /// After an approval, a release or a revocation: do the connector work now rather than at the
    /// scheduler's next round.
    pub(crate) async fn after_change(&self, r: AccessRequest) -> Result<AccessRequest> {
        self.wake.notify_one();
        match r.state {
            State::Approved | State::Revoking => self.drive(r).await,
            _ => Ok(r),
        }
    }

    pub(crate) async fn extend_in_target(&self, r: &AccessRequest) {
        let (Some(g), Some(connector)) = (&r.grant, self.connectors.get(&r.resource)) else {
            return;
        };
        if let Some(handle) = &g.handle
            && let Err(e) = connector.extend(handle, g.expires_at).await
        {
            // The grant stays valid in jitgate; the target's own end is only the fallback layer.
            tracing::warn!(grant = %g.id, error = %e, "could not move the target's own expiry");
        }
    }

    // ------------------------------------------------------------------ driving

    /// Ends a grant as a person asked. The order matters for a crash at any point: first the
    /// login is disabled in the target (`Connector::suspend`), then the end is recorded
    /// (`revoking`, which is due at once), then the login is removed. If the end cannot be
    /// recorded after all (the caller may not end it, the state moved on, the store failed), a
    /// grant that is still active gets its login back.
    pub(crate) async fn end_grant(
        &self,
        caller: &Caller,
        grant_id: &str,
        how: EndBy,
    ) -> Result<AccessRequest> {
        let key = RequestKey::Grant(grant_id.to_owned());
        let id = self.visible(caller, key.clone()).await?.id;
        let _claim = self.claim(&id).await;
        // Read under the claim: a driver that held it may have moved the grant on.
        let current = self
            .store
            .get_request(RequestKey::Request(id.clone()))
            .await?
            .ok_or_else(|| Error::NotFound(key.to_string()))?;
        let (by, is_admin) = (caller.principal.clone(), caller.is_admin);
        let (action, reason) = match how {
            EndBy::Release => ("grant.release", None),
            EndBy::Revoke(reason) => ("grant.revoke", Some(reason)),
        };
        let end = move |r: &mut AccessRequest, now: Timestamp| {
            let began = match &reason {
                None => r.release(&by, now),
                Some(reason) => r.revoke(&by, is_admin, reason.as_deref(), now),
            };
            settle(began, r, now)
        };
        // Only a change that would end an active grant disables its login first.
        let mut trial = current.clone();
        let ends = end(&mut trial, self.now()).is_ok()
            && current.state == State::Active
            && trial.state != State::Active;
        let suspended = ends && self.suspend(&current).await;
        let clock = self.clock.clone();
        let change: Change = Box::new(move |r| end(r, clock.now()));
        match self.change(caller, action, key, change).await {
            Ok(r) => self.drive_claimed(r).await,
            Err(e) => {
                if suspended {
                    self.resume_if_active(&id).await;
                }
                Err(e)
            }
        }
    }

    /// Disables an active grant's login in its target; returns whether it tried. A target that
    /// cannot be reached does not keep the grant in force: the end is recorded anyway, and
    /// revoking it retries until the target is back.
    async fn suspend(&self, r: &AccessRequest) -> bool {
        let handle = r.grant.as_ref().and_then(|g| g.handle.as_ref());
        let (Some(handle), Some(connector)) = (handle, self.connectors.get(&r.resource)) else {
            return false;
        };
        if let Err(e) = connector.suspend(handle).await {
            tracing::warn!(request = %r.id, error = %e, "could not disable the login before ending the grant; ending it anyway, revocation will retry");
        }
        true
    }

    /// Gives the login back to a grant that is still active after a suspension whose end was
    /// not recorded. Call it holding the request's claim.
    async fn resume_if_active(&self, id: &str) {
        let r = match self
            .store
            .get_request(RequestKey::Request(id.to_owned()))
            .await
        {
            Ok(Some(r)) if r.state == State::Active => r,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(request = %id, error = %e, "cannot read the grant to restore its login; the reconciler will");
                return;
            }
        };
        let handle = r.grant.as_ref().and_then(|g| g.handle.as_ref());
        let (Some(handle), Some(connector)) = (handle, self.connectors.get(&r.resource)) else {
            return;
        };
        match connector.resume(handle).await {
            Ok(()) => {
                let mut e = EventDraft::new(
                    self.now(),
                    jitgate_core::event::SYSTEM_ACTOR,
                    "grant.login_restored",
                )
                .details(json!({ "kind": connector.kind(), "handle": handle }));
                e.resource = Some(r.resource.clone());
                e.subject = Some(r.principal.clone());
                e.request_id = Some(r.id.clone());
                e.grant_id = Some(r.grant_id.clone());
                if let Err(e) = self.append(vec![e]).await {
                    tracing::error!(request = %id, error = %e, "could not audit a restored login");
                }
            }
            Err(e) => {
                tracing::error!(request = %id, error = %e, "could not restore the login of an active grant; the reconciler will retry")
            }
        }
    }

    /// Waits until no other task drives request `id`, then holds it until the guard drops.
    async fn claim(&self, id: &str) -> ClaimGuard {
        loop {
            match self.in_flight.claim(id) {
                Claim::Mine(guard) => return guard,
                Claim::Theirs(done) => done.await,
            }
        }
    }

    /// Takes the request as far as it can go now: time-outs and expiries, then provisioning or
    /// revocation in the target. Returns the request as it stands afterwards; if another task is
    /// already driving it, waits for that task and returns what it achieved.
    pub async fn drive(&self, known: AccessRequest) -> Result<AccessRequest> {
        let id = known.id;
        let guard = match self.in_flight.claim(&id) {
            Claim::Mine(guard) => Some(guard),
            Claim::Theirs(done) => {
                done.await;
                None
            }
        };
        // Read under the claim (or after the other driver finished): acting on a copy read before
        // the claim could provision or revoke twice.
        let fresh = self
            .store
            .get_request(RequestKey::Request(id.clone()))
            .await?
            .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
        match guard {
            Some(_guard) => self.drive_claimed(fresh).await,
            None => Ok(fresh),
        }
    }

    /// Drives a request by id if nobody else is; used by the scheduler for what is due.
    pub(crate) async fn drive_id(&self, id: String) -> Result<()> {
        let Claim::Mine(_guard) = self.in_flight.claim(&id) else {
            return Ok(());
        };
        let clock = self.clock.clone();
        let r = self
            .update(
                RequestKey::Request(id),
                Box::new(move |r| advance(r, clock.now())),
            )
            .await?;
        self.drive_claimed(r).await.map(|_| ())
    }

    async fn drive_claimed(&self, r: AccessRequest) -> Result<AccessRequest> {
        let now = self.now();
        let key = RequestKey::Request(r.id.clone());
        match r.due(now) {
            Some(Due::Activate) => {
                // The window runs from when provisioning begins (or the planned start), so a
                // target that kept failing does not eat into the grant.
                let (started, ends) = r.activation_window(now).expect("approved has a grant");
                let mut spec = self.grant_spec(&r);
                spec.expires_at = ends;
                let provisioned = match self.connectors.get(&r.resource) {
                    Some(c) => c.provision(&spec).await.map_err(|e| e.to_string()),
                    None => Err(format!("resource {} is no longer configured", r.resource)),
                };
                let clock = self.clock.clone();
                let change: Change = match provisioned.clone() {
                    Ok(handle) => Box::new(move |r| r.activate(handle, started, clock.now())),
                    Err(e) => Box::new(move |r| r.activation_failed(&e, clock.now())),
                };
                let result = self.update(key, change).await;
                match (result, provisioned) {
                    (Ok(r), _) => Ok(r),
                    // Cancelled or revoked while we provisioned: take back what was created.
                    (Err(e), Ok(Some(handle))) => {
                        if let Some(c) = self.connectors.get(&r.resource)
                            && let Err(undo) = c.revoke(&handle).await
                        {
                            tracing::error!(request = %r.id, error = %undo, "could not undo a provision; the reconciler will remove it");
                        }
                        Err(e.into())
                    }
                    (Err(e), _) => Err(e.into()),
                }
            }
            Some(Due::RetryRevoke) => {
                let handle = r.grant.as_ref().and_then(|g| g.handle.clone());
                let revoked = match (&handle, self.connectors.get(&r.resource)) {
                    (None, _) => Ok(()),
                    (Some(h), Some(c)) => c.revoke(h).await.map_err(|e| e.to_string()),
                    (Some(_), None) => Err(format!(
                        "resource {} is no longer configured; restore it so the grant can be revoked",
                        r.resource
                    )),
                };
                let clock = self.clock.clone();
                let change: Change = match revoked {
                    Ok(()) => Box::new(move |r| r.finish_revocation(clock.now())),
                    Err(e) => {
                        tracing::warn!(request = %r.id, error = %e, "revocation failed; will retry");
                        Box::new(move |r| r.revocation_failed(&e, clock.now()))
                    }
                };
                Ok(self.update(key, change).await?)
            }
            _ => Ok(r),
        }
    }

    fn grant_spec(&self, r: &AccessRequest) -> GrantSpec {
        let role = self
            .config
            .resource(&r.resource)
            .and_then(|res| res.roles.get(&r.role));
        GrantSpec {
            grant_id: r.grant_id.clone(),
            principal: r.principal.clone(),
            resource: r.resource.clone(),
            role: r.role.clone(),
            grants: role.map(|d| d.grants.clone()).unwrap_or_default(),
            database: role.and_then(|d| d.database.clone()),
            expires_at: r
                .grant
                .as_ref()
                .map(|g| g.expires_at)
                .unwrap_or(r.created_at),
        }
    }

    /// Removes what connectors created that no live grant accounts for (a crash between
    /// provisioning and recording, a grant ended while its revocation was lost), each audited as
    /// `connector.orphan_removed`, and restores the login of an active grant that a crash left
    /// suspended (`grant.login_restored`). Runs at startup and periodically.
    pub async fn reconcile(&self) -> Result<usize> {
        let mut removed = 0;
        for (resource, connector) in &self.connectors {
            let managed = match connector.list_managed().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%resource, error = %e, "cannot list what the connector manages; will try again");
                    self.metrics.connector_error(resource, "list");
                    continue;
                }
            };
            for m in managed {
                let grant = self
                    .store
                    .get_request(RequestKey::Grant(m.grant_id.clone()))
                    .await?;
                // A crash between disabling a login and recording its grant's end leaves an
                // active grant without its login: give it back (re-checked under the claim).
                if let Some(r) = &grant
                    && m.suspended
                    && r.state == State::Active
                    && let Claim::Mine(_guard) = self.in_flight.claim(&r.id)
                {
                    self.resume_if_active(&r.id).await;
                }
                let live = grant.is_some_and(|r| {
                    matches!(r.state, State::Approved | State::Active | State::Revoking)
                });
                if live {
                    continue;
                }
                match connector.revoke(&m.handle).await {
                    Ok(()) => {
                        removed += 1;
                        let mut e = EventDraft::new(
                            self.now(),
                            jitgate_core::event::SYSTEM_ACTOR,
                            "connector.orphan_removed",
                        )
                        .details(json!({ "kind": connector.kind(), "handle": m.handle }));
                        e.resource = Some(resource.clone());
                        e.grant_id = Some(m.grant_id.clone());
                        self.append(vec![e]).await?;
                    }
                    Err(e) => {
                        tracing::warn!(%resource, grant = %m.grant_id, error = %e, "cannot remove an orphan; will try again");
                        self.metrics.connector_error(resource, "remove_orphan");
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Runs everything that is due until nothing is; used first thing at startup so grants whose
    /// window passed while jitgate was down end before anything else happens.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let due = self.store.due_requests(self.now(), 1000).await?;
            if due.is_empty() {
                return Ok(total);
            }
            let mut progressed = false;
            let results = join_all(due.iter().map(|id| self.drive_id(id.clone()))).await;
            for (id, r) in due.iter().zip(results) {
                match r {
                    Ok(()) => progressed = true,
                    Err(e) => tracing::warn!(request = %id, error = %e, "catch-up step failed"),
                }
            }
            total += due.len();
            // What is left due is waiting on a retry backoff; the scheduler takes it from here.
            let still = self.store.due_requests(self.now(), 1).await?;
            if !progressed || still.first().is_some_and(|s| due.contains(s)) {
                return Ok(total);
            }
        }
    }
}

/// The state-only steps the scheduler takes when something is due.
fn advance(
    r: &mut AccessRequest,
    now: Timestamp,
) -> std::result::Result<Vec<EventDraft>, CoreError> {
    match r.due(now) {
        Some(Due::TimeOut) => r.time_out(now),
        Some(Due::ExpireUnused) => r.expire_unused(now),
        Some(Due::Expire) => settle(r.expire(now), r, now),
        _ => Ok(vec![]),
    }
}

/// A grant that holds nothing in a target (no connector handle) has nothing to revoke there: it
/// finishes ending in the same transaction instead of a second round trip.
pub(crate) fn settle(
    began: std::result::Result<Vec<EventDraft>, CoreError>,
    r: &mut AccessRequest,
    now: Timestamp,
) -> std::result::Result<Vec<EventDraft>, CoreError> {
    let mut events = began?;
    if r.state == State::Revoking && r.grant().is_some_and(|g| g.handle.is_none()) {
        events.extend(r.finish_revocation(now)?);
    }
    Ok(events)
}

/// Which requests are being driven, and a way to wait for a driver to finish.
#[derive(Default)]
pub(crate) struct InFlight(Arc<Mutex<HashMap<String, Arc<Notify>>>>);

enum Claim {
    /// This task drives the request until the guard drops.
    Mine(ClaimGuard),
    /// Another task is driving it; resolves when that task is done.
    Theirs(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
}

struct ClaimGuard {
    map: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    id: String,
}

impl InFlight {
    fn claim(&self, id: &str) -> Claim {
        let mut map = self.0.lock().expect("in-flight lock");
        match map.get(id) {
            None => {
                map.insert(id.to_owned(), Arc::new(Notify::new()));
                Claim::Mine(ClaimGuard {
                    map: self.0.clone(),
                    id: id.to_owned(),
                })
            }
            Some(notify) => {
                let notify = notify.clone();
                // Registered while the lock is held, so the driver's notify_waiters cannot be missed.
                let mut done = Box::pin(notify.notified_owned());
                done.as_mut().enable();
                Claim::Theirs(done)
            }
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let notify = self.map.lock().expect("in-flight lock").remove(&self.id);
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }
}
