//! Findings about policies that validate but are likely mistakes: access wider than it looks,
//! rules that can never apply, approvals nobody can give, grants nobody can review. Each names
//! the key it is about (`policies[2].auto_approve[0]`), a severity and a fix.

use std::time::Duration;

use crate::duration;
use crate::policy::Policy;
use crate::policy_reach::reach;
use crate::principal::{self, Principal, Selector};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// A stable name for the kind of finding, e.g. `auto-approve-bypasses-approval`.
    pub code: &'static str,
    pub severity: Severity,
    /// The key it is about, e.g. `policies[0].approval`.
    pub key: String,
    pub message: String,
    pub fix: String,
}

/// What the policies are checked against.
pub struct Inventory<'a> {
    /// The known principals (those in the config).
    pub principals: &'a [Principal],
    /// Each resource with its roles.
    pub resources: &'a [(String, Vec<String>)],
    /// Who may review any break-glass grant besides a policy's approvers.
    pub admins: &'a [Selector],
    /// Grants approved without anyone's approval should not be longer than this.
    pub ceiling: Duration,
}

/// Every finding about `policies`, errors first, then by key.
pub fn check(policies: &[Policy], inv: &Inventory<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        let at = |k: &str| format!("policies[{i}]{k}");
        never_matches(p, inv, &at, &mut out);
        auto_rules(p, inv, &at, &mut out);
        approvers(p, inv, &at, &mut out);
        break_glass(p, inv, &at, &mut out);
    }
    overlaps(policies, inv, &mut out);
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.key.cmp(&b.key)));
    out
}

fn finding(
    code: &'static str,
    severity: Severity,
    key: String,
    message: String,
    fix: &str,
) -> Finding {
    Finding {
        code,
        severity,
        key,
        message,
        fix: fix.to_owned(),
    }
}

/// The known principals the selectors name.
fn named<'a>(selectors: &[Selector], inv: &Inventory<'a>) -> Vec<&'a Principal> {
    inv.principals
        .iter()
        .filter(|p| Selector::any_matches(selectors, p))
        .collect()
}

/// The known principals a policy covers (whatever the resource).
fn covered<'a>(p: &Policy, inv: &Inventory<'a>) -> Vec<&'a Principal> {
    named(&p.principals, inv)
}

