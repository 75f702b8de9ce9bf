//! The evaluator's trace: every policy considered for an ask, whether it matched, why it dropped
//! out or what it decided, with its approvers and limits. [`explain`] is the one implementation
//! of the rules described in [`crate::policy`]; [`crate::policy::evaluate`] returns the decision
//! read from this same trace, so what `jitgate policy explain` shows is what the server decides.

use std::time::Duration;

use jiff::Timestamp;

use crate::CoreError;
use crate::duration;
use crate::policy::{AccessAsk, AutoApprove, Decision, Policy};
use crate::principal::{self, Selector};

/// Why an ask gets the decision it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// When a grant would start (the ask's start, or now), which auto-approve schedules judge.
    pub starts: Timestamp,
    /// Every configured policy, by name.
    pub considered: Vec<Considered>,
    /// The decision, or the refusal's message.
    pub decision: Result<Decision, String>,
}

/// One policy, as the evaluator saw it for this ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Considered {
    pub policy: String,
    pub judgement: Judgement,
    /// Who may approve under this policy, and how many distinct approvals it needs.
    pub approvers: Vec<Selector>,
    pub required: u32,
    pub allow_self_approval: bool,
    /// The longest grant this policy allows for this ask (its break-glass limit when the ask is
    /// for break-glass and it has a break-glass section).
    pub max_duration: Duration,
    pub pending_timeout: Duration,
    /// Its auto-approve rules by name, each with why it did not apply (`None`: it applies).
    /// Empty when the policy did not get as far as its rules.
    pub rules: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// The policy does not speak about this principal, resource or role; the text says which.
    NotMatched(String),
    /// It matched, but the ask breaks its limits; the text is the line of the refusal.
    DroppedOut(String),
    AutoApproved {
        rule: String,
    },
    BreakGlass,
    NeedsApproval,
}

impl Judgement {
    /// Whether the policy matched the ask's principal, resource and role.
    pub fn matched(&self) -> bool {
        !matches!(self, Judgement::NotMatched(_))
    }
}

/// Judges `ask` against every policy and combines the judgements (see [`crate::policy`]).
pub fn explain(policies: &[Policy], ask: &AccessAsk<'_>, now: Timestamp) -> Explanation {
    let starts = ask.start_at.unwrap_or(now).max(now);
    let mut sorted: Vec<&Policy> = policies.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let considered: Vec<Considered> = sorted.iter().map(|p| judge(p, ask, starts)).collect();
    let decision = decide(&considered, ask);
    Explanation {
        starts,
        considered,
        decision,
    }
}

/// One policy's judgement of the ask, on its own.
fn judge(p: &Policy, ask: &AccessAsk<'_>, starts: Timestamp) -> Considered {
    let mut c = Considered {
        policy: p.name.clone(),
        judgement: Judgement::NeedsApproval,
        approvers: p.approval.approvers.clone(),
        required: p.approval.required,
        allow_self_approval: p.approval.allow_self_approval,
        max_duration: p.max_duration,
        pending_timeout: p.pending_timeout,
        rules: vec![],
    };
    if let Some(why) = not_matched(p, ask) {
        c.judgement = Judgement::NotMatched(why);
        return c;
    }
    if ask.break_glass {
        c.judgement = match &p.break_glass {
            None => Judgement::DroppedOut(format!("policy {}: has no break_glass section", p.name)),
            Some(bg) if !Selector::any_matches(&bg.principals, ask.principal) => {
                Judgement::DroppedOut(format!(
                    "policy {}: break-glass is for {}",
                    p.name,
                    principal::describe(&bg.principals)
                ))
            }
            Some(bg) => {
                c.max_duration = bg.max_duration;
                match p.limits_broken(ask, bg.max_duration) {
                    Some(why) => {
                        Judgement::DroppedOut(format!("policy {} (break-glass): {why}", p.name))
                    }
                    None => Judgement::BreakGlass,
                }
            }
        };
        return c;
    }
    if let Some(why) = p.limits_broken(ask, p.max_duration) {
        c.judgement = Judgement::DroppedOut(format!("policy {}: {why}", p.name));
        return c;
    }
    if p.approval.required == 0 {
        c.judgement = Judgement::AutoApproved {
            rule: "no approval required".to_owned(),
        };
        return c;
    }
    let mut rules: Vec<&AutoApprove> = p.auto_approve.iter().collect();
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    c.rules = rules
        .iter()
        .map(|r| (r.name.clone(), rule_refuses(r, ask, starts)))
        .collect();
    if let Some((rule, _)) = c.rules.iter().find(|(_, why)| why.is_none()) {
        c.judgement = Judgement::AutoApproved { rule: rule.clone() };
    }
    c
}

