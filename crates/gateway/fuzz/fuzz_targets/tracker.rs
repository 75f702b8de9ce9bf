//! The extended-protocol tracker fed arbitrary client and server frames, interleaved in any
//! order: nothing may panic or loop, and the server can never be owed more answers than the
//! client sent messages that earn one.
#![no_main]

use std::sync::Arc;

use jitgate_gateway::codec::{self, Backend, Frontend};
use jitgate_gateway::sql::{self, Effect, LexMode};
use jitgate_gateway::tracker::{Done, Part, Plan, SqlEffect, Tracker};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Bits(u8);

impl Plan for Bits {
    fn join(&self, other: &Self) -> Self {
        Bits(self.0 | other.0)
    }

    fn unknown() -> Self {
        Bits(128)
    }
}

fn parts(text: &str) -> Vec<Part<Bits>> {
    sql::effects(text, LexMode::default())
        .unwrap_or_default()
        .into_iter()
        .map(|(span, e)| {
            let sql: Arc<str> = Arc::from(text.get(span).unwrap_or_default());
            let mut p = Part {
                effect: SqlEffect::None,
                reads_cursors: vec![],
                executes: vec![],
            };
            p.effect = match e {
                Effect::Prepare { name, .. } => SqlEffect::Prepare { name, sql, plan: Bits(1) },
                Effect::Declare { name, binary, .. } => SqlEffect::Declare { name, sql, plan: Bits(2), binary },
                Effect::Deallocate(n) => SqlEffect::Deallocate(n),
                Effect::Close(n) => SqlEffect::Close(n),
                Effect::DiscardAll => SqlEffect::DiscardAll,
                Effect::Fetch { cursor } => {
                    p.reads_cursors.push(cursor);
                    SqlEffect::None
                }
                Effect::Execute { name } => {
                    p.executes.push(name);
                    SqlEffect::None
                }
                Effect::None => SqlEffect::None,
            };
            p
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut t: Tracker<Bits> = Tracker::new(true);
    let mut done: Vec<Done> = Vec::new();
    let mut owed = 0usize;
    let mut n = 0u64;
    let mut at = 0;
    // Each frame is preceded by one byte: even, from the client; odd, from the server.
    while at < data.len() {
        let from_server = data[at] & 1 == 1;
        at += 1;
        let Ok(Some((kind, total))) = codec::frame(&data[at..], 1 << 20) else {
            return;
        };
        let body = &data[at + 5..at + total];
        at += total;
        if from_server {
            if let Ok(msg) = Backend::decode(kind, body) {
                t.server(&msg, &mut done);
                let _ = t.current().map(|c| c.fields.as_ref().map(Vec::len));
                let _ = t.answering();
            }
            continue;
        }
        let Ok(msg) = Frontend::decode(kind, body) else {
            continue;
        };
        match msg {
            Frontend::Query(s) => {
                n += 1;
                owed += 1;
                t.query(n, Bits(0), parts(s));
            }
            Frontend::Parse { name, sql } => {
                owed += 1;
                t.parse(name, Arc::from(sql), Bits(0), parts(sql).into_iter().next());
            }
            Frontend::Bind(b) => {
                owed += 1;
                t.bind(&b.portal, &b.statement, b.params, b.result_formats);
            }
            Frontend::Describe { target, name } => {
                owed += 1;
                t.describe(target, name);
            }
            Frontend::Execute { portal } => {
                owed += 1;
                if t.execute(n + 1, portal).is_some() {
                    n += 1;
                }
            }
            Frontend::Close { target, name } => {
                owed += 1;
                t.close(target, name);
            }
            Frontend::Sync => {
                owed += 1;
                t.sync();
            }
            Frontend::FunctionCall { .. } => {
                owed += 1;
                n += 1;
                t.function_call(n);
            }
            Frontend::CopyDone | Frontend::CopyFail => t.copy_end(),
            _ => {}
        }
        assert!(t.pending() <= owed, "owed more answers than messages sent");
    }
    assert!(done.iter().all(|d| d.n <= n), "an outcome for a statement never sent");
});
