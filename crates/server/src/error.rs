use std::path::PathBuf;

use jitgate_connectors::ConnectorError;
use jitgate_core::CoreError;
use jitgate_store::StoreError;
use thiserror::Error;

/// One mistake in a config file: where it is (file, line, key) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem of the file, one per line, each with its file, line and key.
    #[error("{}", problems(.0))]
    Invalid(Vec<Problem>),
}

fn problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    match lines.len() {
        1 => lines[0].clone(),
        n => format!("{n} problems in the config:\n{}", lines.join("\n")),
    }
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
    /// A file, socket, task or outside service failed while doing `what`.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request clashes with the current state (a hold already released).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Audit(#[from] jitgate_audit::AuditError),
    /// A secret's file (the masking key's).
    #[error(transparent)]
    KeyFile(#[from] jitgate_audit::KeyFileError),
    /// A task the operation ran in (so a client hanging up cannot cut it short) failed.
    #[error("an operation's task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl Error {
    /// An [`Error::Io`]: `source` failed while doing `what`.
    pub fn io(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Io {
            what: what.into(),
            source: source.into(),
        }
    }
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
