//! PostgreSQL: one ephemeral login role per grant.
//!
//! Provision: `CREATE ROLE jit_<principal>_<grant> LOGIN PASSWORD … VALID UNTIL <end> IN ROLE
//! <grants>`, with a comment tying it to this jitgate instance and the grant. `VALID UNTIL` means
//! PostgreSQL itself refuses new logins after the window even if jitgate is down.
//! Suspend (the first step of ending a grant, before the end is recorded): `NOLOGIN` and terminate
//! the role's backends; resume undoes it. Revoke: `NOLOGIN`, terminate the role's backends, `REASSIGN OWNED` to the owner role and
//! `DROP OWNED` in every database jitgate manages, then `DROP ROLE`.
//! Masking: a role with column rules reads masked views instead of the raw columns, and its
//! login may log in only once that is verified (see [`masking`]).

mod check;
pub mod masking;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use jitgate_core::Timestamp;
use serde_json::json;
use tokio_postgres::NoTls;

use std::collections::BTreeMap;

use crate::naming::{self, pg_ident, pg_literal};
use crate::{
    Connector, ConnectorError, Credentials, Finding, GrantSpec, Handle, Managed, MaskColumnRule,
    Passwords, RoleSpec, handle_str,
};

/// PostgreSQL limits identifiers to 63 bytes.
const MAX_NAME: usize = 63;

#[derive(Clone)]
pub struct PostgresSettings {
    pub resource: String,
    /// A superuser or a role with CREATEROLE and pg_signal_backend. A secret.
    pub admin_url: String,
    /// Receives objects the ephemeral role created (`REASSIGN OWNED`); default: the admin user.
    pub owner_role: Option<String>,
    /// Databases besides the admin URL's in which the role may own objects or hold privileges.
    pub databases: Vec<String>,
    /// Where grantees connect; default: the admin URL's host and port.
    pub client_host: Option<String>,
    pub client_port: Option<u16>,
    /// Login names start with this (default `jit_`).
    pub role_prefix: String,
    /// This jitgate installation, written into each role's comment so reconciliation only ever
    /// touches roles that this installation created.
    pub instance: String,
    /// Column rules by role name: the database enforces them for that role's logins.
    pub masking: BTreeMap<String, Vec<MaskColumnRule>>,
    /// The key of the `hash` strategy (the gateway's masking key), when a rule uses it.
    pub masking_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("resource", &self.resource)
            .field("admin_url", &"<secret>")
            .field("role_prefix", &self.role_prefix)
            .field("masking", &self.masking)
            .finish_non_exhaustive()
    }
}

pub struct PostgresConnector {
    settings: PostgresSettings,
    admin: tokio_postgres::Config,
    pool: Pool,
    /// Passwords of live logins, in memory only. After a restart, asking for credentials sets
    /// a new password (open sessions are not affected).
    passwords: Passwords,
}

impl PostgresConnector {
    pub fn new(settings: PostgresSettings) -> Result<Self, ConnectorError> {
        let admin: tokio_postgres::Config = settings.admin_url.parse().map_err(|e| {
            ConnectorError::invalid(
                &format!(
                    "resource {}: admin_url is not a PostgreSQL URL",
                    settings.resource
                ),
                e,
            )
        })?;
        let mut admin = admin;
        admin.connect_timeout(std::time::Duration::from_secs(5));
        let manager = Manager::from_config(
            admin.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| ConnectorError::invalid(&format!("resource {}", settings.resource), e))?;
        Ok(Self {
            settings,
            admin,
            pool,
            passwords: Passwords::default(),
        })
    }

    fn target(&self) -> String {
        format!("postgres resource {}", self.settings.resource)
    }

    /// The target failed with `e`.
    fn target_err(&self, e: impl std::error::Error + Send + Sync + 'static) -> ConnectorError {
        ConnectorError::target(self.target(), None, e)
    }

