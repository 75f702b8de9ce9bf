//! What a statement does, read once for both the guard and masking: the statements of a SQL
//! text as PostgreSQL splits them ([`lexer`]), and for each the kinds of change it makes, the
//! relations it names, the functions it calls, the values it returns or stores, the session
//! objects it makes or uses (prepared statements, cursors), the settings it changes, and its
//! COPY. Names are folded as PostgreSQL folds them.
//!
//! Each statement is read by the SQL parser from the lexer's canonical rendering of its tokens,
//! so the parser and the server agree on what is a string, a comment and a statement boundary.
//! What the parser cannot read is still split and scanned for keywords, and marked unparsed.

pub mod copy;
pub mod functions;
mod kinds;
pub mod lexer;
mod tokens;
mod walk;

use std::collections::HashMap;
use std::ops::Range;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

pub use copy::{CopyFormat, CopyOut};
pub use kinds::Kind;
pub use lexer::LexMode;

/// A relation or function name, folded: `schema.name` or `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    pub schema: Option<String>,
    pub name: String,
}

impl Name {
    pub fn bare(name: &str) -> Name {
        Name {
            schema: None,
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A value a statement computes: the names it refers to, and whether it holds anything that
/// reads values some other way (a subquery, a whole-row `t.*`, a field of a composite value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Value {
    /// Every column name referred to, its last part folded.
    pub names: Vec<String>,
    pub opaque: bool,
    /// A `*` or `t.*` item, which PostgreSQL expands into columns it describes one by one.
    pub wildcard: bool,
    /// A bare column reference (`email`, `c.email`): in a result, PostgreSQL reports it by its
    /// table and column, so it computes nothing.
    pub plain: bool,
}

/// What a statement returns and stores, for masking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    /// Its result columns: the outermost select list (each side of a set operation), the rows
    /// of a `VALUES`, `RETURNING`.
    pub outputs: Vec<Value>,
    /// What it writes into tables: an INSERT's source values, UPDATE and `ON CONFLICT` SET
    /// values.
    pub stored: Vec<Value>,
    /// `MERGE`: values flow between tables in ways not listed here.
    pub merges: bool,
    /// It makes a relation from a query: `CREATE TABLE … AS`, `CREATE VIEW`, `SELECT … INTO`.
    pub creates_from_query: bool,
    /// Its FROM clauses hold more than named relations and joins: subqueries, functions,
    /// `VALUES`, column alias lists. Names then may stand for computed columns.
    pub complex: bool,
    /// Names it defines (table and column aliases, CTE names) and the names of relations it
    /// reads: a reference to one of these is no plain table column.
    pub defined: Vec<String>,
    /// CTE names, which relation names may refer to instead of a table.
    pub ctes: Vec<String>,
}

/// A change to the session's objects that a statement makes, or one it reads through.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    /// `PREPARE name AS statement`.
    Prepare {
        name: String,
        inner: Box<Facts>,
    },
    /// `EXECUTE name`.
    Execute {
        name: String,
    },
    /// `DEALLOCATE name` (or ALL: `None`).
    Deallocate(Option<String>),
    /// `DECLARE name [BINARY] CURSOR … FOR query`.
    Declare {
        name: String,
        binary: bool,
        query: Box<Facts>,
    },
    /// `FETCH`/`MOVE` from a cursor.
    Fetch {
        cursor: String,
    },
    /// `CLOSE name` (or ALL: `None`).
    Close(Option<String>),
    DiscardAll,
}

/// A setting a statement changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `SET name = value`, `set_config('name', 'value', …)` (`None`: a value computed when
    /// it runs).
    Set { name: String, value: Option<String> },
    /// `RESET name` or `SET name TO DEFAULT` (`None`: `RESET ALL`).
    Reset(Option<String>),
    /// A setting whose name is not known before it runs (`set_config(x, …)`), or a write to
    /// `pg_settings`.
    Dynamic,
}

/// One statement, as far as it can be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// Where it is in the SQL text.
    pub span: Range<usize>,
    /// The SQL parser read it (otherwise only its tokens were scanned).
    pub parsed: bool,
    pub kinds: Vec<Kind>,
    /// Every relation it names: read, written, dropped, copied.
    pub tables: Vec<Name>,
    /// Every function it calls, table functions and `CALL` included.
    pub functions: Vec<Name>,
    /// A `DO` block.
    pub do_block: bool,
    pub effect: Effect,
    pub settings: Vec<Setting>,
    /// Relations it creates (for a name shadowing a masked one).
    pub creates: Vec<Name>,
    pub copy: Option<CopyOut>,
    pub values: Values,
}

