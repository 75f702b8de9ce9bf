use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("signing key: {0}")]
    Key(String),
    /// The signing key's file (its message names the key).
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("archive: {0}")]
    Archive(String),
    #[error("anchor {anchor}: {why}")]
    Anchor { anchor: String, why: String },
}

/// A secret's own file could not be read, written or trusted.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// The cause is the source: `{:#}` and the log show it.
    #[error("{}", path.display())]
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
