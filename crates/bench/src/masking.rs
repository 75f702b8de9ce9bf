//! `jitgate-bench masking`: a 1,000-row, 10-column result with 3 masked columns through the
//! gateway, against the same query through the same gateway on a resource without masking, in
//! one run. The two are timed in alternating rounds so drift hits both alike.

use std::time::{Duration, Instant};

use crate::gateway::{Server, drop_logins, pg};

/// Rounds of alternating measurements, and queries per round on each side: many short rounds,
/// because on a shared 2-core machine the speed drifts within a second, and 1,000 results a side
/// (about 4 s in all) because 500 left the ratio varying by ±0.05 from run to run.
const ROUNDS: usize = 40;

/// The measured table: 1,000 people, 10 text columns, a card number in every tenth note.
pub(crate) const PEOPLE: &str =
    "CREATE TABLE people (id int PRIMARY KEY, name text, email text, note text, city text,
         country text, status text, sku text, comment text, created text);
     INSERT INTO people
     SELECT i, 'Person ' || i, 'person' || i || '@example.com',
            CASE WHEN i % 10 = 0 THEN 'paid with 4111 1111 1111 1111' ELSE 'no payment note' END,
            'Berlin', 'DE', 'active', 'SKU-' || i, 'a comment of ordinary length', '2026-11-28'
     FROM generate_series(1, 1000) i;";
const PER_ROUND: usize = 25;

pub async fn run() -> anyhow::Result<()> {
    let base = std::env::var("JITGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = pg(&format!("{base}/postgres")).await?;
    let db = format!("jg_mask_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let result = measure(&base, &db).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await;
    drop_logins(&admin, "jgk", &db).await;
    result
}

async fn measure(base: &str, db: &str) -> anyhow::Result<()> {
    pg(&format!("{base}/{db}"))
        .await?
        .batch_execute(&format!(
            "{PEOPLE} CREATE ROLE {db}_r LOGIN PASSWORD 'bench'; GRANT SELECT ON people TO {db}_r;"
        ))
        .await?;
    // Both resources reach the database through one shared login (`provisioning = "none"`), so
    // the database does the same work for both and only the gateway's masking differs. (With
    // per-grant logins PostgreSQL would mask in the database: `jitgate-bench masking-db`.)
    let upstream = shared_login(base, &format!("{db}_r"), "bench", db);
    let resource = |name: &str| {
        format!(
            "[[resources]]\nname = \"{name}\"\nkind = \"postgres\"\nprovisioning = \"none\"\nupstream_url = \"{upstream}\"\n[resources.roles.r]\n"
        )
    };
    let server = Server::start(&format!(
        "{}{}\
         [[policies]]\nname = \"p\"\nprincipals = [\"service:alice\"]\nresources = [\"*\"]\nroles = [\"r\"]\nmax_duration = \"1h\"\n[policies.approval]\nrequired = 0\n\
         [[masking]]\nname = \"pii\"\nresources = [\"masked-db\"]\ncolumns = [\"people.email\"]\nstrategy = \"partial\"\n\
         [[masking]]\nname = \"names\"\nresources = [\"masked-db\"]\ncolumns = [\"people.name\"]\nstrategy = \"hash\"\n\
         [[masking]]\nname = \"cards\"\nresources = [\"masked-db\"]\ndetectors = [\"card\"]\nstrategy = \"redact\"\n",
        resource("plain-db"),
        resource("masked-db"),
    ))
    .await?;
    server.grant("plain-db", "r").await?;
    server.grant("masked-db", "r").await?;
    let plain = pg(&server.url("plain-db")).await?;
    let masked = pg(&server.url("masked-db")).await?;
    let query = "SELECT * FROM people ORDER BY id";
    let (ps, ms) = (plain.prepare(query).await?, masked.prepare(query).await?);

    // Check that masking happens, and warm both up.
    let rows = masked.query(&ms, &[]).await?;
    anyhow::ensure!(rows.len() == 1000, "expected 1,000 rows");
    let email: String = rows[0].get(2);
    let note: String = rows[9].get(3);
    anyhow::ensure!(
        email.ends_with(".com") && email.starts_with('*') && note == "paid with *****",
        "not masked: {email:?} {note:?}"
    );
    plain.query(&ps, &[]).await?;

    let (plain_time, masked_time) = alternate((&plain, &ps), (&masked, &ms)).await?;
    report(
        plain_time,
        masked_time,
        "3 columns masked, detectors over all text",
    );
    Ok(())
}

/// `base` (a `postgres://user@host:port` URL) with another login and database.
fn shared_login(base: &str, user: &str, password: &str, db: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}/{db}")
}

/// Times the same 1,000-row query on two connections in alternating rounds, so drift hits both
/// alike; the total time of each side.
pub(crate) async fn alternate(
    plain: (&tokio_postgres::Client, &tokio_postgres::Statement),
    masked: (&tokio_postgres::Client, &tokio_postgres::Statement),
) -> anyhow::Result<(Duration, Duration)> {
    let (mut plain_time, mut masked_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        // Alternate which goes first.
        for side in [round % 2, 1 - round % 2] {
            let ((client, stmt), total) = if side == 0 {
                (plain, &mut plain_time)
            } else {
                (masked, &mut masked_time)
            };
            let started = Instant::now();
            for _ in 0..PER_ROUND {
                let rows = client.query(stmt, &[]).await?;
                anyhow::ensure!(rows.len() == 1000);
            }
            *total += started.elapsed();
        }
    }
    Ok((plain_time, masked_time))
}

/// Prints both sides' rates and the ratio the targets are set on.
pub(crate) fn report(plain_time: Duration, masked_time: Duration, what: &str) {
    let n = (ROUNDS * PER_ROUND) as f64;
    let (plain_tps, masked_tps) = (n / plain_time.as_secs_f64(), n / masked_time.as_secs_f64());
    let added_ms = (masked_time.as_secs_f64() - plain_time.as_secs_f64()) / n * 1000.0;
    println!(
        "unmasked  {n} results of 1,000 rows x 10 columns: {plain_tps:.1} results/s ({:.2} ms each)",
        1000.0 / plain_tps
    );
    println!(
        "masked    the same, {what}: {masked_tps:.1} results/s ({:.2} ms each)",
        1000.0 / masked_tps
    );
    println!(
        "masked_over_unmasked_tps={:.3} added_ms_per_result={added_ms:.3}",
        masked_tps / plain_tps
    );
}
