//! Masking enforced by PostgreSQL itself, for roles with column rules.
//!
//! In each database the resource manages, the connector keeps a schema of masked views per
//! role ([`Names::views`]): one view per table with a masked column, named like the table, with
//! the table's columns in order and the masked ones computed by their rule's strategy. The views
//! are `security_barrier`, so no function of the user's sees a row or a value before the mask,
//! and they run with their owner's (the admin's) privileges. A grant's login reads them through
//! a group role ([`Names::readers`]), finds them first on its `search_path`, and must hold no
//! privilege on the raw columns: [`exposures`] checks that with `has_column_privilege` before
//! the login may log in. Every channel PostgreSQL has (rows, WHERE, errors, notices, cursors,
//! temp tables, functions) then only ever sees masked values.
//!
//! The `hash` strategy is an HMAC-SHA-256 under the gateway's masking key, computed with the
//! built-in `sha256()` from the key's inner and outer pads, kept in a table only the views'
//! owner can read ([`Names::key`]). It gives the same 16 hex characters as the gateway.

use std::collections::{BTreeMap, HashMap, HashSet};

use jitgate_core::masking::{REDACTED, Strategy};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use crate::MaskColumnRule;
use crate::naming::{pg_ident, pg_literal};

/// The names masking uses in the target for one role of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The schema of the role's masked views, first on its logins' `search_path`.
    pub views: String,
    /// The group role that may read those views; each login of the role is a member.
    pub readers: String,
    /// The schema holding the key of the `hash` strategy (shared by the resource's roles).
    pub key: String,
}

impl Names {
    /// `{prefix}mask_{role}_{6 hex}`: readable, and unique per resource and role however the
    /// names are spelled (the hex comes from both).
    pub fn new(prefix: &str, resource: &str, role: &str) -> Names {
        let mut readable: String = role
            .chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() { c } else { '_' }
            })
            .take(32)
            .collect();
        if readable.is_empty() {
            readable.push('r');
        }
        let digest = Sha256::digest(format!("{resource}\0{role}").as_bytes());
        let tag = hex::encode(&digest[..3]);
        let views = format!("{prefix}mask_{readable}_{tag}");
        Names {
            readers: views.clone(),
            views,
            key: format!("{prefix}mask"),
        }
    }
}

/// How a value of a column's type can carry a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    /// A string type: the mask becomes the value (the view's column is then `text`).
    Text,
    Json,
    Jsonb,
    /// Anything else has no encoding for `*****`: a masked value becomes NULL.
    None,
}

#[derive(Debug, Clone)]
struct Column {
    attnum: i16,
    name: String,
    /// `format_type` of its type, for a typed NULL.
    type_sql: String,
    carrier: Carrier,
    /// The index of the rule that masks it.
    rule: Option<usize>,
}

/// A table (or view, foreign table, materialized view) with at least one masked column.
#[derive(Debug, Clone)]
pub struct MaskedTable {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    columns: Vec<Column>,
}

impl MaskedTable {
    /// `schema.table.column` of each masked column, with its rule's name.
    pub fn masked_columns<'a>(
        &'a self,
        rules: &'a [MaskColumnRule],
    ) -> impl Iterator<Item = (i16, String, &'a str)> + 'a {
        self.columns.iter().filter_map(move |c| {
            let rule = c.rule?;
            Some((
                c.attnum,
                format!("{}.{}.{}", self.schema, self.name, c.name),
                rules[rule].rule.as_str(),
            ))
        })
    }
}

/// What masking finds in one database: the tables to mask, and what else reads them.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// One per view name; a second masked table of the same name in another schema is in
    /// `shadowed` instead (the views share one schema).
    pub tables: Vec<MaskedTable>,
    pub shadowed: Vec<MaskedTable>,
    /// Views, materialized views and child tables that read a masked column or table, with
    /// what they read: a login that may read one of them reads the raw values through it.
    pub readers: Vec<(u32, String, String)>,
    /// Rules with a pattern that matched no column here, by name.
    pub unmatched: Vec<String>,
}

const CATALOG: &str = "SELECT c.oid, n.nspname::text, c.relname::text, a.attnum, a.attname::text, \
       format_type(a.atttypid, a.atttypmod), bt.typcategory::text, bt.typname::text \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
     JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'v', 'm') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)' AND NOT starts_with(n.nspname, $1) \
     ORDER BY c.oid, a.attnum";

