use std::time::Duration;

use super::*;
use crate::Clock;
use crate::clock::FakeClock;
use crate::policy::tests::{ask, policy};
use crate::policy::{AutoApprove, BreakGlass, Policy, evaluate};

fn alice() -> Principal {
    Principal::user("alice", &["engineering"])
}
fn dba(name: &str) -> Principal {
    Principal::user(name, &["dba"])
}
fn admin() -> Principal {
    Principal::user("root", &["security"])
}
const MIN: Duration = Duration::from_secs(60);

fn clock() -> FakeClock {
    FakeClock::at("2026-01-14T10:00:00Z")
}

fn pending(p: &Policy, c: &FakeClock, secs: u64) -> AccessRequest {
    let a = alice();
    let asked = ask(&a, secs);
    let d = evaluate(std::slice::from_ref(p), &asked, c.now()).unwrap();
    let (r, events) = AccessRequest::create(&asked, d, c.now()).unwrap();
    assert_eq!(r.state, State::Pending);
    assert_eq!(actions(&events), ["request.created"]);
    r
}

fn actions(events: &[EventDraft]) -> Vec<&str> {
    events.iter().map(|e| e.action.as_str()).collect()
}

fn active(p: &Policy, c: &FakeClock, secs: u64) -> AccessRequest {
    let mut r = pending(p, c, secs);
    r.approve(&dba("dora"), None, std::slice::from_ref(p), c.now())
        .unwrap();
    r.activate(None, c.now(), c.now()).unwrap();
    r
}

#[test]
fn created_event_carries_what_an_auditor_needs() {
    let c = clock();
    let p = policy("p");
    let a = alice();
    let mut asked = ask(&a, 1800);
    asked.ticket = Some("INC-4411");
    let d = evaluate(std::slice::from_ref(&p), &asked, c.now()).unwrap();
    let (r, events) = AccessRequest::create(&asked, d, c.now()).unwrap();
    let e = &events[0];
    assert_eq!(e.actor, "alice");
    assert_eq!(e.request_id.as_deref(), Some(r.id.as_str()));
    assert_eq!(e.details["role"], "read");
    assert_eq!(e.details["duration"], "30m");
    assert_eq!(e.details["reason"], "INC-1 fix");
    assert_eq!(e.details["ticket"], "INC-4411");
    assert_eq!(e.details["policies"], json!(["p"]));
    assert_eq!(
        r.pending_until,
        duration::add(c.now(), Duration::from_secs(3600))
    );
}

#[test]
fn approval_starts_the_clock_and_activation_follows() {
    let c = clock();
    let p = policy("p");
    let mut r = pending(&p, &c, 1800);
    c.advance(10 * MIN);
    let ev = r
        .approve(&dba("dora"), Some("ok"), std::slice::from_ref(&p), c.now())
        .unwrap();
    assert_eq!(actions(&ev), ["request.approved"]);
    let g = r.grant().unwrap();
    assert_eq!(
        g.starts_at,
        c.now(),
        "the window starts at approval, not at the request"
    );
    assert_eq!(
        g.expires_at,
        duration::add(c.now(), Duration::from_secs(1800))
    );
    assert_eq!(r.due(c.now()), Some(Due::Activate));
    let ev = r
        .activate(Some(json!({"role": "jit_alice"})), c.now(), c.now())
        .unwrap();
    assert_eq!(actions(&ev), ["grant.activated"]);
    assert_eq!(r.state, State::Active);
    assert_eq!(ev[0].grant_id.as_deref(), Some(r.grant_id.as_str()));
}

#[test]
fn self_approval_is_refused_unless_the_policy_allows_it() {
    let c = clock();
    let mut p = policy("p");
    p.approval
        .approvers
        .push("group:engineering".parse().unwrap());
    let mut r = pending(&p, &c, 60);
    let e = r
        .approve(&alice(), None, std::slice::from_ref(&p), c.now())
        .unwrap_err();
    assert!(e.to_string().contains("you are the requester"), "{e}");
    assert!(
        r.approvals.is_empty() && r.state == State::Pending,
        "a refusal changes nothing"
    );
    p.approval.allow_self_approval = true;
    r.approve(&alice(), None, std::slice::from_ref(&p), c.now())
        .unwrap();
    assert_eq!(r.state, State::Approved);
}

