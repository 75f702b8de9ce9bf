//! `[[guardrails]]` and `[[masking]]`: the statement rules and the masking rules the gateway (and,
//! for masking, the database itself) enforces, each scoped to resources and roles.

use std::collections::HashSet;

use super::Resource;
use super::check::{Check, KeyPath, Seg, with};
use super::raw::{RawGuardrail, RawMasking};
use super::refs;

/// Checks a rule's name and scope (shared by guardrails and masking rules): the name is
/// unique and plain, every resource exists, every role exists on a resource in scope.
fn rule_scope(
    c: &mut Check,
    path: &KeyPath,
    what: &str,
    names: &mut HashSet<String>,
    (name, rule_resources, roles): (&str, &[String], &[String]),
    resources: &[Resource],
) {
    let at = |k: &'static str| with(path, Seg::Key(k));
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        c.add(
            at("name"),
            format!("{name:?} is not a rule name (letters, digits, '-', '_', '.')"),
        );
    } else if !names.insert(name.to_owned()) {
        c.add(at("name"), format!("{what} {name:?} is defined twice"));
    }
    if !c.cross_refs {
        return;
    }
    let names = || resources.iter().map(|res| res.name.as_str());
    for (j, r) in rule_resources.iter().enumerate() {
        if !names().any(|n| n == r) {
            c.add(
                with(&at("resources"), Seg::Index(j)),
                format!(
                    "no resource is named {r:?}{}",
                    refs::did_you_mean(r, names())
                ),
            );
        }
    }
    let covered = || {
        resources
            .iter()
            .filter(|res| rule_resources.is_empty() || rule_resources.contains(&res.name))
            .flat_map(|res| res.roles.keys().map(String::as_str))
    };
    for (j, role) in roles.iter().enumerate() {
        if !covered().any(|k| k == role) {
            c.add(
                with(&at("roles"), Seg::Index(j)),
                format!(
                    "no resource this rule covers defines role {role:?}{}",
                    refs::did_you_mean(role, covered())
                ),
            );
        }
    }
}

pub(super) fn masking(
    c: &mut Check,
    raw: &[RawMasking],
    resources: &[Resource],
) -> Vec<jitgate_gateway::masking::MaskRule> {
    use jitgate_gateway::mask::{Detector, Strategy};
    use jitgate_gateway::masking::{ColumnPattern, MaskRule};
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (i, m) in raw.iter().enumerate() {
        let path = vec![Seg::Key("masking"), Seg::Index(i)];
        let at = |k: &'static str| with(&path, Seg::Key(k));
        rule_scope(
            c,
            &path,
            "masking rule",
            &mut names,
            (&m.name, &m.resources, &m.roles),
            resources,
        );
        let columns = c.each(at("columns"), &m.columns, ColumnPattern::parse, |col| {
            format!("{col:?} is not a column (COLUMN, TABLE.COLUMN or SCHEMA.TABLE.COLUMN; '*' for any part)")
        });
        let detectors = c.each(at("detectors"), &m.detectors, Detector::parse, |d| {
            let all: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
            format!("{d:?} is not a detector; use one of {}", all.join(", "))
        });
        if m.columns.is_empty() && m.detectors.is_empty() {
            c.add(
                at("columns"),
                "the rule masks nothing: give columns, detectors, or both",
            );
        }
        let strategy = match (m.strategy.as_str(), m.keep) {
            ("partial", keep) => Strategy::Partial {
                keep: keep.unwrap_or(4),
            },
            (_, Some(_)) => {
                c.add(at("keep"), "keep goes with strategy = \"partial\" only");
                Strategy::Redact
            }
            ("redact", None) => Strategy::Redact,
            ("hash", None) => Strategy::Hash,
            ("null", None) => Strategy::Null,
            (other, None) => {
                c.add(
                    at("strategy"),
                    format!("{other:?} is not a strategy; use redact, partial, hash or null"),
                );
                Strategy::Redact
            }
        };
        rules.push(MaskRule {
            name: m.name.clone(),
            resources: m.resources.clone(),
            roles: m.roles.clone(),
            columns,
            detectors,
            strategy,
        });
    }
    rules
}

pub(super) fn guardrails(
    c: &mut Check,
    raw: &[RawGuardrail],
    resources: &[Resource],
) -> Vec<jitgate_gateway::guard::GuardRule> {
    use jitgate_gateway::guard::{GuardRule, Kind, TablePattern};
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (i, g) in raw.iter().enumerate() {
        let path = vec![Seg::Key("guardrails"), Seg::Index(i)];
        let at = |k: &'static str| with(&path, Seg::Key(k));
        rule_scope(
            c,
            &path,
            "guardrail",
            &mut names,
            (&g.name, &g.resources, &g.roles),
            resources,
        );
        let deny = c.each(at("deny"), &g.deny, Kind::parse, |k| {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "{k:?} is not a statement kind; use one of {}",
                all.join(", ")
            )
        });
        let tables = c.each(at("tables"), &g.tables, TablePattern::parse, |t| {
            format!("{t:?} is not a table (TABLE or SCHEMA.TABLE; '*' for any part)")
        });
        if g.deny.is_empty() && g.tables.is_empty() && !g.strict {
            c.add(
                at("deny"),
                "the rule blocks nothing: give deny, tables, or strict = true",
            );
        }
        rules.push(GuardRule {
            name: g.name.clone(),
            resources: g.resources.clone(),
            roles: g.roles.clone(),
            deny,
            tables,
            strict: g.strict,
        });
    }
    rules
}
