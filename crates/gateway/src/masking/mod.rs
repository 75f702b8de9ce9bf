//! Masking rules applied to everything a session receives.
//!
//! A column is identified as PostgreSQL reports it in RowDescription: the table's OID and the
//! attribute number, resolved through the catalog read once per session ([`catalog`]). So
//! `SELECT email AS e`, a join, a view over the table, a partition, or `SELECT *` are masked
//! alike. A computed column (table OID 0) is masked when its statement reads a masked relation
//! ([`statement`]), whatever it is called. Detectors look inside every value they can read as
//! text ([`detect`]). Rows are rewritten by their [`RowShape`] ([`row`]), COPY rows by their
//! [`CopyPlan`] ([`copy`]), and errors, notices, notifications, parameter reports and function
//! results by what is running ([`channels`]). A value that cannot be masked safely is withheld
//! as NULL, never passed through.

mod catalog;
mod channels;
mod copy;
pub mod detect;
mod row;
mod statement;
pub mod strategy;

use std::collections::BTreeMap;
use std::sync::Arc;

use detect::Detector;
use strategy::{HashMemo, Masker};

pub use catalog::{
    BUILTIN_FUNCTIONS_SQL, COLUMNS_SQL, Catalog, INHERITS_SQL, OTHER_FUNCTIONS_SQL, VIEW_READS_SQL,
    WITHHELD_SQL,
};
pub use copy::CopyPlan;
pub use jitgate_core::masking::ColumnPattern;
pub use row::RowShape;
pub use statement::StatementPlan;
pub use strategy::Strategy;

use crate::guard::in_scope;
use crate::sql::functions::Functions;

/// One `[[masking]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskRule {
    pub name: String,
    /// Resources it applies to; empty: all.
    pub resources: Vec<String>,
    /// Roles it applies to; empty: all.
    pub roles: Vec<String>,
    pub columns: Vec<ColumnPattern>,
    pub detectors: Vec<Detector>,
    pub strategy: Strategy,
}

/// How many values each rule masked in one statement, by slot: for rule `r`, slot `7 r` counts
/// whole columns and `7 r + 1 + d` what detector `d` found; the last slot counts values
/// withheld. [`SessionMasking::named`] gives them names. Counting by slot costs no allocation
/// per value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts(Vec<u64>);

const SLOTS_PER_RULE: usize = 1 + Detector::ALL.len();

impl Counts {
    fn add(&mut self, slot: usize, n: u64) {
        if self.0.len() <= slot {
            self.0.resize(slot + 1, 0);
        }
        self.0[slot] += n;
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }
}

/// The masking rules of one session, with its view of the catalog.
pub struct SessionMasking {
    rules: Vec<MaskRule>,
    masker: Arc<Masker>,
    memo: HashMemo,
    catalog: Catalog,
    /// Some rule names columns.
    by_column: bool,
    /// Every detector of every rule, for the prefilter that most values stop at; none when no
    /// rule detects.
    detectors: Vec<Detector>,
    /// The shortest value any of them could find something in.
    shortest_detectable: usize,
}

impl SessionMasking {
    /// The rules for a session on `resource` with `role`, or `None` when none applies.
    /// `masked_schema`: the schema of the database's own masked views for this grant, if the
    /// database masks (its relations are then trusted as masked).
    pub fn for_session(
        rules: &[MaskRule],
        resource: &str,
        role: &str,
        masker: Arc<Masker>,
        masked_schema: Option<String>,
    ) -> Option<SessionMasking> {
        let rules: Vec<MaskRule> = rules
            .iter()
            .filter(|r| in_scope(&r.resources, &r.roles, resource, role))
            .cloned()
            .collect();
        if rules.is_empty() {
            return None;
        }
        let detectors: Vec<Detector> = Detector::ALL
            .into_iter()
            .filter(|d| rules.iter().any(|r| r.detectors.contains(d)))
            .collect();
        let shortest_detectable = detectors
            .iter()
            .map(|d| d.min_len())
            .min()
            .unwrap_or(usize::MAX);
        Some(SessionMasking {
            by_column: rules.iter().any(|r| !r.columns.is_empty()),
            detectors,
            shortest_detectable,
            rules,
            masker,
            memo: HashMemo::new(),
            catalog: Catalog::new(masked_schema, Functions::default()),
        })
    }

    /// Whether column rules need the catalog (read once, at login).
    pub fn needs_catalog(&self) -> bool {
        self.by_column
    }

    /// Whether some rule names columns (then the statement-level refusals apply).
    pub fn by_column(&self) -> bool {
        self.by_column
    }

    /// The first rule's name: what a refusal names when masking forbids something outright.
    pub fn first_rule(&self) -> &str {
        &self.rules[0].name
    }

    /// The first rule that names columns (the one whose mask applies to what cannot be traced
    /// to a column), or the first rule.
    fn first_column_rule(&self) -> usize {
        self.rules
            .iter()
            .position(|r| !r.columns.is_empty())
            .unwrap_or(0)
    }

    /// The catalog, for the login to fill in.
    pub fn catalog_mut(&mut self) -> &mut Catalog {
        &mut self.catalog
    }

    /// The server's functions as read at login.
    pub fn functions(&self) -> &Functions {
        &self.catalog.functions
    }

    /// Takes one row of [`COLUMNS_SQL`].
    pub fn learn(&mut self, oid: u32, attnum: i16, schema: &str, table: &str, column: &str) {
        let rules = &self.rules;
        self.catalog
            .learn(oid, attnum, schema, table, column, |s, t, c| {
                rules
                    .iter()
                    .position(|r| r.columns.iter().any(|p| p.matches(s, t, c)))
            });
    }

    /// Takes one row of [`VIEW_READS_SQL`].
    pub fn learn_view_read(&mut self, view: u32, table: u32, attnum: i16) {
        self.catalog.learn_view_read(view, table, attnum);
    }

    /// Once the catalog is read whole.
    pub fn catalog_read(&mut self) {
        let rule = self.first_column_rule();
        self.catalog.finish(rule);
    }

    /// The counts by name: `rule` for whole columns, `rule:detector` for what detectors found,
    /// `withheld` for values that could not be masked.
    pub fn named(&self, counts: &Counts) -> BTreeMap<String, u64> {
        let withheld = self.withheld_slot();
        let mut out = BTreeMap::new();
        for (slot, &n) in counts.0.iter().enumerate().filter(|(_, n)| **n > 0) {
            let name = if slot == withheld {
                "withheld".to_owned()
            } else {
                let rule = &self.rules[slot / SLOTS_PER_RULE].name;
                match slot % SLOTS_PER_RULE {
                    0 => rule.clone(),
                    d => format!("{rule}:{}", Detector::ALL[d - 1].name()),
                }
            };
            out.insert(name, n);
        }
        out
    }

    fn withheld_slot(&self) -> usize {
        self.rules.len() * SLOTS_PER_RULE
    }
}

#[cfg(test)]
mod tests;
