use super::row::TEXT;
use super::*;
use crate::codec::{self, Field};
use crate::sql::{CopyFormat, CopyOut, LexMode, analyze};
use bytes::BytesMut;
use std::collections::HashSet;

const INT4: u32 = 23;
const INT8: u32 = 20;
const JSONB: u32 = 3802;
const VARCHAR: u32 = 1043;

/// Built-in function names the planning tests call.
fn builtins() -> Functions {
    let names = [
        "lower",
        "upper",
        "count",
        "length",
        "translate",
        "row_to_json",
        "to_json",
        "substr",
        "json_each_text",
        "query_to_xml",
        "table_to_xml",
        "set_config",
        "lo_from_bytea",
        "pg_notify",
        "encode",
        "convert_to",
        "format",
        "string_agg",
        "json_agg",
        "reverse",
    ];
    Functions::new(Arc::new(
        names.iter().map(|n| n.to_string()).collect::<HashSet<_>>(),
    ))
}

fn field(name: &str, table_oid: u32, attnum: i16, type_oid: u32, format: i16) -> Field {
    Field {
        name: name.into(),
        table_oid,
        attnum,
        type_oid,
        format,
    }
}

fn rule(columns: &[&str], detectors: &[&str], strategy: Strategy) -> MaskRule {
    MaskRule {
        name: "pii".into(),
        resources: vec![],
        roles: vec![],
        columns: columns
            .iter()
            .map(|c| ColumnPattern::parse(c).unwrap())
            .collect(),
        detectors: detectors
            .iter()
            .map(|d| Detector::parse(d).unwrap())
            .collect(),
        strategy,
    }
}

fn session(rules: &[MaskRule]) -> SessionMasking {
    let mut s =
        SessionMasking::for_session(rules, "db", "read", Arc::new(Masker::new([1; 32])), None)
            .unwrap();
    s.catalog_mut().functions = builtins();
    s.learn(100, 1, "public", "customers", "id");
    s.learn(100, 2, "public", "customers", "email");
    s.learn(100, 3, "public", "customers", "note");
    s
}

fn row(values: &[Option<&[u8]>]) -> BytesMut {
    codec::data_row_frame(values.iter().copied())
}

fn values(frame: &[u8]) -> Vec<Option<Vec<u8>>> {
    let body = &frame[5..];
    codec::data_row(body)
        .unwrap()
        .into_iter()
        .map(|r| r.map(|r| body[r].to_vec()))
        .collect()
}

/// Masks one row of `input` described by `fields`: the row's values after masking, or
/// `None` if it passes unchanged.
fn mask(
    s: &mut SessionMasking,
    fields: &[Field],
    input: &[Option<&[u8]>],
    counts: &mut Counts,
) -> Option<Vec<Option<Vec<u8>>>> {
    let shape = s.shape(fields.to_vec(), &StatementPlan::default());
    s.row(Some(&shape), &row(input)[5..], counts)
        .unwrap()
        .map(|out| values(&out))
}

#[test]
fn columns_are_masked_by_identity_whatever_they_are_called() {
    let mut s = session(&[rule(&["public.customers.email"], &[], Strategy::Redact)]);
    let fields = [
        field("id", 100, 1, INT4, 0),
        field("e", 100, 2, TEXT, 0), // SELECT email AS e
    ];
    let mut counts = Counts::default();
    assert_eq!(
        mask(
            &mut s,
            &fields,
            &[Some(b"7"), Some(b"a@example.com")],
            &mut counts
        ),
        Some(vec![Some(b"7".to_vec()), Some(b"*****".to_vec())])
    );
    assert_eq!(s.named(&counts)["pii"], 1);
    // NULL stays NULL and is not counted.
    let mut counts = Counts::default();
    assert!(mask(&mut s, &fields, &[Some(b"7"), None], &mut counts).is_none());
    assert!(counts.is_empty());
}

