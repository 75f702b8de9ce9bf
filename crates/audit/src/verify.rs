//! Streaming verification of the chain: events, gaps and checkpoints in `seq` order, with only
//! public keys. The first problem stops verification and names its `seq`.

use std::collections::HashMap;
use std::fmt;

use crate::archive::SegmentItem;
use crate::chain::{GENESIS, Hash, Skeleton, commitment};
use crate::signing::{Checkpoint, Gap, PublicKey};

/// The action of the event that introduces a new signing key; its payload holds
/// `{"public_key": "<hex>"}` and it is trusted once a checkpoint signed by an already trusted key
/// covers it.
pub const KEY_ROTATED: &str = "audit.key_rotated";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A kept field, the stored hash or a payload does not match the chain.
    Edited,
    /// A `seq` is absent from the sequence.
    Missing,
    /// Events out of order, or an event where none may be.
    Reordered,
    /// The chain does not reach a signed checkpoint's hash (an event was inserted, removed or
    /// changed along with the stored hashes).
    Mismatch,
    /// The log ends before a checkpoint that the anchor holds.
    Truncated,
    /// A checkpoint or range boundary whose signature does not verify with a trusted key.
    BadSignature,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Missing => "missing",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Mismatch => "does not match its checkpoint",
            ProblemKind::Truncated => "truncated",
            ProblemKind::BadSignature => "bad signature",
        }
    }
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: i64,
    pub kind: ProblemKind,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seq {}: {}: {}",
            self.seq,
            self.kind.as_str(),
            self.detail
        )
    }
}

impl std::error::Error for Problem {}

/// What a successful verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub events: u64,
    pub payloads_checked: u64,
    /// Events whose payload was deleted by retention or erasure (their skeletons verified).
    pub payloads_removed: u64,
    pub gaps: u64,
    /// Events inside gaps (deleted, or verified from an archive segment if one was given).
    pub events_in_gaps: u64,
    pub checkpoints: u64,
    pub last_seq: i64,
    #[serde(with = "hex::serde")]
    pub last_hash: Hash,
    /// The last `seq` a verified signature covers; events after it are chained but not yet signed.
    pub signed_through: i64,
}

/// One item of the log, borrowed from wherever it is read.
pub enum Item<'a> {
    Event {
        skeleton: Skeleton<'a>,
        stored_hash: &'a [u8],
        /// `(salt, payload)`, or `None` where the payload was deleted.
        payload: Option<(&'a [u8], &'a [u8])>,
    },
    /// A range boundary that stands for events not given.
    Gap(&'a Gap),
}

pub struct Verifier {
    trusted: HashMap<String, PublicKey>,
    /// Keys introduced by rotation events, waiting for a trusted checkpoint at or after `seq`.
    pending: Vec<(i64, PublicKey)>,
    /// Checkpoints to check, in descending `seq` (so the next one is popped from the end).
    checkpoints: Vec<Checkpoint>,
    /// The highest `seq` among all checkpoints, to detect truncation.
    highest_checkpoint: i64,
    next_seq: i64,
    prev: Hash,
    scratch: Vec<u8>,
    report: Report,
}

impl Verifier {
    /// `checkpoints` may come from several places (the log's own table, anchors); duplicates must
    /// agree.
    pub fn new(keys: Vec<PublicKey>, mut checkpoints: Vec<Checkpoint>) -> Result<Self, Problem> {
        checkpoints.sort_by_key(|c| std::cmp::Reverse(c.seq));
        checkpoints.dedup();
        for pair in checkpoints.windows(2) {
            if pair[0].seq == pair[1].seq {
                return Err(Problem {
                    seq: pair[0].seq,
                    kind: ProblemKind::Mismatch,
                    detail: "two checkpoints for this seq disagree (the log's and the anchor's?)"
                        .into(),
                });
            }
        }
        let highest_checkpoint = checkpoints.first().map(|c| c.seq).unwrap_or(0);
        Ok(Self {
            trusted: keys.into_iter().map(|k| (k.id().to_owned(), k)).collect(),
            pending: Vec::new(),
            checkpoints,
            highest_checkpoint,
            next_seq: 1,
            prev: GENESIS,
            scratch: Vec::with_capacity(512),
            report: Report {
                last_hash: GENESIS,
                ..Report::default()
            },
        })
    }

