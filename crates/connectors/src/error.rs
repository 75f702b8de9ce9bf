use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConnectorError {
    /// The target could not be reached or refused the change; worth retrying.
    #[error("{target}: {message}")]
    Target { target: String, message: String },
    /// The handle or configuration does not make sense; retrying will not help.
    #[error("{0}")]
    Invalid(String),
}
