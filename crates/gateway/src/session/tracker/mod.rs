//! The extended-query protocol's state as the server holds it: prepared statements and portals
//! (SQL-level `PREPARE` and `DECLARE … CURSOR` share their namespaces), and what the server owes
//! for each message sent, in order. It takes frames and returns effects; it does no I/O, so it
//! is unit-tested and fuzzed from byte fixtures alone.
//!
//! What a message does is applied when the server confirms it (ParseComplete, BindComplete,
//! CloseComplete, a statement's CommandComplete), not when it is sent: a Parse that fails
//! leaves the statement it would have replaced in place, and so does the tracker. After an error
//! answering an extended-protocol message, the server discards everything up to the next Sync,
//! simple Queries and function calls included; so does the tracker. A lookup for the audit at
//! send time (which SQL does this Execute run?) reads the state as it will be if everything
//! pending succeeds.
//!
//! The tracker carries a plan of the session's own (`P`: what masking decided for a SQL text)
//! with each statement and portal, and hands back the plan of whatever the server is answering.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::codec::{Field, Target};

mod answers;
mod state;
#[cfg(test)]
mod tests;

use state::{Overlay, State, bound, effect_confirmed};
pub use state::{Part, Portal, Prepared, SqlEffect};

/// A Bind's parameters, as the audit records them.
pub type Params = Arc<[Option<String>]>;

/// What the session attaches to a SQL text.
pub trait Plan: Clone {
    /// Both plans at once: a statement that reads through a cursor or a prepared statement is
    /// judged by what that was made of too.
    fn join(&self, other: &Self) -> Self;
    /// For what the tracker does not know (an Execute of a portal it never saw bound, a FETCH
    /// from a cursor it never saw declared): must fail closed.
    fn unknown() -> Self;
}

/// How a statement the session audited ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An Execute's command tag.
    Tag(String),
    /// A Query's tags (one per statement that ran), or a function call's (none).
    Tags(Vec<String>),
    Empty,
    Suspended,
    Error(String),
    /// The server discarded it after an earlier error.
    Skipped,
}

/// An audited statement's end: its number (as the session counted) and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub n: u64,
    pub outcome: Outcome,
}

/// What the server owes for one message.
#[derive(Debug, Clone)]
pub(super) enum Expect<P> {
    Query {
        seq: u64,
        n: u64,
        plan: P,
        parts: Vec<Part<P>>,
        /// The statement whose results come next, the tags of those that ran, and whether
        /// one failed (then nothing after it runs).
        next: usize,
        tags: Vec<String>,
        failed: bool,
    },
    Parse {
        name: String,
        prepared: Prepared<P>,
    },
    Bind {
        portal: String,
        statement: String,
        params: Arc<[Option<String>]>,
        formats: Arc<[i16]>,
    },
    Describe {
        target: Target,
        name: String,
    },
    Execute {
        seq: u64,
        n: u64,
        portal: String,
    },
    Close {
        target: Target,
        name: String,
    },
    Sync {
        seq: u64,
        /// Every plan of the batch it ends: an error at the implicit commit may come from any
        /// of them.
        plan: Option<P>,
    },
    FunctionCall {
        n: u64,
        failed: bool,
    },
}

impl<P> Expect<P> {
    fn is_sync(&self) -> bool {
        matches!(self, Expect::Sync { .. })
    }

    /// Where it stands among the client's messages, for those whose order against a COPY's
    /// end matters.
    fn seq(&self) -> Option<u64> {
        match self {
            Expect::Query { seq, .. } | Expect::Execute { seq, .. } | Expect::Sync { seq, .. } => {
                Some(*seq)
            }
            _ => None,
        }
    }

    /// Whether an error answering it makes the server discard messages up to Sync.
    fn is_extended(&self) -> bool {
        !matches!(
            self,
            Expect::Query { .. } | Expect::Sync { .. } | Expect::FunctionCall { .. }
        )
    }

    /// The audited statement it stands for, if any.
    fn audited(&self) -> Option<u64> {
        match self {
            Expect::Query { n, .. }
            | Expect::Execute { n, .. }
            | Expect::FunctionCall { n, .. } => Some(*n),
            _ => None,
        }
    }
}

/// The result now arriving: its columns as described, and the plan it answers to.
#[derive(Debug, Clone)]
pub struct Current<P> {
    pub fields: Option<Vec<Field>>,
    pub plan: P,
}

pub struct Tracker<P> {
    confirmed: State<P>,
    /// What the messages still pending will change, laid over `confirmed`: the client's view.
    /// Empty whenever nothing is pending, so keeping it costs nothing per statement.
    overlay: Overlay<P>,
    queue: VecDeque<Expect<P>>,
    /// An extended-protocol error arrived before its batch's Sync was sent: the server
    /// discards what the client sends until then.
    discarding: bool,
    /// The result of the message at the front, once described or begun.
    current: Option<Current<P>>,
    /// Whether row descriptions are decoded and kept (masking needs them).
    keep_fields: bool,
    /// Plans of the extended-protocol batch since the last Sync.
    batch: Option<P>,
    /// The client's messages counted, and where it ended a COPY FROM STDIN (CopyDone,
    /// CopyFail) before the server said the COPY began.
    sent: u64,
    copy_ends: VecDeque<u64>,
    /// A COPY FROM STDIN runs and the client has not ended it: the server ignores its Syncs.
    copy_in: bool,
}

