//! `jitgate audit search` as a table: one line per event that tells what happened.

use serde_json::Value;

use crate::output::{self, out};

/// The longest a single detail (a reason, a comment, a statement) is shown before `…`.
const MAX_TEXT: usize = 80;

/// Prints events as `SEQ TIME ACTOR ACTION OUTCOME RESOURCE ID WHAT`, where ID is the request,
/// grant or session the event belongs to (whichever its action is about) and WHAT the details
/// that tell the story: the role and duration asked for, the rule that decided, the reason,
/// ticket and comment people gave, the statement a session ran, the error that failed.
pub fn print(events: &Value) {
    let rows: Vec<Vec<String>> = events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                output::cell(&e["seq"]),
                output::cell(&e["ts"]),
                output::cell(&e["actor"]),
                output::cell(&e["action"]),
                output::cell(&e["outcome"]),
                output::cell(&e["resource"]),
                id(e),
                what(e),
            ]
        })
        .collect();
    output::table(
        &[
            "SEQ", "TIME", "ACTOR", "ACTION", "OUTCOME", "RESOURCE", "ID", "WHAT",
        ],
        &rows,
    );
    if rows.is_empty() {
        out!("(no events)");
    }
}

/// The id the event is about: a session's events name the session, a grant's the grant, a
/// request's the request.
fn id(e: &Value) -> String {
    let action = e["action"].as_str().unwrap_or_default();
    let order: [&str; 3] = if action.starts_with("session.") {
        ["session_id", "grant_id", "request_id"]
    } else if action.starts_with("grant.") {
        ["grant_id", "request_id", "session_id"]
    } else {
        ["request_id", "grant_id", "session_id"]
    };
    order
        .iter()
        .find_map(|k| e[*k].as_str())
        .unwrap_or("-")
        .to_owned()
}

/// The details that tell what happened, in a fixed order, each only where the event has it.
pub fn what(e: &Value) -> String {
    let d = &e["details"];
    let text = |k: &str| d[k].as_str().filter(|s| !s.is_empty()).map(short);
    let mut parts: Vec<String> = Vec::new();
    match (text("role"), text("duration")) {
        (Some(role), Some(d)) => parts.push(format!("{role} for {d}")),
        (Some(role), None) => parts.push(role),
        (None, Some(d)) => parts.push(format!("for {d}")),
        (None, None) => {}
    }
    if d["break_glass"] == true {
        parts.push("break-glass".into());
    }
    if let Some(rule) = text("rule") {
        parts.push(format!("rule {rule}"));
    }
    for (key, label) in [
        ("reason", "reason"),
        ("ticket", "ticket"),
        ("comment", "comment"),
        ("why", "why"),
        ("message", "said"),
        ("error", "error"),
    ] {
        if let Some(v) = text(key) {
            parts.push(format!("{label} {v:?}"));
        }
    }
    if let Some(sql) = text("sql") {
        parts.push(format!("sql {sql:?}"));
    }
    session_facts(e, d, &mut parts);
    if let Some(n) = d["returned"].as_u64() {
        parts.push(format!("returned {n}"));
    }
    parts.join(", ")
}

/// What a grant's start and a gateway session's events add: until when, where a session came
/// from, how its statements fared.
fn session_facts(e: &Value, d: &Value, parts: &mut Vec<String>) {
    match e["action"].as_str().unwrap_or_default() {
        "session.opened" => {
            if let Some(addr) = d["client_addr"].as_str() {
                parts.push(format!("from {addr}"));
            }
        }
        "session.results" => {
            let n = d["results"].as_array().map_or(0, Vec::len);
            let failed = d["failed"].as_u64().unwrap_or(0);
            parts.push(format!("{n} results, {failed} failed"));
        }
        "grant.activated" => {
            if let Some(t) = d.get("expires_at").filter(|t| !t.is_null()) {
                parts.push(format!("until {}", output::cell(t)));
            }
        }
        "session.closed" => {
            if let Some(n) = d["statements"].as_u64() {
                parts.push(format!("{n} statements"));
            }
        }
        _ => {}
    }
}

/// One line, at most [`MAX_TEXT`] characters.
fn short(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_TEXT {
        return one_line;
    }
    let cut: String = one_line.chars().take(MAX_TEXT - 1).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_request_says_what_was_asked_and_why() {
        let e = json!({"action": "request.created", "request_id": "req_1", "grant_id": "grt_1",
            "details": {"role": "read", "duration": "2m", "reason": "INC-4411 check orders", "ticket": null}});
        assert_eq!(what(&e), r#"read for 2m, reason "INC-4411 check orders""#);
        assert_eq!(id(&e), "req_1");
    }

    #[test]
    fn decisions_name_the_rule_and_the_comment() {
        let auto = json!({"action": "request.approved", "details": {"rule": "engineers-read-orders/oncall", "break_glass": false}});
        assert_eq!(what(&auto), "rule engineers-read-orders/oncall");
        let by_hand = json!({"action": "request.approve", "details": {"by": "dora", "comment": "ok for INC-4411"}});
        assert_eq!(what(&by_hand), r#"comment "ok for INC-4411""#);
        let refused = json!({"action": "request.refused", "details": {"role": "read", "duration": "8h", "reason": "x",
            "message": "no policy allows this: engineers-read-orders: 8h is longer than its max_duration 4h"}});
        assert!(what(&refused).contains(r#"said "no policy allows this: engineers-read-orders"#));
    }

    #[test]
    fn statements_show_their_sql_on_one_line_and_their_session() {
        let long = format!("select *\n  from orders where note = '{}'", "x".repeat(200));
        let e = json!({"action": "session.statement", "session_id": "ses_1", "grant_id": "grt_1",
            "details": {"sql": long, "protocol": "simple"}});
        let w = what(&e);
        assert!(w.starts_with(r#"sql "select * from orders where"#), "{w}");
        assert!(w.chars().count() < MAX_TEXT + 10 && w.contains('…'), "{w}");
        assert_eq!(id(&e), "ses_1");
        let blocked = json!({"action": "session.statement", "outcome": "blocked",
            "details": {"sql": "drop table orders", "rule": "no-destruction", "why": "ddl"}});
        assert_eq!(
            what(&blocked),
            r#"rule no-destruction, why "ddl", sql "drop table orders""#
        );
    }

    #[test]
    fn grant_endings_say_why_and_by_whom_they_ended() {
        let e = json!({"action": "grant.revoked", "grant_id": "grt_1", "request_id": "req_1",
            "details": {"reason": "revoked", "by": "root", "comment": "left the team"}});
        assert_eq!(what(&e), r#"reason "revoked", comment "left the team""#);
        assert_eq!(id(&e), "grt_1");
    }
}
