//! Masking enforced by PostgreSQL itself: a masked role's login reads masked views and holds no
//! privilege on the raw columns, so every channel only ever carries masked values. Tried as an
//! attacker would, with the grant's own login, against the real PostgreSQL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::services::{PgDb, pg_connect};

/// Values that must never reach a masked login, in any form.
const SECRETS: &[&str] = &[
    "ada@example.com",
    "alan@example.com",
    "4111111111111111",
    "5500000000000004",
    "TX-998877",
    "TX-112233",
];

/// What masks look like: `partial` keeps 4 of `email` and `card`, `hash` replaces `tax_id`,
/// and `ssn` (an integer, which cannot carry a mask) becomes NULL.
async fn setup(read_grants: &str) -> Option<(PgDb, TestApp, String)> {
    setup_with(read_grants, "").await
}

/// Like [`setup`], with `extra` config (such as a gateway) before the resources.
async fn setup_with(read_grants: &str, extra: &str) -> Option<(PgDb, TestApp, String)> {
    let mut db = PgDb::create().await?;
    db.exec(
        "CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card varchar(19), tax_id text, ssn int, profile jsonb);
         INSERT INTO customers VALUES
           (1, 'Ada', 'ada@example.com', '4111111111111111', 'TX-998877', 123456789, '{\"tier\": \"gold\"}'),
           (2, 'Alan', 'alan@example.com', '5500000000000004', 'TX-112233', 987654321, NULL);
         CREATE TABLE payments (id int, customer int, amount numeric);
         INSERT INTO payments VALUES (1, 1, 10.5);
         ANALYZE customers;",
    )
    .await;
    let read = format!("{}read", db.prefix);
    db.role(&read, &read_grants.replace("{read}", &read)).await;
    let app = TestApp::start(&format!("{extra}{}", config(&db, &read))).await;
    Some((db, app, read))
}

fn config(db: &PgDb, read: &str) -> String {
    format!(
        r#"
[[resources]]
name = "orders-db"
kind = "postgres"
admin_url = "{url}"
role_prefix = "{prefix}"
[resources.roles.read]
grants = ["{read}"]
[resources.roles.admin]

[[masking]]
name = "pii"
roles = ["read"]
columns = ["public.customers.email", "customers.card", "*.profile"]
strategy = "partial"
keep = 4

[[masking]]
name = "ids"
roles = ["read"]
columns = ["tax_id", "public.customers.ssn"]
strategy = "hash"

[[policies]]
name = "read"
principals = ["group:engineering"]
resources = ["orders-db"]
roles = ["read", "admin"]
max_duration = "1h"
[policies.approval]
required = 0
"#,
        url = db.admin_url,
        prefix = db.prefix,
    )
}

/// Reads come from `public` tables the target role may read; `customers` only through masks.
const GOOD_ROLE: &str =
    "GRANT SELECT ON payments TO {read}; GRANT SELECT (id, name) ON customers TO {read};";

