//! The tracker driven by byte fixtures: client frames as `postgres-protocol` encodes them, and
//! server frames as PostgreSQL sends them, in the orders the protocol allows.

use bytes::{BufMut, BytesMut};
use postgres_protocol::message::frontend;

use super::*;
use crate::codec::{self, Backend, Frontend};
use crate::sql::{self, Effect, LexMode};

/// A plan that says whether a text reads the secret table (1), or is unknown (128).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Secret(u8);

impl Plan for Secret {
    fn join(&self, other: &Self) -> Self {
        Secret(self.0 | other.0)
    }

    fn unknown() -> Self {
        Secret(128)
    }
}

fn plan_of(sql: &str) -> Secret {
    Secret(u8::from(sql.contains("secret")))
}

fn part_of(sql: &str, span: std::ops::Range<usize>, e: Effect) -> Part<Secret> {
    let text: Arc<str> = Arc::from(&sql[span.clone()]);
    let mut p = Part {
        effect: SqlEffect::None,
        reads_cursors: vec![],
        executes: vec![],
    };
    p.effect = match e {
        Effect::Prepare { name, .. } => SqlEffect::Prepare {
            name,
            plan: plan_of(&text),
            sql: text,
        },
        Effect::Declare { name, binary, .. } => SqlEffect::Declare {
            name,
            plan: plan_of(&text),
            sql: text,
            binary,
        },
        Effect::Fetch { cursor } => {
            p.reads_cursors.push(cursor);
            SqlEffect::None
        }
        Effect::Execute { name } => {
            p.executes.push(name);
            SqlEffect::None
        }
        Effect::Deallocate(n) => SqlEffect::Deallocate(n),
        Effect::Close(n) => SqlEffect::Close(n),
        Effect::DiscardAll => SqlEffect::DiscardAll,
        Effect::None => SqlEffect::None,
    };
    p
}

fn parts_of(sql: &str) -> Vec<Part<Secret>> {
    sql::effects(sql, LexMode::default())
        .unwrap_or_default()
        .into_iter()
        .map(|(span, e)| part_of(sql, span, e))
        .collect()
}

/// A tracker fed as the session feeds it.
struct Harness {
    t: Tracker<Secret>,
    n: u64,
    done: Vec<Done>,
    /// The SQL each audited Execute was recorded with.
    executed: Vec<String>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            t: Tracker::new(true),
            n: 0,
            done: vec![],
            executed: vec![],
        }
    }

    fn client(&mut self, bytes: &[u8]) {
        let mut at = 0;
        while let Some((kind, total)) = codec::frame(&bytes[at..], 1 << 20).unwrap() {
            let body = &bytes[at + 5..at + total];
            at += total;
            match Frontend::decode(kind, body).unwrap() {
                Frontend::Query(sql) => {
                    self.n += 1;
                    self.t.query(self.n, plan_of(sql), parts_of(sql));
                }
                Frontend::Parse { name, sql } => {
                    let part = parts_of(sql).into_iter().next();
                    self.t.parse(name, Arc::from(sql), plan_of(sql), part);
                }
                Frontend::Bind(b) => {
                    self.t
                        .bind(&b.portal, &b.statement, b.params, b.result_formats)
                }
                Frontend::Describe { target, name } => self.t.describe(target, name),
                Frontend::Execute { portal } => {
                    if let Some((sql, _)) = self.t.execute(self.n + 1, portal) {
                        self.n += 1;
                        self.executed.push(sql.to_string());
                    }
                }
                Frontend::Close { target, name } => self.t.close(target, name),
                Frontend::Sync => self.t.sync(),
                Frontend::FunctionCall { .. } => {
                    self.n += 1;
                    self.t.function_call(self.n);
                }
                Frontend::CopyDone | Frontend::CopyFail => self.t.copy_end(),
                _ => {}
            }
        }
    }

    fn server(&mut self, frames: &[BytesMut]) {
        for f in frames {
            let msg = Backend::decode(f[0], &f[5..]).unwrap();
            self.t.server(&msg, &mut self.done);
        }
    }

    /// The plan of the rows now arriving.
    fn rows_plan(&mut self) -> Option<Secret> {
        self.t.current().map(|c| c.plan.clone())
    }

    fn take_done(&mut self) -> Vec<(u64, Outcome)> {
        self.done.drain(..).map(|d| (d.n, d.outcome)).collect()
    }
}

