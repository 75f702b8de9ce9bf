//! `jitgate-bench masking-db`: masking enforced by PostgreSQL itself. The same 1,000-row,
//! 10-column query read with a grant's own login (no gateway), once by a role without masking
//! and once by a role whose `email` (partial) and `name` (keyed hash) columns PostgreSQL masks
//! through jitgate's masked views; alternated in one run, as `jitgate-bench masking` does for
//! the gateway.

use crate::gateway::{Server, drop_logins, pg};
use crate::masking::{PEOPLE, alternate, report};

/// `strategy`: one strategy for both masked columns; by default `partial` for `email` and
/// `hash` for `name`.
pub async fn run(strategy: Option<String>) -> anyhow::Result<()> {
    let base = std::env::var("JITGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = pg(&format!("{base}/postgres")).await?;
    let db = format!("jg_maskdb_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let result = measure(&base, &db, strategy.as_deref()).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await;
    drop_logins(&admin, "jgm", &db).await;
    result
}

async fn measure(base: &str, db: &str, strategy: Option<&str>) -> anyhow::Result<()> {
    let (email, name) = strategy.map_or(("partial", "hash"), |s| (s, s));
    pg(&format!("{base}/{db}"))
        .await?
        .batch_execute(&format!(
            "{PEOPLE}
             CREATE ROLE {db}_plain; GRANT SELECT ON people TO {db}_plain;
             CREATE ROLE {db}_masked;
             GRANT SELECT (id, note, city, country, status, sku, comment, created) ON people TO {db}_masked;"
        ))
        .await?;
    let server = Server::start(&format!(
        "[[resources]]\nname = \"people-db\"\nkind = \"postgres\"\nadmin_url = \"{base}/{db}\"\nrole_prefix = \"jgm_\"\n\
         [resources.roles.plain]\ngrants = [\"{db}_plain\"]\n[resources.roles.masked]\ngrants = [\"{db}_masked\"]\n\
         [[policies]]\nname = \"p\"\nprincipals = [\"service:alice\"]\nresources = [\"*\"]\nroles = [\"*\"]\nmax_duration = \"1h\"\n[policies.approval]\nrequired = 0\n\
         [[masking]]\nname = \"pii\"\nroles = [\"masked\"]\ncolumns = [\"people.email\"]\nstrategy = \"{email}\"\n\
         [[masking]]\nname = \"names\"\nroles = [\"masked\"]\ncolumns = [\"people.name\"]\nstrategy = \"{name}\"\n"
    ))
    .await?;
    let login = |role: &'static str| {
        let server = &server;
        async move {
            let r = server.grant("people-db", role).await?;
            anyhow::ensure!(
                r["state"] == "active",
                "the {role} grant is not active: {r}"
            );
            let grant = r["grant_id"].as_str().unwrap_or_default();
            pg(&server.credentials(grant).await?).await
        }
    };
    let plain = login("plain").await?;
    let masked = login("masked").await?;
    let query = "SELECT * FROM people ORDER BY id";
    let (ps, ms) = (plain.prepare(query).await?, masked.prepare(query).await?);

    // Check that the database masks, and warm both up.
    let rows = masked.query(&ms, &[]).await?;
    anyhow::ensure!(rows.len() == 1000, "expected 1,000 rows");
    let (masked_name, masked_email): (Option<String>, Option<String>) =
        (rows[0].get(1), rows[0].get(2));
    anyhow::ensure!(
        masked_name.as_deref() != Some("Person 1")
            && masked_email.as_deref() != Some("person1@example.com"),
        "not masked: {masked_name:?} {masked_email:?}"
    );
    plain.query(&ps, &[]).await?;

    let (plain_time, masked_time) = alternate((&plain, &ps), (&masked, &ms)).await?;
    report(
        plain_time,
        masked_time,
        &format!("2 columns masked by PostgreSQL ({email}, {name}), direct login"),
    );
    Ok(())
}
