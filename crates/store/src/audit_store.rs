//! The audit log's own store: reads and streams of events, the chain's head, checkpoints, legal
//! holds, retention removals and erasure. [`crate::Store`] builds on it, since a request's
//! changes are written with the events that record them; this is also the seam where a second
//! storage backend plugs in its audit log.

use async_trait::async_trait;
use jitgate_audit::archive::{ArchivedEvent, Manifest};
use jitgate_audit::chain::{GENESIS, Hash};
use jitgate_audit::retention::{Hold, ScopedHold};
use jitgate_audit::{AuditEvent, Checkpoint, EventFilter, Gap};
use jitgate_core::EventDraft;
use tokio::sync::{mpsc, watch};

use crate::{EraseRecord, StoreError};

#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
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
}

/// The last event of the chain: its `seq` and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: Hash,
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: GENESIS,
    };
}

/// A live event as retention sees it: the whole record (rules and holds look at
/// [`ArchivedEvent::candidate`]; it is archived as it is).
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub record: ArchivedEvent,
    /// The chain hash just before this event (of the event or range boundary at `seq - 1`).
    pub prev: Hash,
}
