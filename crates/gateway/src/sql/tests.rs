use super::*;

fn one(sql: &str) -> Facts {
    let a = analyze(sql, LexMode::default());
    assert_eq!(a.statements.len(), 1, "{sql}: {a:?}");
    a.statements.into_iter().next().expect("one")
}

fn copy_out(sql: &str) -> Option<CopyOut> {
    one(sql).copy
}

fn names(f: &Facts) -> Vec<String> {
    f.tables.iter().map(ToString::to_string).collect()
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
    ] {
        assert_eq!(copy_out(odd), Some(CopyOut::Unsupported), "{odd}");
    }
    // A COPY names its table, whichever way it goes.
    assert_eq!(names(&one("COPY secrets TO STDOUT")), ["secrets"]);
    assert_eq!(names(&one("COPY s.secrets FROM STDIN")), ["s.secrets"]);
}

#[test]
fn merges_and_upserts_count_as_the_changes_they_make() {
    let kinds = |sql: &str| one(sql).kinds;
    let k = kinds("MERGE INTO payments p USING payments q ON p.id = q.id WHEN MATCHED THEN DELETE");
    assert!(
        k.contains(&Kind::Delete) && k.contains(&Kind::DeleteWithoutWhere),
        "{k:?}"
    );
    let k = kinds(
        "MERGE INTO payments p USING src s ON p.id = s.id WHEN MATCHED AND s.gone THEN DELETE",
    );
    assert!(
        k.contains(&Kind::Delete) && !k.contains(&Kind::DeleteWithoutWhere),
        "{k:?}"
    );
    let k = kinds("MERGE INTO p USING s ON p.id = s.id WHEN MATCHED THEN UPDATE SET x = 1");
    assert!(k.contains(&Kind::UpdateWithoutWhere), "{k:?}");
    let k = kinds(
        "INSERT INTO payments SELECT * FROM payments ON CONFLICT (id) DO UPDATE SET amount = 0",
    );
    assert!(k.contains(&Kind::UpdateWithoutWhere), "{k:?}");
    let k = kinds(
        "INSERT INTO payments VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET amount = excluded.amount",
    );
    assert!(
        k.contains(&Kind::Update) && !k.contains(&Kind::UpdateWithoutWhere),
        "{k:?}"
    );
    let k = kinds("SELECT * INTO TEMP stash FROM payments");
    assert!(k.contains(&Kind::Ddl), "SELECT INTO creates a table: {k:?}");
    assert!(!kinds("INSERT INTO t SELECT 1").contains(&Kind::Ddl));
}

#[test]
fn the_server_s_string_rules_decide_what_is_a_statement() {
    let off = LexMode {
        standard_strings: false,
    };
    let sql = r"SELECT 'a\'; DELETE FROM payments; SELECT ''";
    let on = analyze(sql, LexMode::default());
    assert_eq!(on.statements.len(), 3);
    assert!(on.statements[1].kinds.contains(&Kind::DeleteWithoutWhere));
    let off_a = analyze(sql, off);
    assert_eq!(off_a.statements.len(), 1, "{off_a:?}");
    // And the other way round: what is one string with standard strings is three statements
    // without them.
    let sql = r"SELECT 'a\''; DELETE FROM payments; SELECT '1'";
    assert_eq!(analyze(sql, LexMode::default()).statements.len(), 1);
    let off_b = analyze(sql, off);
    assert_eq!(off_b.statements.len(), 3);
    assert!(
        off_b.statements[1]
            .kinds
            .contains(&Kind::DeleteWithoutWhere)
    );
    // What the server refuses outright runs nothing.
    assert!(analyze("SELECT 'open", LexMode::default()).refused);
}

