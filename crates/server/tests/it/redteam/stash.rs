//! Class 2 of issue 17: values stashed by one statement and read by the next.

use super::Expect::{Masked, Refused};
use super::{ANN, Attempt, Lab, attempt, run};

#[rustfmt::skip]
const STASH: &[Attempt] = &[
    attempt("cursor, fetched in the transaction", &["BEGIN", "DECLARE c{n} CURSOR FOR SELECT lower(email) FROM customers", "FETCH ALL FROM c{n}", "COMMIT"], ANN, Masked),
    attempt("cursor WITH HOLD, fetched later", &["DECLARE h{n} CURSOR WITH HOLD FOR SELECT email || '' FROM customers", "FETCH ALL h{n}"], ANN, Masked),
    attempt("cursor declared again over something harmless", &["DECLARE d{n} CURSOR WITH HOLD FOR SELECT lower(email) FROM customers", "DECLARE d{n} CURSOR WITH HOLD FOR SELECT 'x'", "FETCH ALL d{n}"], ANN, Masked),
    attempt("binary cursor", &["BEGIN", "DECLARE b{n} BINARY CURSOR FOR SELECT email || '' FROM customers", "FETCH ALL b{n}", "COMMIT"], ANN, Masked),
    attempt("SQL PREPARE, then EXECUTE", &["PREPARE p{n} AS SELECT lower(email) FROM customers", "EXECUTE p{n}"], ANN, Masked),
    attempt("SELECT INTO a temp table", &["SELECT email INTO TEMP s{n} FROM customers", "SELECT * FROM s{n}"], ANN, Refused),
    attempt("CREATE TEMP TABLE AS", &["CREATE TEMP TABLE t{n} AS SELECT email FROM customers", "SELECT lower(email) FROM t{n}"], ANN, Refused),
    attempt("temp table shadowing the masked one", &["CREATE TEMP TABLE customers AS SELECT * FROM public.customers", "SELECT email FROM customers"], ANN, Refused),
    attempt("temp view over the column", &["CREATE TEMP VIEW v{n} AS SELECT email || '' AS e FROM customers", "SELECT e FROM v{n}"], ANN, Refused),
    attempt("materialized view", &["CREATE MATERIALIZED VIEW m{n} AS SELECT email || '' AS e FROM customers", "SELECT e FROM m{n}", "DROP MATERIALIZED VIEW m{n}"], ANN, Refused),
    attempt("set_config, then current_setting", &["SELECT set_config('my.x{n}', email, false) FROM customers WHERE id = 1", "SELECT current_setting('my.x{n}')"], ANN, Refused),
    attempt("large object, then lo_get", &["SELECT lo_from_bytea(4242{n}, convert_to(email, 'UTF8')) FROM customers WHERE id = 1", "SELECT convert_from(lo_get(4242{n}), 'UTF8')", "SELECT lo_unlink(4242{n})"], ANN, Refused),
    attempt("INSERT … SELECT into a table of one's own", &["CREATE TEMP TABLE l{n} (v text)", "INSERT INTO l{n} SELECT email FROM customers", "SELECT v || '' FROM l{n}"], ANN, Refused),
    attempt("UPDATE moving the value to an unmasked column", &["UPDATE customers SET note = email WHERE id = 1", "SELECT note FROM customers WHERE id = 1", "UPDATE customers SET note = 'n1' WHERE id = 1"], ANN, Refused),
    attempt("data-modifying CTE storing it", &["CREATE TEMP TABLE w{n} (v text)", "WITH x AS (INSERT INTO w{n} SELECT email FROM customers RETURNING 1) SELECT count(*) FROM x", "SELECT v || '' FROM w{n}"], ANN, Refused),
    attempt("pg_notify to oneself", &["LISTEN ch{n}", "SELECT pg_notify('ch{n}', email) FROM customers WHERE id = 1", "SELECT 1"], ANN, Refused),
];

#[tokio::test]
async fn values_stashed_in_one_statement_stay_masked_in_the_next() {
    let Some(lab) = Lab::start().await else {
        return;
    };
    run(&lab, "masked-db", STASH).await;
}
