//! The red team: attempts to read masked values, or to run what guardrails deny, through the
//! gateway's own layer alone. The resources use one shared upstream login
//! (`provisioning = "none"`) that may read everything, so nothing but the gateway stands between
//! the user and the data.
//!
//! Each attempt is one line: the SQL to send, what would show if it leaked (or which effect
//! would show if it ran), and whether jitgate is expected to refuse it or mask it. Every
//! attempt also runs straight against PostgreSQL as the same login, where it must leak: an
//! attempt that cannot leak there proves nothing here. Each prints one line with its outcome.

mod audit;
mod channels;
mod clients;
mod computed;
mod guard;
mod protocol;
pub mod raw;
mod stash;

use serde_json::json;

use crate::helpers::TestApp;
use crate::services::PgDb;
use raw::{Raw, Reply};

/// What must never come back through the gateway: a masked email and card number, read raw.
pub const ANN: &str = "ann.secret";
pub const ANN_CARD: &str = "49291234";

pub struct Lab {
    pub db: PgDb,
    pub app: TestApp,
    /// The shared upstream login.
    pub shared: String,
    pub port: u16,
}

impl Lab {
    /// A database with customers (email and card masked), an inheriting archive table, a view
    /// over them, payments and secrets (guarded), two functions of the user's; a shared login
    /// that may read and write all of it; and ci-bot's grants on four resources over it:
    /// `masked-db` (column rules), `guarded-db` (guardrails), `scanned-db` (detectors only),
    /// `gone-db` (a database that does not exist).
    pub async fn start() -> Option<Lab> {
        let mut db = PgDb::create().await?;
        let shared = format!("{}shared", db.prefix);
        db.role(
            &shared,
            &format!("ALTER ROLE {shared} LOGIN PASSWORD 's3cret'"),
        )
        .await;
        db.exec(&format!(
            "CREATE TABLE customers (id int PRIMARY KEY CHECK (id > 0), name text, email text UNIQUE, card text, note text);
             INSERT INTO customers VALUES
               (1, 'Ann', 'ann.secret@example.com', '4929123456789012', 'n1'),
               (2, 'Bob', 'bob.hidden@example.org', '5500005555555559', 'n2');
             CREATE TABLE customers_archive () INHERITS (customers);
             INSERT INTO customers_archive VALUES (3, 'Zed', 'zed.archive@example.net', '4000000000000002', 'n3');
             CREATE VIEW contacts AS SELECT id, email AS contact FROM customers;
             CREATE TABLE payments (id int PRIMARY KEY, amount int);
             INSERT INTO payments VALUES (1, 10), (2, 20), (3, 30);
             CREATE TABLE secrets (id int, s text);
             INSERT INTO secrets VALUES (1, 'the-launch-code');
             CREATE FUNCTION peek() RETURNS text LANGUAGE sql AS 'SELECT s FROM secrets LIMIT 1';
             CREATE FUNCTION noisy() RETURNS int LANGUAGE plpgsql AS $$
               DECLARE e text; BEGIN SELECT email INTO e FROM customers WHERE id = 1;
               RAISE NOTICE 'value %', e; RETURN 1; END $$;
             ANALYZE customers;
             CREATE VIEW stats_peek AS SELECT histogram_bounds::text AS h, tablename, attname FROM pg_stats;
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {shared};
             GRANT CREATE ON SCHEMA public TO {shared};
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {shared};"
        ))
        .await;
        let resource = |name: &str, database: &str, role: &str| {
            format!(
                "[[resources]]\nname = \"{name}\"\nkind = \"postgres\"\nprovisioning = \"none\"\nupstream_url = \"postgres://{shared}:s3cret@127.0.0.1:5432/{database}\"\n[resources.roles.{role}]\n\n"
            )
        };
        let config = format!(
            r#"
[gateway.postgres]
listen = "127.0.0.1:0"

{masked}{guarded}{scanned}{gone}
[[policies]]
name = "red"
principals = ["service:ci-bot"]
resources = ["masked-db", "guarded-db", "scanned-db", "gone-db"]
roles = ["read", "write"]
max_duration = "1h"
[policies.approval]
required = 0

[[masking]]
name = "pii"
resources = ["masked-db"]
columns = ["public.customers.email", "public.customers.card"]
strategy = "partial"
keep = 4

[[masking]]
name = "found"
resources = ["scanned-db"]
detectors = ["email", "card"]
strategy = "redact"

[[guardrails]]
name = "no-harm"
resources = ["guarded-db"]
deny = ["ddl", "truncate", "delete_without_where", "update_without_where"]
tables = ["public.secrets"]
"#,
            masked = resource("masked-db", &db.name, "read"),
            guarded = resource("guarded-db", &db.name, "write"),
            scanned = resource("scanned-db", &db.name, "read"),
            gone = resource("gone-db", &format!("{}_gone", db.name), "read"),
        );
        let app = TestApp::start(&config).await;
        for (resource, role) in [
            ("masked-db", "read"),
            ("guarded-db", "write"),
            ("scanned-db", "read"),
            ("gone-db", "read"),
        ] {
            let r = app
                .request(
                    "ci-bot",
                    json!({"resource": resource, "role": role, "duration": "10m"}),
                )
                .await;
            assert_eq!(r["state"], "active", "{r}");
        }
        let port = app.gateway_port();
        Some(Lab {
            db,
            app,
            shared,
            port,
        })
    }

