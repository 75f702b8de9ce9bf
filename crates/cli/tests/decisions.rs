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
