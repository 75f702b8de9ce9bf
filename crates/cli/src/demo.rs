//! `jitgate demo`: a working server with demo principals, in one command and no setup.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use jitgate_core::SystemClock;
use jitgate_server::Config;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::output::out;
use crate::tour;

/// The demo's people: name, kind, groups, what they are for.
const PEOPLE: &[(&str, &str, &[&str], &str)] = &[
    (
        "alice",
        "user",
        &["engineering"],
        "engineer; asks for access",
    ),
    ("dora", "user", &["dba"], "DBA; approves"),
    (
        "oscar",
        "user",
        &["engineering", "oncall", "sre"],
        "on-call SRE; auto-approved up to 30m, may break glass",
    ),
    (
        "ci-bot",
        "service",
        &["ci"],
        "CI service account; deploy role without a human",
    ),
    (
        "root",
        "user",
        &["security"],
        "security admin and auditor; revokes, reviews, reads all",
    ),
];

#[derive(Serialize, Deserialize)]
struct Tokens(Vec<(String, String)>);

/// The demo resource when no PostgreSQL is reachable.
const TRACKED_ONLY: &str = r#"
[[resources]]
name = "orders-db"
kind = "none"
description = "Orders database (tracked by jitgate only: no PostgreSQL was reachable when the demo was set up)"
[resources.roles.read]
[resources.roles.admin]
[resources.roles.deploy]
"#;

const POLICIES: &str = r#"
[[policies]]
name = "engineers-read-orders"
principals = ["group:engineering"]
resources = ["orders-*"]
roles = ["read"]
max_duration = "4h"
require_reason = true
pending_timeout = "1h"
[policies.approval]
approvers = ["group:dba"]
required = 1
[[policies.auto_approve]]
name = "oncall"
principals = ["group:oncall"]
max_duration = "30m"
[policies.break_glass]
principals = ["group:sre"]
max_duration = "1h"

[[policies]]
name = "engineers-admin-orders"
principals = ["group:engineering"]
resources = ["orders-db"]
roles = ["admin"]
max_duration = "1h"
require_reason = true
ticket_pattern = "(INC|CHG)-[0-9]+"
[policies.approval]
approvers = ["group:dba"]
required = 1

[[policies]]
name = "ci-deploys"
principals = ["service:ci-bot"]
resources = ["orders-db"]
roles = ["deploy"]
max_duration = "15m"
[policies.approval]
required = 0
"#;

/// Test cases for [`POLICIES`], written beside the config (`jitgate policy test`).
pub const POLICY_TESTS: &str = include_str!("demo_policy_tests.toml");

/// Where the demo keeps its state, where it listens, and which PostgreSQL it may use.
pub struct Options {
    pub dir: std::path::PathBuf,
    pub listen: String,
    /// An admin URL for the local PostgreSQL, or "none" to track grants without a database.
    pub postgres: String,
    /// The demo database (and its roles' prefix) on that PostgreSQL.
    pub database: String,
    /// Where the PostgreSQL gateway listens (only with a real database).
    pub gateway_listen: String,
    /// Remove what an earlier demo created instead of starting one.
    pub reset: bool,
}

