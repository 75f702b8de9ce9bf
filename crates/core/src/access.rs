//! What a principal may ask for: for one resource and role, the policies that would judge such a
//! request and what each of them allows. It reads the same rules [`evaluate`](crate::policy::evaluate)
//! applies ([`Policy::covers`], the selectors of the approval, auto-approve and break-glass sections),
//! so the list and the decisions cannot disagree.

use serde::Serialize;

use crate::duration;
use crate::policy::Policy;
use crate::principal::{Principal, Selector};

/// One policy under which `principal` may ask for a role on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    pub policy: String,
    /// The longest grant this policy allows (humantime).
    pub max_duration: String,
    pub require_reason: bool,
    /// A ticket must match this whole, when set.
    pub ticket_pattern: Option<String>,
    /// Distinct approvals needed; 0: approved at once.
    pub approvals_required: u32,
    /// Who may approve (selectors: `group:dba`, `user:dora`).
    pub approvers: Vec<String>,
    pub allow_self_approval: bool,
    /// How long a request waits for approval before it times out (humantime).
    pub pending_timeout: String,
    /// The auto-approve rules that name this principal: approved at once within their limits.
    pub auto_approve: Vec<AutoOffer>,
    /// With `--break-glass`, approved at once up to this long (humantime), if the policy's
    /// break-glass section names this principal.
    pub break_glass_max: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutoOffer {
    pub rule: String,
    pub max_duration: String,
    /// `DAYS START-END ZONE`, when the rule applies only then.
    pub schedule: Option<String>,
}

/// The policies under which `principal` may ask for `role` on `resource`, by policy name (the
/// order the evaluator judges them in). Empty: such a request is refused (default deny).
pub fn offers(
    policies: &[Policy],
    principal: &Principal,
    resource: &str,
    role: &str,
) -> Vec<Offer> {
    let mut covering: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.covers(principal, resource, role))
        .collect();
    covering.sort_by(|a, b| a.name.cmp(&b.name));
    covering
        .into_iter()
        .map(|p| Offer {
            policy: p.name.clone(),
            max_duration: duration::format(p.max_duration),
            require_reason: p.require_reason,
            ticket_pattern: p.ticket_pattern.as_ref().map(|t| t.text.clone()),
            approvals_required: p.approval.required,
            approvers: p
                .approval
                .approvers
                .iter()
                .map(ToString::to_string)
                .collect(),
            allow_self_approval: p.approval.allow_self_approval,
            pending_timeout: duration::format(p.pending_timeout),
            auto_approve: p
                .auto_approve
                .iter()
                .filter(|r| Selector::any_matches(&r.principals, principal))
                .map(|r| AutoOffer {
                    rule: r.name.clone(),
                    max_duration: duration::format(r.max_duration),
                    schedule: r.schedule.as_ref().map(ToString::to_string),
                })
                .collect(),
            break_glass_max: p
                .break_glass
                .as_ref()
                .filter(|bg| Selector::any_matches(&bg.principals, principal))
                .map(|bg| duration::format(bg.max_duration)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::tests::{ask, policy};
    use crate::policy::{AutoApprove, BreakGlass, Decision, evaluate};

    fn now() -> jiff::Timestamp {
        "2026-01-14T10:00:00Z".parse().unwrap()
    }

    fn policies() -> Vec<Policy> {
        let mut read = policy("read");
        read.auto_approve.push(AutoApprove {
            name: "oncall".into(),
            principals: vec!["group:oncall".parse().unwrap()],
            max_duration: Duration::from_secs(1800),
            schedule: None,
        });
        read.break_glass = Some(BreakGlass {
            principals: vec!["group:sre".parse().unwrap()],
            max_duration: Duration::from_secs(3600),
        });
        vec![read]
    }

    #[test]
    fn nothing_is_offered_where_the_evaluator_denies_by_default() {
        let sales = Principal::user("sam", &["sales"]);
        assert!(offers(&policies(), &sales, "orders-db", "read").is_empty());
        assert!(evaluate(&policies(), &ask(&sales, 60), now()).is_err());
        let eng = Principal::user("alice", &["engineering"]);
        assert!(offers(&policies(), &eng, "orders-db", "admin").is_empty());
        assert!(offers(&policies(), &eng, "billing-db", "read").is_empty());
    }

    #[test]
    fn an_offer_states_the_limits_the_evaluator_applies() {
        let alice = Principal::user("alice", &["engineering"]);
        let o = &offers(&policies(), &alice, "orders-db", "read")[0];
        assert_eq!(
            (
                o.policy.as_str(),
                o.max_duration.as_str(),
                o.approvals_required
            ),
            ("read", "4h", 1)
        );
        assert_eq!(o.approvers, ["group:dba"]);
        assert!(o.require_reason && o.auto_approve.is_empty() && o.break_glass_max.is_none());
        // Up to the cap it waits for approval, beyond it it is refused.
        assert!(matches!(
            evaluate(&policies(), &ask(&alice, 4 * 3600), now()),
            Ok(Decision::NeedsApproval { .. })
        ));
        assert!(evaluate(&policies(), &ask(&alice, 4 * 3600 + 1), now()).is_err());
    }

    #[test]
    fn auto_approval_and_break_glass_are_offered_to_those_they_name() {
        let bob = Principal::user("bob", &["engineering", "oncall", "sre"]);
        let o = &offers(&policies(), &bob, "orders-db", "read")[0];
        assert_eq!(
            o.auto_approve,
            [AutoOffer {
                rule: "oncall".into(),
                max_duration: "30m".into(),
                schedule: None
            }]
        );
        assert_eq!(o.break_glass_max.as_deref(), Some("1h"));
        assert!(matches!(
            evaluate(&policies(), &ask(&bob, 1800), now()),
            Ok(Decision::AutoApproved { .. })
        ));
    }
}