impl<P: Plan> Tracker<P> {
    pub fn new(keep_fields: bool) -> Self {
        Tracker {
            confirmed: State::default(),
            overlay: Overlay::default(),
            queue: VecDeque::new(),
            discarding: false,
            current: None,
            keep_fields,
            batch: None,
            sent: 0,
            copy_ends: VecDeque::new(),
            copy_in: false,
        }
    }

    /// How many responses the server still owes.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Whether the server discards what the client sends until its next Sync: such messages
    /// never run, and are neither audited nor tracked.
    #[cfg(test)]
    pub fn discarding(&self) -> bool {
        self.discarding
    }

    fn push(&mut self, e: Expect<P>) {
        self.project(&e);
        self.queue.push_back(e);
    }

    fn projected_statement(&self, name: &str) -> Option<&Prepared<P>> {
        match self.overlay.statements.get(name) {
            Some(s) => s.as_ref(),
            None if self.overlay.all_statements_gone => None,
            None => self.confirmed.statements.get(name),
        }
    }

    fn projected_portal(&self, name: &str) -> Option<&Portal<P>> {
        match self.overlay.portals.get(name) {
            Some(p) => p.as_ref(),
            None if self.overlay.all_portals_gone => None,
            None => self.confirmed.portals.get(name),
        }
    }

    /// Lays what `e` will do over the confirmed state.
    fn project(&mut self, e: &Expect<P>) {
        match e {
            Expect::Query { parts, .. } => {
                for part in parts {
                    self.overlay.effect(&part.effect);
                }
            }
            Expect::Parse { name, prepared } => {
                self.overlay
                    .statements
                    .insert(name.clone(), Some(prepared.clone()));
            }
            Expect::Bind {
                portal,
                statement,
                params,
                formats,
            } => {
                let made = bound(self.projected_statement(statement), params, formats);
                self.overlay.portals.insert(portal.clone(), Some(made));
            }
            Expect::Close { target, name } => match target {
                Target::Statement => {
                    self.overlay.statements.insert(name.clone(), None);
                }
                Target::Portal => {
                    self.overlay.portals.insert(name.clone(), None);
                }
            },
            _ => {}
        }
    }

    fn note_batch(&mut self, plan: &P) {
        self.batch = Some(match &self.batch {
            Some(b) => b.join(plan),
            None => plan.clone(),
        });
    }

    /// A simple Query, audited as statement `n`, with the plan of its whole text and what each
    /// of its statements does; `false` if the server will discard it.
    pub fn query(&mut self, n: u64, plan: P, parts: Vec<Part<P>>) -> bool {
        if self.discarding {
            return false;
        }
        self.sent += 1;
        self.push(Expect::Query {
            seq: self.sent,
            n,
            plan,
            parts,
            next: 0,
            tags: Vec::new(),
            failed: false,
        });
        true
    }

    /// A Parse of `sql`, with its plan and what it does with the session's objects.
    pub fn parse(&mut self, name: &str, sql: Arc<str>, plan: P, part: Option<Part<P>>) {
        if self.discarding {
            return;
        }
        self.note_batch(&plan);
        let prepared = Prepared {
            sql,
            plan,
            fields: None,
            part: part.filter(|p| !p.is_empty()).map(Arc::new),
        };
        self.push(Expect::Parse {
            name: name.to_owned(),
            prepared,
        });
    }

    pub fn bind(
        &mut self,
        portal: &str,
        statement: &str,
        params: Vec<Option<String>>,
        formats: Vec<i16>,
    ) {
        if self.discarding {
            return;
        }
        self.push(Expect::Bind {
            portal: portal.to_owned(),
            statement: statement.to_owned(),
            params: params.into(),
            formats: formats.into(),
        });
    }

    pub fn describe(&mut self, target: Target, name: &str) {
        if self.discarding {
            return;
        }
        self.push(Expect::Describe {
            target,
            name: name.to_owned(),
        });
    }

    /// An Execute, audited as statement `n`: the SQL and parameters it runs, as far as known;
    /// `None` if the server will discard it.
    pub fn execute(&mut self, n: u64, portal: &str) -> Option<(Arc<str>, Option<Params>)> {
        if self.discarding {
            return None;
        }
        let (sql, params, plan) = match self.projected_portal(portal) {
            Some(p) => (p.sql.clone(), p.params.clone(), p.plan.clone()),
            None => (Arc::from(""), None, P::unknown()),
        };
        self.note_batch(&plan);
        self.sent += 1;
        self.push(Expect::Execute {
            seq: self.sent,
            n,
            portal: portal.to_owned(),
        });
        Some((sql, params))
    }