    pub fn feed(&mut self, item: Item<'_>) -> Result<(), Problem> {
        match item {
            Item::Event {
                skeleton,
                stored_hash,
                payload,
            } => self.event(skeleton, stored_hash, payload),
            Item::Gap(gap) => self.gap(gap),
        }
    }

    fn event(
        &mut self,
        skeleton: Skeleton<'_>,
        stored_hash: &[u8],
        payload: Option<(&[u8], &[u8])>,
    ) -> Result<(), Problem> {
        let seq = skeleton.seq;
        self.expect_seq(seq)?;
        let problem = |kind, detail: &str| Problem {
            seq,
            kind,
            detail: detail.to_owned(),
        };
        let hash = skeleton.link(&self.prev, &mut self.scratch);
        if stored_hash != hash {
            return Err(problem(
                ProblemKind::Edited,
                "the event's fields or stored hash do not match the chain",
            ));
        }
        match payload {
            Some((salt, body)) => {
                if commitment(salt, body) != *skeleton.commitment {
                    return Err(problem(
                        ProblemKind::Edited,
                        "the payload or its salt does not match its commitment",
                    ));
                }
                self.report.payloads_checked += 1;
                if skeleton.action == KEY_ROTATED {
                    self.note_rotation(seq, body);
                }
            }
            None => self.report.payloads_removed += 1,
        }
        self.prev = hash;
        self.next_seq = seq + 1;
        self.report.events += 1;
        self.check_checkpoints(seq)
    }

    fn gap(&mut self, gap: &Gap) -> Result<(), Problem> {
        self.check_boundary(gap)?;
        self.prev = gap.last_hash;
        self.next_seq = gap.last_seq + 1;
        self.report.gaps += 1;
        self.report.events_in_gaps += (gap.last_seq - gap.first_seq + 1) as u64;
        self.report.signed_through = self.report.signed_through.max(gap.last_seq);
        // Checkpoints inside the gap can only have their signatures checked.
        while self
            .checkpoints
            .last()
            .is_some_and(|c| c.seq < gap.last_seq)
        {
            let cp = self.checkpoints.pop().expect("checked");
            self.check_signature(&cp)?;
        }
        self.check_checkpoints(gap.last_seq)
    }

    /// A range boundary of the live log whose events are in an archive segment: walks the
    /// archived items instead of jumping, and checks they end where the boundary says.
    pub fn archived_gap(&mut self, gap: &Gap, items: &[SegmentItem]) -> Result<(), Problem> {
        self.check_boundary(gap)?;
        for item in items {
            item.with_item(|item| self.feed(item))?;
        }
        if self.next_seq != gap.last_seq + 1 {
            return Err(Problem {
                seq: self.next_seq,
                kind: ProblemKind::Missing,
                detail: format!(
                    "the archive segment lacks events {}..={} of its range boundary",
                    self.next_seq, gap.last_seq
                ),
            });
        }
        if self.prev != gap.last_hash {
            return Err(Problem {
                seq: gap.last_seq,
                kind: ProblemKind::Mismatch,
                detail: "the archived events do not reach the hash of their range boundary".into(),
            });
        }
        Ok(())
    }

    fn check_boundary(&self, gap: &Gap) -> Result<(), Problem> {
        self.expect_seq(gap.first_seq)?;
        let seq = gap.first_seq;
        if gap.last_seq < gap.first_seq {
            return Err(Problem {
                seq,
                kind: ProblemKind::Reordered,
                detail: format!(
                    "a range boundary ends at seq {} before it starts",
                    gap.last_seq
                ),
            });
        }
        if gap.prev_hash != self.prev {
            return Err(Problem {
                seq,
                kind: ProblemKind::Mismatch,
                detail: "a range boundary does not continue the chain before it".into(),
            });
        }
        if !self
            .trusted
            .get(&gap.key_id)
            .is_some_and(|k| k.verifies_gap(gap))
        {
            return Err(Problem {
                seq,
                kind: ProblemKind::BadSignature,
                detail: format!(
                    "the range boundary {}..={} is not signed by a trusted key ({})",
                    gap.first_seq, gap.last_seq, gap.key_id
                ),
            });
        }
        Ok(())
    }

