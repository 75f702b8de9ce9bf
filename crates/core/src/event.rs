//! An audit event as the domain produces it; the store gives it a `seq` when it is written.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// A refusal by policy or authorisation.
    Denied,
    /// Something that was meant to happen did not (a connector error).
    Failure,
    /// A statement stopped by a gateway guardrail before it reached the database.
    Blocked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
            Outcome::Blocked => "blocked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDraft {
    pub ts: Timestamp,
    pub actor: String,
    pub action: String,
    pub outcome: Outcome,
    pub resource: Option<String>,
    /// The principal whose access the event concerns; lets people read their own history.
    pub subject: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub session_id: Option<String>,
    pub details: serde_json::Value,
}

impl EventDraft {
    pub fn new(ts: Timestamp, actor: &str, action: &str) -> Self {
        Self {
            ts,
            actor: actor.to_owned(),
            action: action.to_owned(),
            outcome: Outcome::Success,
            resource: None,
            subject: None,
            request_id: None,
            grant_id: None,
            session_id: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// The name jitgate itself acts under (expiry, timeouts, reconciliation).
pub const SYSTEM_ACTOR: &str = "jitgate";
