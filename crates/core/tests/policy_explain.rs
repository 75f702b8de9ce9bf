//! `explain` and `evaluate` are one evaluator: for random policies and asks, the decision
//! `evaluate` returns is the one `explain` traces, and the trace agrees with itself (the policies
//! it says decided are the ones named by the decision), whatever the order of the policies.

use std::time::Duration;

use glob::Pattern;
use jitgate_core::policy::{
    AccessAsk, ApprovalRule, AutoApprove, BreakGlass, Decision, Policy, TicketPattern, evaluate,
};
use jitgate_core::policy_explain::{Judgement, explain};
use jitgate_core::policy_reach::{matrix, reach};
use jitgate_core::schedule::Schedule;
use jitgate_core::{Principal, Selector, Timestamp};
use proptest::prelude::*;

const NAMES: [&str; 3] = ["alice", "bob", "carol"];
const GROUPS: [&str; 3] = ["eng", "dba", "sre"];
const RESOURCES: [&str; 3] = ["orders-db", "orders-replica", "billing-db"];
const ROLES: [&str; 3] = ["read", "write", "admin"];

fn selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        (0..3usize).prop_map(|i| Selector::User(NAMES[i].into())),
        (0..3usize).prop_map(|i| Selector::Group(GROUPS[i].into())),
        Just(Selector::Anyone),
    ]
}

fn minutes() -> impl Strategy<Value = Duration> {
    (1u64..=8).prop_map(|n| Duration::from_secs(n * 15 * 60))
}

fn auto_rule() -> impl Strategy<Value = AutoApprove> {
    (
        "[a-c]",
        prop::collection::vec(selector(), 1..3),
        minutes(),
        any::<bool>(),
    )
        .prop_map(|(name, principals, max_duration, scheduled)| AutoApprove {
            name,
            principals,
            max_duration,
            schedule: scheduled.then(|| Schedule::parse("Mon-Fri 08:00-18:00 UTC").unwrap()),
        })
}

fn policy(name: String) -> impl Strategy<Value = Policy> {
    (
        prop::collection::vec(selector(), 1..3),
        prop::sample::subsequence(vec!["orders-*", "billing-db", "*"], 1..3),
        prop::sample::subsequence(vec!["read", "write", "*"], 1..3),
        minutes(),
        (any::<bool>(), any::<bool>(), 0u32..3),
        prop::collection::vec(selector(), 0..3),
        prop::collection::vec(auto_rule(), 0..3),
        prop::option::of((prop::collection::vec(selector(), 1..3), minutes())),
        (1u64..4).prop_map(|h| Duration::from_secs(h * 3600)),
    )
        .prop_map(
            move |(
                principals,
                res,
                roles,
                max,
                (reason, ticket, required),
                approvers,
                auto,
                bg,
                pt,
            )| {
                Policy {
                    name: name.clone(),
                    principals,
                    resources: res.iter().map(|g| Pattern::new(g).unwrap()).collect(),
                    roles: roles.iter().map(|g| Pattern::new(g).unwrap()).collect(),
                    max_duration: max,
                    max_extensions: None,
                    allow_overlapping: false,
                    require_reason: reason,
                    ticket_pattern: ticket.then(|| TicketPattern::new("INC-[0-9]+").unwrap()),
                    pending_timeout: pt,
                    approval: ApprovalRule {
                        approvers,
                        required,
                        allow_self_approval: false,
                    },
                    auto_approve: auto,
                    break_glass: bg.map(|(principals, max_duration)| BreakGlass {
                        principals,
                        max_duration,
                    }),
                }
            },
        )
}

fn policies() -> impl Strategy<Value = Vec<Policy>> {
    (0usize..5).prop_flat_map(|n| (0..n).map(|i| policy(format!("p{i}"))).collect::<Vec<_>>())
}

