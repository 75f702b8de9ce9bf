//! The `jitgate` binary end to end: a real server process, driven by the real CLI.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::*;

fn config_check(path: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn config_check_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), 1);
    let ok = config_check(&path);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("ok (4 principals, 1 resources, 2 policies)")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_duration = \"1h\"", "max_duration = \"1 fortnight\"");
    std::fs::write(&path, text).unwrap();
    let bad = config_check(&path);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&format!("{}:", path.display()))
            && err.contains("policies[0].max_duration: invalid duration"),
        "{err}"
    );
}

#[test]
fn config_check_lists_every_problem_with_the_names_meant() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), 1);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("group:dba", "group:dbas")
        .replace("service:ci-bot", "service:ci-bott")
        .replacen(
            "resources = [\"orders-db\"]",
            "resources = [\"order-db\"]",
            1,
        )
        .replace(
            "max_duration = \"1h\"",
            "max_duration = \"1 fortnight\"\nrequire_reason = \"yes\"",
        )
        .replace(
            "max_duration = \"10m\"",
            "max_duration = \"10m\"\nmax_duraton = \"5m\"",
        );
    std::fs::write(&path, text).unwrap();
    let bad = config_check(&path);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.starts_with("jitgate: 6 problems in the config:\n"),
        "{err}"
    );
    let file = path.display().to_string();
    for want in [
        "policies[0].resources[0]: no resource matches \"order-db\" (did you mean `orders-db`?)",
        "policies[0].max_duration: invalid duration",
        "policies[0].require_reason: invalid type",
        "policies[0].approval.approvers[0]: no principal belongs to group \"dbas\" (did you mean `group:dba`?)",
        "policies[1].principals[0]: no service principal is named \"ci-bott\" (did you mean `service:ci-bot`?)",
        "policies[1].max_duraton: unknown field `max_duraton`",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{file}:")) && l.contains(want)),
            "{want} not in {err}"
        );
    }
    assert_eq!(
        err.lines().filter(|l| l.contains(&file)).count(),
        6,
        "each problem once: {err}"
    );

    std::fs::write(&path, "# nothing yet\n").unwrap();
    let empty = config_check(&path);
    assert_eq!(empty.status.code(), Some(1));
    let err = String::from_utf8_lossy(&empty.stderr);
    assert!(
        err.contains("the config defines no principals")
            && err.contains("the config defines no resources"),
        "{err}"
    );
}

