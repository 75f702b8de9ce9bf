//! What the config checker accepts and what it refuses, with file, line and key.

use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
admins = ["group:security"]

[[principals]]
name = "alice"
groups = ["engineering"]
token_sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

[[resources]]
name = "orders-db"
kind = "none"
[resources.roles.read]
grants = ["pg_read_all_data"]

[[policies]]
name = "engineers-read-orders"
principals = ["group:engineering"]
resources = ["orders-*"]
roles = ["read"]
max_duration = "4h"
ticket_pattern = "(INC|CHG)-[0-9]+"
[policies.approval]
approvers = ["group:dba"]
required = 1
[[policies.auto_approve]]
principals = ["group:oncall"]
max_duration = "30m"
schedule = "Mon-Fri 08:00-18:00 Europe/Berlin"

[[principals]]
name = "dora"
groups = ["dba", "oncall", "security"]
"#;

#[test]
fn a_good_config_validates() {
    let c = Config::parse(GOOD, "jitgate.toml").unwrap();
    assert_eq!(c.principals[0].principal.name, "alice");
    assert_eq!(c.policies[0].max_duration, Duration::from_secs(4 * 3600));
    assert_eq!(c.policies[0].auto_approve[0].name, "auto_approve[0]");
    assert_eq!(c.policies[0].max_extensions, None, "unlimited by default");
    assert!(!c.policies[0].allow_overlapping, "refused by default");
    let limited = GOOD.replace(
        "max_duration = \"4h\"",
        "max_duration = \"4h\"\nmax_extensions = 2\nallow_overlapping = true",
    );
    let c = Config::parse(&limited, "jitgate.toml").unwrap();
    assert_eq!(c.policies[0].max_extensions, Some(2));
    assert!(c.policies[0].allow_overlapping);
    assert!(
        c.policies[0]
            .ticket_pattern
            .as_ref()
            .unwrap()
            .matches("INC-1")
    );
    assert!(
        !c.policies[0]
            .ticket_pattern
            .as_ref()
            .unwrap()
            .matches("xINC-1x"),
        "anchored"
    );
    assert_eq!(c.database_path, PathBuf::from("./jitgate-data/jitgate.db"));
}

