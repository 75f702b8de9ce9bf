//! Names and quoting for what connectors write into SQL. Every identifier and literal that
//! reaches a target goes through one of these functions.

use rand::Rng;
use rand::distr::Alphanumeric;

/// A login name an operator can read: `{prefix}{principal}_{short grant id}`, ASCII `[a-z0-9_]`
/// only, at most `max` bytes. The grant part is always kept whole, so names stay unique.
pub fn login_name(prefix: &str, principal: &str, grant_id: &str, max: usize) -> String {
    let short: String = grant_id
        .strip_prefix("grt_")
        .unwrap_or(grant_id)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let mut who = String::new();
    for c in principal.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if !(c == '_' && (who.is_empty() || who.ends_with('_'))) {
            who.push(c);
        }
    }
    let who = who.trim_end_matches('_');
    let who = if who.is_empty() { "p" } else { who };
    let room = max.saturating_sub(prefix.len() + 1 + short.len());
    let who: String = who.chars().take(room.max(1)).collect();
    format!("{prefix}{}_{short}", who.trim_end_matches('_'))
}

/// The short grant id inside a login name made by [`login_name`].
pub fn grant_id_of(login: &str) -> Option<String> {
    let short = login.rsplit('_').next()?;
    (short.len() == 12 && short.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| format!("grt_{short}"))
}

/// A random password: 32 alphanumerics (~190 bits), safe inside any quoting.
pub fn password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// PostgreSQL identifier: `"…"` with `"` doubled.
pub fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// PostgreSQL string literal, like libpq's `PQescapeLiteral`: `'…'` with `'` doubled, and the
/// `E'…'` form with `\` doubled when a backslash is present, whatever
/// `standard_conforming_strings` says.
pub fn pg_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// MariaDB/MySQL identifier (roles, databases): `` `…` `` with `` ` `` doubled.
pub fn my_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// MariaDB/MySQL string literal, escaped for the default sql_mode (backslash escapes on).
pub fn my_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Percent-encodes a URL component (user, password, database) for a DSN.
pub fn url_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_are_readable_bounded_and_unique_per_grant() {
        assert_eq!(
            login_name("jit_", "alice", "grt_7f3kq2m9x1ab", 63),
            "jit_alice_7f3kq2m9x1ab"
        );
        assert_eq!(
            login_name("jit_", "Robert'); DROP TABLE x;--", "grt_7f3kq2m9x1ab", 63),
            "jit_robert_drop_table_x_7f3kq2m9x1ab"
        );
        assert_eq!(
            login_name("jit_", "José Müller", "grt_7f3kq2m9x1ab", 63),
            "jit_jos_m_ller_7f3kq2m9x1ab"
        );
        assert_eq!(
            login_name("jit_", "日本", "grt_7f3kq2m9x1ab", 63),
            "jit_p_7f3kq2m9x1ab"
        );
        let long = login_name("jit_", &"x".repeat(200), "grt_7f3kq2m9x1ab", 32);
        assert_eq!(long.len(), 32);
        assert!(long.ends_with("_7f3kq2m9x1ab"));
        assert_eq!(grant_id_of(&long).as_deref(), Some("grt_7f3kq2m9x1ab"));
    }

    #[test]
    fn quoting_neutralises_hostile_text() {
        assert_eq!(pg_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(pg_literal("it's"), "'it''s'");
        assert_eq!(pg_literal("a\\'b"), "E'a\\\\''b'");
        assert_eq!(my_ident("we`ird"), "`we``ird`");
        assert_eq!(my_literal("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(url_component("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }
}
