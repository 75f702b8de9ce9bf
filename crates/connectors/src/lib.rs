//! Connectors make a grant real in the target system (an ephemeral database login, say) and take
//! it away again. One module per target kind, behind the [`Connector`] trait.

mod error;

use async_trait::async_trait;
use jitgate_core::Timestamp;

pub use error::ConnectorError;

/// What the connector needs to remove a privilege it created (e.g. the role's name). Stored with
/// the grant, so revocation survives restarts.
pub type Handle = serde_json::Value;

/// The grant a connector provisions.
#[derive(Debug, Clone)]
pub struct GrantSpec {
    pub grant_id: String,
    pub principal: String,
    pub resource: String,
    pub role: String,
    /// The connector-level privileges the role maps to (e.g. PostgreSQL roles to inherit).
    pub grants: Vec<String>,
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait Connector: Send + Sync + 'static {
    fn kind(&self) -> &'static str;

    /// Creates the privilege for the grant. Must be idempotent per grant id: a retry after a
    /// crash converges on one privilege, never two.
    async fn provision(&self, grant: &GrantSpec) -> Result<Option<Handle>, ConnectorError>;

    /// Moves the privilege's own end (e.g. `VALID UNTIL`) when a grant is extended.
    async fn extend(&self, handle: &Handle, expires_at: Timestamp) -> Result<(), ConnectorError>;

    /// Removes the privilege and ends the target's sessions that use it. Idempotent: revoking
    /// what is already gone succeeds.
    async fn revoke(&self, handle: &Handle) -> Result<(), ConnectorError>;

    /// Everything this connector created that still exists, for reconciliation.
    async fn list_managed(&self) -> Result<Vec<Handle>, ConnectorError>;
}

/// `kind = "none"`: jitgate tracks the grant (lifecycle, audit, gateway) but creates nothing in
/// the target.
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

    async fn list_managed(&self) -> Result<Vec<Handle>, ConnectorError> {
        Ok(vec![])
    }
}