fn problems(text: &str) -> Vec<String> {
    match Config::parse(text, "jitgate.toml") {
        Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn guardrails_are_checked_against_resources_roles_and_kinds() {
    let ok = format!(
        "{GOOD}\n[[guardrails]]\nname = \"no-ddl\"\nroles = [\"read\"]\ndeny = [\"ddl\", \"truncate\"]\ntables = [\"public.payments\"]\n"
    );
    let c = Config::parse(&ok, "jitgate.toml").unwrap();
    assert_eq!(c.guardrails.len(), 1);
    assert_eq!(c.guardrails[0].deny.len(), 2);
    let bad = format!(
        "{GOOD}\n[[guardrails]]\nname = \"no ddl\"\nresources = [\"nope\"]\nroles = [\"sudo\"]\ndeny = [\"dropp\"]\ntables = [\"a.b.c\"]\n\n[[guardrails]]\nname = \"empty\"\n"
    );
    let p = problems(&bad);
    for want in [
        "guardrails[0].name: \"no ddl\" is not a rule name",
        "guardrails[0].resources[0]: no resource is named \"nope\"",
        "guardrails[0].roles[0]: no resource this rule covers defines role \"sudo\"",
        "guardrails[0].deny[0]: \"dropp\" is not a statement kind",
        "guardrails[0].tables[0]: \"a.b.c\" is not a table",
        "guardrails[1].deny: the rule blocks nothing",
    ] {
        assert!(p.iter().any(|m| m.contains(want)), "{want} not in {p:#?}");
    }
}

#[test]
fn masking_rules_are_checked() {
    let ok = format!(
        "{GOOD}\n[[masking]]\nname = \"pii\"\ncolumns = [\"public.customers.email\"]\ndetectors = [\"card\"]\nstrategy = \"partial\"\nkeep = 2\n"
    );
    let c = Config::parse(&ok, "jitgate.toml").unwrap();
    assert_eq!(
        c.masking[0].strategy,
        jitgate_gateway::mask::Strategy::Partial { keep: 2 }
    );
    let bad = format!(
        "{GOOD}\n[[masking]]\nname = \"pii\"\ncolumns = [\"a.b.c.d\"]\ndetectors = [\"passport\"]\nstrategy = \"shred\"\n\n[[masking]]\nname = \"pii\"\nstrategy = \"hash\"\nkeep = 3\n"
    );
    let p = problems(&bad);
    for want in [
        "masking[0].columns[0]: \"a.b.c.d\" is not a column",
        "masking[0].detectors[0]: \"passport\" is not a detector",
        "masking[0].strategy: \"shred\" is not a strategy",
        "masking[1].name: masking rule \"pii\" is defined twice",
        "masking[1].keep: keep goes with strategy = \"partial\" only",
        "masking[1].columns: the rule masks nothing",
    ] {
        assert!(p.iter().any(|m| m.contains(want)), "{want} not in {p:#?}");
    }
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let text = GOOD.replace("require_reason", "x").replace(
        "max_duration = \"4h\"",
        "max_duration = \"4h\"\nmax_duraton = \"5h\"",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("jitgate.toml:23: "), "{p:?}");
    assert!(p[0].contains("max_duraton"), "{p:?}");
}

#[test]
fn semantic_mistakes_are_all_reported_with_lines() {
    let text = GOOD
        .replace("max_duration = \"4h\"", "max_duration = \"4 hourz\"")
        .replace("Europe/Berlin", "Europe/Gotham")
        .replace("group:dba", "dba");
    let p = problems(&text);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(
        p.iter()
            .any(|m| m.starts_with("jitgate.toml:22: policies[0].max_duration: invalid duration")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m.starts_with(
            "jitgate.toml:25: policies[0].approval.approvers[0]: invalid principal selector"
        )),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains("policies[0].auto_approve[0].schedule")
                && m.contains("Europe/Gotham")
                && m.starts_with("jitgate.toml:30")),
        "{p:?}"
    );
}

#[test]
fn approval_without_approvers_and_unknown_roles_are_refused() {
    let text = GOOD
        .replace("approvers = [\"group:dba\"]\n", "")
        .replace("roles = [\"read\"]", "roles = [\"raed\"]");
    let p = problems(&text);
    assert!(p.iter().any(|m| m.contains("names no approvers")), "{p:?}");
    assert!(
        p.iter()
            .any(|m| m.contains("does not define role") || m.contains("defines role \"raed\"")),
        "{p:?}"
    );
}

#[test]
fn duplicate_names_and_bad_digests_are_refused() {
    let text = format!("{GOOD}\n[[principals]]\nname = \"alice\"\ntoken_sha256 = \"abc\"\n");
    let p = problems(&text);
    assert!(p.iter().any(|m| m.contains("defined twice")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("64 hex digits")), "{p:?}");
}

#[test]
fn database_resources_need_exactly_one_admin_url() {
    let p = problems(&GOOD.replace("kind = \"none\"", "kind = \"postgres\""));
    assert!(
        p[0].contains("needs admin_url, admin_url_env or admin_url_file"),
        "{p:?}"
    );
    let two = GOOD.replace(
        "kind = \"none\"",
        "kind = \"postgres\"\nadmin_url = \"postgres://x@h/db\"\nadmin_url_env = \"X\"",
    );
    assert!(problems(&two)[0].contains("only one of"));
    let env = GOOD.replace(
        "kind = \"none\"",
        "kind = \"mysql\"\nadmin_url_env = \"JITGATE_TEST_SURELY_UNSET\"",
    );
    assert!(problems(&env)[0].contains("JITGATE_TEST_SURELY_UNSET is not set"));
    let none_with_url = GOOD.replace(
        "kind = \"none\"",
        "kind = \"none\"\nadmin_url = \"postgres://x@h/db\"",
    );
    assert!(problems(&none_with_url)[0].contains("creates nothing"));
    let ok = GOOD.replace(
        "kind = \"none\"",
        "kind = \"postgres\"\nadmin_url = \"postgres://postgres:s3cret@127.0.0.1/orders\"",
    );
    let c = Config::parse(&ok, "jitgate.toml").unwrap();
    let shared = GOOD.replace("kind = \"none\"", "kind = \"postgres\"\nprovisioning = \"none\"\nupstream_url = \"postgres://app:pw@db/orders\"");
    assert!(matches!(
        Config::parse(&shared, "j").unwrap().resources[0].kind,
        ResourceKind::PostgresShared(_)
    ));
    let both = shared.replace(
        "provisioning = \"none\"",
        "provisioning = \"none\"\nadmin_url = \"postgres://x@h/db\"",
    );
    assert!(problems(&both)[0].contains("creates no logins"));
    let odd = shared.replace("\"none\"", "\"sometimes\"");
    assert!(problems(&odd)[0].contains("not a provisioning mode"));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret"),
        "the admin URL never shows in Debug output"
    );
}

