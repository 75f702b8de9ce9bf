//! The raw shape of `jitgate.toml`, as serde reads it: unknown keys refused, defaults in one
//! place. The sections' validators turn it into the domain types of [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use jitgate_core::PrincipalKind;
use serde::Deserialize;

use super::RoleDef;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) principals: Vec<RawPrincipal>,
    #[serde(default)]
    pub(super) resources: Vec<RawResource>,
    #[serde(default)]
    pub(super) policies: Vec<RawPolicy>,
    pub(super) gateway: Option<RawGateway>,
    #[serde(default)]
    pub(super) audit: RawAudit,
    #[serde(default)]
    pub(super) retention: Vec<RawRetention>,
    #[serde(default)]
    pub(super) guardrails: Vec<RawGuardrail>,
    #[serde(default)]
    pub(super) masking: Vec<RawMasking>,
    #[serde(default)]
    pub(super) identity: jitgate_identity::RawIdentity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMasking {
    pub(super) name: String,
    #[serde(default)]
    pub(super) resources: Vec<String>,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    #[serde(default)]
    pub(super) columns: Vec<String>,
    #[serde(default)]
    pub(super) detectors: Vec<String>,
    #[serde(default = "default_strategy")]
    pub(super) strategy: String,
    pub(super) keep: Option<usize>,
}

fn default_strategy() -> String {
    "redact".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuardrail {
    pub(super) name: String,
    #[serde(default)]
    pub(super) resources: Vec<String>,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    #[serde(default)]
    pub(super) deny: Vec<String>,
    #[serde(default)]
    pub(super) tables: Vec<String>,
    #[serde(default)]
    pub(super) strict: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAudit {
    pub(super) anchors: Vec<String>,
    pub(super) archive: String,
    pub(super) checkpoint_events: u64,
    pub(super) checkpoint_interval: String,
    pub(super) retention_every: String,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            anchors: vec![],
            archive: "archive".into(),
            checkpoint_events: 1000,
            checkpoint_interval: "1s".into(),
            retention_every: "1h".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) class: String,
    pub(super) keep: String,
    pub(super) action: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    pub(super) postgres: Option<RawPgGateway>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPgGateway {
    #[serde(default = "default_gateway_listen")]
    pub(super) listen: String,
    /// "durable" (default: a statement runs only once its event is on disk) or "async".
    #[serde(default = "default_audit")]
    pub(super) audit: String,
    #[serde(default = "yes")]
    pub(super) record_params: bool,
    #[serde(default)]
    pub(super) allow_plaintext_remote: bool,
    /// PEM certificate chain and private key (relative to the config file) for TLS.
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
}

fn default_gateway_listen() -> String {
    "127.0.0.1:6432".into()
}

fn default_audit() -> String {
    "durable".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: String,
    pub(super) data_dir: PathBuf,
    pub(super) admins: Vec<String>,
    pub(super) auditors: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: "./jitgate-data".into(),
            admins: vec![],
            auditors: vec![],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStorage {
    pub(super) url: String,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            url: "sqlite://jitgate.db".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrincipal {
    pub(super) name: String,
    #[serde(default = "default_kind")]
    pub(super) kind: PrincipalKind,
    #[serde(default)]
    pub(super) groups: Vec<String>,
    pub(super) token_sha256: Option<String>,
}

fn default_kind() -> PrincipalKind {
    PrincipalKind::User
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) roles: BTreeMap<String, RoleDef>,
    /// postgres/mysql: exactly one of these three gives the admin connection URL.
    pub(super) admin_url: Option<String>,
    pub(super) admin_url_env: Option<String>,
    pub(super) admin_url_file: Option<PathBuf>,
    pub(super) owner_role: Option<String>,
    #[serde(default)]
    pub(super) databases: Vec<String>,
    pub(super) client_host: Option<String>,
    pub(super) client_port: Option<u16>,
    pub(super) role_prefix: Option<String>,
    /// postgres: "per_grant" (default: an ephemeral login per grant) or "none" (the gateway
    /// reaches the database with one configured credential, `upstream_url*`).
    pub(super) provisioning: Option<String>,
    pub(super) upstream_url: Option<String>,
    pub(super) upstream_url_env: Option<String>,
    pub(super) upstream_url_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) name: String,
    pub(super) principals: Vec<String>,
    pub(super) resources: Vec<String>,
    pub(super) roles: Vec<String>,
    pub(super) max_duration: String,
    /// How many extensions a grant may have; default: any number within max_duration.
    pub(super) max_extensions: Option<u32>,
    /// Whether a principal may hold two grants of the same role on the same resource at once.
    #[serde(default)]
    pub(super) allow_overlapping: bool,
    #[serde(default)]
    pub(super) require_reason: bool,
    pub(super) ticket_pattern: Option<String>,
    #[serde(default = "default_pending_timeout")]
    pub(super) pending_timeout: String,
    pub(super) approval: Option<RawApproval>,
    #[serde(default)]
    pub(super) auto_approve: Vec<RawAutoApprove>,
    pub(super) break_glass: Option<RawBreakGlass>,
}

fn default_pending_timeout() -> String {
    "1h".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    #[serde(default)]
    pub(super) approvers: Vec<String>,
    #[serde(default = "one")]
    pub(super) required: u32,
    #[serde(default)]
    pub(super) allow_self_approval: bool,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoApprove {
    pub(super) name: Option<String>,
    pub(super) principals: Vec<String>,
    pub(super) max_duration: String,
    pub(super) schedule: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreakGlass {
    pub(super) principals: Vec<String>,
    pub(super) max_duration: String,
}
