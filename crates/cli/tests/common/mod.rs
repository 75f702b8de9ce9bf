//! Helpers for the CLI's end-to-end tests: a config, a real server process, the real CLI.
#![allow(dead_code)] // each test binary uses its own part

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn config(dir: &Path, port: u16) -> PathBuf {
    config_with(dir, port, "")
}

/// The test config with `extra` TOML appended (audit and retention sections).
pub fn config_with(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nadmins = [\"group:security\"]\n\n"
    );
    for (name, kind, groups) in [
        ("alice", "user", "\"engineering\""),
        ("dora", "user", "\"dba\""),
        ("ci-bot", "service", "\"ci\""),
        ("root", "user", "\"security\""),
    ] {
        s += &format!(
            "[[principals]]\nname = \"{name}\"\nkind = \"{kind}\"\ngroups = [{groups}]\ntoken_sha256 = \"{}\"\n\n",
            digest(&format!("tok-{name}"))
        );
    }
    s += r#"
[[resources]]
name = "orders-db"
kind = "none"
[resources.roles.read]
[resources.roles.deploy]

[[policies]]
name = "read"
principals = ["group:engineering"]
resources = ["orders-db"]
roles = ["read"]
max_duration = "1h"
[policies.approval]
approvers = ["group:dba"]

[[policies]]
name = "ci"
principals = ["service:ci-bot"]
resources = ["orders-db"]
roles = ["deploy"]
max_duration = "10m"
allow_overlapping = true   # CI runs deploy jobs side by side
[policies.approval]
required = 0
"#;
    s += extra;
    let path = dir.join("jitgate.toml");
    std::fs::write(&path, s).unwrap();
    path
}

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(config: &Path, port: u16) -> Server {
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, url }
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no shutdown path runs
        self.child.wait().unwrap();
    }

    pub fn cli(&self, who: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("JITGATE_URL", &self.url)
            .env("JITGATE_TOKEN", format!("tok-{who}"))
            .output()
            .unwrap()
    }

    pub fn json(&self, who: &str, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.cli(who, &all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sql` as the `postgres` superuser on `db`; its output without alignment, or `None` if
/// it failed.
pub fn psql(db: &str, sql: &str) -> Option<String> {
    let out = Command::new(jitgate_testkit::psql())
        .args([
            "-X",
            "-q",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-c", sql])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
