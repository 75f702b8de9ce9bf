//! The tamper-evident audit log: event records and search filters, the hash chain, signed
//! checkpoints and anchors, streaming verification, retention rules and holds, archive segments.
//!
//! Events are written by the store in the same transaction as the state change they record; this
//! crate does no database I/O of its own.

pub mod anchor;
pub mod archive;
pub mod chain;
mod error;
pub mod key_file;
pub mod retention;
pub mod signing;
pub mod verify;

pub use chain::{Hash, Skeleton};
pub use error::{AuditError, KeyFileError};
pub use signing::{Checkpoint, Gap, PublicKey, Seal, Signer, SkipDigest, Span};
pub use verify::{Item, Problem, ProblemKind, Report, Verifier};

use jitgate_core::Timestamp;
use serde::{Deserialize, Serialize};

pub use jitgate_core::event::{EventDraft, Outcome};

/// One stored audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub ts: Timestamp,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub resource: Option<String>,
    /// Whose access the event concerns; used for visibility, not part of the public record shape.
    #[serde(skip_serializing, default)]
    pub subject: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub session_id: Option<String>,
    pub details: serde_json::Value,
}

/// Which events to return, oldest first. Every field narrows the result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// A glob on the action name: `request.*`, `grant.expired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// A glob on action names to leave out: `audit.searched` hides the auditors' own reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Only events this principal took part in (as actor or as subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub involving: Option<String>,
    /// Paging: only events with a larger `seq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<i64>,
    #[serde(skip)]
    pub limit: u32,
}

/// Turns an action glob (`*` any run, `?` one character) into a SQL `LIKE` pattern with `\` as
/// the escape character, so `%` and `_` in the glob match only themselves.
pub fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_escaped_like_patterns() {
        assert_eq!(glob_to_like("request.*"), "request.%");
        assert_eq!(glob_to_like("grant.?xpired"), "grant._xpired");
        assert_eq!(glob_to_like("a_b%c"), "a\\_b\\%c");
    }
}
