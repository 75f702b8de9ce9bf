//! The server's messages: outcomes noted for the audit, the tracker told, and, when masking
//! applies, rows, COPY data, errors, notices, notifications, parameter reports and function
//! results masked before they go on. An error answering a blocked statement's stand-in is
//! replaced by the guardrail's.

use serde_json::json;

use super::tracker::{Done, Outcome};
use super::{RESULTS_BATCH, RESULTS_EVERY, Result, Rewrite, Session, UPSTREAM_MAX};
use crate::codec::{self, Backend};
use crate::masking::{CopyPlan, Counts};

impl Session<'_> {
    /// Notes outcomes in the complete server frames at the start of `buf`; returns their span.
    /// Errors answering a blocked statement's stand-in become patches with the guardrail's.
    pub(super) async fn server_frames(
        &mut self,
        buf: &[u8],
        rewrite: &mut Rewrite,
    ) -> Result<usize> {
        let mut at = 0;
        let mut done = Vec::new();
        while let Some((kind, total)) = codec::frame(&buf[at..], UPSTREAM_MAX)? {
            let span = at..at + total;
            let body = &buf[at + 5..at + total];
            at += total;
            let msg = Backend::decode(kind, body).unwrap_or(Backend::Other(kind));
            match msg {
                Backend::ErrorResponse(body) if !self.blocked.is_empty() => {
                    match self.swap_blocked_error(body) {
                        Some(with) => rewrite.replace(buf, span.clone(), &with),
                        None => self.mask_text(kind, body, buf, span.clone(), rewrite),
                    }
                }
                Backend::ErrorResponse(body) | Backend::NoticeResponse(body) => {
                    self.mask_text(kind, body, buf, span.clone(), rewrite)
                }
                Backend::ParameterStatus(body) => {
                    if let Some((name, value)) = codec::parameter_status(body) {
                        self.follow_setting(name, value);
                    }
                    let withhold = self.reading_masked();
                    if let Some(m) = &mut self.masking
                        && let Some(with) = m.parameter_status(body, withhold)
                    {
                        rewrite.replace(buf, span.clone(), &with);
                    }
                }
                Backend::Notification(body) => {
                    if let Some(with) = self.masking.as_mut().and_then(|m| m.notification(body)) {
                        rewrite.replace(buf, span.clone(), &with);
                    }
                }
                Backend::FunctionCallResponse(body) => {
                    if let Some(with) = self.masking.as_mut().and_then(|m| m.function_result(body))
                    {
                        rewrite.replace(buf, span.clone(), &with);
                    }
                }
                // The transaction ended: what it read is behind it.
                Backend::ReadyForQuery(b'I') => self.tx_masked = false,
                _ => {}
            }
            self.tracker.server(&msg, &mut done);
            if self.masking.is_some() {
                self.mask_results(&msg, buf, span, rewrite)?;
            }
        }
        let results: Vec<serde_json::Value> =
            done.into_iter().filter_map(|d| self.outcome(d)).collect();
        if !results.is_empty() {
            self.flush_at
                .get_or_insert_with(|| tokio::time::Instant::now() + RESULTS_EVERY);
            self.results.extend(results);
            if self.results.len() >= RESULTS_BATCH {
                self.flush_results().await;
            }
        }
        Ok(at)
    }

    /// Whether masked data is being read: by what the server answers now, or earlier in the
    /// transaction.
    fn reading_masked(&self) -> bool {
        self.tx_masked || self.tracker.answering().is_some_and(|p| p.reads_masked)
    }

    /// An ErrorResponse or NoticeResponse, masked as its statement requires.
    fn mask_text(
        &mut self,
        kind: u8,
        body: &[u8],
        buf: &[u8],
        span: std::ops::Range<usize>,
        rewrite: &mut Rewrite,
    ) {
        let withhold = self.reading_masked();
        if let Some(m) = &mut self.masking
            && let Some(with) = m.error_or_notice(kind, body, withhold)
        {
            rewrite.replace(buf, span, &with);
        }
    }

    /// Rows and COPY data masked by the shape of the result they belong to.
    fn mask_results(
        &mut self,
        msg: &Backend<'_>,
        buf: &[u8],
        span: std::ops::Range<usize>,
        rewrite: &mut Rewrite,
    ) -> Result<()> {
        match msg {
            Backend::RowDescription(_) => self.now.shape = None,
            Backend::DataRow(body) => {
                if self.now.shape.is_none() {
                    let current = self.tracker.current().cloned();
                    let m = self.masking.as_ref().expect("masking applies");
                    self.now.shape = Some(current.and_then(|c| Some(m.shape(c.fields?, &c.plan))));
                }
                let mut scratch = Counts::default();
                let counts = match self.tracker.answering_statement().filter(|n| *n > 0) {
                    Some(n) => self.masked.entry(n).or_default(),
                    None => &mut scratch,
                };
                let m = self.masking.as_mut().expect("masking applies");
                let shape = self.now.shape.as_ref().and_then(Option::as_ref);
                // Written straight into what goes to the client, after the frames before it.
                rewrite.replace_in_place(buf, span, |before, out| {
                    m.row_into(shape, body, counts, before, out)
                })?;
            }
            Backend::CopyOut => {
                // A COPY nobody planned for cannot be judged: every value is withheld.
                let plan = self
                    .tracker
                    .current()
                    .and_then(|c| c.plan.copy.as_deref().cloned());
                self.now.copying = Some(plan.unwrap_or_else(CopyPlan::withhold_all));
            }
            Backend::CopyData(body) => {
                // CopyData with no CopyOutResponse before it breaks the protocol; if it ever
                // came, nothing in it would pass.
                let mut plan = self
                    .now
                    .copying
                    .take()
                    .unwrap_or_else(CopyPlan::withhold_all);
                let n = self.tracker.answering_statement().filter(|n| *n > 0);
                let mut counts = n.and_then(|n| self.masked.remove(&n)).unwrap_or_default();
                let m = self.masking.as_mut().expect("masking applies");
                if let Some(frame) = m.copy_row(&mut plan, body, &mut counts) {
                    rewrite.replace(buf, span, &frame);
                }
                if let Some(n) = n {
                    self.masked.insert(n, counts);
                }
                self.now.copying = Some(plan);
            }
            Backend::CopyDone => self.now.copying = None,
            Backend::CommandComplete(_)
            | Backend::EmptyQuery
            | Backend::PortalSuspended
            | Backend::ErrorResponse(_)
            | Backend::ReadyForQuery(_) => {
                self.now.shape = None;
                self.now.copying = None;
            }
            _ => {}
        }
        Ok(())
    }

    /// The record of an audited statement's end (none for a blocked statement's stand-in).
    fn outcome(&mut self, d: Done) -> Option<serde_json::Value> {
        if d.n == 0 {
            return None;
        }
        let details = match d.outcome {
            Outcome::Tag(tag) => json!({ "outcome": "ok", "tag": tag }),
            Outcome::Tags(tags) => json!({ "outcome": "ok", "tags": tags }),
            Outcome::Empty => json!({ "outcome": "empty" }),
            Outcome::Suspended => json!({ "outcome": "suspended" }),
            Outcome::Error(code) => json!({ "outcome": "error", "sqlstate": code }),
            Outcome::Skipped => json!({ "outcome": "skipped" }),
        };
        Some(self.result(d.n, details))
    }

    /// If `body` is the server's error for one of our stand-ins, the guardrail's error instead.
    fn swap_blocked_error(&mut self, body: &[u8]) -> Option<bytes::BytesMut> {
        if codec::error_code(body).as_deref() != Some("42703") {
            return None;
        }
        let marker = self.marker.as_bytes();
        let at = body.windows(marker.len()).position(|w| w == marker)? + marker.len();
        let digits = body[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        let n: u64 = std::str::from_utf8(&body[at..at + digits])
            .ok()?
            .parse()
            .ok()?;
        let message = self.blocked.remove(&n)?;
        Some(codec::error_response("ERROR", "42501", &message))
    }
}
