//! Sign-in endpoints: workload tokens, signing out, and sessions.

use axum::Json;
use axum::extract::State as AxState;
use jitgate_core::{CoreError, Timestamp};
use jitgate_store::{AuthSession, SessionKey};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiResult, AppState, Auth, Body, ErrorBody, Params};
use crate::error::Error;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The `[[identity.jwt]]` provider's name.
    pub provider: String,
    /// The workload's JWT from its platform (a GitHub Actions or GitLab CI id token).
    pub jwt: String,
}

/// A jitgate token for a workload: use it as the bearer token until `expires_at`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    pub token: String,
    pub session: String,
    pub name: String,
    pub kind: String,
    pub groups: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

/// Trades a workload identity JWT for a short-lived jitgate token. Every check the JWT fails is
/// named in the 401; issued and refused alike are audited (`auth.token_issued`, `auth.refused`).
#[utoipa::path(post, path = "/api/v1/auth/token", request_body = TokenBody,
    responses((status = 200, body = TokenView),
        (status = 400, body = ErrorBody, description = "the body is not {\"provider\", \"jwt\"}"),
        (status = 401, body = ErrorBody, description = "the JWT failed a check; the message names it"),
        (status = 503, body = ErrorBody, description = "the provider's keys cannot be fetched")))]
pub async fn token(
    AxState(app): AxState<AppState>,
    Body(b): Body<TokenBody>,
) -> ApiResult<TokenView> {
    let issued = app.exchange_token(&b.provider, &b.jwt).await?;
    Ok(Json(issued_view(issued)))
}

