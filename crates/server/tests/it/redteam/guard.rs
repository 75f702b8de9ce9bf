//! Class 6 of issue 17: guardrails read SQL as PostgreSQL will run it. Each attempt would
//! delete, update, create or read what the `no-harm` rule denies (or change how the session
//! reads SQL first); it must be refused, and what it would have done must not have happened.

use super::raw::function_call;
use super::{Lab, judge};

/// A guardrail bypass attempt: startup parameters, the SQL, what would show if it ran (an
/// admin's query whose answer would change, or `session:` a query in the same session), and
/// what would show if it read what it must not.
struct GuardAttempt {
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    sql: &'static str,
    check: &'static str,
    leak: &'static str,
}

const fn guard(
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    sql: &'static str,
    check: &'static str,
    leak: &'static str,
) -> GuardAttempt {
    GuardAttempt {
        name,
        params,
        sql,
        check,
        leak,
    }
}

const COUNT: &str = "SELECT count(*) FROM payments";
const SECRET: &str = "the-launch-code";

#[rustfmt::skip]
const ATTEMPTS: &[GuardAttempt] = &[
    guard("standard_conforming_strings off by SET", &[], "SET standard_conforming_strings = off", "session:SHOW standard_conforming_strings", ""),
    guard("standard_conforming_strings off by set_config", &[], "SELECT set_config('standard_conforming_strings', 'off', false)", "session:SHOW standard_conforming_strings", ""),
    guard("standard_conforming_strings off through pg_settings", &[], "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'", "session:SHOW standard_conforming_strings", ""),
    guard("backslash_quote changed", &[], "SET backslash_quote = on", "session:SHOW backslash_quote", ""),
    guard("search path putting pg_catalog last", &[], "SET search_path = public, pg_catalog", "session:SHOW search_path", ""),
    guard("client encoding changed to SJIS", &[], "SET client_encoding = 'SJIS'", "session:SHOW client_encoding", ""),
    guard("a DELETE hidden by standard_conforming_strings = off from the startup options", &[("options", "-c standard_conforming_strings=off")], r"SELECT 'a\''; DELETE FROM payments; --'", COUNT, ""),
    guard("a DELETE hidden in an SJIS character that swallows a backslash", &[("client_encoding", "SJIS")], "SELECT E'\u{c1}\\'; DELETE FROM payments; --'", COUNT, ""),
    guard("MERGE … WHEN MATCHED THEN DELETE", &[], "MERGE INTO payments p USING payments q ON p.id = q.id WHEN MATCHED THEN DELETE", COUNT, ""),
    guard("INSERT … ON CONFLICT DO UPDATE over the whole table", &[], "INSERT INTO payments SELECT * FROM payments ON CONFLICT (id) DO UPDATE SET amount = 0", "SELECT sum(amount) FROM payments", ""),
    guard("SELECT INTO where DDL is denied", &[], "SELECT * INTO stash_into FROM payments", "SELECT to_regclass('stash_into') IS NULL", ""),
    guard("a DELETE in a data-modifying CTE", &[], "WITH d AS (DELETE FROM payments RETURNING *) SELECT count(*) FROM d", COUNT, ""),
    guard("a DELETE in a DO block", &[], "DO $$ BEGIN DELETE FROM payments; END $$", COUNT, ""),
    guard("COPY of a denied table", &[], "COPY secrets TO STDOUT", "", SECRET),
    guard("COPY of a query over a denied table", &[], "COPY (SELECT s FROM secrets) TO STDOUT", "", SECRET),
    guard("TABLE of a denied table", &[], "TABLE secrets", "", SECRET),
    guard("query_to_xml over a denied table", &[], "SELECT query_to_xml('select s from secrets', true, false, '')", "", SECRET),
    guard("a function of the user's reading a denied table", &[], "SELECT peek()", "", SECRET),
    guard("a denied table's name Unicode-escaped", &[], r#"SELECT * FROM U&"\0073ecrets""#, "", SECRET),
    guard("a denied table's name escaped with UESCAPE", &[], r#"SELECT * FROM U&"!0073ecrets" UESCAPE '!'"#, "", SECRET),
];

/// What `check` answers, in `s` for a `session:` check, else as the admin.
async fn checked(lab: &Lab, s: &mut super::raw::Raw, check: &str) -> String {
    match check.strip_prefix("session:") {
        Some(q) => s
            .query(q)
            .await
            .values()
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default(),
        None => lab.scalar(check).await,
    }
}

#[tokio::test]
async fn guardrails_hold_however_the_sql_is_written() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    let mut failures = Vec::new();
    for a in ATTEMPTS {
        let mut s = lab.gateway("guarded-db", a.params).await;
        let before = if a.check.is_empty() {
            String::new()
        } else {
            checked(&lab, &mut s, a.check).await
        };
        let reply = s.query(a.sql).await;
        failures.extend(judge(
            a.name,
            &reply,
            if a.leak.is_empty() {
                "\u{1}\u{2}nothing to read"
            } else {
                a.leak
            },
            super::Expect::Refused,
        ));
        if !a.check.is_empty() {
            let after = checked(&lab, &mut s, a.check).await;
            if after != before {
                failures.push(format!("{}: it ran ({before} became {after})", a.name));
            }
        }
        // Whatever got through is undone, so the next attempt starts from the same data.
        lab.db
            .exec("DELETE FROM payments; INSERT INTO payments VALUES (1, 10), (2, 20), (3, 30); DROP TABLE IF EXISTS stash_into")
            .await;
        // Straight to PostgreSQL (in a transaction rolled back), it does run or leak.
        let mut d = lab.direct(a.params).await;
        d.query("BEGIN").await;
        let direct = d.query(a.sql).await;
        let ran = if a.check.is_empty() {
            direct.contains(a.leak)
        } else {
            let q = a.check.trim_start_matches("session:");
            d.query(q)
                .await
                .values()
                .into_iter()
                .flatten()
                .next()
                .unwrap_or_default()
                != before
        };
        d.query("ROLLBACK").await;
        if !ran {
            failures.push(format!(
                "{}: has no effect even straight to PostgreSQL: {:?}",
                a.name,
                direct.errors()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A fastpath call runs a function by OID with no SQL: under a rule with tables it is refused.
#[tokio::test]
async fn fastpath_calls_are_refused_under_a_rule_with_tables() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    let oid: u32 = lab
        .scalar("SELECT 'query_to_xml(text,boolean,boolean,text)'::regprocedure::oid")
        .await
        .parse()
        .unwrap();
    let call = function_call(oid, &["select s from secrets", "t", "f", ""]);
    let mut s = lab.gateway("guarded-db", &[]).await;
    let reply = s.exchange(std::slice::from_ref(&call), 1).await;
    let failure = judge(
        "fastpath under a rule with tables",
        &reply,
        SECRET,
        super::Expect::Refused,
    );
    assert!(failure.is_none(), "{failure:?}");
    let mut d = lab.direct(&[]).await;
    assert!(d.exchange(&[call], 1).await.contains(SECRET));
}
