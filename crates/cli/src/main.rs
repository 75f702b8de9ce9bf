//! `jitgate`: the server (`serve`, `demo`) and its command-line client.
//!
//! Exit codes: 0 success, 1 a refused or failed action, 2 bad usage.

/// mimalloc rather than glibc's malloc: the gateway allocates and frees a few small objects per
/// statement and its audit batches churn large buffers; alternated select-only runs through
/// the async gateway gave 36.3 µs of its CPU per statement against 44.5 µs. Built without
/// transparent huge pages, which made 1,000 idle sessions cost 139 KiB each instead of 37.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod access;
mod audit_cmd;
mod client;
mod demo;
#[cfg(test)]
mod docs_tests;
mod events;
#[cfg(test)]
mod help_tests;
mod login;
mod output;
mod policy_check_cmd;
mod policy_cmd;
mod policy_matrix;
mod policy_test_cmd;
mod resource_cmd;
mod tour;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use jitgate_core::{Clock, Outcome, State, SystemClock, Timestamp, duration};
use jitgate_server::Config;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use client::{Client, Failure, query, usage};
use output::out;

#[derive(Parser)]
#[command(
    name = "jitgate",
    version,
    about = "Just-in-time privileged access: ask, approve, use, and lose it on time."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Conn {
    /// The jitgate server.
    #[arg(
        long,
        env = "JITGATE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Your API token.
    #[arg(long, env = "JITGATE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned columns and `key: value` lines, for people.
    Table,
    /// JSON, for scripts.
    Json,
}

