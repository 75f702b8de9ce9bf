//! Class 4 of issue 17: protocol state. Raw frames in the orders the protocol allows, each
//! meant to make the gateway lose track of which statement a row or error belongs to.

use super::Expect::{self, Masked};
use super::raw::{bind, describe, execute, parse, query, sync};
use super::{ANN, Lab, judge};

/// Frames to send and how many ReadyForQuery they earn, in turns.
type Turns = Vec<(Vec<Vec<u8>>, usize)>;

struct FrameAttempt {
    name: &'static str,
    turns: fn(usize) -> Turns,
    expect: Expect,
}

const TAINTED: &str = "SELECT lower(email) FROM customers";

const ATTEMPTS: &[FrameAttempt] = &[
    FrameAttempt {
        name: "a Query between Parse/Bind/Execute and Sync",
        turns: |_| {
            vec![(
                vec![
                    parse("", TAINTED),
                    bind("", "", false),
                    describe(b'P', ""),
                    execute(""),
                    query("SELECT 1"),
                    sync(),
                ],
                2,
            )]
        },
        expect: Masked,
    },
    FrameAttempt {
        name: "Bind to a statement made by SQL PREPARE",
        turns: |n| {
            vec![
                (vec![query(&format!("PREPARE p{n} AS {TAINTED}"))], 1),
                (
                    vec![
                        bind("", &format!("p{n}"), false),
                        describe(b'P', ""),
                        execute(""),
                        sync(),
                    ],
                    1,
                ),
            ]
        },
        expect: Masked,
    },
    FrameAttempt {
        name: "Bind to a SQL-prepared statement, never described",
        turns: |n| {
            vec![
                (vec![query(&format!("PREPARE q{n} AS {TAINTED}"))], 1),
                (
                    vec![bind("", &format!("q{n}"), false), execute(""), sync()],
                    1,
                ),
            ]
        },
        expect: Masked,
    },
    FrameAttempt {
        name: "a failed re-Parse of a name, then Bind to it",
        turns: |n| {
            let name = format!("s{n}");
            vec![
                (vec![parse(&name, TAINTED), sync()], 1),
                (vec![parse(&name, "SELECT 'x'::text"), sync()], 1),
                (
                    vec![
                        bind("", &name, false),
                        describe(b'P', ""),
                        execute(""),
                        sync(),
                    ],
                    1,
                ),
            ]
        },
        expect: Masked,
    },
    FrameAttempt {
        name: "a SQL cursor executed as a protocol portal",
        turns: |n| {
            let name = format!("k{n}");
            vec![
                (
                    vec![query(&format!(
                        "DECLARE {name} CURSOR WITH HOLD FOR {TAINTED}"
                    ))],
                    1,
                ),
                (vec![describe(b'P', &name), execute(&name), sync()], 1),
            ]
        },
        expect: Masked,
    },
    FrameAttempt {
        name: "an error mid-pipeline, then the tainted statement",
        turns: |_| {
            vec![(
                vec![
                    parse("", "SELECT 1/0"),
                    bind("", "", false),
                    execute(""),
                    parse("", TAINTED),
                    bind("", "", false),
                    describe(b'P', ""),
                    execute(""),
                    sync(),
                    query(TAINTED),
                ],
                2,
            )]
        },
        expect: Masked,
    },
    FrameAttempt {
        name: "a FETCH through the extended protocol, in binary",
        turns: |n| {
            let name = format!("f{n}");
            vec![
                (
                    vec![query(&format!(
                        "DECLARE {name} CURSOR WITH HOLD FOR {TAINTED}"
                    ))],
                    1,
                ),
                (
                    vec![
                        parse("", &format!("FETCH ALL FROM {name}")),
                        bind("", "", true),
                        describe(b'P', ""),
                        execute(""),
                        sync(),
                    ],
                    1,
                ),
            ]
        },
        expect: Masked,
    },
    FrameAttempt {
        name: "COPY FROM STDIN with an early Sync, then a tainted Execute",
        turns: |n| {
            vec![
                (vec![query(&format!("CREATE TEMP TABLE cp{n} (v text)"))], 1),
                (
                    vec![
                        parse("", &format!("COPY cp{n} FROM STDIN")),
                        bind("", "", false),
                        execute(""),
                        sync(),
                    ],
                    0,
                ),
                (
                    vec![
                        super::raw::frame(b'd', b"x\n"),
                        super::raw::frame(b'c', &[]),
                        sync(),
                        parse("", TAINTED),
                        bind("", "", false),
                        describe(b'P', ""),
                        execute(""),
                        sync(),
                    ],
                    2,
                ),
            ]
        },
        expect: Masked,
    },
];

#[tokio::test]
async fn protocol_state_is_followed_in_every_order_the_protocol_allows() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    let mut failures = Vec::new();
    for (n, a) in ATTEMPTS.iter().enumerate() {
        let mut s = lab.gateway("masked-db", &[]).await;
        let mut reply = super::raw::Reply::default();
        for (frames, ready) in (a.turns)(n) {
            if ready == 0 {
                s.send(&frames.concat()).await;
                // The server answers a COPY FROM STDIN with CopyInResponse, not ReadyForQuery.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            reply.extend(s.exchange(&frames, ready).await);
        }
        failures.extend(judge(a.name, &reply, ANN, a.expect));
        // The session is still in step: a plain statement after it answers as it should.
        let after = s.query("SELECT 'in step'").await;
        if !after.values().contains(&Some("in step".into())) {
            failures.push(format!(
                "{}: out of step afterwards: {:?}",
                a.name, after.msgs
            ));
        }
        let mut d = lab.direct(&[]).await;
        let mut direct = super::raw::Reply::default();
        for (frames, ready) in (a.turns)(n + 100) {
            if ready == 0 {
                d.send(&frames.concat()).await;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            direct.extend(d.exchange(&frames, ready).await);
        }
        if !direct.contains(ANN) {
            failures.push(format!("{}: does not leak straight to PostgreSQL", a.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