/// Every relation that reads another: views and materialized views (through their rewrite
/// rules, by column), and tables that inherit from or partition another (whole). jitgate's own
/// masked views (in schemas starting with `$1`) read the raw columns by design: not listed.
const READERS: &str = "SELECT DISTINCT r.ev_class, d.refobjid, d.refobjsubid::int2 \
     FROM pg_catalog.pg_rewrite r \
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
     WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> r.ev_class \
       AND NOT starts_with((SELECT n.nspname FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = r.ev_class), $1) \
     UNION ALL SELECT i.inhrelid, i.inhparent, 0::int2 FROM pg_catalog.pg_inherits i";

/// Reads the catalog of the connected database and works out what masking must cover there.
/// `skip_prefix` excludes jitgate's own schemas.
pub async fn plan(
    client: &impl GenericClient,
    rules: &[MaskColumnRule],
    skip_prefix: &str,
) -> Result<Plan, tokio_postgres::Error> {
    let rows = client.query(CATALOG, &[&skip_prefix]).await?;
    let mut relations: Vec<MaskedTable> = Vec::new();
    let mut matched: HashSet<usize> = HashSet::new();
    for row in rows {
        let oid: u32 = row.get(0);
        let schema: String = row.get(1);
        let table: String = row.get(2);
        let name: String = row.get(4);
        let category: String = row.get(6);
        let base: String = row.get(7);
        let rule = rules
            .iter()
            .position(|r| r.pattern.matches(&schema, &table, &name));
        if let Some(r) = rule {
            matched.insert(r);
        }
        let column = Column {
            attnum: row.get(3),
            name,
            type_sql: row.get(5),
            carrier: match (category.as_str(), base.as_str()) {
                (_, "json") => Carrier::Json,
                (_, "jsonb") => Carrier::Jsonb,
                ("S", _) => Carrier::Text,
                _ => Carrier::None,
            },
            rule,
        };
        match relations.last_mut() {
            Some(last) if last.oid == oid => last.columns.push(column),
            _ => relations.push(MaskedTable {
                oid,
                schema,
                name: table,
                columns: vec![column],
            }),
        }
    }
    relations.retain(|t| t.columns.iter().any(|c| c.rule.is_some()));
    // One view per name: `public` first, then by schema name.
    relations.sort_by(|a, b| {
        (&a.name, a.schema != "public", &a.schema).cmp(&(&b.name, b.schema != "public", &b.schema))
    });
    let mut plan = Plan::default();
    for t in relations {
        match plan.tables.last() {
            Some(last) if last.name == t.name => plan.shadowed.push(t),
            _ => plan.tables.push(t),
        }
    }
    plan.unmatched = rules
        .iter()
        .enumerate()
        .filter(|(i, _)| !matched.contains(i))
        .map(|(_, r)| format!("{} ({})", r.rule, r.pattern))
        .collect();
    plan.readers = readers(client, &plan, skip_prefix).await?;
    Ok(plan)
}

/// Relations that read a masked column (or a whole masked table), directly or through others;
/// jitgate's own masked views (in schemas starting with `skip_prefix`) are not among them.
async fn readers(
    client: &impl GenericClient,
    plan: &Plan,
    skip_prefix: &str,
) -> Result<Vec<(u32, String, String)>, tokio_postgres::Error> {
    let mut masked: HashMap<(u32, i16), String> = HashMap::new();
    for t in plan.tables.iter().chain(&plan.shadowed) {
        for c in t.columns.iter().filter(|c| c.rule.is_some()) {
            let what = format!("{}.{}.{}", t.schema, t.name, c.name);
            masked.insert((t.oid, c.attnum), what.clone());
            masked.entry((t.oid, 0)).or_insert(what);
        }
    }
    let edges: Vec<(u32, u32, i16)> = client
        .query(READERS, &[&skip_prefix])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // A reader of a reader reads too: follow until nothing new turns up.
    let mut found: BTreeMap<u32, String> = BTreeMap::new();
    loop {
        let before = found.len();
        for &(reader, source, attnum) in &edges {
            if found.contains_key(&reader) {
                continue;
            }
            let via = masked
                .get(&(source, attnum))
                .or_else(|| (attnum == 0).then(|| masked.get(&(source, 0))).flatten())
                .or_else(|| found.get(&source));
            if let Some(via) = via {
                found.insert(reader, via.clone());
            }
        }
        if found.len() == before {
            break;
        }
    }
    if found.is_empty() {
        return Ok(vec![]);
    }
    let oids: Vec<u32> = found.keys().copied().collect();
    let names = client
        .query(
            "SELECT c.oid, format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1)",
            &[&oids],
        )
        .await?;
    Ok(names
        .iter()
        .map(|r| {
            let oid: u32 = r.get(0);
            (oid, r.get(1), found[&oid].clone())
        })
        .collect())
}

