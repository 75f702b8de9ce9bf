//! The prepared statements and portals of a session, confirmed by the server or pending, and
//! what statements do to them.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Expect, Plan};
use crate::codec::{Field, Target};

/// A prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared<P> {
    /// What the audit records for an Execute of it: the Parse's SQL, or the whole `PREPARE`.
    pub sql: Arc<str>,
    pub plan: P,
    pub fields: Option<Arc<[Field]>>,
    /// What it does with the session's objects, when it does anything.
    pub(super) part: Option<Arc<Part<P>>>,
}

/// A portal: bound from a statement, or a cursor made by `DECLARE`.
#[derive(Debug, Clone)]
pub struct Portal<P> {
    pub sql: Arc<str>,
    pub params: Option<Arc<[Option<String>]>>,
    pub plan: P,
    /// Result formats as Bind gave them (empty: all text).
    pub(super) formats: Arc<[i16]>,
    /// The statement's columns, until a Describe of the portal itself says more.
    pub(super) statement_fields: Option<Arc<[Field]>>,
    pub(super) fields: Option<Arc<[Field]>>,
    /// A `DECLARE … BINARY CURSOR` returns binary values.
    pub(super) binary: bool,
    pub(super) part: Option<Arc<Part<P>>>,
}

impl<P> Portal<P> {
    /// Its columns in the formats its rows come in, if known.
    pub fn columns(&self) -> Option<Vec<Field>> {
        if let Some(f) = &self.fields {
            return Some(f.to_vec());
        }
        let mut fields = self.statement_fields.as_deref()?.to_vec();
        for (i, f) in fields.iter_mut().enumerate() {
            f.format = match self.formats.len() {
                0 => i16::from(self.binary),
                1 => self.formats[0],
                _ => *self.formats.get(i)?,
            };
        }
        Some(fields)
    }
}

/// What a statement of a simple Query does to the session's statements and portals once it
/// succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlEffect<P> {
    None,
    /// `PREPARE name AS …`; `sql` is the whole statement.
    Prepare {
        name: String,
        sql: Arc<str>,
        plan: P,
    },
    /// `DEALLOCATE name`, or `DEALLOCATE ALL` (`None`).
    Deallocate(Option<String>),
    /// `DECLARE name CURSOR FOR query`.
    Declare {
        name: String,
        sql: Arc<str>,
        plan: P,
        binary: bool,
    },
    /// `CLOSE name`, or `CLOSE ALL` (`None`).
    Close(Option<String>),
    /// `DISCARD ALL`: every prepared statement and cursor is gone.
    DiscardAll,
}

/// What one statement does with the session's prepared statements and cursors: what it makes
/// or drops (applied once it succeeds), and what it reads through (whose plans join its own).
#[derive(Debug, Clone)]
pub struct Part<P> {
    pub effect: SqlEffect<P>,
    /// Cursors it fetches from and prepared statements it executes: their plans join its own
    /// when its rows come.
    pub reads_cursors: Vec<String>,
    pub executes: Vec<String>,
}

impl<P> Part<P> {
    /// Whether it does anything with the session's objects.
    pub fn is_empty(&self) -> bool {
        matches!(self.effect, SqlEffect::None)
            && self.reads_cursors.is_empty()
            && self.executes.is_empty()
    }
}

#[derive(Debug, Clone)]
pub(super) struct State<P> {
    pub(super) statements: HashMap<String, Prepared<P>>,
    pub(super) portals: HashMap<String, Portal<P>>,
}

impl<P> Default for State<P> {
    fn default() -> Self {
        State {
            statements: HashMap::new(),
            portals: HashMap::new(),
        }
    }
}

/// The portal a Bind of statement `s` makes.
pub(super) fn bound<P: Plan>(
    s: Option<&Prepared<P>>,
    params: &Arc<[Option<String>]>,
    formats: &Arc<[i16]>,
) -> Portal<P> {
    Portal {
        sql: s.map_or_else(|| Arc::from(""), |s| s.sql.clone()),
        params: Some(params.clone()),
        plan: s.map_or_else(P::unknown, |s| s.plan.clone()),
        formats: formats.clone(),
        statement_fields: s.and_then(|s| s.fields.clone()),
        fields: None,
        binary: false,
        part: s.and_then(|s| s.part.clone()),
    }
}

/// Pending changes over the confirmed state: `None` is a name that will be gone.
pub(super) struct Overlay<P> {
    pub(super) statements: HashMap<String, Option<Prepared<P>>>,
    pub(super) portals: HashMap<String, Option<Portal<P>>>,
    pub(super) all_statements_gone: bool,
    pub(super) all_portals_gone: bool,
}

