//! Each `policy check` finding: one set of policies that triggers it, one that does not.

use std::time::Duration;

use glob::Pattern;
use jitgate_core::policy::{ApprovalRule, AutoApprove, BreakGlass, Policy};
use jitgate_core::policy_check::{Finding, Inventory, Severity, check};
use jitgate_core::schedule::Schedule;
use jitgate_core::{Principal, Selector};

fn sel(s: &str) -> Selector {
    s.parse().unwrap()
}

const H: u64 = 3600;

/// Engineers read orders with one dba's approval, up to 4h.
fn base() -> Policy {
    Policy {
        name: "read".into(),
        principals: vec![sel("group:eng")],
        resources: vec![Pattern::new("orders-*").unwrap()],
        roles: vec![Pattern::new("read").unwrap()],
        max_duration: Duration::from_secs(4 * H),
        max_extensions: None,
        allow_overlapping: false,
        require_reason: false,
        ticket_pattern: None,
        pending_timeout: Duration::from_secs(H),
        approval: ApprovalRule {
            approvers: vec![sel("group:dba")],
            required: 1,
            allow_self_approval: false,
        },
        auto_approve: vec![],
        break_glass: None,
    }
}

fn rule(principals: &str, hours: u64) -> AutoApprove {
    AutoApprove {
        name: "quick".into(),
        principals: vec![sel(principals)],
        max_duration: Duration::from_secs(hours * H),
        schedule: None,
    }
}

fn findings(policies: &[Policy]) -> Vec<Finding> {
    let principals = vec![
        Principal::user("alice", &["eng"]),
        Principal::user("bob", &["eng", "oncall"]),
        Principal::user("dora", &["dba"]),
        Principal::user("root", &["security"]),
    ];
    let resources = vec![(
        "orders-db".to_owned(),
        vec!["read".to_owned(), "admin".to_owned()],
    )];
    let admins = vec![sel("group:security")];
    let inv = Inventory {
        principals: &principals,
        resources: &resources,
        admins: &admins,
        ceiling: Duration::from_secs(4 * H),
    };
    check(policies, &inv)
}

fn codes(policies: &[Policy]) -> Vec<&'static str> {
    findings(policies).into_iter().map(|f| f.code).collect()
}

#[test]
fn a_sound_policy_has_no_findings() {
    let mut p = base();
    p.auto_approve.push(rule("group:oncall", 1));
    p.break_glass = Some(BreakGlass {
        principals: vec![sel("group:oncall")],
        max_duration: Duration::from_secs(H),
    });
    assert_eq!(findings(&[p]), vec![]);
}

#[test]
fn auto_approval_of_everyone_for_the_whole_duration_bypasses_approval() {
    let mut p = base();
    p.auto_approve.push(rule("group:eng", 4));
    let f = findings(&[p.clone()]);
    assert_eq!(f[0].code, "auto-approve-bypasses-approval");
    assert_eq!(f[0].severity, Severity::Error);
    assert_eq!(f[0].key, "policies[0].auto_approve[0]");
    // Inside a schedule, or shorter than the policy, approval still applies.
    p.auto_approve[0].schedule = Some(Schedule::parse("Mon-Fri 08:00-18:00 UTC").unwrap());
    assert!(!codes(&[p.clone()]).contains(&"auto-approve-bypasses-approval"));
    p.auto_approve[0] = rule("group:eng", 1);
    assert!(codes(&[p]).is_empty());
}

#[test]
fn an_auto_approve_rule_longer_than_its_policy_is_flagged() {
    let mut p = base();
    p.auto_approve.push(rule("group:oncall", 8));
    assert!(codes(&[p.clone()]).contains(&"auto-approve-wider-than-policy"));
    p.auto_approve[0] = rule("group:oncall", 2);
    assert!(!codes(&[p]).contains(&"auto-approve-wider-than-policy"));
}

#[test]
fn a_policy_matching_no_resource_role_principal_or_rule_target_never_matches() {
    let mut p = base();
    p.resources = vec![Pattern::new("ordres-*").unwrap()];
    let f = findings(&[p]);
    assert!(
        f.iter()
            .any(|f| f.code == "never-matches" && f.key == "policies[0].resources"),
        "{f:?}"
    );
    let mut p = base();
    p.principals = vec![sel("group:engineering")];
    let f = findings(&[p]);
    assert!(
        f.iter()
            .any(|f| f.code == "never-matches" && f.key == "policies[0].principals"),
        "{f:?}"
    );
    let mut p = base();
    p.auto_approve.push(rule("group:sales", 1));
    let f = findings(&[p]);
    assert!(
        f.iter()
            .any(|f| f.code == "never-matches" && f.key == "policies[0].auto_approve[0]"),
        "{f:?}"
    );
    assert!(!codes(&[base()]).contains(&"never-matches"));
}

