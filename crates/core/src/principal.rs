//! Principals (users and service accounts) and the selectors policies use to name them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    /// A CI job, an AI agent, any non-human caller.
    Service,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    pub groups: Vec<String>,
}

impl Principal {
    pub fn user(name: &str, groups: &[&str]) -> Self {
        Self::new(name, PrincipalKind::User, groups)
    }

    pub fn service(name: &str, groups: &[&str]) -> Self {
        Self::new(name, PrincipalKind::Service, groups)
    }

    fn new(name: &str, kind: PrincipalKind, groups: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Names a set of principals in config: `user:alice`, `service:ci-bot`, `group:dba`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    User(String),
    Service(String),
    Group(String),
    Anyone,
}

impl Selector {
    pub fn matches(&self, p: &Principal) -> bool {
        match self {
            Selector::User(n) => p.kind == PrincipalKind::User && &p.name == n,
            Selector::Service(n) => p.kind == PrincipalKind::Service && &p.name == n,
            Selector::Group(g) => p.in_group(g),
            Selector::Anyone => true,
        }
    }

    pub fn any_matches(selectors: &[Selector], p: &Principal) -> bool {
        selectors.iter().any(|s| s.matches(p))
    }
}

impl FromStr for Selector {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, CoreError> {
        let bad = || {
            CoreError::Invalid(format!(
                "invalid principal selector {s:?}: expected user:NAME, service:NAME, group:NAME or *"
            ))
        };
        if s == "*" {
            return Ok(Selector::Anyone);
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "user" => Ok(Selector::User(name.to_owned())),
            "service" => Ok(Selector::Service(name.to_owned())),
            "group" => Ok(Selector::Group(name.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::User(n) => write!(f, "user:{n}"),
            Selector::Service(n) => write!(f, "service:{n}"),
            Selector::Group(g) => write!(f, "group:{g}"),
            Selector::Anyone => f.write_str("*"),
        }
    }
}

/// Writes a list of selectors for a message: `group:dba, user:dave`.
pub fn describe(selectors: &[Selector]) -> String {
    selectors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_by_kind_name_and_group() {
        let alice = Principal::user("alice", &["engineering"]);
        let bot = Principal::service("alice", &[]);
        let user: Selector = "user:alice".parse().unwrap();
        assert!(user.matches(&alice));
        assert!(
            !user.matches(&bot),
            "user:alice must not match a service named alice"
        );
        assert!("service:alice".parse::<Selector>().unwrap().matches(&bot));
        assert!(
            "group:engineering"
                .parse::<Selector>()
                .unwrap()
                .matches(&alice)
        );
        assert!(!"group:dba".parse::<Selector>().unwrap().matches(&alice));
        assert!("*".parse::<Selector>().unwrap().matches(&bot));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in ["alice", "group:", "role:x", ""] {
            assert!(bad.parse::<Selector>().is_err(), "{bad}");
        }
    }
}
