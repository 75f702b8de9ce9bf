//! Decisions on a request: approvals (and the quorum they meet), denials, cancellations by the
//! requester, and the review of a break-glass grant.

use jiff::Timestamp;
use serde_json::json;

use super::{AccessRequest, Approval, Decided, Extension, ExtensionState, Grant, State};
use crate::event::EventDraft;
use crate::policy::{self, Policy};
use crate::principal::Principal;
use crate::{CoreError, duration};

impl AccessRequest {
    /// The extension of an active grant decided last, when none awaits a decision.
    fn last_decided_extension(&self) -> Option<&Extension> {
        let g = self
            .grant
            .as_ref()
            .filter(|_| self.state == State::Active)?;
        g.pending_extension().is_none().then_some(())?;
        g.extensions
            .last()
            .filter(|e| matches!(e.state, ExtensionState::Approved | ExtensionState::Denied))
    }

    /// Why an approval or a denial no longer applies: who decided instead, when someone did.
    fn already_decided(&self, action: &'static str) -> CoreError {
        if let Some(e) = self.last_decided_extension() {
            let by = e.decided.as_ref().map(|d| d.by.as_str()).unwrap_or("?");
            let how = if e.state == ExtensionState::Approved {
                "approved"
            } else {
                "denied"
            };
            return CoreError::Conflict(format!(
                "the extension of grant {} was already {how} by {by}; none awaits a decision",
                self.grant_id
            ));
        }
        let approvers = || {
            let names: Vec<&str> = self.approvals.iter().map(|a| a.by.as_str()).collect();
            match &self.approved_by_rule {
                Some(rule) => format!("rule {rule}"),
                None => names.join(", "),
            }
        };
        match (self.state, &self.denial, &self.cancellation) {
            (State::Denied, Some(d), _) => CoreError::Conflict(format!(
                "request {} was already denied by {}",
                self.id, d.by
            )),
            (State::Cancelled, _, Some(c)) => {
                CoreError::Conflict(format!("request {} was cancelled by {}", self.id, c.by))
            }
            (State::Pending | State::TimedOut | State::Denied | State::Cancelled, ..) => {
                self.invalid(action)
            }
            (state, ..) => CoreError::Conflict(format!(
                "request {} was already approved by {} and is now {state}",
                self.id,
                approvers()
            )),
        }
    }

    /// Pending → approved: the window starts now, or at `start_at` if that is later.
    pub(super) fn approve_now(
        &mut self,
        now: Timestamp,
        actor: &str,
        details: serde_json::Value,
    ) -> EventDraft {
        let starts_at = self.start_at.unwrap_or(now).max(now);
        self.state = State::Approved;
        self.grant = Some(Grant {
            id: self.grant_id.clone(),
            starts_at,
            expires_at: duration::add(starts_at, self.duration),
            needs_review: self.break_glass,
            review: None,
            activated_at: None,
            handle: None,
            ending: None,
            extensions: vec![],
            attempts: 0,
            retry_at: None,
        });
        let g = self.grant.as_ref().expect("just set");
        let mut details = details;
        details["starts_at"] = json!(g.starts_at);
        details["expires_at"] = json!(g.expires_at);
        self.event(now, actor, "request.approved").details(details)
    }

    /// Records an approval of the pending request, or of the pending extension of its active
    /// grant; approves it once any candidate policy's quorum is met. `configured` are the
    /// policies as configured now: a policy removed since no longer counts.
    pub fn approve(
        &mut self,
        approver: &Principal,
        comment: Option<&str>,
        configured: &[Policy],
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        if self.state == State::Active && self.grant().and_then(Grant::pending_extension).is_some()
        {
            return self.approve_extension(approver, comment, configured, now);
        }
        // The same person approving again (the request, or the extension they approved) counts once.
        let approved_extension = self.last_decided_extension().is_some_and(|e| {
            e.state == ExtensionState::Approved && e.approvals.iter().any(|a| a.by == approver.name)
        });
        if approved_extension
            || (self.approvals.iter().any(|a| a.by == approver.name)
                && matches!(self.state, State::Pending | State::Approved | State::Active))
        {
            return Ok(vec![]);
        }
        if self.state != State::Pending {
            return Err(self.already_decided("approve"));
        }
        let what = format!(
            "request {} (role {} on {} for {})",
            self.id, self.role, self.resource, self.principal
        );
        let candidates = policy::named(configured, &self.policies);
        let requester = self.principal.clone();
        let (mut details, quorum) = record_approval(
            &mut self.approvals,
            &candidates,
            approver,
            &requester,
            comment,
            &what,
            now,
        )?;
        Ok(vec![match quorum {
            Some(policy) => {
                details["policy"] = json!(policy);
                self.approve_now(now, &approver.name, details)
            }
            None => self
                .event(now, &approver.name, "request.approval_recorded")
                .details(details),
        }])
    }