pub async fn run(o: &Options) -> anyhow::Result<()> {
    if o.reset {
        return reset(o).await;
    }
    let dir = o.dir.as_path();
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The anchor lives beside the data directory, not in it, so `audit verify` can tell a log
    // cut short from a whole one (whoever rewrites the data directory must also find this).
    let anchor_dir = dir.join("anchor");
    fs::create_dir_all(&anchor_dir)
        .with_context(|| format!("cannot create {}", anchor_dir.display()))?;
    let anchor = anchor_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", anchor_dir.display()))?
        .join("checkpoints");
    let tokens_path = dir.join("demo-tokens.json");
    let config_path = dir.join("jitgate.toml");
    let mut fresh = false;
    let tokens = match fs::read_to_string(&tokens_path)
        .ok()
        .and_then(|t| serde_json::from_str::<Tokens>(&t).ok())
    {
        Some(t) if config_path.exists() => t,
        _ => {
            let t = Tokens(
                PEOPLE
                    .iter()
                    .map(|(n, ..)| ((*n).to_owned(), jitgate_core::ids::new_token()))
                    .collect(),
            );
            write_private(&tokens_path, &serde_json::to_string_pretty(&t)?)?;
            let resource = match postgres_resource(o).await {
                Ok(block) => block,
                Err(e) => {
                    eprintln!(
                        "jitgate demo: no PostgreSQL for the demo ({e:#}); orders-db will be tracked by jitgate only"
                    );
                    TRACKED_ONLY.to_owned()
                }
            };
            write_private(
                &config_path,
                &config_text(&t, &o.listen, &anchor, &resource),
            )?;
            fresh = true;
            t
        }
    };
    o.listen
        .parse::<std::net::SocketAddr>()
        .with_context(|| format!("--listen {:?} is not HOST:PORT", o.listen))?;
    o.gateway_listen
        .parse::<std::net::SocketAddr>()
        .with_context(|| format!("--gateway-listen {:?} is not HOST:PORT", o.gateway_listen))?;
    record_addresses(&config_path, o)?;
    let tests_path = dir.join("policy-tests.toml");
    if !tests_path.exists() {
        write_private(&tests_path, POLICY_TESTS)?;
    }
    let config = Config::load(&config_path)?;
    let real = config
        .resources
        .iter()
        .any(|r| r.kind != jitgate_server::config::ResourceKind::None);
    if real && !fresh {
        // The config was written when PostgreSQL was there; make sure the demo schema still is.
        if let Err(e) = prepare_database(o).await {
            eprintln!(
                "jitgate demo: warning: the demo database is not ready ({e:#}); grants will retry until it is"
            );
        }
    }
    let running = jitgate_server::start(config, Arc::new(SystemClock))
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e} (is another jitgate running? try --listen 127.0.0.1:8081)")
        })?;
    let url = format!("http://{}", running.addr);
    let env_path = dir.join("demo.env");
    let mut env = format!("export JITGATE_URL={url}\n");
    for (name, token) in &tokens.0 {
        env += &format!("export {}_TOKEN={token}\n", var(name));
    }
    write_private(&env_path, &env)?;
    print_tour(
        &url,
        dir,
        &tokens,
        &env_path,
        &config_path,
        real.then_some(o.database.as_str()),
    );
    running.until_signal().await;
    Ok(())
}

/// Removes what the demo in `o.dir` created: its database and roles on PostgreSQL (the demo
/// roles its config names, and every login its grants made, found by this installation's id in
/// their comments), then the directory. Refused while that demo still answers.
async fn reset(o: &Options) -> anyhow::Result<()> {
    let dir = o.dir.as_path();
    let config_path = dir.join("jitgate.toml");
    if !dir.exists() {
        out!("nothing to reset: {} does not exist", dir.display());
        return Ok(());
    }
    if !config_path.is_file() || !dir.join("demo-tokens.json").is_file() {
        anyhow::bail!(
            "{} is not a demo directory (no jitgate.toml and demo-tokens.json); not touching it",
            dir.display()
        );
    }
    let config = Config::load(&config_path)?;
    if tokio::net::TcpStream::connect(config.listen).await.is_ok() {
        anyhow::bail!(
            "the demo is still running at {} (stop it with Ctrl-C first)",
            config.listen
        );
    }
    let instance = fs::read_to_string(config.data_dir.join("instance_id")).unwrap_or_default();
    for r in &config.resources {
        if let jitgate_server::config::ResourceKind::Postgres(target) = &r.kind {
            drop_postgres_demo(target, instance.trim())
                .await
                .with_context(|| {
                    format!(
                        "cannot remove the demo database of {} (nothing was deleted)",
                        r.name
                    )
                })?;
        }
    }
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    out!("removed {}", dir.display());
    Ok(())
}