    fn expect_seq(&self, seq: i64) -> Result<(), Problem> {
        if seq == self.next_seq {
            return Ok(());
        }
        if seq > self.next_seq {
            Err(Problem {
                seq: self.next_seq,
                kind: ProblemKind::Missing,
                detail: if seq == self.next_seq + 1 {
                    "the event is absent".into()
                } else {
                    format!("events {}..{} are absent", self.next_seq, seq)
                },
            })
        } else {
            Err(Problem {
                seq,
                kind: ProblemKind::Reordered,
                detail: format!("found after seq {}", self.next_seq - 1),
            })
        }
    }

    /// Checks every checkpoint at `seq` against the chain's hash there.
    fn check_checkpoints(&mut self, seq: i64) -> Result<(), Problem> {
        while let Some(cp) = self.checkpoints.last() {
            if cp.seq > seq {
                break;
            }
            let cp = self.checkpoints.pop().expect("checked");
            if cp.seq < seq {
                // A checkpoint at a seq that never came by.
                return Err(Problem {
                    seq: cp.seq,
                    kind: ProblemKind::Missing,
                    detail: "a signed checkpoint names this seq but the log skips it".into(),
                });
            }
            self.check_signature(&cp)?;
            if cp.hash != self.prev {
                return Err(Problem {
                    seq,
                    kind: ProblemKind::Mismatch,
                    detail: format!(
                        "the chain does not reach the hash signed at seq {seq} (an event at or \
                         before it was inserted, removed or rewritten with its stored hashes)"
                    ),
                });
            }
            self.report.checkpoints += 1;
            self.report.signed_through = seq;
            self.promote(seq);
        }
        Ok(())
    }

    fn check_signature(&mut self, cp: &Checkpoint) -> Result<(), Problem> {
        match self.trusted.get(&cp.key_id) {
            Some(key) if key.verifies_checkpoint(cp) => Ok(()),
            Some(_) => Err(Problem {
                seq: cp.seq,
                kind: ProblemKind::BadSignature,
                detail: format!(
                    "the checkpoint's signature does not verify with key {}",
                    cp.key_id
                ),
            }),
            None => Err(Problem {
                seq: cp.seq,
                kind: ProblemKind::BadSignature,
                detail: format!("the checkpoint is signed by an untrusted key {}", cp.key_id),
            }),
        }
    }

    fn note_rotation(&mut self, seq: i64, body: &[u8]) {
        let key = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("public_key")?.as_str().map(str::to_owned))
            .and_then(|hex| PublicKey::from_hex(&hex).ok());
        if let Some(key) = key {
            self.pending.push((seq, key));
        }
    }

    /// A trusted checkpoint at `seq` vouches for every rotation event at or before it.
    fn promote(&mut self, seq: i64) {
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(at, _)| *at <= seq);
        self.pending = waiting;
        for (_, key) in ready {
            self.trusted.insert(key.id().to_owned(), key);
        }
    }

    /// Ends verification: anything the checkpoints name beyond the end is truncation.
    pub fn finish(mut self) -> Result<Report, Problem> {
        let last = self.next_seq - 1;
        if self.highest_checkpoint > last {
            return Err(Problem {
                seq: self.highest_checkpoint,
                kind: ProblemKind::Truncated,
                detail: format!(
                    "a signed checkpoint names seq {} but the log ends at seq {last}",
                    self.highest_checkpoint
                ),
            });
        }
        self.report.last_seq = last;
        self.report.last_hash = self.prev;
        Ok(self.report)
    }
}