#[test]
fn approval_by_non_approver_is_refused() {
    let c = clock();
    let p = policy("p");
    let mut r = pending(&p, &c, 60);
    let e = r
        .approve(
            &Principal::user("eve", &["engineering"]),
            None,
            std::slice::from_ref(&p),
            c.now(),
        )
        .unwrap_err();
    assert!(matches!(e, CoreError::Refused(_)));
    assert!(
        e.to_string()
            .contains("needs 1 approval(s) from group:dba (policy p)"),
        "{e}"
    );
}

#[test]
fn k_of_n_counts_distinct_people() {
    let c = clock();
    let mut p = policy("p");
    p.approval.required = 2;
    let mut r = pending(&p, &c, 60);
    let ev = r
        .approve(&dba("dora"), None, std::slice::from_ref(&p), c.now())
        .unwrap();
    assert_eq!(actions(&ev), ["request.approval_recorded"]);
    assert!(
        r.approve(&dba("dora"), None, std::slice::from_ref(&p), c.now())
            .unwrap()
            .is_empty(),
        "same person counts once"
    );
    assert_eq!(r.state, State::Pending);
    let ev = r
        .approve(&dba("dan"), None, std::slice::from_ref(&p), c.now())
        .unwrap();
    assert_eq!(actions(&ev), ["request.approved"]);
    assert_eq!(r.state, State::Approved);
    assert!(
        r.approve(&dba("dan"), None, std::slice::from_ref(&p), c.now())
            .unwrap()
            .is_empty(),
        "idempotent after approval"
    );
    assert!(matches!(
        r.approve(&dba("dirk"), None, std::slice::from_ref(&p), c.now()),
        Err(CoreError::Conflict(m)) if m.contains("already approved by dora, dan")
    ));
}

#[test]
fn approvals_under_a_removed_policy_do_not_count() {
    let c = clock();
    let p = policy("p");
    let mut r = pending(&p, &c, 60);
    let e = r.approve(&dba("dora"), None, &[], c.now()).unwrap_err();
    assert!(e.to_string().contains("nobody can approve"), "{e}");
}

#[test]
fn deny_by_approver_only() {
    let c = clock();
    let p = policy("p");
    let mut r = pending(&p, &c, 60);
    assert!(
        r.deny(&alice(), false, None, std::slice::from_ref(&p), c.now())
            .unwrap_err()
            .to_string()
            .contains("may not deny")
    );
    let ev = r
        .deny(
            &dba("dora"),
            false,
            Some("not during the freeze"),
            std::slice::from_ref(&p),
            c.now(),
        )
        .unwrap();
    assert_eq!(actions(&ev), ["request.denied"]);
    assert_eq!(ev[0].details["reason"], "not during the freeze");
    assert_eq!(r.state, State::Denied);
    assert!(
        r.deny(&dba("dora"), false, None, std::slice::from_ref(&p), c.now())
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        r.approve(&dba("dan"), None, std::slice::from_ref(&p), c.now()),
        Err(CoreError::Conflict(m)) if m.contains("already denied by dora")
    ));
}

