use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: usize },
}

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The control plane could not record a session's events: the session ends (fail closed).
    #[error("the audit log cannot be written")]
    Audit(#[source] AuthorityError),
}

/// What the control plane failed with; the gateway passes it on as a source, never as text.
pub type AuthorityError = Box<dyn std::error::Error + Send + Sync>;
