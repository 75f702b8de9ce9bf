//! `jitgate policy …`: ask the policies questions offline, from the config file alone, before
//! deploying it. Every answer comes from core's one evaluator (`policy_explain::explain`) or from
//! its reading of what a principal may ask for (`access::offers`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use jitgate_core::{Clock, Principal, PrincipalKind, SystemClock, Timestamp};
use jitgate_server::Config;
use jitgate_server::policy_view::{Ask, ExplainView, explain_view};

use crate::client::{Failure, usage};
use crate::output::{out, table};
use crate::{policy_check_cmd, policy_matrix, policy_test_cmd};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Why a request would get its decision: each policy considered, whether it matched and
    /// why it dropped out, who may approve and how many, the longest grant, what the role
    /// grants in the target. Exit 0 whatever the decision; 2 for an unknown resource or role.
    Explain {
        /// The config file.
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
        /// Who asks: a configured principal (their kind and groups are used), or any name.
        #[arg(long)]
        principal: String,
        /// The principal's groups, comma-separated (default: as configured; none otherwise).
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
        /// Whether the principal is a user or a service (default: as configured, else user).
        #[arg(long, value_parser = ["user", "service"])]
        kind: Option<String>,
        /// The resource, by name.
        #[arg(long)]
        resource: String,
        /// The role on that resource.
        #[arg(long)]
        role: String,
        /// How long, e.g. 30m.
        #[arg(long)]
        duration: String,
        /// The request's reason (some policies require one; break-glass always does).
        #[arg(long)]
        reason: Option<String>,
        /// The request's ticket (some policies require one matching their pattern).
        #[arg(long)]
        ticket: Option<String>,
        /// When the request is made, RFC 3339 (default: now); schedules are judged then.
        #[arg(long)]
        at: Option<String>,
        /// Ask for break-glass access.
        #[arg(long)]
        break_glass: bool,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A matrix of principals, groups and `*` against resource/role: approved at once (auto),
    /// with approval (how many of whom), by break-glass, or not at all.
    WhoCan {
        /// The config file.
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
        /// Only this resource.
        #[arg(long)]
        resource: Option<String>,
        /// Only this role.
        #[arg(long)]
        role: Option<String>,
        /// Only this row: a principal's name, `group:NAME` or `*`.
        #[arg(long)]
        principal: Option<String>,
        /// Print the cells with access as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Findings about policies that validate but are likely mistakes, each with file:line,
    /// severity and a fix. Exit 1 on an error, 0 with warnings only (--strict: warnings fail).
    Check {
        /// The config file.
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
        /// Grants approved without anyone's approval (no approval required, auto-approve,
        /// break-glass) longer than this are flagged.
        #[arg(long, default_value = "4h")]
        ceiling: String,
        /// Warnings fail the check too.
        #[arg(long)]
        strict: bool,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run test cases (CASES.toml: `[[cases]]` with a request and its `expect`ed outcome)
    /// through the evaluator: a pass/fail table and the policies and rules no case reached.
    /// Exit 1 on a failed case, or coverage below --min-coverage.
    Test {
        /// The config file.
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
        /// The test cases (see docs/policy.md).
        cases: PathBuf,
        /// Fail below this percentage of policies and rules reached (0-100).
        #[arg(long)]
        min_coverage: Option<f64>,
    },
    /// The access a config change gains, loses or changes, per principal or group, resource
    /// and role. Exit 1 when access widens (gained, approval removed or fewer approvals,
    /// longer durations, auto-approval or break-glass added) unless --allow-widening.
    Diff {
        /// The config as it is.
        old: PathBuf,
        /// The config as it would be.
        new: PathBuf,
        /// Accept a widening (exit 0 and still list it).
        #[arg(long)]
        allow_widening: bool,
        /// Print the changes as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Explain {
            config,
            principal,
            groups,
            kind,
            resource,
            role,
            duration,
            reason,
            ticket,
            at,
            break_glass,
            json,
        } => {
            let config = load(&config)?;
            let who = principal_named(&config, &principal, groups, kind.as_deref());
            let now = at_time(at.as_deref())?;
            let ask = Ask {
                principal: &who,
                resource: &resource,
                role: &role,
                duration: &duration,
                reason: reason.as_deref(),
                ticket: ticket.as_deref(),
                start_at: None,
                break_glass,
            };
            let view = explain_view(&config, &ask, now, true).map_err(|e| usage(e.to_string()))?;
            if json {
                out!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_explanation(&view);
            }
            Ok(())
        }
        PolicyCommand::WhoCan {
            config,
            resource,
            role,
            principal,
            json,
        } => policy_matrix::who_can(
            &config,
            resource.as_deref(),
            role.as_deref(),
            principal.as_deref(),
            json,
        ),
        PolicyCommand::Check {
            config,
            ceiling,
            strict,
            json,
        } => policy_check_cmd::run(&config, &ceiling, strict, json),
        PolicyCommand::Test {
            config,
            cases,
            min_coverage,
        } => policy_test_cmd::run(&config, &cases, min_coverage),
        PolicyCommand::Diff {
            old,
            new,
            allow_widening,
            json,
        } => policy_matrix::diff(&old, &new, allow_widening, json),
    }
}

/// Loads and validates the config; a broken one is refused with every mistake named.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// The principal called `name`: as configured, with `groups` and `kind` overriding.
pub fn principal_named(
    config: &Config,
    name: &str,
    groups: Option<Vec<String>>,
    kind: Option<&str>,
) -> Principal {
    let known = config
        .principals
        .iter()
        .map(|p| &p.principal)
        .find(|p| p.name == name);
    Principal {
        name: name.to_owned(),
        kind: match kind {
            Some("service") => PrincipalKind::Service,
            Some(_) => PrincipalKind::User,
            None => known.map_or(PrincipalKind::User, |p| p.kind),
        },
        groups: groups
            .or_else(|| known.map(|p| p.groups.clone()))
            .unwrap_or_default(),
    }
}

/// `--at`, or now.
pub fn at_time(at: Option<&str>) -> anyhow::Result<Timestamp> {
    match at {
        None => Ok(SystemClock.now()),
        Some(t) => t
            .parse()
            .map_err(|e| usage(format!("--at {t:?} is not an RFC 3339 time: {e}"))),
    }
}

fn print_explanation(v: &ExplainView) {
    let kind_groups = if v.groups.is_empty() {
        "no groups".to_owned()
    } else {
        format!("groups {}", v.groups.join(", "))
    };
    out!("decision:     {}: {}", v.decision, v.message);
    out!(
        "ask:          {} ({kind_groups}) asks for role {} on {} for {}{}, starting {}",
        v.principal,
        v.role,
        v.resource,
        v.duration,
        if v.break_glass { " (break-glass)" } else { "" },
        v.starts_at.round(jiff::Unit::Second).unwrap_or(v.starts_at)
    );
    for a in &v.approvals {
        let eligible = a.eligible.as_deref().unwrap_or_default();
        out!(
            "approvers:    {} of {} (policy {}){}: {}",
            a.required,
            a.approvers.join(", "),
            a.policy,
            if a.allow_self_approval {
                ", self-approval allowed"
            } else {
                ""
            },
            if eligible.is_empty() {
                "no configured principal counts".to_owned()
            } else {
                eligible.join(", ")
            }
        );
    }
    if let Some(t) = &v.pending_timeout {
        out!("times out:    after {t} without approval");
    }
    out!(
        "max duration: {}",
        v.max_duration.as_deref().unwrap_or("- (no policy matches)")
    );
    let grants = if v.role_grants.is_empty() {
        "nothing in the target (jitgate tracks it only)".to_owned()
    } else {
        v.role_grants.join(", ")
    };
    match &v.role_database {
        Some(db) => out!("role grants:  {grants} (database {db})"),
        None => out!("role grants:  {grants}"),
    }
    out!();
    let mut rows = Vec::new();
    for p in &v.policies {
        rows.push(vec![
            p.policy.clone(),
            if p.matched { "yes" } else { "no" }.to_owned(),
            p.result.clone(),
            p.why.clone().unwrap_or_else(|| {
                format!(
                    "{} of {}; max {}",
                    p.required,
                    if p.approvers.is_empty() {
                        "-".to_owned()
                    } else {
                        p.approvers.join(", ")
                    },
                    p.max_duration
                )
            }),
        ]);
        for r in &p.rules {
            rows.push(vec![
                String::new(),
                String::new(),
                format!("  rule {}", r.rule),
                r.why.clone().unwrap_or_else(|| "applies".into()),
            ]);
        }
    }
    table(&["POLICY", "MATCHED", "RESULT", "DETAIL"], &rows);
}

/// A failed check of the policies (exit 1), for `test`, `diff` and `check`.
pub fn failed(message: impl Into<String>) -> anyhow::Error {
    Failure::Refused(message.into()).into()
}
