//! The HTTP API (`/api/v1`), `/healthz`, `/metrics` and the OpenAPI document.

mod access;
mod audit;
mod identity;
mod openapi;
mod policy;
pub mod views;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State as AxState};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jitgate_audit::EventFilter;
use jitgate_core::{CoreError, State, Timestamp};
use jitgate_store::{RequestFilter, RequestKey, StoreError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Caller;
use crate::error::Error;
use crate::service::{App, NewRequest};
use openapi::ErrorResponses;
use views::{EventView, GrantView, RequestView, WhoAmI};

type AppState = Arc<App>;

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/whoami", get(whoami))
        .route("/auth/login", get(identity::browser_login))
        .route("/auth/callback", get(identity::browser_callback))
        .route("/api/v1/auth/token", post(identity::token))
        .route("/api/v1/auth/loopback", post(identity::loopback))
        .route("/api/v1/auth/device", post(identity::device))
        .route("/api/v1/auth/device/poll", post(identity::device_poll))
        .route("/api/v1/auth/logout", post(identity::logout))
        .route("/api/v1/auth/sessions", get(identity::sessions))
        .route("/api/v1/auth/sessions/end", post(identity::end))
        .route("/api/v1/access", get(access::list))
        .route("/api/v1/policy/explain", post(policy::explain))
        .route("/api/v1/requests", post(create_request).get(list_requests))
        .route("/api/v1/requests/{id}", get(get_request))
        .route("/api/v1/requests/{id}/approve", post(approve))
        .route("/api/v1/requests/{id}/deny", post(deny))
        .route("/api/v1/requests/{id}/cancel", post(cancel))
        .route("/api/v1/grants", get(list_grants))
        .route("/api/v1/grants/{id}", get(get_grant))
        .route("/api/v1/grants/{id}/release", post(release))
        .route("/api/v1/grants/{id}/revoke", post(revoke))
        .route("/api/v1/grants/{id}/extend", post(extend))
        .route("/api/v1/grants/{id}/review", post(review))
        .route("/api/v1/grants/{id}/credentials", get(credentials))
        .route(
            "/api/v1/grants/{id}/gateway-password",
            post(gateway_password),
        )
        .route("/api/v1/audit/events", get(audit_events))
        .route("/api/v1/audit/export", get(audit::export))
        .route("/api/v1/audit/erasures", post(audit::erase))
        .route("/api/v1/audit/rotate-key", post(audit::rotate_key))
        .route(
            "/api/v1/holds",
            post(audit::create_hold).get(audit::list_holds),
        )
        .route("/api/v1/holds/{id}/release", post(audit::release_hold))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .with_state(app)
}

// ---------------------------------------------------------------- errors

/// `{"error":{"code":"…","message":"…"}}` with the right status. Errors become responses here
/// and nowhere else.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: unauthenticated, forbidden, not_found, invalid_argument, conflict, unavailable, internal.
    pub code: String,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unauthenticated => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            Error::SignInRefused(m) => Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", m),
            Error::Unavailable(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            Error::NotFound(what) => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            Error::Core(CoreError::Refused(m)) => Self::new(StatusCode::FORBIDDEN, "forbidden", m),
            Error::Core(CoreError::Invalid(m)) => Self::bad_request(m),
            Error::Core(c @ CoreError::InvalidTransition { .. }) => {
                Self::new(StatusCode::CONFLICT, "conflict", c.to_string())
            }
            Error::Conflict(m)
            | Error::Core(CoreError::Conflict(m))
            | Error::Store(StoreError::Conflict(m)) => {
                Self::new(StatusCode::CONFLICT, "conflict", m)
            }
            Error::Store(StoreError::Closed) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "jitgate is shutting down",
            ),
            other => {
                tracing::error!(error = ?other, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

// ---------------------------------------------------------------- extractors

/// The authenticated caller, from `Authorization: Bearer TOKEN`.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::from(Error::Unauthenticated))?;
        app.authenticate(token)
            .await?
            .map(Auth)
            .ok_or_else(|| Error::Unauthenticated.into())
    }
}

/// A JSON body; an empty body reads as `{}`. Bad JSON is a 400 in the API's error shape.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // serde would also read a struct from an array (`[null]`); the API takes objects only.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::bad_request(
                "invalid JSON body: expected an object ({…})",
            ));
        }
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Query parameters; a bad one is a 400 in the API's error shape.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

