//! Policies: who may ask for which roles on which resources, for how long, approved by whom.
//!
//! # How several matching policies combine
//!
//! The outcome never depends on the order of policies in the file. Every policy whose
//! `principals`, `resources` and `roles` match the ask is a *candidate*, and each candidate is
//! judged on its own:
//!
//! 1. A candidate whose limits the ask breaks (duration over `max_duration`, missing reason,
//!    missing or non-matching ticket; for an extension, the grant's whole length over
//!    `max_duration` or one extension more than `max_extensions`) drops out. An auto-approve
//!    rule's `max_duration` bounds an extended grant's whole length too: an extension past it
//!    waits for the approvers.
//! 2. If the requester asked for break-glass, only candidates with a `break_glass` section that
//!    names the requester and allows the duration stay in; the request is approved at once and
//!    flagged for review. Break-glass is never chosen implicitly.
//! 3. Otherwise, if any remaining candidate approves automatically (`required = 0`, or an
//!    `auto_approve` rule that names the requester, allows the duration and whose schedule contains
//!    the start time), the request is approved at once. When several do, the event names the first
//!    by (policy name, rule name) in alphabetical order, so the record is deterministic too.
//! 4. Otherwise the request waits for approval under *all* remaining candidates: it is approved as
//!    soon as the approvals by eligible approvers of any one candidate reach that candidate's
//!    `required` count. It times out after the shortest `pending_timeout` among them.
//! 5. If no candidate remains, the request is refused and the message lists, per policy, why.
//! 6. A request for a role the principal already holds (or is approved for) on the same resource
//!    for an overlapping window is refused with a hint to extend instead, unless a policy it
//!    would be decided under sets `allow_overlapping` (`refuse_overlap`).
//!
//! No candidate at all means default deny.

use std::time::Duration;

use glob::Pattern;
use jiff::Timestamp;
use regex::Regex;

use crate::principal::{self, Principal, Selector};
use crate::schedule::Schedule;
use crate::{CoreError, duration};

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub principals: Vec<Selector>,
    pub resources: Vec<Pattern>,
    pub roles: Vec<Pattern>,
    /// Bounds the grant's whole length from its start, extensions included.
    pub max_duration: Duration,
    /// How many extensions one grant may have; `None`: any number within `max_duration`.
    pub max_extensions: Option<u32>,
    /// Whether a principal may ask for a role they already hold (or are approved for) on the
    /// same resource for an overlapping window; otherwise they are told to extend instead.
    pub allow_overlapping: bool,
    pub require_reason: bool,
    pub ticket_pattern: Option<TicketPattern>,
    pub pending_timeout: Duration,
    pub approval: ApprovalRule,
    pub auto_approve: Vec<AutoApprove>,
    pub break_glass: Option<BreakGlass>,
}

/// A regular expression a ticket must match as a whole.
#[derive(Debug, Clone)]
pub struct TicketPattern {
    /// As written in the config, for messages.
    pub text: String,
    anchored: Regex,
}

impl TicketPattern {
    pub fn new(text: &str) -> Result<Self, CoreError> {
        let anchored = Regex::new(&format!("^(?:{text})$"))
            .map_err(|e| CoreError::Invalid(format!("invalid regular expression: {e}")))?;
        Ok(Self {
            text: text.to_owned(),
            anchored,
        })
    }

    pub fn matches(&self, ticket: &str) -> bool {
        self.anchored.is_match(ticket)
    }
}

#[derive(Debug, Clone)]
pub struct ApprovalRule {
    pub approvers: Vec<Selector>,
    /// Distinct people needed; 0 means no approval needed.
    pub required: u32,
    pub allow_self_approval: bool,
}

#[derive(Debug, Clone)]
pub struct AutoApprove {
    /// Named in the approval event; defaults to `auto_approve[N]` in config.
    pub name: String,
    pub principals: Vec<Selector>,
    pub max_duration: Duration,
    pub schedule: Option<Schedule>,
}

#[derive(Debug, Clone)]
pub struct BreakGlass {
    pub principals: Vec<Selector>,
    pub max_duration: Duration,
}