/// Why the policy does not speak about this ask at all, if it does not.
fn not_matched(p: &Policy, ask: &AccessAsk<'_>) -> Option<String> {
    if !Selector::any_matches(&p.principals, ask.principal) {
        return Some(format!(
            "not for {} (it is for {})",
            ask.principal.name,
            principal::describe(&p.principals)
        ));
    }
    let globs = |g: &[glob::Pattern]| {
        g.iter()
            .map(|g| g.as_str().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !p.resources.iter().any(|r| r.matches(ask.resource)) {
        return Some(format!(
            "resource {} is not among {}",
            ask.resource,
            globs(&p.resources)
        ));
    }
    if !p.roles.iter().any(|r| r.matches(ask.role)) {
        return Some(format!(
            "role {} is not among {}",
            ask.role,
            globs(&p.roles)
        ));
    }
    None
}

/// Why an auto-approve rule does not approve this ask, if it does not.
fn rule_refuses(r: &AutoApprove, ask: &AccessAsk<'_>, starts: Timestamp) -> Option<String> {
    if !Selector::any_matches(&r.principals, ask.principal) {
        return Some(format!("it is for {}", principal::describe(&r.principals)));
    }
    if ask.duration > r.max_duration {
        return Some(format!(
            "{} is over its max_duration {}",
            duration::format(ask.duration),
            duration::format(r.max_duration)
        ));
    }
    match &r.schedule {
        Some(s) if !s.contains(starts) => Some(format!("{starts} is outside its schedule {s}")),
        _ => None,
    }
}

/// Combines the judgements: break-glass, else auto-approval, else approval under every policy
/// still standing, else a refusal naming why each matching policy dropped out.
fn decide(considered: &[Considered], ask: &AccessAsk<'_>) -> Result<Decision, String> {
    let matched: Vec<&Considered> = considered
        .iter()
        .filter(|c| c.judgement.matched())
        .collect();
    if matched.is_empty() {
        return Err(format!(
            "no policy lets {} request role {} on {} (default deny)",
            ask.principal.name, ask.role, ask.resource
        ));
    }
    if let Some(c) = matched
        .iter()
        .find(|c| c.judgement == Judgement::BreakGlass)
    {
        return Ok(Decision::BreakGlass {
            policy: c.policy.clone(),
        });
    }
    for c in &matched {
        if let Judgement::AutoApproved { rule } = &c.judgement {
            return Ok(Decision::AutoApproved {
                policy: c.policy.clone(),
                rule: rule.clone(),
            });
        }
    }
    let waiting: Vec<&&Considered> = matched
        .iter()
        .filter(|c| c.judgement == Judgement::NeedsApproval)
        .collect();
    if let Some(pending_timeout) = waiting.iter().map(|c| c.pending_timeout).min() {
        return Ok(Decision::NeedsApproval {
            policies: waiting.iter().map(|c| c.policy.clone()).collect(),
            pending_timeout,
        });
    }
    let why_not: Vec<&str> = matched
        .iter()
        .filter_map(|c| match &c.judgement {
            Judgement::DroppedOut(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    Err(format!(
        "{} may not have role {} on {}: {}",
        ask.principal.name,
        ask.role,
        ask.resource,
        why_not.join("; ")
    ))
}

impl Explanation {
    /// The decision as [`crate::policy::evaluate`] returns it.
    pub fn into_decision(self) -> Result<Decision, CoreError> {
        self.decision.map_err(CoreError::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;
    use crate::policy::tests::{ask, policy};

    #[test]
    fn the_trace_says_why_each_policy_matched_or_not() {
        let alice = Principal::user("alice", &["engineering"]);
        let mut other = policy("billing");
        other.resources = vec![glob::Pattern::new("billing-*").unwrap()];
        let mut short = policy("short");
        short.max_duration = Duration::from_secs(600);
        let mut auto = policy("with-rule");
        auto.auto_approve.push(AutoApprove {
            name: "quick".into(),
            principals: vec!["group:oncall".parse().unwrap()],
            max_duration: Duration::from_secs(600),
            schedule: None,
        });
        let now: Timestamp = "2026-01-14T10:00:00Z".parse().unwrap();
        let e = explain(&[short, auto, other], &ask(&alice, 1800), now);
        let by = |n: &str| e.considered.iter().find(|c| c.policy == n).unwrap();
        assert_eq!(
            by("billing").judgement,
            Judgement::NotMatched("resource orders-db is not among billing-*".into())
        );
        assert_eq!(
            by("short").judgement,
            Judgement::DroppedOut("policy short: duration 30m exceeds max_duration 10m".into())
        );
        assert_eq!(by("with-rule").judgement, Judgement::NeedsApproval);
        assert_eq!(
            by("with-rule").rules,
            vec![(
                "quick".to_owned(),
                Some("it is for group:oncall".to_owned())
            )]
        );
        assert_eq!(
            e.decision,
            Ok(Decision::NeedsApproval {
                policies: vec!["with-rule".into()],
                pending_timeout: Duration::from_secs(3600)
            })
        );
        let names: Vec<&str> = e.considered.iter().map(|c| c.policy.as_str()).collect();
        assert_eq!(names, ["billing", "short", "with-rule"], "by name");
    }
}