    /// A session through the gateway on `resource`, with extra startup parameters.
    pub async fn gateway(&self, resource: &str, extra: &[(&str, &str)]) -> Raw {
        let mut params = vec![("user", "ci-bot"), ("database", resource)];
        params.extend_from_slice(extra);
        Raw::connect(self.port, &params, Some("tok-ci-bot"))
            .await
            .unwrap_or_else(|r| panic!("login to {resource} refused: {:?}", r.errors()))
    }

    /// A session straight to PostgreSQL as the shared login.
    pub async fn direct(&self, extra: &[(&str, &str)]) -> Raw {
        let mut params = vec![
            ("user", self.shared.as_str()),
            ("database", self.db.name.as_str()),
        ];
        params.extend_from_slice(extra);
        Raw::connect(5432, &params, None)
            .await
            .unwrap_or_else(|r| panic!("direct login refused: {:?}", r.errors()))
    }

    /// One value, read as the admin.
    pub async fn scalar(&self, sql: &str) -> String {
        let c = crate::services::pg_connect(&self.db.admin_url)
            .await
            .unwrap();
        let rows = c.simple_query(sql).await.unwrap();
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// What jitgate is expected to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// It refuses (SQLSTATE 42501, a jitgate message) at least one step.
    Refused,
    /// Every step runs; what comes back is masked (or withheld).
    Masked,
}

/// One bypass attempt: simple Query steps (`{n}` stands for the attempt's number, for names
/// that must not clash), and what would show if it leaked.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub name: &'static str,
    pub steps: &'static [&'static str],
    pub leak: &'static str,
    pub expect: Expect,
}

pub const fn attempt(
    name: &'static str,
    steps: &'static [&'static str],
    leak: &'static str,
    expect: Expect,
) -> Attempt {
    Attempt {
        name,
        steps,
        leak,
        expect,
    }
}

impl Reply {
    pub fn extend(&mut self, other: Reply) {
        self.msgs.extend(other.msgs);
        self.bytes.extend(other.bytes);
    }
}

/// Runs `steps` in one session, returning all the server sent.
async fn run_steps(s: &mut Raw, steps: &[String]) -> Reply {
    let mut all = Reply::default();
    for step in steps {
        all.extend(s.query(step).await);
    }
    all
}

/// The verdict on one attempt's reply through the gateway, if it failed.
pub fn judge(name: &str, reply: &Reply, leak: &str, expect: Expect) -> Option<String> {
    if reply.contains(leak) {
        return Some(format!("{name}: LEAKED {leak:?}"));
    }
    let refused = reply.refused();
    eprintln!(
        "red team: {name}: {}",
        if refused { "refused" } else { "masked" }
    );
    match (expect, refused) {
        (Expect::Refused, false) => Some(format!(
            "{name}: expected a refusal, got {:?}",
            reply.errors()
        )),
        (Expect::Masked, true) => Some(format!(
            "{name}: refused, expected masked: {:?}",
            reply.errors()
        )),
        _ => None,
    }
}

/// Runs every attempt through the gateway on `resource`, each in a session of its own, then
/// straight against PostgreSQL, where each must leak.
pub async fn run(lab: &Lab, resource: &str, attempts: &[Attempt]) {
    let steps = |n: usize, a: &Attempt| -> Vec<String> {
        a.steps
            .iter()
            .map(|s| s.replace("{n}", &n.to_string()))
            .collect()
    };
    let mut failures = Vec::new();
    for (n, a) in attempts.iter().enumerate() {
        let mut s = lab.gateway(resource, &[]).await;
        let reply = run_steps(&mut s, &steps(n, a)).await;
        failures.extend(judge(a.name, &reply, a.leak, a.expect));
    }
    for (n, a) in attempts.iter().enumerate() {
        let mut s = lab.direct(&[]).await;
        let reply = run_steps(&mut s, &steps(n, a)).await;
        if !reply.contains(a.leak) {
            failures.push(format!(
                "{}: does not leak even straight to PostgreSQL: {:?}",
                a.name,
                reply.errors()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
