//! The session's view of the catalog, read once at login over its own upstream connection:
//! every column of every user relation, which columns the column rules mask, which views read
//! masked columns, which tables inherit from masked ones, and which functions are not built
//! in. It answers two questions: is this result column masked (by table OID and attribute
//! number), and does a relation a statement names hold masked data (by its folded name).

use std::collections::{HashMap, HashSet};

use crate::sql::Name;
use crate::sql::functions::Functions;

/// What the catalog query asks, section by section (one result set each).
pub const COLUMNS_SQL: &str = "SELECT c.oid::int8, a.attnum::int4, n.nspname::text, c.relname::text, a.attname::text \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema')";
/// Which columns each view reads: `view oid, table oid, attnum`.
pub const VIEW_READS_SQL: &str = "SELECT DISTINCT r.ev_class::int8, d.refobjid::int8, d.refobjsubid::int4 \
     FROM pg_catalog.pg_rewrite r \
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
     WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjsubid > 0 AND d.refobjid <> r.ev_class";
/// Which tables inherit from which (partitions included): `child oid, parent oid`.
pub const INHERITS_SQL: &str = "SELECT inhrelid::int8, inhparent::int8 FROM pg_catalog.pg_inherits";
/// The catalog's relations that hold other tables' values or other sessions' statements, by
/// object id: views over them are masked whole.
pub const WITHHELD_SQL: &str = "SELECT c.oid::int8 FROM pg_catalog.pg_class c \
     WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relname IN \
     ('pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs', 'pg_statistic', 'pg_statistic_ext', \
     'pg_statistic_ext_data', 'pg_largeobject', 'pg_stat_activity')";
/// Functions the server was not installed with (object ids from 16384 on): the user's and
/// extensions'.
pub const OTHER_FUNCTIONS_SQL: &str =
    "SELECT DISTINCT proname::text FROM pg_catalog.pg_proc WHERE oid >= 16384";
/// Functions the server was installed with.
pub const BUILTIN_FUNCTIONS_SQL: &str =
    "SELECT DISTINCT proname::text FROM pg_catalog.pg_proc WHERE oid < 16384";

/// Relations and views of the server's own catalog have object ids below this.
pub const FIRST_USER_OID: u32 = 16384;

/// Catalog relations whose rows hold other tables' values (statistics, large objects) or
/// other sessions' statements: a session under column rules may not read them.
pub const WITHHELD_RELATIONS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext",
    "pg_statistic_ext_data",
    "pg_largeobject",
    "pg_stat_activity",
    "pg_stat_statements",
];

/// `pg_largeobject`, `pg_statistic`, `pg_statistic_ext_data`: catalog tables that hold values
/// of user tables.
const SYSTEM_VALUE_TABLES: [u32; 3] = [2613, 2619, 3429];

/// What a relation a statement names holds, for masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Masked columns (or it is a view over them): the rule of the first.
    Masked(usize),
    /// Nothing a rule masks.
    Clear,
    /// A relation of the server's own catalog.
    System,
    /// A masked view the database itself made (`database_masking`): already masked.
    MaskedByDatabase,
    /// Not in the catalog read at login (created since, or a name the gateway cannot place):
    /// it may hold anything.
    Unknown,
}

#[derive(Default)]
pub struct Catalog {
    /// (table OID, attribute number) → the rule that masks that column whole.
    pub(super) columns: HashMap<(u32, i16), usize>,
    /// Every relation the catalog listed; a column of any other user relation is withheld.
    known: HashSet<u32>,
    /// Views (and materialized views) that read a masked column, and tables that inherit from
    /// a masked table, → that column's rule. A view's column cannot be traced to the column it
    /// reads, so every column of such a view is masked.
    pub(super) whole: HashMap<u32, usize>,
    /// Which columns each view reads, and which table inherits from which, until read whole.
    reads: Vec<(u32, u32, i16)>,
    inherits: Vec<(u32, u32)>,
    /// Catalog relations that hold other tables' values ([`WITHHELD_SQL`]).
    withheld: Vec<u32>,
    /// Relations by name: (schema, OID).
    by_name: HashMap<String, Vec<(String, u32)>>,
    /// Each relation's columns: (attribute number, name).
    pub(super) table_columns: HashMap<u32, Vec<(i16, String)>>,
    /// The schema of the database's own masked views, whose relations are masked already.
    masked_schema: Option<String>,
    pub functions: Functions,
}

