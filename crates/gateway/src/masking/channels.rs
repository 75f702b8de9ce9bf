//! Masking of the messages that carry text other than rows: errors and notices (an error can
//! quote a value: `invalid input syntax for type integer: "ann@example.com"`), notifications,
//! parameter status reports and fastpath function results. None of them says which column its
//! text came from, so they are judged by what is running:
//!
//! * An error or notice answering a statement that reads masked data (or raised while the
//!   transaction has read masked data: a deferred constraint fails at COMMIT) keeps its
//!   severity, SQLSTATE and position, and nothing else: its message becomes a fixed text, its
//!   detail, hint, context and query fields are dropped.
//! * Under column rules a notification's payload is withheld whole: any session may send it,
//!   and it may carry any value. A parameter status report of a setting that holds free text
//!   (`application_name`, custom settings) is withheld while masked data is being read.
//! * Detectors look inside every such text, and mask what they find.

use bytes::{BufMut, BytesMut};

use super::SessionMasking;
use crate::codec;

/// Settings whose reported values are chosen from a fixed set or are the server's own, never
/// free text.
const ENUMERATED_SETTINGS: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
    "scram_iterations",
];

/// Fields of an error or notice kept when its text is withheld: severity (both forms),
/// SQLSTATE, and the position in the statement.
const KEPT_FIELDS: &[u8] = b"SVCP";

impl SessionMasking {
    /// Text with what the detectors find masked, or `None` if they find nothing. A `null` rule
    /// empties it.
    fn scrub_text(&mut self, text: &str) -> Option<String> {
        if !self.plausible(text.as_bytes()) {
            return None;
        }
        let mut current: Option<String> = None;
        for rule in &self.rules {
            if rule.detectors.is_empty() {
                continue;
            }
            let mut found = [0u32; 6];
            let input = current.as_deref().unwrap_or(text);
            match self.masker.scrub(
                &rule.detectors,
                rule.strategy,
                input,
                &mut found,
                &mut self.memo,
            ) {
                None => {}
                Some(None) => return Some(String::new()),
                Some(Some(s)) => current = Some(s),
            }
        }
        current
    }

    /// An ErrorResponse or NoticeResponse (`kind`) as the client may see it; `None` if it
    /// passes as it came. `withhold` says masked data is being read.
    pub fn error_or_notice(&mut self, kind: u8, body: &[u8], withhold: bool) -> Option<BytesMut> {
        let fields = codec::message_fields(body);
        let readable = fields.as_ref().map(|f| f.len());
        if !withhold && self.detectors.is_empty() && readable.is_some() {
            return None;
        }
        let Some(fields) = fields else {
            // Fields that are not text: nothing of it can be judged but the SQLSTATE.
            let code = codec::error_code(body).unwrap_or_else(|| "XX000".into());
            return Some(withheld(kind, &[(b'S', "ERROR"), (b'C', &code)]));
        };
        if withhold {
            let kept: Vec<(u8, &str)> = fields
                .iter()
                .copied()
                .filter(|(t, _)| KEPT_FIELDS.contains(t))
                .collect();
            return Some(withheld(kind, &kept));
        }
        let mut changed = false;
        let mut out: Vec<(u8, String)> = Vec::with_capacity(fields.len());
        for &(t, v) in &fields {
            match self.scrub_text(v).filter(|_| t != b'C') {
                Some(s) => {
                    changed = true;
                    out.push((t, s));
                }
                None => out.push((t, v.to_owned())),
            }
        }
        changed.then(|| {
            let refs: Vec<(u8, &str)> = out.iter().map(|(t, v)| (*t, v.as_str())).collect();
            codec::message_frame(kind, &refs)
        })
    }

    /// A NotificationResponse as the client may see it; `None` if it passes as it came.
    pub fn notification(&mut self, body: &[u8]) -> Option<BytesMut> {
        let Some((pid, channel, payload)) = codec::notification(body) else {
            return Some(codec::notification_frame(0, "", ""));
        };
        if self.by_column {
            // Any session can notify with any value: under column rules it cannot be judged.
            if payload.is_empty() {
                return None;
            }
            let channel = self
                .scrub_text(channel)
                .unwrap_or_else(|| channel.to_owned());
            return Some(codec::notification_frame(pid, &channel, ""));
        }
        let (c, p) = (self.scrub_text(channel), self.scrub_text(payload));
        if c.is_none() && p.is_none() {
            return None;
        }
        Some(codec::notification_frame(
            pid,
            c.as_deref().unwrap_or(channel),
            p.as_deref().unwrap_or(payload),
        ))
    }

    /// A ParameterStatus as the client may see it; `None` if it passes as it came.
    /// `withhold`: masked data is being read, so a free-text setting's value is withheld.
    pub fn parameter_status(&mut self, body: &[u8], withhold: bool) -> Option<BytesMut> {
        let (name, value) = codec::parameter_status(body)?;
        let free_text = !ENUMERATED_SETTINGS.contains(&name);
        if self.by_column && withhold && free_text && !value.is_empty() {
            return Some(codec::parameter_status_frame(name, ""));
        }
        let scrubbed = self.scrub_text(value)?;
        Some(codec::parameter_status_frame(name, &scrubbed))
    }

    /// A FunctionCallResponse as the client may see it: its value is withheld if a detector
    /// finds anything in it (read as text), since its type is not known.
    pub fn function_result(&mut self, body: &[u8]) -> Option<BytesMut> {
        if self.detectors.is_empty() {
            return None;
        }
        let value = codec::function_result(body)?;
        let text = String::from_utf8_lossy(value);
        self.scrub_text(&text)?;
        let mut out = BytesMut::new();
        out.put_i32(-1);
        Some(codec::frame_of(codec::tag::FUNCTION_CALL_RESPONSE, &out))
    }
}

/// An error or notice with only `kept` of its fields and a message saying why.
fn withheld(kind: u8, kept: &[(u8, &str)]) -> BytesMut {
    let code = kept
        .iter()
        .find(|(t, _)| *t == b'C')
        .map_or("XX000", |(_, c)| *c);
    let message = format!(
        "jitgate withheld the text of this message: the statement reads masked data (SQLSTATE {code})"
    );
    let mut fields: Vec<(u8, &str)> = kept.iter().copied().filter(|(t, _)| *t != b'M').collect();
    fields.push((b'M', &message));
    codec::message_frame(kind, &fields)
}
