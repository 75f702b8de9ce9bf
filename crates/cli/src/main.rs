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
mod grant_cmd;
#[cfg(test)]
mod help_tests;
mod login;
mod login_cmd;
mod output;
mod policy_check_cmd;
mod policy_cmd;
mod policy_matrix;
mod policy_test_cmd;
mod request_cmd;
mod resource_cmd;
mod tour;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use jitgate_core::{Clock, Outcome, SystemClock, Timestamp, duration};
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
        command: request_cmd::RequestCommand,
    },
    /// Grants: see, release, revoke, extend, review.
    Grant {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: grant_cmd::GrantCommand,
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
        conn: grant_cmd::CredentialsConn,
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
        Command::Request { conn, command } => request_cmd::request(&conn, command).await,
        Command::Grant { conn, command } => grant_cmd::grant(&conn, command).await,
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
        Command::Credentials { conn, grant } => grant_cmd::credentials(&conn, grant).await,
        Command::Connect {
            conn,
            resource,
            gateway,
            exec,
            psql_args,
        } => grant_cmd::connect(&conn, resource, gateway, exec, psql_args).await,
        Command::Whoami { conn } => login_cmd::whoami(&conn).await,
        Command::Login {
            conn,
            provider,
            jwt_file,
            id_token,
            browser,
        } => login_cmd::login(&conn, provider, jwt_file, id_token, browser).await,
        Command::Logout { conn } => login_cmd::logout(&conn).await,
    }
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
