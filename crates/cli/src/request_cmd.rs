//! `jitgate request`: ask for access, see requests, approve, deny, cancel.

use std::time::Duration;

use clap::Subcommand;
use clap::builder::PossibleValuesParser;
use jitgate_core::State;
use serde_json::{Value, json};

use crate::client::{self, Client, Failure, query};
use crate::output::{self, cell, out};
use crate::{Conn, Output, when};

#[derive(Subcommand)]
pub enum RequestCommand {
    /// Ask for a role on a resource.
    Create {
        /// The resource, by name (`jitgate access list` shows what you may ask for).
        #[arg(long)]
        resource: String,
        /// The role on that resource, e.g. read.
        #[arg(long)]
        role: String,
        /// How long, e.g. 30m, 2h.
        #[arg(long)]
        duration: String,
        /// Why you need it; shown to approvers and kept in the audit log.
        #[arg(long)]
        reason: Option<String>,
        /// A ticket reference (some policies require one matching their pattern).
        #[arg(long)]
        ticket: Option<String>,
        /// When the grant should start: RFC 3339, or +DURATION from now (e.g. +2h).
        #[arg(long)]
        start_at: Option<String>,
        /// Emergency access: approved at once where a policy allows it, flagged for review.
        #[arg(long)]
        break_glass: bool,
        /// Wait until the request is decided (and active), printing the final state.
        #[arg(long)]
        wait: bool,
    },
    /// List requests you may see, newest first.
    List {
        /// Only requests in this state.
        #[arg(long, value_parser = PossibleValuesParser::new(State::ALL.map(State::as_str)))]
        state: Option<String>,
        /// At most this many (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// One request: its state, approvals and grant.
    Show {
        /// The request's id.
        id: String,
    },
    /// Approve a request (or the pending extension of its grant).
    Approve {
        /// The request's id.
        id: String,
        /// A note for the requester and the audit log.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request (or the pending extension of its grant).
    Deny {
        /// The request's id.
        id: String,
        /// Why, for the requester and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Withdraw your own request before it starts.
    Cancel {
        /// The request's id.
        id: String,
    },
}

pub async fn request(conn: &Conn, command: RequestCommand) -> anyhow::Result<()> {
    let client = Client::new(&conn.url, conn.token.clone())?;
    let r = match command {
        RequestCommand::Create {
            resource,
            role,
            duration,
            reason,
            ticket,
            start_at,
            break_glass,
            wait,
        } => {
            let start_at = start_at.map(|s| when(&s, false)).transpose()?;
            let body = json!({
                "resource": resource, "role": role, "duration": duration, "reason": reason,
                "ticket": ticket, "start_at": start_at, "break_glass": break_glass,
            });
            let mut r = client.post("/api/v1/requests", body).await?;
            if wait {
                if conn.output == Output::Table && r["state"] == "pending" {
                    eprintln!("request {} is pending approval; waiting…", cell(&r["id"]));
                }
                while matches!(r["state"].as_str(), Some("pending" | "approved")) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    r = client
                        .get(&format!("/api/v1/requests/{}", cell(&r["id"])))
                        .await?;
                }
                print_request(conn, &r);
                if r["state"] != "active" {
                    return Err(Failure::Refused(format!(
                        "request {} {}",
                        cell(&r["id"]),
                        why_not_active(&r)
                    ))
                    .into());
                }
                return Ok(());
            }
            r
        }
        RequestCommand::List { state, limit } => {
            let q = query(&[("state", state), ("limit", limit.map(|l| l.to_string()))]);
            let mut list = client.get(&format!("/api/v1/requests{q}")).await?;
            if conn.output == Output::Json {
                out!("{list}");
            } else {
                // What waits for a decision: the request, or the extension of its grant.
                for r in list.as_array_mut().into_iter().flatten() {
                    let a = &r["awaiting"];
                    let (what, reason) = match a["kind"].as_str() {
                        Some("extension") => (
                            format!("extension +{}", cell(&a["duration"])),
                            a["reason"].clone(),
                        ),
                        Some(_) => ("approval".to_owned(), a["reason"].clone()),
                        None => ("-".to_owned(), r["reason"].clone()),
                    };
                    r["awaiting_"] = what.into();
                    r["reason_"] = reason;
                }
                output::rows(
                    &list,
                    &[
                        ("ID", "id"),
                        ("STATE", "state"),
                        ("PRINCIPAL", "principal"),
                        ("RESOURCE", "resource"),
                        ("ROLE", "role"),
                        ("DURATION", "duration"),
                        ("AWAITING", "awaiting_"),
                        ("CREATED", "created_at"),
                        ("GRANT", "grant_id"),
                        ("REASON", "reason_"),
                    ],
                );
            }
            return Ok(());
        }
        RequestCommand::Show { id } => {
            client
                .get(&format!("/api/v1/requests/{}", client::enc(&id)))
                .await?
        }
        RequestCommand::Approve { id, comment } => {
            client
                .post(
                    &format!("/api/v1/requests/{}/approve", client::enc(&id)),
                    json!({ "comment": comment }),
                )
                .await?
        }
        RequestCommand::Deny { id, reason } => {
            client
                .post(
                    &format!("/api/v1/requests/{}/deny", client::enc(&id)),
                    json!({ "reason": reason }),
                )
                .await?
        }
        RequestCommand::Cancel { id } => {
            client
                .post(
                    &format!("/api/v1/requests/{}/cancel", client::enc(&id)),
                    json!({}),
                )
                .await?
        }
    };
    print_request(conn, &r);
    Ok(())
}

/// Who decided, with their comment: `dora ("ok for INC-4411")`.
pub fn decision(d: &Value) -> String {
    match d["comment"].as_str().filter(|c| !c.is_empty()) {
        Some(c) => format!("{} ({c:?})", cell(&d["by"])),
        None => cell(&d["by"]),
    }
}

/// How a request that is not active ended, and by whom: what `request create --wait` says.
fn why_not_active(r: &Value) -> String {
    match r["state"].as_str() {
        Some("denied") => format!("was denied by {}", decision(&r["denial"])),
        Some("cancelled") => format!("was cancelled by {}", decision(&r["cancellation"])),
        Some("timed_out") => "timed out: nobody decided before its pending_timeout".to_owned(),
        _ => format!("ended {}", cell(&r["state"])),
    }
}

fn print_request(conn: &Conn, r: &Value) {
    if conn.output == Output::Json {
        out!("{r}");
        return;
    }
    output::fields(
        r,
        &[
            "id",
            "state",
            "principal",
            "resource",
            "role",
            "duration",
            "reason",
            "ticket",
            "policies",
            "approved_by_rule",
            "pending_until",
            "grant_id",
        ],
    );
    if let Some(a) = r["approvals"].as_array().filter(|a| !a.is_empty()) {
        let by: Vec<String> = a.iter().map(decision).collect();
        out!("approvals:        {}", by.join(", "));
    }
    if let Some(d) = r.get("denial").filter(|d| !d.is_null()) {
        out!("denied_by:        {}", decision(d));
    }
    if let Some(d) = r.get("cancellation").filter(|d| !d.is_null()) {
        out!("cancelled_by:     {}", decision(d));
    }
    if let Some(g) = r.get("grant").filter(|g| !g.is_null()) {
        out!("expires_at:       {}", cell(&g["expires_at"]));
        if g["needs_review"] == true {
            out!("needs_review:     true (break-glass)");
        }
    }
    let a = &r["awaiting"];
    if a["kind"] == "extension" {
        let reason = a["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        out!(
            "awaiting:         approval of an extension by {}{reason}",
            cell(&a["duration"])
        );
    }
    let d = &r["decided"];
    if let Some(kind) = d["kind"].as_str() {
        let what = match kind {
            "extension" => "the extension",
            _ => "the request",
        };
        out!(
            "decided:          {what} for {}: {}",
            cell(&d["duration"]),
            cell(&d["outcome"]).replace('_', " ")
        );
    }
}
