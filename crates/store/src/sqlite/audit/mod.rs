//! The audit log in SQLite: chained appends, search and streaming reads, verification scans,
//! checkpoints, holds, retention removals and erasure. One file per job: `append` seals, links and
//! inserts; `read` filters, searches and streams; `scan` feeds verification; `retention` keeps
//! holds and removes or erases under its guards.

mod append;
mod read;
mod retention;
mod scan;
#[cfg(test)]
mod tests;

use jitgate_audit::chain::{self, Hash};
use rusqlite::types::ValueRef;

use crate::StoreError;
use crate::sqlite::Result;

pub use append::SealedEvent;
pub(super) use append::{insert_events, migrate_v1, note_time_block, read_head, seq_range};
pub(super) use read::{checkpoints, insert_checkpoint, last_checkpoint, search, stream};
pub(super) use retention::{
    action_counts, erase, hold, holds, live_batch, put_hold, remove_ranges,
};
pub use scan::{ArchiveLookup, ScanError, scan};

fn blob_hash(v: ValueRef<'_>, what: &str) -> Result<Hash> {
    match v {
        ValueRef::Blob(b) => chain::hash_from(b),
        _ => None,
    }
    .ok_or_else(|| StoreError::db(format!("{what} is not a 32-byte digest")))
}
