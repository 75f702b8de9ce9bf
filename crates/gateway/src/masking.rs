//! Masking rules applied to the rows a session receives.
//!
//! A column is identified as PostgreSQL reports it in RowDescription: the table's OID and the
//! attribute number, resolved through the catalog once per session. So `SELECT email AS e`,
//! a join, a view over the table, or `SELECT *` are masked alike. Expressions (table OID 0)
//! match rules that name a bare column, by the name the result gives them. Detectors look
//! inside every value they can read as text. A value that cannot be masked safely (a binary
//! value of a type the gateway cannot read, a column of a table the catalog did not know) is
//! withheld as NULL, never passed through.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::BytesMut;

use crate::codec::{self, Field};
use crate::error::CodecError;
use crate::guard::{CopyFormat, CopyOut, in_scope, mentions};
use crate::mask::{Detector, HashMemo, Masker, Strategy};

pub use jitgate_core::masking::ColumnPattern;

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

/// Two queries: every column of every user table, view and foreign table
/// (`oid, attnum, schema, table, column`), then which columns each view reads
/// (`view oid, table oid, attnum`).
pub const CATALOG_SQL: &str = "SELECT c.oid::int8, a.attnum::int4, n.nspname::text, c.relname::text, a.attname::text \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema'); \
     SELECT DISTINCT r.ev_class::int8, d.refobjid::int8, d.refobjsubid::int4 \
     FROM pg_catalog.pg_rewrite r \
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
     WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjsubid > 0 AND d.refobjid <> r.ev_class";

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

/// A row description with each column's verdict worked out once, not once per value.
pub struct Shape {
    columns: Vec<Column>,
}

struct Column {
    field: Field,
    /// The rule that masks it whole, or `Err` if it must be withheld.
    verdict: Result<Option<usize>, ()>,
    /// What to do with its values, from the verdict and the field's type.
    action: Action,
}

/// What [`SessionMasking::row_into`] does with a column's values, decided from its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Passed as it is: no rule masks it and no detector looks at it.
    Keep,
    /// Text that detectors look at: passed as it is unless one of them could find something.
    Detect,
    /// A plain text column that a rule masks whole: replaced in place.
    Replace(usize),
    /// Everything else (withheld columns, JSON, binary numbers): judged value by value.
    Judge,
}

/// The masking rules of one session, with its view of the catalog.
pub struct SessionMasking {
    rules: Vec<MaskRule>,
    masker: Arc<Masker>,
    memo: HashMemo,
    /// (table OID, attribute number) → the rule that masks that column whole.
    columns: HashMap<(u32, i16), usize>,
    /// Every table the catalog listed; a column of any other table is withheld.
    known_tables: HashSet<u32>,
    /// Views (and materialized views) that read a masked column → that column's rule. The
    /// catalog says which columns a view reads but not which of its own columns each becomes,
    /// so every column of such a view is masked.
    views: HashMap<u32, usize>,
    /// Which columns each view reads, until the catalog is read whole.
    reads: Vec<(u32, u32, i16)>,
    /// Tables by name (`schema`, OID), and each table's columns in order, for COPY.
    tables: HashMap<String, Vec<(String, u32)>>,
    table_columns: HashMap<u32, Vec<(i16, String)>>,
    /// Names of masked columns → their rule: a statement that mentions one has its computed
    /// result columns masked too.
    masked_names: HashMap<String, usize>,
    by_column: bool,
    /// Every detector of every rule, for the prefilter that most values stop at; none when no
    /// rule detects.
    detectors: Vec<Detector>,
    /// The shortest value any of them could find something in.
    shortest_detectable: usize,
}