/// Drops the demo database, the roles the demo made for it, and the logins this installation
/// made (whose comment names `instance`).
async fn drop_postgres_demo(
    target: &jitgate_server::config::Target,
    instance: &str,
) -> anyhow::Result<()> {
    use jitgate_connectors::naming::pg_ident;
    let mut admin: tokio_postgres::Config = target
        .admin_url
        .expose()
        .parse()
        .context("the demo's admin URL is not a PostgreSQL URL")?;
    let database = admin
        .get_dbname()
        .context("the demo's admin URL names no database")?
        .to_owned();
    // Connected elsewhere: a database cannot be dropped from inside.
    admin.dbname("postgres");
    admin.connect_timeout(std::time::Duration::from_secs(2));
    let (client, conn) = admin.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let mut roles: Vec<String> = Vec::new();
    if !instance.is_empty() {
        let pattern = format!("jitgate instance={instance} %");
        for row in client
            .query(
                "SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE $1",
                &[&pattern],
            )
            .await?
        {
            roles.push(row.get(0));
        }
    }
    roles.extend(target.owner_role.iter().cloned());
    for suffix in ["read", "admin", "owner"] {
        roles.push(format!("{database}_{suffix}"));
    }
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            pg_ident(&database)
        ))
        .await?;
    out!("dropped database {database}");
    roles.sort();
    roles.dedup();
    for role in roles {
        let exists = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await?
            .is_some();
        if exists {
            client
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", pg_ident(&role)))
                .await?;
            out!("dropped role {role}");
        }
    }
    Ok(())
}

/// The admin URL of the demo database: `--postgres` with its database swapped for the demo's.
fn database_url(o: &Options) -> String {
    let base = o.postgres.trim_end_matches('/');
    let host_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    format!("{root}/{}", o.database)
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("{url:?} is not a PostgreSQL URL"))?;
    config.connect_timeout(std::time::Duration::from_secs(2));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Creates (if missing) the demo database, its `orders` table with a few rows, and the roles
/// grants map to: `<db>_read`, `<db>_admin`, and `<db>_owner` for what ephemeral logins create.
async fn prepare_database(o: &Options) -> anyhow::Result<()> {
    let db = &o.database;
    anyhow::ensure!(
        !db.is_empty()
            && db
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "--database must be lowercase letters, digits and _"
    );
    let admin = connect(&o.postgres).await?;
    if admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[db])
        .await?
        .is_none()
    {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await?;
    }
    let roles = [
        format!("{db}_read"),
        format!("{db}_admin"),
        format!("{db}_owner"),
    ];
    for r in &roles {
        if admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[r])
            .await?
            .is_none()
        {
            admin
                .batch_execute(&format!("CREATE ROLE {r} NOLOGIN"))
                .await?;
        }
    }
    let demo = connect(&database_url(o)).await?;
    demo.batch_execute(&format!(
        "SET client_min_messages = warning;
         CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, customer text NOT NULL, email text, total numeric(10,2), placed_at timestamptz DEFAULT now());
         INSERT INTO orders (id, customer, email, total) VALUES
           (1, 'Ada Lovelace', 'ada@example.com', 129.90), (2, 'Alan Turing', 'alan@example.com', 42.00),
           (3, 'Grace Hopper', 'grace@example.com', 310.50), (4, 'Edsger Dijkstra', 'edsger@example.com', 18.75)
         ON CONFLICT (id) DO NOTHING;
         GRANT CONNECT ON DATABASE {db} TO {db}_read, {db}_admin;
         GRANT SELECT ON orders TO {db}_read;
         GRANT ALL ON orders TO {db}_admin;
         GRANT CREATE ON SCHEMA public TO {db}_admin;"
    ))
    .await?;
    Ok(())
}

async fn postgres_resource(o: &Options) -> anyhow::Result<String> {
    anyhow::ensure!(o.postgres != "none", "--postgres none");
    prepare_database(o).await?;
    let db = &o.database;
    Ok(format!(
        r#"
[gateway.postgres]
listen = "{gateway}"

[[resources]]
name = "orders-db"
kind = "postgres"
description = "Orders database {db} on the local PostgreSQL: each grant is a real, ephemeral login"
admin_url = "{url}"
owner_role = "{db}_owner"
[resources.roles.read]
grants = ["{db}_read"]
[resources.roles.admin]
grants = ["{db}_admin"]
[resources.roles.deploy]
grants = ["{db}_admin"]
"#,
        url = database_url(o),
        gateway = o.gateway_listen,
    ))
}

