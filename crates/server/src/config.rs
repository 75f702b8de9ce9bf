//! `jitgate.toml`: typed, validated, and every mistake reported with its file, line and key.
//!
//! Parsing happens in two steps: serde reads the raw shape (unknown keys are refused), then
//! [`validate`] turns it into domain types, collecting every problem at once. Each problem carries
//! the key's path, which is mapped back to a line of the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use glob::Pattern;
use jitgate_core::policy::{ApprovalRule, AutoApprove, BreakGlass, Policy, TicketPattern};
use jitgate_core::schedule::Schedule;
use jitgate_core::{Principal, PrincipalKind, Selector, duration};
use serde::Deserialize;

use crate::error::ConfigError;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The PostgreSQL gateway, when configured.
    pub gateway: Option<GatewayConfig>,
    pub data_dir: PathBuf,
    pub admins: Vec<Selector>,
    pub auditors: Vec<Selector>,
    pub database_path: PathBuf,
    pub principals: Vec<PrincipalEntry>,
    pub resources: Vec<Resource>,
    pub policies: Vec<Policy>,
    pub audit: AuditConfig,
    /// `[[guardrails]]`: statement rules the gateway checks before forwarding.
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
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Certificate chain and key files for TLS, both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub audit: jitgate_gateway::AuditMode,
    pub record_params: bool,
    pub allow_plaintext_remote: bool,
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
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            message: e.to_string(),
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
    pub fn parse_in(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError::Invalid(vec![Problem {
                origin: origin.to_owned(),
                line,
                key: String::new(),
                message: e.message().trim().to_owned(),
            }])
        })?;
        validate(raw, base).map_err(|problems| {
            let located = Locator::new(text);
            ConfigError::Invalid(
                problems
                    .into_iter()
                    .map(|(path, message)| Problem {
                        origin: origin.to_owned(),
                        line: located.line(&path),
                        key: path_string(&path),
                        message,
                    })
                    .collect(),
            )
        })
    }

    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }
}

/// One mistake in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

// ---------------------------------------------------------------- raw shape

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    principals: Vec<RawPrincipal>,
    #[serde(default)]
    resources: Vec<RawResource>,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    gateway: Option<RawGateway>,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    retention: Vec<RawRetention>,
    #[serde(default)]
    guardrails: Vec<RawGuardrail>,
    #[serde(default)]
    masking: Vec<RawMasking>,
    #[serde(default)]
    identity: jitgate_identity::RawIdentity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMasking {
    name: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    detectors: Vec<String>,
    #[serde(default = "default_strategy")]
    strategy: String,
    keep: Option<usize>,
}

fn default_strategy() -> String {
    "redact".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuardrail {
    name: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    strict: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    anchors: Vec<String>,
    archive: String,
    checkpoint_events: u64,
    checkpoint_interval: String,
    retention_every: String,
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
struct RawRetention {
    class: String,
    keep: String,
    action: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    postgres: Option<RawPgGateway>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPgGateway {
    #[serde(default = "default_gateway_listen")]
    listen: String,
    /// "durable" (default: a statement runs only once its event is on disk) or "async".
    #[serde(default = "default_audit")]
    audit: String,
    #[serde(default = "yes")]
    record_params: bool,
    #[serde(default)]
    allow_plaintext_remote: bool,
    /// PEM certificate chain and private key (relative to the config file) for TLS.
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
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
struct RawServer {
    listen: String,
    data_dir: PathBuf,
    admins: Vec<String>,
    auditors: Vec<String>,
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
struct RawStorage {
    url: String,
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
struct RawPrincipal {
    name: String,
    #[serde(default = "default_kind")]
    kind: PrincipalKind,
    #[serde(default)]
    groups: Vec<String>,
    token_sha256: Option<String>,
}

fn default_kind() -> PrincipalKind {
    PrincipalKind::User
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: String,
    kind: String,
    description: Option<String>,
    #[serde(default)]
    roles: BTreeMap<String, RoleDef>,
    /// postgres/mysql: exactly one of these three gives the admin connection URL.
    admin_url: Option<String>,
    admin_url_env: Option<String>,
    admin_url_file: Option<PathBuf>,
    owner_role: Option<String>,
    #[serde(default)]
    databases: Vec<String>,
    client_host: Option<String>,
    client_port: Option<u16>,
    role_prefix: Option<String>,
    /// postgres: "per_grant" (default: an ephemeral login per grant) or "none" (the gateway
    /// reaches the database with one configured credential, `upstream_url*`).
    provisioning: Option<String>,
    upstream_url: Option<String>,
    upstream_url_env: Option<String>,
    upstream_url_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    principals: Vec<String>,
    resources: Vec<String>,
    roles: Vec<String>,
    max_duration: String,
    /// How many extensions a grant may have; default: any number within max_duration.
    max_extensions: Option<u32>,
    /// Whether a principal may hold two grants of the same role on the same resource at once.
    #[serde(default)]
    allow_overlapping: bool,
    #[serde(default)]
    require_reason: bool,
    ticket_pattern: Option<String>,
    #[serde(default = "default_pending_timeout")]
    pending_timeout: String,
    approval: Option<RawApproval>,
    #[serde(default)]
    auto_approve: Vec<RawAutoApprove>,
    break_glass: Option<RawBreakGlass>,
}

fn default_pending_timeout() -> String {
    "1h".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default = "one")]
    required: u32,
    #[serde(default)]
    allow_self_approval: bool,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoApprove {
    name: Option<String>,
    principals: Vec<String>,
    max_duration: String,
    schedule: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakGlass {
    principals: Vec<String>,
    max_duration: String,
}

// ---------------------------------------------------------------- validation

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

/// Where a value sits in the file: `policies[0].approval.approvers`.
type KeyPath = Vec<Seg>;

/// Collects problems while converting raw values.
#[derive(Default)]
struct Check {
    problems: Vec<(KeyPath, String)>,
}

impl Check {
    fn add(&mut self, path: KeyPath, message: impl Into<String>) {
        self.problems.push((path, message.into()));
    }

    fn ok<T, E: fmt::Display>(&mut self, path: KeyPath, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.add(path, e.to_string())).ok()
    }

    /// Each item that `parse` takes; each one it refuses is a problem, worded by `why`.
    fn each<T>(
        &mut self,
        path: KeyPath,
        items: &[String],
        parse: impl Fn(&str) -> Option<T>,
        why: impl Fn(&str) -> String,
    ) -> Vec<T> {
        items
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                self.ok(with(&path, Seg::Index(i)), parse(s).ok_or_else(|| why(s)))
            })
            .collect()
    }

    fn selectors(&mut self, path: KeyPath, items: &[String]) -> Vec<Selector> {
        items
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.ok(with(&path, Seg::Index(i)), s.parse::<Selector>()))
            .collect()
    }

    fn duration(&mut self, path: KeyPath, text: &str) -> Duration {
        self.ok(path, duration::parse(text))
            .unwrap_or(Duration::from_secs(1))
    }

    fn patterns(&mut self, path: KeyPath, items: &[String], what: &str) -> Vec<Pattern> {
        if items.is_empty() {
            self.add(path.clone(), format!("must name at least one {what}"));
        }
        items
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                self.ok(
                    with(&path, Seg::Index(i)),
                    Pattern::new(s).map_err(|e| format!("invalid glob {s:?}: {e}")),
                )
            })
            .collect()
    }
}