/// What a principal asks for.
#[derive(Debug, Clone)]
pub struct AccessAsk<'a> {
    pub principal: &'a Principal,
    pub resource: &'a str,
    pub role: &'a str,
    pub duration: Duration,
    pub reason: Option<&'a str>,
    pub ticket: Option<&'a str>,
    /// When the grant should start; `None` means on approval.
    pub start_at: Option<Timestamp>,
    pub break_glass: bool,
    /// For an extension: which one it would be (1 for the first). `duration` is then the
    /// grant's whole length from its start with this extension, so `max_duration` (the
    /// policy's and each auto-approve rule's) bounds the total, not each extension alone.
    pub extension: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    NeedsApproval {
        policies: Vec<String>,
        pending_timeout: Duration,
    },
    AutoApproved {
        policy: String,
        rule: String,
    },
    BreakGlass {
        policy: String,
    },
}

impl Policy {
    /// Whether this policy speaks about this principal, resource and role at all.
    pub fn covers(&self, p: &Principal, resource: &str, role: &str) -> bool {
        self.names(p) && self.covers_target(resource, role)
    }

    /// Whether the policy's `principals` name this principal.
    pub fn names(&self, p: &Principal) -> bool {
        Selector::any_matches(&self.principals, p)
    }

    /// Whether the policy's `resources` and `roles` globs match this resource and role.
    pub fn covers_target(&self, resource: &str, role: &str) -> bool {
        self.resources.iter().any(|r| r.matches(resource))
            && self.roles.iter().any(|r| r.matches(role))
    }

    /// Whether `approver` counts as an approver under this policy for a request by `requester`.
    pub fn counts_approver(&self, approver: &Principal, requester: &str) -> bool {
        Selector::any_matches(&self.approval.approvers, approver)
            && (approver.name != requester || self.approval.allow_self_approval)
    }

    /// Why the ask breaks this policy's limits, if it does.
    pub(crate) fn limits_broken(&self, ask: &AccessAsk<'_>, max: Duration) -> Option<String> {
        if ask.duration > max {
            let (d, max) = (duration::format(ask.duration), duration::format(max));
            return Some(match ask.extension {
                None => format!("duration {d} exceeds max_duration {max}"),
                Some(_) => format!(
                    "with this extension the grant would last {d} in all, over max_duration {max}"
                ),
            });
        }
        if let (Some(n), Some(limit)) = (ask.extension, self.max_extensions)
            && n > limit
        {
            return Some(format!(
                "max_extensions {limit} reached (the grant was extended {} time(s))",
                n - 1
            ));
        }
        let reason = ask.reason.map(str::trim).unwrap_or("");
        if (self.require_reason || ask.break_glass) && reason.is_empty() {
            return Some("a reason is required".into());
        }
        if let Some(re) = &self.ticket_pattern {
            match ask.ticket.map(str::trim) {
                None | Some("") => {
                    return Some(format!("a ticket matching {} is required", re.text));
                }
                Some(t) if !re.matches(t) => {
                    return Some(format!("ticket {t:?} does not match {}", re.text));
                }
                Some(_) => {}
            }
        }
        None
    }
}

/// Evaluates an ask against every policy; see the module docs for how candidates combine. The
/// decision is the one [`explain`](crate::policy_explain::explain) traces: there is no other
/// implementation of these rules.
pub fn evaluate(
    policies: &[Policy],
    ask: &AccessAsk<'_>,
    now: Timestamp,
) -> Result<Decision, CoreError> {
    crate::policy_explain::explain(policies, ask, now).into_decision()
}

