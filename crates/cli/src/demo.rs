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
}

pub async fn run(o: &Options) -> anyhow::Result<()> {
    let dir = o.dir.as_path();
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
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
            write_private(&config_path, &config_text(&t, &o.listen, &resource))?;
            fresh = true;
            t
        }
    };
    let mut config = Config::load(&config_path)?;
    config.listen = o
        .listen
        .parse()
        .with_context(|| format!("--listen {:?} is not HOST:PORT", o.listen))?;
    if let Some(g) = config.gateway.as_mut() {
        g.listen = o
            .gateway_listen
            .parse()
            .with_context(|| format!("--gateway-listen {:?} is not HOST:PORT", o.gateway_listen))?;
    }
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
        real.then_some(o.database.as_str()),
    );
    running.until_signal().await;
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
listen = "127.0.0.1:6432"

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
        url = database_url(o)
    ))
}

fn var(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

fn config_text(tokens: &Tokens, listen: &str, resource: &str) -> String {
    let mut s = format!(
        "# Written by `jitgate demo`. Edit freely; delete this directory to start over.\n[server]\nlisten = \"{listen}\"\ndata_dir = \"data\"\nadmins = [\"group:security\"]\nauditors = [\"group:security\"]\n\n[storage]\nurl = \"sqlite://jitgate.db\"\n\n"
    );
    for ((name, kind, groups, what), (_, token)) in PEOPLE.iter().zip(&tokens.0) {
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        s += &format!(
            "# {what}\n[[principals]]\nname = \"{name}\"\nkind = \"{kind}\"\ngroups = {groups:?}\ntoken_sha256 = \"{digest}\"\n\n"
        );
    }
    s + resource + POLICIES
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

fn print_tour(url: &str, dir: &Path, tokens: &Tokens, env_path: &Path, database: Option<&str>) {
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
             Delete {} and run the demo again once PostgreSQL is up.\n",
            dir.display()
        ),
    }
    out!("Demo principals and their API tokens:");
    for ((name, _, _, what), (_, token)) in PEOPLE.iter().zip(&tokens.0) {
        out!("  {name:<7} {token}   {what}");
    }
    let psql = if database.is_some() {
        r#"  # 3. with her grant's own login, alice can read orders, and only read them
  eval "$(JITGATE_TOKEN=$ALICE_TOKEN $J credentials GRANT_ID -o env | sed 's/^/export /')"
  psql -c "select id, customer, total from orders"
  psql -c "delete from orders"                  # refused: the read role cannot delete
  # or through the jitgate gateway, which records every statement (see: audit search --action 'session.*')
  JITGATE_TOKEN=$ALICE_TOKEN $J connect orders-db --exec -- -c "select count(*) from orders"
"#
    } else {
        ""
    };
    out!(
        r#"
A five-minute tour, in another terminal:

  source {env}
  J={exe}

  # 1. alice asks to read orders-db; the policy routes it to a DBA
  JITGATE_TOKEN=$ALICE_TOKEN $J request create --resource orders-db --role read --duration 5m --reason "INC-4411 check orders"
  # 2. dora sees what awaits her and approves it: the 5 minutes start now
  JITGATE_TOKEN=$DORA_TOKEN $J request list --state pending
  JITGATE_TOKEN=$DORA_TOKEN $J request approve REQUEST_ID --comment "ok for INC-4411"
{psql}  # 4. alice asks for 10 more minutes (dora approves with the same command), then says she is done
  JITGATE_TOKEN=$ALICE_TOKEN $J grant list --active
  JITGATE_TOKEN=$ALICE_TOKEN $J grant extend GRANT_ID --duration 10m --reason "almost there"
  JITGATE_TOKEN=$ALICE_TOKEN $J grant release GRANT_ID
{after}  # 5. refused: too long, and admin without a ticket (default deny says why)
  JITGATE_TOKEN=$ALICE_TOKEN $J request create --resource orders-db --role read --duration 8h --reason x
  JITGATE_TOKEN=$ALICE_TOKEN $J request create --resource orders-db --role admin --duration 10m --reason x
  # 6. oscar is on call: approved at once, and the audit event names the rule
  JITGATE_TOKEN=$OSCAR_TOKEN $J request create --resource orders-db --role read --duration 15m --reason "pager: slow orders"
  # 7. the CI job gets 1 minute of deploy rights with no human in the loop; watch it expire by itself
  JITGATE_TOKEN=$CI_BOT_TOKEN $J request create --resource orders-db --role deploy --duration 1m -o json
  # 8. the whole story, as the auditor sees it
  JITGATE_TOKEN=$ROOT_TOKEN $J audit search
"#,
        env = env_path.display(),
        after = if database.is_some() {
            "  psql -c \"select 1\"                          # fails: the login is gone\n"
        } else {
            ""
        },
    );
}
