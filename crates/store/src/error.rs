use std::sync::Arc;

use jitgate_core::CoreError;
use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    /// The domain refused the change; nothing was written.
    #[error(transparent)]
    Domain(#[from] CoreError),
    /// The database, or the store's own threads, files and encodings, failed. `message` says it
    /// in words; `source` is the error that caused it, where there was one.
    #[error("database error: {message}")]
    Db {
        message: String,
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    #[error("corrupt record {id}: {why}")]
    Corrupt { id: String, why: String },
    /// Something changed under a multi-step operation; running it again plans afresh.
    #[error("{0}")]
    Conflict(String),
    /// A legal hold forbids the change.
    #[error("refused: {why}")]
    Held { hold: String, why: String },
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// A failure of the store's own making, with no error under it.
    pub fn db(message: impl Into<String>) -> Self {
        StoreError::Db {
            message: message.into(),
            source: None,
        }
    }

    /// A failure caused by `source`, while doing what `context` says.
    pub fn caused(context: &str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Db {
            message: format!("{context}: {source}"),
            source: Some(Arc::new(source)),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db {
            message: e.to_string(),
            source: Some(Arc::new(e)),
        }
    }
}
