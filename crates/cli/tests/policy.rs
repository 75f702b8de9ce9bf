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

#[test]
fn who_can_shows_each_principal_and_group_against_each_role() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "jitgate.toml", CONFIG);
    let o = jitgate(&["policy", "who-can", "--config", c.to_str().unwrap()]);
    assert!(o.status.success(), "{}", said(&o));
    let text = stdout(&o);
    let row = |who: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(who))
            .unwrap_or_else(|| panic!("no row {who} in\n{text}"))
            .to_owned()
    };
    assert!(row("alice").contains("1 of group:dba≤4h"), "{text}");
    assert!(
        row("bob").contains("auto≤30m | 1 of group:dba≤4h | bg≤1h"),
        "{text}"
    );
    assert!(row("ci-bot").contains("auto≤15m"), "{text}");
    assert!(
        row("group:engineering").contains("1 of group:dba≤4h"),
        "{text}"
    );
    assert!(
        row("dora").ends_with('-'),
        "dora can ask for nothing: {text}"
    );
    // Narrowed to one row and role, as JSON.
    let o = jitgate(&[
        "policy",
        "who-can",
        "--config",
        c.to_str().unwrap(),
        "--principal",
        "bob",
        "--role",
        "read",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["access"]["break_glass"]["max_duration"], "1h", "{v}");
}

const CASES: &str = r#"
[[cases]]
name = "alice waits for a dba"
principal = "alice"
resource = "orders-db"
role = "read"
duration = "1h"
reason = "INC-1"
expect = { outcome = "needs_approval", required = 1, approvers = ["group:dba"] }

[[cases]]
name = "bob on call gets a short read at once"
principal = "bob"
resource = "orders-db"
role = "read"
duration = "20m"
reason = "INC-2"
expect = { outcome = "approve", rule = "oncall-short" }

[[cases]]
name = "too long is refused"
principal = "alice"
resource = "orders-db"
role = "read"
duration = "5h"
reason = "x"
expect = { outcome = "deny", reason = "exceeds max_duration 4h" }
"#;