#[test]
fn values_around_masked_ones_pass_byte_for_byte_in_any_order() {
    // Every arrangement of kept, NULL, whole-column and detected values in one row: the
    // unchanged ones are copied in runs around those written in place.
    let mut s = session(&[
        rule(&["customers.email"], &[], Strategy::Partial { keep: 4 }),
        rule(&["customers.note"], &["card"], Strategy::Hash),
    ]);
    s.catalog_read();
    // (column, value, whether it is masked)
    let kinds: [(Field, &[u8], bool); 5] = [
        (field("id", 100, 1, INT4, 1), &7i32.to_be_bytes(), false),
        (field("email", 100, 2, TEXT, 1), b"bob@example.com", true),
        (field("note", 100, 3, VARCHAR, 0), b"call me", true),
        (
            field("free", 0, 0, TEXT, 0),
            b"card 4111 1111 1111 1111!",
            true,
        ),
        (field("free", 0, 0, TEXT, 0), b"nothing to see", false),
    ];
    let mut memo = HashMemo::new();
    let masker = Masker::new([1; 32]);
    let hash = |v: &str, memo: &mut HashMemo| masker.replace(Strategy::Hash, v, memo).unwrap();
    let expected_note = hash("call me", &mut memo);
    let expected_card = format!("card {}!", hash("4111 1111 1111 1111", &mut memo));
    for order in 0..5usize.pow(4) {
        let picks: Vec<usize> = (0..4).map(|k| order / 5usize.pow(k) % 5).collect();
        for null_at in 0..5 {
            let mut fields = Vec::new();
            let mut input: Vec<Option<&[u8]>> = Vec::new();
            let mut want: Vec<Option<Vec<u8>>> = Vec::new();
            for (at, &k) in picks.iter().enumerate() {
                if at == null_at {
                    fields.push(field("n", 0, 0, TEXT, 0));
                    input.push(None);
                    want.push(None);
                }
                let (f, v, _) = &kinds[k];
                fields.push(f.clone());
                input.push(Some(v));
                want.push(Some(match k {
                    1 => b"***********.com".to_vec(),
                    2 => expected_note.clone().into_bytes(),
                    3 => expected_card.clone().into_bytes(),
                    _ => v.to_vec(),
                }));
            }
            let changes = picks.iter().any(|&k| kinds[k].2);
            let got = mask(&mut s, &fields, &input, &mut Counts::default());
            if changes {
                assert_eq!(got, Some(want), "{picks:?}, NULL at {null_at}");
            } else {
                assert_eq!(got, None, "{picks:?}");
            }
        }
    }
    // A row that breaks off mid-value is an error and leaves the buffer as it was.
    let shape = s.shape(
        vec![field("email", 100, 2, TEXT, 0)],
        &StatementPlan::default(),
    );
    let mut broken = row(&[Some(b"bob@example.com")]);
    broken.truncate(broken.len() - 3);
    let mut out = BytesMut::from(&b"before"[..]);
    let mut counts = Counts::default();
    assert!(
        s.row_into(Some(&shape), &broken[5..], &mut counts, b"run", &mut out)
            .is_err()
    );
    assert_eq!(&out[..], b"before");
    // A row with nothing to mask (a NULL stays NULL) writes nothing, not even the run
    // before it; a masked row comes after that run.
    let null = row(&[None]);
    assert!(
        !s.row_into(Some(&shape), &null[5..], &mut counts, b"run", &mut out)
            .unwrap()
    );
    assert_eq!(&out[..], b"before");
    let email = row(&[Some(b"bob@example.com")]);
    assert!(
        s.row_into(Some(&shape), &email[5..], &mut counts, b"run", &mut out)
            .unwrap()
    );
    let masked = s
        .row(Some(&shape), &email[5..], &mut counts)
        .unwrap()
        .unwrap();
    assert_eq!(&out[..9], b"beforerun");
    assert_eq!(&out[9..], &masked[..]);
}

#[test]
fn what_cannot_be_masked_safely_is_withheld() {
    let mut s = session(&[rule(&["email"], &["card"], Strategy::Partial { keep: 4 })]);
    let mut counts = Counts::default();
    // A table created after login (user relations have OIDs from 16384): unknown, withheld.
    let fields = [field("x", 99_999, 1, TEXT, 0)];
    assert_eq!(
        mask(&mut s, &fields, &[Some(b"hi")], &mut counts),
        Some(vec![None])
    );
    // A card number stored as a bigint, sent in binary: withheld.
    let fields = [field("n", 0, 0, INT8, 1)];
    let v = 4111111111111111i64.to_be_bytes();
    assert_eq!(
        mask(&mut s, &fields, &[Some(&v)], &mut counts),
        Some(vec![None])
    );
    // The same in text format: still withheld, `*****` is no bigint.
    let fields_text = [field("n", 0, 0, INT8, 0)];
    assert_eq!(
        mask(
            &mut s,
            &fields_text,
            &[Some(b"4111111111111111")],
            &mut counts
        ),
        Some(vec![None])
    );
    // A plain bigint passes.
    let v = 42i64.to_be_bytes();
    assert!(mask(&mut s, &fields, &[Some(&v)], &mut counts).is_none());
    // A binary type the gateway cannot read (bytea): withheld while detectors run.
    let fields = [field("b", 0, 0, 17, 1)];
    assert_eq!(
        mask(&mut s, &fields, &[Some(b"\x00\x01")], &mut counts),
        Some(vec![None])
    );
    // No row description at all: withheld.
    let out = s
        .row(None, &row(&[Some(b"x")])[5..], &mut counts)
        .unwrap()
        .unwrap();
    assert_eq!(values(&out), vec![None]);
    assert_eq!(s.named(&counts)["withheld"], 5);
}