fn with(path: &KeyPath, seg: Seg) -> KeyPath {
    let mut p = path.clone();
    p.push(seg);
    p
}

fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<(KeyPath, String)>> {
    let mut c = Check::default();
    let server = vec![Seg::Key("server")];
    let listen = c
        .ok(
            with(&server, Seg::Key("listen")),
            raw.server
                .listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("{:?} is not HOST:PORT ({e})", raw.server.listen)),
        )
        .unwrap_or_else(|| ([127, 0, 0, 1], 8080).into());
    let admins = c.selectors(with(&server, Seg::Key("admins")), &raw.server.admins);
    let gateway = raw
        .gateway
        .as_ref()
        .and_then(|g| g.postgres.as_ref())
        .map(|g| {
            let at = |k: &'static str| vec![Seg::Key("gateway"), Seg::Key("postgres"), Seg::Key(k)];
            let audit = match g.audit.as_str() {
                "durable" => jitgate_gateway::AuditMode::Durable,
                "async" => jitgate_gateway::AuditMode::Async,
                other => {
                    c.add(
                        at("audit"),
                        format!("{other:?} is not an audit mode; use \"durable\" or \"async\""),
                    );
                    jitgate_gateway::AuditMode::Durable
                }
            };
            GatewayConfig {
                listen: c
                    .ok(
                        at("listen"),
                        g.listen
                            .parse::<SocketAddr>()
                            .map_err(|e| format!("{:?} is not HOST:PORT ({e})", g.listen)),
                    )
                    .unwrap_or_else(|| ([127, 0, 0, 1], 6432).into()),
                audit,
                record_params: g.record_params,
                allow_plaintext_remote: g.allow_plaintext_remote,
                tls: match (&g.tls_cert, &g.tls_key) {
                    (Some(cert), Some(key)) => {
                        let at_base = |p: &PathBuf| {
                            if p.is_relative() {
                                base.join(p)
                            } else {
                                p.clone()
                            }
                        };
                        let (cert, key) = (at_base(cert), at_base(key));
                        for (k, file) in [("tls_cert", &cert), ("tls_key", &key)] {
                            if let Err(e) = std::fs::metadata(file) {
                                c.add(at(k), format!("cannot read {}: {e}", file.display()));
                            }
                        }
                        Some((cert, key))
                    }
                    (None, None) => None,
                    _ => {
                        c.add(at("tls_cert"), "set both tls_cert and tls_key, or neither");
                        None
                    }
                },
            }
        });
    let auditors = c.selectors(with(&server, Seg::Key("auditors")), &raw.server.auditors);
    let audit = audit_config(&mut c, &raw, base);

    let url_path = vec![Seg::Key("storage"), Seg::Key("url")];
    let database_path = match raw.storage.url.strip_prefix("sqlite://") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ if raw.storage.url.starts_with("postgres") => {
            c.add(
                url_path,
                "PostgreSQL storage is not available in this version yet; use sqlite://FILE",
            );
            PathBuf::new()
        }
        _ => {
            c.add(
                url_path,
                format!(
                    "{:?} is not a storage URL; expected sqlite://FILE (relative to data_dir)",
                    raw.storage.url
                ),
            );
            PathBuf::new()
        }
    };
    let database_path = if database_path.is_relative() {
        raw.server.data_dir.join(database_path)
    } else {
        database_path
    };

    let mut principals = Vec::new();
    let mut names = HashSet::new();
    let mut digests = HashMap::new();
    for (i, p) in raw.principals.iter().enumerate() {
        let path = vec![Seg::Key("principals"), Seg::Index(i)];
        if p.name.trim().is_empty() || p.name.contains(':') || p.name.chars().any(char::is_control)
        {
            c.add(
                with(&path, Seg::Key("name")),
                format!(
                    "{:?} is not a valid principal name (non-empty, no ':' or control characters)",
                    p.name
                ),
            );
        }
        if !names.insert(p.name.clone()) {
            c.add(
                with(&path, Seg::Key("name")),
                format!("principal {:?} is defined twice", p.name),
            );
        }
        let token_sha256 = p.token_sha256.as_deref().and_then(|hexed| {
            let bytes = hex::decode(hexed.trim()).ok().filter(|b| b.len() == 32);
            let digest: Option<[u8; 32]> = bytes.and_then(|b| b.try_into().ok());
            match digest {
                None => {
                    c.add(
                        with(&path, Seg::Key("token_sha256")),
                        "must be 64 hex digits (the SHA-256 printed by `jitgate token new`)",
                    );
                    None
                }
                Some(d) => {
                    if let Some(other) = digests.insert(d, p.name.clone()) {
                        c.add(
                            with(&path, Seg::Key("token_sha256")),
                            format!("the same token digest is already used by principal {other:?}"),
                        );
                    }
                    Some(d)
                }
            }
        });
        principals.push(PrincipalEntry {
            principal: Principal {
                name: p.name.clone(),
                kind: p.kind,
                groups: p.groups.clone(),
            },
            token_sha256,
        });
    }

    let mut resources = Vec::new();
    let mut resource_names = HashSet::new();
    for (i, r) in raw.resources.into_iter().enumerate() {
        let path = vec![Seg::Key("resources"), Seg::Index(i)];
        if r.name.trim().is_empty()
            || r.name
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control())
        {
            c.add(
                with(&path, Seg::Key("name")),
                format!(
                    "{:?} is not a valid resource name (non-empty, no spaces)",
                    r.name
                ),
            );
        }
        if !resource_names.insert(r.name.clone()) {
            c.add(
                with(&path, Seg::Key("name")),
                format!("resource {:?} is defined twice", r.name),
            );
        }
        let kind = match r.kind.as_str() {
            "none" => {
                let extra = [
                    ("admin_url", r.admin_url.is_some()),
                    ("admin_url_env", r.admin_url_env.is_some()),
                    ("admin_url_file", r.admin_url_file.is_some()),
                    ("owner_role", r.owner_role.is_some()),
                ];
                for (key, set) in extra {
                    if set {
                        c.add(with(&path, Seg::Key(key)), "only postgres and mysql resources take a connection; kind \"none\" creates nothing in a target");
                    }
                }
                ResourceKind::None
            }
            "postgres" => {
                match r.provisioning.as_deref().unwrap_or("per_grant") {
                    "per_grant" => ResourceKind::Postgres(target(&mut c, &path, &r, base)),
                    "none" => {
                        if r.admin_url.is_some()
                            || r.admin_url_env.is_some()
                            || r.admin_url_file.is_some()
                        {
                            c.add(path.clone(), "with provisioning = \"none\" jitgate creates no logins: set upstream_url*, not admin_url*");
                        }
                        let url = secret_url(
                            &mut c,
                            &path,
                            base,
                            ["upstream_url", "upstream_url_env", "upstream_url_file"],
                            (&r.upstream_url, &r.upstream_url_env, &r.upstream_url_file),
                        );
                        ResourceKind::PostgresShared(Secret(url))
                    }
                    other => {
                        c.add(with(&path, Seg::Key("provisioning")), format!("{other:?} is not a provisioning mode; use \"per_grant\" or \"none\""));
                        ResourceKind::None
                    }
                }
            }
            "mysql" => {
                if r.owner_role.is_some() {
                    c.add(
                        with(&path, Seg::Key("owner_role")),
                        "MariaDB/MySQL objects have no owner to reassign; remove owner_role",
                    );
                }
                ResourceKind::Mysql(target(&mut c, &path, &r, base))
            }
            other => {
                c.add(
                    with(&path, Seg::Key("kind")),
                    format!("unknown resource kind {other:?}; one of: none, postgres, mysql"),
                );
                ResourceKind::None
            }
        };
        if r.roles.is_empty() {
            c.add(
                with(&path, Seg::Key("roles")),
                "a resource needs at least one role ([resources.roles.NAME])",
            );
        }
        resources.push(Resource {
            name: r.name,
            kind,
            description: r.description,
            roles: r.roles,
        });
    }

    let mut policies = Vec::new();
    let mut policy_names = HashSet::new();
    for (i, p) in raw.policies.iter().enumerate() {
        let path = vec![Seg::Key("policies"), Seg::Index(i)];
        let at = |k: &'static str| with(&path, Seg::Key(k));
        if p.name.trim().is_empty() {
            c.add(at("name"), "a policy needs a name");
        }
        if !policy_names.insert(p.name.clone()) {
            c.add(
                at("name"),
                format!("policy {:?} is defined twice; names must be unique", p.name),
            );
        }
        if p.principals.is_empty() {
            c.add(
                at("principals"),
                "must name at least one principal selector (user:NAME, service:NAME, group:NAME)",
            );
        }
        let max_duration = c.duration(at("max_duration"), &p.max_duration);
        let ticket_pattern = p
            .ticket_pattern
            .as_ref()
            .and_then(|t| c.ok(at("ticket_pattern"), TicketPattern::new(t)));
        let approval = match &p.approval {
            Some(a) => ApprovalRule {
                approvers: c.selectors(with(&at("approval"), Seg::Key("approvers")), &a.approvers),
                required: a.required,
                allow_self_approval: a.allow_self_approval,
            },
            None => ApprovalRule {
                approvers: vec![],
                required: 1,
                allow_self_approval: false,
            },
        };
        if approval.required > 0 && p.approval.as_ref().is_none_or(|a| a.approvers.is_empty()) {
            c.add(at("approval"), format!("requires {} approval(s) but names no approvers; set approval.approvers, or required = 0 to approve without review", approval.required));
        }
        let auto_approve = p
            .auto_approve
            .iter()
            .enumerate()
            .map(|(j, a)| {
                let ap = with(&at("auto_approve"), Seg::Index(j));
                AutoApprove {
                    name: a
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("auto_approve[{j}]")),
                    principals: c.selectors(with(&ap, Seg::Key("principals")), &a.principals),
                    max_duration: c.duration(with(&ap, Seg::Key("max_duration")), &a.max_duration),
                    schedule: a
                        .schedule
                        .as_ref()
                        .and_then(|s| c.ok(with(&ap, Seg::Key("schedule")), Schedule::parse(s))),
                }
            })
            .collect();
        let break_glass = p.break_glass.as_ref().map(|b| {
            let bp = at("break_glass");
            BreakGlass {
                principals: c.selectors(with(&bp, Seg::Key("principals")), &b.principals),
                max_duration: c.duration(with(&bp, Seg::Key("max_duration")), &b.max_duration),
            }
        });
        policies.push(Policy {
            name: p.name.clone(),
            principals: c.selectors(at("principals"), &p.principals),
            resources: c.patterns(at("resources"), &p.resources, "resource"),
            roles: c.patterns(at("roles"), &p.roles, "role"),
            max_duration,
            max_extensions: p.max_extensions,
            allow_overlapping: p.allow_overlapping,
            require_reason: p.require_reason,
            ticket_pattern,
            pending_timeout: c.duration(at("pending_timeout"), &p.pending_timeout),
            approval,
            auto_approve,
            break_glass,
        });
    }
    // A policy for a role that no matching resource defines is almost always a typo.
    for (i, p) in policies.iter().enumerate() {
        let matched: Vec<&Resource> = resources
            .iter()
            .filter(|r| p.resources.iter().any(|g| g.matches(&r.name)))
            .collect();
        for (j, role) in p.roles.iter().enumerate() {
            if !matched.is_empty()
                && !matched
                    .iter()
                    .any(|r| r.roles.keys().any(|k| role.matches(k)))
            {
                c.add(
                    vec![
                        Seg::Key("policies"),
                        Seg::Index(i),
                        Seg::Key("roles"),
                        Seg::Index(j),
                    ],
                    format!(
                        "no resource matching this policy defines role {:?}",
                        role.as_str()
                    ),
                );
            }
        }
    }

    let guardrails = guardrails(&mut c, &raw.guardrails, &resources);
    let masking = masking(&mut c, &raw.masking, &resources);
    let identity =
        jitgate_identity::config::validate(&raw.identity, base).unwrap_or_else(|found| {
            for (path, message) in found {
                let mut at = vec![Seg::Key("identity")];
                at.extend(path.into_iter().map(|s| match s {
                    jitgate_identity::config::Seg::Key(k) => Seg::Key(k),
                    jitgate_identity::config::Seg::Index(i) => Seg::Index(i),
                }));
                c.add(at, message);
            }
            Default::default()
        });

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Config {
        listen,
        gateway,
        data_dir: raw.server.data_dir,
        admins,
        auditors,
        database_path,
        principals,
        resources,
        policies,
        audit,
        guardrails,
        masking,
        identity,
    })
}

