//! The same classes of attempt through real clients: psql (its `\copy`, `\gset`) and psycopg
//! (server-side cursors, binary results, prepared statements, pipeline mode, COPY), which
//! drive the protocol their own way. Each must keep working where it is allowed, masked.

use std::process::Command;

use serde_json::Value;

use super::{ANN, Lab};

/// Runs psql with `commands` (lines of a script) against `conninfo`; stdout and stderr
/// together.
fn psql(conninfo: &str, commands: &[&str]) -> String {
    use std::io::Write;
    let mut child = Command::new(jitgate_testkit::psql())
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=0", "-f", "-", conninfo])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql runs");
    let mut stdin = child.stdin.take().expect("stdin");
    for c in commands {
        writeln!(stdin, "{c}").expect("psql reads its script");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("psql ends");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[rustfmt::skip]
const PSQL: &[(&str, &[&str], bool)] = &[
    // (name, commands, refused)
    (
        "psql \\copy of a query over the column",
        &["\\copy (SELECT email FROM customers) TO STDOUT"],
        true,
    ),
    (
        "psql \\gset of a computed value",
        &[
            "SELECT lower(email) AS e FROM customers WHERE id = 1 \\gset",
            "\\echo :e",
        ],
        false,
    ),
    (
        "psql error quoting the value",
        &["SELECT email::int FROM customers WHERE id = 1"],
        false,
    ),
    (
        "psql \\crosstabview over the column",
        &["SELECT id, 'x', lower(email) FROM customers \\crosstabview"],
        false,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // psql blocks this thread
async fn psql_sees_only_masked_values() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    let through = format!(
        "host=127.0.0.1 port={} dbname=masked-db user=ci-bot password=tok-ci-bot",
        lab.port
    );
    let direct = format!(
        "host=127.0.0.1 port=5432 dbname={} user={}",
        lab.db.name, lab.shared
    );
    let mut failures = Vec::new();
    for (name, commands, refused) in PSQL {
        let out = psql(&through, commands);
        if out.contains(ANN) {
            failures.push(format!("{name}: LEAKED: {out}"));
        }
        let was_refused = out.contains("blocked this statement");
        eprintln!(
            "red team: {name}: {}",
            if was_refused { "refused" } else { "masked" }
        );
        if was_refused != *refused {
            failures.push(format!(
                "{name}: refused = {was_refused}, expected {refused}: {out}"
            ));
        }
        if !psql(&direct, commands).contains(ANN) {
            failures.push(format!("{name}: does not leak straight to PostgreSQL"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Each attempt as psycopg makes it: `name` and the outcome, as JSON.
const SCRIPT: &str = r#"
import json, sys, psycopg
out = {}
def attempt(name, fn):
    try:
        with psycopg.connect(sys.argv[1], autocommit=True) as conn:
            out[name] = {"ok": fn(conn)}
    except Exception as e:
        out[name] = {"error": str(e), "sqlstate": getattr(e, "sqlstate", None)}
T = "SELECT lower(email), email FROM customers ORDER BY id"
def server_cursor(conn, binary=False):
    with conn.transaction():
        cur = conn.cursor(name="red", binary=binary)
        cur.itersize = 1
        cur.execute(T)
        return [list(r) for r in cur]
def held_cursor(conn):
    cur = conn.cursor(name="held", withhold=True)
    cur.execute(T)
    rows = [list(r) for r in cur.fetchmany(1)] + [list(r) for r in cur.fetchall()]
    cur.close()
    return rows
def prepared(conn):
    cur = conn.cursor()
    rows = []
    for _ in range(3):
        cur.execute(T, prepare=True)
        rows += [list(r) for r in cur.fetchall()]
    return rows
def pipeline(conn):
    rows = []
    with conn.pipeline():
        a = conn.execute("SELECT 1/0")
        b = conn.execute(T)
    return rows
def pipeline_ok(conn):
    with conn.pipeline():
        c1 = conn.execute("SELECT 1")
        c2 = conn.execute(T)
        c3 = conn.execute("SELECT email::text || '' FROM customers")
    return [list(r) for r in c2.fetchall()] + [list(r) for r in c3.fetchall()]
def copy(conn):
    with conn.cursor().copy("COPY (SELECT email FROM customers) TO STDOUT") as cp:
        return b"".join(bytes(b) for b in cp).decode()
def error(conn):
    conn.execute("SELECT email::int FROM customers")
attempt("psycopg server-side cursor", server_cursor)
attempt("psycopg binary server-side cursor", lambda c: server_cursor(c, True))
attempt("psycopg cursor WITH HOLD", held_cursor)
attempt("psycopg prepared statements", prepared)
attempt("psycopg pipeline with an error first", pipeline)
attempt("psycopg pipeline", pipeline_ok)
attempt("psycopg COPY of a query", copy)
attempt("psycopg error quoting the value", error)
print(json.dumps(out, default=str))
"#;

fn python(script: &str, conninfo: &str) -> Value {
    let out = Command::new("python3")
        .args(["-c", script, conninfo])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "psycopg script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the script")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // python blocks this thread
async fn psycopg_server_side_cursors_pipelines_and_copy_stay_masked() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    let through = format!(
        "host=127.0.0.1 port={} dbname=masked-db user=ci-bot password=tok-ci-bot",
        lab.port
    );
    let direct = format!(
        "host=127.0.0.1 port=5432 dbname={} user={}",
        lab.db.name, lab.shared
    );
    let masked = python(SCRIPT, &through);
    let raw = python(SCRIPT, &direct);
    let mut failures = Vec::new();
    let expect_refused = ["psycopg COPY of a query"];
    let expect_working = [
        "psycopg server-side cursor",
        "psycopg binary server-side cursor",
        "psycopg cursor WITH HOLD",
        "psycopg prepared statements",
        "psycopg pipeline",
    ];
    for (name, got) in masked.as_object().expect("an object") {
        let text = got.to_string();
        if text.contains(ANN) {
            failures.push(format!("{name}: LEAKED: {text}"));
        }
        let refused = got["sqlstate"] == "42501" && text.contains("jitgate");
        eprintln!(
            "red team: {name}: {}",
            if refused { "refused" } else { "masked" }
        );
        if refused != expect_refused.contains(&name.as_str()) {
            failures.push(format!("{name}: refused = {refused}: {text}"));
        }
        if expect_working.contains(&name.as_str()) {
            // Still works: rows came, the computed column redacted, the column masked.
            let rows = got["ok"].as_array().cloned().unwrap_or_default();
            if rows.is_empty() || rows.iter().any(|r| r[0] != "*****") {
                failures.push(format!("{name}: not working, or not masked: {text}"));
            }
        }
        if !raw[name].to_string().contains(ANN) && name != "psycopg pipeline with an error first" {
            failures.push(format!(
                "{name}: does not leak straight to PostgreSQL: {}",
                raw[name]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
