use std::path::PathBuf;

use jitgate_connectors::ConnectorError;
use jitgate_core::CoreError;
use jitgate_store::StoreError;
use thiserror::Error;

use crate::config::Problem;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// Everything the control plane can fail with. The HTTP layer maps it to a status in one place.
#[derive(Debug, Error)]
pub enum Error {
    #[error("missing or unknown API token")]
    Unauthenticated,
    /// A sign-in failed a check; the message names it.
    #[error("{0}")]
    SignInRefused(String),
    /// Something jitgate depends on (an identity provider) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Io(String),
    /// The request clashes with the current state (a hold already released).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Audit(#[from] jitgate_audit::AuditError),
    /// A task the operation ran in (so a client hanging up cannot cut it short) failed.
    #[error("an operation's task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(c) => Error::Core(c),
            StoreError::NotFound(what) => Error::NotFound(what),
            other => Error::Store(other),
        }
    }
}
