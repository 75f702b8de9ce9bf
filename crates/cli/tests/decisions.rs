//! What approvers and requesters are told by the CLI: pending extensions in the approvers'
//! queue, what an approval decided, and who decided a request and why.

mod common;

use common::*;

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn approvers_see_a_pending_extension_and_what_they_approved() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(&config(dir.path(), port), port);
    let r = server.json(
        "alice",
        &[
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "read",
            "--duration",
            "30m",
        ],
    );
    let id = r["id"].as_str().unwrap();
    let approved = server.json("dora", &["request", "approve", id]);
    let grant = approved["grant_id"].as_str().unwrap();
    server.json(
        "alice",
        &[
            "grant",
            "extend",
            grant,
            "--duration",
            "10m",
            "--reason",
            "almost there",
        ],
    );
    let list = stdout(&server.cli("dora", &["request", "list", "--state", "pending"]));
    let row = list
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("the extension is not in dora's queue:\n{list}"));
    assert!(
        row.contains("extension +10m") && row.contains("almost there"),
        "{list}"
    );
    let out = stdout(&server.cli("dora", &["request", "approve", id]));
    assert!(
        out.contains("decided:          the extension for 10m: approved"),
        "{out}"
    );
}

#[test]
fn a_requester_is_told_who_decided_and_why() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(&config(dir.path(), port), port);
    let waiting = Command::new(BIN)
        .args([
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "read",
        ])
        .args(["--duration", "30m", "--reason", "INC-1 check", "--wait"])
        .env("JITGATE_URL", &server.url)
        .env("JITGATE_TOKEN", "tok-alice")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = loop {
        let pending = server.json("dora", &["request", "list", "--state", "pending"]);
        if let Some(id) = pending[0]["id"].as_str() {
            break id.to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    server.json(
        "dora",
        &[
            "request",
            "deny",
            &id,
            "--reason",
            "change freeze until Monday",
        ],
    );
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (printed, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let line = "denied_by:        dora (\"change freeze until Monday\")";
    assert!(printed.contains(line), "{printed}");
    assert!(
        stderr.contains(&format!(
            "request {id} was denied by dora (\"change freeze until Monday\")"
        )),
        "{stderr}"
    );
    let shown = stdout(&server.cli("alice", &["request", "show", &id]));
    assert!(shown.contains(line), "{shown}");
    // Approvals show who approved, with their comment.
    let r = server.json(
        "alice",
        &[
            "request",
            "create",
            "--resource",
            "orders-db",
            "--role",
            "read",
            "--duration",
            "30m",
        ],
    );
    let id = r["id"].as_str().unwrap();
    server.json(
        "dora",
        &["request", "approve", id, "--comment", "ok for INC-1"],
    );
    let shown = stdout(&server.cli("alice", &["request", "show", id]));
    assert!(
        shown.contains("approvals:        dora (\"ok for INC-1\")"),
        "{shown}"
    );
}