impl Facts {
    fn unparsed(span: Range<usize>) -> Facts {
        Facts {
            span,
            parsed: false,
            kinds: Vec::new(),
            tables: Vec::new(),
            functions: Vec::new(),
            do_block: false,
            effect: Effect::None,
            settings: Vec::new(),
            creates: Vec::new(),
            copy: None,
            values: Values {
                complex: true,
                ..Values::default()
            },
        }
    }

    /// What the guard cannot see into: a `DO` block, or SQL the parser cannot read.
    pub fn opaque(&self) -> bool {
        self.do_block || !self.parsed
    }

    pub fn add_kind(&mut self, k: Kind) {
        if !self.kinds.contains(&k) {
            self.kinds.push(k);
        }
    }

    /// The statements a cursor or prepared statement it makes runs, which the guard judges as
    /// its own.
    pub fn nested(&self) -> Option<&Facts> {
        match &self.effect {
            Effect::Prepare { inner, .. } => Some(inner),
            Effect::Declare { query, .. } => Some(query),
            _ => None,
        }
    }
}

/// Every statement of a SQL text.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub statements: Vec<Facts>,
    /// The lexer cannot split it: the server should refuse the whole text before running any
    /// of it (an unterminated string or comment, a bad escape). It is judged fail-closed all
    /// the same, as one unparsed statement with every keyword in its text.
    pub refused: bool,
}

/// Reads `sql` as the server will, given how this session reads strings.
pub fn analyze(sql: &str, mode: LexMode) -> Analysis {
    let statements = match lexer::statements(sql, mode) {
        Ok(s) => s,
        Err(_) => {
            let mut f = Facts::unparsed(0..sql.len());
            kinds::scanned_text(sql, &mut f);
            return Analysis {
                statements: vec![f],
                refused: true,
            };
        }
    };
    Analysis {
        statements: statements.iter().map(|s| statement(sql, s)).collect(),
        refused: false,
    }
}

/// What each statement of `sql` does with the session's prepared statements and cursors, from
/// its tokens alone (for a session no rule applies to, which needs nothing more): where it is
/// in the text, and its effect. `None` if the text cannot even be split.
pub fn effects(sql: &str, mode: LexMode) -> Option<Vec<(Range<usize>, Effect)>> {
    const WORDS: [&str; 8] = [
        "prepare",
        "execute",
        "deallocate",
        "declare",
        "fetch",
        "move",
        "close",
        "discard",
    ];
    if !WORDS.iter().any(|w| mentions(sql, w)) {
        return Some(Vec::new());
    }
    let statements = lexer::statements(sql, mode).ok()?;
    Some(
        statements
            .iter()
            .map(|s| {
                let effect = match tokens::effect(&s.tokens) {
                    tokens::TokenEffect::Prepare { name, inner } => Effect::Prepare {
                        name,
                        inner: Box::new(Facts::unparsed(s.tokens[inner].span.start..s.span.end)),
                    },
                    tokens::TokenEffect::Declare {
                        name,
                        binary,
                        query,
                    } => Effect::Declare {
                        name,
                        binary,
                        query: Box::new(Facts::unparsed(s.tokens[query].span.start..s.span.end)),
                    },
                    tokens::TokenEffect::Other(e) => e,
                };
                (s.span.clone(), effect)
            })
            .collect(),
    )
}