/// Checks a rule's name and scope (shared by guardrails and masking rules): the name is
/// unique and plain, every resource exists, every role exists on a resource in scope.
fn rule_scope(
    c: &mut Check,
    path: &KeyPath,
    what: &str,
    names: &mut HashSet<String>,
    (name, rule_resources, roles): (&str, &[String], &[String]),
    resources: &[Resource],
) {
    let at = |k: &'static str| with(path, Seg::Key(k));
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        c.add(
            at("name"),
            format!("{name:?} is not a rule name (letters, digits, '-', '_', '.')"),
        );
    } else if !names.insert(name.to_owned()) {
        c.add(at("name"), format!("{what} {name:?} is defined twice"));
    }
    for (j, r) in rule_resources.iter().enumerate() {
        if !resources.iter().any(|res| &res.name == r) {
            c.add(
                with(&at("resources"), Seg::Index(j)),
                format!("no resource is named {r:?}"),
            );
        }
    }
    for (j, role) in roles.iter().enumerate() {
        let defined = resources
            .iter()
            .filter(|res| rule_resources.is_empty() || rule_resources.contains(&res.name))
            .any(|res| res.roles.contains_key(role));
        if !defined {
            c.add(
                with(&at("roles"), Seg::Index(j)),
                format!("no resource this rule covers defines role {role:?}"),
            );
        }
    }
}

