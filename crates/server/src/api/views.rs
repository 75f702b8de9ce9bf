//! The API's JSON shapes: snake_case, RFC 3339 UTC times. They are the public contract, kept
//! apart from the domain types so the two can evolve separately.

use jitgate_audit::AuditEvent;
use jitgate_core::lifecycle::{Approval, Decided, Extension, ExtensionState};
use jitgate_core::{AccessRequest, State, Timestamp, duration};

use crate::service::Verdict;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    /// pending, approved, active, revoking, expired, released, revoked, denied, cancelled, timed_out
    pub state: String,
    pub principal: String,
    pub resource: String,
    pub role: String,
    /// As asked for, e.g. `30m`.
    pub duration: String,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_at: Option<Timestamp>,
    pub break_glass: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When an unanswered request times out (pending requests only).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub pending_until: Option<Timestamp>,
    /// Policies it awaits approval under, or the one that approved it automatically.
    pub policies: Vec<String>,
    /// `policy/rule` when approved automatically or by break-glass.
    pub approved_by_rule: Option<String>,
    /// Who approved, when, and with which comment.
    pub approvals: Vec<ApprovalView>,
    /// Who denied it, when, and why.
    pub denial: Option<DecisionView>,
    /// Who cancelled it, and when.
    pub cancellation: Option<DecisionView>,
    pub grant_id: Option<String>,
    pub grant: Option<GrantView>,
    /// What waits for an approver's decision: the request itself (`pending`), or the extension
    /// of its active grant. `GET /api/v1/requests?state=pending` lists both.
    pub awaiting: Option<AwaitingView>,
    /// In the answer to an approval or a denial only: what it decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided: Option<DecidedView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AwaitingView {
    /// `request` or `extension`.
    pub kind: String,
    /// The length to decide on: the request's, or the extension's (how much longer).
    pub duration: String,
    /// The requester's reason for it.
    pub reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: Timestamp,
    /// Policies under which it awaits approval.
    pub policies: Vec<String>,
    /// Approvals given so far.
    pub approvals: Vec<ApprovalView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecidedView {
    /// `request` or `extension`: what the approval or denial applied to.
    pub kind: String,
    /// approved, approval_recorded (more approvals are needed), or denied.
    pub outcome: String,
    /// The length that was decided: the request's, or the extension's.
    pub duration: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    pub by: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    pub by: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    pub request_id: String,
    pub state: String,
    pub principal: String,
    pub resource: String,
    pub role: String,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// Break-glass grants stay flagged until someone other than the holder reviews them.
    pub needs_review: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub activated_at: Option<Timestamp>,
    /// expired, released or revoked, once the grant is ending or over.
    pub end_reason: Option<String>,
    pub ended_by: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    pub end_comment: Option<String>,
    pub review: Option<DecisionView>,
    pub extensions: Vec<ExtensionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExtensionView {
    pub duration: String,
    pub reason: Option<String>,
    /// pending, approved, denied, lapsed
    pub state: String,
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: Timestamp,
    pub approvals: Vec<ApprovalView>,
    pub decided_by: Option<String>,
    /// Who decided it (an approver whose approval completed the quorum, the rule, or whoever
    /// denied it), when, and with which comment (a denial's reason).
    pub decision: Option<DecisionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub seq: i64,
    #[schema(value_type = String, format = DateTime)]
    pub ts: Timestamp,
    pub actor: String,
    pub action: String,
    /// success, denied or failure
    pub outcome: String,
    pub resource: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub session_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// How to connect with a grant's ephemeral login. Secret: never cache or log it.
#[derive(Serialize, ToSchema)]
pub struct CredentialsView {
    pub grant_id: String,
    pub username: String,
    pub password: String,
    /// A URL that psql/libpq (or mysql clients) accept.
    pub dsn: String,
    /// Environment variables the target's own client reads as they are (PGHOST, PGUSER, …;
    /// for MariaDB only MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_PWD, which is all `mysql` reads).
    pub env: std::collections::BTreeMap<String, String>,
    /// MariaDB/MySQL: an option file with the whole login, for
    /// `mysql --defaults-extra-file=<(jitgate credentials GRANT_ID -o cnf)`.
    pub option_file: Option<String>,
}

/// A short-lived password for the PostgreSQL gateway. Secret: never cache or log it.
#[derive(Serialize, ToSchema)]
pub struct GatewayPasswordView {
    pub grant_id: String,
    /// The gateway login's user name: the principal.
    pub user: String,
    /// The gateway login's database name: the resource it is bound to.
    pub resource: String,
    /// Works for this user and resource only, until the grant ends.
    pub password: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// The gateway's address, if this server runs one.
    pub gateway: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub kind: String,
    pub groups: Vec<String>,
    pub admin: bool,
    pub auditor: bool,
    /// The PostgreSQL gateway's address, if this server runs one.
    pub gateway: Option<String>,
    /// Where the identity came from: `config` (a `[[principals]]` token), `jwt:PROVIDER` or
    /// `oidc:ISSUER` (a session).
    pub source: String,
    /// The session the token stands for, if it is one.
    pub session: Option<String>,
    /// When that session ends.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<jitgate_core::Timestamp>,
}

fn approval(a: &Approval) -> ApprovalView {
    ApprovalView {
        by: a.by.clone(),
        at: a.at,
        comment: a.comment.clone(),
    }
}

fn decided(d: &Decided) -> DecisionView {
    DecisionView {
        by: d.by.clone(),
        at: d.at,
        comment: d.comment.clone(),
    }
}

fn extension(e: &Extension) -> ExtensionView {
    let state = match e.state {
        ExtensionState::Pending => "pending",
        ExtensionState::Approved => "approved",
        ExtensionState::Denied => "denied",
        ExtensionState::Lapsed => "lapsed",
    };
    ExtensionView {
        duration: duration::format(e.duration),
        reason: e.reason.clone(),
        state: state.into(),
        requested_at: e.requested_at,
        approvals: e.approvals.iter().map(approval).collect(),
        decided_by: e.decided.as_ref().map(|d| d.by.clone()),
        decision: e.decided.as_ref().map(decided),
    }
}

impl GrantView {
    pub fn of(r: &AccessRequest) -> Option<Self> {
        let g = r.grant.as_ref()?;
        let ending = g.ending.as_ref();
        Some(GrantView {
            id: g.id.clone(),
            request_id: r.id.clone(),
            state: r.state.as_str().into(),
            principal: r.principal.clone(),
            resource: r.resource.clone(),
            role: r.role.clone(),
            starts_at: g.starts_at,
            expires_at: g.expires_at,
            needs_review: g.needs_review,
            activated_at: g.activated_at,
            end_reason: ending.map(|e| {
                serde_json::to_value(e.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }),
            ended_by: ending.map(|e| e.by.clone()),
            ended_at: ending.map(|e| e.at),
            end_comment: ending.and_then(|e| e.comment.clone()),
            review: g.review.as_ref().map(decided),
            extensions: g.extensions.iter().map(extension).collect(),
        })
    }
}

impl From<&AccessRequest> for RequestView {
    fn from(r: &AccessRequest) -> Self {
        RequestView {
            id: r.id.clone(),
            state: r.state.as_str().into(),
            principal: r.principal.clone(),
            resource: r.resource.clone(),
            role: r.role.clone(),
            duration: duration::format(r.duration),
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            start_at: r.start_at,
            break_glass: r.break_glass,
            created_at: r.created_at,
            pending_until: (r.state == State::Pending).then_some(r.pending_until),
            policies: r.policies.clone(),
            approved_by_rule: r.approved_by_rule.clone(),
            approvals: r.approvals.iter().map(approval).collect(),
            denial: r.denial.as_ref().map(decided),
            cancellation: r.cancellation.as_ref().map(decided),
            grant_id: r.grant.as_ref().map(|g| g.id.clone()),
            grant: GrantView::of(r),
            awaiting: awaiting(r),
            decided: None,
        }
    }
}

fn awaiting(r: &AccessRequest) -> Option<AwaitingView> {
    if r.state == State::Pending {
        return Some(AwaitingView {
            kind: "request".into(),
            duration: duration::format(r.duration),
            reason: r.reason.clone(),
            requested_at: r.created_at,
            policies: r.policies.clone(),
            approvals: r.approvals.iter().map(approval).collect(),
        });
    }
    let e = r.grant.as_ref()?.pending_extension()?;
    (r.state == State::Active).then(|| AwaitingView {
        kind: "extension".into(),
        duration: duration::format(e.duration),
        reason: e.reason.clone(),
        requested_at: e.requested_at,
        policies: e.policies.clone(),
        approvals: e.approvals.iter().map(approval).collect(),
    })
}

impl From<&Verdict> for RequestView {
    /// The request after an approval or a denial, saying what was decided.
    fn from(v: &Verdict) -> Self {
        let r = &v.request;
        let extension = v
            .extension
            .and_then(|i| r.grant.as_ref()?.extensions.get(i));
        let decided = match extension {
            Some(e) => DecidedView {
                kind: "extension".into(),
                outcome: match e.state {
                    ExtensionState::Approved => "approved",
                    ExtensionState::Denied => "denied",
                    ExtensionState::Pending => "approval_recorded",
                    ExtensionState::Lapsed => "lapsed",
                }
                .into(),
                duration: duration::format(e.duration),
            },
            None => DecidedView {
                kind: "request".into(),
                outcome: match r.state {
                    State::Pending => "approval_recorded",
                    State::Denied => "denied",
                    _ => "approved",
                }
                .into(),
                duration: duration::format(r.duration),
            },
        };
        RequestView {
            decided: Some(decided),
            ..RequestView::from(r)
        }
    }
}

impl From<AuditEvent> for EventView {
    fn from(e: AuditEvent) -> Self {
        EventView {
            seq: e.seq,
            ts: e.ts,
            actor: e.actor,
            action: e.action,
            outcome: e.outcome,
            resource: e.resource,
            request_id: e.request_id,
            grant_id: e.grant_id,
            session_id: e.session_id,
            details: e.details,
        }
    }
}