// ---------------------------------------------------------------- bodies and queries

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequestBody {
    /// A configured resource's name (`GET /api/v1/access` lists what the caller may ask for).
    #[schema(example = "orders-db")]
    pub resource: String,
    /// One of the resource's roles.
    #[schema(example = "read")]
    pub role: String,
    /// humantime: `30m`, `4h`
    #[schema(example = "30m")]
    pub duration: String,
    #[schema(example = "INC-4411 check orders")]
    pub reason: Option<String>,
    pub ticket: Option<String>,
    /// RFC 3339; the grant starts then (or at approval, if later).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_at: Option<Timestamp>,
    /// Ask for break-glass access: approved at once if a policy allows, flagged for review.
    #[serde(default)]
    pub break_glass: bool,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    pub comment: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer, e.g. `30m`.
    #[schema(example = "30m")]
    pub duration: String,
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only requests in this state: pending, approved, active, revoking, expired, released,
    /// revoked, denied, cancelled, timed_out. `pending` also lists active requests whose grant
    /// has an extension awaiting approval (`awaiting.kind = "extension"`).
    pub state: Option<String>,
    pub principal: Option<String>,
    pub resource: Option<String>,
    /// Only active grants (grants list).
    pub active: Option<bool>,
    /// At most this many (default 100, at most 1000), newest first.
    pub limit: Option<u32>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
    pub actor: Option<String>,
    /// Glob on the action: `grant.*`.
    pub action: Option<String>,
    /// Glob on actions to leave out: `audit.searched`.
    pub exclude_action: Option<String>,
    pub resource: Option<String>,
    pub request: Option<String>,
    pub grant: Option<String>,
    pub session: Option<String>,
    /// One of `success`, `denied`, `failure`, `blocked`.
    pub outcome: Option<String>,
    /// Paging: events after this `seq`.
    pub after: Option<i64>,
    /// At most this many events (search: default 100; export: default all).
    pub limit: Option<u32>,
    /// Export only: `jsonl` (default) or `csv`.
    pub format: Option<String>,
}

impl AuditQuery {
    fn filter(self) -> Result<EventFilter, ApiError> {
        if let Some(o) = &self.outcome {
            o.parse::<jitgate_core::Outcome>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        Ok(EventFilter {
            since: self.since,
            until: self.until,
            actor: self.actor,
            action: self.action,
            exclude_action: self.exclude_action,
            resource: self.resource,
            request_id: self.request,
            grant_id: self.grant,
            session_id: self.session,
            outcome: self.outcome,
            involving: None,
            after_seq: self.after,
            limit: self.limit.unwrap_or(100),
        })
    }
}

impl ListQuery {
    fn filter(self) -> Result<RequestFilter, ApiError> {
        let state = self
            .state
            .as_deref()
            .map(str::parse::<State>)
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(RequestFilter {
            state: if self.active == Some(true) {
                Some(State::Active)
            } else {
                state
            },
            // Pending also means an extension awaiting approval: approvers see all that waits.
            include_pending_extensions: state == Some(State::Pending) && self.active != Some(true),
            principal: self.principal,
            resource: self.resource,
            limit: self.limit.unwrap_or(100),
            ..Default::default()
        })
    }
}

// ---------------------------------------------------------------- handlers

/// Liveness: `ok` while the server answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "ok", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Prometheus text exposition of the server's counters and gauges.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
async fn metrics(AxState(app): AxState<AppState>) -> impl IntoResponse {
    let live = match app.store.live_counts().await {
        Ok(live) => Some(live),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the request counts");
            None
        }
    };
    let gauges = crate::metrics::Gauges {
        live,
        head_seq: app.store.head().borrow().seq,
        audit: app.audit.health(),
        now: Some(app.clock.now()),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(&gauges),
    )
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi::document(ApiDoc::openapi()))
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/whoami", responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn whoami(AxState(app): AxState<AppState>, Auth(c): Auth) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: c.principal.name,
        kind: serde_json::to_value(c.principal.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        groups: c.principal.groups,
        admin: c.is_admin,
        auditor: c.is_auditor,
        gateway: app.gateway_addr.get().map(ToString::to_string),
        source: c
            .session
            .as_ref()
            .map_or_else(|| "config".into(), |s| s.source.clone()),
        session: c.session.as_ref().map(|s| s.id.clone()),
        expires_at: c.session.as_ref().map(|s| s.expires_at),
    })
}