impl SessionMasking {
    pub fn for_session(
        rules: &[MaskRule],
        resource: &str,
        role: &str,
        masker: Arc<Masker>,
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
            columns: HashMap::new(),
            known_tables: HashSet::new(),
            views: HashMap::new(),
            reads: Vec::new(),
            tables: HashMap::new(),
            table_columns: HashMap::new(),
            masked_names: HashMap::new(),
        })
    }

    /// Whether column rules need the catalog (read once, at login).
    pub fn needs_catalog(&self) -> bool {
        self.by_column
    }

    /// The first rule's name: what a refusal names when masking forbids something outright.
    pub fn first_rule(&self) -> &str {
        &self.rules[0].name
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

    /// Takes one row of [`CATALOG_SQL`].
    pub fn learn(&mut self, oid: u32, attnum: i16, schema: &str, table: &str, column: &str) {
        if self.known_tables.insert(oid) {
            self.tables
                .entry(table.to_owned())
                .or_default()
                .push((schema.to_owned(), oid));
        }
        self.table_columns
            .entry(oid)
            .or_default()
            .push((attnum, column.to_owned()));
        if let Some(i) = self
            .rules
            .iter()
            .position(|r| r.columns.iter().any(|p| p.matches(schema, table, column)))
        {
            self.columns.insert((oid, attnum), i);
        }
    }

    /// Takes one row of [`CATALOG_SQL`]'s second query.
    pub fn learn_view_read(&mut self, view: u32, table: u32, attnum: i16) {
        self.reads.push((view, table, attnum));
    }

    /// Once the catalog is read: a view reading a masked column, or any column of a masked
    /// view (views over views), is masked whole.
    pub fn catalog_read(&mut self) {
        loop {
            let mut changed = false;
            for &(view, table, attnum) in &self.reads {
                if self.views.contains_key(&view) {
                    continue;
                }
                let rule = self
                    .columns
                    .get(&(table, attnum))
                    .or_else(|| self.views.get(&table))
                    .copied();
                if let Some(rule) = rule {
                    self.views.insert(view, rule);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        self.reads = Vec::new();
        for (&(oid, attnum), &rule) in &self.columns {
            let name = self
                .table_columns
                .get(&oid)
                .and_then(|cols| cols.iter().find(|(a, _)| *a == attnum));
            if let Some((_, name)) = name {
                self.masked_names.entry(name.clone()).or_insert(rule);
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            for p in r
                .columns
                .iter()
                .filter(|p| p.table.is_none() && p.column != "*")
            {
                self.masked_names.entry(p.column.clone()).or_insert(i);
            }
        }
    }

    /// The rule of a masked column that `sql` computes values from, if any: every computed
    /// column of its results (`lower(email)`, `email || ''`, a subquery's alias of it) is then
    /// masked by that rule, since no table stands behind such a column to judge it by. SQL
    /// that does not parse but might mention one is treated as computing from it.
    pub fn taint(&self, sql: &str) -> Option<usize> {
        if self.masked_names.is_empty() {
            return None;
        }
        let first = self
            .masked_names
            .iter()
            .filter(|(n, _)| mentions(sql, n))
            .map(|(_, r)| *r)
            .min()?;
        match crate::guard::projected_identifiers(sql) {
            None => Some(first),
            Some(names) => names
                .iter()
                .filter_map(|n| self.masked_names.get(n).copied())
                .min(),
        }
    }

    /// What masking needs to know of a statement before it runs: how to mask its COPY, if it
    /// is one, and the rule for its computed columns. `Err` says why it cannot be masked.
    pub fn plan(&self, sql: &str) -> Result<Planned, String> {
        let copy = match crate::guard::copy_out(sql) {
            None => None,
            Some(c) => Some(self.copy_plan(c)?),
        };
        Ok(Planned {
            copy,
            taint: self.taint(sql),
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
                let candidates: Vec<u32> = self
                    .tables
                    .get(&table)
                    .into_iter()
                    .flatten()
                    .filter(|(s, _)| schema.as_ref().is_none_or(|want| want == s))
                    .map(|(_, oid)| *oid)
                    .collect();
                let [oid] = candidates[..] else {
                    return Err(format!(
                        "the gateway cannot tell which table {table} is; name its schema"
                    ));
                };
                let mut all = self.table_columns.get(&oid).cloned().unwrap_or_default();
                all.sort_by_key(|(attnum, _)| *attnum);
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
                    .map(|attnum| {
                        Ok(self
                            .columns
                            .get(&(oid, attnum))
                            .or_else(|| self.views.get(&oid))
                            .copied())
                    })
                    .collect();
                (format, Some(verdicts))
            }
        };
        Ok(CopyPlan {
            format,
            verdicts,
            header_left: matches!(format, CopyFormat::Csv { header: true }),
        })
    }

    /// The CopyData frame for one masked COPY row, or `None` if nothing in it needs masking.
    pub fn copy_row(
        &mut self,
        plan: &mut CopyPlan,
        row: &[u8],
        counts: &mut Counts,
    ) -> Option<BytesMut> {
        if std::mem::take(&mut plan.header_left) {
            return None; // column names
        }
        let fields = match plan.format {
            CopyFormat::Text => copy_text::split(row),
            CopyFormat::Csv { .. } => copy_csv::split(row),
        };
        let text = Field {
            name: String::new(),
            table_oid: 0,
            attnum: 0,
            type_oid: TEXT,
            format: 0,
        };
        let mut changed = false;
        let mut masked: Vec<Option<Vec<u8>>> = Vec::with_capacity(fields.len());
        for (i, field) in fields.into_iter().enumerate() {
            let Some(value) = field else {
                masked.push(None);
                continue;
            };
            let verdict = match &plan.verdicts {
                None => Ok(None),
                Some(v) => v.get(i).copied().unwrap_or(Err(())),
            };
            match self.value(&text, verdict, &value, counts) {
                Masked::Same => masked.push(Some(value)),
                Masked::Withheld => {
                    counts.add(self.withheld_slot(), 1);
                    changed = true;
                    masked.push(None);
                }
                Masked::To(v) => {
                    changed = true;
                    masked.push(v);
                }
            }
        }
        if !changed {
            return None;
        }
        let body = match plan.format {
            CopyFormat::Text => copy_text::join(&masked),
            CopyFormat::Csv { .. } => copy_csv::join(&masked),
        };
        Some(codec::frame_of(b'd', &body))
    }

    /// The rule that masks this result column whole, if any; `Err` if the column belongs to a
    /// table the catalog did not list (created since login), which cannot be judged.
    fn column_rule(&self, f: &Field) -> Result<Option<usize>, ()> {
        if !self.by_column {
            return Ok(None);
        }
        if f.table_oid == 0 {
            return Ok(self
                .rules
                .iter()
                .position(|r| r.columns.iter().any(|p| p.matches_name(&f.name))));
        }
        if !self.known_tables.contains(&f.table_oid) {
            return Err(());
        }
        Ok(self
            .columns
            .get(&(f.table_oid, f.attnum))
            .or_else(|| self.views.get(&f.table_oid))
            .copied())
    }

    /// Works out each column's verdict for rows of this description; `taint` is the rule
    /// for computed columns, from [`SessionMasking::taint`] of the statement.
    pub fn shape(&self, fields: Vec<Field>, taint: Option<usize>) -> Shape {
        let columns = fields
            .into_iter()
            .map(|field| {
                let verdict = match self.column_rule(&field) {
                    Ok(None) if field.table_oid == 0 => Ok(taint),
                    verdict => verdict,
                };
                let action = self.action(&field, verdict);
                Column {
                    field,
                    verdict,
                    action,
                }
            })
            .collect();
        Shape { columns }
    }

    fn action(&self, f: &Field, verdict: Result<Option<usize>, ()>) -> Action {
        match verdict {
            // Types whose text is the value itself, in either format (not JSON, whose masks
            // are JSON strings, nor jsonb, whose binary form has a version byte).
            Ok(Some(rule)) if matches!(f.type_oid, TEXT | VARCHAR | BPCHAR | NAME | UNKNOWN) => {
                Action::Replace(rule)
            }
            Ok(None) if self.detectors.is_empty() => Action::Keep,
            // A binary integer too short, written out, for any detector.
            Ok(None)
                if f.format == 1
                    && matches!(
                        (f.type_oid, self.shortest_detectable),
                        (INT2, 7..) | (INT4, 12..)
                    ) =>
            {
                Action::Keep
            }
            Ok(None) if f.format == 0 || is_text_type(f.type_oid) => Action::Detect,
            _ => Action::Judge,
        }
    }

    /// The DataRow body masked, or `None` if nothing in it needs masking.
    #[cfg(test)]
    pub fn row(
        &mut self,
        shape: Option<&Shape>,
        body: &[u8],
        counts: &mut Counts,
    ) -> Result<Option<BytesMut>, CodecError> {
        let mut out = BytesMut::with_capacity(body.len() + 64);
        Ok(self
            .row_into(shape, body, counts, &[], &mut out)?
            .then_some(out))
    }

    /// Appends `before` and then the masked DataRow frame to `out` if anything in the row needs
    /// masking, and says whether it did; otherwise (and on error) leaves `out` as it was. The
    /// row is written as it is read, straight into the buffer sent to the client (`before` is
    /// what precedes the row there): runs of values that pass unchanged are copied whole,
    /// replacements are written in place, and nothing is allocated for a value seen before.
    pub fn row_into(
        &mut self,
        shape: Option<&Shape>,
        body: &[u8],
        counts: &mut Counts,
        before: &[u8],
        out: &mut BytesMut,
    ) -> Result<bool, CodecError> {
        let mut values = codec::data_row_values(body)?;
        let declared = values.count_declared();
        let mark = out.len();
        // Where the row's frame begins in `out`, once a first changed value has begun it.
        let mut start = None;
        // Where the values not yet copied to `out` begin: each runs from its length to its end.
        let mut unwritten = values.position();
        // Each value's column, in order; past the description's end (or without one), none.
        let mut columns = shape.map(|s| s.columns.iter());
        loop {
            let value_start = values.position();
            let value = match values.next() {
                None => break,
                Some(Ok(range)) => range.map(|r| &body[r]),
                Some(Err(e)) => {
                    out.truncate(mark);
                    return Err(e);
                }
            };
            let column = columns
                .as_mut()
                .and_then(Iterator::next)
                .map(|c| (&c.field, c.verdict, c.action));
            let Some(v) = value else {
                continue; // NULL stays NULL
            };
            // Before a value is written changed: the unchanged ones before it, as they came.
            let mut flush_unchanged = |out: &mut BytesMut| {
                start.get_or_insert_with(|| {
                    out.extend_from_slice(before);
                    codec::begin_data_row(declared, out)
                });
                out.extend_from_slice(&body[unwritten..value_start]);
            };
            match column {
                None => {
                    // No description to judge it by: fail closed.
                    flush_unchanged(out);
                    counts.add(self.withheld_slot(), 1);
                    codec::put_row_value(None, out);
                }
                Some((_, _, Action::Keep)) => continue,
                Some((f, _, Action::Detect)) if !self.plausible(strip(f, v)) => continue,
                // A whole-column mask of plain text, written in place.
                Some((_, _, Action::Replace(rule))) => {
                    flush_unchanged(out);
                    counts.add(rule * SLOTS_PER_RULE, 1);
                    let strategy = self.rules[rule].strategy;
                    codec::put_row_value_with(out, |out| {
                        self.masker.write(strategy, v, &mut self.memo, out)
                    });
                }
                Some((f, verdict, _)) => match self.value(f, verdict, v, counts) {
                    Masked::Same => continue,
                    Masked::Withheld => {
                        flush_unchanged(out);
                        counts.add(self.withheld_slot(), 1);
                        codec::put_row_value(None, out);
                    }
                    Masked::To(v) => {
                        flush_unchanged(out);
                        codec::put_row_value(v.as_deref(), out);
                    }
                },
            }
            unwritten = values.position();
        }
        let Some(start) = start else {
            return Ok(false);
        };
        out.extend_from_slice(&body[unwritten..values.position()]);
        codec::end_data_row(start, out);
        Ok(true)
    }

    /// Whether any rule's detectors could find something in these bytes.
    fn plausible(&self, bytes: &[u8]) -> bool {
        bytes.len() >= self.shortest_detectable && Detector::any_plausible(&self.detectors, bytes)
    }

    fn value(
        &mut self,
        f: &Field,
        verdict: Result<Option<usize>, ()>,
        v: &[u8],
        counts: &mut Counts,
    ) -> Masked {
        // Only a text type can carry a mask: `*****` in an integer column, even in text format,
        // is a value no typed client can parse. Other types are withheld when masked.
        let text_like = is_text_type(f.type_oid);
        match verdict {
            Err(()) => return Masked::Withheld,
            Ok(Some(i)) => {
                let rule = &self.rules[i];
                counts.add(i * SLOTS_PER_RULE, 1);
                if rule.strategy == Strategy::Null {
                    return Masked::To(None);
                }
                // A masked value of a non-text type has no valid encoding.
                let mut digits = itoa::Buffer::new();
                let Some(text) = text_like.then(|| readable(f, v, &mut digits)).flatten() else {
                    return Masked::Withheld;
                };
                return Masked::To(
                    self.masker
                        .replace(rule.strategy, &text, &mut self.memo)
                        .map(|s| encode(f, s, true)),
                );
            }
            Ok(None) => {}
        }
        if self.detectors.is_empty() {
            return Masked::Same;
        }
        // Text is judged before its UTF-8 is checked; binary numbers once they are digits.
        let is_text = f.format == 0 || text_like;
        if is_text && !self.plausible(strip(f, v)) {
            return Masked::Same;
        }
        let mut digits = itoa::Buffer::new();
        let Some(text) = readable(f, v, &mut digits) else {
            // A binary value the gateway cannot read as text or digits.
            return if is_opaque_safe(f.type_oid) {
                Masked::Same
            } else {
                Masked::Withheld
            };
        };
        if !is_text && !self.plausible(text.as_bytes()) {
            return Masked::Same;
        }
        let mut current: Option<String> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.detectors.is_empty() {
                continue;
            }
            let mut found = [0u32; 6];
            let input = current.as_deref().unwrap_or(&text);
            let result = self.masker.scrub(
                &rule.detectors,
                rule.strategy,
                input,
                &mut found,
                &mut self.memo,
            );
            for (d, &n) in found.iter().enumerate() {
                if n > 0 {
                    counts.add(i * SLOTS_PER_RULE + 1 + d, n as u64);
                }
            }
            match result {
                None => {}
                Some(None) => return Masked::To(None),
                Some(Some(s)) => current = Some(s),
            }
        }
        match current {
            None => Masked::Same,
            // Found in a value whose type cannot carry the mask (a card number in a bigint):
            // withhold it.
            Some(_) if !text_like || std::str::from_utf8(strip(f, v)).is_err() => Masked::Withheld,
            Some(s) => Masked::To(Some(encode(f, s, false))),
        }
    }
}

/// What [`SessionMasking::plan`] found in a statement.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    pub copy: Option<CopyPlan>,
    /// The rule for the result's computed columns.
    pub taint: Option<usize>,
}

impl Planned {
    pub fn is_empty(&self) -> bool {
        self.copy.is_none() && self.taint.is_none()
    }
}

/// How the rows of one `COPY … TO STDOUT` are masked.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    format: CopyFormat,
    /// Each column's verdict; `None` when only detectors apply.
    verdicts: Option<Vec<Result<Option<usize>, ()>>>,
    /// A CSV header row is still to come (passed as it is).
    header_left: bool,
}

impl CopyPlan {
    /// For a COPY nobody planned: every value withheld.
    pub fn withhold_all() -> CopyPlan {
        CopyPlan {
            format: CopyFormat::Text,
            verdicts: Some(Vec::new()),
            header_left: false,
        }
    }
}

/// PostgreSQL's text COPY format: tab-separated, `\N` for NULL, backslash escapes.
mod copy_text {
    pub fn split(row: &[u8]) -> Vec<Option<Vec<u8>>> {
        let row = row.strip_suffix(b"\n").unwrap_or(row);
        row.split(|&b| b == b'\t')
            .map(|f| (f != b"\\N").then(|| unescape(f)))
            .collect()
    }

    fn unescape(f: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(f.len());
        let mut it = f.iter();
        while let Some(&b) = it.next() {
            if b != b'\\' {
                out.push(b);
                continue;
            }
            match it.next() {
                Some(b'n') => out.push(b'\n'),
                Some(b't') => out.push(b'\t'),
                Some(b'r') => out.push(b'\r'),
                Some(b'b') => out.push(8),
                Some(b'f') => out.push(12),
                Some(b'v') => out.push(11),
                Some(&other) => out.push(other),
                None => out.push(b'\\'),
            }
        }
        out
    }

    pub fn join(fields: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match f {
                None => out.extend_from_slice(b"\\N"),
                Some(v) => {
                    for &b in v {
                        match b {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            8 => out.extend_from_slice(b"\\b"),
                            12 => out.extend_from_slice(b"\\f"),
                            11 => out.extend_from_slice(b"\\v"),
                            _ => out.push(b),
                        }
                    }
                }
            }
        }
        out.push(b'\n');
        out
    }
}