fn masking(
    c: &mut Check,
    raw: &[RawMasking],
    resources: &[Resource],
) -> Vec<jitgate_gateway::masking::MaskRule> {
    use jitgate_gateway::mask::{Detector, Strategy};
    use jitgate_gateway::masking::{ColumnPattern, MaskRule};
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (i, m) in raw.iter().enumerate() {
        let path = vec![Seg::Key("masking"), Seg::Index(i)];
        let at = |k: &'static str| with(&path, Seg::Key(k));
        rule_scope(
            c,
            &path,
            "masking rule",
            &mut names,
            (&m.name, &m.resources, &m.roles),
            resources,
        );
        let columns = c.each(at("columns"), &m.columns, ColumnPattern::parse, |col| {
            format!("{col:?} is not a column (COLUMN, TABLE.COLUMN or SCHEMA.TABLE.COLUMN; '*' for any part)")
        });
        let detectors = c.each(at("detectors"), &m.detectors, Detector::parse, |d| {
            let all: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
            format!("{d:?} is not a detector; use one of {}", all.join(", "))
        });
        if m.columns.is_empty() && m.detectors.is_empty() {
            c.add(
                at("columns"),
                "the rule masks nothing: give columns, detectors, or both",
            );
        }
        let strategy = match (m.strategy.as_str(), m.keep) {
            ("partial", keep) => Strategy::Partial {
                keep: keep.unwrap_or(4),
            },
            (_, Some(_)) => {
                c.add(at("keep"), "keep goes with strategy = \"partial\" only");
                Strategy::Redact
            }
            ("redact", None) => Strategy::Redact,
            ("hash", None) => Strategy::Hash,
            ("null", None) => Strategy::Null,
            (other, None) => {
                c.add(
                    at("strategy"),
                    format!("{other:?} is not a strategy; use redact, partial, hash or null"),
                );
                Strategy::Redact
            }
        };
        rules.push(MaskRule {
            name: m.name.clone(),
            resources: m.resources.clone(),
            roles: m.roles.clone(),
            columns,
            detectors,
            strategy,
        });
    }
    rules
}

