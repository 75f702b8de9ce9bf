//! Persistence behind the [`Store`] trait. Each change to a request is written together with the
//! audit events that record it, in one transaction.
//!
//! The embedded default is [`SqliteStore`]; a PostgreSQL implementation for running several
//! jitgate instances joins it behind the same trait and contract tests.

mod audit_store;
mod error;
mod sessions;
mod sqlite;

use async_trait::async_trait;
use jitgate_core::{AccessRequest, CoreError, EventDraft, State, Timestamp};

pub use audit_store::{AuditStore, Head, LiveEvent};
pub use error::StoreError;
pub use sessions::{AuthSession, EndRecord, SessionBody, SessionKey, UsedJti};
pub use sqlite::{ArchiveLookup, LogFile, ScanError, SqliteStore, intake_path};

/// Builds the events that record an erasure, from how many payloads went and their seq range.
pub type EraseRecord = Box<dyn FnOnce(u64, Option<(i64, i64)>) -> Vec<EventDraft> + Send>;

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
    /// With `state = Pending`: also the active requests whose grant has an extension awaiting
    /// approval, so approvers see everything that waits for them.
    pub include_pending_extensions: bool,
    /// Only requests that have (or had) a grant.
    pub with_grant: bool,
    /// Only requests by this principal, or awaiting approval under one of these policies.
    pub visible_to: Option<(String, Vec<String>)>,
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub limit: u32,
}

#[async_trait]
/// Requests and the events that record them. The audit log's own reads, checkpoints, holds,
/// retention and erasure are its [`AuditStore`].
pub trait Store: AuditStore {
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

    /// Makes `events` durable and returns; they join the chain a moment later, in order. For
    /// events someone waits on before going on (a gateway's statements in durable mode): the
    /// SQLite store syncs them to its intake journal, a plain file, instead of committing them.
    /// Searches and erasures first wait for what was acknowledged to be in the log.
    async fn journal_events(&self, events: Vec<EventDraft>) -> Result<(), StoreError> {
        self.append_events(events).await
    }

    async fn get_request(&self, key: RequestKey) -> Result<Option<AccessRequest>, StoreError>;

    async fn list_requests(&self, filter: RequestFilter) -> Result<Vec<AccessRequest>, StoreError>;

    /// Ids of requests with something due at or before `now`, earliest first.
    async fn due_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<String>, StoreError>;

    /// The earliest moment anything is due, if anything ever is.
    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Requests not yet ended, counted by state and resource, and when the longest-revoking
    /// grant began to end: what an operator's gauges show.
    async fn live_counts(&self) -> Result<LiveCounts, StoreError>;

    /// Writes a new session with `events`, and `jti` as used; returns `false`, writing nothing,
    /// if that `jti` was already used.
    async fn insert_session(
        &self,
        session: AuthSession,
        jti: Option<UsedJti>,
        events: Vec<EventDraft>,
    ) -> Result<bool, StoreError>;

    /// The session whose token has this SHA-256, ended or not.
    async fn session(&self, digest: [u8; 32]) -> Result<Option<AuthSession>, StoreError>;

    /// Sessions live at `now`, oldest first: `principal`'s, or everyone's.
    async fn live_sessions(
        &self,
        principal: Option<String>,
        now: Timestamp,
    ) -> Result<Vec<AuthSession>, StoreError>;

    /// Ends the live sessions `key` names, with the events `record` makes of them, in one
    /// transaction; returns them.
    async fn end_sessions(
        &self,
        key: SessionKey,
        now: Timestamp,
        record: EndRecord,
    ) -> Result<Vec<AuthSession>, StoreError>;
}

/// Requests that have not ended, by state and resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveCounts {
    /// `(state, resource, how many)` for pending, approved, active and revoking.
    pub counts: Vec<(State, String, u64)>,
    /// When the grant that has been revoking longest began to end.
    pub revoking_since: Option<Timestamp>,
}
