//! `jitgate policy who-can` and `jitgate policy diff`: who reaches which role on which resource,
//! and how that changes between two configs (the matrix itself: `jitgate_server::policy_matrix`).

use std::path::Path;

use jitgate_core::duration;
use jitgate_core::policy_reach::Reach;
use jitgate_server::policy_matrix::{grid, subjects, targets};
use serde_json::{Value, json};

use crate::output::{out, table};
use crate::policy_cmd::{failed, load};

/// A matrix cell: `auto≤30m`, `1 of group:dba≤4h`, `bg≤1h`, joined by ` | `; `-` for none.
pub fn cell(r: &Reach) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &r.auto {
        let sched = if a.scheduled { " (scheduled)" } else { "" };
        parts.push(format!("auto≤{}{sched}", duration::format(a.max_duration)));
    }
    if let Some(a) = r.approval.iter().min_by_key(|a| a.required) {
        let more = match r.approval.len() {
            1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        parts.push(format!(
            "{} of {}≤{}{more}",
            a.required,
            a.approvers,
            duration::format(a.max_duration)
        ));
    }
    if let Some((_, d)) = &r.break_glass {
        parts.push(format!("bg≤{}", duration::format(*d)));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" | ")
    }
}

fn reach_json(r: &Reach) -> Value {
    json!({
        "auto": r.auto.as_ref().map(|a| json!({"policy": a.policy, "rule": a.rule,
            "max_duration": duration::format(a.max_duration), "scheduled": a.scheduled})),
        "approval": r.approval.iter().map(|a| json!({"policy": a.policy, "required": a.required,
            "approvers": a.approvers, "max_duration": duration::format(a.max_duration)})).collect::<Vec<_>>(),
        "break_glass": r.break_glass.as_ref().map(|(p, d)| json!({"policy": p, "max_duration": duration::format(*d)})),
    })
}