fn guardrails(
    c: &mut Check,
    raw: &[RawGuardrail],
    resources: &[Resource],
) -> Vec<jitgate_gateway::guard::GuardRule> {
    use jitgate_gateway::guard::{GuardRule, Kind, TablePattern};
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (i, g) in raw.iter().enumerate() {
        let path = vec![Seg::Key("guardrails"), Seg::Index(i)];
        let at = |k: &'static str| with(&path, Seg::Key(k));
        rule_scope(
            c,
            &path,
            "guardrail",
            &mut names,
            (&g.name, &g.resources, &g.roles),
            resources,
        );
        let deny = c.each(at("deny"), &g.deny, Kind::parse, |k| {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "{k:?} is not a statement kind; use one of {}",
                all.join(", ")
            )
        });
        let tables = c.each(at("tables"), &g.tables, TablePattern::parse, |t| {
            format!("{t:?} is not a table (TABLE or SCHEMA.TABLE; '*' for any part)")
        });
        if g.deny.is_empty() && g.tables.is_empty() && !g.strict {
            c.add(
                at("deny"),
                "the rule blocks nothing: give deny, tables, or strict = true",
            );
        }
        rules.push(GuardRule {
            name: g.name.clone(),
            resources: g.resources.clone(),
            roles: g.roles.clone(),
            deny,
            tables,
            strict: g.strict,
        });
    }
    rules
}

