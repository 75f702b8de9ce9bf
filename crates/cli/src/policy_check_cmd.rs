//! `jitgate policy check --config F`: core's policy findings, each at its file and line, with a
//! fix. Exit 1 on an error, 0 with warnings only (`--strict`: warnings fail too).

use std::path::Path;

use jitgate_core::duration;
use jitgate_core::policy_check::{Inventory, Severity, check};
use serde_json::json;

use crate::client::usage;
use crate::output::out;
use crate::policy_cmd::{failed, load};

pub fn run(path: &Path, ceiling: &str, strict: bool, as_json: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    let ceiling = duration::parse(ceiling).map_err(|e| usage(format!("--ceiling: {e}")))?;
    let text = std::fs::read_to_string(path)?;
    let principals: Vec<_> = config
        .principals
        .iter()
        .map(|p| p.principal.clone())
        .collect();
    let resources: Vec<(String, Vec<String>)> = config
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.roles.keys().cloned().collect()))
        .collect();
    let findings = check(
        &config.policies,
        &Inventory {
            principals: &principals,
            resources: &resources,
            admins: &config.admins,
            ceiling,
        },
    );
    let origin = path.display().to_string();
    let at = |key: &str| match line_of_key(&text, key) {
        Some(line) => format!("{origin}:{line}"),
        None => origin.clone(),
    };
    let severity = |s: Severity| match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    if as_json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| {
                json!({"file": origin, "line": line_of_key(&text, &f.key), "key": f.key,
                    "severity": severity(f.severity), "code": f.code, "message": f.message, "fix": f.fix})
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for f in &findings {
            out!(
                "{}: {}: {} [{}]: {}",
                at(&f.key),
                f.key,
                severity(f.severity),
                f.code,
                f.message
            );
            out!("  fix: {}", f.fix);
        }
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    if !as_json {
        out!("{origin}: {errors} error(s), {warnings} warning(s)");
    }
    if errors > 0 || (strict && warnings > 0) {
        return Err(failed(format!(
            "policy check failed: {errors} error(s), {warnings} warning(s){}",
            if strict { " (--strict)" } else { "" }
        )));
    }
    Ok(())
}

/// The line a key such as `policies[2].auto_approve[0].max_duration` is written on, or that of
/// its deepest part present in the file.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut span = None;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(next) = item.get(name) else { break };
        item = next;
        span = item.span().or(span);
        if let Some(i) = index {
            let Some(next) = item.get(i) else { break };
            item = next;
            span = item.span().or(span);
        }
    }
    span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
}
