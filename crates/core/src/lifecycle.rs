//! The lifecycle of an access request and the grant it becomes, as one state machine.
//!
//! ```text
//! pending ──approve(s)──▶ approved ──activate──▶ active ──▶ revoking ──▶ expired | released | revoked
//!    ├─ deny ─▶ denied        │                              (connector confirmed)
//!    ├─ cancel ─▶ cancelled   └─ cancel / release / revoke before the start ─▶ cancelled | released | revoked
//!    └─ pending_timeout ─▶ timed_out
//! ```
//!
//! Every method validates the transition, changes the state and returns the audit events that
//! record it; the store writes both in one transaction. An illegal transition is an error, never
//! a silent no-op. The same person repeating the same decision (approving, denying, cancelling,
//! reviewing, releasing or revoking twice, so a client may retry safely) returns no events and
//! changes nothing; the same decision by someone else after it was made is a
//! [`CoreError::Conflict`] that names who made it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::event::{EventDraft, Outcome, SYSTEM_ACTOR};
use crate::policy::{self, Decision};
use crate::principal::Principal;
use crate::{CoreError, duration, ids};

/// Retries of a failed revocation back off up to this interval.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Approved,
    Active,
    Revoking,
    Expired,
    Released,
    Revoked,
    Denied,
    Cancelled,
    TimedOut,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Pending,
        State::Approved,
        State::Active,
        State::Revoking,
        State::Expired,
        State::Released,
        State::Revoked,
        State::Denied,
        State::Cancelled,
        State::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Active => "active",
            State::Revoking => "revoking",
            State::Expired => "expired",
            State::Released => "released",
            State::Revoked => "revoked",
            State::Denied => "denied",
            State::Cancelled => "cancelled",
            State::TimedOut => "timed_out",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            State::Pending | State::Approved | State::Active | State::Revoking
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, CoreError> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = State::ALL.iter().map(|s| s.as_str()).collect();
                CoreError::Invalid(format!("unknown state {s:?}; one of: {}", all.join(", ")))
            })
    }
}

/// Why a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Expired,
    Released,
    Revoked,
}