fn audit_config(c: &mut Check, raw: &RawConfig, base: &Path) -> AuditConfig {
    let at = |k: &'static str| vec![Seg::Key("audit"), Seg::Key(k)];
    let a = &raw.audit;
    let data_dir = base.join(&raw.server.data_dir);
    let mut anchors = Vec::new();
    for (i, url) in a.anchors.iter().enumerate() {
        let path = with(&at("anchors"), Seg::Index(i));
        if let Some(file) = url.strip_prefix("file://") {
            let file = PathBuf::from(file);
            if !file.is_absolute() {
                c.add(path, format!("{url:?}: a file anchor needs an absolute path (file:///var/log/jitgate/checkpoints)"));
            } else if file.starts_with(&data_dir)
                || data_dir.canonicalize().is_ok_and(|d| file.starts_with(d))
            {
                c.add(path, format!("{url:?} is inside the data directory; an anchor must live elsewhere, or whoever rewrites the log rewrites it too"));
            } else {
                anchors.push(Anchor::File(file));
            }
        } else if url.starts_with("https://") || url.starts_with("http://") {
            anchors.push(Anchor::Webhook(url.clone()));
        } else {
            c.add(
                path,
                format!("{url:?} is not an anchor; use file:///PATH, https://URL or http://URL"),
            );
        }
    }
    let archive = match a.archive.strip_prefix("file://") {
        Some(dir) => PathBuf::from(dir),
        None if a.archive.contains("://") => {
            c.add(
                at("archive"),
                format!(
                    "{:?}: only a local directory is supported in this version",
                    a.archive
                ),
            );
            PathBuf::new()
        }
        None => raw.server.data_dir.join(&a.archive), // an absolute path replaces data_dir
    };
    if a.checkpoint_events == 0 {
        c.add(at("checkpoint_events"), "must be at least 1");
    }
    let mut retention: Vec<jitgate_audit::retention::Rule> = Vec::new();
    for (i, r) in raw.retention.iter().enumerate() {
        let path = vec![Seg::Key("retention"), Seg::Index(i)];
        let classes = jitgate_audit::retention::CLASSES;
        if !classes.contains(&r.class.as_str()) {
            c.add(
                with(&path, Seg::Key("class")),
                format!(
                    "{:?} is not an event class; use one of {}",
                    r.class,
                    classes.join(", ")
                ),
            );
        } else if retention.iter().any(|x| x.class == r.class) {
            c.add(
                with(&path, Seg::Key("class")),
                format!("class {:?} already has a rule", r.class),
            );
        }
        let action = match r.action.as_str() {
            "archive" => jitgate_audit::retention::RetentionAction::Archive,
            "delete" => jitgate_audit::retention::RetentionAction::Delete,
            other => {
                c.add(
                    with(&path, Seg::Key("action")),
                    format!("{other:?} is not a retention action; use \"archive\" or \"delete\""),
                );
                jitgate_audit::retention::RetentionAction::Archive
            }
        };
        retention.push(jitgate_audit::retention::Rule {
            class: r.class.clone(),
            keep: c.duration(with(&path, Seg::Key("keep")), &r.keep),
            action,
        });
    }
    AuditConfig {
        anchors,
        archive,
        checkpoint_events: a.checkpoint_events.max(1),
        checkpoint_interval: c.duration(at("checkpoint_interval"), &a.checkpoint_interval),
        retention_every: c.duration(at("retention_every"), &a.retention_every),
        retention,
    }
}

/// The connection settings of a postgres or mysql resource; the admin URL from exactly one of
/// `admin_url`, `admin_url_env` (an environment variable) or `admin_url_file`.
fn target(c: &mut Check, path: &KeyPath, r: &RawResource, base: &Path) -> Target {
    if r.upstream_url.is_some() || r.upstream_url_env.is_some() || r.upstream_url_file.is_some() {
        c.add(
            path.clone(),
            "upstream_url* is for postgres resources with provisioning = \"none\"",
        );
    }
    let url = secret_url(
        c,
        path,
        base,
        ["admin_url", "admin_url_env", "admin_url_file"],
        (&r.admin_url, &r.admin_url_env, &r.admin_url_file),
    );
    let prefix = r.role_prefix.clone().unwrap_or_else(|| "jit_".into());
    if prefix.is_empty()
        || prefix.len() > 12
        || !prefix
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
    {
        c.add(
            with(path, Seg::Key("role_prefix")),
            "must be 1 to 12 characters of a-z, 0-9 and _",
        );
    }
    Target {
        admin_url: Secret(url),
        owner_role: r.owner_role.clone(),
        databases: r.databases.clone(),
        client_host: r.client_host.clone(),
        client_port: r.client_port,
        role_prefix: prefix,
    }
}

