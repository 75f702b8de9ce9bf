//! MariaDB / MySQL: one ephemeral user per grant.
//!
//! Provision: `CREATE USER 'jit_<principal>_<grant>'@'%' IDENTIFIED BY …`, `GRANT` the role's
//! MariaDB roles and `SET DEFAULT ROLE` (the first one). Suspend (before a release or revoke is
//! recorded): `ACCOUNT LOCK` and kill the user's connections; resume: `ACCOUNT UNLOCK`. Revoke: `ACCOUNT LOCK`, kill the user's
//! connections, `DROP USER`.
//!
//! MariaDB has no `VALID UNTIL`: while jitgate is down, an ephemeral user keeps working until
//! jitgate is back and revokes it (first thing at startup). The other layers of enforcement (the
//! gateway's own deadline) still apply; see docs/connectors.md.

use async_trait::async_trait;
use jitgate_core::Timestamp;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use serde_json::json;

use crate::naming::{self, my_ident, my_literal};
use crate::{
    Connector, ConnectorError, Credentials, GrantSpec, Handle, Managed, Passwords, handle_str,
};

/// MySQL 8 limits user names to 32 characters (MariaDB allows 80); stay within both.
const MAX_NAME: usize = 32;

#[derive(Debug, Clone)]
pub struct MysqlSettings {
    pub resource: String,
    /// A user with CREATE USER, GRANT OPTION on the roles, and CONNECTION ADMIN/SUPER. A secret.
    pub admin_url: String,
    pub client_host: Option<String>,
    pub client_port: Option<u16>,
    /// Login names start with this (default `jit_`). MariaDB users carry no comment, so this
    /// prefix is what tells this installation's users apart: give each jitgate installation
    /// that shares a MariaDB server its own prefix.
    pub role_prefix: String,
}

pub struct MysqlConnector {
    settings: MysqlSettings,
    opts: Opts,
    pool: Pool,
    passwords: Passwords,
}

impl MysqlConnector {
    pub fn new(settings: MysqlSettings) -> Result<Self, ConnectorError> {
        let opts = Opts::from_url(&settings.admin_url).map_err(|e| {
            ConnectorError::invalid(
                &format!(
                    "resource {}: admin_url is not a MySQL URL",
                    settings.resource
                ),
                e,
            )
        })?;
        // Connect the way the URL says: over TCP to its host, unless it asks for a socket
        // (`socket=…`, or `prefer_socket=true`). By default mysql_async moves a connection to
        // 127.0.0.1 onto the server's unix socket, where the same user name is another account
        // (`root@localhost` instead of `root@127.0.0.1`), with other privileges.
        let says_which = settings
            .admin_url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("prefer_socket=")));
        let opts: Opts = if says_which {
            opts
        } else {
            OptsBuilder::from_opts(opts).prefer_socket(false).into()
        };
        let constraints = PoolConstraints::new(0, 8).expect("valid pool bounds");
        let pooled = OptsBuilder::from_opts(opts.clone())
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        Ok(Self {
            pool: Pool::new(pooled),
            settings,
            opts,
            passwords: Passwords::default(),
        })
    }

    fn target(&self) -> String {
        format!("mysql resource {}", self.settings.resource)
    }

    /// The target failed with `e`.
    fn target_err(&self, e: impl std::error::Error + Send + Sync + 'static) -> ConnectorError {
        ConnectorError::target(self.target(), None, e)
    }

    /// The target did something it should not have.
    fn target_said(&self, message: &str) -> ConnectorError {
        ConnectorError::target_said(self.target(), message)
    }

    async fn conn(&self) -> Result<mysql_async::Conn, ConnectorError> {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.pool.get_conn())
            .await
            .map_err(|_| self.target_said("timed out connecting"))?
            .map_err(|e| self.target_err(e))
    }

    async fn user_exists(
        &self,
        conn: &mut mysql_async::Conn,
        login: &str,
    ) -> Result<bool, ConnectorError> {
        let found: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM mysql.user WHERE User = ? AND Host = '%'",
                (login,),
            )
            .await
            .map_err(|e| self.target_err(e))?;
        Ok(found.is_some())
    }

    /// No new logins (`ACCOUNT LOCK`), then kill every connection of the user.
    async fn disable(
        &self,
        conn: &mut mysql_async::Conn,
        login: &str,
    ) -> Result<(), ConnectorError> {
        conn.query_drop(format!("ALTER USER {} ACCOUNT LOCK", Self::user(login)))
            .await
            .map_err(|e| self.target_err(e))?;
        let ids: Vec<u64> = conn
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
                (login,),
            )
            .await
            .map_err(|e| self.target_err(e))?;
        for id in ids {
            // A connection that ended meanwhile is fine ("Unknown thread id").
            if let Err(e) = conn.query_drop(format!("KILL CONNECTION {id}")).await {
                tracing::debug!(login = %login, id, error = %e, "connection already gone");
            }
        }
        Ok(())
    }

    /// Gives the login a new password (after a restart, when the old one is not in memory).
    async fn reset_password(&self, login: &str) -> Result<String, ConnectorError> {
        let password = naming::password();
        let mut conn = self.conn().await?;
        conn.query_drop(format!(
            "ALTER USER {} IDENTIFIED BY {}",
            Self::user(login),
            my_literal(&password)
        ))
        .await
        .map_err(|e| self.target_err(e))?;
        self.passwords.set(login, &password);
        Ok(password)
    }

    fn user(login: &str) -> String {
        format!("{}@'%'", my_literal(login))
    }
}

