//! `jitgate-bench connector --kind postgres|mysql --grants N`.
//!
//! 1. Baseline: the target's own bare create/drop of a login, N times in a row.
//! 2. The connector's provision and revoke, N times in a row (latency per call).
//! 3. N grants through the server that all end at the same instant, 20 of them with an open
//!    session: time from the common end until every one is fully revoked (sessions cut, logins
//!    dropped).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jitgate_audit::EventFilter;
use jitgate_connectors::mysql::{MysqlConnector, MysqlSettings};
use jitgate_connectors::postgres::{PostgresConnector, PostgresSettings};
use jitgate_connectors::{Connector, GrantSpec};
use jitgate_core::{Clock, SystemClock, Timestamp, duration, ids};
use jitgate_server::auth::Caller;
use jitgate_server::service::NewRequest;
use mysql_async::prelude::Queryable;
use rand::Rng;

use crate::percentile;

const SESSIONS: usize = 20;

struct Target {
    kind: String,
    base: String,
    db: String,
    role: String,
    prefix: String,
}

fn tag() -> String {
    (0..6)
        .map(|_| (b'a' + rand::rng().random_range(0..26)) as char)
        .collect()
}

impl Target {
    async fn create(kind: &str) -> anyhow::Result<Target> {
        let t = tag();
        let (db, role, prefix) = (
            format!("jg_bench_{t}"),
            format!("jb{t}_read"),
            format!("jb{t}_"),
        );
        let target = if kind == "postgres" {
            let base = std::env::var("JITGATE_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            pg(&format!("{base}/postgres"))
                .await?
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await?;
            pg(&format!("{base}/{db}"))
                .await?
                .batch_execute(&format!("CREATE TABLE orders (id int); CREATE ROLE {role} NOLOGIN; GRANT SELECT ON orders TO {role};"))
                .await?;
            Target {
                kind: kind.into(),
                base,
                db,
                role,
                prefix,
            }
        } else {
            let base = std::env::var("JITGATE_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
            let mut c = my_connect(base.as_str()).await?;
            c.query_drop(format!("CREATE DATABASE {db}")).await?;
            c.query_drop(format!("CREATE TABLE {db}.orders (id int)"))
                .await?;
            c.query_drop(format!("CREATE ROLE {role}")).await?;
            c.query_drop(format!("GRANT SELECT ON {db}.orders TO {role}"))
                .await?;
            c.disconnect().await?;
            Target {
                kind: kind.into(),
                base,
                db,
                role,
                prefix,
            }
        };
        Ok(target)
    }

    fn admin_url(&self) -> String {
        format!("{}/{}", self.base, self.db)
    }

    fn connector(&self) -> anyhow::Result<Arc<dyn Connector>> {
        Ok(if self.kind == "postgres" {
            Arc::new(PostgresConnector::new(PostgresSettings {
                resource: "bench".into(),
                admin_url: self.admin_url(),
                owner_role: None,
                databases: vec![],
                client_host: None,
                client_port: None,
                role_prefix: self.prefix.clone(),
                instance: format!("bench-{}", self.db),
                masking: Default::default(),
                masking_key: None,
            })?)
        } else {
            Arc::new(MysqlConnector::new(MysqlSettings {
                resource: "bench".into(),
                admin_url: self.admin_url(),
                client_host: None,
                client_port: None,
                role_prefix: self.prefix.clone(),
            })?)
        })
    }

    /// The target's own bare create + drop of a login, the floor under any connector.
    async fn baseline(&self, n: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let (mut create, mut drop) = (Vec::new(), Vec::new());
        if self.kind == "postgres" {
            let c = pg(&self.admin_url()).await?;
            for i in 0..n {
                let name = format!("{}base{i}", self.prefix);
                let t = Instant::now();
                c.batch_execute(&format!(
                    "CREATE ROLE {name} LOGIN PASSWORD 'x' IN ROLE {}",
                    self.role
                ))
                .await?;
                create.push(ms(t));
                let t = Instant::now();
                c.batch_execute(&format!("DROP ROLE {name}")).await?;
                drop.push(ms(t));
            }
        } else {
            let mut c = my_connect(self.admin_url().as_str()).await?;
            for i in 0..n {
                let name = format!("{}base{i}", self.prefix);
                let t = Instant::now();
                c.query_drop(format!("CREATE USER '{name}'@'%' IDENTIFIED BY 'x'"))
                    .await?;
                c.query_drop(format!("GRANT {} TO '{name}'@'%'", self.role))
                    .await?;
                create.push(ms(t));
                let t = Instant::now();
                c.query_drop(format!("DROP USER '{name}'@'%'")).await?;
                drop.push(ms(t));
            }
            c.disconnect().await?;
        }
        create.sort_by(f64::total_cmp);
        drop.sort_by(f64::total_cmp);
        Ok((create, drop))
    }

    async fn remaining_logins(&self) -> anyhow::Result<usize> {
        let like = format!("{}%", self.prefix);
        if self.kind == "postgres" {
            let n: i64 = pg(&self.admin_url())
                .await?
                .query_one(
                    "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 AND rolcanlogin",
                    &[&like],
                )
                .await?
                .get(0);
            Ok(n as usize)
        } else {
            let mut c = my_connect(self.admin_url().as_str()).await?;
            let n: Option<i64> = c
                .exec_first(
                    "SELECT count(*) FROM mysql.user WHERE Host = '%' AND User LIKE ?",
                    (like,),
                )
                .await?;
            c.disconnect().await?;
            Ok(n.unwrap_or(0) as usize)
        }
    }

    async fn drop_all(&self) {
        if self.kind == "postgres" {
            if let Ok(c) = pg(&format!("{}/postgres", self.base)).await {
                let _ = c
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
                    .await;
                let like = format!("{}%", self.prefix);
                for row in c
                    .query(
                        "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
                        &[&like],
                    )
                    .await
                    .unwrap_or_default()
                {
                    let r: String = row.get(0);
                    let _ = c
                        .batch_execute(&format!("DROP ROLE IF EXISTS \"{r}\""))
                        .await;
                }
            }
        } else if let Ok(mut c) = my_connect(self.base.as_str()).await {
            let _ = c
                .query_drop(format!("DROP DATABASE IF EXISTS {}", self.db))
                .await;
            let users: Vec<String> = c
                .exec(
                    "SELECT User FROM mysql.user WHERE User LIKE ?",
                    (format!("{}%", self.prefix),),
                )
                .await
                .unwrap_or_default();
            for u in users {
                let _ = c.query_drop(format!("DROP USER IF EXISTS '{u}'@'%'")).await;
            }
            let _ = c
                .query_drop(format!("DROP ROLE IF EXISTS {}", self.role))
                .await;
            let _ = c.disconnect().await;
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

async fn pg(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

pub async fn run(kind: &str, n: usize) -> anyhow::Result<()> {
    let target = Target::create(kind).await?;
    let result = measure(&target, n).await;
    target.drop_all().await;
    result
}

async fn measure(target: &Target, n: usize) -> anyhow::Result<()> {
    eprintln!("connector {}: {n} grants", target.kind);
    let (base_create, base_drop) = target.baseline(n).await?;

    let connector = target.connector()?;
    let (mut provision, mut revoke) = (Vec::new(), Vec::new());
    let mut handles = Vec::new();
    for _ in 0..n {
        let spec = GrantSpec {
            grant_id: ids::new_id("grt"),
            principal: "bench".into(),
            resource: "bench".into(),
            role: "read".into(),
            grants: vec![target.role.clone()],
            database: None,
            expires_at: duration::add(SystemClock.now(), Duration::from_secs(600)),
        };
        let t = Instant::now();
        handles.push(connector.provision(&spec).await?.expect("a handle"));
        provision.push(ms(t));
    }
    for h in &handles {
        let t = Instant::now();
        connector.revoke(h).await?;
        revoke.push(ms(t));
    }
    provision.sort_by(f64::total_cmp);
    revoke.sort_by(f64::total_cmp);

    let batch = batch_end(target, n).await?;
    anyhow::ensure!(
        target.remaining_logins().await? == 0,
        "logins remain after the batch"
    );

    let f = |v: &[f64], p| percentile(v, p);
    println!(
        "baseline  bare create+grant login   p50 {:.2} ms  p99 {:.2} ms;  bare drop p50 {:.2} ms",
        f(&base_create, 50.0),
        f(&base_create, 99.0),
        f(&base_drop, 50.0)
    );
    println!(
        "connector provision                 p50 {:.2} ms  p99 {:.2} ms   ({:.1}x the bare create)",
        f(&provision, 50.0),
        f(&provision, 99.0),
        f(&provision, 50.0) / f(&base_create, 50.0)
    );
    println!(
        "connector revoke (lock, cut, drop)  p50 {:.2} ms  p99 {:.2} ms",
        f(&revoke, 50.0),
        f(&revoke, 99.0)
    );
    println!(
        "batch     {n} grants ending at one instant ({SESSIONS} with open sessions): all revoked {batch:.0} ms after the end"
    );
    println!(
        "provision_p50_ms={:.2} provision_p99_ms={:.2} revoke_p50_ms={:.2} revoke_p99_ms={:.2} batch_revoke_all_ms={batch:.0} baseline_create_p50_ms={:.2}",
        f(&provision, 50.0),
        f(&provision, 99.0),
        f(&revoke, 50.0),
        f(&revoke, 99.0),
        f(&base_create, 50.0)
    );
    Ok(())
}

/// N grants through the server with one common end; returns ms from the end to the last one
/// fully revoked.
async fn batch_end(target: &Target, n: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let extra = format!(
        "\n[[resources]]\nname = \"bench-db\"\nkind = \"{}\"\nadmin_url = \"{}\"\nrole_prefix = \"{}\"\n[resources.roles.read]\ngrants = [\"{}\"]\n\n[[policies]]\nname = \"ci-bench\"\nprincipals = [\"service:ci-bot\"]\nresources = [\"bench-db\"]\nroles = [\"read\"]\nmax_duration = \"1h\"\nallow_overlapping = true\n[policies.approval]\nrequired = 0\n",
        target.kind,
        target.admin_url(),
        target.prefix,
        target.role
    );
    let running = crate::start_with(dir.path(), &extra).await?;
    let app = running.app.clone();
    let bot = app
        .config
        .principals
        .iter()
        .find(|p| p.principal.name == "ci-bot")
        .expect("ci-bot")
        .principal
        .clone();
    let caller = Caller {
        principal: bot,
        is_admin: false,
        is_auditor: false,
        session: None,
    };
    let lead = Duration::from_millis(3000 + 40 * n as u64);
    let start_at = duration::add(SystemClock.now(), lead);
    let length = Duration::from_secs(3);
    let end = duration::add(start_at, length);
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = app
            .create_request(
                &caller,
                NewRequest {
                    resource: "bench-db".into(),
                    role: "read".into(),
                    duration: "3s".into(),
                    start_at: Some(start_at),
                    ..Default::default()
                },
            )
            .await?;
        ids.push(r.grant_id);
    }
    anyhow::ensure!(
        SystemClock.now() < start_at,
        "creating took longer than the lead time"
    );
    // Once active, open sessions on some of the logins: revocation must cut them.
    while (app.metrics.grants_activated.get() as usize) < n {
        anyhow::ensure!(SystemClock.now() < end, "grants did not activate in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut pg_sessions, mut my_sessions) = (Vec::new(), Vec::new());
    for gid in ids.iter().take(SESSIONS) {
        let creds = app.credentials(&caller, gid).await?;
        if target.kind == "postgres" {
            pg_sessions.push(pg(&creds.dsn).await?);
        } else {
            my_sessions.push(my_connect(creds.dsn.as_str()).await?);
        }
    }
    let deadline = Instant::now() + lead + length + Duration::from_secs(60);
    while (app.metrics.grants_ended.get() as usize) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} grants ended",
            app.metrics.grants_ended.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = app
        .store
        .search_events(EventFilter {
            action: Some("grant.expired".into()),
            limit: 1000,
            ..Default::default()
        })
        .await?;
    anyhow::ensure!(
        events.len() == n,
        "expected {n} grant.expired events, found {}",
        events.len()
    );
    let last: Timestamp = events.iter().map(|e| e.ts).max().expect("events");
    running.stop().await;
    let mut alive = 0;
    for c in &pg_sessions {
        alive += usize::from(c.query_one("SELECT 1", &[]).await.is_ok());
    }
    for c in &mut my_sessions {
        alive += usize::from(c.query_drop("SELECT 1").await.is_ok());
    }
    anyhow::ensure!(
        alive == 0,
        "{alive} of {SESSIONS} open sessions survived their grant"
    );
    Ok(last.duration_since(end).as_secs_f64() * 1000.0)
}

/// Connects over TCP as the URL says, like jitgate's connector: roles the benchmark creates are
/// then owned by the account jitgate logs in as, not by `root@localhost` on the unix socket.
async fn my_connect(url: &str) -> Result<mysql_async::Conn, mysql_async::Error> {
    let opts = mysql_async::Opts::from_url(url)?;
    mysql_async::Conn::new(mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false)).await
}
