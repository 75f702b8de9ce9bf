//! Extensions of an active grant: asked for by the holder, decided like a request by the
//! policies it was made under (on the grant's whole length), applied without a gap, and lapsed
//! when the grant ends first.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::decision::record_approval;
use super::{AccessRequest, Decided, Extension, ExtensionState, Grant, State};
use crate::event::{EventDraft, SYSTEM_ACTOR};
use crate::policy::{self, Decision, Policy};
use crate::principal::Principal;
use crate::{CoreError, duration};

impl AccessRequest {
    pub(super) fn lapse_extension(&mut self, now: Timestamp) -> Option<EventDraft> {
        let g = self.grant.as_mut()?;
        let ext = g
            .extensions
            .iter_mut()
            .find(|e| e.state == ExtensionState::Pending)?;
        ext.state = ExtensionState::Lapsed;
        let d = ext.duration;
        Some(
            self.event(now, SYSTEM_ACTOR, "grant.extension_lapsed")
                .details(json!({ "duration": duration::format(d) })),
        )
    }

    /// The holder asks for more time. The policies the request was made under (as configured
    /// now) decide, as for a request, with the grant's whole length: its window so far plus
    /// `extra` must fit each policy's and auto-approve rule's `max_duration`, and the extension
    /// must be within `max_extensions`. One that only auto-approval would not allow waits for
    /// the approvers.
    pub fn request_extension(
        &mut self,
        by: &Principal,
        extra: Duration,
        reason: Option<&str>,
        configured: &[Policy],
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        if by.name != self.principal {
            return Err(CoreError::Refused(format!(
                "only the holder ({}) may extend grant {}",
                self.principal, self.grant_id
            )));
        }
        if self.state != State::Active {
            return Err(self.invalid("extend"));
        }
        if self.grant().and_then(Grant::pending_extension).is_some() {
            return Err(CoreError::Invalid(format!(
                "grant {} already has an extension awaiting approval",
                self.grant_id
            )));
        }
        let decision = self.decide_extension(by, extra, reason, configured, now)?;
        let (policies, rule) = match decision {
            Decision::NeedsApproval { policies, .. } => (policies, None),
            Decision::AutoApproved { policy, rule } => {
                (vec![policy.clone()], Some(format!("{policy}/{rule}")))
            }
            Decision::BreakGlass { .. } => {
                return Err(CoreError::Invalid(
                    "break-glass does not apply to extensions".into(),
                ));
            }
        };
        let ext = Extension {
            duration: extra,
            reason: reason.map(str::to_owned),
            requested_at: now,
            state: ExtensionState::Pending,
            policies: policies.clone(),
            approvals: vec![],
            decided: None,
        };
        self.grant_mut().extensions.push(ext);
        let mut events = vec![
            self.event(now, &by.name, "grant.extension_requested")
                .details(json!({
                    "duration": duration::format(extra), "reason": reason, "policies": policies,
                })),
        ];
        if let Some(rule) = rule {
            events.push(self.apply_extension(SYSTEM_ACTOR, json!({ "rule": rule }), now));
        }
        Ok(events)
    }

    fn decide_extension(
        &self,
        by: &Principal,
        extra: Duration,
        reason: Option<&str>,
        configured: &[Policy],
        now: Timestamp,
    ) -> Result<Decision, CoreError> {
        let g = self.grant().expect("an active request has a grant");
        let so_far = duration::until(g.starts_at, g.expires_at);
        let extended = g
            .extensions
            .iter()
            .filter(|e| e.state == ExtensionState::Approved)
            .count() as u32;
        let policies: Vec<Policy> = policy::named(configured, &self.policies)
            .into_iter()
            .cloned()
            .collect();
        let ask = policy::AccessAsk {
            principal: by,
            resource: &self.resource,
            role: &self.role,
            duration: so_far.saturating_add(extra),
            reason: reason.or(self.reason.as_deref()),
            ticket: self.ticket.as_deref(),
            start_at: None,
            break_glass: false,
            extension: Some(extended + 1),
        };
        policy::evaluate(&policies, &ask, now)
    }

    /// An approver approves the pending extension; applied once a quorum is met, with no gap.
    pub(super) fn approve_extension(
        &mut self,
        approver: &Principal,
        comment: Option<&str>,
        configured: &[Policy],
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        let what = format!("the extension of grant {}", self.grant_id);
        let requester = self.principal.clone();
        let ext = self.pending_extension_mut()?;
        if ext.approvals.iter().any(|a| a.by == approver.name) {
            return Ok(vec![]);
        }
        let candidates = policy::named(configured, &ext.policies);
        let (mut details, quorum) = record_approval(
            &mut ext.approvals,
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
                self.apply_extension(&approver.name, details, now)
            }
            None => self
                .event(now, &approver.name, "grant.extension_approval_recorded")
                .details(details),
        }])
    }

    /// An approver (or an admin) denies the pending extension; the grant keeps its current end.
    pub(super) fn deny_extension(
        &mut self,
        by: &Principal,
        is_admin: bool,
        reason: Option<&str>,
        configured: &[Policy],
        now: Timestamp,
    ) -> Result<Vec<EventDraft>, CoreError> {
        let what = format!("the extension of grant {}", self.grant_id);
        let requester = self.principal.clone();
        let ext = self.pending_extension_mut()?;
        if !is_admin {
            policy::approver_counts_for(
                &policy::named(configured, &ext.policies),
                by,
                &requester,
                "deny",
                &what,
            )?;
        }
        ext.state = ExtensionState::Denied;
        ext.decided = Some(Decided {
            by: by.name.clone(),
            at: now,
            comment: reason.map(str::to_owned),
        });
        Ok(vec![
            self.event(now, &by.name, "grant.extension_denied")
                .details(json!({ "by": by.name, "reason": reason })),
        ])
    }

    fn pending_extension_mut(&mut self) -> Result<&mut Extension, CoreError> {
        let grant_id = self.grant_id.clone();
        self.grant
            .as_mut()
            .and_then(|g| {
                g.extensions
                    .iter_mut()
                    .find(|e| e.state == ExtensionState::Pending)
            })
            .ok_or_else(|| {
                CoreError::Invalid(format!(
                    "grant {grant_id} has no extension awaiting approval"
                ))
            })
    }

    fn apply_extension(
        &mut self,
        actor: &str,
        mut details: serde_json::Value,
        now: Timestamp,
    ) -> EventDraft {
        let g = self.grant_mut();
        let ext = g
            .extensions
            .iter_mut()
            .find(|e| e.state == ExtensionState::Pending)
            .expect("pending extension");
        ext.state = ExtensionState::Approved;
        ext.decided = Some(Decided {
            by: actor.to_owned(),
            at: now,
            comment: None,
        });
        let extra = ext.duration;
        let previous = g.expires_at;
        g.expires_at = duration::add(previous, extra);
        details["previous_expires_at"] = json!(previous);
        details["expires_at"] = json!(g.expires_at);
        details["duration"] = json!(duration::format(extra));
        self.event(now, actor, "grant.extended").details(details)
    }
}
