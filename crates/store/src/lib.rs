//! Persistence behind the [`Store`] trait. Each change to a request is written together with the
//! audit events that record it, in one transaction.
//!
//! The embedded default is [`SqliteStore`]; a PostgreSQL implementation for running several
//! jitgate instances joins it behind the same trait and contract tests.

mod error;
mod sessions;
mod sqlite;

use async_trait::async_trait;
use jitgate_audit::archive::Manifest;
use jitgate_audit::retention::{Hold, ScopedHold};
use jitgate_audit::{AuditEvent, Checkpoint, EventFilter, Gap};
use jitgate_core::{AccessRequest, CoreError, EventDraft, State, Timestamp};
use tokio::sync::{mpsc, watch};

pub use error::StoreError;
pub use sessions::{AuthSession, EndRecord, SessionBody, SessionKey, UsedJti};
pub use sqlite::{ArchiveLookup, Head, LiveEvent, LogFile, ScanError, SqliteStore, intake_path};

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

    /// Events matching `filter`, oldest first, at most `filter.limit` (capped); page with
    /// `after_seq`.
    async fn search_events(&self, filter: EventFilter) -> Result<Vec<AuditEvent>, StoreError>;

    /// Sends every event matching `filter` (ignoring its limit), oldest first, until the receiver
    /// goes away.
    async fn stream_events(
        &self,
        filter: EventFilter,
        out: mpsc::Sender<AuditEvent>,
    ) -> Result<(), StoreError>;

    /// The audit chain's head as of the last commit.
    fn head(&self) -> watch::Receiver<Head>;

    async fn add_checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError>;

    async fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;

    /// Creates or updates (releases) a legal hold, with the events that record it.
    async fn put_hold(&self, hold: Hold, events: Vec<EventDraft>) -> Result<(), StoreError>;

    /// Each active hold with the requests it covers ([`ScopedHold`]): a hold keeps every event
    /// of each request it matches an event of.
    async fn hold_scopes(&self, holds: Vec<Hold>) -> Result<Vec<ScopedHold>, StoreError>;

    async fn get_hold(&self, id: String) -> Result<Option<Hold>, StoreError>;

    async fn list_holds(&self, active_only: bool) -> Result<Vec<Hold>, StoreError>;

    /// Deletes the payloads of the live events `principal` took part in, keeping the skeletons;
    /// refuses (erasing nothing) if a hold covers any of them. Returns how many were erased.
    async fn erase(&self, principal: String, record: EraseRecord) -> Result<u64, StoreError>;

    /// Up to `limit` live events from `from_seq` on, whole, each with the chain hash before it.
    async fn live_batch(&self, from_seq: i64, limit: u32) -> Result<Vec<LiveEvent>, StoreError>;

    /// Replaces the events each gap stands for by the gap, in one transaction with `events`,
    /// after checking that the active holds are still `planned_holds` and the events unchanged.
    async fn remove_ranges(
        &self,
        gaps: Vec<(Gap, Option<String>)>,
        segment: Option<Manifest>,
        planned_holds: Vec<String>,
        events: Vec<EventDraft>,
    ) -> Result<u64, StoreError>;

    /// Live events per action: `(action, count, oldest ts in µs)`.
    async fn action_counts(&self) -> Result<Vec<(String, u64, i64)>, StoreError>;

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
