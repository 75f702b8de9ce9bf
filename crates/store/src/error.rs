use jitgate_core::CoreError;
use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    /// The domain refused the change; nothing was written.
    #[error(transparent)]
    Domain(#[from] CoreError),
    #[error("database error: {0}")]
    Db(String),
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

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}