/// A secret URL given as exactly one of its three keys: inline, an environment variable, or a
/// file (relative to the config file).
fn secret_url(
    c: &mut Check,
    path: &KeyPath,
    base: &Path,
    [name, env_key, file_key]: [&'static str; 3],
    (inline, env, file): (&Option<String>, &Option<String>, &Option<PathBuf>),
) -> String {
    match (inline, env, file) {
        (Some(url), None, None) => url.clone(),
        (None, Some(var), None) => std::env::var(var).unwrap_or_else(|_| {
            c.add(
                with(path, Seg::Key(env_key)),
                format!("environment variable {var} is not set"),
            );
            String::new()
        }),
        (None, None, Some(f)) => {
            let f = if f.is_relative() {
                base.join(f)
            } else {
                f.clone()
            };
            std::fs::read_to_string(&f)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|e| {
                    c.add(
                        with(path, Seg::Key(file_key)),
                        format!("cannot read {}: {e}", f.display()),
                    );
                    String::new()
                })
        }
        (None, None, None) => {
            c.add(
                path.clone(),
                format!("this resource needs {name}, {name}_env or {name}_file"),
            );
            String::new()
        }
        _ => {
            c.add(
                path.clone(),
                format!("set only one of {name}, {name}_env, {name}_file"),
            );
            String::new()
        }
    }
}

