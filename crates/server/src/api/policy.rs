//! `POST /api/v1/policy/explain`: why the caller's request would get the decision it would get.

use axum::Json;
use axum::extract::State as AxState;

use super::{AppState, Auth, Body, CreateRequestBody, ErrorBody};
use crate::error::Error;
use crate::policy_view::{Ask, ExplainView, explain_view};

/// Explains, without making it, the decision on a request the caller could make: each policy
/// that matches them, whether it would approve at once, who would have to approve and how many,
/// or why it drops out; the longest grant allowed; what the role grants in the target. Only the
/// policies that match the caller are shown. Nothing is recorded.
#[utoipa::path(post, path = "/api/v1/policy/explain", request_body = CreateRequestBody,
    responses((status = 200, body = ExplainView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn explain(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Body(b): Body<CreateRequestBody>,
) -> Result<Json<ExplainView>, super::ApiError> {
    let ask = Ask {
        principal: &c.principal,
        resource: &b.resource,
        role: &b.role,
        duration: &b.duration,
        reason: b.reason.as_deref(),
        ticket: b.ticket.as_deref(),
        start_at: b.start_at,
        break_glass: b.break_glass,
    };
    let view = explain_view(&app.config, &ask, app.clock.now(), false).map_err(Error::from)?;
    Ok(Json(view))
}
