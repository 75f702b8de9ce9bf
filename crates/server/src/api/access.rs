//! `GET /api/v1/access`: what the caller may ask for.

use axum::Json;
use axum::extract::State as AxState;
use jitgate_core::access::{self, AutoOffer, Offer};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, Auth, ErrorBody};

/// A role on a resource that the caller may ask for, with every policy that would judge the
/// request (a request is approved under any one of them).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessView {
    pub resource: String,
    pub description: Option<String>,
    /// postgres, mysql or none
    pub kind: String,
    pub role: String,
    pub policies: Vec<OfferView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OfferView {
    pub policy: String,
    /// The longest grant this policy allows, e.g. `4h`.
    pub max_duration: String,
    pub require_reason: bool,
    /// A ticket must match this regular expression as a whole.
    pub ticket_pattern: Option<String>,
    /// Distinct approvals needed; 0 means approved at once.
    pub approvals_required: u32,
    /// Who may approve: `group:dba`, `user:dora`, …
    pub approvers: Vec<String>,
    pub allow_self_approval: bool,
    /// How long a request waits for approval before it times out.
    pub pending_timeout: String,
    /// Rules that approve the caller's requests at once, within their limits.
    pub auto_approve: Vec<AutoOfferView>,
    /// With break-glass, approved at once up to this long (flagged for review).
    pub break_glass_max: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AutoOfferView {
    pub rule: String,
    pub max_duration: String,
    /// `DAYS START-END ZONE`, when the rule applies only then.
    pub schedule: Option<String>,
}

impl From<Offer> for OfferView {
    fn from(o: Offer) -> Self {
        Self {
            policy: o.policy,
            max_duration: o.max_duration,
            require_reason: o.require_reason,
            ticket_pattern: o.ticket_pattern,
            approvals_required: o.approvals_required,
            approvers: o.approvers,
            allow_self_approval: o.allow_self_approval,
            pending_timeout: o.pending_timeout,
            auto_approve: o
                .auto_approve
                .into_iter()
                .map(AutoOfferView::from)
                .collect(),
            break_glass_max: o.break_glass_max,
        }
    }
}

impl From<AutoOffer> for AutoOfferView {
    fn from(r: AutoOffer) -> Self {
        Self {
            rule: r.rule,
            max_duration: r.max_duration,
            schedule: r.schedule,
        }
    }
}

/// The roles on resources that the caller may ask for, by resource and role, each with the
/// duration caps and approvers of the policies that cover it. Everything else is refused.
#[utoipa::path(get, path = "/api/v1/access",
    responses((status = 200, body = Vec<AccessView>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(AxState(app): AxState<AppState>, Auth(c): Auth) -> Json<Vec<AccessView>> {
    let config = &app.config;
    let mut out = Vec::new();
    for r in &config.resources {
        for role in r.roles.keys() {
            let offers = access::offers(&config.policies, &c.principal, &r.name, role);
            if offers.is_empty() {
                continue;
            }
            out.push(AccessView {
                resource: r.name.clone(),
                description: r.description.clone(),
                kind: r.kind.name().to_owned(),
                role: role.clone(),
                policies: offers.into_iter().map(OfferView::from).collect(),
            });
        }
    }
    Json(out)
}
