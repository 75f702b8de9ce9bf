//! SQL split into tokens where PostgreSQL's own scanner (`scan.l`) splits it: comments (nested
//! ones too), string constants of every form (`'…'`, `E'…'`, `U&'…'`, `B'…'`, `X'…'`, `N'…'`,
//! dollar quoting, continuation over a newline), quoted identifiers (`"…"`, `U&"…"`), and the
//! one setting that changes where a string ends: with `standard_conforming_strings = off`, a
//! backslash escapes a quote in a plain `'…'` string too.
//!
//! The guard and masking judge statements by these tokens, so a statement PostgreSQL reads as
//! three cannot pass as one. The SQL parser then reads a canonical rendering of them (every
//! string in plain `'…'` form, identifiers decoded, no comments), on which it cannot disagree
//! with the server about what is a string, a comment or a statement boundary.

use std::ops::Range;

/// PostgreSQL's limit on identifier length (NAMEDATALEN - 1): longer names are truncated.
const MAX_IDENT: usize = 63;

/// How the server reads string constants in this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LexMode {
    /// `standard_conforming_strings`: when off, `\` is an escape in plain `'…'` strings.
    pub standard_strings: bool,
}

impl Default for LexMode {
    fn default() -> Self {
        LexMode {
            standard_strings: true,
        }
    }
}

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// An unquoted identifier or keyword, folded as PostgreSQL folds it (ASCII lower case).
    Word(String),
    /// A quoted identifier, decoded (`"a""b"` is `a"b`; `U&"\0061"` is `a`).
    Quoted(String),
    /// A string constant, decoded. `bits` is `b` or `x` for bit-string constants.
    Str {
        value: String,
        bits: Option<char>,
    },
    Number,
    /// `$1`, `$2`, …
    Param,
    /// Operator characters, and `::`, `:=`, `=>`, `..`.
    Op,
    /// `(`, `)`, `[`, `]`, `,`, `;`, `:`, `.`, or any other single character.
    Char(char),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    /// Where it is in the SQL text.
    pub span: Range<usize>,
}

impl Token {
    pub fn is_word(&self, w: &str) -> bool {
        matches!(&self.tok, Tok::Word(x) if x == w)
    }

    pub fn is_char(&self, c: char) -> bool {
        self.tok == Tok::Char(c)
    }

    /// The name this token stands for as an identifier: a word or a quoted identifier.
    pub fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) | Tok::Quoted(w) => Some(w),
            _ => None,
        }
    }
}

/// The server would refuse this SQL before running any of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError(pub String);

/// One statement: its tokens and where it is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub tokens: Vec<Token>,
    pub span: Range<usize>,
}

impl Statement {
    /// The statement as the SQL parser should read it: strings in plain `'…'` form, quoted
    /// identifiers decoded and quoted plainly, comments gone, tokens apart as they were.
    pub fn canonical(&self, sql: &str) -> String {
        let mut out = String::with_capacity(self.span.len() + 8);
        let mut last_end = None;
        for t in &self.tokens {
            if let Some(end) = last_end
                && end < t.span.start
            {
                out.push(' ');
            }
            match &t.tok {
                Tok::Quoted(name) => {
                    out.push('"');
                    out.push_str(&name.replace('"', "\"\""));
                    out.push('"');
                }
                Tok::Str { value, bits } => {
                    if let Some(b) = bits {
                        out.push(b.to_ascii_uppercase());
                    }
                    out.push('\'');
                    out.push_str(&value.replace('\'', "''"));
                    out.push('\'');
                }
                _ => out.push_str(&sql[t.span.clone()]),
            }
            last_end = Some(t.span.end);
        }
        out
    }
}

/// The statements of `sql`, split at every `;` (a `;` PostgreSQL would not accept there makes
/// the whole text fail, so splitting there too sees more statements, never fewer). Empty
/// statements are dropped.
pub fn statements(sql: &str, mode: LexMode) -> Result<Vec<Statement>, LexError> {
    let tokens = tokenize(sql, mode)?;
    let mut out = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    for t in tokens {
        if t.is_char(';') {
            if let (Some(first), Some(last)) = (current.first(), current.last()) {
                let span = first.span.start..last.span.end;
                out.push(Statement {
                    tokens: std::mem::take(&mut current),
                    span,
                });
            }
            continue;
        }
        current.push(t);
    }
    if let (Some(first), Some(last)) = (current.first(), current.last()) {
        let span = first.span.start..last.span.end;
        out.push(Statement {
            tokens: current,
            span,
        });
    }
    Ok(out)
}