    /// The target failed with `e` while doing `context`.
    fn target_in(
        &self,
        context: &str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ConnectorError {
        ConnectorError::target(self.target(), Some(context), e)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, ConnectorError> {
        self.pool.get().await.map_err(|e| self.target_err(e))
    }

    fn comment(&self, grant: &GrantSpec) -> String {
        format!(
            "jitgate instance={} grant={} principal={}",
            self.settings.instance, grant.grant_id, grant.principal
        )
    }

    fn admin_database(&self) -> String {
        self.admin
            .get_dbname()
            .map(str::to_owned)
            .or_else(|| self.admin.get_user().map(str::to_owned))
            .unwrap_or_else(|| "postgres".into())
    }

    fn client_host_port(&self) -> (String, u16) {
        let host = self.settings.client_host.clone().unwrap_or_else(|| {
            self.admin
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".into())
        });
        let port = self
            .settings
            .client_port
            .or_else(|| self.admin.get_ports().first().copied())
            .unwrap_or(5432);
        (host, port)
    }

    fn masking_rules(&self, role: &str) -> &[MaskColumnRule] {
        self.settings
            .masking
            .get(role)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The databases a role's logins may use: the admin URL's, the managed ones, and the
    /// role's own.
    fn databases_of(&self, role_database: Option<&str>) -> Vec<String> {
        let mut dbs = vec![self.admin_database()];
        for d in self
            .settings
            .databases
            .iter()
            .map(String::as_str)
            .chain(role_database)
        {
            if !dbs.iter().any(|x| x == d) {
                dbs.push(d.to_owned());
            }
        }
        dbs
    }

    /// A connection to one database as the admin; the connection task ends when the client
    /// is dropped.
    async fn connect_to(&self, db: &str) -> Result<tokio_postgres::Client, ConnectorError> {
        let mut config = self.admin.clone();
        config.dbname(db);
        let (client, conn) = config
            .connect(NoTls)
            .await
            .map_err(|e| self.target_in(&format!("database {db}"), e))?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// The group role whose members read a masked role's views: made once, named in a comment.
    async fn ensure_readers(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        names: &masking::Names,
        role: &str,
    ) -> Result<(), ConnectorError> {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("jitgate masking readers {}", names.readers)],
        )
        .await
        .map_err(|e| self.target_err(e))?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&names.readers],
            )
            .await
            .map_err(|e| self.target_err(e))?
            .is_some();
        if !exists {
            let readers = pg_ident(&names.readers);
            let comment = format!(
                "jitgate instance={} masked views of resource {} role {role}",
                self.settings.instance, self.settings.resource
            );
            tx.batch_execute(&format!(
                "CREATE ROLE {readers} NOLOGIN; COMMENT ON ROLE {readers} IS {};",
                pg_literal(&comment)
            ))
            .await
            .map_err(|e| self.target_err(e))?;
        }
        Ok(())
    }

    /// In every database the login may use: the role's masked views brought up to date, the
    /// login's `search_path` set to find them first, and what it could still read around
    /// them. Empty means masking holds for it.
    async fn mask_login(
        &self,
        login: &str,
        names: &masking::Names,
        rules: &[MaskColumnRule],
        grant: &GrantSpec,
    ) -> Result<Vec<String>, ConnectorError> {
        let mut exposed = Vec::new();
        for db in self.databases_of(grant.database.as_deref()) {
            let in_db = |e: Box<dyn std::error::Error + Send + Sync>| {
                self.target_in(&format!("database {db}"), e)
            };
            let mut client = self.connect_to(&db).await?;
            let tx = client.transaction().await.map_err(|e| in_db(e.into()))?;
            let plan = masking::plan(&tx, rules, &names.key)
                .await
                .map_err(|e| in_db(e.into()))?;
            masking::install(&tx, names, &plan, rules, self.settings.masking_key.as_ref())
                .await
                .map_err(|e| in_db(e.into()))?;
            let current: String = tx
                .query_one("SELECT current_setting('search_path')", &[])
                .await
                .map_err(|e| in_db(e.into()))?
                .get(0);
            tx.batch_execute(&format!(
                "ALTER ROLE {} IN DATABASE {} SET search_path TO {}",
                pg_ident(login),
                pg_ident(&db),
                masking::search_path(names, &current)
            ))
            .await
            .map_err(|e| in_db(e.into()))?;
            for e in masking::exposures(&tx, login, &plan, rules)
                .await
                .map_err(|e| in_db(e.into()))?
            {
                exposed.push((db.clone(), e));
            }
            tx.commit().await.map_err(|e| in_db(e.into()))?;
        }
        Ok(exposed
            .into_iter()
            .map(|(db, e)| format!("{e} in database {db}"))
            .collect())
    }

    /// Says which grant would expose what, through which target role, and how to fix it.
    async fn exposed_message(&self, grant: &GrantSpec, exposed: &[String]) -> String {
        let mut culprits = Vec::new();
        if let Ok(findings) = check::role_exposures(self, &self.role_spec(grant)).await {
            culprits = findings.into_iter().map(|f| f.message).collect();
        }
        let mut message = format!(
            "grant {} (role {} on {}) was not activated: its login could read what masking hides: {}.",
            grant.grant_id,
            grant.role,
            self.settings.resource,
            exposed.join("; ")
        );
        if culprits.is_empty() {
            message += " Revoke SELECT on those columns from the roles the grant's login joins (and from PUBLIC).";
        } else {
            message += &format!(" {}", culprits.join(" "));
        }
        message
    }