impl Catalog {
    pub fn new(masked_schema: Option<String>, functions: Functions) -> Catalog {
        Catalog {
            masked_schema,
            functions,
            ..Catalog::default()
        }
    }

    /// Takes one row of [`COLUMNS_SQL`]; `rule` finds the rule that masks a table column.
    pub fn learn(
        &mut self,
        oid: u32,
        attnum: i16,
        schema: &str,
        table: &str,
        column: &str,
        rule: impl Fn(&str, &str, &str) -> Option<usize>,
    ) {
        if self.known.insert(oid) {
            self.by_name
                .entry(table.to_owned())
                .or_default()
                .push((schema.to_owned(), oid));
        }
        self.table_columns
            .entry(oid)
            .or_default()
            .push((attnum, column.to_owned()));
        // The database's own masked views are masked already: no rule applies to them again.
        if self.masked_schema.as_deref() == Some(schema) {
            return;
        }
        if let Some(i) = rule(schema, table, column) {
            self.columns.insert((oid, attnum), i);
        }
    }

    pub fn learn_view_read(&mut self, view: u32, table: u32, attnum: i16) {
        self.reads.push((view, table, attnum));
    }

    pub fn learn_inherits(&mut self, child: u32, parent: u32) {
        self.inherits.push((child, parent));
    }

    /// Takes one row of [`WITHHELD_SQL`].
    pub fn learn_withheld(&mut self, oid: u32) {
        self.withheld.push(oid);
    }

