//! The control plane as the gateway's [`Authority`]: who may connect, as whom upstream, and
//! where the statements' audit events go.

use async_trait::async_trait;
use jitgate_core::{EventDraft, State};
use jitgate_gateway::{AuditMode, Authority, AuthorityError, Refusal, SessionGrant, Upstream};
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
        // The same words PostgreSQL uses, whatever was wrong: a name, a password or the
        // resource it is bound to, no hint which.
        let bad_login = || {
            refusal(
                "28P01",
                format!(
                    "password authentication failed for user \"{user}\" (the password is a gateway password from `jitgate connect`, or your jitgate API token)"
                ),
            )
        };
        let (resource_name, db) = match database.split_once('/') {
            Some((r, d)) => (r, Some(d)),
            None => (database, None),
        };
        // A gateway password lets its principal in to its resource, through its grant only.
        let bound_grant = match self.gateway_passwords.check(token) {
            Some(b) if b.principal == user && b.resource == resource_name => Some(b.grant_id),
            Some(_) => return Err(bad_login()),
            None => {
                self.authenticate(token)
                    .await
                    .map_err(|e| refusal("58000", format!("jitgate cannot check the token: {e}")))?
                    .filter(|c| c.principal.name == user)
                    .ok_or_else(bad_login)?;
                None
            }
        };
        let resource = self.config.resource(resource_name).ok_or_else(|| refusal("3D000", format!("jitgate has no resource \"{resource_name}\"; the database name selects the resource")))?;
        if !matches!(
            resource.kind,
            ResourceKind::Postgres(_) | ResourceKind::PostgresShared(_)
        ) {
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
            .filter(|r| bound_grant.as_ref().is_none_or(|g| *g == r.grant_id))
            .max_by_key(|r| r.grant.as_ref().map(|g| g.expires_at))
        else {
            return Err(refusal(
                "28000",
                format!(
                    "{user} has no active grant on {resource_name}; ask for one: jitgate request create --resource {resource_name} --role ROLE --duration 30m --reason \"…\""
                ),
            ));
        };
        let g = r.grant.as_ref().expect("filtered");
        let upstream = match &resource.kind {
            ResourceKind::PostgresShared(url) => shared_upstream(url.expose(), db)?,
            _ => {
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
                Upstream {
                    host: env("PGHOST"),
                    port: env("PGPORT").parse().unwrap_or(5432),
                    user: creds.username.clone(),
                    password: creds.password.clone(),
                    database: db.map(str::to_owned).unwrap_or_else(|| env("PGDATABASE")),
                }
            }
        };
        let database_masking = match &resource.kind {
            ResourceKind::PostgresShared(_) => None,
            _ => self.database_masking(&r.resource, &r.role, &upstream.database),
        };
        Ok(SessionGrant {
            principal: r.principal.clone(),
            resource: r.resource.clone(),
            role: r.role.clone(),
            grant_id: g.id.clone(),
            request_id: r.id.clone(),
            expires_at: g.expires_at,
            upstream,
            database_masking,
        })
    }

    /// In durable mode every event of a session goes through the intake journal, statements
    /// (which wait for it) and outcomes alike, so they reach the chain in the order they were
    /// made; in async mode none waits, and they go straight to the log.
    async fn record(&self, events: Vec<EventDraft>, mode: AuditMode) -> Result<(), AuthorityError> {
        let written = match mode {
            AuditMode::Durable => self.journal(events).await,
            AuditMode::Async => self.append(events).await,
        };
        Ok(written?)
    }
}

/// The configured upstream login of a `provisioning = "none"` resource.
fn shared_upstream(url: &str, db: Option<&str>) -> Result<Upstream, Refusal> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        refusal(
            "08006",
            format!("the resource's upstream_url is not a PostgreSQL URL: {e}"),
        )
    })?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let user = config.get_user().unwrap_or("postgres").to_owned();
    Ok(Upstream {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        password: config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
        database: db
            .map(str::to_owned)
            .or_else(|| config.get_dbname().map(str::to_owned))
            .unwrap_or_else(|| user.clone()),
        user,
    })
}
