//! The control plane's operations. Each one checks the caller, asks the domain core to make the
//! transition, and has the store write the new state with its audit events in one transaction.
//! Connector work (provisioning, revoking) happens in [`App::drive`], shared by the API and the
//! expiry scheduler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use jitgate_connectors::mysql::{MysqlConnector, MysqlSettings};
use jitgate_connectors::postgres::{PostgresConnector, PostgresSettings};
use jitgate_connectors::{Connector, GrantSpec, NoneConnector};
use jitgate_core::event::Outcome;
use jitgate_core::lifecycle::Due;
use jitgate_core::policy::{self, AccessAsk, Policy};
use jitgate_core::{
    AccessRequest, Clock, CoreError, EventDraft, Selector, State, Timestamp, duration,
};
use jitgate_store::{Change, RequestFilter, RequestKey, Store, StoreError};
use serde_json::json;
use tokio::sync::Notify;

use crate::auth::{Authenticator, Caller};
use crate::config::{Config, ResourceKind};
use crate::error::Error;
use crate::metrics::{Metrics, Tally};

type Result<T> = std::result::Result<T, Error>;

/// What a principal asks for, as the API receives it.
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    pub resource: String,
    pub role: String,
    pub duration: String,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub start_at: Option<Timestamp>,
    pub break_glass: bool,
}

pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    connectors: HashMap<String, Arc<dyn Connector>>,
    /// Requests some task is driving right now, so two never provision or revoke the same one.
    in_flight: InFlight,
    /// Wakes the scheduler when a new, possibly earlier, deadline appears.
    pub(crate) wake: Notify,
    /// Open gateway sessions by grant, ended the moment their grant is.
    pub sessions: Arc<jitgate_gateway::Registry>,
    /// Where the gateway listens, once it does (told to clients by whoami).
    pub gateway_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Signing, anchoring and retention of the audit log.
    pub audit: Arc<crate::audit_log::AuditLog>,
}

