//! Connectors make a grant real in the target system (an ephemeral database login) and take it
//! away again. One module per target kind, behind the [`Connector`] trait.

mod error;
pub mod mysql;
pub mod naming;
pub mod postgres;

use async_trait::async_trait;
use jitgate_core::Timestamp;
use jitgate_core::masking::{ColumnPattern, Strategy};

pub use error::ConnectorError;

/// What the connector needs to remove a privilege it created (e.g. the login's name). Stored
/// with the grant, so revocation survives restarts. Never holds a secret.
pub type Handle = serde_json::Value;

/// The grant a connector provisions.
#[derive(Debug, Clone)]
pub struct GrantSpec {
    pub grant_id: String,
    pub principal: String,
    pub resource: String,
    pub role: String,
    /// The target-level roles the grant's role maps to (PostgreSQL or MariaDB roles).
    pub grants: Vec<String>,
    /// The database the credentials point at, if the role names one.
    pub database: Option<String>,
    pub expires_at: Timestamp,
}

/// How the grantee connects with the grant's login.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// A URL that libpq/psql (or mysql clients) accept.
    pub dsn: String,
    /// Environment lines the target's own client reads as they are (`PGHOST=…`).
    pub env: Vec<(String, String)>,
    /// A client option file, for targets whose client reads its login from one rather than
    /// from the environment (MariaDB/MySQL: `mysql --defaults-extra-file=FILE`).
    pub option_file: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One column rule of `[[masking]]` that applies to a role: the database enforces it for that
/// role's logins where the connector can (PostgreSQL with per-grant logins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskColumnRule {
    /// The `[[masking]]` rule's name, for messages.
    pub rule: String,
    pub pattern: ColumnPattern,
    pub strategy: Strategy,
}

/// What one role of a resource gives a grant's login in the target, for [`Connector::check`].
#[derive(Debug, Clone, Default)]
pub struct RoleSpec {
    pub name: String,
    /// The target-level roles the role maps to.
    pub grants: Vec<String>,
    /// The database its credentials point at, if it names one.
    pub database: Option<String>,
    /// Column rules the database must enforce for it.
    pub masking: Vec<MaskColumnRule>,
}

/// How serious a finding of [`Connector::check`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing is exposed by it.
    Warning,
    /// A control does not hold in the target: a grant would expose what it must not, or the
    /// target lets logins in without their password.
    Error,
}

/// One thing [`Connector::check`] found in the live target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// What the check is about: `authentication`, or `masking` with the role's name.
    pub topic: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A privilege the connector finds in the target, for reconciliation.
#[derive(Debug, Clone)]
pub struct Managed {
    pub grant_id: String,
    pub handle: Handle,
    /// Disabled by `suspend` (no logins), not yet removed.
    pub suspended: bool,
}

#[async_trait]
pub trait Connector: Send + Sync + 'static {
    fn kind(&self) -> &'static str;

    /// Creates the privilege for the grant. Idempotent per grant id: a retry after a crash
    /// converges on one privilege, never two.
    async fn provision(&self, grant: &GrantSpec) -> Result<Option<Handle>, ConnectorError>;

    /// Moves the privilege's own end (e.g. `VALID UNTIL`) when a grant is extended.
    async fn extend(&self, handle: &Handle, expires_at: Timestamp) -> Result<(), ConnectorError>;

    /// Removes the privilege and ends the target's sessions that use it. Idempotent: revoking
    /// what is already gone succeeds.
    async fn revoke(&self, handle: &Handle) -> Result<(), ConnectorError>;

    /// Stops the login from working at once (no new logins; its sessions cut) but keeps it, so
    /// it can be resumed: the first step of ending a grant, taken before the end is recorded.
    /// Idempotent; suspending what is gone succeeds.
    async fn suspend(&self, handle: &Handle) -> Result<(), ConnectorError>;

    /// Undoes `suspend`, for a grant that stays active after all (the end was not recorded).
    /// Idempotent; resuming what is gone succeeds.
    async fn resume(&self, handle: &Handle) -> Result<(), ConnectorError>;

    /// Everything this connector created (for this jitgate instance) that still exists.
    async fn list_managed(&self) -> Result<Vec<Managed>, ConnectorError>;

    /// Credentials for an active grant's login, for its grantee.
    async fn credentials(&self, handle: &Handle) -> Result<Option<Credentials>, ConnectorError>;

    /// Checks against the live target what the controls promise: that it refuses a login's
    /// wrong password, and that no role's logins could read a column masking hides. Creates
    /// nothing that outlives the call.
    async fn check(&self, _roles: &[RoleSpec]) -> Result<Vec<Finding>, ConnectorError> {
        Ok(vec![])
    }

    /// The schema of masked views through which the target itself enforces masking for this
    /// role's logins in `database`, if it does there (`role_database` is the role's own
    /// database, if it names one).
    fn database_masking(
        &self,
        _role: &str,
        _role_database: Option<&str>,
        _database: &str,
    ) -> Option<String> {
        None
    }
}

/// `kind = "none"`: jitgate tracks the grant (lifecycle, audit) but creates nothing in a target.
#[derive(Debug, Default)]
pub struct NoneConnector;

#[async_trait]
impl Connector for NoneConnector {
    fn kind(&self) -> &'static str {
        "none"
    }

    async fn provision(&self, _grant: &GrantSpec) -> Result<Option<Handle>, ConnectorError> {
        Ok(None)
    }

    async fn extend(&self, _handle: &Handle, _expires_at: Timestamp) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn revoke(&self, _handle: &Handle) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn suspend(&self, _handle: &Handle) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn resume(&self, _handle: &Handle) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<Managed>, ConnectorError> {
        Ok(vec![])
    }

    async fn credentials(&self, _handle: &Handle) -> Result<Option<Credentials>, ConnectorError> {
        Ok(None)
    }
}

/// Passwords of live logins, kept in memory only (never on disk, never in a handle). After a
/// restart a connector sets a new password when credentials are asked for; open sessions are
/// not affected by that.
#[derive(Default)]
pub(crate) struct Passwords(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl Passwords {
    pub(crate) fn get(&self, login: &str) -> Option<String> {
        self.0.lock().expect("password lock").get(login).cloned()
    }

    pub(crate) fn set(&self, login: &str, password: &str) {
        self.0
            .lock()
            .expect("password lock")
            .insert(login.to_owned(), password.to_owned());
    }

    pub(crate) fn forget(&self, login: &str) {
        self.0.lock().expect("password lock").remove(login);
    }
}

/// Reads a string field of a handle.
fn handle_str<'a>(handle: &'a Handle, key: &str) -> Result<&'a str, ConnectorError> {
    handle
        .get(key)
        .and_then(|v| v.as_str())
        .ok_or_else(|| ConnectorError::Invalid {
            message: format!("handle {handle} has no {key:?}"),
            source: None,
        })
}
