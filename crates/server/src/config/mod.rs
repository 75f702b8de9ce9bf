//! `jitgate.toml`: typed, validated, and every mistake reported with its file, line and key.
//!
//! Reading happens in two steps. `read` turns the text into the raw serde shape (`raw`; unknown
//! keys are refused), reporting every structural mistake. Then [`validate`] turns it into domain
//! types, one function per section, collecting every problem at once in a `check::Check`. Each
//! problem carries its key's path, which `check::Locator` maps back to a line of the file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jitgate_core::policy::Policy;
use jitgate_core::{Principal, Selector};
use serde::Deserialize;

use crate::error::{ConfigError, Problem};
use check::{Check, KeyPath, Locator, Seg, line_of, path_string};
use raw::RawConfig;

mod audit;
mod check;
mod gateway;
mod policies;
mod principals;
mod raw;
mod read;
mod refs;
mod resources;
mod retention;
mod rules;
mod server;
#[cfg(test)]
mod tests;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The PostgreSQL gateway, when configured: everything `jitgate_gateway::start` takes but
    /// the masking key, which lives in the data directory.
    pub gateway: Option<jitgate_gateway::GatewayConfig>,
    pub data_dir: PathBuf,
    pub admins: Vec<Selector>,
    pub auditors: Vec<Selector>,
    pub database_path: PathBuf,
    pub principals: Vec<PrincipalEntry>,
    pub resources: Vec<Resource>,
    pub policies: Vec<Policy>,
    pub audit: AuditConfig,
    /// `[[guardrails]]`: statement rules the gateway checks before forwarding (`gateway` holds
    /// them too, as the gateway takes them).
    pub guardrails: Vec<jitgate_gateway::guard::GuardRule>,
    /// `[[masking]]`: what the gateway masks in results.
    pub masking: Vec<jitgate_gateway::masking::MaskRule>,
    /// `[identity]`: OpenID Connect sign-in and workload identity providers.
    pub identity: jitgate_identity::IdentityConfig,
}

/// `[audit]` and `[[retention]]`: checkpoints, anchors, archive, retention rules.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Where every checkpoint is also written, outside the database.
    pub anchors: Vec<Anchor>,
    /// The local directory archive segments go to.
    pub archive: PathBuf,
    /// A checkpoint is signed after this many events, or `checkpoint_interval` after the last one,
    /// whichever comes first.
    pub checkpoint_events: u64,
    pub checkpoint_interval: Duration,
    /// How often `serve` runs a retention sweep (while any rule is configured).
    pub retention_every: Duration,
    pub retention: Vec<jitgate_audit::retention::Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// An append-only file of checkpoints, one JSON line each.
    File(PathBuf),
    /// A webhook that receives each checkpoint as JSON (signed), by POST.
    Webhook(String),
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anchor::File(p) => write!(f, "file://{}", p.display()),
            Anchor::Webhook(u) => f.write_str(u),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PrincipalEntry {
    pub principal: Principal,
    /// SHA-256 of the API token; `None` means the principal cannot use the API.
    pub token_sha256: Option<[u8; 32]>,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub name: String,
    pub kind: ResourceKind,
    pub description: Option<String>,
    pub roles: BTreeMap<String, RoleDef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// Tracked by jitgate only: lifecycle and audit, nothing created in a target.
    None,
    /// An ephemeral PostgreSQL login role per grant.
    Postgres(Target),
    /// An ephemeral MariaDB/MySQL user per grant.
    Mysql(Target),
    /// PostgreSQL reached only through the gateway, as one configured upstream login: nothing
    /// is created per grant and users never see a database password.
    PostgresShared(Secret),
}

impl ResourceKind {
    pub fn name(&self) -> &'static str {
        match self {
            ResourceKind::None => "none",
            ResourceKind::Postgres(_) => "postgres",
            ResourceKind::Mysql(_) => "mysql",
            ResourceKind::PostgresShared(_) => "postgres",
        }
    }
}

/// How jitgate reaches a database target to create and remove logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub admin_url: Secret,
    pub owner_role: Option<String>,
    pub databases: Vec<String>,
    pub client_host: Option<String>,
    pub client_port: Option<u16>,
    pub role_prefix: String,
}

