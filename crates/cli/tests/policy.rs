//! `jitgate policy …` run as a user does: the real binary on a config file, no server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

/// Principals, resources and policies these tests reason about.
const CONFIG: &str = r#"
[[principals]]
name = "alice"
groups = ["engineering"]

[[principals]]
name = "bob"
groups = ["engineering", "oncall"]

[[principals]]
name = "dora"
groups = ["dba"]

[[principals]]
name = "ci-bot"
kind = "service"
groups = ["ci"]

[[resources]]
name = "orders-db"
kind = "none"
[resources.roles.read]
grants = ["pg_read_all_data"]
database = "orders"
[resources.roles.admin]

[[policies]]
name = "engineers-read-orders"
principals = ["group:engineering"]
resources = ["orders-*"]
roles = ["read"]
max_duration = "4h"
require_reason = true
[policies.approval]
approvers = ["group:dba"]
required = 1
[[policies.auto_approve]]
name = "oncall-short"
principals = ["group:oncall"]
max_duration = "30m"
[policies.break_glass]
principals = ["group:oncall"]
max_duration = "1h"

[[policies]]
name = "ci-admin"
principals = ["service:ci-bot"]
resources = ["orders-db"]
roles = ["admin"]
max_duration = "15m"
[policies.approval]
required = 0
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn jitgate(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn said(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn explain_names_the_decision_the_approvers_and_what_the_role_grants() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "jitgate.toml", CONFIG);
    let c = config.to_str().unwrap();
    let ask = |who: &str, extra: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            "--config",
            c,
            "--principal",
            who,
            "--resource",
            "orders-db",
            "--role",
            "read",
            "--reason",
            "INC-1",
        ];
        if !extra.contains(&"--duration") {
            args.extend(["--duration", "20m"]);
        }
        args.extend_from_slice(extra);
        jitgate(&args)
    };
    let o = ask("alice", &[]);
    assert!(o.status.success(), "{}", said(&o));
    let text = stdout(&o);
    for want in [
        "decision:     needs_approval: waits for approval under policy engineers-read-orders",
        "approvers:    1 of group:dba (policy engineers-read-orders): dora",
        "max duration: 4h",
        "role grants:  pg_read_all_data (database orders)",
        "rule oncall-short",
        "it is for group:oncall",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("ci-admin") && l.contains("not for alice")),
        "{text}"
    );
    // bob is on call: approved at once; with --groups he is not, and waits.
    let o = ask("bob", &[]);
    assert!(
        stdout(&o).contains(
            "auto_approved: approved at once under policy engineers-read-orders (oncall-short)"
        ),
        "{}",
        said(&o)
    );
    let o = ask("bob", &["--groups", "engineering"]);
    assert!(
        stdout(&o).contains("decision:     needs_approval"),
        "{}",
        said(&o)
    );
    // Break-glass, as JSON.
    let o = ask("bob", &["--break-glass", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decision"], "break_glass", "{v}");
    assert_eq!(v["max_duration"], "1h", "{v}");
    // Refused: exit 0 (the explanation worked), the reason named.
    let o = ask("alice", &["--duration", "5h"]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(stdout(&o).contains("denied: alice may not have role read on orders-db: policy engineers-read-orders: duration 5h exceeds max_duration 4h"), "{}", said(&o));
    // An unknown role is bad usage: exit 2, naming the roles there are.
    let o = jitgate(&[
        "policy",
        "explain",
        "--config",
        c,
        "--principal",
        "alice",
        "--resource",
        "orders-db",
        "--role",
        "write",
        "--duration",
        "5m",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    assert!(said(&o).contains("its roles: admin, read"), "{}", said(&o));
}
