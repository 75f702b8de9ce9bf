//! `jitgate policy test --config F CASES.toml`: test cases for policies, run through the one
//! evaluator, with the coverage of the policies and rules no case reached. Made for CI: exit 1
//! on a failed case or coverage below `--min-coverage`.

use std::collections::BTreeSet;
use std::path::Path;

use jitgate_core::policy::{AccessAsk, Decision};
use jitgate_core::policy_explain::{Explanation, Judgement, explain};
use jitgate_core::{Timestamp, duration};
use jitgate_server::Config;
use jitgate_server::policy_view::resource_role;
use serde::Deserialize;

use crate::client::usage;
use crate::output::{out, table};
use crate::policy_cmd::{at_time, failed, load, principal_named};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    #[serde(default)]
    cases: Vec<Case>,
}

/// One case: a request and the outcome it must get.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: Option<String>,
    /// A configured principal (its kind and groups), or any name with `kind` and `groups`.
    principal: String,
    kind: Option<String>,
    groups: Option<Vec<String>>,
    resource: String,
    role: String,
    duration: String,
    reason: Option<String>,
    ticket: Option<String>,
    #[serde(default)]
    break_glass: bool,
    /// When the request is made, RFC 3339 (default: now).
    at: Option<Timestamp>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// deny, approve, needs_approval or break_glass.
    outcome: String,
    /// deny: words the refusal must contain.
    reason: Option<String>,
    /// approve: the auto-approve rule (or `no approval required`).
    rule: Option<String>,
    /// approve, break_glass: the deciding policy; needs_approval: one of the waiting ones.
    policy: Option<String>,
    /// needs_approval: how many approvals some waiting policy needs.
    required: Option<u32>,
    /// needs_approval: from whom, as that policy's approvers (`group:dba`).
    approvers: Option<Vec<String>>,
}

pub fn run(config: &Path, cases: &Path, min_coverage: Option<f64>) -> anyhow::Result<()> {
    let config = load(config)?;
    let text = std::fs::read_to_string(cases)
        .map_err(|e| usage(format!("cannot read {}: {e}", cases.display())))?;
    let cases: Cases = toml::from_str(&text)
        .map_err(|e| usage(format!("{}: {}", cases.display(), e.message().trim())))?;
    if cases.cases.is_empty() {
        return Err(usage("no [[cases]] in the file"));
    }
    let mut rows = Vec::new();
    let mut failures = 0;
    let mut reached = BTreeSet::new();
    for (i, case) in cases.cases.iter().enumerate() {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("case {}", i + 1));
        let (got, verdict) = match run_case(&config, case) {
            Ok(e) => {
                reached.extend(reached_by(&e));
                let got = describe(&e.decision);
                (got, check(&case.expect, &e, &config))
            }
            Err(e) => (format!("error: {e}"), Err("the case cannot be run".into())),
        };
        if verdict.is_err() {
            failures += 1;
        }
        rows.push(vec![
            name,
            case.expect.outcome.clone(),
            got,
            match verdict {
                Ok(()) => "pass".into(),
                Err(why) => format!("FAIL: {why}"),
            },
        ]);
    }
    table(&["CASE", "EXPECTED", "GOT", "RESULT"], &rows);
    let all = coverage_items(&config);
    let missed: Vec<&String> = all.iter().filter(|i| !reached.contains(*i)).collect();
    let percent = 100.0 * (all.len() - missed.len()) as f64 / all.len().max(1) as f64;
    out!();
    out!(
        "{} passed, {failures} failed; coverage {}/{} ({percent:.0}%) of policies and rules",
        rows.len() - failures,
        all.len() - missed.len(),
        all.len()
    );
    for m in &missed {
        out!("  not reached: {m}");
    }
    if failures > 0 {
        return Err(failed(format!("{failures} case(s) failed")));
    }
    if let Some(min) = min_coverage
        && percent < min
    {
        return Err(failed(format!(
            "coverage {percent:.0}% is below --min-coverage {min}%"
        )));
    }
    Ok(())
}

