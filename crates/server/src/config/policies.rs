//! `[[policies]]`: who may request which roles on which resources, for how long, and who approves.

use std::collections::HashSet;

use jitgate_core::policy::{ApprovalRule, AutoApprove, BreakGlass, Policy, TicketPattern};
use jitgate_core::schedule::Schedule;

use super::check::{Check, KeyPath, Seg, with};
use super::raw::{RawAutoApprove, RawPolicy};

pub(super) fn policies(c: &mut Check, raw: &[RawPolicy]) -> Vec<Policy> {
    let mut names = HashSet::new();
    let mut policies = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let path = vec![Seg::Key("policies"), Seg::Index(i)];
        policies.push(policy(c, &path, p, &mut names));
    }
    policies
}

fn policy(c: &mut Check, path: &KeyPath, p: &RawPolicy, names: &mut HashSet<String>) -> Policy {
    let at = |k: &'static str| with(path, Seg::Key(k));
    if p.name.trim().is_empty() {
        c.add(at("name"), "a policy needs a name");
    }
    if !names.insert(p.name.clone()) {
        c.add(
            at("name"),
            format!("policy {:?} is defined twice; names must be unique", p.name),
        );
    }
    if p.principals.is_empty() {
        c.add(
            at("principals"),
            "must name at least one principal selector (user:NAME, service:NAME, group:NAME)",
        );
    }
    let max_duration = c.duration(at("max_duration"), &p.max_duration);
    let ticket_pattern = p
        .ticket_pattern
        .as_ref()
        .and_then(|t| c.ok(at("ticket_pattern"), TicketPattern::new(t)));
    let approval = match &p.approval {
        Some(a) => ApprovalRule {
            approvers: c.selectors(with(&at("approval"), Seg::Key("approvers")), &a.approvers),
            required: a.required,
            allow_self_approval: a.allow_self_approval,
        },
        None => ApprovalRule {
            approvers: vec![],
            required: 1,
            allow_self_approval: false,
        },
    };
    if approval.required > 0 && p.approval.as_ref().is_none_or(|a| a.approvers.is_empty()) {
        c.add(
            at("approval"),
            format!(
                "requires {} approval(s) but names no approvers; set approval.approvers, or required = 0 to approve without review",
                approval.required
            ),
        );
    }
    let auto_approve = p
        .auto_approve
        .iter()
        .enumerate()
        .map(|(j, a)| auto_approve(c, &with(&at("auto_approve"), Seg::Index(j)), j, a))
        .collect();
    let break_glass = p.break_glass.as_ref().map(|b| {
        let bp = at("break_glass");
        BreakGlass {
            principals: c.selectors(with(&bp, Seg::Key("principals")), &b.principals),
            max_duration: c.duration(with(&bp, Seg::Key("max_duration")), &b.max_duration),
        }
    });
    Policy {
        name: p.name.clone(),
        principals: c.selectors(at("principals"), &p.principals),
        resources: c.patterns(at("resources"), &p.resources, "resource"),
        roles: c.patterns(at("roles"), &p.roles, "role"),
        max_duration,
        max_extensions: p.max_extensions,
        allow_overlapping: p.allow_overlapping,
        require_reason: p.require_reason,
        ticket_pattern,
        pending_timeout: c.duration(at("pending_timeout"), &p.pending_timeout),
        approval,
        auto_approve,
        break_glass,
    }
}

fn auto_approve(c: &mut Check, path: &KeyPath, j: usize, a: &RawAutoApprove) -> AutoApprove {
    AutoApprove {
        name: a
            .name
            .clone()
            .unwrap_or_else(|| format!("auto_approve[{j}]")),
        principals: c.selectors(with(path, Seg::Key("principals")), &a.principals),
        max_duration: c.duration(with(path, Seg::Key("max_duration")), &a.max_duration),
        schedule: a
            .schedule
            .as_ref()
            .and_then(|s| c.ok(with(path, Seg::Key("schedule")), Schedule::parse(s))),
    }
}
