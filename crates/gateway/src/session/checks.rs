//! What the session decides about a SQL text before it is sent: read once ([`crate::sql`]),
//! then the settings jitgate pins, the guardrails, and masking's plan; the verdict is kept per
//! text, so a statement the client repeats costs a hash lookup.
//!
//! Under any rule, jitgate pins what decides how the server reads SQL, so that the guard and
//! masking read the statements the server runs: `standard_conforming_strings` (it decides where
//! a string ends), `backslash_quote`, a client encoding in which a multi-byte character can hide
//! a quote or backslash (SJIS, BIG5, GBK, GB18030, UHC, JOHAB), and a search path that would let
//! other schemas' functions stand in for built-in ones.

use std::sync::Arc;

use super::Session;
use super::tracker::{Part, Plan, SqlEffect};
use crate::guard::{Blocked, SessionGuard};
use crate::masking::{SessionMasking, StatementPlan};
use crate::sql::functions::Functions;
use crate::sql::{self, Effect, Facts, LexMode, Setting};

/// What a SQL text was found to be: blocked, or its plan and what each of its statements does
/// with the session's prepared statements and cursors.
pub(super) type Verdict = Result<Arc<Checked>, Blocked>;

#[derive(Debug)]
pub(super) struct Checked {
    pub plan: StatementPlan,
    pub parts: Vec<Part<StatementPlan>>,
}

/// Client encodings in which the second byte of a character can be an ASCII `\` or `'`.
pub(super) fn unsafe_encoding(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(
        n.as_str(),
        "sjis"
            | "shiftjis"
            | "mskanji"
            | "win932"
            | "windows932"
            | "shiftjis2004"
            | "big5"
            | "win950"
            | "windows950"
            | "gbk"
            | "win936"
            | "windows936"
            | "gb18030"
            | "uhc"
            | "win949"
            | "windows949"
            | "johab"
    )
}

/// PostgreSQL's reading of a boolean setting (unique prefixes of true/false/yes/no, on/off,
/// 1/0).
fn parse_bool(v: &str) -> Option<bool> {
    let v = v.trim().to_ascii_lowercase();
    let prefix_of = |word: &str| !v.is_empty() && word.starts_with(&v);
    match v.as_str() {
        "on" | "1" => Some(true),
        "off" | "of" | "0" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// Why a statement's settings change is refused, if it is.
fn pinned(f: &Facts, lex: LexMode) -> Option<String> {
    for s in &f.settings {
        let (name, value) = match s {
            Setting::Reset(_) => continue,
            Setting::Dynamic => {
                return Some(
                    "it changes a setting whose name is only known when it runs, and jitgate pins the settings that decide how SQL is read".into(),
                );
            }
            Setting::Set { name, value } => (name.as_str(), value.as_deref()),
        };
        let refused = match name {
            "standard_conforming_strings" => {
                value.and_then(parse_bool) != Some(lex.standard_strings)
            }
            "backslash_quote" => true,
            "client_encoding" => value.is_none_or(unsafe_encoding),
            "search_path" => value.is_none_or(|v| {
                v.split(',')
                    .position(|p| p.trim().trim_matches(['"', '\'']) == "pg_catalog")
                    .is_some_and(|at| at > 0)
            }),
            _ => false,
        };
        if refused {
            return Some(format!(
                "jitgate pins {name} for this session (it decides how SQL and function names are read)"
            ));
        }
    }
    None
}

/// Everything a check needs of the session, borrowed apart from its memo.
struct Judges<'a> {
    guard: Option<&'a SessionGuard>,
    masking: Option<&'a SessionMasking>,
    functions: &'a Functions,
    lex: LexMode,
    unsafe_encoding: Option<&'a str>,
}

impl Judges<'_> {
    fn rule(&self) -> String {
        match (self.guard, self.masking) {
            (Some(g), _) => g.first_rule().to_owned(),
            (None, Some(m)) => m.first_rule().to_owned(),
            (None, None) => String::new(),
        }
    }

    fn blocked(&self, why: String) -> Blocked {
        Blocked {
            rule: self.rule(),
            why,
        }
    }

    fn masked(&self, why: String) -> Blocked {
        Blocked {
            rule: self
                .masking
                .map_or_else(|| self.rule(), |m| m.first_rule().to_owned()),
            why: format!("masking applies to this session: {why}"),
        }
    }

    /// The plan of one statement.
    fn plan(&self, f: &Facts, sql: &str) -> Result<StatementPlan, Blocked> {
        match self.masking {
            Some(m) => m.plan_statement(f, sql).map_err(|why| self.masked(why)),
            None => Ok(StatementPlan::default()),
        }
    }

    fn check(&self, sql: &str) -> Verdict {
        if self.guard.is_none() && self.masking.is_none() {
            return Ok(Arc::new(Checked {
                plan: StatementPlan::default(),
                parts: effects_only(sql, self.lex),
            }));
        }
        // In such an encoding a character's second byte can be an ASCII quote or backslash;
        // text of ASCII bytes alone holds no such character and reads the same.
        if let Some(enc) = self.unsafe_encoding.filter(|_| !sql.is_ascii()) {
            return Err(self.blocked(format!(
                "the client encoding {enc} can hide a quote or backslash inside a character; use UTF8"
            )));
        }
        let a = sql::analyze(sql, self.lex);
        for f in &a.statements {
            if let Some(why) = pinned(f, self.lex) {
                return Err(self.blocked(why));
            }
        }
        if let Some(b) = self.guard.and_then(|g| g.judge(&a, Some(self.functions))) {
            return Err(b);
        }
        if self.masking.is_some()
            && a.statements.len() > 1
            && a.statements.iter().any(|f| f.copy.is_some())
        {
            return Err(self.masked("a COPY in a multi-statement query cannot be masked".into()));
        }
        let mut plan = StatementPlan::default();
        let mut parts = Vec::with_capacity(a.statements.len());
        for f in &a.statements {
            plan = plan.join(&self.plan(f, sql)?);
            let inner = match f.nested() {
                Some(inner) => Some(self.plan(inner, sql)?),
                None => None,
            };
            parts.push(part(sql, f.span.clone(), &f.effect, inner));
        }
        Ok(Arc::new(Checked { plan, parts }))
    }
}