#[test]
fn detectors_mask_inside_text_in_either_format() {
    let mut s = session(&[rule(&[], &["card", "email"], Strategy::Partial { keep: 4 })]);
    let mut counts = Counts::default();
    for format in [0, 1] {
        let fields = [field("note", 100, 3, TEXT, format)];
        let input = b"card 4111 1111 1111 1111, mail bob@example.com";
        assert_eq!(
            mask(&mut s, &fields, &[Some(input)], &mut counts),
            Some(vec![Some(
                b"card ***************1111, mail ***********.com".to_vec()
            )])
        );
    }
    assert_eq!(s.named(&counts)["pii:card"], 2);
    assert_eq!(s.named(&counts)["pii:email"], 2);
    // jsonb in binary keeps its version byte and stays valid JSON.
    let fields = [field("doc", 0, 0, JSONB, 1)];
    assert_eq!(
        mask(
            &mut s,
            &fields,
            &[Some(b"\x01{\"to\": \"bob@example.com\"}")],
            &mut counts
        ),
        Some(vec![Some(b"\x01{\"to\": \"***********.com\"}".to_vec())])
    );
}

#[test]
fn views_over_masked_columns_are_masked_whole_even_nested() {
    let mut s = session(&[rule(&["customers.email"], &[], Strategy::Redact)]);
    s.learn(200, 1, "public", "contacts", "contact");
    s.learn(300, 1, "public", "contacts_v2", "c");
    s.learn(400, 1, "public", "ids", "id");
    s.learn_view_read(300, 200, 1); // contacts_v2 reads contacts
    s.learn_view_read(200, 100, 2); // contacts reads customers.email
    s.learn_view_read(400, 100, 1); // ids reads customers.id only
    s.catalog_read();
    let mut counts = Counts::default();
    for (oid, masked) in [(200, true), (300, true), (400, false)] {
        let fields = [field("x", oid, 1, TEXT, 0)];
        let out = mask(&mut s, &fields, &[Some(b"v")], &mut counts);
        assert_eq!(out.is_some(), masked, "view {oid}");
    }
}

#[test]
fn copy_rows_are_masked_in_text_and_csv() {
    let mut s = session(&[
        rule(&["customers.email"], &[], Strategy::Redact),
        MaskRule {
            name: "cards".into(),
            resources: vec![],
            roles: vec![],
            columns: vec![],
            detectors: vec![Detector::Card],
            strategy: Strategy::Partial { keep: 4 },
        },
    ]);
    let mut counts = Counts::default();
    let table = |format| CopyOut::Table {
        schema: None,
        table: "customers".into(),
        columns: vec![],
        format,
    };
    let mut plan = s.copy_plan(table(CopyFormat::Text)).unwrap();
    let out = s
        .copy_row(
            &mut plan,
            b"1\tann@example.com\tcard 4111 1111 1111 1111\\ttab\n",
            &mut counts,
        )
        .unwrap();
    assert_eq!(&out[5..], b"1\t*****\tcard ***************1111\\ttab\n");
    assert!(
        s.copy_row(&mut plan, b"2\t\\N\tnothing\n", &mut counts)
            .is_none()
    );

    let mut plan = s
        .copy_plan(table(CopyFormat::Csv { header: true }))
        .unwrap();
    assert!(
        s.copy_row(&mut plan, b"id,email,note\n", &mut counts)
            .is_none()
    );
    let out = s
        .copy_row(
            &mut plan,
            b"1,ann@example.com,\"a \"\"quoted\"\", note\"\n",
            &mut counts,
        )
        .unwrap();
    assert_eq!(&out[5..], b"\"1\",\"*****\",\"a \"\"quoted\"\", note\"\n");
    assert!(
        s.copy_plan(CopyOut::Query {
            format: CopyFormat::Text
        })
        .is_err()
    );
    assert!(s.copy_plan(CopyOut::Unsupported).is_err());
}

