use super::*;

const ON: LexMode = LexMode {
    standard_strings: true,
};
const OFF: LexMode = LexMode {
    standard_strings: false,
};

fn split(sql: &str, mode: LexMode) -> Vec<String> {
    statements(sql, mode)
        .unwrap()
        .iter()
        .map(|s| s.canonical(sql))
        .collect()
}

#[test]
fn statements_split_where_the_server_splits_them() {
    assert_eq!(
        split("SELECT 1; /* a; /* nested; */ still */ SELECT 2;;", ON),
        ["SELECT 1", "SELECT 2"]
    );
    assert_eq!(
        split("SELECT 'a;b' -- ; no\n; SELECT $x$;$x$, $$'$$", ON),
        ["SELECT 'a;b'", "SELECT ';', ''''"]
    );
    assert_eq!(split("SELECT \"a;\"\"b\"", ON), ["SELECT \"a;\"\"b\""]);
}

#[test]
fn standard_conforming_strings_decides_where_a_string_ends() {
    let sql = r"SELECT 'a\'; DELETE FROM t; --'";
    // On: `\` is an ordinary character, so the string ends at the second quote.
    assert_eq!(split(sql, ON), [r"SELECT 'a\'", "DELETE FROM t"]);
    // Off: `\'` is an escaped quote, and the whole text is one statement.
    assert_eq!(split(sql, OFF), ["SELECT 'a''; DELETE FROM t; --'"]);
    // E'' strings escape either way.
    assert_eq!(split(r"SELECT E'\'; x'", ON), ["SELECT '''; x'"]);
    assert_eq!(split(r"SELECT E'\x41\101\u0041\n'", ON), ["SELECT 'AAA\n'"]);
}

#[test]
fn unicode_escapes_are_decoded() {
    assert_eq!(
        split(r#"SELECT U&"\0065mail", U&'!0041' UESCAPE '!' FROM t"#, ON),
        [r#"SELECT "email", 'A' FROM t"#]
    );
    let t = tokenize(r#"U&"d\+00006Fe""#, ON).unwrap();
    assert_eq!(t[0].tok, Tok::Quoted("doe".into()));
    assert!(tokenize(r"SELECT U&'\0041'", OFF).is_err());
    assert!(tokenize(r#"SELECT U&"\00""#, ON).is_err());
}

#[test]
fn strings_continue_over_a_newline_only() {
    assert_eq!(split("SELECT 'a'\n  -- c\n 'b'", ON), ["SELECT 'ab'"]);
    assert_eq!(
        statements("SELECT 'a' 'b'", ON).unwrap()[0].tokens.len(),
        3,
        "no newline: two constants (a syntax error on the server)"
    );
}

#[test]
fn words_fold_and_truncate_like_the_server() {
    let long = "A".repeat(70);
    let t = tokenize(&format!("SELECT {long}, \"{long}\""), ON).unwrap();
    assert_eq!(t[1].tok, Tok::Word("a".repeat(63)));
    assert_eq!(t[3].tok, Tok::Quoted("A".repeat(63)));
    let t = tokenize("a$b$ $1 $q$x$q$", ON).unwrap();
    assert_eq!(t[0].tok, Tok::Word("a$b$".into()));
    assert_eq!(t[1].tok, Tok::Param);
    assert_eq!(
        t[2].tok,
        Tok::Str {
            value: "x".into(),
            bits: None
        }
    );
}

#[test]
fn operators_stop_where_a_comment_starts() {
    assert_eq!(split("SELECT 1+--x\n2", ON), ["SELECT 1+ 2"]);
    assert_eq!(split("SELECT 1 */* c */ 2", ON), ["SELECT 1 * 2"]);
}

#[test]
fn what_the_server_refuses_is_an_error() {
    for bad in [
        "SELECT 'x",
        "SELECT \"x",
        "/* open",
        "SELECT $a$ x",
        r"SELECT E'\",
    ] {
        assert!(tokenize(bad, ON).is_err(), "{bad}");
    }
}
