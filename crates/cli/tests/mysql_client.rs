//! A MariaDB grant's credentials, used by the real `mysql` client as they are printed.

mod common;

use std::process::Command;

use common::*;

/// Runs SQL as MariaDB's root over TCP; its output, or `None` if it failed.
fn mysql_root(sql: &str) -> Option<String> {
    let out = Command::new(jitgate_testkit::mysql())
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-N",
            "-B",
            "-e",
            sql,
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn the_mysql_client_reads_the_option_file_and_the_env_lines() {
    if mysql_root("SELECT 1").is_none() {
        assert!(
            std::env::var("JITGATE_REQUIRE_SERVICES").is_err(),
            "MariaDB is not reachable at 127.0.0.1:3306"
        );
        eprintln!("SKIPPED: MariaDB is not reachable");
        return;
    }
    let tag = format!("jgm{}", std::process::id());
    let cleanup = || {
        mysql_root(&format!("DROP DATABASE IF EXISTS {tag}"));
        mysql_root(&format!("DROP ROLE IF EXISTS {tag}_read"));
        let users = mysql_root(&format!(
            "SELECT User FROM mysql.user WHERE User LIKE '{tag}\\_%' AND Host = '%'"
        ))
        .unwrap_or_default();
        for u in users.lines() {
            mysql_root(&format!("DROP USER IF EXISTS '{u}'@'%'"));
        }
    };
    cleanup();
    mysql_root(&format!(
        "CREATE DATABASE {tag}; CREATE TABLE {tag}.orders (id int); INSERT INTO {tag}.orders VALUES (1), (2);
         CREATE ROLE {tag}_read; GRANT SELECT ON {tag}.* TO {tag}_read"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config_with(
        dir.path(),
        port,
        &format!(
            r#"
[[resources]]
name = "shop-db"
kind = "mysql"
admin_url = "mysql://root@127.0.0.1:3306/{tag}"
role_prefix = "{tag}_"
[resources.roles.read]
grants = ["{tag}_read"]
database = "{tag}"

[[policies]]
name = "shop"
principals = ["service:ci-bot"]
resources = ["shop-db"]
roles = ["read"]
max_duration = "10m"
[policies.approval]
required = 0
"#
        ),
    );
    let server = Server::start(&cfg, port);
    let r = server.json(
        "ci-bot",
        &[
            "request",
            "create",
            "--resource",
            "shop-db",
            "--role",
            "read",
            "--duration",
            "10m",
        ],
    );
    assert_eq!(r["state"], "active", "{r}");
    let grant = r["grant_id"].as_str().unwrap();
    let login = server.json("ci-bot", &["credentials", grant])["username"]
        .as_str()
        .unwrap()
        .to_owned();
    let query = "SELECT CURRENT_USER(), DATABASE(), (SELECT count(*) FROM orders)";
    let run = |script: &str| {
        let out = Command::new("bash")
            .args(["-c", script])
            .env("JITGATE_URL", &server.url)
            .env("JITGATE_TOKEN", "tok-ci-bot")
            .env("JITGATE", BIN)
            .env("QUERY", query)
            .env("LOGIN", &login)
            .env("GRANT", grant)
            .env_remove("MYSQL_HOST")
            .env_remove("MYSQL_PWD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // The option file carries the whole login, the database included; nothing on a command line.
    let got = run(
        r#"mysql --defaults-extra-file=<("$JITGATE" credentials "$GRANT" -o cnf) -N -B -e "$QUERY""#,
    );
    assert_eq!(got, format!("{login}@%\t{tag}\t2"));
    // The env lines are those mysql reads (host, port, password); the user and database are
    // given as usual.
    let got = run(
        r#"eval "$("$JITGATE" credentials "$GRANT" -o env | sed 's/^/export /')" && mysql -u "$LOGIN" -N -B -e "$QUERY" "$MYSQL_DB""#
            .replace("$MYSQL_DB", &tag)
            .as_str(),
    );
    assert_eq!(got, format!("{login}@%\t{tag}\t2"));
    let env = run(r#""$JITGATE" credentials "$GRANT" -o env"#);
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert_eq!(names, ["MYSQL_HOST", "MYSQL_PWD", "MYSQL_TCP_PORT"]);
    drop(server);
    cleanup();
}