impl<P> Default for Overlay<P> {
    fn default() -> Self {
        Overlay {
            statements: HashMap::new(),
            portals: HashMap::new(),
            all_statements_gone: false,
            all_portals_gone: false,
        }
    }
}

impl<P: Plan> Overlay<P> {
    pub(super) fn effect(&mut self, effect: &SqlEffect<P>) {
        match effect {
            SqlEffect::None => {}
            SqlEffect::Prepare { name, sql, plan } => {
                self.statements
                    .insert(name.clone(), Some(prepared(sql, plan)));
            }
            SqlEffect::Deallocate(Some(name)) => {
                self.statements.insert(name.clone(), None);
            }
            SqlEffect::Deallocate(None) => self.clear_statements(),
            SqlEffect::Declare {
                name,
                sql,
                plan,
                binary,
            } => {
                self.portals
                    .insert(name.clone(), Some(cursor(sql, plan, *binary)));
            }
            SqlEffect::Close(Some(name)) => {
                self.portals.insert(name.clone(), None);
            }
            SqlEffect::Close(None) => self.clear_portals(),
            SqlEffect::DiscardAll => {
                self.clear_statements();
                self.clear_portals();
            }
        }
    }

    fn clear_statements(&mut self) {
        self.statements.clear();
        self.all_statements_gone = true;
    }

    fn clear_portals(&mut self) {
        self.portals.clear();
        self.all_portals_gone = true;
    }
}

pub(super) fn prepared<P: Clone>(sql: &Arc<str>, plan: &P) -> Prepared<P> {
    Prepared {
        sql: sql.clone(),
        plan: plan.clone(),
        fields: None,
        part: None,
    }
}

pub(super) fn cursor<P: Clone>(sql: &Arc<str>, plan: &P, binary: bool) -> Portal<P> {
    Portal {
        sql: sql.clone(),
        params: None,
        plan: plan.clone(),
        formats: Arc::from([]),
        statement_fields: None,
        fields: None,
        binary,
        part: None,
    }
}

impl<P: Plan> State<P> {
    pub(super) fn apply(&mut self, e: &Expect<P>) {
        match e {
            Expect::Query { parts, .. } => {
                for part in parts {
                    self.effect(&part.effect);
                }
            }
            Expect::Parse { name, prepared } => {
                self.statements.insert(name.clone(), prepared.clone());
            }
            Expect::Bind {
                portal,
                statement,
                params,
                formats,
            } => {
                let made = bound(self.statements.get(statement), params, formats);
                self.portals.insert(portal.clone(), made);
            }
            Expect::Close { target, name } => self.close(*target, name),
            _ => {}
        }
    }

    fn close(&mut self, target: Target, name: &str) {
        match target {
            Target::Statement => {
                self.statements.remove(name);
            }
            Target::Portal => {
                self.portals.remove(name);
            }
        }
    }

    pub(super) fn effect(&mut self, effect: &SqlEffect<P>) {
        match effect {
            SqlEffect::None => {}
            SqlEffect::Prepare { name, sql, plan } => {
                self.statements.insert(name.clone(), prepared(sql, plan));
            }
            SqlEffect::Deallocate(Some(name)) => {
                self.statements.remove(name);
            }
            SqlEffect::Deallocate(None) => self.statements.clear(),
            SqlEffect::Declare {
                name,
                sql,
                plan,
                binary,
            } => {
                self.portals
                    .insert(name.clone(), cursor(sql, plan, *binary));
            }
            SqlEffect::Close(Some(name)) => {
                self.portals.remove(name);
            }
            SqlEffect::Close(None) => self.portals.clear(),
            SqlEffect::DiscardAll => {
                self.statements.clear();
                self.portals.clear();
            }
        }
    }
}

/// Whether a statement's command tag says it did what it was read as doing.
pub(super) fn effect_confirmed<P>(effect: &SqlEffect<P>, tag: &str) -> bool {
    match effect {
        SqlEffect::None => false,
        SqlEffect::Prepare { .. } => tag == "PREPARE",
        SqlEffect::Deallocate(_) => tag.starts_with("DEALLOCATE"),
        SqlEffect::Declare { .. } => tag == "DECLARE CURSOR",
        SqlEffect::Close(_) => tag.starts_with("CLOSE CURSOR"),
        SqlEffect::DiscardAll => tag == "DISCARD ALL",
    }
}
