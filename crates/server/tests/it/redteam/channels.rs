//! Class 3 of issue 17: channels other than rows. Errors and notices that quote a value,
//! notifications, parameter status reports and fastpath function results.

use super::Expect::{Masked, Refused};
use super::raw::function_call;
use super::{ANN, Attempt, Lab, attempt, judge, run};

#[rustfmt::skip]
const CHANNELS: &[Attempt] = &[
    attempt("cast error quoting the value", &["SELECT email::int FROM customers WHERE id = 1"], ANN, Masked),
    attempt("to_date error quoting part of it", &["SELECT to_date(email, 'YYYY-MM-DD') FROM customers WHERE id = 1"], "\"ann.\"", Masked),
    attempt("json error detail quoting it", &["SELECT email::jsonb FROM customers WHERE id = 1"], "Token \"ann\"", Masked),
    attempt("regclass error (SQLSTATE class 42)", &["SELECT email::regclass FROM customers WHERE id = 1"], ANN, Masked),
    attempt("check constraint's failing row", &["UPDATE customers SET id = -id WHERE id = 1"], ANN, Masked),
    attempt("error inside a transaction, seen at the next statement", &["BEGIN", "SELECT 1 FROM customers WHERE email::int > 0", "SELECT 1", "ROLLBACK"], ANN, Masked),
    attempt("error through a cursor", &["BEGIN", "DECLARE e{n} CURSOR FOR SELECT email::int FROM customers", "FETCH ALL e{n}", "ROLLBACK"], ANN, Masked),
    attempt("parameter status via set_config", &["SELECT set_config('application_name', email, false) FROM customers WHERE id = 1"], ANN, Refused),
    attempt("a notice raised by a function of the user's", &["SELECT noisy()"], ANN, Refused),
];

#[tokio::test]
async fn errors_notices_and_settings_say_nothing_of_masked_values() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    run(&lab, "masked-db", CHANNELS).await;
}

/// A notification any session sends may carry any value: under column rules its payload is
/// withheld; detectors alone mask what they find in it.
#[tokio::test]
async fn notifications_from_other_sessions_are_withheld_or_scrubbed() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    let mut failures = Vec::new();
    for (resource, what) in [
        ("masked-db", "under column rules"),
        ("scanned-db", "under detectors"),
    ] {
        let mut listener = lab.gateway(resource, &[]).await;
        listener.query("LISTEN news").await;
        let mut direct = lab.direct(&[]).await;
        direct
            .query("SELECT pg_notify('news', 'mail ann.secret@example.com')")
            .await;
        // The notification comes before the answer to the listener's next statement.
        let reply = listener.query("SELECT 1").await;
        assert!(
            reply.msgs.iter().any(|m| m.kind == b'A'),
            "{what}: the notification itself still arrives"
        );
        failures.extend(judge(&format!("notification {what}"), &reply, ANN, Masked));
        // Straight to PostgreSQL it does leak.
        let mut raw_listener = lab.direct(&[]).await;
        raw_listener.query("LISTEN news").await;
        direct
            .query("SELECT pg_notify('news', 'mail ann.secret@example.com')")
            .await;
        assert!(raw_listener.query("SELECT 1").await.contains(ANN));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A fastpath FunctionCall runs a function by OID with arguments and no SQL: here
/// `query_to_xml` reading the masked column.
#[tokio::test]
async fn fastpath_calls_are_refused_under_column_rules() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    let oid: u32 = lab
        .scalar("SELECT 'query_to_xml(text,boolean,boolean,text)'::regprocedure::oid")
        .await
        .parse()
        .unwrap();
    let call = function_call(oid, &["select email from customers", "t", "f", ""]);
    let mut s = lab.gateway("masked-db", &[]).await;
    let reply = s.exchange(std::slice::from_ref(&call), 1).await;
    let failures: Vec<String> = judge("fastpath query_to_xml", &reply, ANN, Refused)
        .into_iter()
        .collect();
    // The session goes on.
    assert!(s.query("SELECT 1").await.errors().is_empty());
    let mut direct = lab.direct(&[]).await;
    assert!(direct.exchange(&[call], 1).await.contains(ANN));
    assert!(failures.is_empty(), "{failures:#?}");
}