fn c(build: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut b = BytesMut::new();
    build(&mut b);
    b
}

fn query(sql: &str) -> BytesMut {
    c(|b| frontend::query(sql, b).unwrap())
}

fn parse(name: &str, sql: &str) -> BytesMut {
    c(|b| frontend::parse(name, sql, std::iter::empty(), b).unwrap())
}

fn bind(portal: &str, statement: &str) -> BytesMut {
    c(|b| {
        frontend::bind(
            portal,
            statement,
            Some(0),
            std::iter::empty::<i32>(),
            |_, _| Ok(postgres_protocol::IsNull::Yes),
            Some(0),
            b,
        )
        .map_err(|_| ())
        .unwrap()
    })
}

fn execute(portal: &str) -> BytesMut {
    c(|b| frontend::execute(portal, 0, b).unwrap())
}

fn describe(what: u8, name: &str) -> BytesMut {
    c(|b| frontend::describe(what, name, b).unwrap())
}

fn close(what: u8, name: &str) -> BytesMut {
    c(|b| frontend::close(what, name, b).unwrap())
}

fn sync() -> BytesMut {
    c(frontend::sync)
}

fn copy_done() -> BytesMut {
    c(frontend::copy_done)
}

fn frame(kind: u8, body: &[u8]) -> BytesMut {
    codec::frame_of(kind, body)
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn complete(tag: &str) -> BytesMut {
    frame(b'C', &cstr(tag))
}

fn error(code: &str) -> BytesMut {
    codec::error_response("ERROR", code, "boom")
}

fn ready() -> BytesMut {
    frame(b'Z', b"I")
}

fn row_description(columns: &[(&str, u32, i16)]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i16(columns.len() as i16);
    for (name, table, attnum) in columns {
        body.put_slice(&cstr(name));
        body.put_u32(*table);
        body.put_i16(*attnum);
        body.put_u32(25);
        body.put_i16(-1);
        body.put_i32(-1);
        body.put_i16(0);
    }
    frame(b'T', &body)
}

fn data_row() -> BytesMut {
    codec::data_row_frame([Some(&b"v"[..])].into_iter())
}

fn concat(frames: &[BytesMut]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.to_vec()).collect()
}

#[test]
fn a_query_between_parse_bind_execute_and_sync_is_answered_in_order() {
    let mut h = Harness::new();
    h.client(&concat(&[
        parse("", "SELECT secret FROM t"),
        bind("", ""),
        execute(""),
        query("SELECT 1"),
        sync(),
    ]));
    h.server(&[frame(b'1', b""), frame(b'2', b"")]);
    assert_eq!(
        h.rows_plan(),
        Some(Secret(1)),
        "the Execute's rows read the secret"
    );
    h.server(&[data_row(), complete("SELECT 1")]);
    h.server(&[row_description(&[("?column?", 0, 0)])]);
    assert_eq!(h.rows_plan(), Some(Secret(0)), "the Query's rows do not");
    h.server(&[data_row(), complete("SELECT 1"), ready(), ready()]);
    assert_eq!(
        h.take_done(),
        [
            (1, Outcome::Tag("SELECT 1".into())),
            (2, Outcome::Tags(vec!["SELECT 1".into()]))
        ]
    );
    assert_eq!(h.t.pending(), 0);
}

#[test]
fn a_bind_to_a_statement_prepared_in_sql_runs_what_the_prepare_made() {
    let mut h = Harness::new();
    h.client(&query("PREPARE p AS SELECT secret FROM t"));
    h.server(&[complete("PREPARE"), ready()]);
    h.client(&concat(&[
        bind("", "p"),
        describe(b'P', ""),
        execute(""),
        sync(),
    ]));
    assert_eq!(h.executed, ["PREPARE p AS SELECT secret FROM t"]);
    h.server(&[frame(b'2', b""), row_description(&[("secret", 16400, 1)])]);
    assert_eq!(h.rows_plan(), Some(Secret(1)));
    let fields =
        h.t.current()
            .and_then(|c| c.fields.clone())
            .expect("described");
    assert_eq!(fields[0].table_oid, 16400);
    h.server(&[data_row(), complete("SELECT 1"), ready()]);
    // Once deallocated, a Bind to it runs nothing known.
    h.client(&query("DEALLOCATE p"));
    h.server(&[complete("DEALLOCATE"), ready()]);
    h.client(&concat(&[bind("", "p"), execute(""), sync()]));
    assert_eq!(h.executed[1], "");
    h.server(&[error("26000"), ready()]);
    assert_eq!(h.t.pending(), 0);
}