/// The plan of a one-statement SQL text.
fn plan(s: &SessionMasking, sql: &str) -> Result<StatementPlan, String> {
    let a = analyze(sql, LexMode::default());
    assert_eq!(a.statements.len(), 1, "{sql}");
    s.plan_statement(&a.statements[0], sql)
}

fn computed(s: &SessionMasking, sql: &str) -> Option<usize> {
    plan(s, sql)
        .unwrap_or_else(|e| panic!("{sql}: refused: {e}"))
        .computed
}

#[test]
fn computed_columns_of_a_statement_reading_a_masked_table_are_masked() {
    let mut s = session(&[rule(&["customers.email"], &[], Strategy::Redact)]);
    s.learn(200, 1, "public", "orders", "id");
    s.learn(200, 2, "public", "orders", "item");
    s.catalog_read();
    for sql in [
        "SELECT lower(email) FROM customers",
        "SELECT x FROM (SELECT c.EMAIL || '' AS x FROM customers c) s",
        "SELECT upper(x) FROM (SELECT email AS x FROM customers) s",
        "WITH t AS (SELECT lower(email) FROM customers) SELECT * FROM t",
        "SELECT 1 UNION SELECT length(email) FROM customers",
        "SELECT email FROM customers UNION ALL SELECT 'x'",
        // Whatever the name: a whole row, an alias list, a function or VALUES in FROM.
        "SELECT translate(c::text, '0123456789@', 'abcdefghij#') FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT to_json(customers) FROM customers",
        "SELECT lower(e) FROM customers AS c(i, e, n)",
        "SELECT x FROM customers, lower(email) AS f(x)",
        "SELECT x FROM customers c, LATERAL (VALUES (c.email)) v(x)",
        r#"SELECT lower(U&"\0065mail") FROM customers"#,
        "SELECT value FROM customers c, json_each_text(row_to_json(c))",
        "SELECT lower(item) || email FROM orders, customers",
        "SELECT count(c.*) FROM customers c",
    ] {
        assert_eq!(computed(&s, sql), Some(0), "{sql}");
    }
    for sql in [
        "SELECT count(*) FROM customers",
        "SELECT count(*) FROM customers WHERE email IS NOT NULL",
        "SELECT email, count(*) FROM customers GROUP BY email",
        "SELECT lower(item), id + 1 FROM orders",
        "SELECT id + 1 FROM customers",
        "SELECT 'email'",
        "SELECT * FROM customers",
    ] {
        assert_eq!(computed(&s, sql), None, "{sql}");
    }
    assert!(
        plan(&s, "SELECT email FROM ((((").is_err(),
        "unparsed: refused"
    );
    let shape = s.shape(
        vec![field("lower", 0, 0, TEXT, 0)],
        &plan(&s, "SELECT lower(email) FROM customers").unwrap(),
    );
    let out = s
        .row(
            Some(&shape),
            &row(&[Some(b"ann@example.com")])[5..],
            &mut Counts::default(),
        )
        .unwrap();
    assert_eq!(values(&out.unwrap()), vec![Some(b"*****".to_vec())]);
}

#[test]
fn computed_values_are_redacted_never_partly_shown_or_hashed() {
    for strategy in [Strategy::Partial { keep: 4 }, Strategy::Hash] {
        let mut s = session(&[rule(&["customers.email"], &[], strategy)]);
        s.catalog_read();
        let p = plan(&s, "SELECT '~~~~' || substr(email, 5, 4) FROM customers").unwrap();
        let shape = s.shape(vec![field("x", 0, 0, TEXT, 0)], &p);
        let out = s
            .row(
                Some(&shape),
                &row(&[Some(b"~~~~t@ex")])[5..],
                &mut Counts::default(),
            )
            .unwrap();
        assert_eq!(
            values(&out.unwrap()),
            vec![Some(b"*****".to_vec())],
            "{strategy:?}"
        );
    }
}

