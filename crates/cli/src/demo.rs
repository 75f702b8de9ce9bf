//! `jitgate demo`: a working server with demo principals, in one command and no setup.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use jitgate_core::SystemClock;
use jitgate_server::Config;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

const POLICIES: &str = r#"
[[resources]]
name = "orders-db"
kind = "none"
description = "Orders database (tracked by jitgate only: no database connector in this version)"
[resources.roles.read]
grants = ["pg_read_all_data"]
[resources.roles.admin]
grants = ["orders_admin"]
[resources.roles.deploy]
grants = ["orders_migrator"]

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

pub async fn run(dir: &Path, listen: &str) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tokens_path = dir.join("demo-tokens.json");
    let config_path = dir.join("jitgate.toml");
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
            fs::write(&config_path, config_text(&t, listen))?;
            t
        }
    };
    let mut config = Config::load(&config_path)?;
    config.listen = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not HOST:PORT"))?;
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
    print_tour(&url, dir, &tokens, &env_path);
    running.until_signal().await;
    Ok(())
}

fn var(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

fn config_text(tokens: &Tokens, listen: &str) -> String {
    let mut s = format!(
        "# Written by `jitgate demo`. Edit freely; delete this directory to start over.\n[server]\nlisten = \"{listen}\"\ndata_dir = \"data\"\nadmins = [\"group:security\"]\nauditors = [\"group:security\"]\n\n[storage]\nurl = \"sqlite://jitgate.db\"\n\n"
    );
    for ((name, kind, groups, what), (_, token)) in PEOPLE.iter().zip(&tokens.0) {
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        s += &format!(
            "# {what}\n[[principals]]\nname = \"{name}\"\nkind = \"{kind}\"\ngroups = {groups:?}\ntoken_sha256 = \"{digest}\"\n\n"
        );
    }
    s + POLICIES
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

fn print_tour(url: &str, dir: &Path, tokens: &Tokens, env_path: &Path) {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "jitgate".into());
    println!(
        "\njitgate demo is running at {url}   (Ctrl-C stops it; state is kept in {})\n",
        dir.display()
    );
    println!(
        "Resources set up: orders-db (kind \"none\": jitgate tracks grants and audits them; no database"
    );
    println!("connector in this version, so nothing is created in a real database yet).\n");
    println!("Demo principals and their API tokens:");
    for ((name, _, _, what), (_, token)) in PEOPLE.iter().zip(&tokens.0) {
        println!("  {name:<7} {token}   {what}");
    }
    println!(
        r#"
A five-minute tour, in another terminal:

  source {env}
  J={exe}

  # 1. alice asks to read orders-db; the policy routes it to a DBA
  JITGATE_TOKEN=$ALICE_TOKEN $J request create --resource orders-db --role read --duration 2m --reason "INC-4411 check orders"
  # 2. dora sees what awaits her and approves it: the 2 minutes start now
  JITGATE_TOKEN=$DORA_TOKEN $J request list --state pending
  JITGATE_TOKEN=$DORA_TOKEN $J request approve REQUEST_ID --comment "ok for INC-4411"
  # 3. alice has an active grant, asks for 10 more minutes (dora approves with the same command), then says she is done
  JITGATE_TOKEN=$ALICE_TOKEN $J grant list --active
  JITGATE_TOKEN=$ALICE_TOKEN $J grant extend GRANT_ID --duration 10m --reason "almost there"
  JITGATE_TOKEN=$ALICE_TOKEN $J grant release GRANT_ID
  # 4. refused: too long, and admin without a ticket (default deny says why)
  JITGATE_TOKEN=$ALICE_TOKEN $J request create --resource orders-db --role read --duration 8h --reason x
  JITGATE_TOKEN=$ALICE_TOKEN $J request create --resource orders-db --role admin --duration 10m --reason x
  # 5. oscar is on call: approved at once, and the audit event names the rule
  JITGATE_TOKEN=$OSCAR_TOKEN $J request create --resource orders-db --role read --duration 15m --reason "pager: slow orders"
  # 6. the CI job gets 1 minute of deploy rights with no human in the loop; watch it expire by itself
  JITGATE_TOKEN=$CI_BOT_TOKEN $J request create --resource orders-db --role deploy --duration 1m -o json
  # 7. the whole story, as the auditor sees it
  JITGATE_TOKEN=$ROOT_TOKEN $J audit search
"#,
        env = env_path.display()
    );
}
