//! Streaming verification of the chain: events, gaps and checkpoints in `seq` order, with only
//! public keys. The first problem stops verification and names its `seq`.

use std::collections::HashMap;
use std::fmt;

use crate::archive::SegmentItem;
use crate::chain::{GENESIS, Hash, Skeleton, commitment};
use crate::signing::{Checkpoint, Gap, PublicKey, Seal, SkipDigest, Span};

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
        self.jump(&gap.span)
    }

    /// Moves the chain across a range whose events are not given, once the range is trusted.
    fn jump(&mut self, range: &Span) -> Result<(), Problem> {
        self.prev = range.last_hash;
        self.next_seq = range.last_seq + 1;
        self.report.gaps += 1;
        self.report.events_in_gaps += (range.last_seq - range.first_seq + 1) as u64;
        self.report.signed_through = self.report.signed_through.max(range.last_seq);
        // Checkpoints inside the range can only have their signatures checked.
        while self
            .checkpoints
            .last()
            .is_some_and(|c| c.seq < range.last_seq)
        {
            let cp = self.checkpoints.pop().expect("checked");
            self.check_signature(&cp)?;
        }
        self.check_checkpoints(range.last_seq)
    }

    /// A range boundary of the live log whose events are in an archive segment: walks the
    /// archived items instead of jumping, and checks they end where the boundary says. Skips
    /// between archived events are trusted through the boundary's seal, which must come first
    /// and sign exactly the skips that follow.
    pub fn archived_gap(&mut self, gap: &Gap, items: &[SegmentItem]) -> Result<(), Problem> {
        self.check_boundary(gap)?;
        let mut seal = None;
        let mut skips = SkipDigest::default();
        let mut first_skip = None;
        for (i, item) in items.iter().enumerate() {
            match item {
                SegmentItem::Event(e) => e.with_item(|item| self.feed(item))?,
                SegmentItem::Gap(g) => self.gap(g)?,
                SegmentItem::Skip(skip) => {
                    self.check_continues(skip)?;
                    skips.add(skip);
                    first_skip.get_or_insert(skip.first_seq);
                    self.jump(skip)?;
                }
                SegmentItem::Seal(s) => {
                    if i != 0
                        || (s.first_seq, s.last_seq) != (gap.span.first_seq, gap.span.last_seq)
                    {
                        return Err(Problem {
                            seq: s.first_seq,
                            kind: ProblemKind::Reordered,
                            detail: format!(
                                "a seal for {}..={} where the archive segment's items for \
                                 {}..={} begin",
                                s.first_seq, s.last_seq, gap.span.first_seq, gap.span.last_seq
                            ),
                        });
                    }
                    self.check_seal_signature(s)?;
                    seal = Some(s);
                }
            }
        }
        let skips = skips.finish();
        match (seal, first_skip) {
            (Some(seal), _) if seal.skips != skips => {
                return Err(Problem {
                    seq: first_skip.unwrap_or(gap.span.first_seq),
                    kind: ProblemKind::BadSignature,
                    detail: format!(
                        "the deleted ranges in the archive segment's items for {}..={} are not \
                         the ones its seal signs (an archived event removed, or a range edited?)",
                        gap.span.first_seq, gap.span.last_seq
                    ),
                });
            }
            (None, Some(first)) => {
                return Err(Problem {
                    seq: first,
                    kind: ProblemKind::BadSignature,
                    detail: "deleted events inside an archive segment without the seal that \
                             signs them"
                        .into(),
                });
            }
            _ => {}
        }
        if self.next_seq != gap.span.last_seq + 1 {
            return Err(Problem {
                seq: self.next_seq,
                kind: ProblemKind::Missing,
                detail: format!(
                    "the archive segment lacks events {}..={} of its range boundary",
                    self.next_seq, gap.span.last_seq
                ),
            });
        }
        if self.prev != gap.span.last_hash {
            return Err(Problem {
                seq: gap.span.last_seq,
                kind: ProblemKind::Mismatch,
                detail: "the archived events do not reach the hash of their range boundary".into(),
            });
        }
        Ok(())
    }

    fn check_boundary(&self, gap: &Gap) -> Result<(), Problem> {
        self.check_continues(&gap.span)?;
        if !self
            .trusted
            .get(&gap.key_id)
            .is_some_and(|k| k.verifies_gap(gap))
        {
            return Err(Problem {
                seq: gap.span.first_seq,
                kind: ProblemKind::BadSignature,
                detail: format!(
                    "the range boundary {}..={} is not signed by a trusted key ({})",
                    gap.span.first_seq, gap.span.last_seq, gap.key_id
                ),
            });
        }
        Ok(())
    }

    fn check_seal_signature(&self, seal: &Seal) -> Result<(), Problem> {
        if self
            .trusted
            .get(&seal.key_id)
            .is_some_and(|k| k.verifies_seal(seal))
        {
            return Ok(());
        }
        Err(Problem {
            seq: seal.first_seq,
            kind: ProblemKind::BadSignature,
            detail: format!(
                "the seal of the archived range {}..={} is not signed by a trusted key ({})",
                seal.first_seq, seal.last_seq, seal.key_id
            ),
        })
    }

    /// A range must start where the chain stands and continue its hash.
    fn check_continues(&self, range: &Span) -> Result<(), Problem> {
        self.expect_seq(range.first_seq)?;
        let seq = range.first_seq;
        if range.last_seq < range.first_seq {
            return Err(Problem {
                seq,
                kind: ProblemKind::Reordered,
                detail: format!(
                    "a range boundary ends at seq {} before it starts",
                    range.last_seq
                ),
            });
        }
        if range.prev_hash != self.prev {
            return Err(Problem {
                seq,
                kind: ProblemKind::Mismatch,
                detail: "a range boundary does not continue the chain before it".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::ArchivedEvent;
    use crate::signing::Signer;

    /// Events 1..=10, chained from genesis, with their hashes.
    fn chain() -> Vec<ArchivedEvent> {
        let mut prev = GENESIS;
        let mut scratch = Vec::new();
        (1..=10)
            .map(|seq| {
                let mut e = ArchivedEvent {
                    seq,
                    ts_us: seq * 1_000,
                    actor: format!("user{seq}"),
                    action: "grant.activated".into(),
                    outcome: "success".into(),
                    resource: Some("orders-db".into()),
                    subject: None,
                    request_id: None,
                    grant_id: None,
                    session_id: None,
                    commitment: [seq as u8; 32],
                    hash: GENESIS,
                    salt: None,
                    payload: None,
                };
                e.hash = e.skeleton().link(&prev, &mut scratch);
                prev = e.hash;
                e
            })
            .collect()
    }

    fn skip(events: &[ArchivedEvent], first: i64, last: i64) -> Span {
        let at = |seq: i64| &events[(seq - 1) as usize];
        Span {
            first_seq: first,
            last_seq: last,
            prev_hash: if first == 1 {
                GENESIS
            } else {
                at(first - 1).hash
            },
            last_hash: at(last).hash,
        }
    }

    /// The whole chain as one live boundary whose segment archives 2, 5 and 9 and skips the rest.
    fn sealed(signer: &Signer, events: &[ArchivedEvent]) -> (Gap, Vec<SegmentItem>) {
        let gap = signer.sign_gap(skip(events, 1, 10));
        let mut items = Vec::new();
        for (first, last, archived) in [(1, 1, 2), (3, 4, 5), (6, 8, 9)] {
            items.push(SegmentItem::Skip(skip(events, first, last)));
            items.push(SegmentItem::Event(events[archived - 1].clone()));
        }
        items.push(SegmentItem::Skip(skip(events, 10, 10)));
        let seal = seal_over(signer, &items);
        items.insert(0, SegmentItem::Seal(seal));
        (gap, items)
    }

    fn seal_over(signer: &Signer, items: &[SegmentItem]) -> Seal {
        let mut digest = SkipDigest::default();
        for item in items {
            if let SegmentItem::Skip(s) = item {
                digest.add(s);
            }
        }
        signer.sign_seal(1, 10, digest.finish())
    }

    fn verify(signer: &Signer, gap: &Gap, items: &[SegmentItem]) -> Result<Report, Problem> {
        let mut verifier = Verifier::new(vec![signer.public()], Vec::new())?;
        verifier.archived_gap(gap, items)?;
        verifier.finish()
    }

    #[test]
    fn a_sealed_segment_verifies() {
        let signer = Signer::generate();
        let events = chain();
        let (gap, items) = sealed(&signer, &events);
        let report = verify(&signer, &gap, &items).unwrap();
        assert_eq!(
            (report.events, report.events_in_gaps, report.last_seq),
            (3, 7, 10)
        );
        assert_eq!(report.last_hash, events[9].hash);
    }

    #[test]
    fn an_archived_event_skipped_over_fails_the_seal() {
        let signer = Signer::generate();
        let events = chain();
        let (gap, mut items) = sealed(&signer, &events);
        // Event 5 and the skips around it become one skip 3..=8, which chains correctly.
        let at = items
            .iter()
            .position(|i| matches!(i, SegmentItem::Skip(s) if s.first_seq == 3))
            .unwrap();
        items.splice(at..at + 3, [SegmentItem::Skip(skip(&events, 3, 8))]);
        let problem = verify(&signer, &gap, &items).unwrap_err();
        assert_eq!((problem.seq, problem.kind), (1, ProblemKind::BadSignature));
        assert!(problem.detail.contains("seal"), "{problem}");
    }

    #[test]
    fn skips_need_a_trusted_seal_at_the_front() {
        let signer = Signer::generate();
        let events = chain();
        let (gap, items) = sealed(&signer, &events);

        let unsealed = &items[1..];
        let problem = verify(&signer, &gap, unsealed).unwrap_err();
        assert_eq!((problem.seq, problem.kind), (1, ProblemKind::BadSignature));

        let mut foreign = items.clone();
        foreign[0] = SegmentItem::Seal(seal_over(&Signer::generate(), &items));
        let problem = verify(&signer, &gap, &foreign).unwrap_err();
        assert_eq!(problem.kind, ProblemKind::BadSignature, "{problem}");

        let mut moved = items.clone();
        let seal = moved.remove(0);
        moved.insert(2, seal);
        let problem = verify(&signer, &gap, &moved).unwrap_err();
        assert_eq!(problem.kind, ProblemKind::Reordered, "{problem}");
    }

    #[test]
    fn segments_with_signed_sub_gaps_still_verify() {
        let signer = Signer::generate();
        let events = chain();
        let (gap, items) = sealed(&signer, &events);
        let old: Vec<SegmentItem> = items
            .into_iter()
            .filter_map(|item| match item {
                SegmentItem::Seal(_) => None,
                SegmentItem::Skip(s) => Some(SegmentItem::Gap(signer.sign_gap(s))),
                other => Some(other),
            })
            .collect();
        let report = verify(&signer, &gap, &old).unwrap();
        assert_eq!((report.events, report.last_seq), (3, 10));
    }
}
