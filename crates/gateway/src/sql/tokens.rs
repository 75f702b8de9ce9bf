//! What a statement does to the session, read from its tokens: the prepared statements and
//! cursors it makes, uses or drops, the settings it changes, and (for a statement the parser
//! cannot read) the functions it calls. These statements have simple shapes, and reading them
//! from tokens holds whether or not the parser knows every variant.

use super::lexer::{Tok, Token};
use super::{Effect, Name, Setting};

/// An effect, with the statement a PREPARE or DECLARE makes as an index into the tokens.
pub(super) enum TokenEffect {
    Prepare {
        name: String,
        inner: usize,
    },
    Declare {
        name: String,
        binary: bool,
        query: usize,
    },
    Other(Effect),
}

fn word(t: Option<&Token>) -> Option<&str> {
    match &t?.tok {
        Tok::Word(w) => Some(w),
        _ => None,
    }
}

/// The first token at paren depth zero, from `from` on, that is the word `w`.
fn find_word(tokens: &[Token], from: usize, w: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate().skip(from) {
        match &t.tok {
            Tok::Char('(') => depth += 1,
            Tok::Char(')') => depth -= 1,
            Tok::Word(x) if depth == 0 && x == w => return Some(i),
            _ => {}
        }
    }
    None
}

pub(super) fn effect(tokens: &[Token]) -> TokenEffect {
    let first = word(tokens.first()).unwrap_or_default();
    let ident = |i: usize| tokens.get(i).and_then(Token::ident).map(str::to_owned);
    let other = |e| TokenEffect::Other(e);
    match first {
        "prepare" => match (ident(1), find_word(tokens, 2, "as")) {
            (Some(name), Some(at)) if at + 1 < tokens.len() => TokenEffect::Prepare {
                name,
                inner: at + 1,
            },
            _ => other(Effect::None),
        },
        "declare" => match (ident(1), find_word(tokens, 2, "for")) {
            (Some(name), Some(at)) if at + 1 < tokens.len() => TokenEffect::Declare {
                binary: tokens[2..at].iter().any(|t| t.is_word("binary")),
                name,
                query: at + 1,
            },
            _ => other(Effect::None),
        },
        // FETCH/MOVE [direction] [count] [FROM | IN] cursor: the cursor is the last token.
        "fetch" | "move" => match tokens.last().and_then(Token::ident) {
            Some(cursor) if tokens.len() > 1 => other(Effect::Fetch {
                cursor: cursor.to_owned(),
            }),
            _ => other(Effect::None),
        },
        "execute" => match ident(1) {
            Some(name) => other(Effect::Execute { name }),
            None => other(Effect::None),
        },
        "deallocate" => {
            let at = if tokens.get(1).is_some_and(|t| t.is_word("prepare")) {
                2
            } else {
                1
            };
            match tokens.get(at) {
                Some(t) if t.is_word("all") => other(Effect::Deallocate(None)),
                Some(t) => match t.ident() {
                    Some(n) => other(Effect::Deallocate(Some(n.to_owned()))),
                    None => other(Effect::None),
                },
                None => other(Effect::None),
            }
        }
        "close" => match tokens.get(1) {
            Some(t) if t.is_word("all") => other(Effect::Close(None)),
            Some(t) => match t.ident() {
                Some(n) => other(Effect::Close(Some(n.to_owned()))),
                None => other(Effect::None),
            },
            None => other(Effect::None),
        },
        "discard" if tokens.get(1).is_some_and(|t| t.is_word("all")) => other(Effect::DiscardAll),
        _ => other(Effect::None),
    }
}

/// The text of a setting's value token.
fn value_text(t: &Token, sql_word: &str) -> String {
    match &t.tok {
        Tok::Str { value, .. } => value.clone(),
        Tok::Word(w) | Tok::Quoted(w) => w.clone(),
        _ => sql_word.to_owned(),
    }
}

/// `SET [SESSION | LOCAL] name {TO | =} value`, `SET NAMES 'x'`, `RESET name`, `RESET ALL`.
pub(super) fn settings(tokens: &[Token], out: &mut Vec<Setting>) {
    let first = word(tokens.first()).unwrap_or_default();
    match first {
        "set" => {
            let mut i = 1;
            if tokens
                .get(i)
                .is_some_and(|t| t.is_word("session") || t.is_word("local"))
            {
                i += 1;
            }
            // SET SESSION AUTHORIZATION, SET ROLE, SET TRANSACTION, SET CONSTRAINTS: none of
            // the settings this is about.
            if tokens.get(i).is_some_and(|t| t.is_word("names")) {
                let name = "client_encoding".to_owned();
                out.push(match tokens.get(i + 1).map(|t| value_text(t, "")) {
                    Some(v) if v != "default" => Setting::Set {
                        name,
                        value: Some(v),
                    },
                    _ => Setting::Reset(Some(name)),
                });
                return;
            }
            // A name, possibly dotted (`my.setting`).
            let mut name = String::new();
            while let Some(part) = tokens.get(i).and_then(Token::ident) {
                name.push_str(part);
                i += 1;
                if tokens.get(i).is_some_and(|t| t.is_char('.')) {
                    name.push('.');
                    i += 1;
                } else {
                    break;
                }
            }
            let is_to =
                |t: &Token| t.is_word("to") || matches!(t.tok, Tok::Op) && t.span.len() == 1;
            if name.is_empty() || !tokens.get(i).is_some_and(is_to) {
                return;
            }
            let values: Vec<String> = tokens[i + 1..]
                .iter()
                .filter(|t| !t.is_char(','))
                .map(|t| value_text(t, "?"))
                .collect();
            out.push(match values.as_slice() {
                // SET x TO DEFAULT is RESET x.
                [d] if d == "default" => Setting::Reset(Some(name)),
                _ => Setting::Set {
                    name,
                    value: Some(values.join(",")),
                },
            });
        }
        "reset" => {
            let name = tokens.get(1).and_then(Token::ident).map(str::to_owned);
            out.push(Setting::Reset(name.filter(|n| n != "all")));
        }
        _ => {}
    }
}

/// Functions called in a statement the parser could not read: every name followed by `(`,
/// with its schema when dotted. Keywords that take parentheses are included, which is harmless:
/// a name only matters when it is one the masking or guard looks for, or an unknown one.
pub(super) fn functions(tokens: &[Token], out: &mut Vec<Name>) {
    for (i, t) in tokens.iter().enumerate() {
        let Some(name) = t.ident() else { continue };
        if !tokens.get(i + 1).is_some_and(|n| n.is_char('(')) {
            continue;
        }
        let schema = match (
            i.checked_sub(2).and_then(|j| tokens.get(j)),
            tokens.get(i.wrapping_sub(1)),
        ) {
            (Some(s), Some(dot)) if dot.is_char('.') => s.ident().map(str::to_owned),
            _ => None,
        };
        out.push(Name {
            schema,
            name: name.to_owned(),
        });
    }
}