/// The same person repeating a decision changes nothing (a client may retry); the same
/// decision by someone else after it was made is a conflict that names who made it.
#[test]
fn repeated_decisions_are_no_ops_for_the_same_person_and_conflicts_for_others() {
    let c = clock();
    let p = policy("p");
    let ps = std::slice::from_ref(&p);
    let conflict = |e: Result<Vec<EventDraft>, CoreError>, who: &str| match e {
        Err(CoreError::Conflict(m)) => assert!(m.contains(who), "{m}"),
        other => panic!("expected a conflict naming {who}, got {other:?}"),
    };
    // deny
    let mut r = pending(&p, &c, 60);
    r.deny(&dba("dora"), false, Some("no"), ps, c.now())
        .unwrap();
    assert!(
        r.deny(&dba("dora"), false, Some("no"), ps, c.now())
            .unwrap()
            .is_empty()
    );
    conflict(
        r.deny(&dba("dan"), false, None, ps, c.now()),
        "denied by dora",
    );
    conflict(r.deny(&admin(), true, None, ps, c.now()), "denied by dora");
    // cancel (only the requester may cancel, so only a repeat is possible)
    let mut r = pending(&p, &c, 60);
    r.cancel(&alice(), c.now()).unwrap();
    assert!(r.cancel(&alice(), c.now()).unwrap().is_empty());
    conflict(
        r.approve(&dba("dora"), None, ps, c.now()),
        "cancelled by alice",
    );
    // release and revoke
    let mut r = active(&p, &c, 600);
    r.revoke(&admin(), true, Some("x"), c.now()).unwrap();
    assert!(
        r.revoke(&admin(), true, Some("x"), c.now())
            .unwrap()
            .is_empty()
    );
    let other_admin = Principal::user("rita", &["security"]);
    conflict(
        r.revoke(&other_admin, true, None, c.now()),
        "revoked by root",
    );
    r.finish_revocation(c.now()).unwrap();
    assert!(r.revoke(&admin(), true, None, c.now()).unwrap().is_empty());
    conflict(
        r.revoke(&other_admin, true, None, c.now()),
        "revoked by root",
    );
    // review
    let mut bg = policy("p");
    bg.break_glass = Some(BreakGlass {
        principals: vec!["group:engineering".parse().unwrap()],
        max_duration: Duration::from_secs(3600),
    });
    let a = alice();
    let mut asked = ask(&a, 600);
    asked.break_glass = true;
    let d = evaluate(std::slice::from_ref(&bg), &asked, c.now()).unwrap();
    let (mut r, _) = AccessRequest::create(&asked, d, c.now()).unwrap();
    let bgs = std::slice::from_ref(&bg);
    r.review(&dba("dora"), false, bgs, Some("ok"), c.now())
        .unwrap();
    assert!(
        r.review(&dba("dora"), false, bgs, None, c.now())
            .unwrap()
            .is_empty()
    );
    conflict(
        r.review(&dba("dan"), false, bgs, None, c.now()),
        "reviewed by dora",
    );
    let mut plain = active(&p, &c, 600);
    conflict(
        plain.review(&admin(), true, ps, None, c.now()),
        "does not need a review",
    );
    // an extension approved, then denied
    let mut r = active(&p, &c, 600);
    r.request_extension(&alice(), MIN, None, ps, c.now())
        .unwrap();
    r.approve(&dba("dan"), None, ps, c.now()).unwrap();
    assert!(
        r.approve(&dba("dan"), None, ps, c.now())
            .unwrap()
            .is_empty()
    );
    conflict(
        r.approve(&dba("dirk"), None, ps, c.now()),
        "extension of grant",
    );
    r.request_extension(&alice(), MIN, None, ps, c.now())
        .unwrap();
    r.deny(&dba("dirk"), false, None, ps, c.now()).unwrap();
    assert!(
        r.deny(&dba("dirk"), false, None, ps, c.now())
            .unwrap()
            .is_empty()
    );
    conflict(
        r.deny(&dba("dan"), false, None, ps, c.now()),
        "already denied by dirk",
    );
}

#[test]
fn cancel_by_requester_before_start() {
    let c = clock();
    let p = policy("p");
    let mut r = pending(&p, &c, 60);
    assert!(matches!(
        r.cancel(&dba("dora"), c.now()),
        Err(CoreError::Refused(_))
    ));
    assert_eq!(
        actions(&r.cancel(&alice(), c.now()).unwrap()),
        ["request.cancelled"]
    );
    assert_eq!(r.state, State::Cancelled);
    assert!(r.cancel(&alice(), c.now()).unwrap().is_empty());
    let mut act = active(&p, &c, 60);
    assert!(
        matches!(
            act.cancel(&alice(), c.now()),
            Err(CoreError::InvalidTransition { .. })
        ),
        "active grants are released, not cancelled"
    );
}