    fn role_spec(&self, grant: &GrantSpec) -> RoleSpec {
        RoleSpec {
            name: grant.role.clone(),
            grants: grant.grants.clone(),
            database: grant.database.clone(),
            masking: self.masking_rules(&grant.role).to_vec(),
        }
    }

    async fn exists(
        &self,
        client: &deadpool_postgres::Object,
        login: &str,
    ) -> Result<bool, ConnectorError> {
        Ok(client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&login])
            .await
            .map_err(|e| self.target_err(e))?
            .is_some())
    }

    /// No new logins, then cut every session of the role, in every database.
    async fn disable(
        &self,
        client: &deadpool_postgres::Object,
        login: &str,
    ) -> Result<(), ConnectorError> {
        client
            .batch_execute(&format!("ALTER ROLE {} NOLOGIN", pg_ident(login)))
            .await
            .map_err(|e| self.target_err(e))?;
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                &[&login],
            )
            .await
            .map_err(|e| self.target_err(e))?;
        Ok(())
    }

    async fn reset_password(&self, login: &str) -> Result<String, ConnectorError> {
        let password = naming::password();
        let client = self.client().await?;
        client
            .batch_execute(&format!(
                "ALTER ROLE {} PASSWORD {}",
                pg_ident(login),
                pg_literal(&password)
            ))
            .await
            .map_err(|e| self.target_err(e))?;
        self.passwords.set(login, &password);
        Ok(password)
    }
}