fn var(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

fn config_text(tokens: &Tokens, listen: &str, anchor: &Path, resource: &str) -> String {
    let mut s = format!(
        "# Written by `jitgate demo`. Edit freely; `jitgate demo --reset` removes it and what it created.\n[server]\nlisten = \"{listen}\"\ndata_dir = \"data\"\nadmins = [\"group:security\"]\nauditors = [\"group:security\"]\n\n[storage]\nurl = \"sqlite://jitgate.db\"\n\n[audit]\n# Signed checkpoints also go here, outside the data directory: `audit verify` checks the log\n# against them, so a log cut short is found.\nanchors = [{:?}]\n\n",
        format!("file://{}", anchor.display())
    );
    for ((name, kind, groups, what), (_, token)) in PEOPLE.iter().zip(&tokens.0) {
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        s += &format!(
            "# {what}\n[[principals]]\nname = \"{name}\"\nkind = \"{kind}\"\ngroups = {groups:?}\ntoken_sha256 = \"{digest}\"\n\n"
        );
    }
    s + resource + POLICIES
}

/// Writes the addresses this run listens on into the config, so the file says what is running
/// (for `jitgate serve --config`, and for anyone reading it). The rest of the file is kept as
/// the user left it.
fn record_addresses(config_path: &Path, o: &Options) -> anyhow::Result<()> {
    let text = fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", config_path.display()))?;
    let mut changed = false;
    let mut set = |item: Option<&mut toml_edit::Item>, value: &str| {
        if let Some(item) = item
            && item.as_str() != Some(value)
        {
            let decor = item.as_value().map(|v| v.decor().clone());
            *item = toml_edit::value(value);
            if let (Some(decor), Some(v)) = (decor, item.as_value_mut()) {
                *v.decor_mut() = decor;
            }
            changed = true;
        }
    };
    set(
        doc.get_mut("server").and_then(|s| s.get_mut("listen")),
        &o.listen,
    );
    set(
        doc.get_mut("gateway")
            .and_then(|g| g.get_mut("postgres"))
            .and_then(|p| p.get_mut("listen")),
        &o.gateway_listen,
    );
    if changed {
        write_private(config_path, &doc.to_string())?;
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn print_tour(
    url: &str,
    dir: &Path,
    tokens: &Tokens,
    env_path: &Path,
    config_path: &Path,
    database: Option<&str>,
) {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "jitgate".into());
    out!(
        "\njitgate demo is running at {url}   (Ctrl-C stops it; state is kept in {})\n",
        dir.display()
    );
    match database {
        Some(db) => out!(
            "Resources set up: orders-db = database {db} on the local PostgreSQL (table orders). Each grant\n\
             creates a real login there, for exactly its window, and removes it (and its sessions) at the end.\n"
        ),
        None => out!(
            "Resources set up: orders-db, tracked by jitgate only (kind \"none\"): no PostgreSQL was reachable\n\
             when the demo was set up, so grants are recorded and audited but create nothing in a database.\n\
             Run `jitgate demo --reset` and the demo again once PostgreSQL is up.\n"
        ),
    }
    out!("Demo principals and their API tokens:");
    for ((name, _, _, what), (_, token)) in PEOPLE.iter().zip(&tokens.0) {
        out!("  {name:<7} {token}   {what}");
    }
    out!("\nA five-minute tour, in another terminal:\n");
    let tour = tour::render(
        &env_path.display().to_string(),
        &exe,
        &config_path.display().to_string(),
        database.is_some(),
    );
    for line in tour.lines() {
        out!("  {line}");
    }
    out!("\n`jitgate demo --reset` removes everything the demo created.");
}