/// Ask for a role on a resource. The response is the request as it stands after the policy
/// decision: `pending`, or `active` when approved automatically.
#[utoipa::path(post, path = "/api/v1/requests", request_body = CreateRequestBody,
    responses((status = 201, body = RequestView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "refused by policy (default deny)")),
    security(("bearer" = [])))]
async fn create_request(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Body(b): Body<CreateRequestBody>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let new = NewRequest {
        resource: b.resource,
        role: b.role,
        duration: b.duration,
        reason: b.reason,
        ticket: b.ticket,
        start_at: b.start_at,
        break_glass: b.break_glass,
    };
    let r = app.create_request(&c, new).await?;
    Ok((StatusCode::CREATED, Json(RequestView::from(&r))))
}

/// Requests the caller may see: their own, those awaiting their approval; all for admins and auditors.
#[utoipa::path(get, path = "/api/v1/requests", params(ListQuery), responses((status = 200, body = Vec<RequestView>)), security(("bearer" = [])))]
async fn list_requests(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Params(q): Params<ListQuery>,
) -> ApiResult<Vec<RequestView>> {
    let list = app.list(&c, q.filter()?).await?;
    Ok(Json(list.iter().map(RequestView::from).collect()))
}

#[utoipa::path(get, path = "/api/v1/requests/{id}", params(("id" = String, Path)), responses((status = 200, body = RequestView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_request(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<RequestView> {
    Ok(Json(RequestView::from(
        &app.visible(&c, RequestKey::Request(id)).await?,
    )))
}

/// Approve a pending request, or the pending extension of its active grant.
#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", params(("id" = String, Path)), request_body = CommentBody,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn approve(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(b): Body<CommentBody>,
) -> ApiResult<RequestView> {
    Ok(Json(RequestView::from(
        &app.approve(&c, &id, b.comment).await?,
    )))
}

/// Deny a pending request, or the pending extension of its active grant.
#[utoipa::path(post, path = "/api/v1/requests/{id}/deny", params(("id" = String, Path)), request_body = ReasonBody,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn deny(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(b): Body<ReasonBody>,
) -> ApiResult<RequestView> {
    Ok(Json(RequestView::from(&app.deny(&c, &id, b.reason).await?)))
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn cancel(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<RequestView> {
    Ok(Json(RequestView::from(&app.cancel(&c, &id).await?)))
}

#[utoipa::path(get, path = "/api/v1/grants", params(ListQuery), responses((status = 200, body = Vec<GrantView>)), security(("bearer" = [])))]
async fn list_grants(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Params(q): Params<ListQuery>,
) -> ApiResult<Vec<GrantView>> {
    let mut filter = q.filter()?;
    filter.with_grant = true;
    let list = app.list(&c, filter).await?;
    Ok(Json(list.iter().filter_map(GrantView::of).collect()))
}

#[utoipa::path(get, path = "/api/v1/grants/{id}", params(("id" = String, Path)), responses((status = 200, body = GrantView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_grant(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<GrantView> {
    grant_view(&app.visible(&c, RequestKey::Grant(id)).await?)
}

fn grant_view(r: &jitgate_core::AccessRequest) -> ApiResult<GrantView> {
    GrantView::of(r)
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("grant of request {}", r.id)).into())
}