// ---------------------------------------------------------------- locating keys

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn path_string(path: &KeyPath) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Maps a key path back to the line it was written on, using toml_edit's spans.
struct Locator<'a> {
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    /// The line of the deepest part of `path` that exists in the file.
    fn line(&self, path: &KeyPath) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item = doc.as_item();
        let mut span = None;
        for seg in path {
            let next = match seg {
                Seg::Key(k) => item.get(*k),
                Seg::Index(i) => item.get(*i),
            };
            match next {
                Some(n) => {
                    item = n;
                    span = n.span().or(span);
                }
                None => break,
            }
        }
        span.map(|s| line_of(self.text, s.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
admins = ["group:security"]

[[principals]]
name = "alice"
groups = ["engineering"]
token_sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

[[resources]]
name = "orders-db"
kind = "none"
[resources.roles.read]
grants = ["pg_read_all_data"]

[[policies]]
name = "engineers-read-orders"
principals = ["group:engineering"]
resources = ["orders-*"]
roles = ["read"]
max_duration = "4h"
ticket_pattern = "(INC|CHG)-[0-9]+"
[policies.approval]
approvers = ["group:dba"]
required = 1
[[policies.auto_approve]]
principals = ["group:oncall"]
max_duration = "30m"
schedule = "Mon-Fri 08:00-18:00 Europe/Berlin"
"#;

    #[test]
    fn a_good_config_validates() {
        let c = Config::parse(GOOD, "jitgate.toml").unwrap();
        assert_eq!(c.principals[0].principal.name, "alice");
        assert_eq!(c.policies[0].max_duration, Duration::from_secs(4 * 3600));
        assert_eq!(c.policies[0].auto_approve[0].name, "auto_approve[0]");
        assert_eq!(c.policies[0].max_extensions, None, "unlimited by default");
        assert!(!c.policies[0].allow_overlapping, "refused by default");
        let limited = GOOD.replace(
            "max_duration = \"4h\"",
            "max_duration = \"4h\"\nmax_extensions = 2\nallow_overlapping = true",
        );
        let c = Config::parse(&limited, "jitgate.toml").unwrap();
        assert_eq!(c.policies[0].max_extensions, Some(2));
        assert!(c.policies[0].allow_overlapping);
        assert!(
            c.policies[0]
                .ticket_pattern
                .as_ref()
                .unwrap()
                .matches("INC-1")
        );
        assert!(
            !c.policies[0]
                .ticket_pattern
                .as_ref()
                .unwrap()
                .matches("xINC-1x"),
            "anchored"
        );
        assert_eq!(c.database_path, PathBuf::from("./jitgate-data/jitgate.db"));
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(text, "jitgate.toml") {
            Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn guardrails_are_checked_against_resources_roles_and_kinds() {
        let ok = format!(
            "{GOOD}\n[[guardrails]]\nname = \"no-ddl\"\nroles = [\"read\"]\ndeny = [\"ddl\", \"truncate\"]\ntables = [\"public.payments\"]\n"
        );
        let c = Config::parse(&ok, "jitgate.toml").unwrap();
        assert_eq!(c.guardrails.len(), 1);
        assert_eq!(c.guardrails[0].deny.len(), 2);
        let bad = format!(
            "{GOOD}\n[[guardrails]]\nname = \"no ddl\"\nresources = [\"nope\"]\nroles = [\"sudo\"]\ndeny = [\"dropp\"]\ntables = [\"a.b.c\"]\n\n[[guardrails]]\nname = \"empty\"\n"
        );
        let p = problems(&bad);
        for want in [
            "guardrails[0].name: \"no ddl\" is not a rule name",
            "guardrails[0].resources[0]: no resource is named \"nope\"",
            "guardrails[0].roles[0]: no resource this rule covers defines role \"sudo\"",
            "guardrails[0].deny[0]: \"dropp\" is not a statement kind",
            "guardrails[0].tables[0]: \"a.b.c\" is not a table",
            "guardrails[1].deny: the rule blocks nothing",
        ] {
            assert!(p.iter().any(|m| m.contains(want)), "{want} not in {p:#?}");
        }
    }

    #[test]
    fn masking_rules_are_checked() {
        let ok = format!(
            "{GOOD}\n[[masking]]\nname = \"pii\"\ncolumns = [\"public.customers.email\"]\ndetectors = [\"card\"]\nstrategy = \"partial\"\nkeep = 2\n"
        );
        let c = Config::parse(&ok, "jitgate.toml").unwrap();
        assert_eq!(
            c.masking[0].strategy,
            jitgate_gateway::mask::Strategy::Partial { keep: 2 }
        );
        let bad = format!(
            "{GOOD}\n[[masking]]\nname = \"pii\"\ncolumns = [\"a.b.c.d\"]\ndetectors = [\"passport\"]\nstrategy = \"shred\"\n\n[[masking]]\nname = \"pii\"\nstrategy = \"hash\"\nkeep = 3\n"
        );
        let p = problems(&bad);
        for want in [
            "masking[0].columns[0]: \"a.b.c.d\" is not a column",
            "masking[0].detectors[0]: \"passport\" is not a detector",
            "masking[0].strategy: \"shred\" is not a strategy",
            "masking[1].name: masking rule \"pii\" is defined twice",
            "masking[1].keep: keep goes with strategy = \"partial\" only",
            "masking[1].columns: the rule masks nothing",
        ] {
            assert!(p.iter().any(|m| m.contains(want)), "{want} not in {p:#?}");
        }
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let text = GOOD.replace("require_reason", "x").replace(
            "max_duration = \"4h\"",
            "max_duration = \"4h\"\nmax_duraton = \"5h\"",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("jitgate.toml:23: "), "{p:?}");
        assert!(p[0].contains("max_duraton"), "{p:?}");
    }

    #[test]
    fn semantic_mistakes_are_all_reported_with_lines() {
        let text = GOOD
            .replace("max_duration = \"4h\"", "max_duration = \"4 hourz\"")
            .replace("Europe/Berlin", "Europe/Gotham")
            .replace("group:dba", "dba");
        let p = problems(&text);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p.iter()
                .any(|m| m
                    .starts_with("jitgate.toml:22: policies[0].max_duration: invalid duration")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.starts_with(
                "jitgate.toml:25: policies[0].approval.approvers[0]: invalid principal selector"
            )),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("policies[0].auto_approve[0].schedule")
                    && m.contains("Europe/Gotham")
                    && m.starts_with("jitgate.toml:30")),
            "{p:?}"
        );
    }

    #[test]
    fn approval_without_approvers_and_unknown_roles_are_refused() {
        let text = GOOD
            .replace("approvers = [\"group:dba\"]\n", "")
            .replace("roles = [\"read\"]", "roles = [\"raed\"]");
        let p = problems(&text);
        assert!(p.iter().any(|m| m.contains("names no approvers")), "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("does not define role") || m.contains("defines role \"raed\"")),
            "{p:?}"
        );
    }

    #[test]
    fn duplicate_names_and_bad_digests_are_refused() {
        let text = format!("{GOOD}\n[[principals]]\nname = \"alice\"\ntoken_sha256 = \"abc\"\n");
        let p = problems(&text);
        assert!(p.iter().any(|m| m.contains("defined twice")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("64 hex digits")), "{p:?}");
    }

    #[test]
    fn database_resources_need_exactly_one_admin_url() {
        let p = problems(&GOOD.replace("kind = \"none\"", "kind = \"postgres\""));
        assert!(
            p[0].contains("needs admin_url, admin_url_env or admin_url_file"),
            "{p:?}"
        );
        let two = GOOD.replace(
            "kind = \"none\"",
            "kind = \"postgres\"\nadmin_url = \"postgres://x@h/db\"\nadmin_url_env = \"X\"",
        );
        assert!(problems(&two)[0].contains("only one of"));
        let env = GOOD.replace(
            "kind = \"none\"",
            "kind = \"mysql\"\nadmin_url_env = \"JITGATE_TEST_SURELY_UNSET\"",
        );
        assert!(problems(&env)[0].contains("JITGATE_TEST_SURELY_UNSET is not set"));
        let none_with_url = GOOD.replace(
            "kind = \"none\"",
            "kind = \"none\"\nadmin_url = \"postgres://x@h/db\"",
        );
        assert!(problems(&none_with_url)[0].contains("creates nothing"));
        let ok = GOOD.replace(
            "kind = \"none\"",
            "kind = \"postgres\"\nadmin_url = \"postgres://postgres:s3cret@127.0.0.1/orders\"",
        );
        let c = Config::parse(&ok, "jitgate.toml").unwrap();
        let shared = GOOD.replace("kind = \"none\"", "kind = \"postgres\"\nprovisioning = \"none\"\nupstream_url = \"postgres://app:pw@db/orders\"");
        assert!(matches!(
            Config::parse(&shared, "j").unwrap().resources[0].kind,
            ResourceKind::PostgresShared(_)
        ));
        let both = shared.replace(
            "provisioning = \"none\"",
            "provisioning = \"none\"\nadmin_url = \"postgres://x@h/db\"",
        );
        assert!(problems(&both)[0].contains("creates no logins"));
        let odd = shared.replace("\"none\"", "\"sometimes\"");
        assert!(problems(&odd)[0].contains("not a provisioning mode"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret"),
            "the admin URL never shows in Debug output"
        );
    }
}
