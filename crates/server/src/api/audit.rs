//! Audit log endpoints beyond search: export, erasure, key rotation, legal holds.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::response::IntoResponse;
use jitgate_audit::AuditEvent;
use jitgate_audit::retention::Hold;
use jitgate_core::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::views::EventView;
use super::{ApiError, ApiResult, AppState, AuditQuery, Auth, Body, ErrorBody, Params, ReasonBody};
use crate::audit_service::NewHold;

/// Every matching event, oldest first, streamed as JSON lines or CSV. Recorded as `audit.exported`.
#[utoipa::path(get, path = "/api/v1/audit/export", params(AuditQuery),
    responses((status = 200, description = "JSON lines (format=jsonl) or CSV (format=csv)",
        content((String = "application/x-ndjson"), (String = "text/csv")))), security(("bearer" = [])))]
pub async fn export(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Params(q): Params<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let format = q.format.clone().unwrap_or_else(|| "jsonl".into());
    let (content_type, csv) = match format.as_str() {
        "jsonl" => ("application/x-ndjson", false),
        "csv" => ("text/csv", true),
        other => {
            return Err(ApiError::bad_request(format!(
                "{other:?} is not an export format; use jsonl or csv"
            )));
        }
    };
    let given = q.limit;
    let limit = given.unwrap_or(u32::MAX);
    let rx = app.audit_export(&c, q.filter()?, &format, given).await?;
    let header = csv.then(|| Bytes::from_static(CSV_HEADER.as_bytes()));
    // `left`: events still to send. Ending the stream drops the receiver, which stops the read.
    let lines = futures_util::stream::unfold(
        (rx, header, limit),
        move |(mut rx, header, mut left)| async move {
            if let Some(h) = header {
                return Some((Ok::<_, std::convert::Infallible>(h), (rx, None, left)));
            }
            if left == 0 {
                return None;
            }
            let mut chunk = String::new();
            // Gather what is ready into one chunk: fewer, larger writes.
            while left > 0
                && let Ok(e) = rx.try_recv()
            {
                push_line(&mut chunk, e, csv);
                left -= 1;
                if chunk.len() > 64 * 1024 {
                    break;
                }
            }
            if chunk.is_empty() {
                push_line(&mut chunk, rx.recv().await?, csv);
                left -= 1;
            }
            Some((Ok(Bytes::from(chunk)), (rx, None, left)))
        },
    );
    Ok((
        [(axum::http::header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(lines),
    ))
}

const CSV_HEADER: &str =
    "seq,ts,actor,action,outcome,resource,request_id,grant_id,session_id,details\n";

fn push_line(out: &mut String, e: AuditEvent, csv: bool) {
    let view = EventView::from(e);
    if !csv {
        out.push_str(&serde_json::to_string(&view).expect("events serialise"));
        out.push('\n');
        return;
    }
    let fields = [
        view.seq.to_string(),
        view.ts.to_string(),
        view.actor,
        view.action,
        view.outcome,
        view.resource.unwrap_or_default(),
        view.request_id.unwrap_or_default(),
        view.grant_id.unwrap_or_default(),
        view.session_id.unwrap_or_default(),
        view.details.to_string(),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push('\n');
}

/// RFC 4180: quote a field that holds a comma, quote or line break, doubling its quotes. A field
/// that a spreadsheet would run as a formula is prefixed with `'`.
fn csv_field(out: &mut String, f: &str) {
    let formula = f.starts_with(['=', '+', '-', '@']) && f.parse::<f64>().is_err();
    let quote = formula || f.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in f.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseBody {
    /// Whose data to erase: payloads of events they acted in or were the subject of.
    pub principal: String,
    /// The request or legal basis this erasure answers.
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Erased {
    pub principal: String,
    pub payloads_erased: u64,
}

/// Erases a data subject's payloads, keeping the event skeletons so the chain still verifies.
/// Refused (403) while a legal hold covers any of them.
#[utoipa::path(post, path = "/api/v1/audit/erasures", request_body = EraseBody,
    responses((status = 200, body = Erased), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn erase(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Body(b): Body<EraseBody>,
) -> ApiResult<Erased> {
    let n = app.erase(&c, &b.principal, &b.reason).await?;
    Ok(Json(Erased {
        principal: b.principal,
        payloads_erased: n,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub key_id: String,
    pub public_key: String,
}

/// Replaces the audit signing key; the rotation is an event covered by a checkpoint signed with
/// the old key.
#[utoipa::path(post, path = "/api/v1/audit/rotate-key", responses((status = 200, body = KeyView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rotate_key(AxState(app): AxState<AppState>, Auth(c): Auth) -> ApiResult<KeyView> {
    let key = app.rotate_audit_key(&c).await?;
    Ok(Json(KeyView {
        key_id: key.id().to_owned(),
        public_key: key.to_hex(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// The case or matter the hold is for.
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
    pub resource: Option<String>,
    /// Matches events the principal acted in or was the subject of.
    pub principal: Option<String>,
    pub request: Option<String>,
    pub grant: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub from: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    pub id: String,
    pub reason: String,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub resource: Option<String>,
    pub principal: Option<String>,
    pub request: Option<String>,
    pub grant: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub from: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
    pub active: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub released_at: Option<Timestamp>,
    pub released_by: Option<String>,
}

impl From<Hold> for HoldView {
    fn from(h: Hold) -> Self {
        HoldView {
            active: h.is_active(),
            id: h.id,
            reason: h.reason,
            created_by: h.created_by,
            created_at: h.created_at,
            resource: h.resource,
            principal: h.principal,
            request: h.request_id,
            grant: h.grant_id,
            from: h.from,
            until: h.until,
            released_at: h.released_at,
            released_by: h.released_by,
        }
    }
}

/// Places a legal hold: covered events are never deleted or archived away, whatever the rules say.
#[utoipa::path(post, path = "/api/v1/holds", request_body = HoldBody,
    responses((status = 200, body = HoldView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_hold(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Body(b): Body<HoldBody>,
) -> ApiResult<HoldView> {
    let hold = app
        .create_hold(
            &c,
            NewHold {
                reason: b.reason,
                resource: b.resource,
                principal: b.principal,
                request_id: b.request,
                grant_id: b.grant,
                from: b.from,
                until: b.until,
            },
        )
        .await?;
    Ok(Json(hold.into()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HoldsQuery {
    /// Include released holds.
    pub all: Option<bool>,
}

/// Legal holds (active ones unless `all=true`). Admins and auditors only.
#[utoipa::path(get, path = "/api/v1/holds", params(HoldsQuery), responses((status = 200, body = Vec<HoldView>)), security(("bearer" = [])))]
pub async fn list_holds(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Params(q): Params<HoldsQuery>,
) -> ApiResult<Vec<HoldView>> {
    let holds = app.list_holds(&c, q.all.unwrap_or(false)).await?;
    Ok(Json(holds.into_iter().map(HoldView::from).collect()))
}

/// Releases a legal hold; what it covered falls under the retention rules again.
#[utoipa::path(post, path = "/api/v1/holds/{id}/release", params(("id" = String, Path)), request_body = ReasonBody,
    responses((status = 200, body = HoldView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn release_hold(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(b): Body<ReasonBody>,
) -> ApiResult<HoldView> {
    Ok(Json(app.release_hold(&c, &id, b.reason).await?.into()))
}
