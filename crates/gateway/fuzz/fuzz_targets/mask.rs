//! The masking path fed arbitrary frames: row descriptions, rows, statements and COPY lines in
//! any order. Nothing may panic or loop, and a row that comes out masked must still be a
//! well-formed DataRow with as many values as the one it replaced (a client reads it as such).
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use jitgate_gateway::codec;
use jitgate_gateway::mask::{Detector, Masker, Strategy};
use jitgate_gateway::masking::{ColumnPattern, CopyPlan, Counts, MaskRule, SessionMasking, StatementPlan};
use jitgate_gateway::sql::{self, LexMode};
use libfuzzer_sys::fuzz_target;

/// A session whose rules mask a column by identity and run every detector, with a small
/// catalog: a table with that column, another table, and a view reading the column.
fn session(strategy: Strategy) -> SessionMasking {
    let rules = [MaskRule {
        name: "pii".into(),
        resources: vec![],
        roles: vec![],
        columns: vec![ColumnPattern::parse("public.customers.email").expect("a valid pattern")],
        detectors: Detector::ALL.to_vec(),
        strategy,
    }];
    let mut s =
        SessionMasking::for_session(&rules, "db", "read", Arc::new(Masker::new([7; 32])), None)
            .expect("the rule is in scope");
    s.learn(16400, 1, "public", "customers", "id");
    s.learn(16400, 2, "public", "customers", "email");
    s.learn(16401, 1, "public", "notes", "body");
    s.learn_view_read(16402, 16400, 2);
    s.catalog_read();
    s
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, data)) = data.split_first() else {
        return;
    };
    let strategy = match choice % 4 {
        0 => Strategy::Redact,
        1 => Strategy::Partial {
            keep: usize::from(choice >> 2) % 8,
        },
        2 => Strategy::Hash,
        _ => Strategy::Null,
    };
    let mut s = session(strategy);
    let mut counts = Counts::default();
    let mut shape = None;
    let mut plan = StatementPlan::default();
    let mut copy: Option<CopyPlan> = None;
    let mut at = 0;
    while let Ok(Some((kind, total))) = codec::frame(&data[at..], 1 << 20) {
        let body = &data[at + 5..at + total];
        match kind {
            b'Q' => {
                if let Ok(text) = codec::query(body) {
                    let a = sql::analyze(text, LexMode { standard_strings: choice & 1 == 0 });
                    plan = StatementPlan::default();
                    copy = None;
                    for f in &a.statements {
                        if let Ok(p) = s.plan_statement(f, text) {
                            copy = p.copy.as_deref().cloned();
                            plan = p;
                        }
                    }
                }
            }
            b'T' => {
                if let Ok(fields) = codec::row_description(body) {
                    shape = Some(s.shape(fields, &plan));
                }
            }
            b'D' => {
                let mut out = BytesMut::from(&b"before"[..]);
                match s.row_into(shape.as_ref(), body, &mut counts, b"x", &mut out) {
                    Ok(true) => {
                        let values = codec::data_row(body).expect("a row it masked is well-formed");
                        assert_eq!(&out[..7], b"beforex");
                        let (kind, len) = codec::frame(&out[7..], usize::MAX)
                            .expect("a masked row is one frame")
                            .expect("a masked row is whole");
                        assert_eq!((kind, len), (b'D', out.len() - 7));
                        let masked = codec::data_row(&out[12..]).expect("a masked row decodes");
                        assert_eq!(masked.len(), values.len());
                    }
                    Ok(false) | Err(_) => assert_eq!(&out[..], b"before", "nothing written"),
                }
            }
            b'd' => {
                let plan = copy.get_or_insert_with(CopyPlan::withhold_all);
                let _ = s.copy_row(plan, body, &mut counts);
            }
            b'E' | b'N' => {
                let _ = s.error_or_notice(kind, body, choice & 2 == 0);
            }
            b'A' => {
                let _ = s.notification(body);
            }
            b'S' => {
                let _ = s.parameter_status(body, choice & 2 == 0);
            }
            _ => {}
        }
        at += total;
    }
    let _ = s.named(&counts);
});