/// Every token of `sql`.
pub fn tokenize(sql: &str, mode: LexMode) -> Result<Vec<Token>, LexError> {
    let mut lx = Lexer {
        s: sql.as_bytes(),
        sql,
        at: 0,
        mode,
    };
    let mut out = Vec::new();
    while let Some(t) = lx.next()? {
        out.push(t);
    }
    Ok(out)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn is_op_char(b: u8) -> bool {
    b"~!@#^&|`?+-*/%<>=".contains(&b)
}

/// An identifier as PostgreSQL keeps it: at most 63 bytes, cut at a character boundary.
pub fn truncate_ident(mut name: String) -> String {
    if name.len() > MAX_IDENT {
        let mut end = MAX_IDENT;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

struct Lexer<'a> {
    s: &'a [u8],
    sql: &'a str,
    at: usize,
    mode: LexMode,
}

impl Lexer<'_> {
    fn peek(&self, k: usize) -> Option<u8> {
        self.s.get(self.at + k).copied()
    }

    fn err<T>(&self, what: &str) -> Result<T, LexError> {
        Err(LexError(format!("{what} at byte {}", self.at)))
    }

    /// Skips whitespace and comments.
    fn skip_blank(&mut self) -> Result<(), LexError> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(b), _) if is_space(b) => self.at += 1,
                (Some(b'-'), Some(b'-')) => {
                    while let Some(b) = self.peek(0) {
                        if b == b'\n' || b == b'\r' {
                            break;
                        }
                        self.at += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => self.block_comment()?,
                _ => return Ok(()),
            }
        }
    }

    fn block_comment(&mut self) -> Result<(), LexError> {
        let mut depth = 0usize;
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(b'/'), Some(b'*')) => {
                    depth += 1;
                    self.at += 2;
                }
                (Some(b'*'), Some(b'/')) => {
                    depth -= 1;
                    self.at += 2;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (Some(_), _) => self.at += 1,
                (None, _) => return self.err("unterminated /* comment"),
            }
        }
    }

    fn next(&mut self) -> Result<Option<Token>, LexError> {
        self.skip_blank()?;
        let start = self.at;
        let Some(b) = self.peek(0) else {
            return Ok(None);
        };
        let next = self.peek(1);
        let lower = b.to_ascii_lowercase();
        let tok = match (lower, next) {
            (b'e', Some(b'\'')) => {
                self.at += 1;
                self.string(true, None)?
            }
            (b'b' | b'x', Some(b'\'')) => {
                self.at += 1;
                self.bits(lower as char)?
            }
            (b'n', Some(b'\'')) => {
                self.at += 1;
                self.string(!self.mode.standard_strings, None)?
            }
            (b'u', Some(b'&')) if matches!(self.peek(2), Some(b'\'' | b'"')) => {
                self.at += 2;
                self.unicode()?
            }
            (b'\'', _) => self.string(!self.mode.standard_strings, None)?,
            (b'"', _) => Tok::Quoted(truncate_ident(self.quoted(b'"', false)?)),
            (b'$', Some(d)) if d.is_ascii_digit() => {
                self.at += 1;
                while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                    self.at += 1;
                }
                Tok::Param
            }
            (b'$', _) => match self.dollar()? {
                Some(value) => Tok::Str { value, bits: None },
                None => {
                    self.at += 1;
                    Tok::Char('$')
                }
            },
            (c, _) if is_ident_start(c) => {
                while self.peek(0).is_some_and(is_ident_cont) {
                    self.at += 1;
                }
                Tok::Word(truncate_ident(
                    self.sql[start..self.at].to_ascii_lowercase(),
                ))
            }
            (c, _)
                if c.is_ascii_digit()
                    || (c == b'.' && next.is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.number();
                Tok::Number
            }
            (b':', Some(b':' | b'=')) | (b'=', Some(b'>')) | (b'.', Some(b'.')) => {
                self.at += 2;
                Tok::Op
            }
            (c, _) if is_op_char(c) => {
                self.operator();
                Tok::Op
            }
            _ => {
                let c = self.sql[start..].chars().next().expect("not at the end");
                self.at += c.len_utf8();
                Tok::Char(c)
            }
        };
        Ok(Some(Token {
            tok,
            span: start..self.at,
        }))
    }

    fn number(&mut self) {
        // Digits, a point, an exponent; letters right after a number are a PostgreSQL 16
        // hexadecimal/octal/binary prefix or trailing junk the server refuses: part of it.
        let mut seen_point = false;
        while let Some(c) = self.peek(0) {
            if c.is_ascii_digit() || c == b'_' || c.is_ascii_alphabetic() {
                if (c == b'e' || c == b'E') && matches!(self.peek(1), Some(b'+' | b'-')) {
                    self.at += 1;
                }
                self.at += 1;
            } else if c == b'.' && !seen_point && self.peek(1) != Some(b'.') {
                seen_point = true;
                self.at += 1;
            } else {
                break;
            }
        }
    }

    /// An operator: the longest run of operator characters, cut where a comment starts.
    fn operator(&mut self) {
        let start = self.at;
        while let Some(c) = self.peek(0) {
            if !is_op_char(c) {
                break;
            }
            if self.at > start
                && ((c == b'-' && self.peek(1) == Some(b'-'))
                    || (c == b'/' && self.peek(1) == Some(b'*')))
            {
                break;
            }
            self.at += 1;
        }
    }

    /// A quoted string or identifier from its opening quote; a doubled quote stands for one.
    /// `backslash`: whether `\` escapes as in `E'…'`.
    fn quoted(&mut self, quote: u8, backslash: bool) -> Result<String, LexError> {
        self.at += 1;
        let mut bytes = Vec::new();
        loop {
            match self.peek(0) {
                None => return self.err("unterminated quoted string"),
                Some(c) if c == quote => {
                    if self.peek(1) == Some(quote) {
                        bytes.push(quote);
                        self.at += 2;
                    } else {
                        self.at += 1;
                        break;
                    }
                }
                Some(b'\\') if backslash => self.escape(&mut bytes)?,
                Some(c) => {
                    bytes.push(c);
                    self.at += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A string constant from its opening quote, with its continuations: another quoted part
    /// after whitespace that holds a newline continues it.
    fn string(&mut self, backslash: bool, bits: Option<char>) -> Result<Tok, LexError> {
        let mut value = self.quoted(b'\'', backslash)?;
        while let Some(next) = self.continuation() {
            self.at = next;
            value.push_str(&self.quoted(b'\'', backslash)?);
        }
        Ok(Tok::Str { value, bits })
    }

    /// A bit-string constant (`B'…'`, `X'…'`): no escapes, no doubled quotes inside.
    fn bits(&mut self, kind: char) -> Result<Tok, LexError> {
        let mut value = String::new();
        loop {
            self.at += 1;
            let Some(end) = self.s[self.at..].iter().position(|&c| c == b'\'') else {
                return self.err("unterminated bit-string constant");
            };
            value.push_str(&self.sql[self.at..self.at + end]);
            self.at += end + 1;
            match self.continuation() {
                Some(next) => self.at = next,
                None => break,
            }
        }
        Ok(Tok::Str {
            value,
            bits: Some(kind),
        })
    }

    /// Where a string's continuation quote is, if one follows: horizontal whitespace, a
    /// newline, then any whitespace or `--` comments, then a quote.
    fn continuation(&self) -> Option<usize> {
        let s = self.s;
        let mut i = self.at;
        while i < s.len() && matches!(s[i], b' ' | b'\t' | 0x0c | 0x0b) {
            i += 1;
        }
        if i >= s.len() || !matches!(s[i], b'\n' | b'\r') {
            return None;
        }
        loop {
            match s.get(i) {
                Some(&c) if is_space(c) => i += 1,
                Some(b'-') if s.get(i + 1) == Some(&b'-') => {
                    while i < s.len() && !matches!(s[i], b'\n' | b'\r') {
                        i += 1;
                    }
                }
                Some(b'\'') => return Some(i),
                _ => return None,
            }
        }
    }

    /// One backslash escape of an `E'…'` string, appended as bytes.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), LexError> {
        self.at += 1; // the backslash
        let Some(c) = self.peek(0) else {
            return self.err("unterminated quoted string");
        };
        self.at += 1;
        let simple = match c {
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        match c {
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek(0) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            self.at += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' if self.peek(0).is_some_and(|d| d.is_ascii_hexdigit()) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match self.peek(0).and_then(|d| (d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            self.at += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            b'u' | b'U' => {
                let n = if c == b'u' { 4 } else { 8 };
                let code = self
                    .hex(n)
                    .ok_or_else(|| LexError("invalid Unicode escape".into()))?;
                let ch = self.code_point(code)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ => {
                // Any other character stands for itself; a multi-byte one whole.
                let start = self.at - 1;
                let len = self.sql[start..].chars().next().map_or(1, char::len_utf8);
                out.extend_from_slice(&self.s[start..start + len]);
                self.at = start + len;
            }
        }
        Ok(())
    }

    /// Exactly `n` hex digits, as a number.
    fn hex(&mut self, n: usize) -> Option<u32> {
        let digits = self.s.get(self.at..self.at + n)?;
        let mut v = 0u32;
        for &d in digits {
            v = v.checked_mul(16)? + (d as char).to_digit(16)?;
        }
        self.at += n;
        Some(v)
    }

    /// A code point, a UTF-16 surrogate pair taken whole (`\uD83D\uDE00`).
    fn code_point(&mut self, code: u32) -> Result<char, LexError> {
        if (0xD800..0xDC00).contains(&code) {
            // A high surrogate must be followed by `\u` or `\U` and its low half.
            if self.peek(0) == Some(b'\\') && matches!(self.peek(1), Some(b'u' | b'U')) {
                let n = if self.peek(1) == Some(b'u') { 4 } else { 8 };
                self.at += 2;
                let low = self.hex(n).unwrap_or(0);
                if (0xDC00..0xE000).contains(&low) {
                    let c = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    return char::from_u32(c)
                        .ok_or_else(|| LexError("invalid Unicode escape".into()));
                }
            }
            return self.err("invalid Unicode surrogate pair");
        }
        char::from_u32(code)
            .filter(|&c| c != '\0')
            .ok_or_else(|| LexError("invalid Unicode escape value".into()))
    }

    /// `U&'…'` or `U&"…"` from its quote, with an optional `UESCAPE 'c'` after it.
    fn unicode(&mut self) -> Result<Tok, LexError> {
        let quote = self.peek(0).expect("checked by the caller");
        if quote == b'\'' && !self.mode.standard_strings {
            // The server refuses these when standard_conforming_strings is off.
            return self.err("Unicode escapes in a string need standard_conforming_strings");
        }
        let raw = if quote == b'\'' {
            let mut raw = self.quoted(b'\'', false)?;
            while let Some(next) = self.continuation() {
                self.at = next;
                raw.push_str(&self.quoted(b'\'', false)?);
            }
            raw
        } else {
            self.quoted(b'"', false)?
        };
        let escape = self.uescape()?.unwrap_or('\\');
        let value = decode_unicode(&raw, escape)?;
        Ok(if quote == b'\'' {
            Tok::Str { value, bits: None }
        } else {
            Tok::Quoted(truncate_ident(value))
        })
    }

    /// `UESCAPE 'c'` after a Unicode literal, if there is one.
    fn uescape(&mut self) -> Result<Option<char>, LexError> {
        let save = self.at;
        self.skip_blank()?;
        let word = self
            .s
            .get(self.at..self.at + 7)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"uescape"))
            && !self.peek(7).is_some_and(is_ident_cont);
        if !word {
            self.at = save;
            return Ok(None);
        }
        self.at += 7;
        self.skip_blank()?;
        if self.peek(0) != Some(b'\'') {
            return self.err("UESCAPE must be followed by a simple string literal");
        }
        let c = self.quoted(b'\'', false)?;
        let mut chars = c.chars();
        match (chars.next(), chars.next()) {
            (Some(e), None)
                if !e.is_ascii_hexdigit()
                    && !matches!(e, '+' | '\'' | '"')
                    && !e.is_whitespace() =>
            {
                Ok(Some(e))
            }
            _ => self.err("invalid Unicode escape character"),
        }
    }

    /// A dollar-quoted string from its `$`, or `None` if this `$` starts none.
    fn dollar(&mut self) -> Result<Option<String>, LexError> {
        let s = self.s;
        let mut i = self.at + 1;
        if i < s.len() && is_ident_start(s[i]) {
            i += 1;
            while i < s.len() && (is_ident_start(s[i]) || s[i].is_ascii_digit()) {
                i += 1;
            }
        }
        if s.get(i) != Some(&b'$') {
            return Ok(None);
        }
        let delim = &s[self.at..=i];
        let body_start = i + 1;
        let Some(end) = s[body_start..]
            .windows(delim.len())
            .position(|w| w == delim)
        else {
            return self.err("unterminated dollar-quoted string");
        };
        let value = self.sql[body_start..body_start + end].to_owned();
        self.at = body_start + end + delim.len();
        Ok(Some(value))
    }
}

/// The text of a `U&` literal with its escapes (`\XXXX`, `\+XXXXXX`, a doubled escape
/// character) replaced.
fn decode_unicode(raw: &str, escape: char) -> Result<String, LexError> {
    let bad = || LexError("invalid Unicode escape".into());
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let mut high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != escape {
            if high.is_some() {
                return Err(bad());
            }
            out.push(c);
            continue;
        }
        let n = match chars.peek() {
            Some(&e) if e == escape => {
                chars.next();
                out.push(escape);
                continue;
            }
            Some('+') => {
                chars.next();
                6
            }
            _ => 4,
        };
        let mut code = 0u32;
        for _ in 0..n {
            code = code * 16 + chars.next().and_then(|d| d.to_digit(16)).ok_or_else(bad)?;
        }
        match (high.take(), code) {
            (None, 0xD800..=0xDBFF) => high = Some(code),
            (Some(h), 0xDC00..=0xDFFF) => {
                let c = 0x10000 + ((h - 0xD800) << 10) + (code - 0xDC00);
                out.push(char::from_u32(c).ok_or_else(bad)?);
            }
            (None, _) => out.push(
                char::from_u32(code)
                    .filter(|&c| c != '\0')
                    .ok_or_else(bad)?,
            ),
            (Some(_), _) => return Err(bad()),
        }
    }
    if high.is_some() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
#[path = "lexer_tests.rs"]
mod tests;
