//! The kinds of change a statement makes, for guardrails: from the syntax tree when the parser
//! read it, from its keywords when it did not (which over-counts rather than under-counts).

use sqlparser::ast::{
    CopyTarget, MergeAction, MergeClauseKind, ObjectType, OnConflictAction, OnInsert, SetExpr,
    Statement,
};

use super::lexer::{Tok, Token};
use super::{Facts, name_of};

/// Statement kinds a rule can deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `CREATE`, `ALTER`, `DROP`, `COMMENT`, `GRANT`, `REVOKE`, `SECURITY LABEL`, and
    /// `SELECT … INTO` (which creates a table).
    Ddl,
    Drop,
    Truncate,
    AlterSystem,
    /// `COPY … TO/FROM PROGRAM`: runs a shell command on the database server.
    CopyProgram,
    /// `COPY … TO/FROM 'file'` on the database server's file system.
    CopyFile,
    /// DELETE, and MERGE's `WHEN MATCHED THEN DELETE`.
    Delete,
    DeleteWithoutWhere,
    /// UPDATE, MERGE's `WHEN MATCHED THEN UPDATE`, and `INSERT … ON CONFLICT DO UPDATE`.
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

    pub fn describe(self) -> &'static str {
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

/// The kinds of one statement the parser read (nested ones are visited one by one).
pub(super) fn parsed(s: &Statement, f: &mut Facts) {
    match s {
        Statement::Drop {
            object_type, names, ..
        } => {
            f.add_kind(Kind::Drop);
            f.add_kind(Kind::Ddl);
            if matches!(
                object_type,
                ObjectType::Table | ObjectType::View | ObjectType::MaterializedView
            ) {
                f.tables.extend(names.iter().filter_map(name_of));
            }
        }
        Statement::Truncate(_) => f.add_kind(Kind::Truncate),
        Statement::Delete(d) => {
            f.add_kind(Kind::Delete);
            if d.selection.is_none() {
                f.add_kind(Kind::DeleteWithoutWhere);
            }
        }
        Statement::Update(u) => {
            f.add_kind(Kind::Update);
            if u.selection.is_none() {
                f.add_kind(Kind::UpdateWithoutWhere);
            }
        }
        Statement::Insert(i) => {
            f.add_kind(Kind::Insert);
            if let Some(OnInsert::OnConflict(c)) = &i.on
                && let OnConflictAction::DoUpdate(u) = &c.action
            {
                f.add_kind(Kind::Update);
                // Rows from a query can meet every row of the table; VALUES only so many.
                let bounded = i
                    .source
                    .as_ref()
                    .is_some_and(|q| matches!(q.body.as_ref(), SetExpr::Values(_)));
                if u.selection.is_none() && !bounded {
                    f.add_kind(Kind::UpdateWithoutWhere);
                }
            }
        }
        Statement::Merge(m) => {
            f.add_kind(Kind::Merge);
            for c in &m.clauses {
                // The ON condition cannot tell how many rows match: a clause with no AND
                // condition of its own counts as one without WHERE.
                let unconditioned = c.predicate.is_none();
                let matched = matches!(
                    c.clause_kind,
                    MergeClauseKind::Matched | MergeClauseKind::NotMatchedBySource
                );
                match &c.action {
                    MergeAction::Delete { .. } if matched => {
                        f.add_kind(Kind::Delete);
                        if unconditioned {
                            f.add_kind(Kind::DeleteWithoutWhere);
                        }
                    }
                    MergeAction::Update(_) => {
                        f.add_kind(Kind::Update);
                        if unconditioned {
                            f.add_kind(Kind::UpdateWithoutWhere);
                        }
                    }
                    MergeAction::Insert(_) => f.add_kind(Kind::Insert),
                    _ => {}
                }
            }
        }
        Statement::Copy { target, .. } => match target {
            CopyTarget::Program { .. } => f.add_kind(Kind::CopyProgram),
            CopyTarget::File { .. } => f.add_kind(Kind::CopyFile),
            CopyTarget::Stdin | CopyTarget::Stdout => {}
        },
        Statement::Query(q) => {
            if let SetExpr::Select(s) = q.body.as_ref()
                && s.into.is_some()
            {
                // SELECT … INTO creates a table.
                f.add_kind(Kind::Ddl);
            }
        }
        other => {
            // The rest is told apart by the statement's leading keywords, as rendered by the
            // parser: whatever CREATE/ALTER/… variant the parser grows next is still DDL.
            let text = other.to_string();
            let mut words = text.split_ascii_whitespace().map(str::to_ascii_uppercase);
            let first = words.next().unwrap_or_default();
            let second = words.next().unwrap_or_default();
            match (first.as_str(), second.as_str()) {
                ("ALTER", "SYSTEM") => {
                    f.add_kind(Kind::AlterSystem);
                    f.add_kind(Kind::Ddl);
                }
                ("CREATE" | "ALTER" | "COMMENT" | "GRANT" | "REVOKE", _)
                | ("SECURITY", "LABEL") => f.add_kind(Kind::Ddl),
                ("DO", _) => {
                    f.add_kind(Kind::Do);
                    f.do_block = true;
                }
                _ => {}
            }
        }
    }
}

/// For a statement the parser rejects: kinds by keyword anywhere in it.
pub(super) fn scanned(tokens: &[Token], f: &mut Facts) {
    let words: Vec<&str> = tokens
        .iter()
        .map(|t| match &t.tok {
            Tok::Word(w) => w.as_str(),
            _ => "",
        })
        .collect();
    scanned_words(&words, f);
}

/// For a text even the lexer cannot split (the server refuses it, unless the lexer is wrong):
/// kinds by every word in it, strings and comments included, which over-counts.
pub(super) fn scanned_text(sql: &str, f: &mut Facts) {
    let lower = sql.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    scanned_words(&words, f);
}

fn scanned_words(words: &[&str], f: &mut Facts) {
    let has = |k: &str| words.contains(&k);
    let has_where = has("where");
    for (i, w) in words.iter().enumerate() {
        match *w {
            "drop" => {
                f.add_kind(Kind::Drop);
                f.add_kind(Kind::Ddl);
            }
            "truncate" => f.add_kind(Kind::Truncate),
            "create" | "comment" | "grant" | "revoke" => f.add_kind(Kind::Ddl),
            // SELECT … INTO creates a table; INSERT INTO and MERGE INTO do not.
            "into" if i == 0 || !matches!(words[i - 1], "insert" | "merge") => {
                f.add_kind(Kind::Ddl)
            }
            "alter" => {
                f.add_kind(Kind::Ddl);
                if words.get(i + 1) == Some(&"system") {
                    f.add_kind(Kind::AlterSystem);
                }
            }
            "delete" => {
                f.add_kind(Kind::Delete);
                if !has_where {
                    f.add_kind(Kind::DeleteWithoutWhere);
                }
            }
            "update" => {
                f.add_kind(Kind::Update);
                if !has_where {
                    f.add_kind(Kind::UpdateWithoutWhere);
                }
            }
            "insert" => f.add_kind(Kind::Insert),
            "merge" => f.add_kind(Kind::Merge),
            "program" if has("copy") => f.add_kind(Kind::CopyProgram),
            _ => {}
        }
    }
    if words.first() == Some(&"do") {
        f.add_kind(Kind::Do);
        f.do_block = true;
    }
    if has("copy") && !has("program") && !has("stdin") && !has("stdout") {
        f.add_kind(Kind::CopyFile);
    }
}
