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
    let covering = policies
        .iter()
        .filter(|p| p.covers(principal, resource, role));
    reach_covering(covering, principal)
}

/// What each of `subjects` can get of each of `targets` (resource, role): one row a subject.
/// The same as [`reach`] for every cell, but each policy's principals are matched once per
/// subject and its globs once per target, so a cell is the AND of two bitsets: a large matrix
/// (1,000 principals, 600 roles, 100 policies) takes milliseconds instead of seconds.
pub fn matrix(
    policies: &[Policy],
    subjects: &[Principal],
    targets: &[(String, String)],
) -> Vec<Vec<Reach>> {
    let words = policies.len().div_ceil(64);
    let mask = |f: &dyn Fn(&Policy) -> bool| {
        let mut m = vec![0u64; words];
        for (i, _) in policies.iter().enumerate().filter(|(_, p)| f(p)) {
            m[i / 64] |= 1 << (i % 64);
        }
        m
    };
    let by_target: Vec<Vec<u64>> = targets
        .iter()
        .map(|(resource, role)| mask(&|p| p.covers_target(resource, role)))
        .collect();
    subjects
        .iter()
        .map(|s| {
            let named = mask(&|p| p.names(s));
            by_target
                .iter()
                .map(|t| {
                    let covering = (0..words).flat_map(|w| {
                        let mut bits = named[w] & t[w];
                        std::iter::from_fn(move || {
                            let i = bits.trailing_zeros() as usize;
                            bits &= bits.wrapping_sub(1);
                            (i < 64).then_some(w * 64 + i)
                        })
                    });
                    reach_covering(covering.map(|i| &policies[i]), s)
                })
                .collect()
        })
        .collect()
}

/// What `principal` can get under `covering`, the policies that cover them for one role.
fn reach_covering<'a>(covering: impl Iterator<Item = &'a Policy>, principal: &Principal) -> Reach {
    let mut covering: Vec<&Policy> = covering.collect();
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

    #[test]
    fn the_matrix_agrees_with_reach_past_64_policies() {
        let policies: Vec<Policy> = (0..130)
            .map(|i| {
                let mut p = policy(&format!("p{i:03}"));
                p.resources = vec![glob::Pattern::new(&format!("db{}", i % 7)).unwrap()];
                p.max_duration = Duration::from_secs(60 * (i as u64 + 1));
                p.approval.required = (i % 3) as u32;
                p
            })
            .collect();
        let subjects = vec![
            Principal::user("alice", &["engineering"]),
            Principal::user("sam", &["sales"]),
        ];
        let targets: Vec<(String, String)> = (0..8)
            .map(|i| (format!("db{i}"), "read".to_owned()))
            .collect();
        let m = matrix(&policies, &subjects, &targets);
        for (s, row) in subjects.iter().zip(&m) {
            for ((r, x), cell) in targets.iter().zip(row) {
                assert_eq!(cell, &reach(&policies, s, r, x), "{} {r}", s.name);
            }
        }
        assert!(m[0][6].max_duration().is_some() && m[1][6].is_none());
    }
}