#[test]
fn approvals_nobody_can_give_are_errors() {
    let mut p = base();
    p.approval.approvers = vec![sel("group:dbas")];
    let f = findings(&[p]);
    assert!(
        f.iter()
            .any(|f| f.code == "approvers-unreachable" && f.severity == Severity::Error),
        "{f:?}"
    );
    // Approval required from the requester alone.
    let mut p = base();
    p.principals = vec![sel("group:eng"), sel("group:dba")];
    let f = findings(&[p]);
    let stuck = f
        .iter()
        .find(|f| f.code == "approvers-unreachable")
        .expect("dora is stuck");
    assert!(
        stuck
            .message
            .contains("requests by dora can never be approved"),
        "{stuck:?}"
    );
    assert!(!codes(&[base()]).contains(&"approvers-unreachable"));
}

#[test]
fn self_approval_is_a_warning() {
    let mut p = base();
    p.principals = vec![sel("group:eng"), sel("group:dba")];
    p.approval.allow_self_approval = true;
    let f = findings(&[p]);
    let s = f
        .iter()
        .find(|f| f.code == "self-approval")
        .expect("flagged");
    assert_eq!(s.severity, Severity::Warning);
    assert!(s.message.contains("dora can"), "{s:?}");
    assert!(!codes(&[base()]).contains(&"self-approval"));
}

#[test]
fn break_glass_nobody_else_can_review_is_an_error() {
    // Only dora may break glass, nobody is admin... and she is the only approver.
    let mut p = base();
    p.principals = vec![sel("user:dora")];
    p.approval.approvers = vec![sel("user:dora")];
    p.approval.allow_self_approval = true;
    p.break_glass = Some(BreakGlass {
        principals: vec![sel("user:dora")],
        max_duration: Duration::from_secs(H),
    });
    let principals = vec![Principal::user("dora", &["dba"])];
    let resources = vec![("orders-db".to_owned(), vec!["read".to_owned()])];
    let inv = |admins: &[Selector]| {
        check(
            std::slice::from_ref(&p),
            &Inventory {
                principals: &principals,
                resources: &resources,
                admins,
                ceiling: Duration::from_secs(4 * H),
            },
        )
    };
    assert!(
        inv(&[]).iter().any(|f| f.code == "break-glass-unreviewed"),
        "{:?}",
        inv(&[])
    );
    let principals2 = [
        principals.clone(),
        vec![Principal::user("root", &["security"])],
    ]
    .concat();
    let f = check(
        std::slice::from_ref(&p),
        &Inventory {
            principals: &principals2,
            resources: &resources,
            admins: &[sel("group:security")],
            ceiling: Duration::from_secs(4 * H),
        },
    );
    assert!(
        !f.iter().any(|f| f.code == "break-glass-unreviewed"),
        "{f:?}"
    );
}

#[test]
fn unapproved_grants_above_the_ceiling_are_flagged() {
    let mut p = base();
    p.approval.required = 0;
    p.max_duration = Duration::from_secs(8 * H);
    assert!(codes(&[p.clone()]).contains(&"unapproved-over-ceiling"));
    p.max_duration = Duration::from_secs(2 * H);
    assert!(!codes(&[p]).contains(&"unapproved-over-ceiling"));
    let mut p = base();
    p.break_glass = Some(BreakGlass {
        principals: vec![sel("group:oncall")],
        max_duration: Duration::from_secs(12 * H),
    });
    assert!(codes(&[p]).contains(&"unapproved-over-ceiling"));
}

#[test]
fn overlapping_policies_with_different_outcomes_are_flagged() {
    let strict = base();
    let mut lax = base();
    lax.name = "lax".into();
    lax.principals = vec![sel("user:alice")];
    lax.approval.required = 0;
    lax.max_duration = Duration::from_secs(H);
    let f = findings(&[strict.clone(), lax.clone()]);
    let o = f
        .iter()
        .find(|f| f.code == "overlapping-policies")
        .expect("flagged");
    assert!(o.message.contains("read and lax both cover alice"), "{o:?}");
    // The same limits, or disjoint roles, are fine.
    let mut same = base();
    same.name = "same".into();
    assert!(!codes(&[strict.clone(), same]).contains(&"overlapping-policies"));
    lax.roles = vec![Pattern::new("admin").unwrap()];
    assert!(!codes(&[strict, lax]).contains(&"overlapping-policies"));
}
