//! `jitgate access list` (what may I ask for?) and finding your grant on a resource by name.

use serde_json::Value;

use crate::client::{Client, Failure, enc};
use crate::output::{self, out};

/// Prints the roles the caller may ask for: one line per resource, role and policy, with the
/// cap, who approves, what is approved at once, and what a request must carry.
pub async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let list = client.get("/api/v1/access").await?;
    if json {
        out!("{list}");
        return Ok(());
    }
    let mut rows = Vec::new();
    for item in list.as_array().into_iter().flatten() {
        for p in item["policies"].as_array().into_iter().flatten() {
            rows.push(vec![
                output::cell(&item["resource"]),
                output::cell(&item["role"]),
                output::cell(&p["max_duration"]),
                approved_by(p),
                at_once(p),
                needs(p),
                output::cell(&p["policy"]),
            ]);
        }
    }
    output::table(
        &[
            "RESOURCE",
            "ROLE",
            "MAX",
            "APPROVED BY",
            "AT ONCE",
            "NEEDS",
            "POLICY",
        ],
        &rows,
    );
    if rows.is_empty() {
        out!("(nothing: no policy lets you ask for any role; ask an admin)");
    }
    Ok(())
}

fn approved_by(p: &Value) -> String {
    match p["approvals_required"].as_u64().unwrap_or(0) {
        0 => "nobody needed".into(),
        n => {
            let who = output::cell(&p["approvers"]).replace(',', ", ");
            let mut s = format!("{n} of {who}");
            if p["allow_self_approval"] == true {
                s.push_str(" (self counts)");
            }
            s
        }
    }
}

fn at_once(p: &Value) -> String {
    let mut parts: Vec<String> = p["auto_approve"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let mut s = format!(
                "up to {} (rule {}",
                output::cell(&r["max_duration"]),
                output::cell(&r["rule"])
            );
            if let Some(when) = r["schedule"].as_str() {
                s.push_str(&format!(", {when}"));
            }
            s.push(')');
            s
        })
        .collect();
    if let Some(max) = p["break_glass_max"].as_str() {
        parts.push(format!("break-glass up to {max}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn needs(p: &Value) -> String {
    let mut parts = Vec::new();
    if p["require_reason"] == true {
        parts.push("reason".to_owned());
    }
    if let Some(t) = p["ticket_pattern"].as_str() {
        parts.push(format!("ticket {t}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// The grant `given` names: a grant id (`grt_…`) as it is, or a resource name, for which the
/// caller's one active grant on it is found.
pub async fn grant_id(client: &Client, given: &str) -> anyhow::Result<String> {
    if given.starts_with("grt_") {
        return Ok(given.to_owned());
    }
    let me = client.get("/api/v1/whoami").await?;
    let name = me["name"].as_str().unwrap_or_default();
    let grants = client
        .get(&format!(
            "/api/v1/grants?active=true&resource={}&principal={}",
            enc(given),
            enc(name)
        ))
        .await?;
    let ids: Vec<String> = grants
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["id"].as_str().map(str::to_owned))
        .collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure::Refused(format!(
            "you hold no active grant on {given:?} (jitgate grant list --active shows yours; \
             jitgate access list shows what you may ask for)"
        ))
        .into()),
        many => Err(Failure::Refused(format!(
            "you hold {} active grants on {given:?}; name one: {}",
            many.len(),
            many.join(", ")
        ))
        .into()),
    }
}
