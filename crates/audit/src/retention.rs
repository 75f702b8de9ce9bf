//! Retention rules, legal holds, and the plan a sweep carries out.
//!
//! A sweep removes an event from the live log when its class's rule says it is due and no active
//! hold covers it. Runs of consecutive removed events are replaced by one signed range boundary
//! ([`Gap`](crate::Gap)), so the chain still verifies; events whose rule says `archive` are first
//! written, with their payloads, to an archive segment that verifies as part of the same chain.
//! Events of a class without a rule are kept forever.

use std::collections::BTreeSet;

use jitgate_core::Timestamp;
use serde::{Deserialize, Serialize};

/// The classes retention rules are written for.
pub const CLASSES: &[&str] = &["access", "session", "admin"];

/// The class of an action: `access` (request and grant lifecycle), `session` (gateway sessions and
/// statements), `admin` (everything else: audit, retention, holds, connectors, configuration).
pub fn class_of(action: &str) -> &'static str {
    match action.split('.').next().unwrap_or_default() {
        "request" | "grant" => "access",
        "session" => "session",
        _ => "admin",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionAction {
    Archive,
    Delete,
}

impl RetentionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionAction::Archive => "archive",
            RetentionAction::Delete => "delete",
        }
    }
}

/// `[[retention]] class = "session", keep = "30d", action = "delete"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub class: String,
    pub keep: std::time::Duration,
    pub action: RetentionAction,
}

/// A legal hold: events it covers are never deleted or archived away, whatever the rules say.
/// Every criterion that is set must match; a hold with none covers everything. Besides the
/// events it matches, a hold keeps the whole story of every request one of them belongs to
/// (its [`Scope`]): a hold on a grant also keeps the `request.created` event that says who
/// asked and why, which carries no grant id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    pub reason: String,
    pub created_by: String,
    pub created_at: Timestamp,
    pub resource: Option<String>,
    /// Matches the event's actor or subject.
    pub principal: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub released_at: Option<Timestamp>,
    pub released_by: Option<String>,
}

/// The fields of a live event that rules and holds look at, borrowed from wherever it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub seq: i64,
    pub ts_us: i64,
    pub action: &'a str,
    pub actor: &'a str,
    pub subject: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub grant_id: Option<&'a str>,
}

impl Hold {
    pub fn is_active(&self) -> bool {
        self.released_at.is_none()
    }

    pub fn covers(&self, e: &Candidate<'_>) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| match want {
            None => true,
            Some(w) => have == Some(w.as_str()),
        };
        self.is_active()
            && eq(&self.resource, e.resource)
            && eq(&self.request_id, e.request_id)
            && eq(&self.grant_id, e.grant_id)
            && self
                .principal
                .as_deref()
                .is_none_or(|p| p == e.actor || e.subject == Some(p))
            && self.from.is_none_or(|t| e.ts_us >= t.as_microsecond())
            && self.until.is_none_or(|t| e.ts_us < t.as_microsecond())
    }
}

/// The requests a hold covers: those with at least one event the hold matches. Every event of
/// theirs (creation, approvals, the grant, sessions and statements) is kept with the hold. The
/// store works it out, since it takes the log's indexes (`Store::hold_scopes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub request_ids: BTreeSet<String>,
    pub grant_ids: BTreeSet<String>,
}

impl Scope {
    /// Whether `e` belongs to one of the covered requests.
    pub fn contains(&self, e: &Candidate<'_>) -> bool {
        e.request_id.is_some_and(|r| self.request_ids.contains(r))
            || e.grant_id.is_some_and(|g| self.grant_ids.contains(g))
    }
}

/// An active hold with the requests it covers.
#[derive(Debug, Clone)]
pub struct ScopedHold {
    pub hold: Hold,
    pub scope: Scope,
}

impl ScopedHold {
    /// Whether the hold keeps `e`: it matches it, or `e` belongs to a request it covers.
    pub fn keeps(&self, e: &Candidate<'_>) -> bool {
        self.hold.is_active() && (self.hold.covers(e) || self.scope.contains(e))
    }
}

/// What the rules say about one event right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Keep,
    /// Due, but a hold covers it.
    Held,
    Remove(RetentionAction),
}

/// Rules and holds as of one moment.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Per class: the cutoff (events older than it are due) and what to do with them.
    cutoffs: Vec<(&'static str, i64, RetentionAction)>,
    holds: Vec<ScopedHold>,
}

impl Policy {
    pub fn new(rules: &[Rule], holds: Vec<ScopedHold>, now: Timestamp) -> Self {
        let now_us = now.as_microsecond();
        let cutoffs = CLASSES
            .iter()
            .filter_map(|class| {
                let rule = rules.iter().find(|r| r.class == *class)?;
                let keep = i64::try_from(rule.keep.as_micros()).unwrap_or(i64::MAX);
                Some((*class, now_us.saturating_sub(keep), rule.action))
            })
            .collect();
        Self {
            cutoffs,
            holds: holds.into_iter().filter(|h| h.hold.is_active()).collect(),
        }
    }

    pub fn fate(&self, e: &Candidate<'_>) -> Fate {
        let class = class_of(e.action);
        let Some(&(_, cutoff, action)) = self.cutoffs.iter().find(|(c, ..)| *c == class) else {
            return Fate::Keep;
        };
        if e.ts_us >= cutoff {
            Fate::Keep
        } else if self.holds.iter().any(|h| h.keeps(e)) {
            Fate::Held
        } else {
            Fate::Remove(action)
        }
    }

