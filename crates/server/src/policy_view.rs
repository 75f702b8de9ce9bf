//! The explanation of a policy decision as the API and `jitgate policy explain` show it: core's
//! trace ([`jitgate_core::policy_explain`]) with the config's side of things added (what the role
//! grants in the target, which configured principals may approve).

use jitgate_core::policy::{AccessAsk, Decision};
use jitgate_core::policy_explain::{Considered, Judgement, explain};
use jitgate_core::{CoreError, Principal, Timestamp, duration};
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::{Config, Resource, RoleDef};

/// Why an ask gets its decision, policy by policy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExplainView {
    pub principal: String,
    pub groups: Vec<String>,
    pub resource: String,
    pub role: String,
    /// As asked, e.g. `30m`.
    pub duration: String,
    pub break_glass: bool,
    /// When the grant would start; auto-approve schedules are judged at this time.
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    /// auto_approved, break_glass, needs_approval or denied.
    pub decision: String,
    /// The decision in a sentence: the rule that approves, who must approve, or why not.
    pub message: String,
    /// The policy (and rule) that approves at once, for auto_approved and break_glass.
    pub policy: Option<String>,
    pub rule: Option<String>,
    /// needs_approval: the policies it would wait under; any one's quorum approves it.
    pub approvals: Vec<ApprovalNeed>,
    /// needs_approval: how long it would wait before timing out.
    pub pending_timeout: Option<String>,
    /// The longest grant any policy matching the ask allows.
    pub max_duration: Option<String>,
    /// What the role is in the target: the grants its logins get.
    pub role_grants: Vec<String>,
    /// The database the role's logins are confined to, when the role names one.
    pub role_database: Option<String>,
    /// The policies considered, by name.
    pub policies: Vec<ConsideredView>,
    /// Policies left out of `policies` because they do not speak about this ask (the API
    /// shows a caller only the policies that match them).
    pub unmatched_hidden: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalNeed {
    pub policy: String,
    /// Distinct approvals needed.
    pub required: u32,
    /// Who may approve: `group:dba`, `user:dora`, …
    pub approvers: Vec<String>,
    pub allow_self_approval: bool,
    /// The configured principals who would count (offline explanations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eligible: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsideredView {
    pub policy: String,
    pub matched: bool,
    /// not_matched, dropped_out, auto_approved, break_glass or needs_approval.
    pub result: String,
    /// Why it did not match or dropped out.
    pub why: Option<String>,
    pub required: u32,
    pub approvers: Vec<String>,
    pub max_duration: String,
    /// Its auto-approve rules, when it got as far as them.
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleView {
    pub rule: String,
    pub applies: bool,
    /// Why it does not apply.
    pub why: Option<String>,
}

/// What is asked: a principal's request, before it is made.
pub struct Ask<'a> {
    pub principal: &'a Principal,
    pub resource: &'a str,
    pub role: &'a str,
    pub duration: &'a str,
    pub reason: Option<&'a str>,
    pub ticket: Option<&'a str>,
    pub start_at: Option<Timestamp>,
    pub break_glass: bool,
}

/// The configured resource and its role, or why the ask names neither (a message listing what
/// there is).
pub fn resource_role<'c>(
    config: &'c Config,
    resource: &str,
    role: &str,
) -> Result<(&'c Resource, &'c RoleDef), CoreError> {
    let r = config.resource(resource).ok_or_else(|| {
        let known: Vec<&str> = config.resources.iter().map(|r| r.name.as_str()).collect();
        CoreError::Invalid(format!(
            "unknown resource {resource:?}; known resources: {}",
            known.join(", ")
        ))
    })?;
    let def = r.roles.get(role).ok_or_else(|| {
        let roles: Vec<&str> = r.roles.keys().map(String::as_str).collect();
        CoreError::Invalid(format!(
            "resource {} has no role {role:?}; its roles: {}",
            r.name,
            roles.join(", ")
        ))
    })?;
    Ok((r, def))
}

