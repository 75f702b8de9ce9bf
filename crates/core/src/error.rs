use thiserror::Error;

use crate::State;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// Policy or authorisation says no. The message names the rule in the policy's terms.
    #[error("{0}")]
    Refused(String),
    /// The input is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The action does not apply to the request in its current state.
    #[error("cannot {action} a request that is {state}")]
    InvalidTransition { action: &'static str, state: State },
    /// Someone else already decided what this action would decide; the message says who.
    #[error("{0}")]
    Conflict(String),
}