/// A grant the principal holds (active) or is approved for, as far as overlaps are concerned.
#[derive(Debug, Clone)]
pub struct Held {
    pub grant_id: String,
    pub request_id: String,
    pub active: bool,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Decision {
    /// The policies this decision was made under.
    pub fn policies(&self) -> Vec<&str> {
        match self {
            Decision::NeedsApproval { policies, .. } => {
                policies.iter().map(String::as_str).collect()
            }
            Decision::AutoApproved { policy, .. } | Decision::BreakGlass { policy } => vec![policy],
        }
    }
}

/// Refuses an ask for a role the principal already holds on the same resource (`held`: its
/// active or approved grants of that role) for an overlapping window, unless a policy the
/// decision was made under sets `allow_overlapping`. The refusal says how to extend instead.
pub fn refuse_overlap(
    policies: &[Policy],
    decision: &Decision,
    ask: &AccessAsk<'_>,
    held: &[Held],
    now: Timestamp,
) -> Result<(), CoreError> {
    let deciding = decision.policies();
    if policies
        .iter()
        .any(|p| p.allow_overlapping && deciding.contains(&p.name.as_str()))
    {
        return Ok(());
    }
    let starts = ask.start_at.unwrap_or(now).max(now);
    let ends = duration::add(starts, ask.duration);
    let Some(h) = held
        .iter()
        .filter(|h| h.starts_at < ends && starts < h.expires_at)
        .min_by_key(|h| h.starts_at)
    else {
        return Ok(());
    };
    let what = format!("role {} on {}", ask.role, ask.resource);
    let hint = if h.active {
        format!(
            "extend it instead: jitgate grant extend {} --duration {} --reason \"…\"",
            h.grant_id,
            duration::format(ask.duration)
        )
    } else {
        format!(
            "it starts at {}; extend it once it is active (jitgate grant extend {}), or cancel request {} first",
            h.starts_at, h.grant_id, h.request_id
        )
    };
    Err(CoreError::Refused(format!(
        "{} already {} {what} until {} (grant {}); {hint}. A policy with allow_overlapping = true would allow a second grant",
        ask.principal.name,
        if h.active { "holds" } else { "is approved for" },
        h.expires_at,
        h.grant_id,
    )))
}

/// The configured policies with these names, in config order; names no longer configured are
/// skipped, so a removed policy stops counting.
pub fn named<'a>(configured: &'a [Policy], names: &[String]) -> Vec<&'a Policy> {
    configured
        .iter()
        .filter(|p| names.contains(&p.name))
        .collect()
}

/// The names of `policies` under which `approver` counts for a request by `requester`, or a
/// refusal that says, in the policies' terms, who would count. `verb` is what they try to do
/// (`approve`, `deny`).
pub fn approver_counts_for(
    policies: &[&Policy],
    approver: &Principal,
    requester: &str,
    verb: &str,
    what: &str,
) -> Result<Vec<String>, CoreError> {
    let names: Vec<String> = policies
        .iter()
        .filter(|p| p.counts_approver(approver, requester))
        .map(|p| p.name.clone())
        .collect();
    if !names.is_empty() {
        return Ok(names);
    }
    let needs: Vec<String> = policies
        .iter()
        .map(|p| {
            format!(
                "{} approval(s) from {} (policy {})",
                p.approval.required,
                principal::describe(&p.approval.approvers),
                p.name
            )
        })
        .collect();
    let self_note = if approver.name == requester
        && policies
            .iter()
            .any(|p| Selector::any_matches(&p.approval.approvers, approver))
    {
        "; you are the requester and self-approval is not allowed"
    } else {
        ""
    };
    if needs.is_empty() {
        return Err(CoreError::Refused(format!(
            "{what} has no policy in force that names approvers; nobody can {verb} it"
        )));
    }
    Err(CoreError::Refused(format!(
        "{} may not {verb} {what}: it needs {}{self_note}",
        approver.name,
        needs.join(" or ")
    )))
}