#[async_trait]
impl Connector for PostgresConnector {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn provision(&self, grant: &GrantSpec) -> Result<Option<Handle>, ConnectorError> {
        let login = naming::login_name(
            &self.settings.role_prefix,
            &grant.principal,
            &grant.grant_id,
            MAX_NAME,
        );
        let rules = self.masking_rules(&grant.role);
        let masked = (!rules.is_empty()).then(|| {
            masking::Names::new(
                &self.settings.role_prefix,
                &self.settings.resource,
                &grant.role,
            )
        });
        let password = naming::password();
        let until = pg_literal(&grant.expires_at.to_string());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.target_err(e))?;
        let exists = tx
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&login])
            .await
            .map_err(|e| self.target_err(e))?
            .is_some();
        let role = pg_ident(&login);
        // A masked role's login may log in only once its masks are verified (below).
        let can_login = if masked.is_some() { "NOLOGIN" } else { "LOGIN" };
        // A retry after a crash finds the role and converges on it, with a fresh password.
        let verb = if exists { "ALTER" } else { "CREATE" };
        let mut sql = format!(
            "{verb} ROLE {role} {can_login} PASSWORD {} VALID UNTIL {until};",
            pg_literal(&password)
        );
        if !grant.grants.is_empty() {
            let granted: Vec<String> = grant.grants.iter().map(|g| pg_ident(g)).collect();
            sql += &format!("GRANT {} TO {role};", granted.join(", "));
        }
        if let Some(names) = &masked {
            self.ensure_readers(&tx, names, &grant.role).await?;
            sql += &format!("GRANT {} TO {role};", pg_ident(&names.readers));
        }
        sql += &format!(
            "COMMENT ON ROLE {role} IS {};",
            pg_literal(&self.comment(grant))
        );
        tx.batch_execute(&sql)
            .await
            .map_err(|e| self.target_err(e))?;
        tx.commit().await.map_err(|e| self.target_err(e))?;
        drop(client);
        let handle =
            json!({ "login": login, "grant_id": grant.grant_id, "database": grant.database });
        if let Some(names) = &masked {
            let exposed = match self.mask_login(&login, names, rules, grant).await {
                Ok(exposed) => exposed,
                Err(e) => {
                    let _ = self.revoke(&handle).await;
                    return Err(e);
                }
            };
            if !exposed.is_empty() {
                // Fail closed: the login goes, and the grant stays unactivated until fixed.
                self.revoke(&handle).await?;
                return Err(ConnectorError::Exposed(
                    self.exposed_message(grant, &exposed).await,
                ));
            }
            self.client()
                .await?
                .batch_execute(&format!("ALTER ROLE {role} LOGIN"))
                .await
                .map_err(|e| self.target_err(e))?;
        }
        self.passwords.set(&login, &password);
        Ok(Some(handle))
    }

    fn database_masking(
        &self,
        role: &str,
        role_database: Option<&str>,
        database: &str,
    ) -> Option<String> {
        // Views are installed only in the databases a login may use; elsewhere a schema of
        // that name could be anyone's.
        let installed = self
            .databases_of(role_database)
            .iter()
            .any(|d| d == database);
        (installed && !self.masking_rules(role).is_empty()).then(|| {
            masking::Names::new(&self.settings.role_prefix, &self.settings.resource, role).views
        })
    }

    async fn check(&self, roles: &[RoleSpec]) -> Result<Vec<Finding>, ConnectorError> {
        check::check(self, roles).await
    }

    async fn extend(&self, handle: &Handle, expires_at: Timestamp) -> Result<(), ConnectorError> {
        let login = handle_str(handle, "login")?;
        let client = self.client().await?;
        client
            .batch_execute(&format!(
                "ALTER ROLE {} VALID UNTIL {}",
                pg_ident(login),
                pg_literal(&expires_at.to_string())
            ))
            .await
            .map_err(|e| self.target_err(e))
    }

    async fn revoke(&self, handle: &Handle) -> Result<(), ConnectorError> {
        let login = handle_str(handle, "login")?.to_owned();
        let client = self.client().await?;
        if !self.exists(&client, &login).await? {
            self.passwords.forget(&login);
            return Ok(());
        }
        let role = pg_ident(&login);
        self.disable(&client, &login).await?;
        let owner = self
            .settings
            .owner_role
            .as_deref()
            .map(pg_ident)
            .unwrap_or_else(|| "CURRENT_USER".into());
        let cleanup = format!("REASSIGN OWNED BY {role} TO {owner}; DROP OWNED BY {role};");
        client
            .batch_execute(&cleanup)
            .await
            .map_err(|e| self.target_err(e))?;
        let admin_db = self.admin_database();
        for db in self.settings.databases.iter().filter(|d| **d != admin_db) {
            let mut config = self.admin.clone();
            config.dbname(db);
            let (other, conn) = config
                .connect(NoTls)
                .await
                .map_err(|e| self.target_in(&format!("database {db}"), e))?;
            let task = tokio::spawn(conn);
            let done = other.batch_execute(&cleanup).await;
            drop(other);
            let _ = task.await;
            done.map_err(|e| self.target_in(&format!("database {db}"), e))?;
        }
        client
            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .await
            .map_err(|e| self.target_err(e))?;
        self.passwords.forget(&login);
        Ok(())
    }

    async fn suspend(&self, handle: &Handle) -> Result<(), ConnectorError> {
        let login = handle_str(handle, "login")?;
        let client = self.client().await?;
        if self.exists(&client, login).await? {
            self.disable(&client, login).await?;
        }
        Ok(())
    }

    async fn resume(&self, handle: &Handle) -> Result<(), ConnectorError> {
        let login = handle_str(handle, "login")?;
        let client = self.client().await?;
        if self.exists(&client, login).await? {
            client
                .batch_execute(&format!("ALTER ROLE {} LOGIN", pg_ident(login)))
                .await
                .map_err(|e| self.target_err(e))?;
        }
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<Managed>, ConnectorError> {
        let client = self.client().await?;
        let prefix = format!("jitgate instance={} grant=", self.settings.instance);
        let rows = client
            .query(
                "SELECT r.rolname, d.description, NOT r.rolcanlogin FROM pg_roles r
                 JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass
                 WHERE starts_with(d.description, $1)",
                &[&prefix],
            )
            .await
            .map_err(|e| self.target_err(e))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let login: String = row.get(0);
                let description: String = row.get(1);
                let grant_id = description
                    .strip_prefix(&prefix)?
                    .split_whitespace()
                    .next()?
                    .to_owned();
                Some(Managed {
                    handle: json!({ "login": login, "grant_id": grant_id }),
                    grant_id,
                    suspended: row.get(2),
                })
            })
            .collect())
    }

    async fn credentials(&self, handle: &Handle) -> Result<Option<Credentials>, ConnectorError> {
        let login = handle_str(handle, "login")?;
        let password = match self.passwords.get(login) {
            Some(p) => p,
            None => self.reset_password(login).await?,
        };
        let database = handle
            .get("database")
            .and_then(|d| d.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| self.admin_database());
        let (host, port) = self.client_host_port();
        let dsn = format!(
            "postgresql://{}:{}@{}:{port}/{}",
            naming::url_component(login),
            naming::url_component(&password),
            if host.starts_with('/') {
                naming::url_component(&host)
            } else {
                host.clone()
            },
            naming::url_component(&database)
        );
        let env = vec![
            ("PGHOST".to_owned(), host),
            ("PGPORT".to_owned(), port.to_string()),
            ("PGDATABASE".to_owned(), database),
            ("PGUSER".to_owned(), login.to_owned()),
            ("PGPASSWORD".to_owned(), password.clone()),
        ];
        Ok(Some(Credentials {
            username: login.to_owned(),
            password,
            dsn,
            env,
            option_file: None,
        }))
    }
}
