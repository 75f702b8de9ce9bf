//! References between sections: every principal, group and resource that a policy, an approval,
//! an admin or auditor list, or a rule names must exist somewhere in the config. A name that does
//! not is almost always a typo, and the closest name that does exist is offered.

use std::collections::BTreeSet;

use glob::Pattern;
use jitgate_core::policy::Policy;
use jitgate_core::{PrincipalKind, Selector};

use super::check::{Check, Seg};
use super::{PrincipalEntry, Resource};

/// Every name one entry gives another must exist: principals and groups in selectors, resources
/// and roles in policies. A config that defines no principals or no resources means nothing.
pub(super) fn references(
    c: &mut Check,
    principals: &[PrincipalEntry],
    resources: &[Resource],
    policies: &[Policy],
    identity: &jitgate_identity::IdentityConfig,
) {
    // People from an identity provider and workloads with their JWTs need no [[principals]].
    let signs_in = identity.oidc.is_some() || !identity.jwt.is_empty();
    if principals.is_empty() && !signs_in {
        c.add(
            vec![Seg::Key("principals")],
            "the config defines no principals: nobody could ask for access or approve it; add [[principals]]",
        );
    }
    if resources.is_empty() {
        c.add(
            vec![Seg::Key("resources")],
            "the config defines no resources: there is nothing to request; add [[resources]]",
        );
    }
    let mut known = Known::new(principals, resources);
    known.learn_identity(identity);
    for (path, s) in std::mem::take(&mut c.selectors) {
        if let Some(message) = known.selector(&s) {
            c.add(path, message);
        }
    }
    for (i, p) in policies.iter().enumerate() {
        let at = |k: &'static str, j: usize| {
            vec![
                Seg::Key("policies"),
                Seg::Index(i),
                Seg::Key(k),
                Seg::Index(j),
            ]
        };
        for (j, pattern) in p.resources.iter().enumerate() {
            if let Some(message) = known.resource_pattern(pattern) {
                c.add(at("resources", j), message);
            }
        }
        // A policy for a role that no matching resource defines is almost always a typo.
        let matched: Vec<&Resource> = resources
            .iter()
            .filter(|r| p.resources.iter().any(|g| g.matches(&r.name)))
            .collect();
        let roles = || {
            matched
                .iter()
                .flat_map(|r| r.roles.keys().map(String::as_str))
        };
        for (j, role) in p.roles.iter().enumerate() {
            if !matched.is_empty() && !roles().any(|k| role.matches(k)) {
                c.add(
                    at("roles", j),
                    format!(
                        "no resource matching this policy defines role {:?}{}",
                        role.as_str(),
                        did_you_mean(role.as_str(), roles())
                    ),
                );
            }
        }
    }
}

/// The names a config defines, that references are checked against.
struct Known<'a> {
    users: BTreeSet<&'a str>,
    services: BTreeSet<&'a str>,
    groups: BTreeSet<&'a str>,
    pub resources: Vec<&'a str>,
    /// Kinds of principal an identity provider may bring that this file cannot list: people
    /// (and their groups) from OpenID Connect, workloads from JWT principal templates.
    outside_users: bool,
    outside_services: bool,
    outside_groups: bool,
}

impl<'a> Known<'a> {
    pub fn new(principals: &'a [PrincipalEntry], resources: &'a [Resource]) -> Self {
        let mut known = Known {
            users: BTreeSet::new(),
            services: BTreeSet::new(),
            groups: BTreeSet::new(),
            resources: resources.iter().map(|r| r.name.as_str()).collect(),
            outside_users: false,
            outside_services: false,
            outside_groups: false,
        };
        for p in principals.iter().map(|e| &e.principal) {
            match p.kind {
                PrincipalKind::User => known.users.insert(p.name.as_str()),
                PrincipalKind::Service => known.services.insert(p.name.as_str()),
            };
            known.groups.extend(p.groups.iter().map(String::as_str));
        }
        known
    }

    /// What the identity providers may bring: an OpenID provider signs in people this file
    /// does not list, with groups it asserts; a JWT provider makes principals from its template
    /// and gives them its `groups`.
    fn learn_identity(&mut self, identity: &'a jitgate_identity::IdentityConfig) {
        if identity.oidc.is_some() {
            self.outside_users = true;
            self.outside_groups = true;
        }
        for p in &identity.jwt {
            match p.principal.kind {
                PrincipalKind::User => self.outside_users = true,
                PrincipalKind::Service => self.outside_services = true,
            }
            self.groups.extend(p.groups.iter().map(String::as_str));
        }
    }

    /// Whether a group may hold members: one a principal of this file belongs to, one a JWT
    /// provider gives, or any group when an OpenID provider asserts groups at sign-in.
    fn group_is_known(&self, group: &str) -> bool {
        self.outside_groups || self.groups.contains(group)
    }

    /// What is wrong with a selector, if it names nobody.
    pub fn selector(&self, s: &Selector) -> Option<String> {
        let missing = match s {
            Selector::Anyone => return None,
            Selector::User(n) if self.outside_users || self.users.contains(n.as_str()) => {
                return None;
            }
            Selector::Service(n) if self.outside_services || self.services.contains(n.as_str()) => {
                return None;
            }
            Selector::Group(g) if self.group_is_known(g) => return None,
            Selector::User(n) => format!("no user principal is named {n:?}"),
            Selector::Service(n) => format!("no service principal is named {n:?}"),
            Selector::Group(g) => format!("no principal belongs to group {g:?}"),
        };
        Some(missing + &self.did_you_mean_selector(s))
    }

    /// " (did you mean `service:ci-bot`?)" for the closest existing selector, or nothing. The
    /// same name under another kind counts as one edit.
    fn did_you_mean_selector(&self, s: &Selector) -> String {
        let (kind, name) = match s {
            Selector::User(n) => ("user", n),
            Selector::Service(n) => ("service", n),
            Selector::Group(g) => ("group", g),
            Selector::Anyone => return String::new(),
        };
        let candidates = [
            ("user", &self.users),
            ("service", &self.services),
            ("group", &self.groups),
        ];
        let best = candidates
            .iter()
            .flat_map(|(k, names)| names.iter().map(move |n| (*k, *n)))
            .map(|(k, n)| (strsim::levenshtein(name, n) + usize::from(k != kind), k, n))
            .filter(|(d, _, _)| close_enough(*d, name))
            .min();
        match best {
            Some((_, k, n)) => format!(" (did you mean `{k}:{n}`?)"),
            None => String::new(),
        }
    }

    /// What is wrong with a policy's resource pattern, if it matches no resource.
    pub fn resource_pattern(&self, pattern: &Pattern) -> Option<String> {
        if self.resources.iter().any(|r| pattern.matches(r)) {
            return None;
        }
        let given = pattern.as_str();
        Some(format!(
            "no resource matches {given:?}{}",
            did_you_mean(given, self.resources.iter().copied())
        ))
    }
}

/// " (did you mean `NAME`?)" for the candidate closest to `given`, if one is close enough.
pub(super) fn did_you_mean<'a>(given: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (strsim::levenshtein(given, c), c))
        .filter(|(d, _)| close_enough(*d, given))
        .min()
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// A typo is a few edits: one per four characters, at least one, at most three.
fn close_enough(distance: usize, given: &str) -> bool {
    distance > 0 && distance <= (given.chars().count() / 4).clamp(1, 3)
}
