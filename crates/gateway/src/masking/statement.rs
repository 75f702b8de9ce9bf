//! What masking decides for a statement before it runs, from what [`crate::sql`] read of it
//! and the relations the catalog knows: whether it reads masked data (its errors and notices
//! then say nothing of it), which rule masks the values it computes, how its COPY is masked,
//! and whether it must be refused because what it does could carry masked values where masking
//! cannot follow them.
//!
//! A statement is judged by the relations it reads, not by column names: a value computed in a
//! statement that reads a masked relation is masked, whatever it is called, unless every name
//! it refers to is provably a column that no rule masks (`count(*)`, `upper(name)`). A
//! statement that reads a masked relation may not store what it computes, make a relation from
//! it, or hand it to a function that keeps it for later (`set_config`, `pg_notify`, large
//! objects). Under column rules, what the gateway cannot see is refused: SQL it cannot parse,
//! `DO` blocks, functions that run SQL text or read server files, functions that are not
//! built in, code-installing DDL, and the catalog's copies of table values (`pg_stats`).

use std::sync::Arc;

use super::SessionMasking;
use super::catalog::{Holds, WITHHELD_RELATIONS};
use super::copy::CopyPlan;
use crate::sql::functions::FunctionKind;
use crate::sql::{CopyOut, Facts, Kind, Name, Value};

/// What masking decided for a statement, or for a whole SQL text (its statements joined).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatementPlan {
    /// The rule that masks the values it computes (result columns no table stands behind):
    /// they are redacted, never partly shown or hashed, or NULL under a `null` rule.
    pub computed: Option<usize>,
    /// It reads masked data: its errors and notices keep their SQLSTATE, and nothing else.
    pub reads_masked: bool,
    /// How to mask its `COPY … TO STDOUT`.
    pub copy: Option<Arc<CopyPlan>>,
    /// What it runs is not known (an Execute of a portal the gateway never saw made): every
    /// value of its rows is withheld.
    pub unknown: bool,
}

impl crate::session::tracker::Plan for StatementPlan {
    fn join(&self, other: &Self) -> Self {
        StatementPlan {
            computed: match (self.computed, other.computed) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            reads_masked: self.reads_masked || other.reads_masked,
            copy: self.copy.clone().or_else(|| other.copy.clone()),
            unknown: self.unknown || other.unknown,
        }
    }

    fn unknown() -> Self {
        StatementPlan {
            computed: None,
            reads_masked: true,
            copy: None,
            unknown: true,
        }
    }
}

/// Code-installing DDL: functions, triggers, rules and the like run later, in statements
/// that never name them.
fn installs_code(f: &Facts, sql: &str) -> bool {
    if !f.kinds.contains(&Kind::Ddl) {
        return false;
    }
    let text = sql
        .get(f.span.clone())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut words = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        return false;
    };
    if first != "create" && first != "alter" {
        return false;
    }
    words.take(4).any(|w| {
        matches!(
            w,
            "function"
                | "procedure"
                | "trigger"
                | "rule"
                | "operator"
                | "cast"
                | "aggregate"
                | "language"
                | "extension"
                | "policy"
                | "transform"
                | "server"
                | "publication"
                | "subscription"
                | "conversion"
                | "routine"
        )
    })
}

impl SessionMasking {
    /// The plan for one statement, or why it cannot be masked.
    pub fn plan_statement(&self, f: &Facts, sql: &str) -> Result<StatementPlan, String> {
        if !self.by_column {
            let copy = match &f.copy {
                None => None,
                Some(c) => Some(Arc::new(self.copy_plan(c.clone())?)),
            };
            return Ok(StatementPlan {
                copy,
                ..StatementPlan::default()
            });
        }
        self.refuse_unseen(f, sql)?;
        let reads = self.reads(f);
        let masked_rule = reads.iter().find_map(|(_, h)| match h {
            Holds::Masked(r) => Some(*r),
            Holds::Unknown => Some(self.first_column_rule()),
            _ => None,
        });
        let mut plan = StatementPlan::default();
        if let Some(rule) = masked_rule {
            plan.reads_masked = true;
            let names: Vec<&Name> = reads.iter().map(|(n, _)| *n).collect();
            // A column of a masked relation in a result is masked by its identity; stored, it
            // would be stored as it is.
            let output_clean = |v: &Value| self.clean(f, v, &names, true);
            if !f.values.outputs.iter().all(output_clean) {
                plan.computed = Some(rule);
            }
            let stored_clean = |v: &Value| self.clean(f, v, &names, false);
            self.refuse_carrying(f, &stored_clean)?;
        }
        if let Some(c) = &f.copy {
            plan.copy = Some(Arc::new(self.copy_plan(c.clone())?));
        }
        if plan.reads_masked
            && (f.kinds.contains(&Kind::CopyFile) || f.kinds.contains(&Kind::CopyProgram))
        {
            return Err("a COPY of masked data to a server file or program".into());
        }
        Ok(plan)
    }

