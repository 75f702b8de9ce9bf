//! The control plane as the gateway's [`Authority`]: who may connect, as whom upstream, and
//! where the statements' audit events go.

use async_trait::async_trait;
use jitgate_core::{EventDraft, State};
use jitgate_gateway::{Authority, Refusal, SessionGrant, Upstream};
use jitgate_store::RequestFilter;

use crate::config::ResourceKind;
use crate::service::App;

fn refusal(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

#[async_trait]
impl Authority for App {
    async fn authorize(
        &self,
        user: &str,
        token: &str,
        database: &str,
    ) -> Result<SessionGrant, Refusal> {
        // The same words PostgreSQL uses, whatever was wrong: a name or a token, no hint which.
        let bad_login = || {
            refusal(
                "28P01",
                format!(
                    "password authentication failed for user \"{user}\" (the password is your jitgate API token)"
                ),
            )
        };
        self.auth
            .authenticate(token)
            .filter(|c| c.principal.name == user)
            .ok_or_else(bad_login)?;
        let (resource_name, db) = match database.split_once('/') {
            Some((r, d)) => (r, Some(d)),
            None => (database, None),
        };
        let resource = self.config.resource(resource_name).ok_or_else(|| refusal("3D000", format!("jitgate has no resource \"{resource_name}\"; the database name selects the resource")))?;
        if !matches!(resource.kind, ResourceKind::Postgres(_)) {
            return Err(refusal(
                "28000",
                format!("resource {resource_name} is not a PostgreSQL resource"),
            ));
        }
        let filter = RequestFilter {
            state: Some(State::Active),
            principal: Some(user.to_owned()),
            resource: Some(resource_name.to_owned()),
            limit: 100,
            ..Default::default()
        };
        let grants = self
            .store
            .list_requests(filter)
            .await
            .map_err(|e| refusal("58000", format!("jitgate cannot check grants: {e}")))?;
        let Some(r) = grants
            .into_iter()
            .filter(|r| r.grant.is_some())
            .max_by_key(|r| r.grant.as_ref().map(|g| g.expires_at))
        else {
            return Err(refusal(
                "28000",
                format!(
                    "{user} has no active grant on {resource_name}; ask for one: jitgate request create --resource {resource_name} --role ROLE --duration 30m --reason \"…\""
                ),
            ));
        };
        let creds = self.login_of(&r).await.map_err(|e| {
            refusal(
                "08006",
                format!("jitgate cannot get the grant's login: {e}"),
            )
        })?;
        let env = |k: &str| {
            creds
                .env
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let g = r.grant.as_ref().expect("filtered");
        Ok(SessionGrant {
            principal: r.principal.clone(),
            resource: r.resource.clone(),
            grant_id: g.id.clone(),
            request_id: r.id.clone(),
            expires_at: g.expires_at,
            upstream: Upstream {
                host: env("PGHOST"),
                port: env("PGPORT").parse().unwrap_or(5432),
                user: creds.username.clone(),
                password: creds.password.clone(),
                database: db.map(str::to_owned).unwrap_or_else(|| env("PGDATABASE")),
            },
        })
    }

    async fn record(&self, events: Vec<EventDraft>) -> Result<(), String> {
        self.append(events).await.map_err(|e| e.to_string())
    }
}
