//! What the server's messages do to the tracker: confirmations apply what was pending,
//! results end what they answer, an error makes the server discard the rest of its batch.

use std::sync::Arc;

use super::{Current, Done, Expect, Outcome, Plan, Tracker, effect_confirmed};
use crate::codec::{Backend, Field, Target};

impl<P: Plan> Tracker<P> {
    /// Takes one server message; `done` gets the audited statements it ended.
    pub fn server(&mut self, msg: &Backend<'_>, done: &mut Vec<Done>) {
        match msg {
            Backend::ParseComplete => {
                if let Some(Expect::Parse { name, prepared }) =
                    self.pop_if(|e| matches!(e, Expect::Parse { .. }))
                {
                    self.confirmed.statements.insert(name, prepared);
                }
            }
            Backend::BindComplete => {
                if let Some(e) = self.pop_if(|e| matches!(e, Expect::Bind { .. })) {
                    self.confirmed.apply(&e);
                }
            }
            Backend::CloseComplete => {
                if let Some(e) = self.pop_if(|e| matches!(e, Expect::Close { .. })) {
                    self.confirmed.apply(&e);
                }
            }
            Backend::NoData => {
                self.pop_if(|e| matches!(e, Expect::Describe { .. }));
            }
            Backend::RowDescription(body) => self.row_description(body),
            Backend::CommandComplete(tag) => self.complete(Some(tag), done),
            Backend::EmptyQuery => self.complete(None, done),
            Backend::PortalSuspended => {
                self.current = None;
                if let Some(e) = self.pop_if(|e| matches!(e, Expect::Execute { .. })) {
                    done.push(Done {
                        n: e.audited().expect("an Execute"),
                        outcome: Outcome::Suspended,
                    });
                }
            }
            Backend::CopyOut | Backend::CopyIn | Backend::CopyBoth => {
                if matches!(msg, Backend::CopyIn) {
                    self.copy_in_began();
                }
                // COPY through Execute has its portal's plan; through Query, the Query's.
                if self.current().is_none()
                    && let Some(plan) = self.answering()
                {
                    self.current = Some(Current { fields: None, plan });
                }
            }
            Backend::ErrorResponse(body) => self.error(crate::codec::error_code(body), done),
            Backend::ReadyForQuery(_) => self.ready(done),
            _ => {}
        }
    }

    fn pop_if(&mut self, want: impl Fn(&Expect<P>) -> bool) -> Option<Expect<P>> {
        if self.queue.front().is_some_and(want) {
            self.queue.pop_front()
        } else {
            None
        }
    }

    fn row_description(&mut self, body: &[u8]) {
        let fields = if self.keep_fields {
            crate::codec::row_description(body).ok()
        } else {
            None
        };
        match self.queue.front() {
            Some(Expect::Describe { target, name }) => {
                let (target, name) = (*target, name.clone());
                self.queue.pop_front();
                let fields: Option<Arc<[Field]>> = fields.map(Into::into);
                match target {
                    Target::Statement => {
                        if let Some(s) = self.confirmed.statements.get_mut(&name) {
                            s.fields = fields;
                        }
                    }
                    Target::Portal => {
                        if let Some(p) = self.confirmed.portals.get_mut(&name) {
                            p.fields = fields;
                        }
                    }
                }
            }
            Some(Expect::Query {
                plan, parts, next, ..
            }) => {
                let plan = self.query_plan(plan, parts.get(*next));
                self.current = Some(Current { fields, plan });
            }
            _ => {}
        }
    }

    /// CommandComplete (`Some(tag)`) or EmptyQueryResponse.
    fn complete(&mut self, tag: Option<&str>, done: &mut Vec<Done>) {
        self.current = None;
        match self.queue.front_mut() {
            Some(Expect::Query {
                parts, next, tags, ..
            }) => {
                if let Some(tag) = tag {
                    if let Some(part) = parts.get(*next)
                        && effect_confirmed(&part.effect, tag)
                    {
                        let effect = part.effect.clone();
                        tags.push(tag.to_owned());
                        *next += 1;
                        self.confirmed.effect(&effect);
                        return;
                    }
                    tags.push(tag.to_owned());
                }
                *next += 1;
            }
            Some(Expect::Execute { n, portal, .. }) => {
                let n = *n;
                // A DECLARE, PREPARE, CLOSE … run through the extended protocol.
                let effect = self
                    .confirmed
                    .portals
                    .get(portal.as_str())
                    .and_then(|p| p.part.clone())
                    .map(|part| part.effect.clone());
                if let (Some(effect), Some(tag)) = (effect, tag)
                    && effect_confirmed(&effect, tag)
                {
                    self.confirmed.effect(&effect);
                }
                self.queue.pop_front();
                done.push(Done {
                    n,
                    outcome: match tag {
                        Some(t) => Outcome::Tag(t.to_owned()),
                        None => Outcome::Empty,
                    },
                });
            }
            _ => {}
        }
    }

    fn error(&mut self, code: Option<String>, done: &mut Vec<Done>) {
        self.current = None;
        let code = code.unwrap_or_default();
        let Some(front) = self.queue.front_mut() else {
            return; // an error of the session itself (FATAL)
        };
        match front {
            // A Query's or a function call's error ends it; its ReadyForQuery follows. An
            // error answering a Sync (the implicit commit failed) is the Sync's own.
            Expect::Query { n, failed, .. } | Expect::FunctionCall { n, failed } => {
                *failed = true;
                done.push(Done {
                    n: *n,
                    outcome: Outcome::Error(code),
                });
                return;
            }
            Expect::Sync { .. } => return,
            _ => {}
        }
        // The server discards everything up to the next Sync. The error goes on record with
        // the first audited statement it takes down; the others were skipped.
        let mut code = Some(code);
        while self.queue.front().is_some_and(|e| !e.is_sync()) {
            let e = self.queue.pop_front().expect("front");
            debug_assert!(e.is_extended() || e.audited().is_some());
            if let Some(n) = e.audited() {
                let outcome = match code.take() {
                    Some(c) => Outcome::Error(c),
                    None => Outcome::Skipped,
                };
                done.push(Done { n, outcome });
            }
        }
        if self.queue.is_empty() {
            self.discarding = true;
            self.batch = None;
        }
        self.rebuild_projection();
    }

    fn ready(&mut self, done: &mut Vec<Done>) {
        self.current = None;
        // Anything queued before the Query, Sync or call this answers got no answer of its
        // own, which a server that follows the protocol never does: skipped.
        while let Some(e) = self.queue.pop_front() {
            match e {
                Expect::Query {
                    n, tags, failed, ..
                } => {
                    if !failed {
                        done.push(Done {
                            n,
                            outcome: Outcome::Tags(tags),
                        });
                    }
                    break;
                }
                Expect::FunctionCall { n, failed } => {
                    if !failed {
                        done.push(Done {
                            n,
                            outcome: Outcome::Tags(Vec::new()),
                        });
                    }
                    break;
                }
                Expect::Sync { .. } => break,
                other => {
                    if let Some(n) = other.audited() {
                        done.push(Done {
                            n,
                            outcome: Outcome::Skipped,
                        });
                    }
                }
            }
        }
        self.rebuild_projection();
    }
}