pub(super) fn kind_name(kind: jitgate_core::PrincipalKind) -> String {
    match kind {
        jitgate_core::PrincipalKind::User => "user".into(),
        jitgate_core::PrincipalKind::Service => "service".into(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndedView {
    /// How many sessions ended.
    pub ended: usize,
}

/// Ends the session of the token presented (`auth.signed_out`). A configured token has none.
#[utoipa::path(post, path = "/api/v1/auth/logout", responses((status = 200, body = EndedView)), security(("bearer" = [])))]
pub async fn logout(AxState(app): AxState<AppState>, Auth(c): Auth) -> ApiResult<EndedView> {
    let Some(s) = &c.session else {
        return Err(ApiError::bad_request(
            "this token is configured in jitgate.toml, not a session: it cannot be signed out",
        ));
    };
    let ended = app.end_sessions(&c, SessionKey::Digest(s.digest)).await?;
    Ok(Json(EndedView { ended: ended.len() }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only this principal's sessions (admins; others always see their own).
    pub principal: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub name: String,
    pub groups: Vec<String>,
    pub source: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

impl From<&AuthSession> for SessionView {
    fn from(s: &AuthSession) -> Self {
        Self {
            id: s.id.clone(),
            name: s.body.principal.name.clone(),
            groups: s.body.principal.groups.clone(),
            source: s.body.source.clone(),
            created_at: s.created_at,
            expires_at: s.expires_at,
        }
    }
}

/// Live sessions: admins see everyone's (or one principal's), others their own.
#[utoipa::path(get, path = "/api/v1/auth/sessions", params(SessionQuery),
    responses((status = 200, body = [SessionView])), security(("bearer" = [])))]
pub async fn sessions(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Params(q): Params<SessionQuery>,
) -> ApiResult<Vec<SessionView>> {
    let whose = if c.is_admin {
        q.principal
    } else {
        Some(c.principal.name.clone())
    };
    let live = app
        .store
        .live_sessions(whose, app.clock.now())
        .await
        .map_err(Error::from)?;
    Ok(Json(live.iter().map(SessionView::from).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndBody {
    /// End every live session of this principal.
    pub principal: Option<String>,
    /// End this one session (`ses_…`).
    pub session: Option<String>,
}

/// Ends sessions: one by id, or all of a principal's. Admins only.
#[utoipa::path(post, path = "/api/v1/auth/sessions/end", request_body = EndBody,
    responses((status = 200, body = EndedView)), security(("bearer" = [])))]
pub async fn end(
    AxState(app): AxState<AppState>,
    Auth(c): Auth,
    Body(b): Body<EndBody>,
) -> ApiResult<EndedView> {
    let key = match (b.principal, b.session) {
        (Some(p), None) => SessionKey::Principal(p),
        (None, Some(s)) => SessionKey::Id(s),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of principal or session",
            ));
        }
    };
    if !c.is_admin {
        let err = Error::Core(CoreError::Refused(
            "only admins may end others' sessions".into(),
        ));
        return Err(app.refused(&c, "auth.sessions_end", None, err).await.into());
    }
    let ended = app.end_sessions(&c, key).await?;
    Ok(Json(EndedView { ended: ended.len() }))
}

fn issued_view(issued: crate::identity::Issued) -> TokenView {
    TokenView {
        token: issued.token,
        session: issued.session,
        name: issued.principal.name,
        kind: kind_name(issued.principal.kind),
        groups: issued.principal.groups,
        expires_at: issued.expires_at,
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// `jitgate login --browser`: where the CLI listens (http://127.0.0.1:PORT/…).
    cli: Option<String>,
    /// The CLI's PKCE challenge: base64url SHA-256 of the verifier it will show.
    cli_challenge: Option<String>,
}

/// `GET /auth/login`: off to the OpenID provider, with PKCE, state and nonce.
pub async fn browser_login(
    AxState(app): AxState<AppState>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Result<axum::response::Redirect, ApiError> {
    let cli = match (&q.cli, &q.cli_challenge) {
        (Some(u), Some(c)) => Some((u.as_str(), c.as_str())),
        (None, None) => None,
        _ => return Err(ApiError::bad_request("give cli and cli_challenge together")),
    };
    Ok(axum::response::Redirect::to(
        &app.oidc_login_url(cli).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback`: the provider sent the browser back; the answer is the session token,
/// or for `jitgate login --browser` a redirect to the CLI's listener with a one-time code.
pub async fn browser_callback(
    AxState(app): AxState<AppState>,
    axum::extract::Query(q): axum::extract::Query<CallbackQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if let Some(e) = q.error {
        let why = format!(
            "the provider refused the sign-in: {e} {}",
            q.error_description.unwrap_or_default()
        );
        let refused =
            jitgate_identity::IdentityError::refused(jitgate_identity::Check::IdToken, why);
        let source = format!(
            "oidc:{}",
            app.identity.oidc.as_ref().map_or("", |o| o.issuer())
        );
        return Err(app.sign_in_refused(&source, refused).await.into());
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(ApiError::bad_request("the callback needs code and state"));
    };
    Ok(match app.oidc_callback(&code, &state).await? {
        crate::signin::BrowserEnd::Session(issued) => (
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Json(issued_view(issued)),
        )
            .into_response(),
        crate::signin::BrowserEnd::Loopback(to) => {
            axum::response::Redirect::to(&to).into_response()
        }
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopbackBody {
    /// The one-time code the browser brought to the CLI's listener.
    pub code: String,
    /// The PKCE verifier whose challenge the CLI began with.
    pub verifier: String,
}

/// `jitgate login --browser` collects its session: the one-time code and the PKCE verifier.
#[utoipa::path(post, path = "/api/v1/auth/loopback", request_body = LoopbackBody,
    responses((status = 200, body = TokenView),
        (status = 400, body = ErrorBody, description = "the body is not {\"code\", \"verifier\"}"),
        (status = 401, body = ErrorBody, description = "unknown, used or expired code, or a verifier that does not match")))]
pub async fn loopback(
    AxState(app): AxState<AppState>,
    Body(b): Body<LoopbackBody>,
) -> ApiResult<TokenView> {
    Ok(Json(issued_view(
        app.loopback_token(&b.code, &b.verifier).await?,
    )))
}

/// A device sign-in begun: show `user_code` and `verification_uri`, then poll with `device`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub device: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    /// Seconds between polls.
    pub interval: u64,
    pub expires_in: u64,
}

/// Starts a device sign-in (RFC 8628) through the OpenID provider, for `jitgate login`.
#[utoipa::path(post, path = "/api/v1/auth/device",
    responses((status = 200, body = DeviceView),
        (status = 404, body = ErrorBody, description = "no [identity.oidc] is configured"),
        (status = 503, body = ErrorBody, description = "the provider cannot be reached")))]
pub async fn device(AxState(app): AxState<AppState>) -> ApiResult<DeviceView> {
    let d = app.device_start().await?;
    Ok(Json(DeviceView {
        device: d.device,
        user_code: d.user_code,
        verification_uri: d.verification_uri,
        verification_uri_complete: d.verification_uri_complete,
        interval: d.interval_secs,
        expires_in: d.expires_in_secs,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePollBody {
    pub device: String,
}

/// `{"status": "pending"}` until the person approved at the provider; then the session token.
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePollView {
    /// pending or done
    pub status: String,
    pub session: Option<TokenView>,
}

/// Polls a device sign-in.
#[utoipa::path(post, path = "/api/v1/auth/device/poll", request_body = DevicePollBody,
    responses((status = 200, body = DevicePollView),
        (status = 400, body = ErrorBody, description = "the body is not {\"device\"}"),
        (status = 401, body = ErrorBody, description = "the sign-in was refused; the message says why"),
        (status = 404, body = ErrorBody, description = "no such device sign-in"),
        (status = 503, body = ErrorBody, description = "the provider cannot be reached")))]
pub async fn device_poll(
    AxState(app): AxState<AppState>,
    Body(b): Body<DevicePollBody>,
) -> ApiResult<DevicePollView> {
    Ok(Json(match app.device_poll(&b.device).await? {
        crate::signin::DevicePoll::Pending => DevicePollView {
            status: "pending".into(),
            session: None,
        },
        crate::signin::DevicePoll::Done(issued) => DevicePollView {
            status: "done".into(),
            session: Some(issued_view(issued)),
        },
    }))
}