/// Explains `ask` under `config`'s policies at `now`. `offline`: for an operator with the
/// config in hand (every policy shown, eligible approvers named); otherwise for the caller
/// about themself (only the policies that match them).
pub fn explain_view(
    config: &Config,
    ask: &Ask<'_>,
    now: Timestamp,
    offline: bool,
) -> Result<ExplainView, CoreError> {
    let (_, def) = resource_role(config, ask.resource, ask.role)?;
    let core_ask = AccessAsk {
        principal: ask.principal,
        resource: ask.resource,
        role: ask.role,
        duration: duration::parse(ask.duration)?,
        reason: ask.reason,
        ticket: ask.ticket,
        start_at: ask.start_at,
        break_glass: ask.break_glass,
        extension: None,
    };
    let e = explain(&config.policies, &core_ask, now);
    let matched: Vec<&Considered> = e
        .considered
        .iter()
        .filter(|c| c.judgement.matched())
        .collect();
    let max_duration = matched.iter().map(|c| c.max_duration).max();
    let (decision, message, policy, rule, pending_timeout) = match &e.decision {
        Ok(Decision::AutoApproved { policy, rule }) => (
            "auto_approved",
            format!("approved at once under policy {policy} ({rule})"),
            Some(policy.clone()),
            Some(rule.clone()),
            None,
        ),
        Ok(Decision::BreakGlass { policy }) => (
            "break_glass",
            format!("approved at once by break-glass under policy {policy}, flagged for review"),
            Some(policy.clone()),
            None,
            None,
        ),
        Ok(Decision::NeedsApproval {
            policies,
            pending_timeout,
        }) => (
            "needs_approval",
            format!("waits for approval under policy {}", policies.join(" or ")),
            None,
            None,
            Some(duration::format(*pending_timeout)),
        ),
        Err(why) => ("denied", why.clone(), None, None, None),
    };
    let approvals = matched
        .iter()
        .filter(|c| c.judgement == Judgement::NeedsApproval)
        .map(|c| need(config, c, &ask.principal.name, offline))
        .collect();
    let shown: Vec<ConsideredView> = e
        .considered
        .iter()
        .filter(|c| offline || c.judgement.matched())
        .map(considered_view)
        .collect();
    Ok(ExplainView {
        principal: ask.principal.name.clone(),
        groups: ask.principal.groups.clone(),
        resource: ask.resource.to_owned(),
        role: ask.role.to_owned(),
        duration: ask.duration.to_owned(),
        break_glass: ask.break_glass,
        starts_at: e.starts,
        decision: decision.to_owned(),
        message,
        policy,
        rule,
        approvals,
        pending_timeout,
        max_duration: max_duration.map(duration::format),
        role_grants: def.grants.clone(),
        role_database: def.database.clone(),
        unmatched_hidden: e.considered.len() - shown.len(),
        policies: shown,
    })
}

fn need(config: &Config, c: &Considered, requester: &str, offline: bool) -> ApprovalNeed {
    let eligible = offline.then(|| {
        let policy = config.policy(&c.policy);
        config
            .principals
            .iter()
            .map(|p| &p.principal)
            .filter(|p| policy.is_some_and(|pol| pol.counts_approver(p, requester)))
            .map(|p| p.name.clone())
            .collect()
    });
    ApprovalNeed {
        policy: c.policy.clone(),
        required: c.required,
        approvers: c.approvers.iter().map(ToString::to_string).collect(),
        allow_self_approval: c.allow_self_approval,
        eligible,
    }
}

fn considered_view(c: &Considered) -> ConsideredView {
    let (result, why) = match &c.judgement {
        Judgement::NotMatched(why) => ("not_matched", Some(why.clone())),
        Judgement::DroppedOut(why) => ("dropped_out", Some(why.clone())),
        Judgement::AutoApproved { .. } => ("auto_approved", None),
        Judgement::BreakGlass => ("break_glass", None),
        Judgement::NeedsApproval => ("needs_approval", None),
    };
    ConsideredView {
        policy: c.policy.clone(),
        matched: c.judgement.matched(),
        result: result.to_owned(),
        why,
        required: c.required,
        approvers: c.approvers.iter().map(ToString::to_string).collect(),
        max_duration: duration::format(c.max_duration),
        rules: c
            .rules
            .iter()
            .map(|(rule, why)| RuleView {
                rule: rule.clone(),
                applies: why.is_none(),
                why: why.clone(),
            })
            .collect(),
    }
}