#[test]
fn what_would_carry_masked_values_elsewhere_is_refused() {
    let mut s = session(&[rule(&["customers.email"], &[], Strategy::Redact)]);
    s.learn(200, 1, "public", "log", "v");
    s.catalog_read();
    for sql in [
        "SELECT query_to_xml('select email from customers', true, false, '')",
        "SELECT table_to_xml('customers', true, false, '')",
        "SELECT * FROM pg_stats WHERE tablename = 'customers'",
        "SELECT most_common_vals::text FROM pg_catalog.pg_stats",
        "SELECT set_config('x.y', email, false) FROM customers",
        "SELECT lo_from_bytea(0, convert_to(email, 'UTF8')) FROM customers",
        "SELECT pg_notify('c', email) FROM customers",
        "INSERT INTO log SELECT email FROM customers",
        "UPDATE customers SET note = email",
        "UPDATE log SET v = (SELECT email FROM customers LIMIT 1)",
        "CREATE TEMP TABLE stash AS SELECT * FROM customers",
        "SELECT * INTO TEMP stash FROM customers",
        "CREATE TEMP VIEW v AS SELECT email FROM customers",
        "CREATE TEMP TABLE customers (id int, email text)",
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'select 1'",
        "DO $$ BEGIN PERFORM 1; END $$",
        "SELECT leak(email) FROM customers",
        "SELECT email FROM customers WHERE dblink_exec('x') = 'y'",
        "MERGE INTO log USING customers c ON true WHEN NOT MATCHED THEN INSERT VALUES (c.email)",
        "COPY customers TO '/tmp/x'",
    ] {
        assert!(plan(&s, sql).is_err(), "not refused: {sql}");
    }
    for sql in [
        "UPDATE customers SET note = 'x' WHERE email LIKE 'a%'",
        "INSERT INTO log VALUES ('x')",
        "INSERT INTO log SELECT id::text FROM customers",
        "SELECT set_config('application_name', 'x', false)",
        "CREATE TEMP TABLE scratch (id int)",
        "DELETE FROM customers WHERE id = 1 RETURNING email",
    ] {
        assert!(plan(&s, sql).is_ok(), "refused: {sql}: {:?}", plan(&s, sql));
    }
}

#[test]
fn partitions_and_inheriting_tables_are_masked_like_their_parent() {
    let mut s = session(&[rule(&["public.customers.email"], &[], Strategy::Redact)]);
    s.learn(300, 1, "public", "customers_2024", "id");
    s.learn(300, 2, "public", "customers_2024", "email");
    s.catalog_mut().learn_inherits(300, 100);
    s.catalog_read();
    let shape = s.shape(
        vec![field("email", 300, 2, TEXT, 0)],
        &StatementPlan::default(),
    );
    let out = s
        .row(
            Some(&shape),
            &row(&[Some(b"ann@example.com")])[5..],
            &mut Counts::default(),
        )
        .unwrap();
    assert_eq!(values(&out.unwrap()), vec![Some(b"*****".to_vec())]);
    assert_eq!(
        computed(&s, "SELECT lower(email) FROM customers_2024"),
        Some(0)
    );
}

#[test]
fn the_database_s_own_masked_views_are_trusted() {
    let mut s = SessionMasking::for_session(
        &[rule(&["customers.email"], &[], Strategy::Redact)],
        "db",
        "read",
        Arc::new(Masker::new([1; 32])),
        Some("jitgate_masked".into()),
    )
    .unwrap();
    s.catalog_mut().functions = builtins();
    s.learn(100, 1, "public", "customers", "id");
    s.learn(100, 2, "public", "customers", "email");
    s.learn(500, 1, "jitgate_masked", "customers", "id");
    s.learn(500, 2, "jitgate_masked", "customers", "email");
    s.learn_view_read(500, 100, 2);
    s.catalog_read();
    // The masked view's columns are not masked again, nor is the view masked whole.
    let shape = s.shape(
        vec![field("email", 500, 2, TEXT, 0)],
        &StatementPlan::default(),
    );
    let masked_by_db = b"***@example.com";
    assert!(
        s.row(
            Some(&shape),
            &row(&[Some(masked_by_db)])[5..],
            &mut Counts::default()
        )
        .unwrap()
        .is_none()
    );
    // An unqualified name means the masked view: its computed values pass.
    assert_eq!(computed(&s, "SELECT lower(email) FROM customers"), None);
    assert_eq!(
        computed(&s, "SELECT lower(email) FROM jitgate_masked.customers"),
        None
    );
    // The raw table, named, still taints; and its columns still match by identity.
    assert_eq!(
        computed(&s, "SELECT lower(email) FROM public.customers"),
        Some(0)
    );
    let shape = s.shape(
        vec![field("email", 100, 2, TEXT, 0)],
        &StatementPlan::default(),
    );
    assert!(
        s.row(
            Some(&shape),
            &row(&[Some(b"ann@example.com")])[5..],
            &mut Counts::default()
        )
        .unwrap()
        .is_some()
    );
}