/// Whether the approvals given (each with the policies it counted for) meet any policy's quorum.
pub fn quorum_met<'a>(
    policies: &[&Policy],
    counted: impl Iterator<Item = &'a [String]> + Clone,
) -> Option<String> {
    policies
        .iter()
        .find(|p| {
            let n = counted.clone().filter(|c| c.contains(&p.name)).count();
            n as u32 >= p.approval.required
        })
        .map(|p| p.name.clone())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn policy(name: &str) -> Policy {
        Policy {
            name: name.into(),
            principals: vec!["group:engineering".parse().unwrap()],
            resources: vec![Pattern::new("orders-*").unwrap()],
            roles: vec![Pattern::new("read").unwrap()],
            max_duration: Duration::from_secs(4 * 3600),
            max_extensions: None,
            allow_overlapping: false,
            require_reason: true,
            ticket_pattern: None,
            pending_timeout: Duration::from_secs(3600),
            approval: ApprovalRule {
                approvers: vec!["group:dba".parse().unwrap()],
                required: 1,
                allow_self_approval: false,
            },
            auto_approve: vec![],
            break_glass: None,
        }
    }

    pub fn ask<'a>(p: &'a Principal, duration: u64) -> AccessAsk<'a> {
        AccessAsk {
            principal: p,
            resource: "orders-db",
            role: "read",
            duration: Duration::from_secs(duration),
            reason: Some("INC-1 fix"),
            ticket: None,
            start_at: None,
            break_glass: false,
            extension: None,
        }
    }

    fn now() -> Timestamp {
        "2026-01-14T10:00:00Z".parse().unwrap() // a Wednesday
    }

    #[test]
    fn no_matching_policy_is_default_deny() {
        let alice = Principal::user("alice", &["sales"]);
        let e = evaluate(&[policy("p")], &ask(&alice, 60), now()).unwrap_err();
        assert!(
            matches!(&e, CoreError::Refused(m) if m.contains("default deny")),
            "{e}"
        );
    }

    #[test]
    fn too_long_is_refused_with_the_limit() {
        let alice = Principal::user("alice", &["engineering"]);
        let e = evaluate(&[policy("p")], &ask(&alice, 5 * 3600), now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("exceeds max_duration 4h"), "{e}");
    }

    #[test]
    fn reason_and_ticket_pattern_are_enforced() {
        let alice = Principal::user("alice", &["engineering"]);
        let mut p = policy("p");
        p.ticket_pattern = Some(TicketPattern::new("(INC|CHG)-[0-9]+").unwrap());
        let mut a = ask(&alice, 60);
        assert!(
            evaluate(&[p.clone()], &a, now())
                .unwrap_err()
                .to_string()
                .contains("ticket matching (INC|CHG)-[0-9]+ is required")
        );
        a.ticket = Some("BUG-7");
        assert!(
            evaluate(&[p.clone()], &a, now())
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
        a.ticket = Some("xINC-4411");
        assert!(
            evaluate(&[p.clone()], &a, now()).is_err(),
            "the whole ticket must match"
        );
        a.ticket = Some("INC-4411");
        assert!(matches!(
            evaluate(&[p.clone()], &a, now()),
            Ok(Decision::NeedsApproval { .. })
        ));
        a.reason = Some("  ");
        assert!(
            evaluate(&[p], &a, now())
                .unwrap_err()
                .to_string()
                .contains("reason is required")
        );
    }

    #[test]
    fn auto_approve_only_inside_its_schedule() {
        let bob = Principal::user("bob", &["engineering", "oncall"]);
        let mut p = policy("p");
        p.auto_approve.push(AutoApprove {
            name: "oncall-office-hours".into(),
            principals: vec!["group:oncall".parse().unwrap()],
            max_duration: Duration::from_secs(1800),
            schedule: Some(Schedule::parse("Mon-Fri 08:00-18:00 Europe/Berlin").unwrap()),
        });
        let inside = evaluate(&[p.clone()], &ask(&bob, 1800), now()).unwrap();
        assert_eq!(
            inside,
            Decision::AutoApproved {
                policy: "p".into(),
                rule: "oncall-office-hours".into()
            }
        );
        let saturday: Timestamp = "2026-01-17T10:00:00Z".parse().unwrap();
        assert!(matches!(
            evaluate(&[p.clone()], &ask(&bob, 1800), saturday),
            Ok(Decision::NeedsApproval { .. })
        ));
        // Longer than the rule allows: falls back to approval.
        assert!(matches!(
            evaluate(&[p.clone()], &ask(&bob, 3600), now()),
            Ok(Decision::NeedsApproval { .. })
        ));
        // A scheduled start outside the window is judged at the start time.
        let mut later = ask(&bob, 1800);
        later.start_at = Some(saturday);
        assert!(matches!(
            evaluate(&[p], &later, now()),
            Ok(Decision::NeedsApproval { .. })
        ));
    }

    #[test]
    fn combination_does_not_depend_on_order() {
        let alice = Principal::user("alice", &["engineering"]);
        let strict = policy("strict");
        let mut lax = policy("lax");
        lax.max_duration = Duration::from_secs(8 * 3600);
        lax.approval.required = 2;
        let mut open = policy("open");
        open.max_duration = Duration::from_secs(600);
        open.approval.required = 0;
        let all = [strict.clone(), lax.clone(), open.clone()];
        let mut reversed = all.clone();
        reversed.reverse();
        for d in [300, 3600, 6 * 3600, 9 * 3600] {
            let a = evaluate(&all, &ask(&alice, d), now());
            let b = evaluate(&reversed, &ask(&alice, d), now());
            assert_eq!(a, b, "duration {d}");
        }
        assert_eq!(
            evaluate(&all, &ask(&alice, 300), now()).unwrap(),
            Decision::AutoApproved {
                policy: "open".into(),
                rule: "no approval required".into()
            }
        );
        assert_eq!(
            evaluate(&all, &ask(&alice, 3600), now()).unwrap(),
            Decision::NeedsApproval {
                policies: vec!["lax".into(), "strict".into()],
                pending_timeout: Duration::from_secs(3600)
            }
        );
        assert_eq!(
            evaluate(&all, &ask(&alice, 6 * 3600), now()).unwrap(),
            Decision::NeedsApproval {
                policies: vec!["lax".into()],
                pending_timeout: Duration::from_secs(3600)
            }
        );
        let e = evaluate(&all, &ask(&alice, 9 * 3600), now())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("policy lax: duration 9h exceeds max_duration 8h"),
            "{e}"
        );
        assert!(
            e.find("policy lax").unwrap() < e.find("policy open").unwrap(),
            "sorted by name: {e}"
        );
    }

    #[test]
    fn break_glass_is_explicit_and_limited() {
        let sre = Principal::user("sam", &["engineering", "sre"]);
        let alice = Principal::user("alice", &["engineering"]);
        let mut p = policy("p");
        p.break_glass = Some(BreakGlass {
            principals: vec!["group:sre".parse().unwrap()],
            max_duration: Duration::from_secs(3600),
        });
        let mut a = ask(&sre, 1800);
        assert!(
            matches!(
                evaluate(&[p.clone()], &a, now()),
                Ok(Decision::NeedsApproval { .. })
            ),
            "not implicit"
        );
        a.break_glass = true;
        assert_eq!(
            evaluate(&[p.clone()], &a, now()).unwrap(),
            Decision::BreakGlass { policy: "p".into() }
        );
        a.duration = Duration::from_secs(7200);
        assert!(
            evaluate(&[p.clone()], &a, now())
                .unwrap_err()
                .to_string()
                .contains("break-glass")
        );
        let mut b = ask(&alice, 60);
        b.break_glass = true;
        assert!(
            evaluate(&[p], &b, now())
                .unwrap_err()
                .to_string()
                .contains("break-glass is for group:sre")
        );
    }

    #[test]
    fn a_role_already_held_is_refused_with_a_hint_to_extend() {
        let alice = Principal::user("alice", &["engineering"]);
        let mut p = policy("p");
        let d = Decision::NeedsApproval {
            policies: vec!["p".into()],
            pending_timeout: Duration::from_secs(3600),
        };
        let at = |m: i64| now() + jiff::SignedDuration::from_mins(m);
        let held = vec![Held {
            grant_id: "grt_1".into(),
            request_id: "req_1".into(),
            active: true,
            starts_at: at(-10),
            expires_at: at(20),
        }];
        let e = refuse_overlap(&[p.clone()], &d, &ask(&alice, 1800), &held, now())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("alice already holds role read on orders-db")
                && e.contains("jitgate grant extend grt_1 --duration 30m"),
            "{e}"
        );
        // A window that starts after the held one ends does not overlap.
        let mut later = ask(&alice, 1800);
        later.start_at = Some(at(20));
        assert!(refuse_overlap(&[p.clone()], &d, &later, &held, now()).is_ok());
        // Nothing held, nothing refused; and a policy may allow overlapping grants.
        assert!(refuse_overlap(&[p.clone()], &d, &ask(&alice, 1800), &[], now()).is_ok());
        p.allow_overlapping = true;
        assert!(refuse_overlap(&[p], &d, &ask(&alice, 1800), &held, now()).is_ok());
    }

    #[test]
    fn approver_must_be_listed_and_not_the_requester() {
        let p = policy("p");
        let dba = Principal::user("dora", &["dba"]);
        let eng = Principal::user("eve", &["engineering"]);
        assert_eq!(
            approver_counts_for(&[&p], &dba, "alice", "approve", "it").unwrap(),
            vec!["p".to_owned()]
        );
        let e = approver_counts_for(&[&p], &eng, "alice", "approve", "request r")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("needs 1 approval(s) from group:dba (policy p)"),
            "{e}"
        );
        let e = approver_counts_for(&[&p], &dba, "dora", "approve", "request r")
            .unwrap_err()
            .to_string();
        assert!(e.contains("you are the requester"), "{e}");
        let mut selfok = policy("p");
        selfok.approval.allow_self_approval = true;
        assert!(approver_counts_for(&[&selfok], &dba, "dora", "approve", "it").is_ok());
    }
}