async fn grant(app: &TestApp, role: &str) -> Value {
    let (s, r) = app
        .post(
            "alice",
            "/api/v1/requests",
            json!({ "resource": "orders-db", "role": role, "duration": "10m", "reason": "INC-7 masked" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    r
}

async fn login(app: &TestApp, r: &Value) -> tokio_postgres::Client {
    let creds = app
        .credentials("alice", r["grant_id"].as_str().unwrap())
        .await;
    pg_connect(creds["dsn"].as_str().unwrap()).await.unwrap()
}

/// Every value, error text and notice a statement yields, as text.
async fn everything(c: &tokio_postgres::Client, sql: &str) -> String {
    use tokio_postgres::SimpleQueryMessage;
    match c.simple_query(sql).await {
        Ok(messages) => {
            let mut out = String::new();
            for m in messages {
                if let SimpleQueryMessage::Row(row) = m {
                    for i in 0..row.len() {
                        out += row.get(i).unwrap_or("NULL");
                        out += "|";
                    }
                    out += "\n";
                }
            }
            out
        }
        Err(e) => match e.as_db_error() {
            Some(db) => format!(
                "ERROR {} {} {:?} {:?} {:?}",
                db.code().code(),
                db.message(),
                db.detail(),
                db.hint(),
                db.where_()
            ),
            None => format!("ERROR {e}"),
        },
    }
}

fn leaked(output: &str) -> Option<&'static str> {
    SECRETS.iter().copied().find(|s| output.contains(s))
}

/// HMAC-SHA-256 of `value` under the server's masking key, as the `hash` strategy writes it.
fn expected_hash(app: &TestApp, value: &str) -> String {
    use sha2::{Digest, Sha256};
    let key = std::fs::read_to_string(app.data_dir().join("masking.key")).unwrap();
    let key = hex::decode(key.trim()).unwrap();
    let pad = |byte: u8| -> Vec<u8> {
        let mut p = vec![byte; 64];
        for (i, k) in key.iter().enumerate() {
            p[i] ^= k;
        }
        p
    };
    let inner = Sha256::digest([pad(0x36), value.as_bytes().to_vec()].concat());
    let outer = Sha256::digest([pad(0x5c), inner.to_vec()].concat());
    hex::encode(&outer[..8])
}

#[tokio::test]
async fn a_masked_login_reads_masked_values_and_nothing_else() {
    let Some((_db, app, _)) = setup(GOOD_ROLE).await else {
        return;
    };
    let r = grant(&app, "read").await;
    assert_eq!(r["state"], "active", "{r}");
    let c = login(&app, &r).await;
    let rows = c
        .query(
            "SELECT name, email, card, tax_id, ssn, profile::text FROM customers ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let row = &rows[0];
    assert_eq!(row.get::<_, String>(0), "Ada", "unmasked columns pass");
    assert_eq!(row.get::<_, String>(1), "***********.com");
    assert_eq!(row.get::<_, String>(2), "************1111");
    assert_eq!(
        row.get::<_, String>(3),
        expected_hash(&app, "TX-998877"),
        "the database's keyed hash is the gateway's"
    );
    assert_eq!(
        row.get::<_, Option<i32>>(4),
        None,
        "an integer cannot carry a mask"
    );
    let profile: String = serde_json::from_str(&row.get::<_, String>(5)).expect("json stays json");
    assert_eq!(profile, "************ld\"}");
}

/// Attempts to read around the masks with the grant's own login: computed values, whole rows,
/// functions that run SQL text, catalog statistics, stashes (cursors, prepared statements, temp
/// tables, settings, large objects), error texts. None may yield a raw value.
const ATTEMPTS: &[&str] = &[
    "SELECT translate(c::text, '0123456789@', 'abcdefghij#') FROM customers c",
    "SELECT row_to_json(c) FROM customers c",
    "SELECT to_jsonb(c) FROM customers c",
    "SELECT (c).* FROM (SELECT c FROM customers c) s",
    "SELECT * FROM customers AS c(a, b, e, k, t, s, p)",
    "SELECT x FROM customers c, LATERAL (SELECT upper(c.email) || c.card) AS l(x)",
    "SELECT * FROM json_each_text((SELECT row_to_json(c) FROM customers c LIMIT 1))",
    "SELECT table_to_xml('customers', true, false, '')",
    "SELECT table_to_xml('public.customers', true, false, '')",
    "SELECT query_to_xml('select email, card, tax_id from public.customers', true, false, '')",
    "SELECT query_to_xml('select * from customers', true, false, '')",
    "SELECT * FROM U&\"cust\\006Fmers\"",
    "SELECT most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'customers'",
    "SELECT email, card FROM public.customers",
    "SELECT ctid, * FROM ONLY public.customers",
    "SET search_path = public; SELECT email, card FROM customers",
    "SET search_path = pg_temp, public; SELECT * FROM customers",
    "SELECT string_agg(email || card || tax_id, ',') FROM customers",
    "SELECT (SELECT array_agg(email) FROM customers)",
    "SELECT xmlelement(name x, email, card) FROM customers",
    "WITH x AS MATERIALIZED (SELECT * FROM customers) SELECT * FROM x",
    "TABLE customers",
    "SELECT * FROM (VALUES (1)) v, customers",
    "BEGIN; DECLARE cur CURSOR FOR SELECT email, card, tax_id FROM customers; FETCH ALL FROM cur; COMMIT",
    "PREPARE p AS SELECT email, card, tax_id FROM customers; EXECUTE p",
    "CREATE TEMP TABLE stash AS SELECT * FROM customers; SELECT * FROM stash",
    "SELECT email, card INTO TEMP stash2 FROM customers; SELECT * FROM stash2",
    "CREATE TEMP TABLE customers AS SELECT * FROM public.customers; SELECT * FROM customers",
    "CREATE TEMP VIEW v AS SELECT * FROM customers; SELECT * FROM v",
    "SELECT set_config('my.v', (SELECT string_agg(email, ',') FROM customers), false); SELECT current_setting('my.v')",
    "SELECT set_config('application_name', (SELECT min(card) FROM customers), false)",
    "SELECT convert_from(lo_get(lo_from_bytea(0, convert_to((SELECT string_agg(card, ',') FROM customers), 'UTF8'))), 'UTF8')",
    "SELECT email::int FROM customers",
    "SELECT card::numeric FROM customers",
    "SELECT tax_id::int FROM customers",
    "DO $$ DECLARE v text; BEGIN SELECT string_agg(email || card, ',') INTO v FROM customers; RAISE EXCEPTION 'got %', v; END $$",
    "DO $$ DECLARE v text; BEGIN SELECT string_agg(email, ',') INTO v FROM public.customers; RAISE EXCEPTION 'got %', v; END $$",
    "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql AS 'SELECT string_agg(email, '','') FROM public.customers'; SELECT pg_temp.f()",
    "SELECT email FROM customers FOR UPDATE",
    "EXPLAIN (VERBOSE, COSTS OFF, ANALYZE) SELECT * FROM customers WHERE email LIKE 'ada%'",
    "CREATE VIEW public.v2 AS SELECT * FROM public.customers; SELECT * FROM public.v2",
    // Not `1 / 0`, which the planner folds before any row is read.
    "SELECT 1 / (id - id) FROM customers WHERE email LIKE 'ada%'",
    "SELECT 1 / (id - id) FROM customers WHERE card = '4111111111111111'",
    "SELECT 1 / (id - id) FROM customers WHERE tax_id = 'TX-998877'",
];

#[tokio::test]
async fn a_masked_login_cannot_read_around_its_masks() {
    let Some((db, app, _)) = setup(GOOD_ROLE).await else {
        return;
    };
    let r = grant(&app, "read").await;
    let c = login(&app, &r).await;
    let key = std::fs::read_to_string(app.data_dir().join("masking.key")).unwrap();
    for sql in ATTEMPTS {
        // A fresh session each time, as a fresh attacker would have (temp objects, settings).
        let c = login(&app, &r).await;
        let out = everything(&c, sql).await;
        assert_eq!(leaked(&out), None, "{sql} leaked: {out}");
        assert!(!out.contains(key.trim()), "{sql} leaked the masking key");
        // The predicate sees the masked value too, so nothing is learnt by dividing by zero.
        assert!(
            !out.contains("22012"),
            "{sql} answered about a raw value: {out}"
        );
    }
    // The key's table and the raw columns stay out of reach.
    let key_table = format!("SELECT * FROM {}mask.key", db.prefix);
    assert!(everything(&c, &key_table).await.starts_with("ERROR 42501"));
    assert!(
        everything(&c, "SELECT email FROM public.customers")
            .await
            .starts_with("ERROR 42501")
    );
    // COPY out of a query over the view is masked too.
    let copied = copy_out(&c, "COPY (SELECT * FROM customers) TO STDOUT").await;
    assert!(copied.contains("************1111"), "{copied}");
    assert_eq!(leaked(&copied), None, "{copied}");
}

/// Through the gateway, the database's masked views are the first line and the gateway trusts
/// them: values computed from them come back as the database computed them (not redacted
/// again), and a predicate on a raw value finds nothing, because it compares masked values.
/// Outside the databases where the views were made, the gateway's own layer applies.
#[tokio::test]
async fn through_the_gateway_the_database_masks_first() {
    let gateway = "[gateway.postgres]\nlisten = \"127.0.0.1:0\"\n";
    let Some((db, app, _)) = setup_with(GOOD_ROLE, gateway).await else {
        return;
    };
    let r = grant(&app, "read").await;
    assert_eq!(r["state"], "active", "{r}");
    let port = app.gateway_port();
    let via = |dbname: &str| {
        format!(
            "host=127.0.0.1 port={port} dbname={dbname} user=alice password={}",
            crate::helpers::token("alice")
        )
    };
    let c = pg_connect(&via("orders-db")).await.unwrap();
    let out = everything(
        &c,
        "SELECT email, lower(email), card, tax_id FROM customers ORDER BY id LIMIT 1",
    )
    .await;
    let hash = expected_hash(&app, "TX-998877");
    assert_eq!(
        out,
        format!("***********.com|***********.com|************1111|{hash}|\n"),
        "masked once, by the database; computed values from its views are not redacted again"
    );
    let found = everything(
        &c,
        "SELECT count(*) FROM customers WHERE email = 'ada@example.com' OR card LIKE '4111%'",
    )
    .await;
    assert_eq!(found, "0|\n", "predicates see masked values only");
    for sql in ATTEMPTS {
        let c = pg_connect(&via("orders-db")).await.unwrap();
        let out = everything(&c, sql).await;
        assert_eq!(
            leaked(&out),
            None,
            "{sql} leaked through the gateway: {out}"
        );
    }

    // A database the connector made no views in: a schema of the views' name there could be
    // the user's own, so the gateway does not trust it and masks by itself.
    let other = format!("{}other", db.prefix);
    db.exec(&format!("CREATE DATABASE {other}")).await;
    let admin_other = pg_connect(&format!("{}/{other}", crate::services::pg_base()))
        .await
        .unwrap();
    let schema = app
        .app()
        .database_masking("orders-db", "read", &db.name)
        .expect("the views' schema in the resource's own database");
    assert_eq!(
        app.app().database_masking("orders-db", "read", &other),
        None
    );
    admin_other
        .batch_execute(&format!(
            "CREATE TABLE customers (id int, email text);
             INSERT INTO customers VALUES (1, 'ada@example.com');
             GRANT SELECT ON customers TO PUBLIC;
             CREATE SCHEMA {schema}; CREATE VIEW {schema}.customers AS SELECT * FROM public.customers;
             GRANT USAGE ON SCHEMA {schema} TO PUBLIC; GRANT SELECT ON {schema}.customers TO PUBLIC;"
        ))
        .await
        .unwrap();
    let c = pg_connect(&via(&format!("orders-db/{other}")))
        .await
        .unwrap();
    let out = everything(&c, "SELECT email, lower(email) FROM customers").await;
    assert_eq!(leaked(&out), None, "the gateway masked in {other}: {out}");
    drop(admin_other);
    db.exec(&format!("DROP DATABASE {other} WITH (FORCE)"))
        .await;
}

async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> String {
    use futures_util::StreamExt;
    let stream = c.copy_out(sql).await.unwrap();
    let chunks: Vec<_> = stream.collect().await;
    chunks
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b.unwrap()).into_owned())
        .collect()
}

#[tokio::test]
async fn a_role_that_exposes_a_masked_column_is_not_activated_until_fixed() {
    // The target role reads the whole table: the login could read the raw columns.
    let Some((db, app, read)) = setup("GRANT SELECT ON customers TO {read};").await else {
        return;
    };
    let findings = app.app().check_resource("orders-db").await.unwrap();
    let masking: Vec<_> = findings
        .iter()
        .filter(|f| f.topic.contains("masking"))
        .collect();
    assert!(
        masking
            .iter()
            .any(|f| f.message.contains(&format!("target role {read}"))
                && f.message.contains("public.customers.email")
                && f.message.contains("revoke SELECT")),
        "{findings:?}"
    );
    let r = grant(&app, "read").await;
    assert_eq!(r["state"], "approved", "not activated: {r}");
    let events = app.actions(r["id"].as_str().unwrap()).await;
    assert!(
        events.contains(&"grant.activation_failed".to_owned()),
        "{events:?}"
    );
    let (_, log) = app
        .get(
            "root",
            &format!(
                "/api/v1/audit/events?request={}&action=grant.activation_failed",
                r["id"].as_str().unwrap()
            ),
        )
        .await;
    let why = log[0]["details"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        why.contains(&read) && why.contains("public.customers.email"),
        "{why}"
    );
    // No login exists meanwhile.
    let like = format!("{}alice%", db.prefix);
    assert!(
        db.query_one_opt("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", &like)
            .await
            .is_none(),
        "the exposed login was removed"
    );
    // Fixed in the target: the next retry activates the grant, masked.
    db.exec(&format!("REVOKE SELECT ON customers FROM {read}"))
        .await;
    let r = app
        .wait_state(r["id"].as_str().unwrap(), "active", Duration::from_secs(15))
        .await;
    let c = login(&app, &r).await;
    let out = everything(&c, "SELECT * FROM customers").await;
    assert_eq!(leaked(&out), None, "{out}");
}

#[tokio::test]
async fn views_and_roles_that_read_masked_columns_are_exposures_too() {
    // pg_read_all_data reads every table; a view in public reads the raw column for its owner.
    let Some((db, app, read)) = setup("GRANT pg_read_all_data TO {read};").await else {
        return;
    };
    let findings = app.app().check_resource("orders-db").await.unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains(&format!("target role {read}"))),
        "pg_read_all_data is an exposure: {findings:?}"
    );
    db.exec(&format!(
        "REVOKE pg_read_all_data FROM {read}; CREATE VIEW public.contact AS SELECT id, lower(email) AS e FROM customers; GRANT SELECT ON public.contact TO {read};"
    ))
    .await;
    let findings = app.app().check_resource("orders-db").await.unwrap();
    assert!(
        findings.iter().any(|f| f
            .message
            .contains("public.contact, which reads public.customers.email")),
        "a view over a masked column is an exposure: {findings:?}"
    );
    let r = grant(&app, "read").await;
    assert_eq!(r["state"], "approved", "{r}");
}