#[test]
fn patterns_parse_and_match() {
    let p = ColumnPattern::parse("*.customers.Email").unwrap();
    assert!(p.matches("sales", "customers", "email"));
    assert!(!p.matches("sales", "orders", "email"));
    assert!(ColumnPattern::parse("email").unwrap().matches_name("email"));
    assert!(
        !ColumnPattern::parse("t.email")
            .unwrap()
            .matches_name("email")
    );
    assert!(ColumnPattern::parse("a.b.c.d").is_none());
    assert!(ColumnPattern::parse("bad name").is_none());
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test --release -p jitgate-gateway masking_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn masking_cost_per_row() {
        let rules = [
            MaskRule {
                name: "pii".into(),
                resources: vec![],
                roles: vec![],
                columns: vec![ColumnPattern::parse("people.email").unwrap()],
                detectors: vec![],
                strategy: Strategy::Partial { keep: 4 },
            },
            MaskRule {
                name: "names".into(),
                resources: vec![],
                roles: vec![],
                columns: vec![ColumnPattern::parse("people.name").unwrap()],
                detectors: vec![],
                strategy: Strategy::Hash,
            },
            MaskRule {
                name: "cards".into(),
                resources: vec![],
                roles: vec![],
                columns: vec![],
                detectors: vec![Detector::Card],
                strategy: Strategy::Redact,
            },
        ];
        let mut s =
            SessionMasking::for_session(&rules, "db", "r", Arc::new(Masker::new([1; 32])), None)
                .unwrap();
        let names = [
            "id", "name", "email", "note", "city", "country", "status", "sku", "comment", "created",
        ];
        for (i, n) in names.iter().enumerate() {
            s.learn(100, i as i16 + 1, "public", "people", n);
        }
        s.catalog_read();
        let fields: Vec<Field> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Field {
                name: n.to_string(),
                table_oid: 100,
                attnum: i as i16 + 1,
                type_oid: if i == 0 { INT4 } else { TEXT },
                format: 1,
            })
            .collect();
        let shape = s.shape(fields, &StatementPlan::default());
        // The rows of the benchmark's table: a thousand different people, one in ten with a
        // card number in its note, read over and over as repeated queries would.
        let frames: Vec<BytesMut> = (1..=1000i32)
            .map(|i| {
                let id = i.to_be_bytes();
                let (name, email) = (format!("Person {i}"), format!("person{i}@example.com"));
                let note: &[u8] = if i % 10 == 0 {
                    b"paid with 4111 1111 1111 1111"
                } else {
                    b"no payment note"
                };
                let sku = format!("SKU-{i}");
                codec::data_row_frame(
                    [
                        &id[..],
                        name.as_bytes(),
                        email.as_bytes(),
                        note,
                        b"Berlin",
                        b"DE",
                        b"active",
                        sku.as_bytes(),
                        b"a comment of ordinary length",
                        b"2026-11-28",
                    ]
                    .into_iter()
                    .map(Some),
                )
            })
            .collect();
        let n = 200_000;
        let mut counts = Counts::default();
        let started = std::time::Instant::now();
        // As a session does: rows written one after another into the buffer sent to the
        // client, which is emptied once sent (a read of up to 64 KiB at a time).
        let mut out = BytesMut::with_capacity(128 * 1024);
        for frame in frames.iter().cycle().take(n) {
            if out.len() >= 64 * 1024 {
                std::hint::black_box(&out);
                out.clear();
            }
            assert!(
                s.row_into(Some(&shape), &frame[5..], &mut counts, &[], &mut out)
                    .unwrap()
            );
        }
        let per = started.elapsed().as_secs_f64() / n as f64 * 1e6;
        eprintln!("masking one 10-column row (1,000 different rows, in turn): {per:.2} µs");
    }
}
