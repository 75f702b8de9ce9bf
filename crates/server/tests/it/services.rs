//! The machine's real PostgreSQL and MariaDB, one throwaway database (and roles) per test.

use std::time::Duration;

use rand::Rng;

/// Services are required (CI) rather than skipped when unreachable.
fn required() -> bool {
    std::env::var("JITGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn unavailable(what: &str, why: impl std::fmt::Display) {
    assert!(
        !required(),
        "{what} is unreachable and JITGATE_REQUIRE_SERVICES=1: {why}"
    );
    eprintln!(
        "SKIPPED: {what} is unreachable ({why}); set JITGATE_REQUIRE_SERVICES=1 to fail instead"
    );
}

pub fn unique(prefix: &str) -> String {
    let tail: String = (0..8)
        .map(|_| (b'a' + rand::rng().random_range(0..26)) as char)
        .collect();
    format!("{prefix}{tail}")
}

pub fn pg_base() -> String {
    std::env::var("JITGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub async fn pg_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A fresh PostgreSQL database with an `orders` table, dropped (with the test's roles) on drop.
pub struct PgDb {
    pub name: String,
    pub admin_url: String,
    /// The `role_prefix` this test's jitgate uses, so cleanup finds logins a failed test left.
    pub prefix: String,
    /// Roles this test created, dropped at the end.
    pub roles: Vec<String>,
}

impl PgDb {
    pub async fn create() -> Option<PgDb> {
        let base = pg_base();
        let admin = match pg_connect(&format!("{base}/postgres")).await {
            Ok(c) => c,
            Err(e) => {
                unavailable("PostgreSQL", e);
                return None;
            }
        };
        let name = unique("jg_test_");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let prefix = unique("jt").chars().take(9).collect::<String>() + "_";
        let db = PgDb {
            admin_url: format!("{base}/{name}"),
            name,
            prefix,
            roles: vec![],
        };
        let c = pg_connect(&db.admin_url).await.unwrap();
        c.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'book'), (2, 'lamp');").await.unwrap();
        Some(db)
    }

    /// Runs SQL as the admin in this database.
    pub async fn exec(&self, sql: &str) {
        pg_connect(&self.admin_url)
            .await
            .unwrap()
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn query_one_opt(&self, sql: &str, param: &str) -> Option<tokio_postgres::Row> {
        pg_connect(&self.admin_url)
            .await
            .unwrap()
            .query_opt(sql, &[&param])
            .await
            .unwrap()
    }

    /// Creates a role for this test (dropped at the end) with the given grants.
    pub async fn role(&mut self, name: &str, grants: &str) {
        self.exec(&format!(
            "CREATE ROLE {} NOLOGIN; {grants}",
            jitgate_connectors::naming::pg_ident(name)
        ))
        .await;
        self.roles.push(name.to_owned());
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (base, name, roles, prefix) = (
            pg_base(),
            self.name.clone(),
            self.roles.clone(),
            self.prefix.clone(),
        );
        // Async cleanup from Drop: a thread of its own with its own runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let Ok(c) = pg_connect(&format!("{base}/postgres")).await else {
                        return;
                    };
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    // Logins a failed test left behind, then the test's own roles.
                    let like = format!("{prefix}%");
                    let leftovers = c
                        .query(
                            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
                            &[&like],
                        )
                        .await
                        .unwrap_or_default();
                    for row in leftovers {
                        let r: String = row.get(0);
                        let _ = c
                            .batch_execute(&format!(
                                "DROP ROLE IF EXISTS {}",
                                jitgate_connectors::naming::pg_ident(&r)
                            ))
                            .await;
                    }
                    for r in roles {
                        let _ = c
                            .batch_execute(&format!(
                                "DROP ROLE IF EXISTS {}",
                                jitgate_connectors::naming::pg_ident(&r)
                            ))
                            .await;
                    }
                });
        })
        .join();
    }
}

/// Connects the way the URL says, over TCP: the accounts a test creates are then owned by the
/// same `root@127.0.0.1` that jitgate's connector logs in as.
pub async fn my_connect(url: &str) -> Result<mysql_async::Conn, mysql_async::Error> {
    let opts = mysql_async::Opts::from_url(url)?;
    mysql_async::Conn::new(mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false)).await
}

pub fn my_base() -> String {
    std::env::var("JITGATE_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A fresh MariaDB database with an `orders` table; its roles and users go with it on drop.
pub struct MyDb {
    pub name: String,
    pub admin_url: String,
    pub prefix: String,
    pub roles: Vec<String>,
}

impl MyDb {
    pub async fn create() -> Option<MyDb> {
        use mysql_async::prelude::Queryable;
        let base = my_base();
        let mut conn =
            match tokio::time::timeout(Duration::from_secs(5), my_connect(base.as_str())).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    unavailable("MariaDB", e);
                    return None;
                }
                Err(_) => {
                    unavailable("MariaDB", "timed out");
                    return None;
                }
            };
        let name = unique("jg_test_");
        conn.query_drop(format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        conn.query_drop(format!(
            "CREATE TABLE {name}.orders (id int PRIMARY KEY, item text)"
        ))
        .await
        .unwrap();
        conn.query_drop(format!(
            "INSERT INTO {name}.orders VALUES (1, 'book'), (2, 'lamp')"
        ))
        .await
        .unwrap();
        conn.disconnect().await.unwrap();
        Some(MyDb {
            admin_url: format!("{base}/{name}"),
            prefix: unique("jt").chars().take(9).collect::<String>() + "_",
            name,
            roles: vec![],
        })
    }

    pub async fn exec(&self, sql: &str) {
        use mysql_async::prelude::Queryable;
        let mut c = my_connect(self.admin_url.as_str()).await.unwrap();
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.disconnect().await.unwrap();
    }

    pub async fn users(&self) -> Vec<String> {
        use mysql_async::prelude::Queryable;
        let mut c = my_connect(self.admin_url.as_str()).await.unwrap();
        let users: Vec<String> = c
            .exec(
                "SELECT User FROM mysql.user WHERE Host = '%' AND User LIKE ?",
                (format!("{}%", self.prefix),),
            )
            .await
            .unwrap();
        c.disconnect().await.unwrap();
        users
    }

    pub async fn role(&mut self, name: &str, grants: &str) {
        let ident = jitgate_connectors::naming::my_ident(name);
        self.exec(&format!("CREATE ROLE {ident}")).await;
        self.exec(&grants.replace("{role}", &ident)).await;
        self.roles.push(name.to_owned());
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let (base, name, roles, prefix) = (
            my_base(),
            self.name.clone(),
            self.roles.clone(),
            self.prefix.clone(),
        );
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    use mysql_async::prelude::Queryable;
                    let Ok(mut c) = my_connect(base.as_str()).await else {
                        return;
                    };
                    let _ = c
                        .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                        .await;
                    let users: Vec<String> = c
                        .exec(
                            "SELECT User FROM mysql.user WHERE User LIKE ?",
                            (format!("{prefix}%"),),
                        )
                        .await
                        .unwrap_or_default();
                    for u in users {
                        let _ = c
                            .query_drop(format!(
                                "DROP USER IF EXISTS {}@'%'",
                                jitgate_connectors::naming::my_literal(&u)
                            ))
                            .await;
                    }
                    for r in roles {
                        let _ = c
                            .query_drop(format!(
                                "DROP ROLE IF EXISTS {}",
                                jitgate_connectors::naming::my_ident(&r)
                            ))
                            .await;
                    }
                    let _ = c.disconnect().await;
                });
        })
        .join();
    }
}