#[async_trait]
impl Connector for MysqlConnector {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    async fn provision(&self, grant: &GrantSpec) -> Result<Option<Handle>, ConnectorError> {
        let login = naming::login_name(
            &self.settings.role_prefix,
            &grant.principal,
            &grant.grant_id,
            MAX_NAME,
        );
        let password = naming::password();
        let user = Self::user(&login);
        let mut conn = self.conn().await?;
        let exists = self.user_exists(&mut conn, &login).await?;
        // DDL is not transactional here: a retry finds the user and converges on it.
        let create = if exists {
            format!(
                "ALTER USER {user} IDENTIFIED BY {} ACCOUNT UNLOCK",
                my_literal(&password)
            )
        } else {
            format!("CREATE USER {user} IDENTIFIED BY {}", my_literal(&password))
        };
        conn.query_drop(create)
            .await
            .map_err(|e| self.target_err(e))?;
        if !grant.grants.is_empty() {
            let roles: Vec<String> = grant.grants.iter().map(|g| my_ident(g)).collect();
            conn.query_drop(format!("GRANT {} TO {user}", roles.join(", ")))
                .await
                .map_err(|e| self.target_err(e))?;
            conn.query_drop(format!("SET DEFAULT ROLE {} FOR {user}", roles[0]))
                .await
                .map_err(|e| self.target_err(e))?;
        }
        self.passwords.set(&login, &password);
        Ok(Some(
            json!({ "login": login, "grant_id": grant.grant_id, "database": grant.database }),
        ))
    }

    async fn extend(&self, _handle: &Handle, _expires_at: Timestamp) -> Result<(), ConnectorError> {
        Ok(()) // no server-side expiry to move; the grant's end is jitgate's to enforce
    }

    async fn revoke(&self, handle: &Handle) -> Result<(), ConnectorError> {
        let login = handle_str(handle, "login")?.to_owned();
        let user = Self::user(&login);
        let mut conn = self.conn().await?;
        let exists = self.user_exists(&mut conn, &login).await?;
        if exists {
            self.disable(&mut conn, &login).await?;
            conn.query_drop(format!("DROP USER IF EXISTS {user}"))
                .await
                .map_err(|e| self.target_err(e))?;
        }
        self.passwords.forget(&login);
        Ok(())
    }

    async fn suspend(&self, handle: &Handle) -> Result<(), ConnectorError> {
        let login = handle_str(handle, "login")?;
        let mut conn = self.conn().await?;
        if self.user_exists(&mut conn, login).await? {
            self.disable(&mut conn, login).await?;
        }
        Ok(())
    }