/// The SQL of one masked view.
fn view_sql(names: &Names, t: &MaskedTable, rules: &[MaskColumnRule]) -> String {
    let columns: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let value = format!("t.{}", pg_ident(&c.name));
            match c.rule {
                None => value,
                Some(r) => format!(
                    "{} AS {}",
                    masked_value(rules[r].strategy, c, &value, &names.key),
                    pg_ident(&c.name)
                ),
            }
        })
        .collect();
    format!(
        "CREATE VIEW {}.{} WITH (security_barrier) AS SELECT {} FROM {}.{} AS t",
        pg_ident(&names.views),
        pg_ident(&t.name),
        columns.join(", "),
        pg_ident(&t.schema),
        pg_ident(&t.name),
    )
}

/// The expression that replaces a masked column's value: the same replacement the gateway
/// writes, NULL where the type cannot carry it.
fn masked_value(strategy: Strategy, c: &Column, value: &str, key_schema: &str) -> String {
    let null = format!("NULL::{}", c.type_sql);
    if strategy == Strategy::Null || c.carrier == Carrier::None {
        return null;
    }
    let text = format!("{value}::text");
    let key = pg_ident(key_schema);
    let mask = match strategy {
        Strategy::Redact => pg_literal(REDACTED),
        // The kept tail, padded with stars to the value's length (a third cheaper than
        // `repeat() || right()`).
        Strategy::Partial { keep } => format!(
            "lpad(right({text}, least({keep}, char_length({text}) / 2)), char_length({text}), '*')"
        ),
        // HMAC-SHA-256 from the key's pads; only the first 8 bytes are written out.
        Strategy::Hash => format!(
            "encode(substr(sha256((SELECT opad FROM {key}.key) || \
             sha256((SELECT ipad FROM {key}.key) || convert_to({text}, 'UTF8'))), 1, 8), 'hex')"
        ),
        Strategy::Null => unreachable!("handled above"),
    };
    let mask = match c.carrier {
        Carrier::Json => format!("to_json({mask})"),
        Carrier::Jsonb => format!("to_jsonb({mask})"),
        _ => mask,
    };
    format!("CASE WHEN {value} IS NULL THEN NULL ELSE {mask} END")
}

/// HMAC-SHA-256's inner and outer pads of a 32-byte key.
fn pads(key: &[u8; 32]) -> (Vec<u8>, Vec<u8>) {
    let mut ipad = vec![0x36u8; 64];
    let mut opad = vec![0x5cu8; 64];
    for (i, b) in key.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    (ipad, opad)
}

/// Brings the connected database's masked views of one role up to date with the catalog and
/// the rules, and lets the role's readers read them. Views whose SQL has not changed are left
/// alone, so live sessions reading them are not disturbed. Run inside a transaction.
pub async fn install(
    client: &impl GenericClient,
    names: &Names,
    plan: &Plan,
    rules: &[MaskColumnRule],
    key: Option<&[u8; 32]>,
) -> Result<(), InstallError> {
    let (views, readers, key_schema) = (
        pg_ident(&names.views),
        pg_ident(&names.readers),
        pg_ident(&names.key),
    );
    // Two grants of one role provisioning at once would race on the same schema.
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("jitgate masking {}", names.views)],
        )
        .await?;
    client
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '5s';
             CREATE SCHEMA IF NOT EXISTS {key_schema};
             REVOKE ALL ON SCHEMA {key_schema} FROM PUBLIC;
             CREATE TABLE IF NOT EXISTS {key_schema}.key (ipad bytea NOT NULL, opad bytea NOT NULL);
             REVOKE ALL ON TABLE {key_schema}.key FROM PUBLIC;
             CREATE SCHEMA IF NOT EXISTS {views};
             REVOKE ALL ON SCHEMA {views} FROM PUBLIC;
             GRANT USAGE ON SCHEMA {views} TO {readers};"
        ))
        .await?;
    if rules.iter().any(|r| r.strategy == Strategy::Hash) {
        let key = key.ok_or(InstallError::NoKey)?;
        let (ipad, opad) = pads(key);
        let current = client
            .query(&format!("SELECT ipad, opad FROM {key_schema}.key"), &[])
            .await?;
        let same = matches!(&current[..], [row] if row.get::<_, Vec<u8>>(0) == ipad && row.get::<_, Vec<u8>>(1) == opad);
        if !same {
            client
                .execute(&format!("DELETE FROM {key_schema}.key"), &[])
                .await?;
            client
                .execute(
                    &format!("INSERT INTO {key_schema}.key (ipad, opad) VALUES ($1, $2)"),
                    &[&ipad, &opad],
                )
                .await?;
        }
    }
    let existing: HashMap<String, Option<String>> = client
        .query(
            "SELECT c.relname::text, obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            &[&names.views],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut wanted = HashSet::new();
    for t in &plan.tables {
        wanted.insert(t.name.clone());
        let sql = view_sql(names, t, rules);
        let stamp = format!(
            "jitgate masked view of {}.{} sha256={}",
            t.schema,
            t.name,
            hex::encode(&Sha256::digest(sql.as_bytes())[..12])
        );
        if existing
            .get(&t.name)
            .is_some_and(|c| c.as_deref() == Some(&stamp))
        {
            continue;
        }
        let view = format!("{views}.{}", pg_ident(&t.name));
        client
            .batch_execute(&format!(
                "DROP VIEW IF EXISTS {view}; {sql}; COMMENT ON VIEW {view} IS {}; \
                 GRANT SELECT ON {view} TO {readers};",
                pg_literal(&stamp)
            ))
            .await?;
    }
    for gone in existing.keys().filter(|n| !wanted.contains(*n)) {
        client
            .batch_execute(&format!("DROP VIEW IF EXISTS {views}.{}", pg_ident(gone)))
            .await?;
    }
    Ok(())
}