    pub fn close(&mut self, target: Target, name: &str) {
        if self.discarding {
            return;
        }
        self.push(Expect::Close {
            target,
            name: name.to_owned(),
        });
    }

    pub fn sync(&mut self) {
        self.sent += 1;
        if self.copy_in {
            return; // the server ignores Sync during COPY FROM STDIN
        }
        self.discarding = false;
        let plan = self.batch.take();
        self.push(Expect::Sync {
            seq: self.sent,
            plan,
        });
    }

    /// The client ended a COPY FROM STDIN (CopyDone or CopyFail).
    pub fn copy_end(&mut self) {
        self.sent += 1;
        if self.copy_in {
            self.copy_in = false;
        } else {
            self.copy_ends.push_back(self.sent);
        }
    }

    /// The server began a COPY FROM STDIN for the message at the front: the Syncs the client
    /// sent after that message and before it ended the COPY are ignored, and are not owed an
    /// answer.
    fn copy_in_began(&mut self) {
        let Some(from) = self.queue.front().and_then(Expect::seq) else {
            return;
        };
        while self.copy_ends.front().is_some_and(|&e| e < from) {
            self.copy_ends.pop_front();
        }
        let until = self.copy_ends.pop_front();
        self.queue.retain(|e| {
            !(e.is_sync()
                && e.seq()
                    .is_some_and(|s| s > from && until.is_none_or(|u| s < u)))
        });
        self.copy_in = until.is_none();
    }

    /// A FunctionCall (fastpath), audited as statement `n`; `false` if the server will
    /// discard it.
    pub fn function_call(&mut self, n: u64) -> bool {
        if self.discarding {
            return false;
        }
        self.push(Expect::FunctionCall { n, failed: false });
        true
    }

    /// The audited statement the server is answering now, if any (its results are counted
    /// to it).
    pub fn answering_statement(&self) -> Option<u64> {
        self.queue.front().and_then(Expect::audited)
    }

    /// A prepared statement as the server will have it once what is pending has run.
    #[cfg(test)]
    pub fn statement(&self, name: &str) -> Option<&Prepared<P>> {
        self.projected_statement(name)
    }

    /// A Query's plan with those of the cursors its current statement fetches from and the
    /// prepared statements it executes, as the server has them now.
    fn query_plan(&self, plan: &P, part: Option<&Part<P>>) -> P {
        let mut plan = plan.clone();
        if let Some(part) = part {
            for c in &part.reads_cursors {
                let via = self.confirmed.portals.get(c);
                plan = plan.join(&via.map_or_else(P::unknown, |p| p.plan.clone()));
            }
            for s in &part.executes {
                let via = self.confirmed.statements.get(s);
                plan = plan.join(&via.map_or_else(P::unknown, |p| p.plan.clone()));
            }
        }
        plan
    }

    /// A portal's plan with those it reads through, as the server has them now.
    fn portal_plan(&self, portal: &str) -> P {
        match self.confirmed.portals.get(portal) {
            Some(p) => self.query_plan(&p.plan, p.part.as_deref()),
            None => P::unknown(),
        }
    }

    /// The plan of what the server is answering now (its errors, notices and rows belong to
    /// it), if it answers anything that has one.
    pub fn answering(&self) -> Option<P> {
        if let Some(c) = &self.current {
            return Some(c.plan.clone());
        }
        Some(match self.queue.front()? {
            Expect::Query {
                plan, parts, next, ..
            } => self.query_plan(plan, parts.get(*next)),
            Expect::Parse { prepared, .. } => prepared.plan.clone(),
            Expect::Bind { statement, .. } => self
                .confirmed
                .statements
                .get(statement)
                .map_or_else(P::unknown, |s| s.plan.clone()),
            Expect::Describe { target, name } => match target {
                Target::Statement => self
                    .confirmed
                    .statements
                    .get(name)
                    .map_or_else(P::unknown, |s| s.plan.clone()),
                Target::Portal => self.portal_plan(name),
            },
            Expect::Execute { portal, .. } => self.portal_plan(portal),
            Expect::Sync { plan, .. } => plan.clone()?,
            Expect::Close { .. } | Expect::FunctionCall { .. } => return None,
        })
    }

    /// The result now arriving (rows and COPY data belong to it): `None` when rows come that
    /// nothing sent asked for.
    pub fn current(&mut self) -> Option<&Current<P>> {
        if self.current.is_none()
            && let Some(Expect::Execute { portal, .. }) = self.queue.front()
        {
            let fields = self.confirmed.portals.get(portal).and_then(Portal::columns);
            let plan = self.portal_plan(portal);
            self.current = Some(Current { fields, plan });
        }
        self.current.as_ref()
    }

    /// The client's view again: what the server has, plus what is still pending.
    fn rebuild_projection(&mut self) {
        self.overlay = Overlay::default();
        let queue = std::mem::take(&mut self.queue);
        for e in &queue {
            self.project(e);
        }
        self.queue = queue;
    }
}
