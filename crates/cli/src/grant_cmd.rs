//! `jitgate grant`, `credentials` and `connect`: see and end grants, and use one.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::client::{self, Client, Failure, query, usage};
use crate::output::{self, cell, out};
use crate::request_cmd::decision;
use crate::{Conn, Output, access};

/// `jitgate credentials` alone has a third output format, so it has its own connection options.
#[derive(Args, Clone)]
pub struct CredentialsConn {
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
pub enum CredentialsOutput {
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
pub enum GrantCommand {
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

pub async fn grant(conn: &Conn, command: GrantCommand) -> anyhow::Result<()> {
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

/// `jitgate credentials`: the grant's credentials, in the form `-o` asks for.
pub async fn credentials(conn: &CredentialsConn, grant: String) -> anyhow::Result<()> {
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
pub async fn connect(
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