#[derive(Debug, Clone)]
struct Ask {
    principal: Principal,
    resource: &'static str,
    role: &'static str,
    duration: Duration,
    reason: Option<&'static str>,
    ticket: Option<&'static str>,
    break_glass: bool,
    hour: i64,
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        (0..3usize, prop::sample::subsequence(GROUPS.to_vec(), 0..3)),
        (0..3usize, 0..3usize),
        minutes(),
        prop::option::of(prop::sample::select(vec!["fix INC-1", " "])),
        prop::option::of(prop::sample::select(vec!["INC-42", "BUG-1"])),
        any::<bool>(),
        0i64..(24 * 7),
    )
        .prop_map(
            |((n, groups), (r, role), duration, reason, ticket, break_glass, hour)| Ask {
                principal: Principal::user(NAMES[n], &groups),
                resource: RESOURCES[r],
                role: ROLES[role],
                duration,
                reason,
                ticket,
                break_glass,
                hour,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn explain_and_evaluate_decide_alike(ps in policies(), a in ask(), reversed in any::<bool>()) {
        // Monday 2026-01-12 00:00 UTC, plus up to a week, so schedules are both in and out.
        let now: Timestamp = "2026-01-12T00:00:00Z".parse().unwrap();
        let now = now + jiff::SignedDuration::from_hours(a.hour);
        let ask = AccessAsk {
            principal: &a.principal,
            resource: a.resource,
            role: a.role,
            duration: a.duration,
            reason: a.reason,
            ticket: a.ticket,
            start_at: None,
            break_glass: a.break_glass,
            extension: None,
        };
        let mut order = ps.clone();
        if reversed {
            order.reverse();
        }
        let explained = explain(&order, &ask, now);
        let evaluated = evaluate(&ps, &ask, now);
        prop_assert_eq!(explained.decision.clone().map_err(jitgate_core::CoreError::Refused), evaluated.clone());

        // Every policy is considered once, and matched exactly when it covers the ask.
        prop_assert_eq!(explained.considered.len(), ps.len());
        for c in &explained.considered {
            let p = ps.iter().find(|p| p.name == c.policy).unwrap();
            prop_assert_eq!(c.judgement.matched(), p.covers(&a.principal, a.resource, a.role));
        }
        // The decision names the policies the trace says decided it.
        let judged = |name: &str| &explained.considered.iter().find(|c| c.policy == name).unwrap().judgement;
        match &evaluated {
            Ok(Decision::BreakGlass { policy }) => {
                prop_assert!(a.break_glass);
                prop_assert_eq!(judged(policy), &Judgement::BreakGlass);
            }
            Ok(Decision::AutoApproved { policy, rule }) => {
                prop_assert!(!a.break_glass);
                prop_assert_eq!(judged(policy), &Judgement::AutoApproved { rule: rule.clone() });
            }
            Ok(Decision::NeedsApproval { policies, .. }) => {
                let waiting: Vec<&str> = explained.considered.iter()
                    .filter(|c| c.judgement == Judgement::NeedsApproval)
                    .map(|c| c.policy.as_str()).collect();
                prop_assert_eq!(policies.iter().map(String::as_str).collect::<Vec<_>>(), waiting);
                let auto = explained.considered.iter().any(|c| matches!(c.judgement, Judgement::AutoApproved { .. }));
                prop_assert!(!auto);
            }
            Err(e) => {
                let decided = explained.considered.iter().any(|c| matches!(
                    c.judgement,
                    Judgement::AutoApproved { .. } | Judgement::BreakGlass | Judgement::NeedsApproval
                ));
                prop_assert!(!decided, "refused ({}) although a policy would have decided", e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// `who-can`'s fast matrix says, cell by cell, what `reach` says.
    #[test]
    fn the_matrix_agrees_with_reach_cell_by_cell(ps in policies(), asks in prop::collection::vec(ask(), 1..4)) {
        let subjects: Vec<Principal> = asks.iter().map(|a| a.principal.clone()).collect();
        let targets: Vec<(String, String)> = RESOURCES
            .iter()
            .flat_map(|r| ROLES.iter().map(move |x| ((*r).to_owned(), (*x).to_owned())))
            .collect();
        let m = matrix(&ps, &subjects, &targets);
        for (s, row) in subjects.iter().zip(&m) {
            for ((r, x), cell) in targets.iter().zip(row) {
                prop_assert_eq!(cell, &reach(&ps, s, r, x));
            }
        }
    }
}
