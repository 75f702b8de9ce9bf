use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConnectorError {
    /// The target could not be reached or refused the change; worth retrying.
    /// `message` says what failed, with its cause; `source` is that cause, where there was one.
    #[error("{target}: {message}")]
    Target {
        target: String,
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// A grant's login could read around a control (a masked column through one of its target
    /// roles): the grant is not activated until the role is fixed.
    #[error("{0}")]
    Exposed(String),
    /// The handle or configuration does not make sense; retrying will not help. `source` is
    /// what refused it (a URL parser, a pool builder), where there was one.
    #[error("{message}")]
    Invalid {
        message: String,
        #[source]
        source: Option<Cause>,
    },
}

/// What a target failed with, kept as the error's source.
type Cause = Box<dyn std::error::Error + Send + Sync>;

impl ConnectorError {
    /// `target` failed with `cause`, while doing `context` if given.
    pub fn target(target: String, context: Option<&str>, cause: impl Into<Cause>) -> Self {
        let cause = cause.into();
        ConnectorError::Target {
            target,
            message: match context {
                Some(context) => format!("{context}: {cause}"),
                None => cause.to_string(),
            },
            source: Some(cause),
        }
    }

    /// The handle or configuration does not make sense: `context`, then what refused it.
    pub fn invalid(context: &str, cause: impl Into<Cause>) -> Self {
        let cause = cause.into();
        ConnectorError::Invalid {
            message: format!("{context}: {cause}"),
            source: Some(cause),
        }
    }

    /// `target` did something it should not have; there is no error under it.
    pub fn target_said(target: String, message: impl Into<String>) -> Self {
        ConnectorError::Target {
            target,
            message: message.into(),
            source: None,
        }
    }
}