/// PostgreSQL's CSV COPY format with its defaults: `,` between fields, `"` quotes (doubled
/// inside), NULL as an unquoted empty field.
mod copy_csv {
    pub fn split(row: &[u8]) -> Vec<Option<Vec<u8>>> {
        let row = row.strip_suffix(b"\n").unwrap_or(row);
        let mut fields = Vec::new();
        let mut at = 0;
        loop {
            if row.get(at) == Some(&b'"') {
                let mut v = Vec::new();
                at += 1;
                while at < row.len() {
                    if row[at] == b'"' {
                        if row.get(at + 1) == Some(&b'"') {
                            v.push(b'"');
                            at += 2;
                            continue;
                        }
                        at += 1;
                        break;
                    }
                    v.push(row[at]);
                    at += 1;
                }
                fields.push(Some(v));
            } else {
                let end = row[at..]
                    .iter()
                    .position(|&b| b == b',')
                    .map_or(row.len(), |p| at + p);
                let f = &row[at..end];
                fields.push((!f.is_empty()).then(|| f.to_vec()));
                at = end;
            }
            if row.get(at) == Some(&b',') {
                at += 1;
            } else {
                break;
            }
        }
        fields
    }

    pub fn join(fields: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if let Some(v) = f {
                out.push(b'"');
                for &b in v {
                    if b == b'"' {
                        out.push(b'"');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
        out.push(b'\n');
        out
    }
}

enum Masked {
    Same,
    Withheld,
    To(Option<Vec<u8>>),
}

const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const BPCHAR: u32 = 1042;
const NAME: u32 = 19;
const JSON: u32 = 114;
const JSONB: u32 = 3802;
const XML: u32 = 142;
const UNKNOWN: u32 = 705;
const INT2: u32 = 21;
const INT4: u32 = 23;
const INT8: u32 = 20;
const NUMERIC: u32 = 1700;

/// Types whose binary form is their text (jsonb after a version byte).
fn is_text_type(oid: u32) -> bool {
    matches!(
        oid,
        TEXT | VARCHAR | BPCHAR | NAME | JSON | JSONB | XML | UNKNOWN
    )
}

/// Binary types that carry no text and no long digit strings: passed through as they are.
fn is_opaque_safe(oid: u32) -> bool {
    matches!(
        oid,
        16 | 700 | 701 | 1082 | 1083 | 1114 | 1184 | 1186 | 1266 | 2950 | 26 | 18
    )
}

/// The binary value without jsonb's version byte.
fn strip<'a>(f: &Field, v: &'a [u8]) -> &'a [u8] {
    if f.format == 1 && f.type_oid == JSONB {
        v.get(1..).unwrap_or_default()
    } else {
        v
    }
}

/// The value as text detectors can read: text as it is (lossily if it is not UTF-8), binary
/// integers and numerics as their digits (integers written into `digits`, not allocated).
fn readable<'a>(f: &Field, v: &'a [u8], digits: &'a mut itoa::Buffer) -> Option<Cow<'a, str>> {
    if f.format == 0 || is_text_type(f.type_oid) {
        let v = strip(f, v);
        // The strict check is the fast one; the lossy one only for what fails it.
        return Some(match std::str::from_utf8(v) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(v),
        });
    }
    Some(match (f.type_oid, v.len()) {
        (INT2, 2) => Cow::Borrowed(digits.format(i16::from_be_bytes([v[0], v[1]]))),
        (INT4, 4) => Cow::Borrowed(digits.format(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
        (INT8, 8) => Cow::Borrowed(digits.format(i64::from_be_bytes(v.try_into().ok()?))),
        (NUMERIC, _) => Cow::Owned(numeric_digits(v)?),
        _ => return None,
    })
}

/// The digits of a binary numeric, base-10000 groups written out (sign and point dropped):
/// enough to find a card number stored as a number.
fn numeric_digits(v: &[u8]) -> Option<String> {
    let n = i16::from_be_bytes([*v.first()?, *v.get(1)?]);
    let mut out = String::new();
    for i in 0..n.max(0) as usize {
        let at = 8 + 2 * i;
        let d = i16::from_be_bytes([*v.get(at)?, *v.get(at + 1)?]);
        if out.is_empty() {
            out.push_str(&d.to_string());
        } else {
            out.push_str(&format!("{d:04}"));
        }
    }
    Some(out)
}

/// A masked value in the column's format. A `whole` JSON value becomes a JSON string, so the
/// client's parser still accepts it; spans masked inside JSON text keep it valid as they are.
fn encode(f: &Field, s: String, whole: bool) -> Vec<u8> {
    let json = f.type_oid == JSON || f.type_oid == JSONB;
    let text = if json && whole {
        serde_json::Value::String(s).to_string()
    } else {
        s
    };
    if f.format == 1 && f.type_oid == JSONB {
        let mut v = vec![1u8];
        v.extend_from_slice(text.as_bytes());
        return v;
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, table_oid: u32, attnum: i16, type_oid: u32, format: i16) -> Field {
        Field {
            name: name.into(),
            table_oid,
            attnum,
            type_oid,
            format,
        }
    }

    fn rule(columns: &[&str], detectors: &[&str], strategy: Strategy) -> MaskRule {
        MaskRule {
            name: "pii".into(),
            resources: vec![],
            roles: vec![],
            columns: columns
                .iter()
                .map(|c| ColumnPattern::parse(c).unwrap())
                .collect(),
            detectors: detectors
                .iter()
                .map(|d| Detector::parse(d).unwrap())
                .collect(),
            strategy,
        }
    }

    fn session(rules: &[MaskRule]) -> SessionMasking {
        let mut s =
            SessionMasking::for_session(rules, "db", "read", Arc::new(Masker::new([1; 32])))
                .unwrap();
        s.learn(100, 1, "public", "customers", "id");
        s.learn(100, 2, "public", "customers", "email");
        s.learn(100, 3, "public", "customers", "note");
        s
    }

    fn row(values: &[Option<&[u8]>]) -> BytesMut {
        codec::data_row_frame(values.iter().copied())
    }

    fn values(frame: &[u8]) -> Vec<Option<Vec<u8>>> {
        let body = &frame[5..];
        codec::data_row(body)
            .unwrap()
            .into_iter()
            .map(|r| r.map(|r| body[r].to_vec()))
            .collect()
    }

    /// Masks one row of `input` described by `fields`: the row's values after masking, or
    /// `None` if it passes unchanged.
    fn mask(
        s: &mut SessionMasking,
        fields: &[Field],
        input: &[Option<&[u8]>],
        counts: &mut Counts,
    ) -> Option<Vec<Option<Vec<u8>>>> {
        let shape = s.shape(fields.to_vec(), None);
        s.row(Some(&shape), &row(input)[5..], counts)
            .unwrap()
            .map(|out| values(&out))
    }

    #[test]
    fn columns_are_masked_by_identity_whatever_they_are_called() {
        let mut s = session(&[rule(&["public.customers.email"], &[], Strategy::Redact)]);
        let fields = [
            field("id", 100, 1, INT4, 0),
            field("e", 100, 2, TEXT, 0), // SELECT email AS e
        ];
        let mut counts = Counts::default();
        assert_eq!(
            mask(
                &mut s,
                &fields,
                &[Some(b"7"), Some(b"a@example.com")],
                &mut counts
            ),
            Some(vec![Some(b"7".to_vec()), Some(b"*****".to_vec())])
        );
        assert_eq!(s.named(&counts)["pii"], 1);
        // NULL stays NULL and is not counted.
        let mut counts = Counts::default();
        assert!(mask(&mut s, &fields, &[Some(b"7"), None], &mut counts).is_none());
        assert!(counts.is_empty());
    }

    #[test]
    fn values_around_masked_ones_pass_byte_for_byte_in_any_order() {
        // Every arrangement of kept, NULL, whole-column and detected values in one row: the
        // unchanged ones are copied in runs around those written in place.
        let mut s = session(&[
            rule(&["customers.email"], &[], Strategy::Partial { keep: 4 }),
            rule(&["customers.note"], &["card"], Strategy::Hash),
        ]);
        s.catalog_read();
        // (column, value, whether it is masked)
        let kinds: [(Field, &[u8], bool); 5] = [
            (field("id", 100, 1, INT4, 1), &7i32.to_be_bytes(), false),
            (field("email", 100, 2, TEXT, 1), b"bob@example.com", true),
            (field("note", 100, 3, VARCHAR, 0), b"call me", true),
            (
                field("free", 0, 0, TEXT, 0),
                b"card 4111 1111 1111 1111!",
                true,
            ),
            (field("free", 0, 0, TEXT, 0), b"nothing to see", false),
        ];
        let mut memo = HashMemo::new();
        let masker = Masker::new([1; 32]);
        let hash = |v: &str, memo: &mut HashMemo| masker.replace(Strategy::Hash, v, memo).unwrap();
        let expected_note = hash("call me", &mut memo);
        let expected_card = format!("card {}!", hash("4111 1111 1111 1111", &mut memo));
        for order in 0..5usize.pow(4) {
            let picks: Vec<usize> = (0..4).map(|k| order / 5usize.pow(k) % 5).collect();
            for null_at in 0..5 {
                let mut fields = Vec::new();
                let mut input: Vec<Option<&[u8]>> = Vec::new();
                let mut want: Vec<Option<Vec<u8>>> = Vec::new();
                for (at, &k) in picks.iter().enumerate() {
                    if at == null_at {
                        fields.push(field("n", 0, 0, TEXT, 0));
                        input.push(None);
                        want.push(None);
                    }
                    let (f, v, _) = &kinds[k];
                    fields.push(f.clone());
                    input.push(Some(v));
                    want.push(Some(match k {
                        1 => b"***********.com".to_vec(),
                        2 => expected_note.clone().into_bytes(),
                        3 => expected_card.clone().into_bytes(),
                        _ => v.to_vec(),
                    }));
                }
                let changes = picks.iter().any(|&k| kinds[k].2);
                let got = mask(&mut s, &fields, &input, &mut Counts::default());
                if changes {
                    assert_eq!(got, Some(want), "{picks:?}, NULL at {null_at}");
                } else {
                    assert_eq!(got, None, "{picks:?}");
                }
            }
        }
        // A row that breaks off mid-value is an error and leaves the buffer as it was.
        let shape = s.shape(vec![field("email", 100, 2, TEXT, 0)], None);
        let mut broken = row(&[Some(b"bob@example.com")]);
        broken.truncate(broken.len() - 3);
        let mut out = BytesMut::from(&b"before"[..]);
        let mut counts = Counts::default();
        assert!(
            s.row_into(Some(&shape), &broken[5..], &mut counts, b"run", &mut out)
                .is_err()
        );
        assert_eq!(&out[..], b"before");
        // A row with nothing to mask (a NULL stays NULL) writes nothing, not even the run
        // before it; a masked row comes after that run.
        let null = row(&[None]);
        assert!(
            !s.row_into(Some(&shape), &null[5..], &mut counts, b"run", &mut out)
                .unwrap()
        );
        assert_eq!(&out[..], b"before");
        let email = row(&[Some(b"bob@example.com")]);
        assert!(
            s.row_into(Some(&shape), &email[5..], &mut counts, b"run", &mut out)
                .unwrap()
        );
        let masked = s
            .row(Some(&shape), &email[5..], &mut counts)
            .unwrap()
            .unwrap();
        assert_eq!(&out[..9], b"beforerun");
        assert_eq!(&out[9..], &masked[..]);
    }

    #[test]
    fn what_cannot_be_masked_safely_is_withheld() {
        let mut s = session(&[rule(&["email"], &["card"], Strategy::Partial { keep: 4 })]);
        let mut counts = Counts::default();
        // A table created after login: unknown, withheld.
        let fields = [field("x", 999, 1, TEXT, 0)];
        assert_eq!(
            mask(&mut s, &fields, &[Some(b"hi")], &mut counts),
            Some(vec![None])
        );
        // A card number stored as a bigint, sent in binary: withheld.
        let fields = [field("n", 0, 0, INT8, 1)];
        let v = 4111111111111111i64.to_be_bytes();
        assert_eq!(
            mask(&mut s, &fields, &[Some(&v)], &mut counts),
            Some(vec![None])
        );
        // The same in text format: still withheld, `*****` is no bigint.
        let fields_text = [field("n", 0, 0, INT8, 0)];
        assert_eq!(
            mask(
                &mut s,
                &fields_text,
                &[Some(b"4111111111111111")],
                &mut counts
            ),
            Some(vec![None])
        );
        // A plain bigint passes.
        let v = 42i64.to_be_bytes();
        assert!(mask(&mut s, &fields, &[Some(&v)], &mut counts).is_none());
        // A binary type the gateway cannot read (bytea): withheld while detectors run.
        let fields = [field("b", 0, 0, 17, 1)];
        assert_eq!(
            mask(&mut s, &fields, &[Some(b"\x00\x01")], &mut counts),
            Some(vec![None])
        );
        // No row description at all: withheld.
        let out = s
            .row(None, &row(&[Some(b"x")])[5..], &mut counts)
            .unwrap()
            .unwrap();
        assert_eq!(values(&out), vec![None]);
        assert_eq!(s.named(&counts)["withheld"], 5);
    }

    #[test]
    fn detectors_mask_inside_text_in_either_format() {
        let mut s = session(&[rule(&[], &["card", "email"], Strategy::Partial { keep: 4 })]);
        let mut counts = Counts::default();
        for format in [0, 1] {
            let fields = [field("note", 100, 3, TEXT, format)];
            let input = b"card 4111 1111 1111 1111, mail bob@example.com";
            assert_eq!(
                mask(&mut s, &fields, &[Some(input)], &mut counts),
                Some(vec![Some(
                    b"card ***************1111, mail ***********.com".to_vec()
                )])
            );
        }
        assert_eq!(s.named(&counts)["pii:card"], 2);
        assert_eq!(s.named(&counts)["pii:email"], 2);
        // jsonb in binary keeps its version byte and stays valid JSON.
        let fields = [field("doc", 0, 0, JSONB, 1)];
        assert_eq!(
            mask(
                &mut s,
                &fields,
                &[Some(b"\x01{\"to\": \"bob@example.com\"}")],
                &mut counts
            ),
            Some(vec![Some(b"\x01{\"to\": \"***********.com\"}".to_vec())])
        );
    }

    #[test]
    fn views_over_masked_columns_are_masked_whole_even_nested() {
        let mut s = session(&[rule(&["customers.email"], &[], Strategy::Redact)]);
        s.learn(200, 1, "public", "contacts", "contact");
        s.learn(300, 1, "public", "contacts_v2", "c");
        s.learn(400, 1, "public", "ids", "id");
        s.learn_view_read(300, 200, 1); // contacts_v2 reads contacts
        s.learn_view_read(200, 100, 2); // contacts reads customers.email
        s.learn_view_read(400, 100, 1); // ids reads customers.id only
        s.catalog_read();
        let mut counts = Counts::default();
        for (oid, masked) in [(200, true), (300, true), (400, false)] {
            let fields = [field("x", oid, 1, TEXT, 0)];
            let out = mask(&mut s, &fields, &[Some(b"v")], &mut counts);
            assert_eq!(out.is_some(), masked, "view {oid}");
        }
    }

    #[test]
    fn copy_rows_are_masked_in_text_and_csv() {
        let mut s = session(&[
            rule(&["customers.email"], &[], Strategy::Redact),
            MaskRule {
                name: "cards".into(),
                resources: vec![],
                roles: vec![],
                columns: vec![],
                detectors: vec![Detector::Card],
                strategy: Strategy::Partial { keep: 4 },
            },
        ]);
        let mut counts = Counts::default();
        let table = |format| CopyOut::Table {
            schema: None,
            table: "customers".into(),
            columns: vec![],
            format,
        };
        let mut plan = s.copy_plan(table(CopyFormat::Text)).unwrap();
        let out = s
            .copy_row(
                &mut plan,
                b"1\tann@example.com\tcard 4111 1111 1111 1111\\ttab\n",
                &mut counts,
            )
            .unwrap();
        assert_eq!(&out[5..], b"1\t*****\tcard ***************1111\\ttab\n");
        assert!(
            s.copy_row(&mut plan, b"2\t\\N\tnothing\n", &mut counts)
                .is_none()
        );

        let mut plan = s
            .copy_plan(table(CopyFormat::Csv { header: true }))
            .unwrap();
        assert!(
            s.copy_row(&mut plan, b"id,email,note\n", &mut counts)
                .is_none()
        );
        let out = s
            .copy_row(
                &mut plan,
                b"1,ann@example.com,\"a \"\"quoted\"\", note\"\n",
                &mut counts,
            )
            .unwrap();
        assert_eq!(&out[5..], b"\"1\",\"*****\",\"a \"\"quoted\"\", note\"\n");
        assert!(
            s.copy_plan(CopyOut::Query {
                format: CopyFormat::Text
            })
            .is_err()
        );
        assert!(s.copy_plan(CopyOut::Unsupported).is_err());
    }

    #[test]
    fn computed_columns_over_a_masked_column_are_masked() {
        let mut s = session(&[rule(&["customers.email"], &[], Strategy::Redact)]);
        s.catalog_read();
        assert_eq!(s.taint("SELECT lower(email) FROM customers"), Some(0));
        assert_eq!(
            s.taint("SELECT x FROM (SELECT c.EMAIL || '' AS x FROM customers c) s"),
            Some(0)
        );
        assert_eq!(s.taint("SELECT count(*) FROM customers"), None);
        assert_eq!(
            s.taint("SELECT count(*) FROM customers WHERE email IS NOT NULL"),
            None
        );
        assert_eq!(
            s.taint("SELECT email, count(*) FROM customers GROUP BY email"),
            None
        );
        assert_eq!(
            s.taint("SELECT upper(x) FROM (SELECT email AS x FROM customers) s"),
            Some(0)
        );
        assert_eq!(
            s.taint("WITH t AS (SELECT email FROM customers) SELECT * FROM t"),
            Some(0)
        );
        assert_eq!(
            s.taint("SELECT 1 UNION SELECT length(email) FROM customers"),
            Some(0)
        );
        assert_eq!(s.taint("SELECT 'email'"), None, "a string is no column");
        assert_eq!(
            s.taint("SELECT email FROM (((("),
            Some(0),
            "unparsed: assume the worst"
        );
        let computed = [field("lower", 0, 0, TEXT, 0)];
        let mut counts = Counts::default();
        let shape = s.shape(
            computed.to_vec(),
            s.taint("SELECT lower(email) FROM customers"),
        );
        let out = s
            .row(
                Some(&shape),
                &row(&[Some(b"ann@example.com")])[5..],
                &mut counts,
            )
            .unwrap();
        assert_eq!(values(&out.unwrap()), vec![Some(b"*****".to_vec())]);
    }

    #[test]
    fn patterns_parse_and_match() {
        let p = ColumnPattern::parse("*.customers.Email").unwrap();
        assert!(p.matches("sales", "customers", "email"));
        assert!(!p.matches("sales", "orders", "email"));
        assert!(ColumnPattern::parse("email").unwrap().matches_name("email"));
        assert!(
            !ColumnPattern::parse("t.email")
                .unwrap()
                .matches_name("email")
        );
        assert!(ColumnPattern::parse("a.b.c.d").is_none());
        assert!(ColumnPattern::parse("bad name").is_none());
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test --release -p jitgate-gateway masking_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn masking_cost_per_row() {
        let rules = [
            MaskRule {
                name: "pii".into(),
                resources: vec![],
                roles: vec![],
                columns: vec![ColumnPattern::parse("people.email").unwrap()],
                detectors: vec![],
                strategy: Strategy::Partial { keep: 4 },
            },
            MaskRule {
                name: "names".into(),
                resources: vec![],
                roles: vec![],
                columns: vec![ColumnPattern::parse("people.name").unwrap()],
                detectors: vec![],
                strategy: Strategy::Hash,
            },
            MaskRule {
                name: "cards".into(),
                resources: vec![],
                roles: vec![],
                columns: vec![],
                detectors: vec![Detector::Card],
                strategy: Strategy::Redact,
            },
        ];
        let mut s =
            SessionMasking::for_session(&rules, "db", "r", Arc::new(Masker::new([1; 32]))).unwrap();
        let names = [
            "id", "name", "email", "note", "city", "country", "status", "sku", "comment", "created",
        ];
        for (i, n) in names.iter().enumerate() {
            s.learn(100, i as i16 + 1, "public", "people", n);
        }
        s.catalog_read();
        let fields: Vec<Field> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Field {
                name: n.to_string(),
                table_oid: 100,
                attnum: i as i16 + 1,
                type_oid: if i == 0 { INT4 } else { TEXT },
                format: 1,
            })
            .collect();
        let shape = s.shape(fields, None);
        // The rows of the benchmark's table: a thousand different people, one in ten with a
        // card number in its note, read over and over as repeated queries would.
        let frames: Vec<BytesMut> = (1..=1000i32)
            .map(|i| {
                let id = i.to_be_bytes();
                let (name, email) = (format!("Person {i}"), format!("person{i}@example.com"));
                let note: &[u8] = if i % 10 == 0 {
                    b"paid with 4111 1111 1111 1111"
                } else {
                    b"no payment note"
                };
                let sku = format!("SKU-{i}");
                codec::data_row_frame(
                    [
                        &id[..],
                        name.as_bytes(),
                        email.as_bytes(),
                        note,
                        b"Berlin",
                        b"DE",
                        b"active",
                        sku.as_bytes(),
                        b"a comment of ordinary length",
                        b"2026-11-28",
                    ]
                    .into_iter()
                    .map(Some),
                )
            })
            .collect();
        let n = 200_000;
        let mut counts = Counts::default();
        let started = std::time::Instant::now();
        // As a session does: rows written one after another into the buffer sent to the
        // client, which is emptied once sent (a read of up to 64 KiB at a time).
        let mut out = BytesMut::with_capacity(128 * 1024);
        for frame in frames.iter().cycle().take(n) {
            if out.len() >= 64 * 1024 {
                std::hint::black_box(&out);
                out.clear();
            }
            assert!(
                s.row_into(Some(&shape), &frame[5..], &mut counts, &[], &mut out)
                    .unwrap()
            );
        }
        let per = started.elapsed().as_secs_f64() / n as f64 * 1e6;
        eprintln!("masking one 10-column row (1,000 different rows, in turn): {per:.2} µs");
    }
}
