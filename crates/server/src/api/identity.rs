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
#[derive(Debug, Serialize, ToSchema)]
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
    Ok(Json(TokenView {
        token: issued.token,
        session: issued.session,
        name: issued.principal.name,
        kind: kind_name(issued.principal.kind),
        groups: issued.principal.groups,
        expires_at: issued.expires_at,
    }))
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