/// `policy who-can`: the matrix, narrowed by the filters.
pub fn who_can(
    config: &Path,
    resource: Option<&str>,
    role: Option<&str>,
    principal: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    let config = load(config)?;
    let targets: Vec<(String, String)> = targets(&[&config])
        .into_iter()
        .filter(|(r, x)| resource.is_none_or(|f| f == r) && role.is_none_or(|f| f == x))
        .collect();
    let rows: Vec<String> = match principal {
        Some(p) => vec![p.to_owned()],
        None => subjects(&[&config]),
    };
    let m = grid(&config, &rows, &targets);
    if as_json {
        let mut list = Vec::new();
        for (s, row) in rows.iter().zip(&m) {
            for ((r, x), reach) in targets.iter().zip(row) {
                if !reach.is_none() {
                    list.push(json!({"subject": s, "resource": r, "role": x, "access": reach_json(reach)}));
                }
            }
        }
        out!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut headers = vec!["WHO".to_owned()];
    headers.extend(targets.iter().map(|(r, x)| format!("{r}/{x}")));
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .zip(&m)
        .map(|(s, cells)| {
            let mut row = vec![s.clone()];
            row.extend(cells.iter().map(cell));
            row
        })
        .collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    table(&headers, &table_rows);
    out!();
    out!(
        "auto≤D: approved at once up to D; N of WHO≤D: N approvals from WHO, up to D; bg≤D: break-glass up to D; -: refused"
    );
    Ok(())
}

/// One difference between two configs for a subject, resource and role.
struct Change {
    subject: String,
    resource: String,
    role: String,
    kind: &'static str,
    what: String,
    widens: bool,
}

/// How access changes from `old` to `new` for one cell: (gained/lost/changed, what, widens).
fn compare(old: &Reach, new: &Reach) -> Option<(&'static str, String, bool)> {
    if old == new {
        return None;
    }
    match (old.is_none(), new.is_none()) {
        (true, false) => return Some(("gained", cell(new), true)),
        (false, true) => return Some(("lost", cell(old), false)),
        _ => {}
    }
    let mut what = Vec::new();
    let mut widens = false;
    let mut note = |text: String, wider: bool| {
        widens |= wider;
        what.push(text);
    };
    let auto = |r: &Reach| r.auto.as_ref().map(|a| a.max_duration);
    match (auto(old), auto(new)) {
        (None, Some(d)) => note(
            format!("auto-approval added (≤{})", duration::format(d)),
            true,
        ),
        (Some(_), None) => note("auto-approval removed".into(), false),
        (Some(a), Some(b)) if a != b => note(
            format!(
                "auto-approval {} → {}",
                duration::format(a),
                duration::format(b)
            ),
            b > a,
        ),
        _ => {}
    }
    match (old.fewest_approvals(), new.fewest_approvals()) {
        (Some(_), None) => note("approval removed".into(), true),
        (None, Some(n)) => note(format!("approval path added ({n} needed)"), false),
        (Some(a), Some(b)) if a != b => note(format!("approvals needed {a} → {b}"), b < a),
        _ => {}
    }
    let approvers = |r: &Reach| {
        r.approval
            .iter()
            .map(|a| a.approvers.clone())
            .collect::<Vec<_>>()
    };
    if approvers(old) != approvers(new)
        && old.fewest_approvals().is_some()
        && new.fewest_approvals().is_some()
    {
        note(
            format!("approvers {:?} → {:?}", approvers(old), approvers(new)),
            false,
        );
    }
    if let (Some(a), Some(b)) = (old.max_duration(), new.max_duration())
        && a != b
    {
        note(
            format!(
                "max duration {} → {}",
                duration::format(a),
                duration::format(b)
            ),
            b > a,
        );
    }
    let bg = |r: &Reach| r.break_glass.as_ref().map(|(_, d)| *d);
    match (bg(old), bg(new)) {
        (None, Some(d)) => note(
            format!("break-glass added (≤{})", duration::format(d)),
            true,
        ),
        (Some(_), None) => note("break-glass removed".into(), false),
        (Some(a), Some(b)) if a != b => note(
            format!(
                "break-glass {} → {}",
                duration::format(a),
                duration::format(b)
            ),
            b > a,
        ),
        _ => {}
    }
    if what.is_empty() {
        // Same shape, other policies or rules: worth a look, not a widening.
        what.push(format!("{} → {}", cell(old), cell(new)));
    }
    Some(("changed", what.join("; "), widens))
}

/// `policy diff OLD NEW`: exit 1 when access widens, unless `allow_widening`.
pub fn diff(old: &Path, new: &Path, allow_widening: bool, as_json: bool) -> anyhow::Result<()> {
    let (a, b) = (load(old)?, load(new)?);
    let (labels, targets) = (subjects(&[&a, &b]), targets(&[&a, &b]));
    let (before, after) = (grid(&a, &labels, &targets), grid(&b, &labels, &targets));
    let mut changes = Vec::new();
    for (s, (old, new)) in labels.iter().zip(before.iter().zip(&after)) {
        for ((r, x), (o, n)) in targets.iter().zip(old.iter().zip(new)) {
            if let Some((kind, what, widens)) = compare(o, n) {
                changes.push(Change {
                    subject: s.clone(),
                    resource: r.clone(),
                    role: x.clone(),
                    kind,
                    what,
                    widens,
                });
            }
        }
    }
    let widening = changes.iter().filter(|c| c.widens).count();
    if as_json {
        let list: Vec<Value> = changes
            .iter()
            .map(|c| {
                json!({"subject": c.subject, "resource": c.resource, "role": c.role,
                "change": c.kind, "what": c.what, "widens": c.widens})
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&list)?);
    } else if changes.is_empty() {
        out!("no change in who can reach what");
    } else {
        let rows: Vec<Vec<String>> = changes
            .iter()
            .map(|c| {
                vec![
                    c.subject.clone(),
                    format!("{}/{}", c.resource, c.role),
                    c.kind.to_owned(),
                    if c.widens { "yes" } else { "no" }.to_owned(),
                    c.what.clone(),
                ]
            })
            .collect();
        table(&["WHO", "RESOURCE/ROLE", "CHANGE", "WIDENS", "WHAT"], &rows);
    }
    if widening > 0 && !allow_widening {
        return Err(failed(format!(
            "{widening} change(s) widen access; review them, then pass --allow-widening to accept"
        )));
    }
    Ok(())
}