    /// The relations `f` names, with what each holds; a name that is only one of its CTEs
    /// is left out.
    fn reads<'a>(&self, f: &'a Facts) -> Vec<(&'a Name, Holds)> {
        f.tables
            .iter()
            .map(|n| (n, self.catalog.holds(n)))
            .filter(|(n, h)| {
                !(*h == Holds::Unknown && n.schema.is_none() && f.values.ctes.contains(&n.name))
            })
            .collect()
    }

    /// Refusals for what the gateway cannot see into under column rules.
    fn refuse_unseen(&self, f: &Facts, sql: &str) -> Result<(), String> {
        if !f.parsed {
            return Err(
                "the gateway cannot parse this statement, so it cannot tell what it reads".into(),
            );
        }
        if f.do_block {
            return Err("a DO block runs code the gateway cannot see".into());
        }
        if installs_code(f, sql) {
            return Err("this statement installs code (a function, trigger, rule, …) that would run where the gateway cannot see it".into());
        }
        if let Some(t) = f.tables.iter().find(|t| {
            WITHHELD_RELATIONS.contains(&t.name.as_str())
                && t.schema.as_deref().is_none_or(|s| s == "pg_catalog")
        }) {
            return Err(format!("{t} holds values of other tables or sessions"));
        }
        for name in &f.functions {
            let why = match self.catalog.functions.kind(name) {
                FunctionKind::RunsSql => "runs SQL text the gateway cannot see",
                FunctionKind::ReadsServer => "reads the server's files",
                FunctionKind::Unknown => {
                    "is not a built-in function and runs code the gateway cannot see"
                }
                FunctionKind::Plain | FunctionKind::Keeps => continue,
            };
            return Err(format!("{name} {why}"));
        }
        if let Some(n) = f
            .creates
            .iter()
            .find(|n| self.catalog.is_masked_name(&n.name))
        {
            return Err(format!(
                "{n} would take the place of a masked relation of that name"
            ));
        }
        Ok(())
    }

    /// Refusals for a statement that reads masked data and would carry it elsewhere.
    fn refuse_carrying(&self, f: &Facts, clean: &dyn Fn(&Value) -> bool) -> Result<(), String> {
        if f.values.creates_from_query {
            return Err("it would make a relation from masked data".into());
        }
        if f.values.merges {
            return Err("a MERGE that reads masked data".into());
        }
        if !f.values.stored.iter().all(clean) {
            return Err("it would store values computed from masked columns".into());
        }
        if let Some(name) = f
            .functions
            .iter()
            .find(|n| self.catalog.functions.kind(n) == FunctionKind::Keeps)
        {
            return Err(format!(
                "{name} would keep masked data for a later statement"
            ));
        }
        Ok(())
    }

    /// Whether a value is provably computed from columns no rule masks: every name in it is a
    /// column of a relation the statement reads, no relation it reads masks a column of that
    /// name, and it is no alias or relation name (a whole row). In a result (`output`), a bare
    /// column reference computes nothing: PostgreSQL reports it by its table and column, and
    /// masking judges it by that. Where the FROM clause holds more than named relations (a
    /// subquery, a function, `VALUES`, a CTE, column aliases), names may stand for anything.
    fn clean(&self, f: &Facts, v: &Value, reads: &[&Name], output: bool) -> bool {
        let reads_cte = f
            .tables
            .iter()
            .any(|t| t.schema.is_none() && f.values.ctes.contains(&t.name));
        if f.values.complex || reads_cte {
            return false;
        }
        if v.wildcard {
            return true;
        }
        if v.opaque {
            return false;
        }
        v.names.iter().all(|name| {
            !f.values.defined.contains(name)
                && reads.iter().any(|r| self.catalog.has_column(r, name))
                && ((output && v.plain)
                    || !reads
                        .iter()
                        .any(|r| self.catalog.masks_column_named(r, name)))
        })
    }

    /// How to mask the rows of a `COPY … TO STDOUT`, or why it cannot be masked.
    pub fn copy_plan(&self, copy: CopyOut) -> Result<CopyPlan, String> {
        let (format, verdicts) = match copy {
            CopyOut::Unsupported => {
                return Err("only COPY … TO STDOUT of a table or query in text or CSV format with default delimiters can be masked".into());
            }
            CopyOut::Query { format } if !self.by_column => (format, None),
            CopyOut::Query { .. } => {
                return Err("COPY (query) TO STDOUT does not say which columns it reads; COPY the table, or use SELECT".into());
            }
            CopyOut::Table { format, .. } if !self.by_column => (format, None),
            CopyOut::Table {
                schema,
                table,
                columns,
                format,
            } => {
                let name = Name {
                    schema,
                    name: table.clone(),
                };
                let Some((oid, all)) = self.catalog.copy_table(&name) else {
                    return Err(format!(
                        "the gateway cannot tell which table {table} is; name its schema"
                    ));
                };
                let chosen: Vec<i16> = if columns.is_empty() {
                    all.iter().map(|(a, _)| *a).collect()
                } else {
                    columns
                        .iter()
                        .map(|c| all.iter().find(|(_, n)| n == c).map(|(a, _)| *a))
                        .collect::<Option<_>>()
                        .ok_or_else(|| format!("{table} has no such column"))?
                };
                let verdicts = chosen
                    .into_iter()
                    .map(|attnum| self.catalog.column_rule(oid, attnum))
                    .collect();
                (format, Some(verdicts))
            }
        };
        Ok(CopyPlan::new(format, verdicts))
    }
}