impl EndReason {
    fn final_state(self) -> State {
        match self {
            EndReason::Expired => State::Expired,
            EndReason::Released => State::Released,
            EndReason::Revoked => State::Revoked,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    pub at: Timestamp,
    pub comment: Option<String>,
    /// The policies under which this approver counted when they approved.
    pub counts_for: Vec<String>,
}

/// Who decided something, when, and why (a denial, a cancellation, a review).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub by: String,
    pub at: Timestamp,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ending {
    pub reason: EndReason,
    pub by: String,
    pub at: Timestamp,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionState {
    Pending,
    Approved,
    Denied,
    /// The grant ended before the extension was decided.
    Lapsed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    #[serde(with = "duration::serde_humantime")]
    pub duration: Duration,
    pub reason: Option<String>,
    pub requested_at: Timestamp,
    pub state: ExtensionState,
    /// Policies under which it awaits approval.
    pub policies: Vec<String>,
    pub approvals: Vec<Approval>,
    /// The auto-approve rule or the approvers' quorum that decided it.
    pub decided: Option<Decided>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
    pub needs_review: bool,
    pub review: Option<Decided>,
    pub activated_at: Option<Timestamp>,
    /// What the connector needs to revoke the privilege (e.g. the ephemeral role's name).
    pub handle: Option<serde_json::Value>,
    pub ending: Option<Ending>,
    pub extensions: Vec<Extension>,
    /// Failed activation or revocation attempts in a row, and when to try again.
    pub attempts: u32,
    pub retry_at: Option<Timestamp>,
}

impl Grant {
    pub fn pending_extension(&self) -> Option<&Extension> {
        self.extensions
            .iter()
            .find(|e| e.state == ExtensionState::Pending)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: String,
    pub principal: String,
    pub resource: String,
    pub role: String,
    #[serde(with = "duration::serde_humantime")]
    pub duration: Duration,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub start_at: Option<Timestamp>,
    pub break_glass: bool,
    pub created_at: Timestamp,
    pub state: State,
    /// Candidate policies awaiting approval, or the one that approved automatically.
    pub policies: Vec<String>,
    /// Set when an auto-approve rule or break-glass approved the request.
    pub approved_by_rule: Option<String>,
    pub pending_until: Timestamp,
    pub approvals: Vec<Approval>,
    pub denial: Option<Decided>,
    pub cancellation: Option<Decided>,
    /// Reserved at creation, so a grant id is stable even before the grant exists.
    pub grant_id: String,
    pub grant: Option<Grant>,
}

/// What the scheduler must do with a request at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    TimeOut,
    /// Approved and its start has come: provision in the target.
    Activate,
    /// Approved but its whole window passed without activation.
    ExpireUnused,
    /// Active and its window is over.
    Expire,
    /// Revoking, and the next attempt is due.
    RetryRevoke,
}

impl AccessRequest {
    /// A new request as the policy decided it, with its `request.created` event (and, when the
    /// decision approves at once, `request.approved`).
    pub fn create(
        ask: &policy::AccessAsk<'_>,
        decision: Decision,
        now: Timestamp,
    ) -> Result<(Self, Vec<EventDraft>), CoreError> {
        if let Some(s) = ask.start_at
            && s < now
        {
            return Err(CoreError::Invalid(format!("start_at {s} is in the past")));
        }
        let (policies, rule, pending_timeout, break_glass) = match &decision {
            Decision::NeedsApproval {
                policies,
                pending_timeout,
            } => (policies.clone(), None, *pending_timeout, false),
            Decision::AutoApproved { policy, rule } => (
                vec![policy.clone()],
                Some(format!("{policy}/{rule}")),
                Duration::ZERO,
                false,
            ),
            Decision::BreakGlass { policy } => (
                vec![policy.clone()],
                Some(format!("{policy}/break_glass")),
                Duration::ZERO,
                true,
            ),
        };
        let clean = |s: Option<&str>| {
            s.map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let mut req = AccessRequest {
            id: ids::new_id("req"),
            principal: ask.principal.name.clone(),
            resource: ask.resource.to_owned(),
            role: ask.role.to_owned(),
            duration: ask.duration,
            reason: clean(ask.reason),
            ticket: clean(ask.ticket),
            start_at: ask.start_at,
            break_glass,
            created_at: now,
            state: State::Pending,
            policies,
            approved_by_rule: rule.clone(),
            pending_until: duration::add(now, pending_timeout),
            approvals: vec![],
            denial: None,
            cancellation: None,
            grant_id: ids::new_id("grt"),
            grant: None,
        };
        let mut events = vec![
            req.event(now, &req.principal.clone(), "request.created")
                .details(json!({
                    "role": req.role,
                    "duration": duration::format(req.duration),
                    "reason": req.reason,
                    "ticket": req.ticket,
                    "start_at": req.start_at,
                    "policies": req.policies,
                    "break_glass": break_glass,
                    "decision": match &decision {
                        Decision::NeedsApproval { .. } => "needs_approval",
                        Decision::AutoApproved { .. } => "auto_approved",
                        Decision::BreakGlass { .. } => "break_glass",
                    },
                })),
        ];
        if let Some(rule) = rule {
            events.push(req.approve_now(
                now,
                SYSTEM_ACTOR,
                json!({ "rule": rule, "break_glass": break_glass }),
            ));
        }
        Ok((req, events))
    }

    fn event(&self, now: Timestamp, actor: &str, action: &str) -> EventDraft {
        let mut e = EventDraft::new(now, actor, action);
        e.resource = Some(self.resource.clone());
        e.subject = Some(self.principal.clone());
        e.request_id = Some(self.id.clone());
        if self.grant.is_some() {
            e.grant_id = Some(self.grant_id.clone());
        }
        e
    }

    fn grant_mut(&mut self) -> &mut Grant {
        self.grant
            .as_mut()
            .expect("a request past approval has a grant")
    }

    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_ref()
    }

    fn invalid(&self, action: &'static str) -> CoreError {
        CoreError::InvalidTransition {
            action,
            state: self.state,
        }
    }

    /// What, if anything, is due at `now`.
    pub fn due(&self, now: Timestamp) -> Option<Due> {
        match (self.state, &self.grant) {
            (State::Pending, _) if now >= self.pending_until => Some(Due::TimeOut),
            (State::Approved, Some(g)) if now >= g.expires_at => Some(Due::ExpireUnused),
            (State::Approved, Some(g))
                if now >= g.starts_at && g.retry_at.is_none_or(|r| now >= r) =>
            {
                Some(Due::Activate)
            }
            (State::Active, Some(g)) if now >= g.expires_at => Some(Due::Expire),
            (State::Revoking, Some(g)) if g.retry_at.is_none_or(|r| now >= r) => {
                Some(Due::RetryRevoke)
            }
            _ => None,
        }
    }

    /// The next moment something will be due, for the scheduler's index.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match (self.state, &self.grant) {
            (State::Pending, _) => Some(self.pending_until),
            (State::Approved, Some(g)) => Some(
                g.retry_at
                    .unwrap_or(g.starts_at)
                    .max(g.starts_at)
                    .min(g.expires_at),
            ),
            (State::Active, Some(g)) => Some(g.expires_at),
            // Due from the moment it began ending (or at its retry): whatever happened to the
            // call that started the end, the scheduler and a restart's catch-up finish it.
            (State::Revoking, Some(g)) => Some(
                g.retry_at
                    .or(g.ending.as_ref().map(|e| e.at))
                    .unwrap_or(g.expires_at),
            ),
            _ => None,
        }
    }

    pub fn time_out(&mut self, now: Timestamp) -> Result<Vec<EventDraft>, CoreError> {
        if self.due(now) != Some(Due::TimeOut) {
            return Err(self.invalid("time out"));
        }
        self.state = State::TimedOut;
        let approvers: Vec<&str> = self.approvals.iter().map(|a| a.by.as_str()).collect();
        Ok(vec![
            self.event(now, SYSTEM_ACTOR, "request.timed_out")
                .details(json!({
                    "pending_until": self.pending_until, "approvals": approvers,
                })),
        ])
    }

    /// The window a grant activated now would have: from its planned start, or from now if
    /// that is later, for its whole duration. The connector provisions for this window.
    pub fn activation_window(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let start = self.grant.as_ref()?.starts_at.max(now);
        Some((start, duration::add(start, self.duration)))
    }

    /// Approved → active, once the connector has provisioned the privilege. `started` is when
    /// provisioning began: the window runs from then (never before its planned start) for the
    /// whole duration, so a target that kept failing does not eat into the grant. One that
    /// cannot be activated before its planned window ends expires unused.
    pub fn activate(
        &mut self,
        handle: Option<serde_json::Value>,
        started: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        if self.due(now) != Some(Due::Activate) {
            return Err(self.invalid("activate"));
        }
        self.state = State::Active;
        let length = self.duration;
        let g = self.grant_mut();
        g.starts_at = started.max(g.starts_at);
        g.expires_at = duration::add(g.starts_at, length);
        g.activated_at = Some(now);
        g.handle = handle;
        g.attempts = 0;
        g.retry_at = None;
        let (starts_at, expires_at) = (g.starts_at, g.expires_at);
        Ok(vec![self.event(now, SYSTEM_ACTOR, "grant.activated").details(json!({
            "role": self.role, "starts_at": starts_at, "expires_at": expires_at, "needs_review": self.break_glass,
        }))])
    }

    /// The connector could not provision: stay approved and try again with backoff.
    pub fn activation_failed(
        &mut self,
        error: &str,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        if self.state != State::Approved {
            return Err(self.invalid("retry activating"));
        }
        let (attempt, retry_at) = self.schedule_retry(now);
        Ok(vec![
            self.event(now, SYSTEM_ACTOR, "grant.activation_failed")
                .outcome(Outcome::Failure)
                .details(json!({
                    "error": error, "attempt": attempt, "retry_at": retry_at,
                })),
        ])
    }

    /// Approved, but the whole window passed before it could be activated.
    pub fn expire_unused(&mut self, now: Timestamp) -> Result<Vec<EventDraft>, CoreError> {
        if self.due(now) != Some(Due::ExpireUnused) {
            return Err(self.invalid("expire"));
        }
        self.finish(
            EndReason::Expired,
            SYSTEM_ACTOR,
            Some("it could not be activated before its planned window ended"),
            now,
        )
    }

    /// Active → revoking because the window is over.
    pub fn expire(&mut self, now: Timestamp) -> Result<Vec<EventDraft>, CoreError> {
        if self.due(now) != Some(Due::Expire) {
            return Err(self.invalid("expire"));
        }
        self.begin_end(EndReason::Expired, SYSTEM_ACTOR, None, now)
    }

    /// "I'm done": the holder ends the grant at once.
    pub fn release(
        &mut self,
        by: &Principal,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        if by.name != self.principal {
            return Err(CoreError::Refused(format!(
                "only the holder ({}) may release grant {}; admins revoke",
                self.principal, self.grant_id
            )));
        }
        self.end_by(EndReason::Released, by, None, "release", now)
    }

    /// An admin ends the grant at once.
    pub fn revoke(
        &mut self,
        by: &Principal,
        is_admin: bool,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        if !is_admin {
            return Err(CoreError::Refused(format!(
                "only admins may revoke grant {}; the holder may release it",
                self.grant_id
            )));
        }
        self.end_by(EndReason::Revoked, by, reason, "revoke", now)
    }

    fn end_by(
        &mut self,
        reason: EndReason,
        by: &Principal,
        comment: Option<&str>,
        action: &'static str,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        let ending_reason = self
            .grant
            .as_ref()
            .and_then(|g| g.ending.as_ref())
            .map(|e| e.reason);
        match self.state {
            State::Active => self.begin_end(reason, &by.name, comment, now),
            // Nothing was provisioned yet: it ends at once.
            State::Approved => self.finish(reason, &by.name, comment, now),
            State::Revoking | State::Released | State::Revoked if ending_reason == Some(reason) => {
                let ended_by = self
                    .grant()
                    .and_then(|g| g.ending.as_ref())
                    .map(|e| e.by.clone());
                match ended_by {
                    // The same person asking again: done already.
                    Some(who) if who == by.name => Ok(vec![]),
                    who => Err(CoreError::Conflict(format!(
                        "grant {} was already {} by {}",
                        self.grant_id,
                        reason.final_state(),
                        who.unwrap_or_default()
                    ))),
                }
            }
            _ => Err(self.invalid(action)),
        }
    }

    fn begin_end(
        &mut self,
        reason: EndReason,
        by: &str,
        comment: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        self.state = State::Revoking;
        let g = self.grant_mut();
        g.ending = Some(Ending {
            reason,
            by: by.to_owned(),
            at: now,
            comment: comment.map(str::to_owned),
        });
        g.attempts = 0;
        g.retry_at = None;
        let mut events = vec![
            self.event(now, by, "grant.revoking")
                .details(json!({ "reason": reason, "by": by, "comment": comment })),
        ];
        events.extend(self.lapse_extension(now));
        Ok(events)
    }

    /// Revoking → expired | released | revoked, once the connector confirmed. Also ends a grant
    /// that never became active.
    pub fn finish_revocation(&mut self, now: Timestamp) -> Result<Vec<EventDraft>, CoreError> {
        if self.state != State::Revoking {
            return Err(self.invalid("finish revoking"));
        }
        let e = self
            .grant()
            .and_then(|g| g.ending.clone())
            .expect("revoking has an ending");
        self.finish(e.reason, &e.by, e.comment.as_deref(), now)
    }

    fn finish(
        &mut self,
        reason: EndReason,
        by: &str,
        comment: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        self.state = reason.final_state();
        let g = self.grant_mut();
        let began = g.ending.as_ref().map(|e| e.at);
        g.ending = Some(Ending {
            reason,
            by: by.to_owned(),
            at: began.unwrap_or(now),
            comment: comment.map(str::to_owned),
        });
        g.retry_at = None;
        let (expires_at, activated_at) = (g.expires_at, g.activated_at);
        let action = match reason {
            EndReason::Expired => "grant.expired",
            EndReason::Released => "grant.released",
            EndReason::Revoked => "grant.revoked",
        };
        let mut events = vec![self.event(now, by, action).details(json!({
            "reason": reason, "by": by, "comment": comment, "expires_at": expires_at, "activated_at": activated_at,
        }))];
        events.extend(self.lapse_extension(now));
        Ok(events)
    }

    /// The connector could not revoke: stay revoking, try again with backoff; never forgotten.
    pub fn revocation_failed(
        &mut self,
        error: &str,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        if self.state != State::Revoking {
            return Err(self.invalid("retry revoking"));
        }
        let (attempt, retry_at) = self.schedule_retry(now);
        Ok(vec![
            self.event(now, SYSTEM_ACTOR, "grant.revoke_failed")
                .outcome(Outcome::Failure)
                .details(json!({
                    "error": error, "attempt": attempt, "retry_at": retry_at,
                })),
        ])
    }

    fn schedule_retry(&mut self, now: Timestamp) -> (u32, Timestamp) {
        let g = self.grant_mut();
        g.attempts += 1;
        let backoff = Duration::from_millis(500u64.saturating_mul(1 << g.attempts.min(10)))
            .min(MAX_RETRY_BACKOFF);
        let at = duration::add(now, backoff);
        g.retry_at = Some(at);
        (g.attempts, at)
    }
}

#[path = "lifecycle_decision.rs"]
mod decision;

#[path = "lifecycle_extension.rs"]
mod extension;

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
