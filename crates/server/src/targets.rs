//! The targets behind resources: which connector each resource gets (with the masking its
//! database must enforce), and the check that a target really holds what jitgate promises
//! (`jitgate resource check`, and once at every start).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jitgate_connectors::mysql::{MysqlConnector, MysqlSettings};
use jitgate_connectors::postgres::{PostgresConnector, PostgresSettings};
use jitgate_connectors::{Connector, Finding, MaskColumnRule, NoneConnector, RoleSpec, Severity};
use jitgate_core::masking::{Strategy, in_scope};
use jitgate_core::{EventDraft, Outcome};
use serde_json::json;

use crate::config::{Config, Resource, ResourceKind};
use crate::error::Error;
use crate::service::App;

/// The key of the `hash` masking strategy, in the data directory (mode 0600, made on first use).
pub fn masking_key(config: &Config) -> Result<[u8; 32], Error> {
    Ok(jitgate_audit::key_file::load_or_create(
        &config.data_dir.join(crate::MASKING_KEY_FILE),
        "masking key",
    )?)
}

/// The masking key, if some database must compute the `hash` strategy itself.
pub(crate) fn masking_key_if_needed(config: &Config) -> Result<Option<[u8; 32]>, Error> {
    let needed = config.resources.iter().any(|r| {
        matches!(r.kind, ResourceKind::Postgres(_))
            && role_specs(config, r)
                .iter()
                .flat_map(|s| &s.masking)
                .any(|m| m.strategy == Strategy::Hash)
    });
    needed.then(|| masking_key(config)).transpose()
}

/// What each role of a resource means in its target, with the column rules of `[[masking]]`
/// that apply to it.
pub fn role_specs(config: &Config, r: &Resource) -> Vec<RoleSpec> {
    r.roles
        .iter()
        .map(|(name, def)| RoleSpec {
            name: name.clone(),
            grants: def.grants.clone(),
            database: def.database.clone(),
            masking: config
                .masking
                .iter()
                .filter(|m| in_scope(&m.resources, &m.roles, &r.name, name))
                .flat_map(|m| {
                    m.columns.iter().map(|p| MaskColumnRule {
                        rule: m.name.clone(),
                        pattern: p.clone(),
                        strategy: m.strategy,
                    })
                })
                .collect(),
        })
        .collect()
}

/// The connector a resource's kind calls for. `masking_key` is needed only where a database
/// computes the `hash` strategy itself.
pub fn connector_for(
    config: &Config,
    r: &Resource,
    instance: &str,
    masking_key: Option<[u8; 32]>,
) -> Result<Arc<dyn Connector>, Error> {
    Ok(match &r.kind {
        // Nothing is created per grant; the gateway uses the configured upstream login.
        ResourceKind::None | ResourceKind::PostgresShared(_) => Arc::new(NoneConnector),
        ResourceKind::Postgres(t) => {
            let masking: BTreeMap<String, Vec<MaskColumnRule>> = role_specs(config, r)
                .into_iter()
                .filter(|s| !s.masking.is_empty())
                .map(|s| (s.name, s.masking))
                .collect();
            Arc::new(PostgresConnector::new(PostgresSettings {
                resource: r.name.clone(),
                admin_url: t.admin_url.expose().to_owned(),
                owner_role: t.owner_role.clone(),
                databases: t.databases.clone(),
                client_host: t.client_host.clone(),
                client_port: t.client_port,
                role_prefix: t.role_prefix.clone(),
                instance: instance.to_owned(),
                masking,
                masking_key,
            })?)
        }
        ResourceKind::Mysql(t) => Arc::new(MysqlConnector::new(MysqlSettings {
            resource: r.name.clone(),
            admin_url: t.admin_url.expose().to_owned(),
            client_host: t.client_host.clone(),
            client_port: t.client_port,
            role_prefix: t.role_prefix.clone(),
        })?),
    })
}

/// How long the check at start may take per resource before it is given up (and said so).
const CHECK_AT_START: Duration = Duration::from_secs(10);

impl App {
    /// What the live target of `resource` does not hold of jitgate's promises.
    pub async fn check_resource(&self, resource: &str) -> Result<Vec<Finding>, Error> {
        let r = self
            .config
            .resource(resource)
            .ok_or_else(|| Error::NotFound(format!("resource {resource}")))?;
        let Some(connector) = self.connectors.get(resource) else {
            return Ok(vec![]);
        };
        Ok(connector.check(&role_specs(&self.config, r)).await?)
    }

    /// Checks every resource's target once, before serving: each finding is logged loudly and
    /// audited as `resource.checked`, so a target that lets anyone in (or exposes masked
    /// columns) is never a silent surprise. A target that cannot be reached is retried by the
    /// connector's own work later; here it is only logged.
    pub(crate) async fn check_targets_at_start(&self) -> Result<(), Error> {
        let names: Vec<String> = self
            .config
            .resources
            .iter()
            .filter(|r| matches!(r.kind, ResourceKind::Postgres(_)))
            .map(|r| r.name.clone())
            .collect();
        for name in names {
            let findings = match tokio::time::timeout(CHECK_AT_START, self.check_resource(&name))
                .await
            {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    tracing::warn!(resource = %name, error = %e, "cannot check the target now");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(resource = %name, "checking the target took too long; skipped");
                    continue;
                }
            };
            if findings.is_empty() {
                continue;
            }
            for f in &findings {
                match f.severity {
                    Severity::Error => {
                        tracing::error!(resource = %name, topic = %f.topic, "{}", f.message)
                    }
                    Severity::Warning => {
                        tracing::warn!(resource = %name, topic = %f.topic, "{}", f.message)
                    }
                }
            }
            let failed = findings.iter().any(|f| f.severity == Severity::Error);
            let mut e = EventDraft::new(
                self.clock.now(),
                jitgate_core::event::SYSTEM_ACTOR,
                "resource.checked",
            )
            .details(json!({ "findings": findings }));
            if failed {
                e = e.outcome(Outcome::Failure);
            }
            e.resource = Some(name.clone());
            self.append(vec![e]).await?;
        }
        Ok(())
    }

    /// The schema of masked views through which the target enforces masking for a role's
    /// logins in `database`, if it does there (PostgreSQL with per-grant logins and column
    /// rules for the role; only the databases the connector installed the views in).
    pub fn database_masking(&self, resource: &str, role: &str, database: &str) -> Option<String> {
        let role_database = self
            .config
            .resource(resource)
            .and_then(|r| r.roles.get(role))
            .and_then(|r| r.database.as_deref());
        self.connectors
            .get(resource)?
            .database_masking(role, role_database, database)
    }
}
