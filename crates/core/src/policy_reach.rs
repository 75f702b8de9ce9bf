//! How far a principal's access to one role on one resource reaches, whatever they ask: approved
//! at once up to how long, with approval from whom, by break-glass. `policy who-can` prints it
//! and `policy diff` compares it between two configs. It reads the policies the way
//! [`crate::policy_explain::explain`] does: a policy counts when it covers the principal,
//! resource and role; an auto-approve rule or break-glass section when its selectors name them.

use std::time::Duration;

use crate::policy::Policy;
use crate::principal::{self, Principal, Selector};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// The longest grant approved at once without break-glass, best first by (no schedule,
    /// length).
    pub auto: Option<AutoReach>,
    /// The policies under which a request waits for approval, by name.
    pub approval: Vec<ApprovalReach>,
    /// The longest break-glass grant, and the policy allowing it.
    pub break_glass: Option<(String, Duration)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoReach {
    pub policy: String,
    /// The auto-approve rule, or `no approval required`.
    pub rule: String,
    pub max_duration: Duration,
    /// Whether it approves only inside a schedule.
    pub scheduled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalReach {
    pub policy: String,
    pub required: u32,
    /// `group:dba, user:dora`
    pub approvers: String,
    pub max_duration: Duration,
}

impl Reach {
    pub fn is_none(&self) -> bool {
        self.auto.is_none() && self.approval.is_empty() && self.break_glass.is_none()
    }

    /// The longest grant obtainable without break-glass.
    pub fn max_duration(&self) -> Option<Duration> {
        let auto = self.auto.as_ref().map(|a| a.max_duration);
        let approval = self.approval.iter().map(|a| a.max_duration).max();
        auto.max(approval)
    }

    /// The fewest approvals any approval path needs.
    pub fn fewest_approvals(&self) -> Option<u32> {
        self.approval.iter().map(|a| a.required).min()
    }
}

/// What `principal` can get of `role` on `resource` under `policies`.
pub fn reach(policies: &[Policy], principal: &Principal, resource: &str, role: &str) -> Reach {
    let mut covering: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.covers(principal, resource, role))
        .collect();
    covering.sort_by(|a, b| a.name.cmp(&b.name));
    let mut r = Reach::default();
    for p in covering {
        let mut autos: Vec<AutoReach> = Vec::new();
        if p.approval.required == 0 {
            autos.push(AutoReach {
                policy: p.name.clone(),
                rule: "no approval required".into(),
                max_duration: p.max_duration,
                scheduled: false,
            });
        } else {
            r.approval.push(ApprovalReach {
                policy: p.name.clone(),
                required: p.approval.required,
                approvers: principal::describe(&p.approval.approvers),
                max_duration: p.max_duration,
            });
            autos.extend(
                p.auto_approve
                    .iter()
                    .filter(|a| Selector::any_matches(&a.principals, principal))
                    .map(|a| AutoReach {
                        policy: p.name.clone(),
                        rule: a.name.clone(),
                        // The policy's own limit bounds what its rule approves.
                        max_duration: a.max_duration.min(p.max_duration),
                        scheduled: a.schedule.is_some(),
                    }),
            );
        }
        for a in autos {
            let better = r.auto.as_ref().is_none_or(|best| {
                (!a.scheduled, a.max_duration) > (!best.scheduled, best.max_duration)
            });
            if better {
                r.auto = Some(a);
            }
        }
        if let Some(bg) = &p.break_glass
            && Selector::any_matches(&bg.principals, principal)
            && r.break_glass
                .as_ref()
                .is_none_or(|(_, d)| bg.max_duration > *d)
        {
            r.break_glass = Some((p.name.clone(), bg.max_duration));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AutoApprove;
    use crate::policy::tests::policy;

    #[test]
    fn reach_combines_auto_approval_and_break_glass() {
        let bob = Principal::user("bob", &["engineering", "oncall"]);
        let alice = Principal::user("alice", &["engineering"]);
        let mut p = policy("p");
        p.auto_approve.push(AutoApprove {
            name: "oncall".into(),
            principals: vec!["group:oncall".parse().unwrap()],
            max_duration: Duration::from_secs(10 * 3600),
            schedule: None,
        });
        let r = reach(std::slice::from_ref(&p), &bob, "orders-db", "read");
        let auto = r.auto.clone().unwrap();
        assert_eq!(auto.rule, "oncall");
        assert_eq!(auto.max_duration, Duration::from_secs(4 * 3600), "capped");
        assert_eq!(r.fewest_approvals(), Some(1));
        let r = reach(std::slice::from_ref(&p), &alice, "orders-db", "read");
        assert!(r.auto.is_none() && r.approval.len() == 1, "{r:?}");
        assert!(reach(&[p], &alice, "orders-db", "write").is_none());
    }
}