#[test]
fn references_to_nothing_are_refused_with_the_likely_name() {
    let text = GOOD
        .replace("group:dba", "group:dbas")
        .replace("resources = [\"orders-*\"]", "resources = [\"order-db\"]")
        .replace(
            "admins = [\"group:security\"]",
            "admins = [\"user:dorra\", \"service:dora\"]",
        )
        .replace("group:oncall", "group:nobody-here");
    let p = problems(&text);
    for want in [
        "jitgate.toml:4: server.admins[0]: no user principal is named \"dorra\" (did you mean `user:dora`?)",
        "jitgate.toml:4: server.admins[1]: no service principal is named \"dora\" (did you mean `user:dora`?)",
        "jitgate.toml:20: policies[0].resources[0]: no resource matches \"order-db\" (did you mean `orders-db`?)",
        "jitgate.toml:25: policies[0].approval.approvers[0]: no principal belongs to group \"dbas\" (did you mean `group:dba`?)",
    ] {
        assert!(p.iter().any(|m| m == want), "{want} not in {p:#?}");
    }
    assert!(
        p.iter().any(|m| m.starts_with("jitgate.toml:28: policies[0].auto_approve[0].principals[0]: no principal belongs to group \"nobody-here\"") && !m.contains("did you mean")),
        "{p:#?}"
    );
    assert_eq!(p.len(), 5, "{p:#?}");
}

#[test]
fn an_empty_file_is_refused() {
    let p = problems("");
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].contains("principals: the config defines no principals"),
        "{p:?}"
    );
    assert!(
        p[1].contains("resources: the config defines no resources"),
        "{p:?}"
    );
    let p = problems("[server]\nlisten = \"127.0.0.1:0\"\n");
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn structural_and_semantic_mistakes_are_all_reported_in_one_run() {
    let text = format!(
        "{GOOD}\n[[policies]]\nprincipals = [\"user:alice\"]\nresources = [\"orders-db\"]\nroles = [\"read\"]\nmax_duration = \"1h\"\n\n[[policies]]\nname = \"second\"\nprincipals = [\"service:ci-bott\"]\nresources = [\"orders-db\"]\nroles = [\"read\"]\nmax_duration = \"1 fortnight\"\nrequire_reason = \"yes\"\ncolour = \"blue\"\n\n[[principals]]\nname = \"ci-bot\"\nkind = \"service\"\nteam = \"x\"\n"
    )
    .replace("max_duration = \"4h\"", "max_duration = \"4h\"\nmax_duraton = \"5h\"")
    .replace("group:dba", "group:dbas");
    let p = problems(&text);
    let at = |line: usize, rest: &str| format!("jitgate.toml:{line}: {rest}");
    for want in [
        at(23, "policies[0].max_duraton: unknown field `max_duraton`"),
        at(
            26,
            "policies[0].approval.approvers[0]: no principal belongs to group \"dbas\"",
        ),
        at(37, "policies[1]: missing field `name`"),
        at(
            43,
            "policies[2].approval: requires 1 approval(s) but names no approvers",
        ),
        at(
            45,
            "policies[2].principals[0]: no service principal is named \"ci-bott\" (did you mean `service:ci-bot`?)",
        ),
        at(48, "policies[2].max_duration: invalid duration"),
        at(49, "policies[2].require_reason: invalid type"),
        at(50, "policies[2].colour: unknown field `colour`"),
        at(55, "principals[2].team: unknown field `team`"),
    ] {
        assert!(
            p.iter().any(|m| m.starts_with(&want)),
            "{want} not in {p:#?}"
        );
    }
    assert_eq!(p.len(), 9, "{p:#?}");
    let lines: Vec<&str> = p.iter().map(|m| m.split(':').nth(1).unwrap()).collect();
    let mut sorted = lines.clone();
    sorted.sort_by_key(|l| l.parse::<usize>().unwrap());
    assert_eq!(lines, sorted, "in the order of the file");
}