/// A secret string: its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDef {
    /// What the role means in the target (e.g. PostgreSQL roles the ephemeral login joins).
    #[serde(default)]
    pub grants: Vec<String>,
    pub database: Option<String>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Relative paths are relative to the config file, so `serve` works from any directory.
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::parse_in(&text, &path.display().to_string(), dir)?;
        if config.data_dir.is_relative() {
            config.data_dir = dir.join(&config.data_dir);
        }
        if config.database_path.is_relative() {
            config.database_path = dir.join(&config.database_path);
        }
        if config.audit.archive.is_relative() {
            config.audit.archive = dir.join(&config.audit.archive);
        }
        Ok(config)
    }

    /// Parses and validates config text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse_in(text, origin, Path::new("."))
    }

    /// Like [`Config::parse`]; relative secret files are read from `base`.
    ///
    /// Every problem of the file is reported in one go: the structural ones (syntax, unknown
    /// keys, wrong types) and those of meaning, in the order of their lines.
    pub fn parse_in(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut read = read::read(text);
        let mut problems: Vec<Problem> = read
            .mistakes
            .iter()
            .map(|m| Problem {
                origin: origin.to_owned(),
                line: m.offset.map(|o| line_of(text, o)),
                key: read::path_string(&m.path),
                message: m.message.clone(),
            })
            .collect();
        if let Some(raw) = read.raw.take() {
            // Checks that name other entries would report false mistakes when a principal or
            // resource could not be read.
            let cross_refs = !read.lost_from("principals") && !read.lost_from("resources");
            match validate(raw, base, cross_refs) {
                Ok(config) if problems.is_empty() => return Ok(config),
                Ok(_) => {}
                Err(found) => {
                    let located = Locator::new(text);
                    problems.extend(found.into_iter().map(|(path, message)| {
                        let path = read.in_file(&path);
                        Problem {
                            origin: origin.to_owned(),
                            line: located.line(&path),
                            key: path_string(&path),
                            message,
                        }
                    }));
                }
            }
        }
        problems.sort_by_key(|p| p.line);
        Err(ConfigError::Invalid(problems))
    }

    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }
}

/// Turns the raw shape into a [`Config`], one section at a time, or names every problem.
fn validate(
    raw: RawConfig,
    base: &Path,
    cross_refs: bool,
) -> Result<Config, Vec<(KeyPath, String)>> {
    let mut c = Check::new(cross_refs);
    let server = server::server(&mut c, &raw);
    let audit = audit::audit(&mut c, &raw, base);
    let principals = principals::principals(&mut c, &raw.principals);
    let resources = resources::resources(&mut c, raw.resources, base);
    let policies = policies::policies(&mut c, &raw.policies);
    let identity = identity(&mut c, &raw.identity, base);
    if c.cross_refs {
        refs::references(&mut c, &principals, &resources, &policies, &identity);
    }
    let guardrails = rules::guardrails(&mut c, &raw.guardrails, &resources);
    let masking = rules::masking(&mut c, &raw.masking, &resources);
    let gateway = gateway::gateway(&mut c, raw.gateway.as_ref(), base, &guardrails, &masking);
    c.finish()?;
    Ok(Config {
        listen: server.listen,
        gateway,
        data_dir: raw.server.data_dir,
        admins: server.admins,
        auditors: server.auditors,
        database_path: server.database_path,
        principals,
        resources,
        policies,
        audit,
        guardrails,
        masking,
        identity,
    })
}

/// `[identity]`, checked by the identity crate; its problems are placed under `identity.`.
fn identity(
    c: &mut Check,
    raw: &jitgate_identity::RawIdentity,
    base: &Path,
) -> jitgate_identity::IdentityConfig {
    jitgate_identity::config::validate(raw, base).unwrap_or_else(|found| {
        for (path, message) in found {
            let mut at = vec![Seg::Key("identity")];
            at.extend(path.into_iter().map(|s| match s {
                jitgate_identity::config::Seg::Key(k) => Seg::Key(k),
                jitgate_identity::config::Seg::Index(i) => Seg::Index(i),
            }));
            c.add(at, message);
        }
        Default::default()
    })
}
