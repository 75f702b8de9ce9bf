//! The control plane's operations. Each one checks the caller, asks the domain core to make the
//! transition, and has the store write the new state with its audit events in one transaction.
//! Connector work (provisioning, revoking) happens in [`App::drive`], shared by the API and the
//! expiry scheduler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jitgate_connectors::Connector;
use jitgate_core::event::Outcome;
use jitgate_core::policy::{self, AccessAsk};
use jitgate_core::{
    AccessRequest, Clock, CoreError, EventDraft, Selector, State, Timestamp, duration,
};
use jitgate_store::{Change, RequestFilter, RequestKey, Store, StoreError};
use serde_json::json;
use tokio::sync::Notify;

use crate::auth::{Authenticator, Caller};
use crate::config::{Config, ResourceKind};
use crate::drive::{EndBy, InFlight};
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

/// An approval or a denial, and what it applied to.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub request: AccessRequest,
    /// The index in the grant's `extensions` of the extension it decided; `None`: the request.
    pub extension: Option<usize>,
}

pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub auth: Authenticator,
    /// Workload identity providers and signed-in sessions.
    pub identity: crate::identity::Identity,
    pub metrics: Arc<Metrics>,
    pub(crate) connectors: HashMap<String, Arc<dyn Connector>>,
    /// Requests some task is driving right now, so two never provision or revoke the same one.
    pub(crate) in_flight: InFlight,
    /// Wakes the scheduler when a new, possibly earlier, deadline appears.
    pub(crate) wake: Notify,
    /// Open gateway sessions by grant, ended the moment their grant is.
    pub sessions: Arc<jitgate_gateway::Registry>,
    /// Where the gateway listens, once it does (told to clients by whoami).
    pub gateway_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Signing, anchoring and retention of the audit log.
    pub audit: Arc<crate::audit_log::AuditLog>,
    /// Short-lived gateway passwords, bound to a principal, a resource and a grant.
    pub(crate) gateway_passwords: crate::gateway_password::GatewayPasswords,
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
        let masking_key = crate::targets::masking_key_if_needed(&config)?;
        let mut connectors = HashMap::new();
        for r in &config.resources {
            connectors.insert(
                r.name.clone(),
                crate::targets::connector_for(&config, r, instance, masking_key)?,
            );
        }
        Ok(Self {
            auth: Authenticator::new(&config),
            identity: crate::identity::Identity::new(&config, clock.clone()),
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
            gateway_passwords: Default::default(),
        })
    }

    pub(crate) fn now(&self) -> Timestamp {
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

    /// Runs `work` in a task of its own and waits for it: a client that hangs up (which drops
    /// the HTTP handler) never cuts a change, or the connector work it calls for, in half.
    pub(crate) async fn detached<T, Fut>(
        self: &Arc<Self>,
        work: impl FnOnce(Arc<App>) -> Fut,
    ) -> Result<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        tokio::spawn(work(self.clone()))
            .await
            .map_err(Error::Task)?
    }

    // ------------------------------------------------------------------ requests

    pub async fn create_request(
        self: &Arc<Self>,
        caller: &Caller,
        new: NewRequest,
    ) -> Result<AccessRequest> {
        let caller = caller.clone();
        self.detached(move |app| async move { app.create_request_now(&caller, new).await })
            .await
    }

    async fn create_request_now(&self, caller: &Caller, new: NewRequest) -> Result<AccessRequest> {
        let now = self.now();
        crate::policy_view::resource_role(&self.config, &new.resource, &new.role)?;
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
            extension: None,
        };
        // Refusals by policy, and of a role already held, are audited; bad input is not.
        let refused = |e: CoreError| {
            let mut ev = EventDraft::new(now, &caller.principal.name, "request.refused").outcome(Outcome::Denied).details(json!({
                "role": new.role, "duration": new.duration, "reason": new.reason, "ticket": new.ticket,
                "break_glass": new.break_glass, "message": e.to_string(),
            }));
            ev.resource = Some(new.resource.clone());
            ev.subject = Some(caller.principal.name.clone());
            (ev, e)
        };
        let decision = match policy::evaluate(&self.config.policies, &ask, now) {
            Ok(d) => d,
            Err(e) => {
                let (ev, e) = refused(e);
                self.append(vec![ev]).await?;
                return Err(e.into());
            }
        };
        let (request, events) = AccessRequest::create(&ask, decision.clone(), now)?;
        let held = self
            .held(&caller.principal.name, &new.resource, &new.role)
            .await?;
        if let Err(e) = policy::refuse_overlap(&self.config.policies, &decision, &ask, &held, now) {
            let (ev, e) = refused(e);
            self.append(vec![ev]).await?;
            return Err(e.into());
        }
        let tally = Tally::of(&events);
        self.store.insert_request(request.clone(), events).await?;
        self.metrics.count(tally, self.now());
        self.wake.notify_one();
        if request.state == State::Approved {
            return self.drive(request).await;
        }
        Ok(request)
    }

    /// The principal's active and approved grants of this role on this resource.
    async fn held(&self, principal: &str, resource: &str, role: &str) -> Result<Vec<policy::Held>> {
        let mut held = Vec::new();
        for state in [State::Active, State::Approved] {
            let filter = RequestFilter {
                state: Some(state),
                principal: Some(principal.to_owned()),
                resource: Some(resource.to_owned()),
                limit: 1000,
                ..Default::default()
            };
            for r in self.store.list_requests(filter).await? {
                if let (true, Some(g)) = (r.role == role, &r.grant) {
                    held.push(policy::Held {
                        grant_id: g.id.clone(),
                        request_id: r.id.clone(),
                        active: state == State::Active,
                        starts_at: g.starts_at,
                        expires_at: g.expires_at,
                    });
                }
            }
        }
        Ok(held)
    }

    /// Every change to a request goes through here, so metrics follow from the events written,
    /// once they are committed.
    pub(crate) async fn update(
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
                    self.gateway_passwords.forget_grant(&g.id);
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
    pub(crate) async fn change(
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
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Verdict> {
        let (caller, id) = (caller.clone(), id.to_owned());
        self.detached(move |app| async move { app.approve_now(&caller, &id, comment).await })
            .await
    }

    async fn approve_now(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Verdict> {
        let before = self
            .visible(caller, RequestKey::Request(id.to_owned()))
            .await?;
        let config = self.config.clone();
        let clock = self.clock.clone();
        let approver = caller.principal.clone();
        let subject = Arc::new(Mutex::new(None));
        let seen = subject.clone();
        let r = self
            .change(
                caller,
                "request.approve",
                RequestKey::Request(id.to_owned()),
                Box::new(move |r| {
                    *seen.lock().expect("subject lock") = pending_extension(r);
                    r.approve(&approver, comment.as_deref(), &config.policies, clock.now())
                }),
            )
            .await?;
        if r.state == State::Active && ends_at(&before) != ends_at(&r) {
            self.extend_in_target(&r).await;
        }
        let extension = *subject.lock().expect("subject lock");
        Ok(Verdict {
            request: self.after_change(r).await?,
            extension,
        })
    }

    /// Denies a pending request, or the pending extension of an active grant.
    pub async fn deny(&self, caller: &Caller, id: &str, reason: Option<String>) -> Result<Verdict> {
        self.visible(caller, RequestKey::Request(id.to_owned()))
            .await?;
        let config = self.config.clone();
        let clock = self.clock.clone();
        let by = caller.principal.clone();
        let is_admin = caller.is_admin;
        let subject = Arc::new(Mutex::new(None));
        let seen = subject.clone();
        let request = self
            .change(
                caller,
                "request.deny",
                RequestKey::Request(id.to_owned()),
                Box::new(move |r| {
                    *seen.lock().expect("subject lock") = pending_extension(r);
                    r.deny(
                        &by,
                        is_admin,
                        reason.as_deref(),
                        &config.policies,
                        clock.now(),
                    )
                }),
            )
            .await?;
        let extension = *subject.lock().expect("subject lock");
        Ok(Verdict { request, extension })
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

    /// "I'm done": the holder ends the grant at once.
    pub async fn release(
        self: &Arc<Self>,
        caller: &Caller,
        grant_id: &str,
    ) -> Result<AccessRequest> {
        let (caller, id) = (caller.clone(), grant_id.to_owned());
        self.detached(move |app| async move { app.end_grant(&caller, &id, EndBy::Release).await })
            .await
    }

    /// An admin ends the grant at once.
    pub async fn revoke(
        self: &Arc<Self>,
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
        let (caller, id) = (caller.clone(), grant_id.to_owned());
        self.detached(
            move |app| async move { app.end_grant(&caller, &id, EndBy::Revoke(reason)).await },
        )
        .await
    }

    pub async fn extend(
        self: &Arc<Self>,
        caller: &Caller,
        grant_id: &str,
        extra: &str,
        reason: Option<String>,
    ) -> Result<AccessRequest> {
        let (caller, id, extra) = (caller.clone(), grant_id.to_owned(), extra.to_owned());
        self.detached(move |app| async move { app.extend_now(&caller, &id, &extra, reason).await })
            .await
    }

    async fn extend_now(
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
                    r.request_extension(
                        &by,
                        extra,
                        reason.as_deref(),
                        &config.policies,
                        clock.now(),
                    )
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

    /// A short-lived password for the gateway, for the grantee of an active grant on a
    /// PostgreSQL resource: it lets only them in, only to that resource, only through that grant
    /// and only while it is active. Each issue is audited; the password itself never is.
    pub async fn gateway_password(
        &self,
        caller: &Caller,
        grant_id: &str,
    ) -> Result<(AccessRequest, String)> {
        let r = self
            .visible(caller, RequestKey::Grant(grant_id.to_owned()))
            .await?;
        if r.principal != caller.principal.name {
            let err = Error::Core(CoreError::Refused(format!(
                "only the grantee ({}) may get a gateway password for grant {grant_id}",
                r.principal
            )));
            return Err(self
                .refused(caller, "grant.gateway_password", Some(&r), err)
                .await);
        }
        if r.state != State::Active {
            return Err(CoreError::InvalidTransition {
                action: "issue a gateway password for",
                state: r.state,
            }
            .into());
        }
        let postgres = self.config.resource(&r.resource).is_some_and(|res| {
            matches!(
                res.kind,
                ResourceKind::Postgres(_) | ResourceKind::PostgresShared(_)
            )
        });
        if !postgres || self.config.gateway.is_none() {
            return Err(CoreError::Invalid(format!(
                "the gateway serves PostgreSQL resources only, and only when [gateway.postgres] is configured; {} is not reachable through it",
                r.resource
            ))
            .into());
        }
        let password = self
            .gateway_passwords
            .issue(crate::gateway_password::Bound {
                principal: r.principal.clone(),
                resource: r.resource.clone(),
                grant_id: r.grant_id.clone(),
            });
        let mut e = EventDraft::new(
            self.now(),
            &caller.principal.name,
            "grant.gateway_password_issued",
        )
        .details(json!({ "expires_at": r.grant.as_ref().map(|g| g.expires_at) }));
        e.resource = Some(r.resource.clone());
        e.subject = Some(r.principal.clone());
        e.request_id = Some(r.id.clone());
        e.grant_id = Some(r.grant_id.clone());
        self.append(vec![e]).await?;
        Ok((r, password))
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
}

/// The index of the extension an approval or a denial of `r` would decide, if it is one.
fn pending_extension(r: &AccessRequest) -> Option<usize> {
    let g = r.grant.as_ref().filter(|_| r.state == State::Active)?;
    g.extensions
        .iter()
        .position(|e| e.state == jitgate_core::lifecycle::ExtensionState::Pending)
}

fn ends_at(r: &AccessRequest) -> Option<Timestamp> {
    r.grant.as_ref().map(|g| g.expires_at)
}