    /// Once everything is read: a view reading a masked column, or any column of a masked
    /// view (views over views), is masked whole; so is a table inheriting from a table with a
    /// masked column (a partition read directly), column by column by name. Views over the
    /// server's statistics and large objects (which hold other tables' values) are masked whole
    /// by `system_rule`.
    pub fn finish(&mut self, system_rule: usize) {
        for oid in SYSTEM_VALUE_TABLES
            .into_iter()
            .chain(self.withheld.drain(..))
        {
            self.whole.insert(oid, system_rule);
        }
        let masked_schema_oids: HashSet<u32> = match &self.masked_schema {
            Some(s) => self
                .by_name
                .values()
                .flatten()
                .filter(|(schema, _)| schema == s)
                .map(|(_, oid)| *oid)
                .collect(),
            None => HashSet::new(),
        };
        loop {
            let mut changed = false;
            for &(view, table, attnum) in &self.reads {
                if self.whole.contains_key(&view) || masked_schema_oids.contains(&view) {
                    continue;
                }
                let rule = self
                    .columns
                    .get(&(table, attnum))
                    .or_else(|| self.whole.get(&table))
                    .copied();
                if let Some(rule) = rule {
                    self.whole.insert(view, rule);
                    changed = true;
                }
            }
            for &(child, parent) in &self.inherits {
                if self.whole.contains_key(&child) {
                    continue;
                }
                let masked: Vec<(String, usize)> = self
                    .columns
                    .iter()
                    .filter(|((oid, _), _)| *oid == parent)
                    .filter_map(|(&(_, attnum), &rule)| {
                        let name = self.column_name(parent, attnum)?;
                        Some((name.to_owned(), rule))
                    })
                    .collect();
                for (name, rule) in masked {
                    let attnum = self
                        .table_columns
                        .get(&child)
                        .and_then(|cols| cols.iter().find(|(_, n)| *n == name))
                        .map(|(a, _)| *a);
                    if let Some(a) = attnum
                        && self.columns.insert((child, a), rule).is_none()
                    {
                        changed = true;
                    }
                }
                if let Some(&rule) = self.whole.get(&parent) {
                    self.whole.insert(child, rule);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        self.reads = Vec::new();
        self.inherits = Vec::new();
    }

    fn column_name(&self, oid: u32, attnum: i16) -> Option<&str> {
        self.table_columns
            .get(&oid)?
            .iter()
            .find(|(a, _)| *a == attnum)
            .map(|(_, n)| n.as_str())
    }

    /// The rule that masks a result column whole, `Ok(None)` if none does, `Err` if the
    /// column belongs to a user relation the catalog did not list (created since login), which
    /// cannot be judged. Catalog relations' columns are the server's own.
    pub(super) fn column_rule(&self, table_oid: u32, attnum: i16) -> Result<Option<usize>, ()> {
        if let Some(&rule) = self.whole.get(&table_oid) {
            return Ok(Some(rule));
        }
        if !self.known.contains(&table_oid) {
            return if table_oid < FIRST_USER_OID {
                Ok(None)
            } else {
                Err(())
            };
        }
        Ok(self
            .columns
            .get(&(table_oid, attnum))
            .or_else(|| self.whole.get(&table_oid))
            .copied())
    }

    /// The relations a name can stand for: a qualified name its one relation, an unqualified
    /// one any of that name in any schema (the search path decides; the gateway assumes the
    /// worst).
    fn candidates<'a>(&'a self, n: &'a Name) -> impl Iterator<Item = (&'a str, u32)> + 'a {
        self.by_name
            .get(&n.name)
            .into_iter()
            .flatten()
            .filter(|(schema, _)| n.schema.as_ref().is_none_or(|s| s == schema))
            .map(|(s, oid)| (s.as_str(), *oid))
    }

    /// What a relation named in a statement holds.
    pub fn holds(&self, n: &Name) -> Holds {
        if let Some(ms) = &self.masked_schema {
            // The masked schema is first on the login's search path: an unqualified name that
            // is one of its views means that view.
            let in_masked = |schema: &str| schema == ms;
            match &n.schema {
                Some(s) if in_masked(s) => return Holds::MaskedByDatabase,
                None if self.candidates(n).any(|(s, _)| in_masked(s)) => {
                    return Holds::MaskedByDatabase;
                }
                _ => {}
            }
        }
        let mut found = false;
        let mut masked = None;
        for (_, oid) in self.candidates(n) {
            found = true;
            let rule = self.whole.get(&oid).copied().or_else(|| {
                self.columns
                    .iter()
                    .filter(|((t, _), _)| *t == oid)
                    .map(|(_, r)| *r)
                    .min()
            });
            if let Some(r) = rule {
                masked = Some(masked.map_or(r, |m: usize| m.min(r)));
            }
        }
        match (found, masked) {
            (_, Some(r)) => Holds::Masked(r),
            (true, None) => Holds::Clear,
            (false, None) => {
                let system_schema = matches!(
                    n.schema.as_deref(),
                    Some("pg_catalog" | "information_schema")
                );
                if system_schema || (n.schema.is_none() && n.name.starts_with("pg_")) {
                    Holds::System
                } else {
                    Holds::Unknown
                }
            }
        }
    }

    /// Whether a column name is one a relation named by `n` has masked (or may have: an
    /// unknown relation may have any column).
    pub fn masks_column_named(&self, n: &Name, column: &str) -> bool {
        match self.holds(n) {
            Holds::Unknown => true,
            Holds::System | Holds::MaskedByDatabase | Holds::Clear => false,
            Holds::Masked(_) => self.candidates(n).any(|(_, oid)| {
                self.whole.contains_key(&oid)
                    || self.table_columns.get(&oid).is_some_and(|cols| {
                        cols.iter().any(|(a, name)| {
                            name == column && self.columns.contains_key(&(oid, *a))
                        })
                    })
            }),
        }
    }

    /// Whether a relation named by `n` has a column named `column`.
    pub fn has_column(&self, n: &Name, column: &str) -> bool {
        self.candidates(n).any(|(_, oid)| {
            self.table_columns
                .get(&oid)
                .is_some_and(|cols| cols.iter().any(|(_, name)| name == column))
        })
    }

    /// The single relation an unqualified or qualified table name in a COPY means, if it is
    /// one, and its columns in order.
    pub fn copy_table(&self, n: &Name) -> Option<(u32, Vec<(i16, String)>)> {
        let candidates: Vec<u32> = self.candidates(n).map(|(_, oid)| oid).collect();
        let [oid] = candidates[..] else {
            return None;
        };
        let mut cols = self.table_columns.get(&oid).cloned().unwrap_or_default();
        cols.sort_by_key(|(attnum, _)| *attnum);
        Some((oid, cols))
    }

    /// Whether `n` names a relation some rule masks (to refuse making another by its name).
    pub fn is_masked_name(&self, name: &str) -> bool {
        matches!(self.holds(&Name::bare(name)), Holds::Masked(_))
    }
}
