use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("signing key: {0}")]
    Key(String),
    /// The signing key's file (its message names the key).
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// `message` says what failed, with its cause; `source` is that cause, where there was one.
    #[error("archive: {message}")]
    Archive {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("anchor {anchor}: {why}")]
    Anchor {
        anchor: String,
        why: String,
        #[source]
        source: Option<Cause>,
    },
}

/// What an archive or anchor failed with, kept as the error's source.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

impl AuditError {
    /// The archive failed with `cause`, while doing `context` if given.
    pub fn archive(context: Option<&str>, cause: impl Into<Cause>) -> Self {
        let cause = cause.into();
        AuditError::Archive {
            message: match context {
                Some(context) => format!("{context}: {cause}"),
                None => cause.to_string(),
            },
            source: Some(cause),
        }
    }

    /// The anchor file at `path` failed with `cause`, while doing `context` if given.
    pub fn anchor(path: &std::path::Path, context: Option<&str>, cause: impl Into<Cause>) -> Self {
        let cause = cause.into();
        AuditError::Anchor {
            anchor: path.display().to_string(),
            why: match context {
                Some(context) => format!("{context}: {cause}"),
                None => cause.to_string(),
            },
            source: Some(cause),
        }
    }
}

/// A secret's own file could not be read, written or trusted.
#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a jitgate {what}", path.display())]
    NotAKey { path: PathBuf, what: &'static str },
    #[error("{}: the {what} is readable by others (mode {mode:o}); run `chmod 600` on it", path.display())]
    Exposed {
        path: PathBuf,
        what: &'static str,
        mode: u32,
    },
}