/// What a statement does with the session's objects, for the tracker.
fn part(
    sql: &str,
    span: std::ops::Range<usize>,
    effect: &Effect,
    inner: Option<StatementPlan>,
) -> Part<StatementPlan> {
    let text = || Arc::<str>::from(sql.get(span.clone()).unwrap_or_default());
    let mut p = Part {
        effect: SqlEffect::None,
        reads_cursors: Vec::new(),
        executes: Vec::new(),
    };
    p.effect = match effect {
        Effect::None => SqlEffect::None,
        Effect::Prepare { name, .. } => SqlEffect::Prepare {
            name: name.clone(),
            sql: text(),
            plan: inner.unwrap_or_default(),
        },
        Effect::Declare { name, binary, .. } => SqlEffect::Declare {
            name: name.clone(),
            sql: text(),
            plan: inner.unwrap_or_default(),
            binary: *binary,
        },
        Effect::Execute { name } => {
            p.executes.push(name.clone());
            SqlEffect::None
        }
        Effect::Fetch { cursor } => {
            p.reads_cursors.push(cursor.clone());
            SqlEffect::None
        }
        Effect::Deallocate(n) => SqlEffect::Deallocate(n.clone()),
        Effect::Close(n) => SqlEffect::Close(n.clone()),
        Effect::DiscardAll => SqlEffect::DiscardAll,
    };
    p
}

/// For a session no rule applies to: only what its statements do with prepared statements and
/// cursors (for the audit of what an Execute runs).
fn effects_only(sql: &str, lex: LexMode) -> Vec<Part<StatementPlan>> {
    sql::effects(sql, lex)
        .unwrap_or_default()
        .into_iter()
        .map(|(span, effect)| part(sql, span, &effect, None))
        .collect()
}

impl Session<'_> {
    /// The verdict on a SQL text: blocked, or what it is.
    pub(super) fn check(&mut self, sql: &str) -> Verdict {
        let judges = Judges {
            guard: self.guard.as_ref(),
            masking: self.masking.as_ref(),
            functions: &self.functions,
            lex: self.lex,
            unsafe_encoding: self.unsafe_encoding.as_deref(),
        };
        self.checked.get(sql, || judges.check(sql))
    }

    /// A FunctionCall (fastpath): a function by OID, with no SQL to check.
    pub(super) fn check_function_call(&self) -> Option<Blocked> {
        if let Some(b) = self.guard.as_ref().and_then(SessionGuard::function_call) {
            return Some(b);
        }
        self.masking.as_ref().filter(|m| m.by_column()).map(|m| Blocked {
            rule: m.first_rule().to_owned(),
            why: "masking applies to this session: a function call by OID cannot be checked for what it reads or keeps".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(sql: &str) -> Facts {
        sql::analyze(sql, LexMode::default())
            .statements
            .into_iter()
            .next()
            .expect("a statement")
    }

    #[test]
    fn the_settings_that_decide_how_sql_is_read_are_pinned() {
        let on = LexMode::default();
        for sql in [
            "SET standard_conforming_strings = off",
            "SET SESSION standard_conforming_strings TO 'no'",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            "SELECT set_config('standard_conforming_strings', x, false) FROM t",
            "SELECT set_config(n, 'off', false) FROM t",
            "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
            "SET backslash_quote = on",
            "SET client_encoding = 'SJIS'",
            "SET NAMES 'Shift_JIS'",
            "SET search_path = public, pg_catalog",
        ] {
            assert!(pinned(&facts(sql), on).is_some(), "not pinned: {sql}");
        }
        for sql in [
            "SET standard_conforming_strings = on",
            "SET standard_conforming_strings TO DEFAULT",
            "RESET ALL",
            "SET client_encoding = 'UTF8'",
            "SET search_path = pg_catalog, public",
            "SET search_path = myschema",
            "SET application_name = 'x'",
            "SELECT set_config('application_name', 'x', false)",
        ] {
            assert_eq!(pinned(&facts(sql), on), None, "{sql}");
        }
        let off = LexMode {
            standard_strings: false,
        };
        assert!(pinned(&facts("SET standard_conforming_strings = on"), off).is_some());
        assert!(unsafe_encoding("WIN932") && unsafe_encoding("gb-18030"));
        assert!(
            !unsafe_encoding("UTF8") && !unsafe_encoding("LATIN1") && !unsafe_encoding("EUC_JP")
        );
    }
}