/// "I'm done": the holder ends the grant now.
#[utoipa::path(post, path = "/api/v1/grants/{id}/release", params(("id" = String, Path)),
    responses((status = 200, body = GrantView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn release(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<GrantView> {
    grant_view(&app.release(&c, &id).await?)
}

/// An admin ends the grant now.
#[utoipa::path(post, path = "/api/v1/grants/{id}/revoke", params(("id" = String, Path)), request_body = ReasonBody,
    responses((status = 200, body = GrantView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn revoke(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(b): Body<ReasonBody>,
) -> ApiResult<GrantView> {
    grant_view(&app.revoke(&c, &id, b.reason).await?)
}

/// Ask for more time under the same policy; approved like a request, applied without a gap.
#[utoipa::path(post, path = "/api/v1/grants/{id}/extend", params(("id" = String, Path)), request_body = ExtendBody,
    responses((status = 200, body = GrantView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn extend(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(b): Body<ExtendBody>,
) -> ApiResult<GrantView> {
    grant_view(&app.extend(&c, &id, &b.duration, b.reason).await?)
}

/// Review a break-glass grant (admins or the policy's approvers, never the holder).
#[utoipa::path(post, path = "/api/v1/grants/{id}/review", params(("id" = String, Path)), request_body = CommentBody,
    responses((status = 200, body = GrantView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn review(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(b): Body<CommentBody>,
) -> ApiResult<GrantView> {
    grant_view(&app.review(&c, &id, b.comment).await?)
}

/// Connection credentials for an active grant's ephemeral login; only its grantee may read them,
/// and each read is audited.
#[utoipa::path(get, path = "/api/v1/grants/{id}/credentials", params(("id" = String, Path)),
    responses((status = 200, body = views::CredentialsView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn credentials(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let creds = app.credentials(&c, &id).await?;
    let view = views::CredentialsView {
        grant_id: id,
        username: creds.username,
        password: creds.password,
        dsn: creds.dsn,
        env: creds.env.into_iter().collect(),
        option_file: creds.option_file,
    };
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(view),
    ))
}

/// A short-lived password for the PostgreSQL gateway: only the grantee of an active grant gets
/// one; it lets them in to that grant's resource only, and stops working when the grant ends.
/// Each issue is audited.
#[utoipa::path(post, path = "/api/v1/grants/{id}/gateway-password", params(("id" = String, Path)),
    responses((status = 200, body = views::GatewayPasswordView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn gateway_password(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (r, password) = app.gateway_password(&c, &id).await?;
    let view = views::GatewayPasswordView {
        grant_id: r.grant_id.clone(),
        user: r.principal.clone(),
        resource: r.resource.clone(),
        password,
        expires_at: r.grant.as_ref().map(|g| g.expires_at),
        gateway: app.gateway_addr.get().map(ToString::to_string),
    };
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(view),
    ))
}

/// The audit log, oldest first. Auditors and admins see all events; others those they took part in.
#[utoipa::path(get, path = "/api/v1/audit/events", params(AuditQuery), responses((status = 200, body = Vec<EventView>)), security(("bearer" = [])))]
async fn audit_events(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Params(q): Params<AuditQuery>,
) -> ApiResult<Vec<EventView>> {
    if q.format.is_some() {
        return Err(ApiError::bad_request(
            "format is for /api/v1/audit/export; a search answers JSON",
        ));
    }
    let filter = q.filter()?;
    let events = app.audit_search(&c, filter).await?;
    Ok(Json(events.into_iter().map(EventView::from).collect()))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "jitgate", description = "Just-in-time privileged access: requests, approvals, grants, audit."),
    paths(healthz, metrics, whoami, identity::token, identity::loopback, identity::device, identity::device_poll, identity::logout, identity::sessions, identity::end, access::list, policy::explain, create_request, list_requests, get_request, approve, deny, cancel, list_grants, get_grant, release, revoke, extend, review, credentials, gateway_password, audit_events,
        audit::export, audit::erase, audit::rotate_key, audit::create_hold, audit::list_holds, audit::release_hold),
    components(schemas(ErrorBody, ErrorDetail, CreateRequestBody, CommentBody, ReasonBody, ExtendBody, RequestView, views::AwaitingView, views::DecidedView, GrantView, EventView, WhoAmI, views::CredentialsView, views::GatewayPasswordView,
        audit::HoldBody, audit::HoldView, audit::EraseBody, audit::Erased, audit::KeyView,
        access::AccessView, access::OfferView, access::AutoOfferView,
        crate::policy_view::ExplainView, crate::policy_view::ApprovalNeed, crate::policy_view::ConsideredView, crate::policy_view::RuleView,
        identity::TokenBody, identity::TokenView, identity::LoopbackBody, identity::DeviceView, identity::DevicePollBody, identity::DevicePollView, identity::EndedView, identity::SessionView, identity::EndBody)),
    modifiers(&BearerAuth, &ErrorResponses)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
