//! The audit log as callers use it: search and export (each read is itself audited), legal holds,
//! erasure, and signing-key rotation.

use jitgate_audit::retention::Hold;
use jitgate_audit::{AuditEvent, EventFilter};
use jitgate_core::{CoreError, EventDraft, Outcome, Timestamp, ids};
use serde_json::json;
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::error::Error;
use crate::service::App;

type Result<T> = std::result::Result<T, Error>;

/// What a new hold covers; every criterion set must match, and at least one must be set or the
/// hold covers the whole log.
#[derive(Debug, Clone, Default)]
pub struct NewHold {
    pub reason: String,
    pub resource: Option<String>,
    pub principal: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl App {
    /// Refuses, and audits the refusal, unless the caller is an admin.
    async fn admin_only(&self, caller: &Caller, action: &str, what: &str) -> Result<()> {
        if caller.is_admin {
            return Ok(());
        }
        let err = Error::Core(CoreError::Refused(format!("only admins may {what}")));
        Err(self.refused(caller, action, None, err).await)
    }

    /// Searches the audit log: auditors and admins see everything, others what involves them.
    /// The search itself is recorded.
    pub async fn audit_search(
        &self,
        caller: &Caller,
        mut filter: EventFilter,
    ) -> Result<Vec<AuditEvent>> {
        if !(caller.is_admin || caller.is_auditor) {
            filter.involving = Some(caller.principal.name.clone());
        }
        let events = self.store.search_events(filter.clone()).await?;
        let read = EventDraft::new(self.clock.now(), &caller.principal.name, "audit.searched")
            .details(json!({ "filter": filter, "returned": events.len() }));
        self.append(vec![read]).await?;
        Ok(events)
    }

    /// Streams every matching event, oldest first. The export is recorded before it starts.
    pub async fn audit_export(
        &self,
        caller: &Caller,
        mut filter: EventFilter,
        format: &str,
        limit: Option<u32>,
    ) -> Result<mpsc::Receiver<AuditEvent>> {
        if !(caller.is_admin || caller.is_auditor) {
            filter.involving = Some(caller.principal.name.clone());
        }
        let read = EventDraft::new(self.clock.now(), &caller.principal.name, "audit.exported")
            .details(json!({ "filter": filter, "format": format, "limit": limit }));
        self.append(vec![read]).await?;
        let (tx, rx) = mpsc::channel(1024);
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.stream_events(filter, tx).await {
                tracing::error!(error = %e, "audit export failed part-way");
            }
        });
        Ok(rx)
    }

    pub async fn create_hold(&self, caller: &Caller, new: NewHold) -> Result<Hold> {
        self.admin_only(caller, "hold.create", "place legal holds")
            .await?;
        if new.reason.trim().is_empty() {
            return Err(CoreError::Invalid(
                "a hold needs a reason (the case or matter it is for)".into(),
            )
            .into());
        }
        if let (Some(from), Some(until)) = (new.from, new.until)
            && from >= until
        {
            return Err(
                CoreError::Invalid("the hold's --from must be before its --until".into()).into(),
            );
        }
        let now = self.clock.now();
        let hold = Hold {
            id: ids::new_id("hold"),
            reason: new.reason,
            created_by: caller.principal.name.clone(),
            created_at: now,
            resource: new.resource,
            principal: new.principal,
            request_id: new.request_id,
            grant_id: new.grant_id,
            from: new.from,
            until: new.until,
            released_at: None,
            released_by: None,
        };
        let mut event = EventDraft::new(now, &caller.principal.name, "hold.created")
            .details(serde_json::to_value(&hold).expect("holds serialise"));
        event.resource = hold.resource.clone();
        self.store.put_hold(hold.clone(), vec![event]).await?;
        Ok(hold)
    }

    pub async fn list_holds(&self, caller: &Caller, include_released: bool) -> Result<Vec<Hold>> {
        if !(caller.is_admin || caller.is_auditor) {
            let err = Error::Core(CoreError::Refused(
                "only admins and auditors may list legal holds".into(),
            ));
            return Err(self.refused(caller, "hold.list", None, err).await);
        }
        Ok(self.store.list_holds(!include_released).await?)
    }

    pub async fn release_hold(
        &self,
        caller: &Caller,
        id: &str,
        reason: Option<String>,
    ) -> Result<Hold> {
        self.admin_only(caller, "hold.release", "release legal holds")
            .await?;
        let mut hold = self
            .store
            .get_hold(id.to_owned())
            .await?
            .ok_or_else(|| Error::NotFound(format!("hold {id}")))?;
        if !hold.is_active() {
            return Err(Error::Conflict(format!("hold {id} is already released")));
        }
        let now = self.clock.now();
        hold.released_at = Some(now);
        hold.released_by = Some(caller.principal.name.clone());
        let event = EventDraft::new(now, &caller.principal.name, "hold.released")
            .details(json!({ "hold": id, "reason": reason }));
        self.store.put_hold(hold.clone(), vec![event]).await?;
        Ok(hold)
    }

    /// Deletes the payloads of every live event the principal took part in, keeping the
    /// skeletons so the chain still verifies; refuses if a hold covers any of them.
    pub async fn erase(&self, caller: &Caller, principal: &str, reason: &str) -> Result<u64> {
        self.admin_only(caller, "audit.erase", "erase audit data")
            .await?;
        if reason.trim().is_empty() {
            return Err(CoreError::Invalid(
                "an erasure needs a reason (the request it answers)".into(),
            )
            .into());
        }
        let now = self.clock.now();
        let (actor, who, why) = (
            caller.principal.name.clone(),
            principal.to_owned(),
            reason.to_owned(),
        );
        let record: jitgate_store::EraseRecord = Box::new(move |count, range| {
            vec![EventDraft::new(now, &actor, "audit.erased").details(json!({
                "principal": who,
                "reason": why,
                "payloads_erased": count,
                "first_seq": range.map(|r| r.0),
                "last_seq": range.map(|r| r.1),
            }))]
        });
        match self.store.erase(principal.to_owned(), record).await {
            Ok(n) => Ok(n),
            Err(jitgate_store::StoreError::Held { hold, why }) => {
                let refusal = EventDraft::new(now, &caller.principal.name, "audit.erase")
                    .outcome(Outcome::Denied)
                    .details(json!({ "principal": principal, "hold": hold, "message": why }));
                self.append(vec![refusal]).await?;
                Err(CoreError::Refused(why).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn rotate_audit_key(&self, caller: &Caller) -> Result<jitgate_audit::PublicKey> {
        self.admin_only(caller, "audit.rotate_key", "rotate the audit signing key")
            .await?;
        self.audit.rotate_key(&caller.principal.name).await
    }
}