#[test]
fn a_parse_that_fails_leaves_the_statement_it_would_have_replaced() {
    let mut h = Harness::new();
    h.client(&concat(&[parse("s", "SELECT secret FROM t"), sync()]));
    h.server(&[frame(b'1', b""), ready()]);
    // A second Parse of the same name fails (it exists): `s` is still the first statement.
    h.client(&concat(&[parse("s", "SELECT 1"), sync()]));
    h.server(&[error("42P05"), ready()]);
    h.client(&concat(&[bind("", "s"), execute(""), sync()]));
    assert_eq!(h.executed, ["SELECT secret FROM t"]);
    h.server(&[frame(b'2', b"")]);
    assert_eq!(h.rows_plan(), Some(Secret(1)));
}

#[test]
fn an_error_mid_pipeline_skips_to_sync_queries_included() {
    let mut h = Harness::new();
    h.client(&concat(&[
        parse("", "SELECT 1"),
        bind("", ""),
        execute(""),
        parse("", "SELECT nope"),
        bind("", ""),
        execute(""),
        query("SELECT 2"),
        execute(""),
        sync(),
        query("SELECT 3"),
    ]));
    h.server(&[
        frame(b'1', b""),
        frame(b'2', b""),
        data_row(),
        complete("SELECT 1"),
        error("42703"),
        ready(),
    ]);
    assert_eq!(
        h.take_done(),
        [
            (1, Outcome::Tag("SELECT 1".into())),
            (2, Outcome::Error("42703".into())),
            (3, Outcome::Skipped),
            (4, Outcome::Skipped),
        ]
    );
    h.server(&[row_description(&[("?column?", 0, 0)])]);
    assert_eq!(h.rows_plan(), Some(Secret(0)));
    h.server(&[data_row(), complete("SELECT 1"), ready()]);
    assert_eq!(h.take_done(), [(5, Outcome::Tags(vec!["SELECT 1".into()]))]);
    assert_eq!(h.t.pending(), 0);
}

#[test]
fn what_the_client_sends_after_an_error_arrived_is_not_owed_an_answer() {
    let mut h = Harness::new();
    h.client(&concat(&[
        parse("", "SELECT nope"),
        bind("", ""),
        execute(""),
    ]));
    h.server(&[error("42703")]);
    assert!(h.t.discarding());
    // Sent once the error had come: the server discards all of it.
    h.client(&concat(&[
        query("SELECT 1"),
        describe(b'S', "x"),
        execute(""),
    ]));
    h.client(&sync());
    assert!(!h.t.discarding());
    h.server(&[ready()]);
    assert_eq!(h.t.pending(), 0);
    assert_eq!(h.take_done(), [(1, Outcome::Error("42703".into()))]);
}

#[test]
fn describe_and_close_of_unknown_names() {
    let mut h = Harness::new();
    // Closing what does not exist is no error; describing it is.
    h.client(&concat(&[
        close(b'S', "nope"),
        close(b'P', "nope"),
        describe(b'S', "nope"),
        sync(),
    ]));
    h.server(&[frame(b'3', b""), frame(b'3', b""), error("26000"), ready()]);
    assert_eq!(h.t.pending(), 0);
    // An Execute of a portal never bound: its rows, if any came, are of unknown origin.
    h.client(&concat(&[execute("ghost"), sync()]));
    h.server(&[]);
    assert_eq!(h.rows_plan(), Some(Secret(128)));
    h.server(&[error("34000"), ready()]);
    assert_eq!(h.t.pending(), 0);
}