#[test]
fn token_new_prints_a_token_and_its_digest() {
    let out = Command::new(BIN)
        .args(["token", "new", "-o", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("jg_") && token.len() > 40);
    assert_eq!(v["token_sha256"], digest(token));
}

#[test]
fn lifecycle_through_the_cli_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start(&config(dir.path(), port), port);
    let r = s.json(
        "alice",
        &[
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "read",
            "--duration",
            "10m",
            "--reason",
            "INC-1",
        ],
    );
    assert_eq!(r["state"], "pending");
    let id = r["id"].as_str().unwrap();
    let out = s.cli("alice", &["request", "approve", id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "refused: self-approval is not allowed"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not approve"));
    let r = s.json("dora", &["request", "approve", id, "--comment", "ok"]);
    assert_eq!(r["state"], "active");
    let grants = s.json("alice", &["grant", "list", "--active"]);
    let gid = grants[0]["id"].as_str().unwrap();
    let table = String::from_utf8(s.cli("alice", &["grant", "list", "--active"]).stdout).unwrap();
    assert!(table.starts_with("ID") && table.contains(gid), "{table}");
    let g = s.json("alice", &["grant", "release", gid]);
    assert_eq!(g["state"], "released");
    let events = s.json("root", &["audit", "search", "--request", id]);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "request.created",
            "request.approve",
            "request.approved",
            "grant.activated",
            "grant.revoking",
            "grant.released"
        ]
    );
    // bad usage exits 2: a malformed duration, an unknown flag, no token
    assert_eq!(
        s.cli(
            "alice",
            &[
                "request",
                "create",
                "--resource",
                "orders-db",
                "--role",
                "read",
                "--duration",
                "soon"
            ]
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        s.cli("alice", &["request", "create", "--bogus"])
            .status
            .code(),
        Some(2)
    );
    let no_token = Command::new(BIN)
        .args(["request", "list"])
        .env("JITGATE_URL", &s.url)
        .env_remove("JITGATE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(2));
    // a server that is not there is a failure, not a usage error
    let gone = Command::new(BIN)
        .args(["whoami"])
        .env("JITGATE_URL", "http://127.0.0.1:1")
        .env("JITGATE_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn wait_returns_once_an_approver_decides() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start(&config(dir.path(), port), port);
    let waiter = Command::new(BIN)
        .args([
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "read",
            "--duration",
            "5m",
            "--wait",
            "-o",
            "json",
        ])
        .env("JITGATE_URL", &s.url)
        .env("JITGATE_TOKEN", "tok-alice")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let id = loop {
        let list = s.json("dora", &["request", "list", "--state", "pending"]);
        if let Some(id) = list[0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    };
    s.json("dora", &["request", "approve", &id]);
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["state"], "active");
}

#[test]
fn restart_after_kill_9_ends_overdue_grants_first_thing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let s = Server::start(&cfg, port);
    let r = s.json(
        "ci-bot",
        &[
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "deploy",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(r["state"], "active");
    let id = r["id"].as_str().unwrap().to_owned();
    s.kill9();
    std::thread::sleep(Duration::from_millis(2000));
    let s = Server::start(&cfg, port);
    // the first answer of the restarted server already shows the grant ended
    let r = s.json("root", &["request", "show", &id]);
    assert_eq!(r["state"], "expired", "{r}");
    let events = s.json(
        "root",
        &[
            "audit",
            "search",
            "--grant",
            r["grant_id"].as_str().unwrap(),
            "--action",
            "grant.expired",
        ],
    );
    assert_eq!(events.as_array().unwrap().len(), 1);
}

#[test]
fn demo_starts_with_no_setup_and_its_tokens_work() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let database = format!("jg_demo_p{}", std::process::id());
    let gw_port = free_port();
    let demo_cmd = || {
        let mut c = Command::new(BIN);
        c.args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
            &database,
            "--gateway-listen",
            &format!("127.0.0.1:{gw_port}"),
        ])
        .current_dir(dir.path())
        .env_remove("JITGATE_DEMO_POSTGRES");
        c
    };
    let mut demo = demo_cmd()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed += &line;
        printed.push('\n');
        if line.contains("audit search") {
            break;
        }
    }
    assert!(
        printed.contains(&format!("running at http://127.0.0.1:{port}")),
        "{printed}"
    );
    let env = std::fs::read_to_string(dir.path().join("jitgate-demo/demo.env")).unwrap();
    let token = |who: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {who}_TOKEN=")))
            .unwrap()
            .to_owned()
    };
    assert!(printed.contains(&token("ALICE")), "tokens are printed");
    let url = format!("http://127.0.0.1:{port}");
    let run = |who: &str, args: &[&str]| -> Value {
        let out = Command::new(BIN)
            .args(args)
            .args(["-o", "json"])
            .env("JITGATE_URL", &url)
            .env("JITGATE_TOKEN", token(who))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(run("ALICE", &["whoami"])["name"], "alice");
    // The tour's first steps, as printed.
    let r = run(
        "ALICE",
        &[
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "read",
            "--duration",
            "5m",
            "--reason",
            "INC-4411",
        ],
    );
    let r = run("DORA", &["request", "approve", r["id"].as_str().unwrap()]);
    assert_eq!(r["state"], "active");
    if printed.contains("on the local PostgreSQL") {
        // With PostgreSQL there, the grant is a real login that can read orders.
        let creds = run("ALICE", &["credentials", r["grant_id"].as_str().unwrap()]);
        let out = Command::new(jitgate_testkit::psql())
            .args([
                "-X",
                "-At",
                "-c",
                "select count(*) from orders",
                creds["dsn"].as_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "4",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // ... and through the demo's gateway, as the tour shows.
        let via = Command::new(BIN)
            .args([
                "connect",
                "orders-db",
                "--exec",
                "--",
                "-X",
                "-At",
                "-c",
                "select count(*) from orders",
            ])
            .env("JITGATE_URL", &url)
            .env("JITGATE_TOKEN", token("ALICE"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&via.stdout).trim(),
            "4",
            "{}",
            String::from_utf8_lossy(&via.stderr)
        );
        run(
            "ALICE",
            &["grant", "release", r["grant_id"].as_str().unwrap()],
        );
    } else {
        assert!(
            std::env::var("JITGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "the demo found no PostgreSQL: {printed}"
        );
        eprintln!("SKIPPED: the demo's PostgreSQL part (no PostgreSQL reachable)");
    }
    demo.kill().unwrap();
    demo.wait().unwrap();
    // A second run reuses the same tokens and config.
    let before = std::fs::read_to_string(dir.path().join("jitgate-demo/demo-tokens.json")).unwrap();
    let mut again = demo_cmd()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    again.kill().unwrap();
    again.wait().unwrap();
    assert_eq!(
        before,
        std::fs::read_to_string(dir.path().join("jitgate-demo/demo-tokens.json")).unwrap()
    );
    for sql in [
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        format!("DROP ROLE IF EXISTS {database}_read"),
        format!("DROP ROLE IF EXISTS {database}_admin"),
        format!("DROP ROLE IF EXISTS {database}_owner"),
    ] {
        psql("postgres", &sql);
    }
}

/// psql as a user would run it, with what `jitgate credentials -o env` prints.
#[test]
fn credentials_env_lines_work_with_psql() {
    let psql = |env: &[(String, String)], sql: &str| {
        Command::new(jitgate_testkit::psql())
            .args(["-X", "-At", "-c", sql])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    };
    let admin = [
        ("PGHOST".to_owned(), "127.0.0.1".to_owned()),
        ("PGUSER".to_owned(), "postgres".to_owned()),
        ("PGDATABASE".to_owned(), "postgres".to_owned()),
    ];
    if !psql(&admin, "SELECT 1").status.success() {
        assert!(
            std::env::var("JITGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PostgreSQL is unreachable"
        );
        eprintln!("SKIPPED: PostgreSQL is unreachable");
        return;
    }
    let tag = format!("p{}", std::process::id()); // one such test per test process
    let (db, role) = (format!("jg_cli_{tag}"), format!("jc{tag}_read"));
    assert!(
        psql(&admin, &format!("CREATE DATABASE {db}"))
            .status
            .success()
    );
    let mut in_db = admin.clone();
    in_db[2].1 = db.clone();
    assert!(psql(&in_db, &format!("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2); CREATE ROLE {role}; GRANT SELECT ON orders TO {role};")).status.success());

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(dir.path(), port);
    let text = std::fs::read_to_string(&path).unwrap()
        + &format!(
            "\n[[resources]]\nname = \"pg\"\nkind = \"postgres\"\nadmin_url = \"postgres://postgres@127.0.0.1:5432/{db}\"\nrole_prefix = \"jc{tag}_\"\n[resources.roles.read]\ngrants = [\"{role}\"]\n\n[[policies]]\nname = \"ci-pg\"\nprincipals = [\"service:ci-bot\"]\nresources = [\"pg\"]\nroles = [\"read\"]\nmax_duration = \"10m\"\n[policies.approval]\nrequired = 0\n"
        );
    std::fs::write(&path, text).unwrap();
    let s = Server::start(&path, port);
    let r = s.json(
        "ci-bot",
        &[
            "request",
            "create",
            "--resource",
            "pg",
            "--role",
            "read",
            "--duration",
            "5m",
        ],
    );
    let gid = r["grant_id"].as_str().unwrap().to_owned();
    let out = s.cli("ci-bot", &["credentials", &gid, "-o", "env"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        })
        .collect();
    assert!(env.iter().any(|(k, _)| k == "PGPASSWORD"), "{env:?}");
    let counted = psql(&env, "SELECT count(*) FROM orders");
    assert_eq!(
        String::from_utf8_lossy(&counted.stdout).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&counted.stderr)
    );
    let json = s.json("ci-bot", &["credentials", &gid]);
    let by_name = s.json("ci-bot", &["credentials", "pg"]);
    assert_eq!(
        (&by_name["grant_id"], &by_name["dsn"]),
        (&json["grant_id"], &json["dsn"]),
        "a resource name finds the caller's active grant on it"
    );
    let none = s.cli("root", &["credentials", "pg"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("you hold no active grant on \"pg\""),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    let via_dsn = Command::new(jitgate_testkit::psql())
        .args([
            "-X",
            "-At",
            "-c",
            "SELECT current_user",
            json["dsn"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&via_dsn.stdout).starts_with(&format!("jc{tag}_ci_bot_")),
        "the dsn works as a psql argument"
    );
    assert_eq!(
        s.cli("root", &["credentials", &gid]).status.code(),
        Some(1),
        "nobody but the grantee"
    );
    s.json("ci-bot", &["grant", "release", &gid]);
    assert!(
        !psql(&env, "SELECT 1").status.success(),
        "the login is gone after release"
    );
    drop(s);
    psql(&admin, &format!("DROP DATABASE {db} WITH (FORCE)"));
    psql(&admin, &format!("DROP ROLE {role}"));
}

/// `jitgate audit search | head`: a reader that closes the pipe early ends the command quietly
/// and successfully, never with a panic and a backtrace.
#[test]
fn commands_end_quietly_when_their_output_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start(&config(dir.path(), port), port);
    s.json(
        "ci-bot",
        &[
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "deploy",
            "--duration",
            "1m",
        ],
    );
    for args in [
        &["audit", "search"][..],
        &["audit", "search", "-o", "json"],
        &["audit", "export"],
        &["grant", "list"],
        &["token", "new"],
    ] {
        let mut child = Command::new(BIN)
            .args(args)
            .env("JITGATE_URL", &s.url)
            .env("JITGATE_TOKEN", "tok-root")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command writes its first line (it first asks the
        // server, or at least starts up): every write it makes meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(err.is_empty(), "{args:?} said: {err}");
    }
}

/// The default audit table tells the story in one line per event (what was asked, why, who
/// decided with what comment), and the auditor's own searches do not crowd it out.
#[test]
fn audit_search_tells_the_story_without_the_auditors_own_searches() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start(&config(dir.path(), port), port);
    let r = s.json(
        "alice",
        &[
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "read",
            "--duration",
            "10m",
            "--reason",
            "INC-4411 check orders",
        ],
    );
    let id = r["id"].as_str().unwrap();
    s.json(
        "dora",
        &["request", "approve", id, "--comment", "ok for INC-4411"],
    );
    let table = |args: &[&str]| {
        let out = s.cli("root", args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for _ in 0..3 {
        table(&["audit", "search"]);
    }
    let story = table(&["audit", "search"]);
    let line = |action: &str| {
        story
            .lines()
            .find(|l| l.contains(&format!(" {action} ")))
            .unwrap_or_else(|| panic!("no {action} in\n{story}"))
            .to_owned()
    };
    let header = story.lines().next().unwrap();
    assert!(
        header.contains(" ID ") && header.ends_with(" WHAT"),
        "{story}"
    );
    let created = line("request.created");
    assert!(
        created.contains(id) && created.contains(r#"read for 10m, reason "INC-4411 check orders""#),
        "{created}"
    );
    assert!(
        line("request.approved").contains(r#"comment "ok for INC-4411""#),
        "{story}"
    );
    assert!(!story.contains("audit.searched"), "{story}");
    let all = table(&["audit", "search", "--include-searches"]);
    assert_eq!(all.matches("audit.searched").count(), 4, "{all}");
    let asked = table(&["audit", "search", "--action", "audit.*"]);
    assert!(
        asked.contains("audit.searched") && asked.contains("returned"),
        "{asked}"
    );
}

/// "What may I ask for?": each role on each resource the caller may request, with its cap, who
/// approves and what is approved at once; nothing for those no policy names.
#[test]
fn access_list_shows_what_each_principal_may_ask_for() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Server::start(&config(dir.path(), port), port);
    let table = |who: &str| {
        let out = s.cli(who, &["access", "list"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let alice = table("alice");
    let row = alice.lines().find(|l| l.starts_with("orders-db")).unwrap();
    for part in ["read", "1h", "1 of group:dba", "read"] {
        assert!(row.contains(part), "{alice}");
    }
    assert_eq!(alice.lines().count(), 2, "only read: {alice}");
    let bot = table("ci-bot");
    assert!(
        bot.lines()
            .any(|l| l.contains("deploy") && l.contains("10m") && l.contains("nobody needed")),
        "{bot}"
    );
    assert!(
        table("dora").contains("(nothing: no policy lets you ask"),
        "dora only approves"
    );
    let v = s.json("alice", &["access", "list"]);
    assert_eq!(v[0]["policies"][0]["approvers"][0], "group:dba", "{v}");
}

/// The demo writes the addresses it runs with and a file anchor into its config, its tour's
/// `audit verify` rules out truncation, and `demo --reset` removes its database, roles, leftover
/// logins and directory (refusing while the demo runs).
#[test]
fn demo_records_its_setup_and_reset_removes_what_it_created() {
    if psql("postgres", "SELECT 1").is_none() {
        assert!(
            std::env::var("JITGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PostgreSQL is unreachable"
        );
        eprintln!("SKIPPED: PostgreSQL is unreachable");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let database = format!("jg_demo_r{}", std::process::id());
    let port = free_port();
    let demo_cmd = |gateway: u16, extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database", &database])
            .args(["--gateway-listen", &format!("127.0.0.1:{gateway}")])
            .args(extra)
            .current_dir(dir.path())
            .env_remove("JITGATE_DEMO_POSTGRES");
        c
    };
    let start = |gateway: u16| {
        let mut demo = demo_cmd(gateway, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(demo.stdout.take().unwrap()).lines();
        let printed: Vec<String> = lines
            .map(Result::unwrap)
            .take_while(|l| !l.contains("--reset` removes"))
            .collect();
        (demo, printed.join("\n"))
    };
    let config_path = dir.path().join("jitgate-demo/jitgate.toml");
    let (mut demo, printed) = start(free_port());
    assert!(printed.contains("on the local PostgreSQL"), "{printed}");
    assert!(
        printed.contains(&format!(
            "audit verify --config {}",
            "./jitgate-demo/jitgate.toml"
        )),
        "{printed}"
    );
    let url = format!("http://127.0.0.1:{port}");
    let env = std::fs::read_to_string(dir.path().join("jitgate-demo/demo.env")).unwrap();
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("export CI_BOT_TOKEN="))
        .unwrap()
        .to_owned();
    let out = Command::new(BIN)
        .args([
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "deploy",
        ])
        .args(["--duration", "2m", "-o", "json"])
        .env("JITGATE_URL", &url)
        .env("JITGATE_TOKEN", &token)
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["state"], "active", "{r}");
    let logins = || {
        psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE '%grant={}%'",
                r["grant_id"].as_str().unwrap()
            ),
        )
        .unwrap()
    };
    assert_eq!(logins(), "1", "the grant is a real login");
    // The anchor gets its first checkpoint within a second; verify then checks the log's end.
    let anchor = dir.path().join("jitgate-demo/anchor/checkpoints");
    let t = Instant::now();
    while !anchor.is_file() {
        assert!(t.elapsed() < Duration::from_secs(10), "no anchor written");
        std::thread::sleep(Duration::from_millis(100));
    }
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && said.starts_with("ok:") && !said.contains("no anchor checked"),
        "{said}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let refused = demo_cmd(0, &["--reset"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("still running"));
    demo.kill().unwrap(); // SIGKILL: the grant's login stays behind for reset to find
    demo.wait().unwrap();

    // A second run on another gateway port writes that port into the config.
    let second = free_port();
    let (mut demo, _) = start(second);
    let config = std::fs::read_to_string(&config_path).unwrap();
    let gateway = config.split("[gateway.postgres]").nth(1).unwrap();
    assert!(
        gateway.contains(&format!("listen = \"127.0.0.1:{second}\"")),
        "{config}"
    );
    demo.kill().unwrap();
    demo.wait().unwrap();

    let reset = demo_cmd(0, &["--reset"]).output().unwrap();
    let said = String::from_utf8_lossy(&reset.stdout);
    assert!(
        reset.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert!(
        said.contains(&format!("dropped database {database}")),
        "{said}"
    );
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{database}'")
        )
        .unwrap(),
        "0"
    );
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname LIKE '{database}\\_%'")
        )
        .unwrap(),
        "0",
        "the demo's roles are gone"
    );
    assert_eq!(logins(), "0", "and so is the login the grant left");
    assert!(!dir.path().join("jitgate-demo").exists());
    let again = demo_cmd(0, &["--reset"]).output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to reset"));
}