impl App {
    /// `instance` identifies this installation in what connectors create, so reconciliation
    /// never touches another installation's logins.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        instance: &str,
        audit: Arc<crate::audit_log::AuditLog>,
    ) -> Result<Self> {
        let mut connectors = HashMap::new();
        for r in &config.resources {
            connectors.insert(r.name.clone(), connector_for(r, instance)?);
        }
        Ok(Self {
            auth: Authenticator::new(&config),
            config: Arc::new(config),
            store,
            clock,
            metrics: Arc::new(Metrics::default()),
            connectors,
            in_flight: InFlight::default(),
            wake: Notify::new(),
            sessions: Arc::new(jitgate_gateway::Registry::default()),
            gateway_addr: std::sync::OnceLock::new(),
            audit,
        })
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Writes a refusal to the audit log before handing it back to the caller.
    pub(crate) async fn refused(
        &self,
        caller: &Caller,
        action: &str,
        target: Option<&AccessRequest>,
        err: Error,
    ) -> Error {
        if let Error::Core(CoreError::Refused(message)) = &err {
            let mut e = EventDraft::new(self.now(), &caller.principal.name, action)
                .outcome(Outcome::Denied)
                .details(json!({ "message": message }));
            if let Some(r) = target {
                e.resource = Some(r.resource.clone());
                e.subject = Some(r.principal.clone());
                e.request_id = Some(r.id.clone());
                e.grant_id = r.grant.as_ref().map(|g| g.id.clone());
            }
            if let Err(write) = self.append(vec![e]).await {
                tracing::error!(error = %write, "could not audit a refusal");
                return write.into();
            }
        }
        err
    }

    // ------------------------------------------------------------------ requests

    pub async fn create_request(&self, caller: &Caller, new: NewRequest) -> Result<AccessRequest> {
        let now = self.now();
        let resource = self.config.resource(&new.resource).ok_or_else(|| {
            let known: Vec<&str> = self
                .config
                .resources
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            CoreError::Invalid(format!(
                "unknown resource {:?}; known resources: {}",
                new.resource,
                known.join(", ")
            ))
        })?;
        if !resource.roles.contains_key(&new.role) {
            let roles: Vec<&str> = resource.roles.keys().map(String::as_str).collect();
            return Err(CoreError::Invalid(format!(
                "resource {} has no role {:?}; its roles: {}",
                resource.name,
                new.role,
                roles.join(", ")
            ))
            .into());
        }
        let requested = duration::parse(&new.duration)?;
        let ask = AccessAsk {
            principal: &caller.principal,
            resource: &new.resource,
            role: &new.role,
            duration: requested,
            reason: new.reason.as_deref(),
            ticket: new.ticket.as_deref(),
            start_at: new.start_at,
            break_glass: new.break_glass,
        };
        let decision = match policy::evaluate(&self.config.policies, &ask, now) {
            Ok(d) => d,
            Err(e) => {
                let mut ev = EventDraft::new(now, &caller.principal.name, "request.refused").outcome(Outcome::Denied).details(json!({
                    "role": new.role, "duration": new.duration, "reason": new.reason, "ticket": new.ticket,
                    "break_glass": new.break_glass, "message": e.to_string(),
                }));
                ev.resource = Some(new.resource.clone());
                ev.subject = Some(caller.principal.name.clone());
                self.append(vec![ev]).await?;
                return Err(e.into());
            }
        };
        let (request, events) = AccessRequest::create(&ask, decision, now)?;
        let tally = Tally::of(&events);
        self.store.insert_request(request.clone(), events).await?;
        self.metrics.count(tally, self.now());
        self.wake.notify_one();
        if request.state == State::Approved {
            return self.drive(request).await;
        }
        Ok(request)
    }

    /// Every change to a request goes through here, so metrics follow from the events written,
    /// once they are committed.
    async fn update(
        &self,
        key: RequestKey,
        change: Change,
    ) -> std::result::Result<AccessRequest, StoreError> {
        let tally = Arc::new(Mutex::new(None));
        let slot = tally.clone();
        let counted: Change = Box::new(move |r| {
            let events = change(r)?;
            *slot.lock().expect("tally lock") = Some(Tally::of(&events));
            Ok(events)
        });
        let r = self.store.update_request(key, counted).await?;
        if let Some(t) = tally.lock().expect("tally lock").take() {
            self.metrics.count(t, self.now());
        }
        // Sessions never outlive their grant: the end starts at "revoking", not at "expired".
        if let Some(g) = &r.grant {
            match r.state {
                State::Active => self.sessions.set_deadline(&g.id, g.expires_at),
                State::Revoking | State::Expired | State::Released | State::Revoked => {
                    let why = g.ending.as_ref().map(|e| match e.reason {
                        jitgate_core::EndReason::Expired => "expired",
                        jitgate_core::EndReason::Released => "was released by its holder",
                        jitgate_core::EndReason::Revoked => "was revoked by an admin",
                    });
                    self.sessions.close_grant(&g.id, why.unwrap_or("ended"));
                }
                _ => {}
            }
        }
        Ok(r)
    }

    pub(crate) async fn append(
        &self,
        events: Vec<EventDraft>,
    ) -> std::result::Result<(), StoreError> {
        let tally = Tally::of(&events);
        self.store.append_events(events).await?;
        self.metrics.count(tally, self.now());
        Ok(())
    }

    /// Like `append`, for events the caller waits on before going on: durable on return, in
    /// the chain a moment later (see `Store::journal_events`).
    pub(crate) async fn journal(
        &self,
        events: Vec<EventDraft>,
    ) -> std::result::Result<(), StoreError> {
        let tally = Tally::of(&events);
        self.store.journal_events(events).await?;
        self.metrics.count(tally, self.now());
        Ok(())
    }

    /// Applies `change` to the request behind `key`, auditing a refusal.
    async fn change(
        &self,
        caller: &Caller,
        action: &str,
        key: RequestKey,
        change: Change,
    ) -> Result<AccessRequest> {
        match self.update(key.clone(), change).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let err: Error = e.into();
                if matches!(err, Error::Core(CoreError::Refused(_))) {
                    let target = self.store.get_request(key).await.ok().flatten();
                    return Err(self.refused(caller, action, target.as_ref(), err).await);
                }
                Err(err)
            }
        }
    }

    /// Approves a pending request, or the pending extension of an active grant.
    pub async fn approve(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<AccessRequest> {
        let before = self
            .visible(caller, RequestKey::Request(id.to_owned()))
            .await?;
        let config = self.config.clone();
        let clock = self.clock.clone();
        let approver = caller.principal.clone();
        let r = self
            .change(
                caller,
                "request.approve",
                RequestKey::Request(id.to_owned()),
                Box::new(move |r| {
                    r.approve(&approver, comment.as_deref(), &config.policies, clock.now())
                }),
            )
            .await?;
        if r.state == State::Active && ends_at(&before) != ends_at(&r) {
            self.extend_in_target(&r).await;
        }
        self.after_change(r).await
    }

    /// Denies a pending request, or the pending extension of an active grant.
    pub async fn deny(
        &self,
        caller: &Caller,
        id: &str,
        reason: Option<String>,
    ) -> Result<AccessRequest> {
        self.visible(caller, RequestKey::Request(id.to_owned()))
            .await?;
        let config = self.config.clone();
        let clock = self.clock.clone();
        let by = caller.principal.clone();
        let is_admin = caller.is_admin;
        self.change(
            caller,
            "request.deny",
            RequestKey::Request(id.to_owned()),
            Box::new(move |r| {
                r.deny(
                    &by,
                    is_admin,
                    reason.as_deref(),
                    &config.policies,
                    clock.now(),
                )
            }),
        )
        .await
    }

    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<AccessRequest> {
        self.visible(caller, RequestKey::Request(id.to_owned()))
            .await?;
        let clock = self.clock.clone();
        let by = caller.principal.clone();
        self.change(
            caller,
            "request.cancel",
            RequestKey::Request(id.to_owned()),
            Box::new(move |r| r.cancel(&by, clock.now())),
        )
        .await
    }

    // ------------------------------------------------------------------ grants

    pub async fn release(&self, caller: &Caller, grant_id: &str) -> Result<AccessRequest> {
        self.visible(caller, RequestKey::Grant(grant_id.to_owned()))
            .await?;
        let clock = self.clock.clone();
        let by = caller.principal.clone();
        let r = self
            .change(
                caller,
                "grant.release",
                RequestKey::Grant(grant_id.to_owned()),
                Box::new(move |r| settle(r.release(&by, clock.now()), r, clock.now())),
            )
            .await?;
        self.after_change(r).await
    }

    pub async fn revoke(
        &self,
        caller: &Caller,
        grant_id: &str,
        reason: Option<String>,
    ) -> Result<AccessRequest> {
        if !caller.is_admin {
            // Say no without revealing whether the grant exists.
            let err = Error::Core(CoreError::Refused(format!(
                "only admins may revoke grant {grant_id}; the holder may release it"
            )));
            let target = self
                .store
                .get_request(RequestKey::Grant(grant_id.to_owned()))
                .await?;
            return Err(self
                .refused(caller, "grant.revoke", target.as_ref(), err)
                .await);
        }
        let clock = self.clock.clone();
        let by = caller.principal.clone();
        let r = self
            .change(
                caller,
                "grant.revoke",
                RequestKey::Grant(grant_id.to_owned()),
                Box::new(move |r| {
                    settle(
                        r.revoke(&by, true, reason.as_deref(), clock.now()),
                        r,
                        clock.now(),
                    )
                }),
            )
            .await?;
        self.after_change(r).await
    }

    pub async fn extend(
        &self,
        caller: &Caller,
        grant_id: &str,
        extra: &str,
        reason: Option<String>,
    ) -> Result<AccessRequest> {
        let before = self
            .visible(caller, RequestKey::Grant(grant_id.to_owned()))
            .await?;
        let extra = duration::parse(extra)?;
        let config = self.config.clone();
        let clock = self.clock.clone();
        let by = caller.principal.clone();
        let r = self
            .change(
                caller,
                "grant.extend",
                RequestKey::Grant(grant_id.to_owned()),
                Box::new(move |r| {
                    let now = clock.now();
                    // The same policies that allowed the request decide the extension, on its own length.
                    let policies: Vec<Policy> = policy::named(&config.policies, &r.policies)
                        .into_iter()
                        .cloned()
                        .collect();
                    let ask = AccessAsk {
                        principal: &by,
                        resource: &r.resource,
                        role: &r.role,
                        duration: extra,
                        reason: reason.as_deref().or(r.reason.as_deref()),
                        ticket: r.ticket.as_deref(),
                        start_at: None,
                        break_glass: false,
                    };
                    let decision = policy::evaluate(&policies, &ask, now)?;
                    r.request_extension(&by, extra, reason.as_deref(), decision, now)
                }),
            )
            .await?;
        if ends_at(&before) != ends_at(&r) {
            self.extend_in_target(&r).await;
        }
        Ok(r)
    }

    pub async fn review(
        &self,
        caller: &Caller,
        grant_id: &str,
        comment: Option<String>,
    ) -> Result<AccessRequest> {
        self.visible(caller, RequestKey::Grant(grant_id.to_owned()))
            .await?;
        let config = self.config.clone();
        let clock = self.clock.clone();
        let by = caller.principal.clone();
        let is_admin = caller.is_admin;
        self.change(
            caller,
            "grant.review",
            RequestKey::Grant(grant_id.to_owned()),
            Box::new(move |r| {
                r.review(
                    &by,
                    is_admin,
                    &config.policies,
                    comment.as_deref(),
                    clock.now(),
                )
            }),
        )
        .await
    }

    /// After an approval, a release or a revocation: do the connector work now rather than at the
    /// scheduler's next round.
    async fn after_change(&self, r: AccessRequest) -> Result<AccessRequest> {
        self.wake.notify_one();
        match r.state {
            State::Approved | State::Revoking => self.drive(r).await,
            _ => Ok(r),
        }
    }

    async fn extend_in_target(&self, r: &AccessRequest) {
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
                let spec = self.grant_spec(&r);
                let provisioned = match self.connectors.get(&r.resource) {
                    Some(c) => c.provision(&spec).await.map_err(|e| e.to_string()),
                    None => Err(format!("resource {} is no longer configured", r.resource)),
                };
                let clock = self.clock.clone();
                let change: Change = match provisioned.clone() {
                    Ok(handle) => Box::new(move |r| r.activate(handle, clock.now())),
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
    /// `connector.orphan_removed`. Runs at startup and periodically.
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
                let live = self
                    .store
                    .get_request(RequestKey::Grant(m.grant_id.clone()))
                    .await?
                    .is_some_and(|r| {
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

    /// Connection credentials for an active grant, for its grantee alone. Each issue is audited;
    /// the secret itself never is.
    pub async fn credentials(
        &self,
        caller: &Caller,
        grant_id: &str,
    ) -> Result<jitgate_connectors::Credentials> {
        let r = self
            .visible(caller, RequestKey::Grant(grant_id.to_owned()))
            .await?;
        if r.principal != caller.principal.name {
            let err = Error::Core(CoreError::Refused(format!(
                "only the grantee ({}) may read the credentials of grant {grant_id}",
                r.principal
            )));
            return Err(self
                .refused(caller, "grant.credentials", Some(&r), err)
                .await);
        }
        let creds = self.login_of(&r).await?;
        let mut e = EventDraft::new(
            self.now(),
            &caller.principal.name,
            "grant.credentials_issued",
        )
        .details(json!({ "username": creds.username }));
        e.resource = Some(r.resource.clone());
        e.subject = Some(r.principal.clone());
        e.request_id = Some(r.id.clone());
        e.grant_id = Some(r.grant_id.clone());
        self.append(vec![e]).await?;
        Ok(creds)
    }

    /// The login of an active grant, from its connector; used for the grantee's credentials
    /// and by the gateway to connect upstream.
    pub(crate) async fn login_of(
        &self,
        r: &AccessRequest,
    ) -> Result<jitgate_connectors::Credentials> {
        if r.state != State::Active {
            return Err(CoreError::InvalidTransition {
                action: "issue credentials for",
                state: r.state,
            }
            .into());
        }
        let handle = r.grant.as_ref().and_then(|g| g.handle.clone());
        let (Some(handle), Some(connector)) = (handle, self.connectors.get(&r.resource)) else {
            return Err(CoreError::Invalid(format!(
                "resource {} has no connector that issues credentials (kind none)",
                r.resource
            ))
            .into());
        };
        Ok(connector.credentials(&handle).await?.ok_or_else(|| {
            CoreError::Invalid(format!("resource {} issues no credentials", r.resource))
        })?)
    }

    // ------------------------------------------------------------------ reading

    /// Policies under which the caller may approve, so approvers see what awaits them.
    fn approvable_policies(&self, caller: &Caller) -> Vec<String> {
        self.config
            .policies
            .iter()
            .filter(|p| Selector::any_matches(&p.approval.approvers, &caller.principal))
            .map(|p| p.name.clone())
            .collect()
    }

    /// Loads a request the caller may see; anything else is "not found", so ids leak nothing.
    pub async fn visible(&self, caller: &Caller, key: RequestKey) -> Result<AccessRequest> {
        let r = self
            .store
            .get_request(key.clone())
            .await?
            .ok_or_else(|| Error::NotFound(key.to_string()))?;
        let sees =
            caller.is_admin || caller.is_auditor || r.principal == caller.principal.name || {
                let mine = self.approvable_policies(caller);
                r.policies.iter().any(|p| mine.contains(p))
            };
        if sees {
            Ok(r)
        } else {
            Err(Error::NotFound(key.to_string()))
        }
    }

    pub async fn list(
        &self,
        caller: &Caller,
        mut filter: RequestFilter,
    ) -> Result<Vec<AccessRequest>> {
        if !(caller.is_admin || caller.is_auditor) {
            filter.visible_to = Some((
                caller.principal.name.clone(),
                self.approvable_policies(caller),
            ));
        }
        Ok(self.store.list_requests(filter).await?)
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

fn ends_at(r: &AccessRequest) -> Option<Timestamp> {
    r.grant.as_ref().map(|g| g.expires_at)
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
fn settle(
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

/// The connector a resource's kind calls for.
fn connector_for(r: &crate::config::Resource, instance: &str) -> Result<Arc<dyn Connector>> {
    Ok(match &r.kind {
        // Nothing is created per grant; the gateway uses the configured upstream login.
        ResourceKind::None | ResourceKind::PostgresShared(_) => Arc::new(NoneConnector),
        ResourceKind::Postgres(t) => Arc::new(PostgresConnector::new(PostgresSettings {
            resource: r.name.clone(),
            admin_url: t.admin_url.expose().to_owned(),
            owner_role: t.owner_role.clone(),
            databases: t.databases.clone(),
            client_host: t.client_host.clone(),
            client_port: t.client_port,
            role_prefix: t.role_prefix.clone(),
            instance: instance.to_owned(),
        })?),
        ResourceKind::Mysql(t) => Arc::new(MysqlConnector::new(MysqlSettings {
            resource: r.name.clone(),
            admin_url: t.admin_url.expose().to_owned(),
            client_host: t.client_host.clone(),
            client_port: t.client_port,
            role_prefix: t.role_prefix.clone(),
        })?),
    })
}

/// Which requests are being driven, and a way to wait for a driver to finish.
#[derive(Default)]
struct InFlight(Arc<Mutex<HashMap<String, Arc<Notify>>>>);

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
