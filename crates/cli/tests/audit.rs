//! The audit log end to end with real processes: verification against tampering and truncation,
//! retention with holds and archives surviving a kill, erasure.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jitgate_core::{EventDraft, Timestamp};
use jitgate_store::Store;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stop_gracefully(server: &mut Server) {
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    server.child.wait().unwrap();
}

/// Opens the log as an attacker would, with the append-only triggers dropped.
fn tamper(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(
        "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;
         DROP TRIGGER audit_payloads_no_delete; DROP TRIGGER audit_checkpoints_no_delete;",
    )
    .unwrap();
    c
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn verify_passes_then_names_truncation_against_the_anchor_and_the_edited_seq() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let anchor = elsewhere.path().join("checkpoints");
    let port = free_port();
    let config = config_with(
        dir.path(),
        port,
        &format!(
            "\n[audit]\nanchors = [\"file://{}\"]\ncheckpoint_interval = \"100ms\"\n",
            anchor.display()
        ),
    );
    let mut server = Server::start(&config, port);
    for i in 0..5 {
        let out = server.cli(
            "ci-bot",
            &[
                "request",
                "create",
                "--resource",
                "orders-db",
                "--role",
                "deploy",
                "--duration",
                "5m",
                "--reason",
                &format!("deploy {i}"),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    stop_gracefully(&mut server);
    let trusted = elsewhere.path().join("trusted.pub");
    std::fs::copy(dir.path().join("data/audit-signing.pub"), &trusted).unwrap();
    let config_arg = config.to_str().unwrap();
    let trusted_arg = trusted.to_str().unwrap();

    let ok = run(&[
        "audit",
        "verify",
        "--config",
        config_arg,
        "--public-key",
        trusted_arg,
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("ok: 15 events verified through seq 15"),
        "{}",
        text(&ok)
    );
    assert!(
        std::fs::read_to_string(&anchor)
            .unwrap()
            .contains("\"seq\":15")
    );

    // Cut the tail, and the checkpoints the database holds for it.
    let db = dir.path().join("data/jitgate.db");
    let c = tamper(&db);
    c.execute_batch(
        "DELETE FROM audit_payloads WHERE seq > 13; DELETE FROM audit_events WHERE seq > 13;
         DELETE FROM audit_checkpoints WHERE seq > 13;",
    )
    .unwrap();
    let out = run(&[
        "audit",
        "verify",
        "--config",
        config_arg,
        "--public-key",
        trusted_arg,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("seq 15: truncated"), "{}", text(&out));

    // An edit further back is named first.
    c.execute(
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3",
        [],
    )
    .unwrap();
    let out = run(&[
        "audit",
        "verify",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--anchor",
        anchor.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["seq"].as_i64(), v["problem"].as_str()),
        (Some(3), Some("edited")),
        "{v}"
    );
}

const SEEDED: i64 = 30_000;

/// Writes `SEEDED` events a day old straight into the store: access events (archived by the
/// rules below), admin events (deleted) and session events (no rule: kept), from 50 principals.
fn seed(db: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = jitgate_store::SqliteStore::open(db).unwrap();
        let old = Timestamp::from_second(Timestamp::now_for_tests() - 86_400).unwrap();
        let mut batch = Vec::new();
        for i in 0..SEEDED {
            let action = match i % 10 {
                0 => "session.statement",
                1..=5 => "grant.activated",
                _ => "audit.searched",
            };
            let mut e = EventDraft::new(old, &format!("user{}", i % 50), action);
            e.subject = Some(format!("user{}", i % 50));
            e.details = serde_json::json!({ "n": i });
            batch.push(e);
            if batch.len() == 5000 {
                store
                    .append_events(std::mem::take(&mut batch))
                    .await
                    .unwrap();
            }
        }
    });
}

trait NowForTests {
    fn now_for_tests() -> i64;
}

impl NowForTests for Timestamp {
    /// Tests outside the server read the wall clock here, once.
    #[allow(clippy::disallowed_methods)]
    fn now_for_tests() -> i64 {
        Timestamp::now().as_second()
    }
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[test]
fn retention_keeps_held_events_survives_a_kill_mid_sweep_and_archives_verifiably() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_with(
        dir.path(),
        port,
        "\n[audit]\nretention_every = \"1h\"\n\n[[retention]]\nclass = \"access\"\nkeep = \"1h\"\naction = \"archive\"\n\n[[retention]]\nclass = \"admin\"\nkeep = \"1h\"\naction = \"delete\"\n",
    );
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let db = dir.path().join("data/jitgate.db");
    seed(&db);
    let server = Server::start(&config, port);
    let hold = server.json(
        "root",
        &[
            "hold",
            "create",
            "--reason",
            "case 7",
            "--principal",
            "user3",
        ],
    );
    assert_eq!(hold["active"], true);
    let held = count(
        &db,
        "SELECT count(*) FROM audit_events WHERE actor = 'user3' AND action != 'session.statement'",
    );
    assert!(held > 0);
    let config_arg = config.to_str().unwrap();

    // A sweep killed part-way through.
    let log = dir.path().join("sweep.log");
    let mut sweep = Command::new(BIN)
        .args(["retention", "run", "--config", config_arg])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while count(&db, "SELECT count(*) FROM audit_gaps") == 0 {
        let ended = sweep.try_wait().unwrap();
        assert!(
            ended.is_none() && start.elapsed() < Duration::from_secs(60),
            "the sweep made no progress ({ended:?}): {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed_mid_sweep = sweep.try_wait().unwrap().is_none();
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    let archive = dir.path().join("data/archive");
    let verify = |what: &str| {
        let out = run(&[
            "audit",
            "verify",
            "--config",
            config_arg,
            "--archive",
            archive.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{what}: {}", text(&out));
    };
    verify("after the kill");

    // Run again: it completes.
    let out = run(&["retention", "run", "--config", config_arg, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    verify("after the second sweep");
    if killed_mid_sweep {
        assert!(
            report["deleted"].as_u64().unwrap() + report["archived"].as_u64().unwrap() > 0,
            "{report}"
        );
    }

    // Held events are all there; everything else that was due is gone; sessions (no rule) stay.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE actor = 'user3' AND action != 'session.statement'"
        ),
        held
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE actor != 'user3' AND action IN ('grant.activated', 'audit.searched') AND ts_us < (SELECT max(ts_us) FROM audit_events) - 3600000000"
        ),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE action = 'session.statement'"
        ),
        SEEDED / 10
    );

    // What was archived comes back, checked against the manifests.
    let restored = run(&["audit", "restore", "--archive", archive.to_str().unwrap()]);
    assert!(restored.status.success(), "{}", text(&restored));
    let lines = String::from_utf8_lossy(&restored.stdout).lines().count() as i64;
    assert_eq!(
        lines,
        SEEDED / 2 - held,
        "every access event but the held ones"
    );

    // Releasing the hold lets the next sweep take them.
    let id = hold["id"].as_str().unwrap();
    server.json("root", &["hold", "release", id, "--reason", "case closed"]);
    let out = run(&["retention", "run", "--config", config_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE actor = 'user3' AND action != 'session.statement'"
        ),
        0
    );
    verify("after the hold was released");
}

#[test]
fn erasure_removes_payloads_keeps_skeletons_and_respects_holds() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_with(dir.path(), port, "");
    let server = Server::start(&config, port);
    let req = server.json(
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
    let req_id = req["id"].as_str().unwrap();
    // Something only the audit log holds: alice's own search, with a marker in its filter.
    let marker = "marker-7f3a9c";
    server.json("alice", &["audit", "search", "--action", marker]);
    let hold = server.json(
        "root",
        &[
            "hold",
            "create",
            "--reason",
            "litigation",
            "--request",
            req_id,
        ],
    );

    let out = server.cli(
        "root",
        &[
            "audit",
            "erase",
            "--principal",
            "alice",
            "--reason",
            "GDPR art. 17",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(hold["id"].as_str().unwrap()),
        "{}",
        text(&out)
    );
    let out = server.cli(
        "alice",
        &["audit", "erase", "--principal", "alice", "--reason", "mine"],
    );
    assert_eq!(out.status.code(), Some(1), "only admins erase");

    server.json("root", &["hold", "release", hold["id"].as_str().unwrap()]);
    let erased = server.json(
        "root",
        &[
            "audit",
            "erase",
            "--principal",
            "alice",
            "--reason",
            "GDPR art. 17",
        ],
    );
    assert!(erased["payloads_erased"].as_u64().unwrap() >= 3, "{erased}");

    let db = dir.path().join("data/jitgate.db");
    assert!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE actor = 'alice' OR subject = 'alice'"
        ) >= 3,
        "skeletons stay"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_payloads p JOIN audit_events e USING (seq) WHERE e.actor = 'alice' OR e.subject = 'alice'"
        ),
        0
    );
    for file in ["data/jitgate.db", "data/jitgate.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{file} still holds the erased payload"
        );
    }
    let events = server.json("root", &["audit", "search", "--request", req_id]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["details"].is_null()),
        "{events}"
    );
    std::thread::sleep(Duration::from_millis(1200)); // a checkpoint covers the erasure
    let out = run(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("removed by retention or erasure"),
        "{}",
        text(&out)
    );
}

/// A directory that is not a jitgate data directory is named as such, not blamed for a missing
/// key file.
#[test]
fn verify_on_a_wrong_directory_says_it_holds_no_jitgate_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not jitgate").unwrap();
    let out = run(&[
        "audit",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} holds no jitgate data (no jitgate.db)",
            dir.path().display()
        )) && !err.contains("audit-signing.pub"),
        "{err}"
    );
    let missing = dir.path().join("nowhere");
    let out = run(&["audit", "verify", "--data-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("{} is not a directory", missing.display())),
        "{}",
        text(&out)
    );
}
