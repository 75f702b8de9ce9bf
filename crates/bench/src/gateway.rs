//! `jitgate-bench gateway --sessions N`: the gateway's memory per idle session. A `jitgate
//! serve` process runs the gateway; N clients log in through it, run one statement each and
//! stay idle; the server's resident memory is read from /proc before and after.

use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

pub(crate) async fn pg(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

pub async fn run(sessions: usize) -> anyhow::Result<()> {
    let base = std::env::var("JITGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = pg(&format!("{base}/postgres")).await?;
    let max: i64 = admin
        .query_one("SELECT current_setting('max_connections')::bigint", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        max as usize >= sessions + 20,
        "PostgreSQL allows {max} connections; {sessions} idle sessions need {} (ALTER SYSTEM SET max_connections = … and restart)",
        sessions + 20
    );
    let db = format!("jg_gwmem_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let result = measure(&base, &db, sessions).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await;
    drop_logins(&admin, "jgm", &db).await;
    result
}

/// The server was stopped with its grants active: drops the logins it made (`{prefix}_…`),
/// then the bench's role `{db}_r`.
pub(crate) async fn drop_logins(admin: &tokio_postgres::Client, prefix: &str, db: &str) {
    for row in admin
        .query(
            &format!("SELECT rolname FROM pg_roles WHERE rolname LIKE '{prefix}\\_%'"),
            &[],
        )
        .await
        .unwrap_or_default()
    {
        let login: String = row.get(0);
        let _ = admin
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{login}\""))
            .await;
    }
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {db}_r"))
        .await;
}

/// A `jitgate serve` process on free ports, killed when dropped.
pub(crate) struct Server {
    pub child: std::process::Child,
    pub http: u16,
    pub gateway: u16,
    pub token: &'static str,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server whose config is `body` after a `[server]` and `[gateway.postgres]`
    /// section and a service principal `alice`; waits until it answers.
    pub async fn start(body: &str) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let token = "jg_gwmembenchtokengwmembenchtoken";
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        let free = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (http, gateway) = (free()?, free()?);
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{http}\"\ndata_dir = \"data\"\n[gateway.postgres]\nlisten = \"127.0.0.1:{gateway}\"\n\
             [[principals]]\nname = \"alice\"\nkind = \"service\"\ntoken_sha256 = \"{digest}\"\n{body}"
        );
        std::fs::write(dir.path().join("jitgate.toml"), config)?;
        let exe = std::env::current_exe()?.with_file_name("jitgate");
        anyhow::ensure!(
            exe.exists(),
            "{} is missing: cargo build --release",
            exe.display()
        );
        let child = Command::new(&exe)
            .args(["serve", "--config"])
            .arg(dir.path().join("jitgate.toml"))
            .env("JITGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Server {
            child,
            http,
            gateway,
            token,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client
                .get(format!("http://127.0.0.1:{http}/healthz"))
                .send()
                .await
                .is_ok()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the server did not start")
    }

    /// Asks for (and, by the config's policy, gets) a grant of `role` on `resource`; the
    /// request as the API returns it.
    pub async fn grant(&self, resource: &str, role: &str) -> anyhow::Result<serde_json::Value> {
        Ok(reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1/requests", self.http))
            .bearer_auth(self.token)
            .json(&serde_json::json!({"resource": resource, "role": role, "duration": "1h"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// The grant's own login, as a connection URL (the grantee's credentials).
    pub async fn credentials(&self, grant_id: &str) -> anyhow::Result<String> {
        let creds: serde_json::Value = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/api/v1/grants/{grant_id}/credentials",
                self.http
            ))
            .bearer_auth(self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        creds["dsn"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no dsn in {creds}"))
    }

    /// A libpq connection string through the gateway to `resource`.
    pub fn url(&self, resource: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={resource} user=alice password={}",
            self.gateway, self.token
        )
    }
}

async fn measure(base: &str, db: &str, sessions: usize) -> anyhow::Result<()> {
    pg(&format!("{base}/{db}"))
        .await?
        .batch_execute(&format!("CREATE ROLE {db}_r"))
        .await?;
    let server = Server::start(&format!(
        "[[resources]]\nname = \"mem-db\"\nkind = \"postgres\"\nadmin_url = \"{base}/{db}\"\nrole_prefix = \"jgm_\"\n[resources.roles.r]\ngrants = [\"{db}_r\"]\n\
         [[policies]]\nname = \"p\"\nprincipals = [\"service:alice\"]\nresources = [\"mem-db\"]\nroles = [\"r\"]\nmax_duration = \"1h\"\n[policies.approval]\nrequired = 0\n"
    ))
    .await?;
    server.grant("mem-db", "r").await?;
    let url = server.url("mem-db");
    // Warm up: one session, so lazily built state is counted in the baseline, not per session.
    let warm = pg(&url).await?;
    warm.simple_query("SELECT 1").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(server.child.id())?;
    let mut open = Vec::with_capacity(sessions);
    for chunk in (0..sessions).collect::<Vec<_>>().chunks(50) {
        let batch = futures_util::future::join_all(chunk.iter().map(|_| async {
            let c = pg(&url).await?;
            c.simple_query("SELECT 1").await?;
            anyhow::Ok(c)
        }))
        .await;
        for c in batch {
            open.push(c?);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let background audit writes settle
    let after = rss_kib(server.child.id())?;
    let per = (after.saturating_sub(before)) as f64 / sessions as f64;
    println!("baseline  gateway server with 1 session: {before} KiB resident");
    println!("idle      {sessions} more sessions: {after} KiB resident, {per:.1} KiB per session");
    println!(
        "idle_sessions={sessions} rss_per_session_kib={per:.1} rss_before_kib={before} rss_after_kib={after}"
    );
    Ok(())
}