#[tokio::test]
async fn resource_check_says_whether_the_target_refuses_wrong_passwords() {
    let Some((db, app, _)) = setup(GOOD_ROLE).await else {
        return;
    };
    // The truth, found the way an attacker would: a fresh login, a wrong password.
    let probe = format!("{}truth", db.prefix);
    db.exec(&format!("CREATE ROLE {probe} LOGIN PASSWORD 'right'"))
        .await;
    let url = db
        .admin_url
        .replacen("postgres@", &format!("{probe}:wrong@"), 1);
    let trusted = pg_connect(&url).await.is_ok();
    db.exec(&format!("DROP ROLE {probe}")).await;
    let findings = app.app().check_resource("orders-db").await.unwrap();
    let auth: Vec<_> = findings
        .iter()
        .filter(|f| f.topic == "authentication")
        .collect();
    assert_eq!(!auth.is_empty(), trusted, "{findings:?}");
    if trusted {
        assert!(auth[0].message.contains("trust"), "{:?}", auth[0]);
        // Said at start too, as an audit event.
        let (_, log) = app
            .get("root", "/api/v1/audit/events?action=resource.checked")
            .await;
        assert_eq!(log[0]["outcome"], "failure", "{log}");
    }
    // The probe left nothing behind.
    let like = format!("{}probe%", db.prefix);
    assert!(
        db.query_one_opt("SELECT 1 FROM pg_roles WHERE rolname LIKE $1", &like)
            .await
            .is_none()
    );
}

