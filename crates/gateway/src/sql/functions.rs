//! Which functions a statement may call when the gateway must see what it reads: the built-in
//! ones are known by name from the server's own catalog (`pg_catalog`), read at login; among
//! them some run SQL text the gateway never sees, read server files or keep values for a later
//! statement. Anything else (a function in another schema, or one whose name is not built in)
//! is the user's or an extension's, and runs code the gateway cannot see.

use std::collections::HashSet;

use super::Name;

/// What calling a function means for the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// A built-in that computes from its arguments.
    Plain,
    /// Runs SQL text, or a query over a table named in a string, that the gateway never sees:
    /// `query_to_xml('select …')`, `table_to_xml('t', …)`, `ts_stat('select …')`, …
    RunsSql,
    /// Reads the server's files or its write-ahead log: `pg_read_file`, `lo_import`, …
    ReadsServer,
    /// Keeps a value somewhere a later statement can read it (`set_config`, `pg_notify`, large
    /// objects, sequences, advisory locks).
    Keeps,
    /// Not a built-in: a function of the user's or of an extension (`dblink`, …), whose code
    /// the gateway cannot see.
    Unknown,
}

/// Built-ins that run SQL text or read whole tables by name.
const RUNS_SQL: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_binary_changes",
];

/// Built-ins that read the server's files.
const READS_SERVER: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_file",
    "pg_ls_dir",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_ls_logicalmapdir",
    "pg_ls_logicalsnapdir",
    "pg_ls_replslotdir",
    "pg_current_logfile",
    "lo_import",
    "lo_export",
];

/// Built-ins that keep a value for later (besides every `lo_*` large-object function).
const KEEPS: &[&str] = &[
    "set_config",
    "pg_notify",
    "setval",
    "loread",
    "lowrite",
    "pg_logical_emit_message",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
];

/// Forms the SQL parser reads as function calls that are grammar, not catalog functions.
const GRAMMAR: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "current_catalog",
    "session_user",
    "system_user",
    "user",
    "grouping",
    "row",
    "xmlelement",
    "xmlforest",
    "xmlconcat",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmlexists",
];

/// The server's functions, by name, as read from its catalog at login.
#[derive(Debug, Clone, Default)]
pub struct Functions {
    /// Names of the functions the server was installed with (in `pg_catalog`, with object
    /// ids below 16384): the same for every session of a server version, so shared.
    builtin: std::sync::Arc<HashSet<String>>,
    /// Names of every other function: the user's and extensions' (they may shadow a built-in
    /// of the same name when the search path puts their schema first).
    elsewhere: HashSet<String>,
}

impl Functions {
    pub fn new(builtin: std::sync::Arc<HashSet<String>>) -> Functions {
        Functions {
            builtin,
            elsewhere: HashSet::new(),
        }
    }

    /// Takes the name of a function that is not built in.
    pub fn learn_other(&mut self, name: &str) {
        self.elsewhere.insert(name.to_owned());
    }

    /// Whether the built-in names are known (read from the server).
    pub fn is_loaded(&self) -> bool {
        !self.builtin.is_empty()
    }

    /// What a function is by name alone, without the server's list: the ones known to run SQL,
    /// read files or keep values; anything else counts as plain. For judging without a server.
    pub fn kind_by_name(f: &Name) -> FunctionKind {
        let name = f.name.as_str();
        if RUNS_SQL.contains(&name) {
            FunctionKind::RunsSql
        } else if READS_SERVER.contains(&name) {
            FunctionKind::ReadsServer
        } else if KEEPS.contains(&name) || name.starts_with("lo_") {
            FunctionKind::Keeps
        } else {
            FunctionKind::Plain
        }
    }

    pub fn kind(&self, f: &Name) -> FunctionKind {
        let name = f.name.as_str();
        let in_catalog = f.schema.as_deref().is_none_or(|s| s == "pg_catalog");
        if in_catalog && f.schema.is_none() && GRAMMAR.contains(&name) {
            return FunctionKind::Plain;
        }
        if !in_catalog || !self.builtin.contains(name) || self.elsewhere.contains(name) {
            return FunctionKind::Unknown;
        }
        Self::kind_by_name(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_known_by_where_they_live() {
        let builtin = [
            "lower",
            "query_to_xml",
            "set_config",
            "lo_get",
            "pg_read_file",
            "md5",
        ];
        let mut f = Functions::new(std::sync::Arc::new(
            builtin.iter().map(|s| s.to_string()).collect(),
        ));
        f.learn_other("leak");
        f.learn_other("md5");
        let kind = |schema: Option<&str>, name: &str| {
            f.kind(&Name {
                schema: schema.map(str::to_owned),
                name: name.into(),
            })
        };
        assert_eq!(kind(None, "lower"), FunctionKind::Plain);
        assert_eq!(kind(Some("pg_catalog"), "lower"), FunctionKind::Plain);
        assert_eq!(kind(Some("public"), "lower"), FunctionKind::Unknown);
        assert_eq!(kind(None, "leak"), FunctionKind::Unknown);
        assert_eq!(kind(None, "md5"), FunctionKind::Unknown, "shadowed");
        assert_eq!(kind(None, "query_to_xml"), FunctionKind::RunsSql);
        assert_eq!(kind(None, "set_config"), FunctionKind::Keeps);
        assert_eq!(kind(None, "lo_get"), FunctionKind::Keeps);
        assert_eq!(kind(None, "pg_read_file"), FunctionKind::ReadsServer);
        assert_eq!(kind(None, "dblink"), FunctionKind::Unknown);
        assert_eq!(kind(None, "coalesce"), FunctionKind::Plain, "grammar");
        assert_eq!(kind(Some("public"), "coalesce"), FunctionKind::Unknown);
    }
}