#[test]
fn a_syntax_error_is_reported_with_its_line() {
    let p = problems(&GOOD.replace("required = 1", "required = = 1"));
    assert!(p[0].starts_with("jitgate.toml:26: "), "{p:?}");
}

#[test]
fn a_principal_read_in_part_hides_no_mistake_behind_false_ones() {
    let text = GOOD.replace(
        "groups = [\"dba\", \"oncall\", \"security\"]",
        "groups = \"dba\"",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].contains("principals[1].groups: invalid type"), "{p:?}");
}

#[test]
fn the_gateway_gets_one_config_with_its_rules() {
    let text = format!(
        "{GOOD}\n[gateway.postgres]\nlisten = \"127.0.0.1:0\"\naudit = \"async\"\n\n[[guardrails]]\nname = \"no-ddl\"\ndeny = [\"ddl\"]\n\n[[masking]]\nname = \"pii\"\ncolumns = [\"email\"]\n"
    );
    let c = Config::parse(&text, "jitgate.toml").unwrap();
    let g = c.gateway.unwrap();
    assert_eq!(g.audit, jitgate_gateway::AuditMode::Async);
    assert_eq!(g.guardrails[0].name, "no-ddl");
    assert_eq!(g.masking[0].name, "pii");
    assert!(g.tls.is_none() && g.record_params && !g.allow_plaintext_remote);
}

/// People from an OpenID provider, with the groups it asserts, and workloads from a JWT provider
/// need no `[[principals]]` entry, so naming them is no typo; without a provider it is.
#[test]
fn principals_and_groups_an_identity_provider_brings_are_known() {
    let text = GOOD
        .replace("group:dba", "group:idp-dbas")
        .replace("group:oncall", "service:acme/deploy");
    let p = problems(&text);
    assert_eq!(p.len(), 2, "without a provider both are refused: {p:#?}");
    let oidc = "\n[identity.oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"jitgate\"\nredirect_url = \"https://jitgate.example.com/auth/callback\"\n";
    let p = problems(&format!("{text}{oidc}"))
        .into_iter()
        .collect::<Vec<_>>();
    assert_eq!(
        p.len(),
        1,
        "an OpenID provider brings people and groups, not services: {p:#?}"
    );
    assert!(p[0].contains("no service principal"), "{p:#?}");
    let jwt = "\n[[identity.jwt]]\nname = \"ci\"\nissuer = \"https://ci.example.com\"\naudiences = [\"jitgate\"]\nprincipal = \"service:{repository}\"\nbound_claims = { repository = \"acme/*\" }\nmax_ttl = \"15m\"\n";
    Config::parse(&format!("{text}{oidc}{jwt}"), "jitgate.toml").expect("both providers");
}
