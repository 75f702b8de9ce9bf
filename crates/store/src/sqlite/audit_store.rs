//! The audit log's side of [`SqliteStore`]: its reads wait for the intake journal to be taken
//! in (`caught_up`), and its writes go through the same writer as every change.

use async_trait::async_trait;
use jitgate_audit::archive::Manifest;
use jitgate_audit::retention::{Hold, ScopedHold};
use jitgate_audit::{AuditEvent, Checkpoint, EventFilter, Gap};
use jitgate_core::EventDraft;
use rusqlite::OpenFlags;
use tokio::sync::{mpsc, watch};

use super::audit::{self, SealedEvent};
use super::{MAX_LIST, Reads, Result, SqliteStore, holds, open_connection};
use crate::{AuditStore, EraseRecord, Head, LiveEvent, StoreError};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn search_events(&self, f: EventFilter) -> Result<Vec<AuditEvent>> {
        self.caught_up().await;
        let limit = if f.limit == 0 {
            100
        } else {
            f.limit.min(MAX_LIST)
        };
        self.read(move |conn| audit::search(conn, &f, limit)).await
    }

    async fn stream_events(&self, f: EventFilter, out: mpsc::Sender<AuditEvent>) -> Result<()> {
        self.caught_up().await;
        self.read(move |conn| audit::stream(conn, &f, |e| out.blocking_send(e).is_ok()))
            .await
    }

    fn head(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }

    async fn add_checkpoint(&self, cp: Checkpoint) -> Result<()> {
        self.write(move |conn, _| audit::insert_checkpoint(conn, &cp))
            .await
    }

    async fn last_checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.read(audit::last_checkpoint).await
    }

    async fn put_hold(&self, hold: Hold, events: Vec<EventDraft>) -> Result<()> {
        let events = SealedEvent::seal_all(events);
        self.write(move |conn, head| {
            audit::put_hold(conn, &hold)?;
            audit::insert_events(conn, head, &events)
        })
        .await
    }

    async fn hold_scopes(&self, holds: Vec<Hold>) -> Result<Vec<ScopedHold>> {
        self.caught_up().await;
        self.read(move |conn| holds::scoped(conn, holds)).await
    }

    async fn get_hold(&self, id: String) -> Result<Option<Hold>> {
        self.read(move |conn| audit::hold(conn, &id)).await
    }

    async fn list_holds(&self, active_only: bool) -> Result<Vec<Hold>> {
        self.read(move |conn| audit::holds(conn, active_only)).await
    }

    async fn erase(&self, principal: String, record: EraseRecord) -> Result<u64> {
        // Events acknowledged before the erasure are erased with the rest, so they must be in.
        self.caught_up().await;
        let count = self
            .write(move |conn, head| {
                let (count, range) = audit::erase(conn, &principal)?;
                audit::insert_events(conn, head, &SealedEvent::seal_all(record(count, range)))?;
                Ok(count)
            })
            .await?;
        // The write-ahead log still holds the pages as they were; fold it into the (securely
        // overwritten) database file and empty it, so no copy of an erased payload remains.
        let path = self.readers.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open_connection(&path, OpenFlags::SQLITE_OPEN_READ_WRITE, Reads::Scans)?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| StoreError::caused("checkpoint task failed", e))??;
        if let Some(intake) = &self.intake {
            intake.clear().await?;
        }
        Ok(count)
    }

    async fn live_batch(&self, from_seq: i64, limit: u32) -> Result<Vec<LiveEvent>> {
        self.read(move |conn| audit::live_batch(conn, from_seq, limit))
            .await
    }

    async fn remove_ranges(
        &self,
        gaps: Vec<(Gap, Option<String>)>,
        segment: Option<Manifest>,
        planned_holds: Vec<String>,
        events: Vec<EventDraft>,
    ) -> Result<u64> {
        let events = SealedEvent::seal_all(events);
        self.write(move |conn, head| {
            let removed = audit::remove_ranges(conn, &gaps, segment.as_ref(), &planned_holds)?;
            audit::insert_events(conn, head, &events)?;
            Ok(removed)
        })
        .await
    }

    async fn action_counts(&self) -> Result<Vec<(String, u64, i64)>> {
        self.read(audit::action_counts).await
    }
}