    /// Denies the pending request, or the pending extension of its active grant, by someone
    /// who could have approved it (or an admin).
    pub fn deny(
        &mut self,
        by: &Principal,
        is_admin: bool,
        reason: Option<&str>,
        configured: &[Policy],
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        if self.state == State::Active && self.grant().and_then(Grant::pending_extension).is_some()
        {
            return self.deny_extension(by, is_admin, reason, configured, now);
        }
        let denied_extension = self.last_decided_extension().is_some_and(|e| {
            e.state == ExtensionState::Denied && e.decided.as_ref().is_some_and(|d| d.by == by.name)
        });
        if denied_extension
            || (self.state == State::Denied
                && self.denial.as_ref().is_some_and(|d| d.by == by.name))
        {
            return Ok(vec![]); // the same person denying again
        }
        if self.state != State::Pending {
            return Err(self.already_decided("deny"));
        }
        if !is_admin {
            let what = format!("request {}", self.id);
            policy::approver_counts_for(
                &policy::named(configured, &self.policies),
                by,
                &self.principal,
                "deny",
                &what,
            )?;
        }
        let reason = reason.map(str::to_owned);
        self.state = State::Denied;
        self.denial = Some(Decided {
            by: by.name.clone(),
            at: now,
            comment: reason.clone(),
        });
        Ok(vec![
            self.event(now, &by.name, "request.denied")
                .details(json!({ "by": by.name, "reason": reason })),
        ])
    }

    /// Pending or approved-but-not-started → cancelled, by the requester.
    pub fn cancel(&mut self, by: &Principal, now: Timestamp) -> Result<Vec<EventDraft>, CoreError> {
        if by.name != self.principal {
            return Err(CoreError::Refused(format!(
                "only the requester ({}) may cancel request {}",
                self.principal, self.id
            )));
        }
        match self.state {
            State::Cancelled => Ok(vec![]),
            State::Pending | State::Approved => {
                self.state = State::Cancelled;
                self.cancellation = Some(Decided {
                    by: by.name.clone(),
                    at: now,
                    comment: None,
                });
                Ok(vec![
                    self.event(now, &by.name, "request.cancelled")
                        .details(json!({ "by": by.name })),
                ])
            }
            _ => Err(self.invalid("cancel")),
        }
    }

    /// Someone other than the holder reviews a break-glass grant: an admin, or an approver
    /// under one of the request's policies.
    pub fn review(
        &mut self,
        by: &Principal,
        is_admin: bool,
        configured: &[Policy],
        comment: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        let Some(g) = &self.grant else {
            return Err(self.invalid("review"));
        };
        if !g.needs_review {
            return match &g.review {
                Some(r) if r.by == by.name => Ok(vec![]),
                Some(r) => Err(CoreError::Conflict(format!(
                    "grant {} was already reviewed by {}",
                    self.grant_id, r.by
                ))),
                None => Err(CoreError::Conflict(format!(
                    "grant {} does not need a review (it was not break-glass)",
                    self.grant_id
                ))),
            };
        }
        let may_review = is_admin
            || policy::named(configured, &self.policies)
                .iter()
                .any(|p| crate::Selector::any_matches(&p.approval.approvers, by));
        if by.name == self.principal {
            return Err(CoreError::Refused(format!(
                "{} may not review their own break-glass grant {}",
                by.name, self.grant_id
            )));
        }
        if !may_review {
            return Err(CoreError::Refused(format!(
                "only admins or the policy's approvers may review grant {}",
                self.grant_id
            )));
        }
        let g = self.grant_mut();
        g.needs_review = false;
        g.review = Some(Decided {
            by: by.name.clone(),
            at: now,
            comment: comment.map(str::to_owned),
        });
        Ok(vec![
            self.event(now, &by.name, "grant.reviewed")
                .details(json!({ "by": by.name, "comment": comment })),
        ])
    }
}

/// Adds `approver`'s approval if they count under one of `candidates`; returns the event details
/// (who approved so far) and the policy whose quorum is now met, if any.
pub(super) fn record_approval(
    approvals: &mut Vec<Approval>,
    candidates: &[&Policy],
    approver: &Principal,
    requester: &str,
    comment: Option<&str>,
    what: &str,
    now: Timestamp,
) -> Result<(serde_json::Value, Option<String>), CoreError> {
    let counts_for = policy::approver_counts_for(candidates, approver, requester, "approve", what)?;
    approvals.push(Approval {
        by: approver.name.clone(),
        at: now,
        comment: comment.map(str::to_owned),
        counts_for,
    });
    let quorum = policy::quorum_met(
        candidates,
        approvals.iter().map(|a| a.counts_for.as_slice()),
    );
    let approvers: Vec<&str> = approvals.iter().map(|a| a.by.as_str()).collect();
    Ok((
        json!({ "by": approver.name, "comment": comment, "approvals": approvers }),
        quorum,
    ))
}