fn run_case(config: &Config, case: &Case) -> anyhow::Result<Explanation> {
    resource_role(config, &case.resource, &case.role)?;
    let who = principal_named(
        config,
        &case.principal,
        case.groups.clone(),
        case.kind.as_deref(),
    );
    let now = match case.at {
        Some(t) => t,
        None => at_time(None)?,
    };
    let ask = AccessAsk {
        principal: &who,
        resource: &case.resource,
        role: &case.role,
        duration: duration::parse(&case.duration)?,
        reason: case.reason.as_deref(),
        ticket: case.ticket.as_deref(),
        start_at: None,
        break_glass: case.break_glass,
        extension: None,
    };
    Ok(explain(&config.policies, &ask, now))
}

fn describe(d: &Result<Decision, String>) -> String {
    match d {
        Ok(Decision::AutoApproved { policy, rule }) => format!("approve ({policy}: {rule})"),
        Ok(Decision::BreakGlass { policy }) => format!("break_glass ({policy})"),
        Ok(Decision::NeedsApproval { policies, .. }) => {
            format!("needs_approval ({})", policies.join(", "))
        }
        Err(why) => format!("deny ({why})"),
    }
}

/// Whether the explanation meets the expectation; why not otherwise.
fn check(x: &Expect, e: &Explanation, config: &Config) -> Result<(), String> {
    let same = |want: &Option<String>, got: &str, what: &str| match want {
        Some(w) if w != got => Err(format!("{what} {got}, expected {w}")),
        _ => Ok(()),
    };
    match (x.outcome.as_str(), &e.decision) {
        ("deny", Err(why)) => match &x.reason {
            Some(r) if !why.contains(r.as_str()) => Err(format!("the refusal does not say {r:?}")),
            _ => Ok(()),
        },
        ("approve", Ok(Decision::AutoApproved { policy, rule })) => {
            same(&x.rule, rule, "rule")?;
            same(&x.policy, policy, "policy")
        }
        ("break_glass", Ok(Decision::BreakGlass { policy })) => same(&x.policy, policy, "policy"),
        ("needs_approval", Ok(Decision::NeedsApproval { policies, .. })) => {
            let fits = policies.iter().any(|name| {
                let p = config.policy(name);
                let approvers: Option<Vec<String>> = p.map(|p| {
                    p.approval
                        .approvers
                        .iter()
                        .map(ToString::to_string)
                        .collect()
                });
                x.policy.as_ref().is_none_or(|w| w == name)
                    && x.required
                        .is_none_or(|n| p.is_some_and(|p| p.approval.required == n))
                    && x.approvers.as_ref().is_none_or(|w| {
                        let (mut w, mut a) = (w.clone(), approvers.unwrap_or_default());
                        w.sort();
                        a.sort();
                        w == a
                    })
            });
            if fits {
                Ok(())
            } else {
                Err("no waiting policy has the expected policy, count and approvers".into())
            }
        }
        ("deny" | "approve" | "break_glass" | "needs_approval", _) => Err("another outcome".into()),
        (other, _) => Err(format!(
            "unknown outcome {other:?}: expected deny, approve, needs_approval or break_glass"
        )),
    }
}

/// Everything a case can reach: each policy (matched), its approval path (waited under), each
/// auto-approve rule (applied), and its break-glass section (used).
fn coverage_items(config: &Config) -> Vec<String> {
    let mut items = Vec::new();
    for p in &config.policies {
        items.push(format!("policy {}", p.name));
        if p.approval.required == 0 {
            items.push(format!("policy {}: no approval required", p.name));
        } else {
            items.push(format!("policy {}: approval", p.name));
            items.extend(
                p.auto_approve
                    .iter()
                    .map(|r| format!("policy {}: auto_approve {}", p.name, r.name)),
            );
        }
        if p.break_glass.is_some() {
            items.push(format!("policy {}: break_glass", p.name));
        }
    }
    items
}

/// The coverage items one case reached, read from its trace.
fn reached_by(e: &Explanation) -> Vec<String> {
    let mut out = Vec::new();
    for c in e.considered.iter().filter(|c| c.judgement.matched()) {
        out.push(format!("policy {}", c.policy));
        match &c.judgement {
            Judgement::NeedsApproval => out.push(format!("policy {}: approval", c.policy)),
            Judgement::BreakGlass => out.push(format!("policy {}: break_glass", c.policy)),
            Judgement::AutoApproved { rule } if rule == "no approval required" => {
                out.push(format!("policy {}: {rule}", c.policy));
            }
            _ => {}
        }
        for (rule, why) in &c.rules {
            if why.is_none() {
                out.push(format!("policy {}: auto_approve {rule}", c.policy));
            }
        }
    }
    out
}
