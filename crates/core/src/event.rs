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
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Denied,
        Outcome::Failure,
        Outcome::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
            Outcome::Blocked => "blocked",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = crate::CoreError;

    fn from_str(s: &str) -> Result<Self, crate::CoreError> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
                crate::CoreError::Invalid(format!(
                    "unknown outcome {s:?}; one of: {}",
                    all.join(", ")
                ))
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_parse_from_their_names_and_unknown_ones_list_the_known() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), o);
        }
        let e = "succes".parse::<Outcome>().unwrap_err().to_string();
        assert!(e.contains("success, denied, failure, blocked"), "{e}");
    }
}
