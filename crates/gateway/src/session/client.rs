//! The client's messages: each statement audited before it goes on, checked against the
//! guardrails and masking, and told to the tracker; a blocked one is replaced by a stand-in
//! that fails upstream.

use std::sync::Arc;

use bytes::BytesMut;
use jitgate_core::EventDraft;
use postgres_protocol::message::frontend;

use super::{Result, Rewrite, Session};
use crate::codec::{self, Frontend, tag};
use crate::guard::Blocked;
use crate::masking::StatementPlan;

impl Session<'_> {
    /// Inspects the complete client frames at the start of `buf`: collects statement events,
    /// returns how many bytes they span.
    pub(super) fn client_frames(
        &mut self,
        buf: &[u8],
        events: &mut Vec<EventDraft>,
        rewrite: &mut Rewrite,
    ) -> Result<usize> {
        let mut at = 0;
        while let Some((kind, total)) = codec::frame(&buf[at..], self.shared.config.max_message)? {
            let span = at..at + total;
            let body = &buf[at + 5..at + total];
            at += total;
            if self.skip_to_sync && kind != tag::SYNC {
                // The server discards these after the blocked Parse: nothing to audit.
                continue;
            }
            match Frontend::decode(kind, body)? {
                Frontend::Query(sql) => {
                    if let Some(stand_in) = self.query(sql, events) {
                        rewrite.replace(buf, span, &stand_in);
                    }
                }
                Frontend::Parse { name, sql } => {
                    if let Some(stand_in) = self.parse(name, sql, events)? {
                        rewrite.replace(buf, span, &stand_in);
                    }
                }
                Frontend::Bind(b) => {
                    self.tracker
                        .bind(&b.portal, &b.statement, b.params, b.result_formats);
                }
                Frontend::Describe { target, name } => self.tracker.describe(target, name),
                Frontend::Execute { portal } => {
                    let n = self.statements + 1;
                    if let Some((sql, params)) = self.tracker.execute(n, portal) {
                        events.push(self.statement(&sql, params.as_deref(), "extended"));
                    }
                }
                Frontend::Close { target, name } => self.tracker.close(target, name),
                Frontend::Sync => {
                    self.skip_to_sync = false;
                    self.tracker.sync();
                }
                Frontend::FunctionCall { oid } => {
                    // It runs a function by OID with no SQL text: audited all the same.
                    let sql = format!("<function call: oid {oid}>");
                    match self.check_function_call() {
                        Some(b) => {
                            let stand_in = self.block_simple(&sql, "function_call", b, events);
                            rewrite.replace(buf, span, &stand_in);
                        }
                        None => {
                            events.push(self.statement(&sql, None, "function_call"));
                            if !self.tracker.function_call(self.statements) {
                                self.discarded();
                            }
                        }
                    }
                }
                Frontend::Terminate => self.terminated = true,
                Frontend::CopyDone | Frontend::CopyFail => self.tracker.copy_end(),
                Frontend::Flush | Frontend::CopyData | Frontend::Other(_) => {}
            }
        }
        Ok(at)
    }

    /// A simple Query: audited and tracked, or blocked (the stand-in to send is returned).
    fn query(&mut self, sql: &str, events: &mut Vec<EventDraft>) -> Option<BytesMut> {
        match self.check(sql) {
            Err(b) => Some(self.block_simple(sql, "simple", b, events)),
            Ok(checked) => {
                events.push(self.statement(sql, None, "simple"));
                self.tx_masked |= checked.plan.reads_masked;
                if !self
                    .tracker
                    .query(self.statements, checked.plan.clone(), checked.parts.clone())
                {
                    self.discarded();
                }
                None
            }
        }
    }

    /// A Parse: tracked, or blocked (the stand-in Parse to send is returned).
    fn parse(
        &mut self,
        name: &str,
        sql: &str,
        events: &mut Vec<EventDraft>,
    ) -> Result<Option<BytesMut>> {
        match self.check(sql) {
            Err(b) => {
                events.push(self.blocked_statement(sql, "extended", &b));
                let stand_in = self.stand_in(b);
                let mut with = BytesMut::new();
                frontend::parse(name, &stand_in, std::iter::empty(), &mut with)?;
                // It fails upstream, and the server skips the rest of the batch.
                self.tracker.parse(
                    name,
                    Arc::from(stand_in.as_str()),
                    StatementPlan::default(),
                    None,
                );
                self.skip_to_sync = true;
                Ok(Some(with))
            }
            Ok(checked) => {
                self.tx_masked |= checked.plan.reads_masked;
                let part = checked.parts.first().cloned();
                self.tracker
                    .parse(name, Arc::from(sql), checked.plan.clone(), part);
                Ok(None)
            }
        }
    }

    /// The statement just audited will not run: the server discards what comes after an error
    /// until Sync. Its outcome says so.
    fn discarded(&mut self) {
        let n = self.statements;
        let skipped = self.result(n, serde_json::json!({ "outcome": "skipped" }));
        self.results.push(skipped);
        self.flush_at
            .get_or_insert_with(|| tokio::time::Instant::now() + super::RESULTS_EVERY);
    }

    /// Audits a blocked Query or FunctionCall; returns the Query frame to send in its place,
    /// which the tracker follows like any Query.
    fn block_simple(
        &mut self,
        sql: &str,
        protocol: &str,
        b: Blocked,
        events: &mut Vec<EventDraft>,
    ) -> BytesMut {
        events.push(self.blocked_statement(sql, protocol, &b));
        let query = self.stand_in(b);
        // Its outcome is on record already (blocked); the stand-in's own is not recorded.
        let _ = self.tracker.query(0, StatementPlan::default(), Vec::new());
        let mut out = BytesMut::new();
        frontend::query(&query, &mut out).expect("a stand-in query has no NUL byte");
        out
    }
}