/// A connection whose notices and notifications are kept, as a client would see them.
async fn login_listening(
    app: &TestApp,
    r: &Value,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
) {
    let creds = app
        .credentials("alice", r["grant_id"].as_str().unwrap())
        .await;
    let (client, mut conn) =
        tokio_postgres::connect(creds["dsn"].as_str().unwrap(), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = futures_util::future::poll_fn(|cx| conn.poll_message(cx)).await {
            let _ = tx.send(m);
        }
    });
    (client, rx)
}

#[tokio::test]
async fn notices_notifications_and_psql_carry_only_masked_values() {
    let Some((_db, app, _)) = setup(GOOD_ROLE).await else {
        return;
    };
    let r = grant(&app, "read").await;
    let (c, mut messages) = login_listening(&app, &r).await;
    c.batch_execute(
        "LISTEN leak;
         DO $$ DECLARE v text; BEGIN SELECT string_agg(email || card || tax_id, ',') INTO v FROM customers; RAISE NOTICE 'got %', v; END $$;
         SELECT pg_notify('leak', (SELECT string_agg(email || card, ',') FROM customers));",
    )
    .await
    .unwrap();
    let (mut notice, mut notification) = (None, None);
    while notice.is_none() || notification.is_none() {
        let m = tokio::time::timeout(Duration::from_secs(5), messages.recv())
            .await
            .expect("a notice and a notification")
            .unwrap();
        match m {
            tokio_postgres::AsyncMessage::Notice(n) => notice = Some(n.message().to_owned()),
            tokio_postgres::AsyncMessage::Notification(n) => {
                notification = Some(n.payload().to_owned())
            }
            _ => {}
        }
    }
    let (notice, notification) = (notice.unwrap(), notification.unwrap());
    assert!(
        notice.contains("***********.com") && leaked(&notice).is_none(),
        "{notice}"
    );
    assert!(
        notification.contains("************1111") && leaked(&notification).is_none(),
        "{notification}"
    );

    // psql, with the grant's own credentials in its environment.
    let creds = app
        .credentials("alice", r["grant_id"].as_str().unwrap())
        .await;
    let mut psql = std::process::Command::new(jitgate_testkit::psql());
    psql.args([
        "-X",
        "-v",
        "ON_ERROR_STOP=0",
        "-c",
        "select * from customers",
        "-c",
        "select email::int from customers",
        "-c",
        "select email from public.customers",
    ]);
    for (k, v) in creds["env"].as_object().unwrap() {
        psql.env(k, v.as_str().unwrap());
    }
    let out = psql.output().expect("psql runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("************1111") && text.contains("permission denied"),
        "{text}"
    );
    assert_eq!(leaked(&text), None, "{text}");
}
