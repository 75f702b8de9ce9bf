//! Class 1 and 5 of issue 17: values computed from a masked table, whatever they are called,
//! and a partial mask applied to what the user chose to compute.

use super::Expect::{Masked, Refused};
use super::{ANN, ANN_CARD, Attempt, Lab, attempt, run};

#[rustfmt::skip]
const COMPUTED: &[Attempt] = &[
    attempt("whole row, translated", &["SELECT translate(c::text, '0123456789@', 'abcdefghij#') FROM customers c"], "ann.secret#example.com", Masked),
    attempt("whole row as JSON", &["SELECT row_to_json(c) FROM customers c"], ANN, Masked),
    attempt("whole row as text", &["SELECT c::text FROM customers c"], ANN, Masked),
    attempt("table name as a whole row", &["SELECT to_json(customers)::text FROM customers"], ANN, Masked),
    attempt("column alias list", &["SELECT lower(e) FROM customers AS c(i, n, e)"], ANN, Masked),
    attempt("function in FROM over the column", &["SELECT x FROM customers c, lower(c.email) AS f(x)"], ANN, Masked),
    attempt("VALUES in FROM over the column", &["SELECT x FROM customers c, LATERAL (VALUES (c.email)) v(x)"], ANN, Masked),
    attempt("Unicode-escaped identifier", &[r#"SELECT lower(U&"\0065mail") FROM customers"#], ANN, Masked),
    attempt("json_each_text over the row", &["SELECT value FROM customers c, json_each_text(row_to_json(c))"], ANN, Masked),
    attempt("jsonb path over the row", &["SELECT jsonb_path_query(to_jsonb(c), '$.email')::text FROM customers c"], ANN, Masked),
    attempt("table_to_xml", &["SELECT table_to_xml('customers', true, false, '')"], ANN, Refused),
    attempt("query_to_xml", &["SELECT query_to_xml('select email from customers', true, false, '')"], ANN, Refused),
    attempt("pg_stats histogram", &["SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'email'"], ANN, Refused),
    attempt("a view over pg_stats", &["SELECT h FROM stats_peek WHERE tablename = 'customers' AND attname = 'email'"], ANN, Masked),
    attempt("a view over pg_stats, computed", &["SELECT h || '' FROM stats_peek WHERE tablename = 'customers'"], ANN, Masked),
    attempt("string_agg", &["SELECT string_agg(email, ',') FROM customers"], ANN, Masked),
    attempt("array_agg as text", &["SELECT array_agg(email)::text FROM customers"], ANN, Masked),
    attempt("UNION with a constant", &["SELECT email FROM customers UNION ALL SELECT 'x'"], ANN, Masked),
    attempt("base64 of the value", &["SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM customers WHERE id = 1"], "YW5uLnNlY3JldEBleGFtcGxlLmNvbQ", Masked),
    attempt("scalar subquery in the select list", &["SELECT (SELECT email FROM customers WHERE id = 1) || ''"], ANN, Masked),
    attempt("CTE with a renamed column", &["WITH t(e) AS (SELECT email FROM customers) SELECT lower(e) FROM t"], ANN, Masked),
    attempt("composite field of the row", &["SELECT (c).email FROM customers c"], ANN, Masked),
    attempt("functional notation", &["SELECT email(c) FROM customers c"], ANN, Refused),
    attempt("format of the row", &["SELECT format('%s', c) FROM customers c"], ANN, Masked),
    attempt("xmlelement (SQL the parser cannot read)", &["SELECT xmlelement(name x, email)::text FROM customers"], ANN, Refused),
    attempt("view over the column, computed", &["SELECT upper(contact) FROM contacts"], "ANN.SECRET", Masked),
    attempt("inheriting table read directly", &["SELECT email FROM customers_archive"], "zed.archive", Masked),
    attempt("inheriting table, computed", &["SELECT lower(email) FROM ONLY customers_archive"], "zed.archive", Masked),
    attempt("hex of the card", &["SELECT encode(card::bytea, 'hex') FROM customers WHERE id = 1"], "34393239313233343536373839303132", Masked),
    attempt("card digits one by one", &["SELECT regexp_split_to_array(card, '')::text FROM customers WHERE id = 1"], "4,9,2,9,1,2,3,4", Masked),
    attempt("card as a number", &["SELECT card::numeric + 0 FROM customers WHERE id = 1"], ANN_CARD, Masked),
];

/// Class 5: `partial` keeps the last characters of what it masks; applied to a computed value,
/// the user would choose which characters those are.
#[rustfmt::skip]
const PARTIAL: &[Attempt] = &[
    attempt("chosen card digits at the end", &["SELECT '********' || substr(card, 5, 4) FROM customers WHERE id = 1"], "*1234", Masked),
    attempt("chosen email characters at the end", &["SELECT repeat('*', 30) || substr(email, 1, 4) FROM customers WHERE id = 1"], "*ann.", Masked),
    attempt("reversed, so the start shows", &["SELECT reverse(email) FROM customers WHERE id = 1"], ".nna", Masked),
];

#[tokio::test]
async fn computed_values_are_masked_whatever_they_are_called() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    run(&lab, "masked-db", COMPUTED).await;
}

#[tokio::test]
async fn partial_masks_never_apply_to_computed_values() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    run(&lab, "masked-db", PARTIAL).await;
}