/// Whether `word` appears in `sql`, in any case: a cheap test before reading it.
pub fn mentions(sql: &str, word: &str) -> bool {
    sql.as_bytes()
        .windows(word.len().max(1))
        .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

/// Statements read whole from their tokens, which compute and read no values.
const TOKEN_READ: &[&str] = &[
    "fetch",
    "move",
    "close",
    "deallocate",
    "discard",
    "begin",
    "start",
    "commit",
    "end",
    "rollback",
    "abort",
    "savepoint",
    "release",
    "listen",
    "unlisten",
    "show",
    "reset",
    "set",
];

/// One statement from its tokens.
fn statement(sql: &str, s: &lexer::Statement) -> Facts {
    let canonical = s.canonical(sql);
    let mut facts = match Parser::parse_sql(&PostgreSqlDialect {}, &canonical) {
        Ok(parsed) if parsed.len() == 1 => walk::facts(&parsed[0], s.span.clone()),
        _ => {
            let mut f = Facts::unparsed(s.span.clone());
            kinds::scanned(&s.tokens, &mut f);
            tokens::functions(&s.tokens, &mut f.functions);
            f
        }
    };
    // Session objects and settings are read from the tokens, parsed or not: the statements that
    // make them have simple shapes, and the parser does not know them all.
    tokens::settings(&s.tokens, &mut facts.settings);
    // pg_settings takes writes as set_config does.
    let writes = [Kind::Update, Kind::Insert, Kind::Delete, Kind::Merge];
    if facts.kinds.iter().any(|k| writes.contains(k))
        && facts.tables.iter().any(|t| t.name == "pg_settings")
    {
        facts.settings.push(Setting::Dynamic);
    }
    let created = facts.creates.clone();
    facts.tables.extend(created);
    let effect = tokens::effect(&s.tokens);
    facts.effect = match effect {
        tokens::TokenEffect::Prepare { name, inner } => Effect::Prepare {
            name,
            inner: Box::new(sub_statement(sql, s, inner)),
        },
        tokens::TokenEffect::Declare {
            name,
            binary,
            query,
        } => Effect::Declare {
            name,
            binary,
            query: Box::new(sub_statement(sql, s, query)),
        },
        tokens::TokenEffect::Other(e) => e,
    };
    // Utility statements whose every part the tokens tell (a cursor's name, a count, a
    // literal): what the parser does not know of them (FETCH without FROM, DECLARE … BINARY)
    // leaves nothing unread. A DECLARE or PREPARE is as read as the statement it makes.
    if !facts.parsed {
        let first = match s.tokens.first().map(|t| &t.tok) {
            Some(lexer::Tok::Word(w)) => w.as_str(),
            _ => "",
        };
        facts.parsed = match &facts.effect {
            Effect::Prepare { inner, .. } => inner.parsed,
            Effect::Declare { query, .. } => query.parsed,
            _ => TOKEN_READ.contains(&first),
        };
    }
    if let Some(inner) = facts.nested().cloned() {
        // What a prepared statement or cursor will run is judged where it is made: its kinds,
        // tables and functions count as this statement's.
        for k in inner.kinds {
            facts.add_kind(k);
        }
        facts.tables.extend(inner.tables);
        facts.functions.extend(inner.functions);
        facts.do_block |= inner.do_block;
    }
    facts
}

/// The statement made of the tokens of `s` from index `from` on.
fn sub_statement(sql: &str, s: &lexer::Statement, from: usize) -> Facts {
    let tokens = s.tokens[from..].to_vec();
    let span = match (tokens.first(), tokens.last()) {
        (Some(a), Some(b)) => a.span.start..b.span.end,
        _ => s.span.end..s.span.end,
    };
    statement(sql, &lexer::Statement { tokens, span })
}

/// Results by SQL text, kept per session: clients repeat the same statements, and parsing is
/// the expensive part. Past [`Memo::ENTRIES`] entries it starts over.
pub struct Memo<T> {
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
    pub const ENTRIES: usize = 512;

    pub fn get(&mut self, sql: &str, compute: impl FnOnce() -> T) -> T {
        if let Some(v) = self.by_sql.get(sql) {
            return v.clone();
        }
        let v = compute();
        if self.by_sql.len() >= Self::ENTRIES {
            self.by_sql.clear();
        }
        self.by_sql.insert(sql.to_owned(), v.clone());
        v
    }

    /// Forgets everything (the way SQL is read changed).
    pub fn clear(&mut self) {
        self.by_sql.clear();
    }
}

/// An identifier as PostgreSQL keeps it: unquoted ones in lower case, at most 63 bytes.
pub fn fold(i: &sqlparser::ast::Ident) -> String {
    let value = if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    };
    lexer::truncate_ident(value)
}

/// A dotted name's last two parts, folded; a part computed by a function matches anything.
pub fn name_of(name: &sqlparser::ast::ObjectName) -> Option<Name> {
    use sqlparser::ast::ObjectNamePart;
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => fold(i),
            ObjectNamePart::Function(_) => "*".into(),
        })
        .collect();
    match parts.as_slice() {
        [] => None,
        [t] => Some(Name::bare(t)),
        [.., s, t] => Some(Name {
            schema: Some(s.clone()),
            name: t.clone(),
        }),
    }
}

#[cfg(test)]
mod tests;
