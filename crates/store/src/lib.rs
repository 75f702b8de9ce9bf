//! Persistence behind the [`Store`] trait. Each change to a request is written together with the
//! audit events that record it, in one transaction.
//!
//! The embedded default is [`SqliteStore`]; a PostgreSQL implementation for running several
//! jitgate instances joins it behind the same trait and contract tests.

mod error;
mod sqlite;

use async_trait::async_trait;
use jitgate_audit::{AuditEvent, EventFilter};
use jitgate_core::{AccessRequest, CoreError, EventDraft, State, Timestamp};

pub use error::StoreError;
pub use sqlite::SqliteStore;

/// A change to one request: validate, mutate, and return the events that record it. Returning
/// no events means nothing changed, and nothing is written.
pub type Change = Box<dyn FnOnce(&mut AccessRequest) -> Result<Vec<EventDraft>, CoreError> + Send>;

/// How to find a request: by its own id or by the id of its grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKey {
    Request(String),
    Grant(String),
}

impl std::fmt::Display for RequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestKey::Request(id) => write!(f, "request {id}"),
            RequestKey::Grant(id) => write!(f, "grant {id}"),
        }
    }
}

/// Which requests to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub state: Option<State>,
    /// Only requests that have (or had) a grant.
    pub with_grant: bool,
    /// Only requests by this principal, or awaiting approval under one of these policies.
    pub visible_to: Option<(String, Vec<String>)>,
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub limit: u32,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes a new request and its events.
    async fn insert_request(
        &self,
        request: AccessRequest,
        events: Vec<EventDraft>,
    ) -> Result<(), StoreError>;

    /// Loads a request, applies `change`, and writes the result with its events atomically.
    /// Changes to the same request are serialised, so no update is lost.
    async fn update_request(
        &self,
        key: RequestKey,
        change: Change,
    ) -> Result<AccessRequest, StoreError>;

    /// Writes events that change no request (a refused request, credentials issued).
    async fn append_events(&self, events: Vec<EventDraft>) -> Result<(), StoreError>;

    async fn get_request(&self, key: RequestKey) -> Result<Option<AccessRequest>, StoreError>;

    async fn list_requests(&self, filter: RequestFilter) -> Result<Vec<AccessRequest>, StoreError>;

    /// Ids of requests with something due at or before `now`, earliest first.
    async fn due_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<String>, StoreError>;

    /// The earliest moment anything is due, if anything ever is.
    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError>;

    async fn search_events(&self, filter: EventFilter) -> Result<Vec<AuditEvent>, StoreError>;
}
