//! `jitgate resource check` for PostgreSQL: does the live server hold what jitgate promises?
//!
//! Two questions. Does it refuse a wrong password for a jitgate login (with `trust` in
//! `pg_hba.conf` for the client's host, any password works, and an ephemeral login is then only
//! as short-lived as jitgate's own removal of it)? And can a masked role's logins read a masked
//! column around its masks, through one of the target roles it joins or through PUBLIC?

use std::time::Duration;

use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{PostgresConnector, masking};
use crate::naming::{self, pg_ident, pg_literal};
use crate::{ConnectorError, Finding, RoleSpec, Severity};

pub(super) async fn check(
    c: &PostgresConnector,
    roles: &[RoleSpec],
) -> Result<Vec<Finding>, ConnectorError> {
    let mut findings = authentication(c).await?;
    for role in roles.iter().filter(|r| !r.masking.is_empty()) {
        findings.extend(role_exposures(c, role).await?);
    }
    Ok(findings)
}

/// Logs in as a fresh login with a wrong password, where grantees connect.
async fn authentication(c: &PostgresConnector) -> Result<Vec<Finding>, ConnectorError> {
    let probe = format!(
        "{}probe_{}",
        c.settings.role_prefix,
        naming::password()[..12].to_lowercase()
    );
    let role = pg_ident(&probe);
    let admin = c.client().await?;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD {} VALID UNTIL {}; COMMENT ON ROLE {role} IS 'jitgate resource check probe'",
            pg_literal(&naming::password()),
            pg_literal(&(jitgate_core::Timestamp::UNIX_EPOCH.to_string())),
        ))
        .await
        .map_err(|e| c.target_err(e))?;
    // VALID UNTIL in the past: even the right password is refused, so a login that gets in
    // got in without one.
    let (host, port) = c.client_host_port();
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(port)
        .user(&probe)
        .password(naming::password())
        .dbname(c.admin_database())
        .connect_timeout(Duration::from_secs(5));
    let attempt = config.connect(NoTls).await;
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
    let where_ = format!("{host}:{port}");
    Ok(match attempt {
        Ok(_) => vec![Finding {
            severity: Severity::Error,
            topic: "authentication".into(),
            message: format!(
                "PostgreSQL at {where_} let in a jitgate login with a wrong password and an expired validity: pg_hba.conf trusts this client (method trust). A grant's login then needs no password, and works after its window for anyone who knows its name until jitgate drops it; only the gateway's cut and the login's removal protect the window. Use scram-sha-256 for the hosts grantees connect from."
            ),
        }],
        Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD) => vec![],
        Err(e) => vec![Finding {
            severity: Severity::Warning,
            topic: "authentication".into(),
            message: format!(
                "could not test whether PostgreSQL at {where_} refuses wrong passwords: {e}"
            ),
        }],
    })
}

/// What a masked role's target roles, and PUBLIC, could read around its masks, with how to
/// fix each; plus masks that cannot be served.
pub(super) async fn role_exposures(
    c: &PostgresConnector,
    role: &RoleSpec,
) -> Result<Vec<Finding>, ConnectorError> {
    let names = masking::Names::new(&c.settings.role_prefix, &c.settings.resource, &role.name);
    let topic = format!("masking of role {}", role.name);
    let mut findings = Vec::new();
    let mut unmatched: Option<Vec<String>> = None;
    for db in c.databases_of(role.database.as_deref()) {
        let in_db =
            |e: Box<dyn std::error::Error + Send + Sync>| c.target_in(&format!("database {db}"), e);
        let client = c.connect_to(&db).await?;
        let plan = masking::plan(&client, &role.masking, &names.key)
            .await
            .map_err(|e| in_db(e.into()))?;
        for who in role.grants.iter().map(String::as_str).chain(["public"]) {
            let exposed = masking::exposures(&client, who, &plan, &role.masking)
                .await
                .map_err(|e| in_db(e.into()))?;
            if exposed.is_empty() {
                continue;
            }
            let (whom, fix) = if who == "public" {
                ("PUBLIC".to_owned(), "revoke it from PUBLIC".to_owned())
            } else {
                (
                    format!("target role {who}"),
                    format!(
                        "revoke SELECT on those tables (or columns) from {who}, or remove {who} from [resources.roles.{}] grants; the masked views in schema {} serve them masked",
                        role.name, names.views
                    ),
                )
            };
            findings.push(Finding {
                severity: Severity::Error,
                topic: topic.clone(),
                message: format!(
                    "in database {db}, {whom} can read what masking hides from role {}: {}; {fix}.",
                    role.name,
                    exposed.join("; ")
                ),
            });
        }
        for t in &plan.shadowed {
            findings.push(Finding {
                severity: Severity::Warning,
                topic: topic.clone(),
                message: format!(
                    "in database {db}, {}.{} has masked columns but shares its name with a table in another schema, so it gets no masked view: logins of role {} cannot read it",
                    t.schema, t.name, role.name
                ),
            });
        }
        let here: Vec<String> = plan.unmatched;
        unmatched = Some(match unmatched {
            None => here,
            Some(before) => before.into_iter().filter(|r| here.contains(r)).collect(),
        });
    }
    for rule in unmatched.unwrap_or_default() {
        findings.push(Finding {
            severity: Severity::Warning,
            topic: topic.clone(),
            message: format!(
                "masking rule {rule} matches no column in the databases of role {}: a typo?",
                role.name
            ),
        });
    }
    Ok(findings)
}
