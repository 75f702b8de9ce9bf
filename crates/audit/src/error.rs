use thiserror::Error;

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("signing key: {0}")]
    Key(String),
    #[error("archive: {0}")]
    Archive(String),
    #[error("anchor {anchor}: {why}")]
    Anchor { anchor: String, why: String },
}