/// `jitgate credentials` alone has a third output format, so it has its own connection options.
#[derive(Args, Clone)]
struct CredentialsConn {
    /// The jitgate server.
    #[arg(long, env = "JITGATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Your API token.
    #[arg(long, env = "JITGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = CredentialsOutput::Table)]
    output: CredentialsOutput,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum CredentialsOutput {
    /// The login and its connection string, for people.
    Table,
    /// JSON, for scripts.
    Json,
    /// `NAME=value` lines the target's own clients read (PG* for psql; MYSQL_* for mysql).
    Env,
    /// A MariaDB/MySQL option file (credentials of a mysql grant only):
    /// `mysql --defaults-extra-file=<(jitgate credentials GRANT_ID -o cnf)`.
    Cnf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the jitgate server.
    Serve {
        /// The config file (jitgate.toml; see `jitgate config check`).
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
    },
    /// Start a demo server with demo principals and a guided tour. No setup needed.
    Demo {
        /// Where the demo keeps its config and data (reused on the next run).
        #[arg(long, default_value = "./jitgate-demo")]
        dir: PathBuf,
        /// Where the demo's HTTP API listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// An admin URL of a PostgreSQL for the demo database, or "none" to create nothing.
        #[arg(
            long,
            env = "JITGATE_DEMO_POSTGRES",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        postgres: String,
        /// The demo database on that PostgreSQL (its roles are named after it).
        #[arg(long, default_value = "jitgate_demo")]
        database: String,
        /// Where the PostgreSQL gateway listens, when the demo has a real database.
        #[arg(long, default_value = "127.0.0.1:6432")]
        gateway_listen: String,
        /// Remove what the demo in --dir created (its database, roles and logins on
        /// PostgreSQL, and the directory), then exit.
        #[arg(long)]
        reset: bool,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Policies, offline from the config file: explain a decision, who can do what, test
    /// cases, the access a change gains or loses, findings.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// Resources: check that a target holds what jitgate promises.
    Resource {
        #[command(subcommand)]
        command: resource_cmd::ResourceCommand,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// What you may ask for: resources, roles, duration caps and who approves.
    Access {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Access requests: ask, approve, deny, cancel.
    Request {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: RequestCommand,
    },
    /// Grants: see, release, revoke, extend, review.
    Grant {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: GrantCommand,
    },
    /// The audit log.
    Audit {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Legal holds on the audit log.
    Hold {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: audit_cmd::HoldCommand,
    },
    /// Audit log retention: sweep now, or see where things stand.
    Retention {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: audit_cmd::RetentionCommand,
    },
    /// Connection credentials for your active grant's ephemeral login (-o env for PG*/MYSQL_*
    /// lines, -o cnf for a mysql option file).
    Credentials {
        #[command(flatten)]
        conn: CredentialsConn,
        /// The grant's id, or a resource name: your one active grant on it.
        grant: String,
    },
    /// A connection string for RESOURCE through the jitgate gateway, or run psql with --exec.
    Connect {
        #[command(flatten)]
        conn: Conn,
        /// The resource to connect to (you need an active grant on it).
        resource: String,
        /// The gateway (default: what the server reports, else 127.0.0.1:6432).
        #[arg(long, env = "JITGATE_GATEWAY")]
        gateway: Option<String>,
        /// Run psql connected through the gateway (the token goes in PGPASSWORD, not argv).
        #[arg(long)]
        exec: bool,
        /// Arguments after -- go to psql.
        #[arg(last = true)]
        psql_args: Vec<String>,
    },
    /// Show who your token belongs to, where that identity came from, and when it ends.
    Whoami {
        #[command(flatten)]
        conn: Conn,
    },
    /// Sign in and keep the token for this server (in $XDG_CONFIG_HOME/jitgate/credentials.toml).
    ///
    /// People: through the server's OpenID provider; it prints a URL and a code to enter there,
    /// and waits. A CI job or agent trades the identity token its platform gives it (a JWT)
    /// with `--provider NAME --jwt-file FILE`, or with the JWT in JITGATE_ID_TOKEN.
    Login {
        #[command(flatten)]
        conn: Conn,
        /// The workload identity provider (`[[identity.jwt]]` name) the JWT comes from.
        #[arg(long)]
        provider: Option<String>,
        /// A file holding the JWT (never pass it on the command line).
        #[arg(long)]
        jwt_file: Option<PathBuf>,
        /// The JWT itself, from the environment.
        #[arg(
            long = "id-token-env",
            env = "JITGATE_ID_TOKEN",
            hide_env_values = true,
            hide = true
        )]
        id_token: Option<String>,
        /// Sign in with a browser (a redirect back to this machine, with PKCE) instead of the
        /// device flow.
        #[arg(long, conflicts_with = "provider")]
        browser: bool,
    },
    /// End the stored session on the server and forget it here.
    Logout {
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file; every mistake is named with its file, line and key.
    Check {
        /// The config file to check.
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new random API token and print it with the SHA-256 digest for the config.
    New {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum AccessCommand {
    /// The resources and roles you may ask for, with each policy's cap, approvers, what is
    /// approved at once, and what a request must carry (reason, ticket).
    List,
}

#[derive(Subcommand)]
enum RequestCommand {
    /// Ask for a role on a resource.
    Create {
        /// The resource, by name (`jitgate access list` shows what you may ask for).
        #[arg(long)]
        resource: String,
        /// The role on that resource, e.g. read.
        #[arg(long)]
        role: String,
        /// How long, e.g. 30m, 2h.
        #[arg(long)]
        duration: String,
        /// Why you need it; shown to approvers and kept in the audit log.
        #[arg(long)]
        reason: Option<String>,
        /// A ticket reference (some policies require one matching their pattern).
        #[arg(long)]
        ticket: Option<String>,
        /// When the grant should start: RFC 3339, or +DURATION from now (e.g. +2h).
        #[arg(long)]
        start_at: Option<String>,
        /// Emergency access: approved at once where a policy allows it, flagged for review.
        #[arg(long)]
        break_glass: bool,
        /// Wait until the request is decided (and active), printing the final state.
        #[arg(long)]
        wait: bool,
    },
    /// List requests you may see, newest first.
    List {
        /// Only requests in this state.
        #[arg(long, value_parser = PossibleValuesParser::new(State::ALL.map(State::as_str)))]
        state: Option<String>,
        /// At most this many (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// One request: its state, approvals and grant.
    Show {
        /// The request's id.
        id: String,
    },
    /// Approve a request (or the pending extension of its grant).
    Approve {
        /// The request's id.
        id: String,
        /// A note for the requester and the audit log.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request (or the pending extension of its grant).
    Deny {
        /// The request's id.
        id: String,
        /// Why, for the requester and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Withdraw your own request before it starts.
    Cancel {
        /// The request's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum GrantCommand {
    /// List grants you may see, newest first.
    List {
        /// Only active grants.
        #[arg(long)]
        active: bool,
        /// At most this many (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// One grant: its window, state and extensions.
    Show {
        /// The grant's id.
        id: String,
    },
    /// "I'm done": end your grant now.
    Release {
        /// The grant's id.
        id: String,
    },
    /// End someone's grant now (admins).
    Revoke {
        /// The grant's id.
        id: String,
        /// Why, for the holder and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Ask for more time under the same policy.
    Extend {
        /// The grant's id.
        id: String,
        /// How much longer, e.g. 30m.
        #[arg(long)]
        duration: String,
        /// Why, for the approvers and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Review a break-glass grant.
    Review {
        /// The grant's id.
        id: String,
        /// What the review found, for the audit log.
        #[arg(long)]
        comment: Option<String>,
    },
}

/// Which events: every filter narrows.
#[derive(Args, Clone, Debug, Default)]
struct Filters {
    /// From this time: RFC 3339, or a duration meaning that long ago (e.g. 1h).
    #[arg(long)]
    since: Option<String>,
    /// Before this time: RFC 3339, or a duration meaning that long ago.
    #[arg(long)]
    until: Option<String>,
    /// Who acted: a principal's name, or `jitgate` for what the server did by itself.
    #[arg(long)]
    actor: Option<String>,
    /// Glob on the action, e.g. 'grant.*'.
    #[arg(long)]
    action: Option<String>,
    /// Events about this resource.
    #[arg(long)]
    resource: Option<String>,
    /// Events of this request (by id).
    #[arg(long)]
    request: Option<String>,
    /// Events of this grant (by id).
    #[arg(long)]
    grant: Option<String>,
    /// Events of this gateway session (by id).
    #[arg(long)]
    session: Option<String>,
    /// Only events with this outcome.
    #[arg(long, value_parser = PossibleValuesParser::new(Outcome::ALL.map(Outcome::as_str)))]
    outcome: Option<String>,
    /// Events after this seq (paging).
    #[arg(long)]
    after: Option<i64>,
}

impl Filters {
    fn pairs(self) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
        Ok(vec![
            ("since", self.since.map(|s| when(&s, true)).transpose()?),
            ("until", self.until.map(|s| when(&s, true)).transpose()?),
            ("actor", self.actor),
            ("action", self.action),
            ("resource", self.resource),
            ("request", self.request),
            ("grant", self.grant),
            ("session", self.session),
            ("outcome", self.outcome),
            ("after", self.after.map(|a| a.to_string())),
        ])
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Search the audit log (oldest first).
    Search {
        #[command(flatten)]
        filters: Filters,
        /// At most this many events (default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Include the audit.searched events that searches like this one leave (left out by
        /// default unless --action is given, so they do not crowd out the rest).
        #[arg(long)]
        include_searches: bool,
    },
    /// Verify the log offline: the hash chain, payload commitments, signed checkpoints and range
    /// boundaries, and anchors. Exits 1 naming the first bad seq.
    Verify {
        #[command(flatten)]
        local: audit_cmd::Local,
        /// An anchor file of checkpoints (repeatable; file anchors in --config are added).
        #[arg(long)]
        anchor: Vec<PathBuf>,
        /// Trusted public keys, one hex key per line (default: the data directory's own list).
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// An archive directory: verify archived ranges too, as part of the same chain.
        #[arg(long)]
        archive: Option<PathBuf>,
    },
    /// Export events as JSON lines or CSV, streaming (recorded as audit.exported).
    Export {
        #[command(flatten)]
        filters: Filters,
        /// At most this many events (default: all that match).
        #[arg(long)]
        limit: Option<u32>,
        /// JSON lines or CSV.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
        /// Write here instead of stdout.
        #[arg(long)]
        output_file: Option<PathBuf>,
    },
    /// Erase a data subject's payloads (keeping the skeletons, so verify still passes).
    Erase {
        /// The data subject: whose payloads go.
        #[arg(long)]
        principal: String,
        /// Why (the request or legal basis), kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Replace the audit signing key (recorded, and covered by a checkpoint of the old key).
    RotateKey,
    /// Read archived events back (JSON lines), checking each segment against its manifest.
    Restore {
        /// The archive directory (`[audit] archive`).
        #[arg(long)]
        archive: PathBuf,
        /// From this time: RFC 3339, or a duration meaning that long ago.
        #[arg(long)]
        since: Option<String>,
        /// Before this time: RFC 3339, or a duration meaning that long ago.
        #[arg(long)]
        until: Option<String>,
        /// Write here instead of stdout.
        #[arg(long)]
        output_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<Failure>() {
                Some(Failure::Usage(_)) => 2,
                _ => 1,
            };
            eprintln!("jitgate: {}", output::causes(&e));
            ExitCode::from(code)
        }
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JITGATE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            init_logging();
            let config = Config::load(&config)?;
            let running = jitgate_server::start(config, Arc::new(SystemClock)).await?;
            running.until_signal().await;
            Ok(())
        }
        Command::Demo {
            dir,
            listen,
            postgres,
            database,
            gateway_listen,
            reset,
        } => {
            init_logging();
            demo::run(&demo::Options {
                dir,
                listen,
                postgres,
                database,
                gateway_listen,
                reset,
            })
            .await
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let c = Config::load(&config)?;
            out!(
                "{}: ok ({} principals, {} resources, {} policies)",
                config.display(),
                c.principals.len(),
                c.resources.len(),
                c.policies.len()
            );
            Ok(())
        }
        Command::Policy { command } => policy_cmd::run(command),
        Command::Resource { command } => resource_cmd::run(command).await,
        Command::Token {
            command: TokenCommand::New { output },
        } => {
            let token = jitgate_core::ids::new_token();
            let digest = hex::encode(Sha256::digest(token.as_bytes()));
            if output == Output::Json {
                out!("{}", json!({ "token": token, "token_sha256": digest }));
            } else {
                out!(
                    "token:        {token}\ntoken_sha256: {digest}\n\nGive the token to its owner; put only token_sha256 in the config."
                );
            }
            Ok(())
        }
        Command::Request { conn, command } => request(&conn, command).await,
        Command::Grant { conn, command } => grant(&conn, command).await,
        Command::Audit { conn, command } => audit(&conn, command).await,
        Command::Hold { conn, command } => audit_cmd::hold(&conn, command).await,
        Command::Retention { conn, command } => audit_cmd::retention(command, conn.output).await,
        Command::Access {
            conn,
            command: AccessCommand::List,
        } => {
            let client = Client::new(&conn.url, conn.token.clone())?;
            access::list(&client, conn.output == Output::Json).await
        }
        Command::Credentials { conn, grant } => credentials(&conn, grant).await,
        Command::Connect {
            conn,
            resource,
            gateway,
            exec,
            psql_args,
        } => connect(&conn, resource, gateway, exec, psql_args).await,
        Command::Whoami { conn } => {
            let client = Client::new(&conn.url, conn.token.clone())?;
            let me = client.get("/api/v1/whoami").await?;
            if conn.output == Output::Json {
                out!("{me}");
            } else {
                output::fields(
                    &me,
                    &[
                        "name",
                        "kind",
                        "groups",
                        "admin",
                        "auditor",
                        "gateway",
                        "source",
                        "session",
                        "expires_at",
                    ],
                );
            }
            Ok(())
        }
        Command::Login {
            conn,
            provider,
            jwt_file,
            id_token,
            browser,
        } => {
            let json_out = conn.output == Output::Json;
            let say = |line: &str| {
                if json_out {
                    eprintln!("{line}");
                } else {
                    out!("{line}");
                }
            };
            let issued = match provider {
                Some(provider) => {
                    login::login_workload(&conn.url, &provider, jwt_file.as_deref(), id_token)
                        .await?
                }
                None if browser => login::login_browser(&conn.url, say).await?,
                None => login::login_device(&conn.url, say).await?,
            };
            let mut shown = issued.clone();
            shown.as_object_mut().map(|o| o.remove("token"));
            if conn.output == Output::Json {
                out!("{shown}");
            } else {
                output::fields(&shown, &["name", "kind", "groups", "session", "expires_at"]);
            }
            Ok(())
        }
        Command::Logout { conn } => {
            let ended = login::logout(&conn.url).await?;
            if conn.output == Output::Json {
                out!("{}", json!({ "signed_out": ended }));
            } else if ended {
                out!("signed out of {}", conn.url);
            } else {
                out!("no stored session for {}", conn.url);
            }
            Ok(())
        }
    }
}

/// `jitgate credentials`: the grant's credentials, in the form `-o` asks for.
async fn credentials(conn: &CredentialsConn, grant: String) -> anyhow::Result<()> {
    let client = Client::new(&conn.url, conn.token.clone())?;
    let grant_id = access::grant_id(&client, &grant).await?;
    let c = client
        .get(&format!(
            "/api/v1/grants/{}/credentials",
            client::enc(&grant_id)
        ))
        .await?;
    match conn.output {
        CredentialsOutput::Json => out!("{c}"),
        CredentialsOutput::Env => {
            for (k, v) in c["env"].as_object().into_iter().flatten() {
                out!("{k}={}", shell_quote(v.as_str().unwrap_or_default()));
            }
        }
        CredentialsOutput::Cnf => match c["option_file"].as_str() {
            Some(text) => out!("{}", text.trim_end()),
            None => {
                return Err(usage(
                    "-o cnf is for MariaDB/MySQL grants (a mysql option file); use -o env or -o json",
                ));
            }
        },
        CredentialsOutput::Table => {
            output::fields(&c, &["grant_id", "username", "dsn"]);
            eprintln!(
                "(-o env prints lines for the target's own clients; the password is in the dsn)"
            );
        }
    }
    Ok(())
}

/// `jitgate connect`: a connection string through the gateway, or psql run with it.
async fn connect(
    conn: &Conn,
    resource: String,
    gateway: Option<String>,
    exec: bool,
    psql_args: Vec<String>,
) -> anyhow::Result<()> {
    let client = Client::new(&conn.url, conn.token.clone())?;
    let me = client.get("/api/v1/whoami").await?;
    let name = me["name"].as_str().unwrap_or_default().to_owned();
    let gateway = gateway
        .or_else(|| me["gateway"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "127.0.0.1:6432".into());
    let (host, port) = gateway
        .rsplit_once(':')
        .ok_or_else(|| usage(format!("--gateway {gateway:?} is not HOST:PORT")))?;
    // A short-lived password bound to this grant, never the long-lived API token.
    let grant = active_grant(&client, &name, &resource).await?;
    let issued = client
        .post(
            &format!("/api/v1/grants/{}/gateway-password", client::enc(&grant)),
            json!({}),
        )
        .await?;
    let password = issued["password"].as_str().unwrap_or_default().to_owned();
    if exec {
        let status = std::process::Command::new("psql")
            .args(&psql_args)
            .env("PGHOST", host)
            .env("PGPORT", port)
            .env("PGDATABASE", &resource)
            .env("PGUSER", &name)
            .env("PGPASSWORD", &password)
            .status()
            .map_err(|e| Failure::Refused(format!("cannot run psql: {e}")))?;
        return if status.success() {
            Ok(())
        } else {
            Err(Failure::Refused(format!("psql exited with {status}")).into())
        };
    }
    let dsn = format!(
        "postgresql://{}:{}@{host}:{port}/{}",
        client::enc(&name),
        client::enc(&password),
        client::enc(&resource)
    );
    if conn.output == Output::Json {
        out!(
            "{}",
            json!({ "dsn": dsn, "host": host, "port": port, "dbname": resource, "user": name,
                    "password": password, "grant_id": grant, "expires_at": issued["expires_at"] })
        );
    } else {
        out!("{dsn}");
        eprintln!(
            "(the password works for {name} on {resource} only, until grant {grant} ends at {})",
            cell(&issued["expires_at"])
        );
    }
    Ok(())
}

/// A time on the command line: RFC 3339, or a duration (`+2h` ahead, or `1h` ago for searches).
fn when(text: &str, ago: bool) -> anyhow::Result<String> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t.to_string());
    }
    let (ahead, d) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None if ago => (false, text),
        None => {
            return Err(usage(format!(
                "{text:?} is not a time: use RFC 3339 (2026-01-14T10:00:00Z) or +DURATION (+2h)"
            )));
        }
    };
    let d = duration::parse(d).map_err(|e| usage(e.to_string()))?;
    let now = SystemClock.now();
    let t = if ahead {
        duration::add(now, d)
    } else {
        now.checked_sub(jiff::SignedDuration::try_from(d).context("duration too large")?)
            .context("too far back")?
    };
    Ok(t.to_string())
}

async fn request(conn: &Conn, command: RequestCommand) -> anyhow::Result<()> {
    let client = Client::new(&conn.url, conn.token.clone())?;
    let r = match command {
        RequestCommand::Create {
            resource,
            role,
            duration,
            reason,
            ticket,
            start_at,
            break_glass,
            wait,
        } => {
            let start_at = start_at.map(|s| when(&s, false)).transpose()?;
            let body = json!({
                "resource": resource, "role": role, "duration": duration, "reason": reason,
                "ticket": ticket, "start_at": start_at, "break_glass": break_glass,
            });
            let mut r = client.post("/api/v1/requests", body).await?;
            if wait {
                if conn.output == Output::Table && r["state"] == "pending" {
                    eprintln!("request {} is pending approval; waiting…", cell(&r["id"]));
                }
                while matches!(r["state"].as_str(), Some("pending" | "approved")) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    r = client
                        .get(&format!("/api/v1/requests/{}", cell(&r["id"])))
                        .await?;
                }
                print_request(conn, &r);
                if r["state"] != "active" {
                    return Err(Failure::Refused(format!(
                        "request {} {}",
                        cell(&r["id"]),
                        why_not_active(&r)
                    ))
                    .into());
                }
                return Ok(());
            }
            r
        }
        RequestCommand::List { state, limit } => {
            let q = query(&[("state", state), ("limit", limit.map(|l| l.to_string()))]);
            let mut list = client.get(&format!("/api/v1/requests{q}")).await?;
            if conn.output == Output::Json {
                out!("{list}");
            } else {
                // What waits for a decision: the request, or the extension of its grant.
                for r in list.as_array_mut().into_iter().flatten() {
                    let a = &r["awaiting"];
                    let (what, reason) = match a["kind"].as_str() {
                        Some("extension") => (
                            format!("extension +{}", cell(&a["duration"])),
                            a["reason"].clone(),
                        ),
                        Some(_) => ("approval".to_owned(), a["reason"].clone()),
                        None => ("-".to_owned(), r["reason"].clone()),
                    };
                    r["awaiting_"] = what.into();
                    r["reason_"] = reason;
                }
                output::rows(
                    &list,
                    &[
                        ("ID", "id"),
                        ("STATE", "state"),
                        ("PRINCIPAL", "principal"),
                        ("RESOURCE", "resource"),
                        ("ROLE", "role"),
                        ("DURATION", "duration"),
                        ("AWAITING", "awaiting_"),
                        ("CREATED", "created_at"),
                        ("GRANT", "grant_id"),
                        ("REASON", "reason_"),
                    ],
                );
            }
            return Ok(());
        }
        RequestCommand::Show { id } => {
            client
                .get(&format!("/api/v1/requests/{}", client::enc(&id)))
                .await?
        }
        RequestCommand::Approve { id, comment } => {
            client
                .post(
                    &format!("/api/v1/requests/{}/approve", client::enc(&id)),
                    json!({ "comment": comment }),
                )
                .await?
        }
        RequestCommand::Deny { id, reason } => {
            client
                .post(
                    &format!("/api/v1/requests/{}/deny", client::enc(&id)),
                    json!({ "reason": reason }),
                )
                .await?
        }
        RequestCommand::Cancel { id } => {
            client
                .post(
                    &format!("/api/v1/requests/{}/cancel", client::enc(&id)),
                    json!({}),
                )
                .await?
        }
    };
    print_request(conn, &r);
    Ok(())
}

async fn grant(conn: &Conn, command: GrantCommand) -> anyhow::Result<()> {
    let client = Client::new(&conn.url, conn.token.clone())?;
    let path = |id: &str, verb: &str| format!("/api/v1/grants/{}/{verb}", client::enc(id));
    let g = match command {
        GrantCommand::List { active, limit } => {
            let q = query(&[
                ("active", active.then(|| "true".to_owned())),
                ("limit", limit.map(|l| l.to_string())),
            ]);
            let list = client.get(&format!("/api/v1/grants{q}")).await?;
            if conn.output == Output::Json {
                out!("{list}");
            } else {
                output::rows(
                    &list,
                    &[
                        ("ID", "id"),
                        ("STATE", "state"),
                        ("PRINCIPAL", "principal"),
                        ("RESOURCE", "resource"),
                        ("ROLE", "role"),
                        ("STARTS", "starts_at"),
                        ("EXPIRES", "expires_at"),
                        ("NEEDS_REVIEW", "needs_review"),
                    ],
                );
            }
            return Ok(());
        }
        GrantCommand::Show { id } => {
            client
                .get(&format!("/api/v1/grants/{}", client::enc(&id)))
                .await?
        }
        GrantCommand::Release { id } => client.post(&path(&id, "release"), json!({})).await?,
        GrantCommand::Revoke { id, reason } => {
            client
                .post(&path(&id, "revoke"), json!({ "reason": reason }))
                .await?
        }
        GrantCommand::Extend {
            id,
            duration,
            reason,
        } => {
            client
                .post(
                    &path(&id, "extend"),
                    json!({ "duration": duration, "reason": reason }),
                )
                .await?
        }
        GrantCommand::Review { id, comment } => {
            client
                .post(&path(&id, "review"), json!({ "comment": comment }))
                .await?
        }
    };
    if conn.output == Output::Json {
        out!("{g}");
    } else {
        output::fields(
            &g,
            &[
                "id",
                "request_id",
                "state",
                "principal",
                "resource",
                "role",
                "starts_at",
                "expires_at",
                "needs_review",
                "end_reason",
                "ended_by",
            ],
        );
        if let Some(ext) = g["extensions"].as_array().and_then(|e| e.last()) {
            let by = match ext.get("decision").filter(|d| !d.is_null()) {
                Some(d) => format!(" by {}", decision(d)),
                None => String::new(),
            };
            out!(
                "extension:    {} ({}{by})",
                cell(&ext["duration"]),
                cell(&ext["state"])
            );
        }
    }
    Ok(())
}

/// The caller's active grant on `resource` (`resource/database` names the resource too) that
/// ends last, for a gateway password.
async fn active_grant(client: &Client, me: &str, resource: &str) -> anyhow::Result<String> {
    let name = resource.split_once('/').map_or(resource, |(r, _)| r);
    let grants = client.get("/api/v1/grants?active=true&limit=1000").await?;
    grants
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["principal"] == me && g["resource"] == name)
        .max_by_key(|g| cell(&g["expires_at"]))
        .and_then(|g| g["id"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            Failure::Refused(format!(
                "{me} has no active grant on {name}; ask for one: jitgate request create --resource {name} --role ROLE --duration 30m --reason \"…\""
            ))
            .into()
        })
}

/// Quotes a value for a POSIX shell when it needs it.
fn shell_quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c))
    {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

fn cell(v: &Value) -> String {
    output::cell(v)
}

/// Who decided, with their comment: `dora ("ok for INC-4411")`.
fn decision(d: &Value) -> String {
    match d["comment"].as_str().filter(|c| !c.is_empty()) {
        Some(c) => format!("{} ({c:?})", cell(&d["by"])),
        None => cell(&d["by"]),
    }
}

/// How a request that is not active ended, and by whom: what `request create --wait` says.
fn why_not_active(r: &Value) -> String {
    match r["state"].as_str() {
        Some("denied") => format!("was denied by {}", decision(&r["denial"])),
        Some("cancelled") => format!("was cancelled by {}", decision(&r["cancellation"])),
        Some("timed_out") => "timed out: nobody decided before its pending_timeout".to_owned(),
        _ => format!("ended {}", cell(&r["state"])),
    }
}

fn print_request(conn: &Conn, r: &Value) {
    if conn.output == Output::Json {
        out!("{r}");
        return;
    }
    output::fields(
        r,
        &[
            "id",
            "state",
            "principal",
            "resource",
            "role",
            "duration",
            "reason",
            "ticket",
            "policies",
            "approved_by_rule",
            "pending_until",
            "grant_id",
        ],
    );
    if let Some(a) = r["approvals"].as_array().filter(|a| !a.is_empty()) {
        let by: Vec<String> = a.iter().map(decision).collect();
        out!("approvals:        {}", by.join(", "));
    }
    if let Some(d) = r.get("denial").filter(|d| !d.is_null()) {
        out!("denied_by:        {}", decision(d));
    }
    if let Some(d) = r.get("cancellation").filter(|d| !d.is_null()) {
        out!("cancelled_by:     {}", decision(d));
    }
    if let Some(g) = r.get("grant").filter(|g| !g.is_null()) {
        out!("expires_at:       {}", cell(&g["expires_at"]));
        if g["needs_review"] == true {
            out!("needs_review:     true (break-glass)");
        }
    }
    let a = &r["awaiting"];
    if a["kind"] == "extension" {
        let reason = a["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        out!(
            "awaiting:         approval of an extension by {}{reason}",
            cell(&a["duration"])
        );
    }
    let d = &r["decided"];
    if let Some(kind) = d["kind"].as_str() {
        let what = match kind {
            "extension" => "the extension",
            _ => "the request",
        };
        out!(
            "decided:          {what} for {}: {}",
            cell(&d["duration"]),
            cell(&d["outcome"]).replace('_', " ")
        );
    }
}

async fn audit(conn: &Conn, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Search {
            filters,
            limit,
            include_searches,
        } => {
            let client = Client::new(&conn.url, conn.token.clone())?;
            let hide_searches = !include_searches && filters.action.is_none();
            let mut pairs = filters.pairs()?;
            pairs.push(("limit", limit.map(|l| l.to_string())));
            if hide_searches {
                pairs.push(("exclude_action", Some("audit.searched".into())));
            }
            let events = client
                .get(&format!("/api/v1/audit/events{}", query(&pairs)))
                .await?;
            print_events(conn, &events);
            Ok(())
        }
        AuditCommand::Verify {
            local,
            anchor,
            public_key,
            archive,
        } => audit_cmd::verify(&local, anchor, public_key, archive, conn.output),
        AuditCommand::Export {
            filters,
            limit,
            format,
            output_file,
        } => {
            let mut pairs = filters.pairs()?;
            pairs.push(("limit", limit.map(|l| l.to_string())));
            audit_cmd::export(conn, pairs, &format, output_file).await
        }
        AuditCommand::Erase { principal, reason } => {
            let client = Client::new(&conn.url, conn.token.clone())?;
            let v = client
                .post(
                    "/api/v1/audit/erasures",
                    json!({ "principal": principal, "reason": reason }),
                )
                .await?;
            if conn.output == Output::Json {
                out!("{v}");
            } else {
                out!(
                    "erased {} payloads of {principal}; the event skeletons remain and still verify",
                    v["payloads_erased"]
                );
            }
            Ok(())
        }
        AuditCommand::RotateKey => {
            let client = Client::new(&conn.url, conn.token.clone())?;
            let v = client.post("/api/v1/audit/rotate-key", json!({})).await?;
            if conn.output == Output::Json {
                out!("{v}");
            } else {
                output::fields(&v, &["key_id", "public_key"]);
            }
            Ok(())
        }
        AuditCommand::Restore {
            archive,
            since,
            until,
            output_file,
        } => audit_cmd::restore(archive, since, until, output_file),
    }
}

fn print_events(conn: &Conn, events: &Value) {
    if conn.output == Output::Json {
        out!("{events}");
    } else {
        events::print(events);
    }
}