/// Why the masked views could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error("a rule uses the hash strategy but no masking key was given")]
    NoKey,
}

/// What `role` (a grant's login, a target role, or `public`) could read around the masks in the
/// connected database: each masked column it holds SELECT on, and each relation reading one
/// that it may select from. Empty when masking holds.
pub async fn exposures(
    client: &impl GenericClient,
    role: &str,
    plan: &Plan,
    rules: &[MaskColumnRule],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for t in plan.tables.iter().chain(&plan.shadowed) {
        for (attnum, what, rule) in t.masked_columns(rules) {
            let readable: bool = client
                .query_one(
                    "SELECT has_column_privilege($1::name, $2::oid, $3::int2, 'SELECT')",
                    &[&role, &t.oid, &attnum],
                )
                .await?
                .get(0);
            if readable {
                out.push(format!("{what} (masked by rule {rule})"));
            }
        }
    }
    for (oid, name, via) in &plan.readers {
        let readable: bool = client
            .query_one(
                "SELECT has_any_column_privilege($1::name, $2::oid, 'SELECT')",
                &[&role, oid],
            )
            .await?
            .get(0);
        if readable {
            out.push(format!("{name}, which reads {via}"));
        }
    }
    Ok(out)
}

/// The `search_path` a login of a masked role gets in a database: its masked views first,
/// then the path it would have had (`current`, as PostgreSQL writes it).
pub fn search_path(names: &Names, current: &str) -> String {
    let mut parts = vec![pg_ident(&names.views)];
    let (mut item, mut quoted) = (String::new(), false);
    let mut chars = current.chars().peekable();
    let mut end_item = |item: &mut String| {
        if !item.is_empty() {
            parts.push(pg_ident(item));
        }
        item.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                item.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => end_item(&mut item),
            c if quoted => item.push(c),
            c if c.is_whitespace() => {}
            // PostgreSQL folds unquoted names to lower case.
            c => item.push(c.to_ascii_lowercase()),
        }
    }
    end_item(&mut item);
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_unique_and_safe() {
        let a = Names::new("jit_", "orders-db", "read");
        assert!(a.views.starts_with("jit_mask_read_"), "{a:?}");
        assert_eq!(a.key, "jit_mask");
        assert_ne!(a, Names::new("jit_", "other-db", "read"));
        let odd = Names::new("jit_", "db", "Ro\"le; DROP");
        assert!(
            odd.views
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{odd:?}"
        );
        assert!(odd.views.len() <= 63);
    }

    #[test]
    fn the_search_path_keeps_what_was_there_after_the_views() {
        let n = Names::new("jit_", "db", "read");
        let v = pg_ident(&n.views);
        assert_eq!(
            search_path(&n, "\"$user\", public"),
            format!("{v}, \"$user\", \"public\"")
        );
        assert_eq!(
            search_path(&n, "App,\"Odd\"\"Name\""),
            format!("{v}, \"app\", \"Odd\"\"Name\"")
        );
        assert_eq!(search_path(&n, ""), v);
    }

    #[test]
    fn pads_are_the_key_xored() {
        let (i, o) = pads(&[0xff; 32]);
        assert_eq!(i[0], 0x36 ^ 0xff);
        assert_eq!(o[31], 0x5c ^ 0xff);
        assert_eq!(i[32], 0x36);
        assert_eq!(o.len(), 64);
    }
}