#[test]
fn pending_times_out_exactly_at_its_deadline() {
    let c = clock();
    let p = policy("p");
    let mut r = pending(&p, &c, 60);
    assert_eq!(r.next_deadline(), Some(r.pending_until));
    c.advance(59 * MIN);
    assert_eq!(r.due(c.now()), None);
    assert!(r.time_out(c.now()).is_err());
    c.advance(MIN);
    assert_eq!(r.due(c.now()), Some(Due::TimeOut));
    assert_eq!(
        actions(&r.time_out(c.now()).unwrap()),
        ["request.timed_out"]
    );
    assert_eq!(r.state, State::TimedOut);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn scheduled_start_waits_for_start_at() {
    let c = clock();
    let p = policy("p");
    let a = alice();
    let mut asked = ask(&a, 1800);
    let start = duration::add(c.now(), 120 * MIN);
    asked.start_at = Some(start);
    let d = evaluate(std::slice::from_ref(&p), &asked, c.now()).unwrap();
    let (mut r, _) = AccessRequest::create(&asked, d, c.now()).unwrap();
    r.approve(&dba("dora"), None, std::slice::from_ref(&p), c.now())
        .unwrap();
    assert_eq!(r.grant().unwrap().starts_at, start);
    assert_eq!(r.due(c.now()), None);
    assert_eq!(r.next_deadline(), Some(start));
    c.set(start);
    assert_eq!(r.due(c.now()), Some(Due::Activate));
    // start_at in the past is refused.
    asked.start_at = Some(
        duration::add(c.now(), Duration::ZERO)
            .checked_sub(jiff::SignedDuration::from_secs(1))
            .unwrap(),
    );
    let d = evaluate(std::slice::from_ref(&p), &asked, c.now()).unwrap();
    assert!(AccessRequest::create(&asked, d, c.now()).is_err());
}

#[test]
fn expiry_goes_through_revoking_to_expired() {
    let c = clock();
    let p = policy("p");
    let mut r = active(&p, &c, 1800);
    c.advance(29 * MIN);
    assert!(r.expire(c.now()).is_err(), "not before the end");
    c.advance(MIN);
    assert_eq!(r.due(c.now()), Some(Due::Expire));
    assert_eq!(actions(&r.expire(c.now()).unwrap()), ["grant.revoking"]);
    assert_eq!(r.state, State::Revoking);
    assert_eq!(r.due(c.now()), Some(Due::RetryRevoke));
    let ev = r.finish_revocation(c.now()).unwrap();
    assert_eq!(actions(&ev), ["grant.expired"]);
    assert_eq!(ev[0].details["reason"], "expired");
    assert_eq!(r.state, State::Expired);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn failed_revocation_stays_revoking_with_backoff() {
    let c = clock();
    let p = policy("p");
    let mut r = active(&p, &c, 60);
    c.advance(MIN);
    r.expire(c.now()).unwrap();
    let ev = r.revocation_failed("connection refused", c.now()).unwrap();
    assert_eq!(ev[0].outcome, Outcome::Failure);
    assert_eq!(r.state, State::Revoking);
    let first = r.grant().unwrap().retry_at.unwrap();
    assert_eq!(r.due(c.now()), None);
    assert_eq!(r.next_deadline(), Some(first));
    r.revocation_failed("again", c.now()).unwrap();
    assert!(r.grant().unwrap().retry_at.unwrap() > first, "backs off");
    c.advance(MIN);
    assert_eq!(r.due(c.now()), Some(Due::RetryRevoke));
    r.finish_revocation(c.now()).unwrap();
    assert_eq!(r.state, State::Expired);
}

#[test]
fn release_is_for_the_holder_and_idempotent() {
    let c = clock();
    let p = policy("p");
    let mut r = active(&p, &c, 1800);
    assert!(matches!(
        r.release(&dba("dora"), c.now()),
        Err(CoreError::Refused(_))
    ));
    assert_eq!(
        actions(&r.release(&alice(), c.now()).unwrap()),
        ["grant.revoking"]
    );
    assert!(r.release(&alice(), c.now()).unwrap().is_empty());
    assert_eq!(
        actions(&r.finish_revocation(c.now()).unwrap()),
        ["grant.released"]
    );
    assert_eq!(r.state, State::Released);
    assert!(r.release(&alice(), c.now()).unwrap().is_empty());
    assert!(matches!(
        r.revoke(&admin(), true, None, c.now()),
        Err(CoreError::InvalidTransition { .. })
    ));
}

#[test]
fn a_grant_that_begins_ending_early_is_due_at_once() {
    let c = clock();
    let p = policy("p");
    let mut r = active(&p, &c, 1800);
    c.advance(MIN);
    r.release(&alice(), c.now()).unwrap();
    assert_eq!(r.state, State::Revoking);
    assert_eq!(
        r.next_deadline(),
        Some(c.now()),
        "due when it began ending, not at the window's original end"
    );
    assert_eq!(r.due(c.now()), Some(Due::RetryRevoke));
    // After a failed attempt, at its retry time.
    r.revocation_failed("target down", c.now()).unwrap();
    assert_eq!(r.next_deadline(), r.grant().unwrap().retry_at);
    // An admin's revoke too.
    let mut r = active(&p, &c, 1800);
    r.revoke(&admin(), true, None, c.now()).unwrap();
    assert_eq!(r.next_deadline(), Some(c.now()));
}

#[test]
fn revoke_is_for_admins() {
    let c = clock();
    let p = policy("p");
    let mut r = active(&p, &c, 1800);
    assert!(matches!(
        r.revoke(&dba("dora"), false, None, c.now()),
        Err(CoreError::Refused(_))
    ));
    let ev = r
        .revoke(&admin(), true, Some("suspicious"), c.now())
        .unwrap();
    assert_eq!(ev[0].details["comment"], "suspicious");
    let ev = r.finish_revocation(c.now()).unwrap();
    assert_eq!(actions(&ev), ["grant.revoked"]);
    assert_eq!(ev[0].actor, "root");
}

#[test]
fn approved_but_not_started_ends_without_revoking() {
    let c = clock();
    let p = policy("p");
    let mut r = pending(&p, &c, 60);
    r.approve(&dba("dora"), None, std::slice::from_ref(&p), c.now())
        .unwrap();
    assert_eq!(
        actions(&r.revoke(&admin(), true, None, c.now()).unwrap()),
        ["grant.revoked"]
    );
    assert_eq!(r.state, State::Revoked);
    // and one whose whole window passed unused expires
    let mut r = pending(&p, &c, 60);
    r.approve(&dba("dora"), None, std::slice::from_ref(&p), c.now())
        .unwrap();
    c.advance(2 * MIN);
    assert_eq!(r.due(c.now()), Some(Due::ExpireUnused));
    assert_eq!(
        actions(&r.expire_unused(c.now()).unwrap()),
        ["grant.expired"]
    );
}

#[test]
fn the_window_starts_when_the_grant_is_activated() {
    let c = clock();
    let p = policy("p");
    let mut r = pending(&p, &c, 1800);
    r.approve(&dba("dora"), None, std::slice::from_ref(&p), c.now())
        .unwrap();
    let planned_end = r.grant().unwrap().expires_at;
    r.activation_failed("target down", c.now()).unwrap();
    c.advance(10 * MIN);
    // Provisioning begins now and succeeds a moment later: the whole 30 minutes run from then.
    let (start, end) = r.activation_window(c.now()).unwrap();
    assert_eq!((start, end), (c.now(), duration::add(c.now(), 30 * MIN)));
    c.advance(Duration::from_secs(1));
    let ev = r.activate(None, start, c.now()).unwrap();
    let g = r.grant().unwrap();
    assert_eq!(g.starts_at, start);
    assert_eq!(g.expires_at, end, "not the planned {planned_end}");
    assert_eq!(ev[0].details["expires_at"], json!(end));
    assert_eq!(r.next_deadline(), Some(end));
    // A scheduled start is kept when provisioning begins early.
    let mut r = pending(&p, &c, 600);
    r.start_at = Some(duration::add(c.now(), MIN));
    r.approve(&dba("dora"), None, std::slice::from_ref(&p), c.now())
        .unwrap();
    let planned = r.grant().unwrap().starts_at;
    c.advance(MIN);
    r.activate(None, c.now() - jiff::SignedDuration::from_secs(90), c.now())
        .unwrap();
    assert_eq!(r.grant().unwrap().starts_at, planned);
}

#[test]
fn activation_failure_retries_until_the_window_ends() {
    let c = clock();
    let p = policy("p");
    let mut r = pending(&p, &c, 60);
    r.approve(&dba("dora"), None, std::slice::from_ref(&p), c.now())
        .unwrap();
    let ev = r.activation_failed("target down", c.now()).unwrap();
    assert_eq!(ev[0].outcome, Outcome::Failure);
    assert_eq!(r.due(c.now()), None);
    c.advance(Duration::from_secs(1));
    assert_eq!(r.due(c.now()), Some(Due::Activate));
    c.advance(MIN);
    assert_eq!(r.due(c.now()), Some(Due::ExpireUnused));
}

#[test]
fn extension_needs_a_new_decision_and_leaves_no_gap() {
    let c = clock();
    let mut p = policy("p");
    p.approval.required = 1;
    let ps = std::slice::from_ref(&p);
    let mut r = active(&p, &c, 1800);
    let end = r.grant().unwrap().expires_at;
    assert!(matches!(
        r.request_extension(&dba("dora"), MIN, None, ps, c.now()),
        Err(CoreError::Refused(_))
    ));
    let ev = r
        .request_extension(&alice(), 30 * MIN, Some("still fixing"), ps, c.now())
        .unwrap();
    assert_eq!(actions(&ev), ["grant.extension_requested"]);
    assert_eq!(
        r.grant().unwrap().expires_at,
        end,
        "not extended before approval"
    );
    assert!(
        r.request_extension(&alice(), MIN, None, ps, c.now())
            .is_err(),
        "one pending extension at a time"
    );
    assert!(
        r.approve(&alice(), None, ps, c.now()).is_err(),
        "no self-approval"
    );
    let ev = r
        .approve_extension(&dba("dora"), None, ps, c.now())
        .unwrap();
    assert_eq!(actions(&ev), ["grant.extended"]);
    assert_eq!(r.grant().unwrap().expires_at, duration::add(end, 30 * MIN));
    assert_eq!(r.state, State::Active);
    // a denied extension leaves the end where it was
    r.request_extension(&alice(), MIN, None, ps, c.now())
        .unwrap();
    let before = r.grant().unwrap().expires_at;
    assert!(
        r.deny(&alice(), false, None, ps, c.now()).is_err(),
        "the holder cannot deny"
    );
    assert_eq!(
        actions(
            &r.deny(&dba("dora"), false, Some("enough"), ps, c.now())
                .unwrap()
        ),
        ["grant.extension_denied"]
    );
    assert_eq!(r.grant().unwrap().expires_at, before);
    // auto-approved extension applies at once
    p.auto_approve.push(AutoApprove {
        name: "oncall".into(),
        principals: vec!["group:engineering".parse().unwrap()],
        max_duration: 2 * 60 * MIN,
        schedule: None,
    });
    let ev = r
        .request_extension(&alice(), 10 * MIN, None, std::slice::from_ref(&p), c.now())
        .unwrap();
    assert_eq!(
        actions(&ev),
        ["grant.extension_requested", "grant.extended"]
    );
    assert_eq!(ev[1].details["rule"], "p/oncall");
}

/// A grant that `p` approved automatically (rule `oncall`, up to 30 minutes in all).
fn auto_approved(p: &Policy, c: &FakeClock, secs: u64) -> AccessRequest {
    let a = alice();
    let asked = ask(&a, secs);
    let d = evaluate(std::slice::from_ref(p), &asked, c.now()).unwrap();
    assert!(matches!(d, Decision::AutoApproved { .. }), "{d:?}");
    let (mut r, _) = AccessRequest::create(&asked, d, c.now()).unwrap();
    r.activate(None, c.now(), c.now()).unwrap();
    r
}

#[test]
fn extensions_are_bounded_by_the_grants_whole_length_and_count() {
    let c = clock();
    let mut p = policy("p");
    p.max_duration = 60 * MIN;
    p.auto_approve.push(AutoApprove {
        name: "oncall".into(),
        principals: vec!["group:engineering".parse().unwrap()],
        max_duration: 30 * MIN,
        schedule: None,
    });
    let ps = std::slice::from_ref(&p);
    let mut r = auto_approved(&p, &c, 15 * 60);
    c.advance(5 * MIN);
    // 15m + 10m = 25m: still within what the rule approves on its own.
    let ev = r
        .request_extension(&alice(), 10 * MIN, None, ps, c.now())
        .unwrap();
    assert_eq!(
        actions(&ev),
        ["grant.extension_requested", "grant.extended"]
    );
    // 25m + 10m = 35m: past the rule's 30m in all, so a person decides.
    let ev = r
        .request_extension(&alice(), 10 * MIN, None, ps, c.now())
        .unwrap();
    assert_eq!(actions(&ev), ["grant.extension_requested"]);
    assert_eq!(
        r.grant().unwrap().pending_extension().unwrap().policies,
        ["p"]
    );
    r.approve(&dba("dora"), None, ps, c.now()).unwrap();
    let g = r.grant().unwrap();
    assert_eq!(duration::until(g.starts_at, g.expires_at), 35 * MIN);
    // 35m + 30m = 65m: over the policy's 60m in all, refused whoever would approve.
    let e = r
        .request_extension(&alice(), 30 * MIN, None, ps, c.now())
        .unwrap_err();
    assert!(
        matches!(&e, CoreError::Refused(m) if m.contains("would last 1h 5m in all, over max_duration 1h")),
        "{e}"
    );
    assert!(
        r.grant().unwrap().pending_extension().is_none(),
        "refusal changes nothing"
    );
    // max_extensions counts the approved ones.
    p.max_extensions = Some(2);
    let e = r
        .request_extension(&alice(), MIN, None, std::slice::from_ref(&p), c.now())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("max_extensions 2 reached (the grant was extended 2 time(s))"),
        "{e}"
    );
    p.max_extensions = Some(3);
    r.request_extension(&alice(), MIN, None, std::slice::from_ref(&p), c.now())
        .unwrap();
}

#[test]
fn pending_extension_lapses_when_the_grant_ends() {
    let c = clock();
    let p = policy("p");
    let mut r = active(&p, &c, 60);
    r.request_extension(&alice(), MIN, None, std::slice::from_ref(&p), c.now())
        .unwrap();
    c.advance(MIN);
    assert_eq!(
        actions(&r.expire(c.now()).unwrap()),
        ["grant.revoking", "grant.extension_lapsed"]
    );
    assert!(
        r.approve(&dba("dora"), None, std::slice::from_ref(&p), c.now())
            .is_err()
    );
}

#[test]
fn break_glass_is_approved_at_once_and_needs_review_by_someone_else() {
    let c = clock();
    let mut p = policy("p");
    p.break_glass = Some(BreakGlass {
        principals: vec!["group:engineering".parse().unwrap()],
        max_duration: Duration::from_secs(3600),
    });
    let a = alice();
    let mut asked = ask(&a, 600);
    asked.break_glass = true;
    let d = evaluate(std::slice::from_ref(&p), &asked, c.now()).unwrap();
    let (mut r, ev) = AccessRequest::create(&asked, d, c.now()).unwrap();
    assert_eq!(actions(&ev), ["request.created", "request.approved"]);
    assert_eq!(ev[1].details["break_glass"], true);
    assert!(r.grant().unwrap().needs_review);
    assert!(matches!(
        r.review(&alice(), true, &[], None, c.now()),
        Err(CoreError::Refused(_))
    ));
    assert!(matches!(
        r.review(&Principal::user("eve", &[]), false, &[], None, c.now()),
        Err(CoreError::Refused(_))
    ));
    assert_eq!(
        actions(
            &r.review(&admin(), true, &[], Some("justified"), c.now())
                .unwrap()
        ),
        ["grant.reviewed"]
    );
    assert!(!r.grant().unwrap().needs_review);
    assert!(
        r.review(&admin(), true, &[], None, c.now())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn auto_approval_names_the_rule() {
    let c = clock();
    let mut p = policy("p");
    p.auto_approve.push(AutoApprove {
        name: "oncall".into(),
        principals: vec!["group:engineering".parse().unwrap()],
        max_duration: Duration::from_secs(1800),
        schedule: None,
    });
    let a = alice();
    let asked = ask(&a, 600);
    let d = evaluate(std::slice::from_ref(&p), &asked, c.now()).unwrap();
    let (r, ev) = AccessRequest::create(&asked, d, c.now()).unwrap();
    assert_eq!(r.state, State::Approved);
    assert_eq!(ev[1].details["rule"], "p/oncall");
    assert_eq!(ev[1].actor, SYSTEM_ACTOR);
    assert_eq!(r.approved_by_rule.as_deref(), Some("p/oncall"));
}

#[test]
fn state_names_round_trip() {
    for s in State::ALL {
        assert_eq!(s.as_str().parse::<State>().unwrap(), s);
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
    assert!("approvedd".parse::<State>().is_err());
}