    /// The oldest cutoff: no event at or after it is due under any rule.
    pub fn latest_cutoff(&self) -> Option<i64> {
        self.cutoffs.iter().map(|(_, c, _)| *c).max()
    }

    pub fn holds(&self) -> impl Iterator<Item = &Hold> {
        self.holds.iter().map(|h| &h.hold)
    }
}

/// Consecutive runs of removable events in `candidates` (which are in `seq` order, contiguous
/// apart from gaps already made): each run becomes one range boundary.
pub fn runs(fates: &[(i64, Fate)]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, (seq, fate)) in fates.iter().enumerate() {
        let removable = matches!(fate, Fate::Remove(_));
        if let Some(s) = start
            && (!removable || fates[i - 1].0 + 1 != *seq)
        {
            out.push((s, i - 1));
            start = None;
        }
        if removable && start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, fates.len() - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn candidate<'a>(seq: i64, ts_us: i64, action: &'a str, actor: &'a str) -> Candidate<'a> {
        Candidate {
            seq,
            ts_us,
            action,
            actor,
            subject: None,
            resource: Some("orders-db"),
            request_id: None,
            grant_id: Some("g1"),
        }
    }

    fn hold() -> Hold {
        Hold {
            id: "hold_1".into(),
            reason: "case 7".into(),
            created_by: "root".into(),
            created_at: Timestamp::UNIX_EPOCH,
            resource: None,
            principal: None,
            request_id: None,
            grant_id: None,
            from: None,
            until: None,
            released_at: None,
            released_by: None,
        }
    }

    fn scoped(hold: Hold) -> ScopedHold {
        ScopedHold {
            hold,
            scope: Scope::default(),
        }
    }

    #[test]
    fn a_hold_keeps_every_event_of_the_requests_it_covers() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let rules = [Rule {
            class: "access".into(),
            keep: Duration::from_secs(100),
            action: RetentionAction::Delete,
        }];
        let old = now.as_microsecond() - 200_000_000;
        let mut h = hold();
        h.grant_id = Some("g1".into());
        let mut created = candidate(1, old, "request.created", "alice");
        created.grant_id = None;
        created.request_id = Some("r1");
        let p = Policy::new(&rules, vec![scoped(h.clone())], now);
        assert_eq!(
            p.fate(&created),
            Fate::Remove(RetentionAction::Delete),
            "no grant id: the hold alone does not match it"
        );
        let mut scope = Scope::default();
        scope.request_ids.insert("r1".into());
        scope.grant_ids.insert("g1".into());
        let p = Policy::new(&rules, vec![ScopedHold { hold: h, scope }], now);
        assert_eq!(p.fate(&created), Fate::Held, "its request is covered");
        let mut other = created;
        other.request_id = Some("r2");
        assert_eq!(p.fate(&other), Fate::Remove(RetentionAction::Delete));
    }

    #[test]
    fn actions_fall_into_classes() {
        assert_eq!(class_of("grant.expired"), "access");
        assert_eq!(class_of("request.created"), "access");
        assert_eq!(class_of("session.statement"), "session");
        assert_eq!(class_of("retention.deleted"), "admin");
        assert_eq!(class_of("whatever"), "admin");
    }

    #[test]
    fn only_due_unheld_events_of_ruled_classes_go() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let rules = [Rule {
            class: "session".into(),
            keep: Duration::from_secs(100),
            action: RetentionAction::Delete,
        }];
        let old = now.as_microsecond() - 200_000_000;
        let p = Policy::new(&rules, vec![], now);
        assert_eq!(
            p.fate(&candidate(1, old, "session.statement", "a")),
            Fate::Remove(RetentionAction::Delete)
        );
        assert_eq!(
            p.fate(&candidate(
                2,
                now.as_microsecond(),
                "session.statement",
                "a"
            )),
            Fate::Keep
        );
        assert_eq!(
            p.fate(&candidate(3, old, "grant.expired", "a")),
            Fate::Keep,
            "no rule: kept"
        );

        let mut h = hold();
        h.principal = Some("a".into());
        let p = Policy::new(&rules, vec![scoped(h.clone())], now);
        assert_eq!(
            p.fate(&candidate(1, old, "session.statement", "a")),
            Fate::Held
        );
        assert_eq!(
            p.fate(&candidate(1, old, "session.statement", "b")),
            Fate::Remove(RetentionAction::Delete)
        );

        h.released_at = Some(now);
        let p = Policy::new(&rules, vec![scoped(h)], now);
        assert_eq!(
            p.fate(&candidate(1, old, "session.statement", "a")),
            Fate::Remove(RetentionAction::Delete)
        );
    }

    #[test]
    fn holds_match_every_criterion_they_set() {
        let mut h = hold();
        h.grant_id = Some("g1".into());
        h.from = Some(Timestamp::from_microsecond(10).unwrap());
        h.until = Some(Timestamp::from_microsecond(20).unwrap());
        assert!(h.covers(&candidate(1, 10, "x", "a")));
        assert!(!h.covers(&candidate(1, 20, "x", "a")));
        let mut other = candidate(1, 15, "x", "a");
        other.grant_id = Some("g2");
        assert!(!h.covers(&other));
    }

    #[test]
    fn runs_break_at_kept_events_and_at_gaps() {
        let d = Fate::Remove(RetentionAction::Delete);
        let fates = [
            (1, d),
            (2, d),
            (3, Fate::Keep),
            (4, d),
            (6, d),
            (7, Fate::Held),
            (8, d),
        ];
        assert_eq!(runs(&fates), vec![(0, 1), (3, 3), (4, 4), (6, 6)]);
        assert_eq!(runs(&[]), vec![]);
    }
}