#[test]
fn unicode_escaped_names_are_the_names_they_spell() {
    let f = one(r#"SELECT U&"\0065mail" FROM U&"\0063ustomers""#);
    assert_eq!(names(&f), ["customers"]);
    assert_eq!(f.values.outputs[0].names, ["email"]);
}

#[test]
fn session_objects_are_read_from_any_statement_that_makes_or_uses_them() {
    match one("PREPARE p (int) AS SELECT lower(email) FROM customers WHERE id = $1").effect {
        Effect::Prepare { name, inner } => {
            assert_eq!(name, "p");
            assert_eq!(names(&inner), ["customers"]);
            assert_eq!(inner.values.outputs[0].names, ["email"]);
        }
        other => panic!("{other:?}"),
    }
    match one("DECLARE \"C1\" BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t FOR UPDATE")
        .effect
    {
        Effect::Declare {
            name,
            binary,
            query,
        } => {
            assert_eq!((name.as_str(), binary), ("C1", true));
            assert_eq!(names(&query), ["t"]);
        }
        other => panic!("{other:?}"),
    }
    for (sql, cursor) in [
        ("FETCH c", "c"),
        ("FETCH FORWARD 10 FROM \"Cur\"", "Cur"),
        ("fetch all in c2", "c2"),
        ("MOVE ABSOLUTE 3 c", "c"),
    ] {
        assert_eq!(
            one(sql).effect,
            Effect::Fetch {
                cursor: cursor.into()
            },
            "{sql}"
        );
    }
    assert_eq!(
        one("EXECUTE p(1, 2)").effect,
        Effect::Execute { name: "p".into() }
    );
    assert_eq!(
        one("DEALLOCATE PREPARE p").effect,
        Effect::Deallocate(Some("p".into()))
    );
    assert_eq!(one("DEALLOCATE ALL").effect, Effect::Deallocate(None));
    assert_eq!(one("CLOSE ALL").effect, Effect::Close(None));
    assert_eq!(one("DISCARD ALL").effect, Effect::DiscardAll);
    // A statement made by PREPARE counts as the PREPARE's own for the guard.
    assert!(
        one("PREPARE p AS DELETE FROM t")
            .kinds
            .contains(&Kind::DeleteWithoutWhere)
    );
}

#[test]
fn settings_changes_are_found_however_they_are_written() {
    let set = |name: &str, value: Option<&str>| Setting::Set {
        name: name.into(),
        value: value.map(str::to_owned),
    };
    assert_eq!(
        one("SET standard_conforming_strings = off").settings,
        [set("standard_conforming_strings", Some("off"))]
    );
    assert_eq!(
        one("set session backslash_quote to 'on'").settings,
        [set("backslash_quote", Some("on"))]
    );
    assert_eq!(
        one("SET NAMES 'SJIS'").settings,
        [set("client_encoding", Some("SJIS"))]
    );
    assert_eq!(
        one("SET search_path TO public, pg_catalog").settings,
        [set("search_path", Some("public,pg_catalog"))]
    );
    assert_eq!(
        one("SET x.y TO DEFAULT").settings,
        [Setting::Reset(Some("x.y".into()))]
    );
    assert_eq!(one("RESET ALL").settings, [Setting::Reset(None)]);
    assert_eq!(
        one("SELECT set_config('Standard_Conforming_Strings', 'off', false)").settings,
        [set("standard_conforming_strings", Some("off"))]
    );
    assert_eq!(
        one("SELECT set_config(name, 'off', false) FROM t").settings,
        [Setting::Dynamic]
    );
    assert_eq!(
        one("UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'")
            .settings,
        [Setting::Dynamic]
    );
}

#[test]
fn values_say_what_a_statement_computes_from() {
    let f = one(
        "SELECT id, lower(c.email) AS e, count(*), translate(c::text, 'a', 'b') FROM customers c",
    );
    let outs = &f.values.outputs;
    assert_eq!(outs[0].names, ["id"]);
    assert_eq!(outs[1].names, ["email"]);
    assert!(
        outs[2].names.is_empty() && !outs[2].opaque,
        "count(*) reads no column"
    );
    assert_eq!(outs[3].names, ["c"]);
    assert!(f.values.defined.contains(&"c".to_owned()));
    assert!(!f.values.complex);
    assert!(
        one("SELECT row_to_json(c.*) FROM customers c")
            .values
            .outputs[0]
            .opaque
    );
    assert!(
        one("SELECT (SELECT email FROM customers LIMIT 1)")
            .values
            .outputs[0]
            .opaque
    );
    for complex in [
        "SELECT e FROM customers AS c(i, n, e)",
        "SELECT x FROM customers, lower(email) AS f(x)",
        "SELECT x FROM customers c, LATERAL (VALUES (c.email)) v(x)",
        "SELECT x FROM (SELECT email AS x FROM customers) s",
        "SELECT * FROM json_each_text('{}')",
    ] {
        assert!(one(complex).values.complex, "{complex}");
    }
    let f = one("INSERT INTO log (v) SELECT email FROM customers RETURNING v");
    assert_eq!(f.values.stored[0].names, ["email"]);
    assert_eq!(f.values.outputs[0].names, ["v"]);
    let f = one("UPDATE customers SET note = email WHERE id = 1");
    assert_eq!(f.values.stored[0].names, ["email"]);
    assert!(
        one("CREATE TEMP TABLE x AS SELECT * FROM customers")
            .values
            .creates_from_query
    );
    let f = one("SELECT * INTO TEMP x FROM customers");
    assert!(f.values.creates_from_query);
    assert_eq!(f.creates, [Name::bare("x")]);
    let f = one("EXPLAIN ANALYZE INSERT INTO log SELECT email FROM customers");
    assert_eq!(f.values.stored[0].names, ["email"]);
    assert!(f.values.outputs.is_empty());
}

#[test]
fn functions_are_found_wherever_they_are_called() {
    let f = one(
        "SELECT query_to_xml('select 1', true, false, ''), x FROM generate_series(1, 2) g(x), pg_catalog.lower('a')",
    );
    let fns: Vec<String> = f.functions.iter().map(ToString::to_string).collect();
    assert!(fns.contains(&"query_to_xml".to_owned()), "{fns:?}");
    assert!(fns.contains(&"generate_series".to_owned()), "{fns:?}");
    assert!(fns.contains(&"pg_catalog.lower".to_owned()), "{fns:?}");
    assert!(
        !names(&f).contains(&"generate_series".to_owned()),
        "a function is no table"
    );
    let f = one("CALL do_things()");
    assert_eq!(f.functions, [Name::bare("do_things")]);
}

/// psql's `\dt` and `\d table` queries read as parsed: under column rules what the gateway
/// cannot parse is refused, and these are what people type first.
#[test]
fn psql_catalog_queries_parse() {
    for q in [
        r#"SELECT n.nspname as "Schema", c.relname as "Name", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END as "Type", pg_catalog.pg_get_userbyid(c.relowner) as "Owner" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2"#,
        r#"SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(customers)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3"#,
        r#"SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef), a.attnotnull FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16400' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"#,
    ] {
        let a = analyze(q, LexMode::default());
        assert!(a.statements[0].parsed, "{q}");
    }
}