fn never_matches(
    p: &Policy,
    inv: &Inventory<'_>,
    at: &dyn Fn(&str) -> String,
    out: &mut Vec<Finding>,
) {
    let resources: Vec<&(String, Vec<String>)> = inv
        .resources
        .iter()
        .filter(|(name, _)| p.resources.iter().any(|g| g.matches(name)))
        .collect();
    if resources.is_empty() {
        out.push(finding(
            "never-matches",
            Severity::Warning,
            at(".resources"),
            format!(
                "policy {} matches no resource: no resource is named like {}",
                p.name,
                p.resources
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "fix the glob, or remove the policy",
        ));
    } else if !resources
        .iter()
        .any(|(_, roles)| roles.iter().any(|r| p.roles.iter().any(|g| g.matches(r))))
    {
        out.push(finding(
            "never-matches",
            Severity::Warning,
            at(".roles"),
            format!(
                "policy {} matches no role of the resources it names",
                p.name
            ),
            "fix the role glob, or define the role on the resource",
        ));
    }
    if covered(p, inv).is_empty() {
        out.push(finding(
            "never-matches",
            Severity::Warning,
            at(".principals"),
            format!(
                "policy {} is for {}, which names no known principal",
                p.name,
                principal::describe(&p.principals)
            ),
            "fix the selector, or add the principals it is meant for",
        ));
    }
    for (j, r) in p.auto_approve.iter().enumerate() {
        if !covered(p, inv)
            .iter()
            .any(|x| Selector::any_matches(&r.principals, x))
        {
            out.push(finding(
                "never-matches",
                Severity::Warning,
                at(&format!(".auto_approve[{j}]")),
                format!(
                    "auto-approve rule {} of policy {} names no principal the policy covers ({})",
                    r.name,
                    p.name,
                    principal::describe(&r.principals)
                ),
                "name principals the policy covers, or remove the rule",
            ));
        }
    }
}

fn auto_rules(
    p: &Policy,
    inv: &Inventory<'_>,
    at: &dyn Fn(&str) -> String,
    out: &mut Vec<Finding>,
) {
    let ceiling = duration::format(inv.ceiling);
    if p.approval.required == 0 && p.max_duration > inv.ceiling {
        out.push(finding("unapproved-over-ceiling", Severity::Warning, at(".max_duration"),
            format!("policy {} approves grants of up to {} with no approval, above the ceiling {ceiling}", p.name, duration::format(p.max_duration)),
            "lower max_duration, or require an approval"));
    }
    if p.approval.required == 0 {
        return;
    }
    for (j, r) in p.auto_approve.iter().enumerate() {
        let key = at(&format!(".auto_approve[{j}]"));
        let everyone = r.principals.contains(&Selector::Anyone)
            || p.principals.iter().all(|s| r.principals.contains(s));
        if everyone && r.schedule.is_none() && r.max_duration >= p.max_duration {
            out.push(finding("auto-approve-bypasses-approval", Severity::Error, key.clone(),
                format!("auto-approve rule {} approves everyone policy {} covers for its whole max_duration {}: its approval by {} never applies",
                    r.name, p.name, duration::format(p.max_duration), principal::describe(&p.approval.approvers)),
                "narrow the rule's principals, shorten its max_duration, or give it a schedule"));
        } else if r.max_duration > p.max_duration {
            out.push(finding("auto-approve-wider-than-policy", Severity::Warning, format!("{key}.max_duration"),
                format!("auto-approve rule {} allows {}, more than policy {}'s max_duration {}; it approves at most {}",
                    r.name, duration::format(r.max_duration), p.name, duration::format(p.max_duration), duration::format(p.max_duration)),
                "make the rule's max_duration at most the policy's"));
        }
        if r.max_duration.min(p.max_duration) > inv.ceiling {
            out.push(finding("unapproved-over-ceiling", Severity::Warning, format!("{key}.max_duration"),
                format!("auto-approve rule {} approves grants of up to {} with no approval, above the ceiling {ceiling}", r.name, duration::format(r.max_duration.min(p.max_duration))),
                "shorten the rule's max_duration"));
        }
    }
}

fn approvers(p: &Policy, inv: &Inventory<'_>, at: &dyn Fn(&str) -> String, out: &mut Vec<Finding>) {
    if p.approval.required == 0 {
        return;
    }
    let who = principal::describe(&p.approval.approvers);
    let members = named(&p.approval.approvers, inv);
    if (members.len() as u32) < p.approval.required {
        out.push(finding("approvers-unreachable", Severity::Error, at(".approval.approvers"),
            format!("policy {} needs {} approval(s) from {who}, which names {} known principal(s); its requests can never be approved",
                p.name, p.approval.required, members.len()),
            "add approvers, or lower approval.required"));
        return;
    }
    let stuck: Vec<&str> = covered(p, inv)
        .into_iter()
        .filter(|x| {
            (members
                .iter()
                .filter(|m| p.counts_approver(m, &x.name))
                .count() as u32)
                < p.approval.required
        })
        .map(|x| x.name.as_str())
        .collect();
    if !stuck.is_empty() {
        out.push(finding("approvers-unreachable", Severity::Error, at(".approval.approvers"),
            format!("under policy {}, requests by {} can never be approved: they are among too few approvers ({who}) and may not approve themselves",
                p.name, stuck.join(", ")),
            "add approvers besides them"));
    }
    if p.approval.allow_self_approval {
        let selfish: Vec<&str> = covered(p, inv)
            .into_iter()
            .filter(|x| members.contains(x))
            .map(|x| x.name.as_str())
            .collect();
        let whom = if selfish.is_empty() {
            String::new()
        } else {
            format!(" ({} can)", selfish.join(", "))
        };
        out.push(finding(
            "self-approval",
            Severity::Warning,
            at(".approval.allow_self_approval"),
            format!(
                "policy {} lets requesters approve their own requests{whom}",
                p.name
            ),
            "remove allow_self_approval, or make sure a second person reviews",
        ));
    }
}

fn break_glass(
    p: &Policy,
    inv: &Inventory<'_>,
    at: &dyn Fn(&str) -> String,
    out: &mut Vec<Finding>,
) {
    let Some(bg) = &p.break_glass else { return };
    let mut reviewers: Vec<Selector> = inv.admins.to_vec();
    reviewers.extend(p.approval.approvers.iter().cloned());
    let unreviewed: Vec<&str> = named(&bg.principals, inv)
        .into_iter()
        .filter(|x| Selector::any_matches(&p.principals, x))
        .filter(|x| !named(&reviewers, inv).iter().any(|r| r.name != x.name))
        .map(|x| x.name.as_str())
        .collect();
    if !unreviewed.is_empty() {
        out.push(finding("break-glass-unreviewed", Severity::Error, at(".break_glass"),
            format!("break-glass grants by {} under policy {} can be reviewed by nobody else (no admin or approver besides them)", unreviewed.join(", "), p.name),
            "name approvers or [server] admins who can review break-glass grants"));
    }
    if bg.max_duration > inv.ceiling {
        out.push(finding("unapproved-over-ceiling", Severity::Warning, at(".break_glass.max_duration"),
            format!("break-glass under policy {} grants up to {} with no approval, above the ceiling {}", p.name, duration::format(bg.max_duration), duration::format(inv.ceiling)),
            "shorten break_glass.max_duration"));
    }
}

/// Two policies covering the same principal, resource and role with different outcomes: which
/// applies depends on which one the requester matches, and the most permissive wins.
fn overlaps(policies: &[Policy], inv: &Inventory<'_>, out: &mut Vec<Finding>) {
    let mut reported = std::collections::BTreeSet::new();
    for x in inv.principals {
        for (resource, roles) in inv.resources {
            for role in roles {
                let covering: Vec<(usize, &Policy)> = policies
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.covers(x, resource, role))
                    .collect();
                for (a, (i, p)) in covering.iter().enumerate() {
                    for (j, q) in &covering[a + 1..] {
                        let shape = |pol: &Policy| {
                            let r = reach(std::slice::from_ref(pol), x, resource, role);
                            (
                                r.auto.as_ref().map(|a| a.max_duration),
                                r.fewest_approvals(),
                                r.max_duration(),
                                r.break_glass.as_ref().map(|b| b.1),
                            )
                        };
                        if shape(p) != shape(q) && reported.insert((*i, *j)) {
                            out.push(finding("overlapping-policies", Severity::Warning, format!("policies[{j}]"),
                                format!("policies {} and {} both cover {} for role {role} on {resource} with different outcomes; the most permissive applies",
                                    p.name, q.name, x.name),
                                "make the policies cover disjoint principals, resources or roles, or give them the same limits"));
                        }
                    }
                }
            }
        }
    }
}
