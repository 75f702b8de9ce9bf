use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConnectorError {
    /// The target could not be reached or refused the change; worth retrying.
    #[error("{target}: {message}")]
    Target { target: String, message: String },
    /// A grant's login could read around a control (a masked column through one of its target
    /// roles): the grant is not activated until the role is fixed.
    #[error("{0}")]
    Exposed(String),
    /// The handle or configuration does not make sense; retrying will not help.
    #[error("{0}")]
    Invalid(String),
}
