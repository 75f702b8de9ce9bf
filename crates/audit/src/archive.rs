//! Archive segments: events that left the live log under an `archive` rule, with their payloads,
//! as zstd-compressed JSON lines, each segment with a manifest that records its checksum and where
//! it sits in the chain. A segment holds, for each range boundary of the live log that names it,
//! the archived events and the skips over events deleted between them, with one seal that signs
//! all the skips, so `audit verify --archive` walks archive and live log as one chain.
//!
//! Segments written before seals existed hold a signed [`Gap`] for each skip instead; they still
//! verify.

use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::chain::{Hash, Skeleton, sha256};
use crate::retention::Candidate;
use crate::signing::{Gap, Seal, Span};
use crate::verify::Item;

/// One archived event, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedEvent {
    pub seq: i64,
    pub ts_us: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub resource: Option<String>,
    pub subject: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub session_id: Option<String>,
    #[serde(with = "hex::serde")]
    pub commitment: Hash,
    #[serde(with = "hex::serde")]
    pub hash: Hash,
    /// Hex salt and the payload, unless the payload had already been erased.
    pub salt: Option<String>,
    pub payload: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentItem {
    Event(ArchivedEvent),
    /// Deleted events between archived ones; covered by the boundary's seal.
    Skip(Span),
    /// Signs the skips of one range boundary; the first of the boundary's items.
    Seal(Seal),
    /// Deleted events between archived ones, signed on their own (segments from before seals).
    Gap(Gap),
}

impl SegmentItem {
    /// Where the item sorts in its segment: a seal at its boundary's first `seq`, ahead of the
    /// item there.
    pub fn first_seq(&self) -> i64 {
        match self {
            SegmentItem::Event(e) => e.seq,
            SegmentItem::Skip(s) => s.first_seq,
            SegmentItem::Seal(s) => s.first_seq,
            SegmentItem::Gap(g) => g.span.first_seq,
        }
    }

    fn last_seq(&self) -> i64 {
        match self {
            SegmentItem::Event(e) => e.seq,
            SegmentItem::Skip(s) => s.last_seq,
            SegmentItem::Seal(s) => s.last_seq,
            SegmentItem::Gap(g) => g.span.last_seq,
        }
    }
}

impl ArchivedEvent {
    /// Lends the event to `f` in the shape a verifier takes.
    pub fn with_item<T>(&self, f: impl FnOnce(Item<'_>) -> T) -> T {
        let salt = self.salt.as_deref().and_then(|s| hex::decode(s).ok());
        let payload = match (&salt, &self.payload) {
            (Some(salt), Some(p)) => Some((salt.as_slice(), p.as_bytes())),
            _ => None,
        };
        f(Item::Event {
            skeleton: self.skeleton(),
            stored_hash: &self.hash,
            payload,
        })
    }

    /// What retention rules and holds look at.
    pub fn candidate(&self) -> Candidate<'_> {
        Candidate {
            seq: self.seq,
            ts_us: self.ts_us,
            action: &self.action,
            actor: &self.actor,
            subject: self.subject.as_deref(),
            resource: self.resource.as_deref(),
            request_id: self.request_id.as_deref(),
            grant_id: self.grant_id.as_deref(),
        }
    }

    pub fn skeleton(&self) -> Skeleton<'_> {
        Skeleton {
            seq: self.seq,
            ts_us: self.ts_us,
            actor: &self.actor,
            action: &self.action,
            outcome: &self.outcome,
            resource: self.resource.as_deref(),
            subject: self.subject.as_deref(),
            request_id: self.request_id.as_deref(),
            grant_id: self.grant_id.as_deref(),
            session_id: self.session_id.as_deref(),
            commitment: &self.commitment,
        }
    }
}

/// What a segment holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub events: u64,
    pub bytes: u64,
    #[serde(with = "hex::serde")]
    pub sha256: Hash,
}

impl Manifest {
    /// The object name of the segment's manifest.
    pub fn object_name(segment: &str) -> String {
        format!("{segment}.manifest.json")
    }
}

/// The object name for a segment covering `first..=last`; the same range always gets the same
/// name, so a sweep that crashed and runs again overwrites rather than duplicates.
pub fn segment_name(first: i64, last: i64) -> String {
    format!("segment-{first:020}-{last:020}.jsonl.zst")
}

/// Compresses items into a segment and describes it.
pub fn encode(name: &str, items: &[SegmentItem]) -> Result<(Vec<u8>, Manifest), AuditError> {
    let mut lines = Vec::new();
    for item in items {
        serde_json::to_writer(&mut lines, item).map_err(|e| AuditError::archive(None, e))?;
        lines.push(b'\n');
    }
    let bytes = zstd::encode_all(lines.as_slice(), 3).map_err(|e| AuditError::archive(None, e))?;
    let events = items
        .iter()
        .filter(|i| matches!(i, SegmentItem::Event(_)))
        .count() as u64;
    let last_seq = items.iter().map(SegmentItem::last_seq).max().unwrap_or(0);
    let manifest = Manifest {
        name: name.to_owned(),
        first_seq: items.first().map(SegmentItem::first_seq).unwrap_or(0),
        last_seq,
        events,
        bytes: bytes.len() as u64,
        sha256: sha256(&bytes),
    };
    Ok((bytes, manifest))
}

/// Checks a segment against its manifest and decodes it.
pub fn decode(bytes: &[u8], manifest: &Manifest) -> Result<Vec<SegmentItem>, AuditError> {
    let digest = sha256(bytes);
    if digest != manifest.sha256 {
        return Err(AuditError::Archive {
            message: format!(
                "segment {} does not match its manifest's checksum",
                manifest.name
            ),
            source: None,
        });
    }
    let lines = zstd::decode_all(bytes)
        .map_err(|e| AuditError::archive(Some(&format!("segment {}", manifest.name)), e))?;
    lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .map_err(|e| AuditError::archive(Some(&format!("segment {}", manifest.name)), e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_detect_corruption() {
        let e = ArchivedEvent {
            seq: 5,
            ts_us: 1,
            actor: "a".into(),
            action: "grant.expired".into(),
            outcome: "success".into(),
            resource: None,
            subject: None,
            request_id: None,
            grant_id: None,
            session_id: None,
            commitment: [1; 32],
            hash: [2; 32],
            salt: Some("00".into()),
            payload: Some("{}".into()),
        };
        let items = vec![SegmentItem::Event(e)];
        let (mut bytes, manifest) = encode(&segment_name(5, 5), &items).unwrap();
        assert_eq!(
            (manifest.first_seq, manifest.last_seq, manifest.events),
            (5, 5, 1)
        );
        assert_eq!(decode(&bytes, &manifest).unwrap(), items);
        bytes[3] ^= 1;
        assert!(decode(&bytes, &manifest).is_err());
    }
}