#[test]
fn a_cursor_keeps_the_plan_of_what_it_was_declared_for() {
    let mut h = Harness::new();
    h.client(&query(
        "DECLARE c CURSOR WITH HOLD FOR SELECT secret FROM t",
    ));
    h.server(&[complete("DECLARE CURSOR"), ready()]);
    // Declaring it again fails (it exists): it still reads the secret.
    h.client(&query("DECLARE c CURSOR WITH HOLD FOR SELECT 1"));
    h.server(&[error("42P03"), ready()]);
    h.client(&query("FETCH 1 FROM c"));
    h.server(&[row_description(&[("secret", 16400, 1)])]);
    assert_eq!(h.rows_plan(), Some(Secret(1)));
    h.server(&[data_row(), complete("FETCH 1"), ready()]);
    // A cursor is a portal: an Execute of it by name runs it too.
    h.client(&concat(&[execute("c"), sync()]));
    assert_eq!(
        h.executed,
        ["DECLARE c CURSOR WITH HOLD FOR SELECT secret FROM t"]
    );
    h.server(&[]);
    assert_eq!(h.rows_plan(), Some(Secret(1)));
    h.server(&[data_row(), complete("SELECT 1"), ready()]);
    // A FETCH through the extended protocol reads through the cursor too.
    h.client(&concat(&[
        parse("", "FETCH FORWARD 5 FROM c"),
        bind("", ""),
        describe(b'P', ""),
        execute(""),
        sync(),
    ]));
    h.server(&[
        frame(b'1', b""),
        frame(b'2', b""),
        row_description(&[("secret", 16400, 1)]),
    ]);
    assert_eq!(h.rows_plan(), Some(Secret(1)));
    h.server(&[complete("FETCH 0"), ready()]);
    // Closed, a FETCH from it reads nothing known.
    h.client(&query("CLOSE c"));
    h.server(&[complete("CLOSE CURSOR"), ready()]);
    h.client(&query("FETCH 1 FROM c"));
    h.server(&[row_description(&[("x", 0, 0)])]);
    assert_eq!(h.rows_plan(), Some(Secret(128)));
}

#[test]
fn syncs_sent_during_copy_from_stdin_are_ignored() {
    let mut h = Harness::new();
    // Bind, Execute, Sync sent at once (as tokio-postgres does), then the data and another Sync.
    h.client(&concat(&[
        parse("", "COPY t FROM STDIN"),
        bind("", ""),
        execute(""),
        sync(),
    ]));
    h.server(&[frame(b'1', b""), frame(b'2', b""), frame(b'G', &[0, 0, 0])]);
    h.client(&concat(&[frame(b'd', b"1\n"), copy_done(), sync()]));
    h.server(&[complete("COPY 1"), ready()]);
    assert_eq!(h.take_done(), [(1, Outcome::Tag("COPY 1".into()))]);
    assert_eq!(h.t.pending(), 0);
    // The same when the client ended the COPY before the server said it began.
    h.client(&concat(&[
        bind("", ""),
        execute(""),
        sync(),
        frame(b'd', b"2\n"),
        copy_done(),
        sync(),
    ]));
    h.server(&[
        frame(b'2', b""),
        frame(b'G', &[0, 0, 0]),
        complete("COPY 1"),
        ready(),
    ]);
    assert_eq!(h.t.pending(), 0);
}

#[test]
fn function_calls_empty_queries_and_suspended_portals_end_as_they_should() {
    let mut h = Harness::new();
    let call = frame(b'F', &[0, 0, 3, 232, 0, 0, 0, 0, 0, 0]);
    h.client(&call);
    h.server(&[error("42883"), ready()]);
    h.client(&query(""));
    h.server(&[frame(b'I', b""), ready()]);
    h.client(&concat(&[
        parse("", "SELECT 1"),
        bind("", ""),
        execute(""),
        sync(),
    ]));
    h.server(&[
        frame(b'1', b""),
        frame(b'2', b""),
        data_row(),
        frame(b's', b""),
        ready(),
    ]);
    assert_eq!(
        h.take_done(),
        [
            (1, Outcome::Error("42883".into())),
            (2, Outcome::Tags(vec![])),
            (3, Outcome::Suspended)
        ]
    );
    assert_eq!(h.t.pending(), 0);
}

#[test]
fn discard_all_forgets_every_statement_and_cursor() {
    let mut h = Harness::new();
    h.client(&query(
        "PREPARE p AS SELECT secret FROM t; DECLARE c CURSOR WITH HOLD FOR SELECT secret FROM t",
    ));
    h.server(&[complete("PREPARE"), complete("DECLARE CURSOR"), ready()]);
    assert!(h.t.statement("p").is_some());
    h.client(&query("DISCARD ALL"));
    h.server(&[complete("DISCARD ALL"), ready()]);
    assert!(h.t.statement("p").is_none());
}
