//! What a masking rule names and how it replaces a value: shared by the two places that
//! enforce masking, the database (masked views made by the PostgreSQL connector) and the
//! gateway (rows rewritten on their way to the client), so both read a rule the same way.

use std::fmt;

/// How a masked value is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// A fixed mask that tells nothing, not even the length.
    Redact,
    /// Everything but the last `keep` characters becomes `*`; never more than half are kept.
    Partial { keep: usize },
    /// A keyed HMAC-SHA-256 of the value (hex, 16 characters): equal values mask equally, so
    /// joins and GROUP BY still line up, and without the key nobody can test a guess.
    Hash,
    /// The whole value becomes NULL.
    Null,
}

/// What `redact` writes, whatever the value.
pub const REDACTED: &str = "*****";

/// `column`, `table.column` or `schema.table.column`; any part may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPattern {
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: String,
}

impl ColumnPattern {
    /// Parts compare as PostgreSQL folds unquoted names: in lower case.
    pub fn parse(text: &str) -> Option<ColumnPattern> {
        let mut parts = name_parts(text)?;
        if parts.len() > 3 {
            return None;
        }
        let column = parts.pop()?;
        let table = parts.pop();
        Some(ColumnPattern {
            schema: parts.pop(),
            table,
            column,
        })
    }

    /// Whether the table column `schema.table.column` matches.
    pub fn matches(&self, schema: &str, table: &str, column: &str) -> bool {
        let part = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w == "*" || w == have)
        };
        (self.column == "*" || self.column == column)
            && part(&self.table, table)
            && part(&self.schema, schema)
    }

    /// Whether a result column that is no table's column, named `name`, matches.
    pub fn matches_name(&self, name: &str) -> bool {
        self.table.is_none() && (self.column == "*" || self.column == name)
    }
}

impl fmt::Display for ColumnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in [&self.schema, &self.table].into_iter().flatten() {
            write!(f, "{p}.")?;
        }
        f.write_str(&self.column)
    }
}

/// The dot-separated parts of a name in a rule, in lower case as PostgreSQL folds unquoted
/// names; each part is a plain name or `*`. `None` if any part is not.
pub fn name_parts(text: &str) -> Option<Vec<String>> {
    let ok = |p: &str| {
        !p.is_empty()
            && (p == "*"
                || p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$'))
    };
    text.to_ascii_lowercase()
        .split('.')
        .map(|p| ok(p).then(|| p.to_owned()))
        .collect()
}

/// Whether a rule limited to `resources` and `roles` (empty: all) applies to a grant.
pub fn in_scope(resources: &[String], roles: &[String], resource: &str, role: &str) -> bool {
    (resources.is_empty() || resources.iter().any(|r| r == resource))
        && (roles.is_empty() || roles.iter().any(|r| r == role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_fold_case_and_match_by_part() {
        let p = ColumnPattern::parse("Public.Customers.EMAIL").unwrap();
        assert!(p.matches("public", "customers", "email"));
        assert!(!p.matches("other", "customers", "email"));
        let any = ColumnPattern::parse("*.card_number").unwrap();
        assert!(any.matches("s", "payments", "card_number"));
        assert!(
            !any.matches_name("card_number"),
            "a table part never matches a bare name"
        );
        let bare = ColumnPattern::parse("ssn").unwrap();
        assert!(bare.matches("a", "b", "ssn") && bare.matches_name("ssn"));
        assert_eq!(ColumnPattern::parse("a.b.c.d"), None);
        assert_eq!(ColumnPattern::parse("a.\"b\""), None);
        assert_eq!(p.to_string(), "public.customers.email");
    }
}