#[test]
fn policy_test_passes_fails_and_measures_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "jitgate.toml", CONFIG);
    let c = c.to_str().unwrap();
    let cases = write(dir.path(), "policy-tests.toml", CASES);
    let o = jitgate(&["policy", "test", "--config", c, cases.to_str().unwrap()]);
    assert!(o.status.success(), "{}", said(&o));
    let text = stdout(&o);
    assert!(text.contains("3 passed, 0 failed"), "{text}");
    // ci-admin and the break-glass section were never reached.
    assert!(text.contains("coverage 3/6 (50%)"), "{text}");
    assert!(text.contains("not reached: policy ci-admin"), "{text}");
    assert!(
        text.contains("not reached: policy engineers-read-orders: break_glass"),
        "{text}"
    );
    let o = jitgate(&[
        "policy",
        "test",
        "--config",
        c,
        cases.to_str().unwrap(),
        "--min-coverage",
        "80",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    assert!(
        said(&o).contains("coverage 50% is below --min-coverage 80%"),
        "{}",
        said(&o)
    );
    // A wrong expectation fails the run and says why.
    let wrong = CASES.replace("rule = \"oncall-short\"", "rule = \"other\"");
    let cases = write(dir.path(), "wrong.toml", &wrong);
    let o = jitgate(&["policy", "test", "--config", c, cases.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    assert!(
        stdout(&o).contains("FAIL: rule oncall-short, expected other"),
        "{}",
        said(&o)
    );
    assert!(stdout(&o).contains("2 passed, 1 failed"), "{}", said(&o));
    // A malformed file is bad usage.
    let cases = write(dir.path(), "bad.toml", "[[cases]]\nprincipal = 1\n");
    let o = jitgate(&["policy", "test", "--config", c, cases.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
}

#[test]
fn diff_fails_on_widening_unless_allowed_and_lists_narrowing() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.toml", CONFIG);
    let diff = |new: &str, extra: &[&str]| {
        let path = write(dir.path(), "new.toml", new);
        let mut args = vec![
            "policy",
            "diff",
            old.to_str().unwrap(),
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        jitgate(&args)
    };
    let o = diff(CONFIG, &[]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(stdout(&o).contains("no change"), "{}", said(&o));
    // Approval dropped for the engineers: widening, exit 1 unless allowed.
    let wider = CONFIG.replacen("required = 1", "required = 0", 1);
    let o = diff(&wider, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let text = stdout(&o);
    assert!(
        text.lines()
            .any(|l| l.starts_with("alice")
                && l.contains("auto-approval added (≤4h); approval removed")),
        "{text}"
    );
    assert!(said(&o).contains("widen access"), "{}", said(&o));
    assert!(diff(&wider, &["--allow-widening"]).status.success());
    // A longer break-glass and a new principal's access widen too.
    let o = diff(
        &CONFIG.replace("max_duration = \"1h\"", "max_duration = \"2h\""),
        &["--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v.as_array().unwrap().iter().any(|c| c["subject"] == "bob"
            && c["what"] == "break-glass 1h → 2h"
            && c["widens"] == true),
        "{v}"
    );
    // Narrowing (a shorter cap, the CI policy gone) is listed but passes.
    let narrower = CONFIG
        .replace("max_duration = \"4h\"", "max_duration = \"2h\"")
        .replace("required = 0", "required = 1\napprovers = [\"group:dba\"]");
    let o = diff(&narrower, &[]);
    assert!(o.status.success(), "{}", said(&o));
    let text = stdout(&o);
    assert!(text.contains("max duration 4h → 2h"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ci-bot")
                && l.contains("auto-approval removed; approval path added")),
        "{text}"
    );
}

#[test]
fn check_names_file_line_severity_and_fix_and_exits_by_severity() {
    let dir = tempfile::tempdir().unwrap();
    let clean = write(dir.path(), "clean.toml", CONFIG);
    let o = jitgate(&["policy", "check", "--config", clean.to_str().unwrap()]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(
        stdout(&o).contains("0 error(s), 0 warning(s)"),
        "{}",
        said(&o)
    );
    // A warning only: the rule allows more than its policy. Exit 0, or 1 with --strict.
    let warned = CONFIG.replacen("max_duration = \"30m\"", "max_duration = \"5h\"", 1);
    let warned = write(dir.path(), "warned.toml", &warned);
    let w = warned.to_str().unwrap();
    let o = jitgate(&["policy", "check", "--config", w]);
    assert!(o.status.success(), "{}", said(&o));
    let line = CONFIG
        .lines()
        .position(|l| l.contains("max_duration = \"30m\""))
        .unwrap()
        + 1;
    let want = format!(
        "{w}:{line}: policies[0].auto_approve[0].max_duration: warning [auto-approve-wider-than-policy]"
    );
    assert!(stdout(&o).contains(&want), "missing {want:?}\n{}", said(&o));
    assert!(
        stdout(&o).contains("  fix: make the rule's max_duration at most the policy's"),
        "{}",
        said(&o)
    );
    let o = jitgate(&["policy", "check", "--config", w, "--strict"]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    // A group nobody is in is refused when the config loads, with the name meant.
    let typo = CONFIG.replace(
        "approvers = [\"group:dba\"]",
        "approvers = [\"group:dbas\"]",
    );
    let typo = write(dir.path(), "typo.toml", &typo);
    let o = jitgate(&["policy", "check", "--config", typo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    assert!(
        said(&o).contains("did you mean `group:dba`"),
        "{}",
        said(&o)
    );
    // An error: more approvals than the group has members. Exit 1.
    let broken = CONFIG.replacen("required = 1", "required = 2", 1);
    let broken = write(dir.path(), "broken.toml", &broken);
    let o = jitgate(&[
        "policy",
        "check",
        "--config",
        broken.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["code"], "approvers-unreachable", "{v}");
    assert_eq!(v[0]["severity"], "error", "{v}");
    let line = CONFIG
        .lines()
        .position(|l| l.contains("approvers = [\"group:dba\"]"))
        .unwrap()
        + 1;
    assert_eq!(v[0]["line"], line, "{v}");
    // A lower ceiling turns the CI policy's unapproved 15m into a warning.
    let o = jitgate(&[
        "policy",
        "check",
        "--config",
        clean.to_str().unwrap(),
        "--ceiling",
        "10m",
    ]);
    assert!(
        stdout(&o).contains("[unapproved-over-ceiling]"),
        "{}",
        said(&o)
    );
}

/// The demo ships test cases beside its config; they pass, reach every policy and rule, and
/// the demo's policies have no findings, even under --strict.
#[test]
fn the_demo_policy_tests_pass_with_full_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let mut demo = Command::new(BIN)
        .args([
            "demo",
            "--postgres",
            "none",
            "--dir",
            demo_dir.to_str().unwrap(),
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free())])
        .args(["--gateway-listen", &format!("127.0.0.1:{}", free())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (config, cases) = (
        demo_dir.join("jitgate.toml"),
        demo_dir.join("policy-tests.toml"),
    );
    let start = std::time::Instant::now();
    while !demo_dir.join("demo.env").exists() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    demo.kill().unwrap();
    demo.wait().unwrap();
    let (c, t) = (config.to_str().unwrap(), cases.to_str().unwrap());
    let o = jitgate(&["policy", "test", "--config", c, t, "--min-coverage", "100"]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(
        stdout(&o).contains("12 passed, 0 failed; coverage 8/8 (100%)"),
        "{}",
        said(&o)
    );
    let o = jitgate(&["policy", "check", "--config", c, "--strict"]);
    assert!(o.status.success(), "{}", said(&o));
}
