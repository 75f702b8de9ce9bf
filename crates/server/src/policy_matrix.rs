//! The matrix behind `jitgate policy who-can` and `policy diff`: what each row reaches of each
//! resource/role under a config. Rows are the configured principals, each group named anywhere
//! (as someone in that group alone), and `*` (someone in no group).

use std::collections::BTreeSet;

use jitgate_core::policy_reach::{Reach, matrix};
use jitgate_core::{Principal, PrincipalKind, Selector};

use crate::config::Config;

/// The principals, groups and `*` of these configs, principals first (as each config defines
/// them, so a principal whose groups change is judged by each config's own definition).
pub fn subjects(configs: &[&Config]) -> Vec<String> {
    let mut names = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for c in configs {
        for p in &c.principals {
            names.insert(p.principal.name.clone());
            groups.extend(p.principal.groups.iter().cloned());
        }
        for p in &c.policies {
            let auto = p.auto_approve.iter().flat_map(|a| &a.principals);
            let bg = p.break_glass.iter().flat_map(|b| &b.principals);
            for s in p
                .principals
                .iter()
                .chain(&p.approval.approvers)
                .chain(auto)
                .chain(bg)
            {
                if let Selector::Group(g) = s {
                    groups.insert(g.clone());
                }
            }
        }
    }
    let mut out: Vec<String> = names.into_iter().collect();
    out.extend(groups.into_iter().map(|g| format!("group:{g}")));
    out.push("*".into());
    out
}

/// The principal a row label stands for in `config`.
pub fn subject(config: &Config, label: &str) -> Principal {
    if let Some(g) = label.strip_prefix("group:") {
        return Principal {
            name: label.to_owned(),
            kind: PrincipalKind::User,
            groups: vec![g.to_owned()],
        };
    }
    config
        .principals
        .iter()
        .map(|p| p.principal.clone())
        .find(|p| p.name == label)
        .unwrap_or(Principal {
            name: label.to_owned(),
            kind: PrincipalKind::User,
            groups: vec![],
        })
}

/// Every (resource, role) of these configs, by name.
pub fn targets(configs: &[&Config]) -> Vec<(String, String)> {
    let mut set = BTreeSet::new();
    for c in configs {
        for r in &c.resources {
            for role in r.roles.keys() {
                set.insert((r.name.clone(), role.clone()));
            }
        }
    }
    set.into_iter().collect()
}

/// What each row label reaches of each target in `config` (one row a label); nothing where the
/// config does not define that role on that resource (a request for it is refused before any
/// policy).
pub fn grid(config: &Config, labels: &[String], targets: &[(String, String)]) -> Vec<Vec<Reach>> {
    let principals: Vec<Principal> = labels.iter().map(|l| subject(config, l)).collect();
    let mut m = matrix(&config.policies, &principals, targets);
    for (j, (resource, role)) in targets.iter().enumerate() {
        let defined = config
            .resource(resource)
            .is_some_and(|r| r.roles.contains_key(role));
        if !defined {
            for row in &mut m {
                row[j] = Reach::default();
            }
        }
    }
    m
}