    async fn resume(&self, handle: &Handle) -> Result<(), ConnectorError> {
        let login = handle_str(handle, "login")?;
        let mut conn = self.conn().await?;
        if self.user_exists(&mut conn, login).await? {
            conn.query_drop(format!("ALTER USER {} ACCOUNT UNLOCK", Self::user(login)))
                .await
                .map_err(|e| self.target_err(e))?;
        }
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<Managed>, ConnectorError> {
        let mut conn = self.conn().await?;
        let prefix = self.settings.role_prefix.as_str();
        // Whether an account is locked: MariaDB keeps it in global_priv's JSON, MySQL 8 in a
        // column of mysql.user.
        let mariadb =
            "SELECT User, COALESCE(JSON_VALUE(Priv, '$.account_locked'), '0') IN ('1', 'true')
             FROM mysql.global_priv WHERE Host = '%' AND LEFT(User, CHAR_LENGTH(?)) = ?";
        let mysql = "SELECT User, account_locked = 'Y'
             FROM mysql.user WHERE Host = '%' AND LEFT(User, CHAR_LENGTH(?)) = ?";
        let logins: Vec<(String, bool)> = match conn.exec(mariadb, (prefix, prefix)).await {
            Ok(rows) => rows,
            Err(_) => conn
                .exec(mysql, (prefix, prefix))
                .await
                .map_err(|e| self.target_err(e))?,
        };
        Ok(logins
            .into_iter()
            .filter_map(|(login, suspended)| {
                let grant_id = naming::grant_id_of(&login)?;
                Some(Managed {
                    handle: json!({ "login": login, "grant_id": grant_id }),
                    grant_id,
                    suspended,
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
        let host = self
            .settings
            .client_host
            .clone()
            .unwrap_or_else(|| self.opts.ip_or_hostname().to_owned());
        let port = self
            .settings
            .client_port
            .unwrap_or_else(|| self.opts.tcp_port());
        let database = handle
            .get("database")
            .and_then(|d| d.as_str())
            .map(str::to_owned)
            .or_else(|| self.opts.db_name().map(str::to_owned));
        let dsn = format!(
            "mysql://{}:{}@{host}:{port}/{}",
            naming::url_component(login),
            naming::url_component(&password),
            database
                .as_deref()
                .map(naming::url_component)
                .unwrap_or_default()
        );
        // The `mysql` client reads a host, a port and a password from the environment, but
        // no user and no database: those come from the option file (or -u and a database
        // argument).
        let env = vec![
            ("MYSQL_HOST".to_owned(), host.clone()),
            ("MYSQL_TCP_PORT".to_owned(), port.to_string()),
            ("MYSQL_PWD".to_owned(), password.clone()),
        ];
        let option_file = option_file(&host, port, login, &password, database.as_deref());
        Ok(Some(Credentials {
            username: login.to_owned(),
            password,
            dsn,
            env,
            option_file: Some(option_file),
        }))
    }
}

/// A MySQL/MariaDB option file with the login: `[client]` (every client reads it) and, for the
/// `mysql` client alone, the database (`mysqldump` and others refuse a `database` option).
fn option_file(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    database: Option<&str>,
) -> String {
    // Quoted values: backslash and the quote are escaped, as the option-file reader expects.
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let mut text = format!(
        "[client]\nhost={}\nport={port}\nuser={}\npassword={}\n",
        quote(host),
        quote(user),
        quote(password)
    );
    if let Some(db) = database {
        text += &format!("\n[mysql]\ndatabase={}\n", quote(db));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_file_quotes_every_value() {
        let text = super::option_file("db.internal", 3306, "jit_a", "p\"w\\x", Some("shop db"));
        assert_eq!(
            text,
            "[client]\nhost=\"db.internal\"\nport=3306\nuser=\"jit_a\"\npassword=\"p\\\"w\\\\x\"\n\n[mysql]\ndatabase=\"shop db\"\n"
        );
    }
}
