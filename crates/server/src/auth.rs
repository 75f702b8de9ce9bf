//! API tokens: only their SHA-256 digests are configured; a presented token is hashed and looked
//! up, and the digest comparison runs in constant time.

use std::collections::HashMap;

use jitgate_core::{Principal, Selector};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;

/// Who is calling, and what they may do beyond their own requests.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub is_admin: bool,
    pub is_auditor: bool,
    /// The session the caller's token stands for; `None` for a configured token.
    pub session: Option<SessionInfo>,
}

/// A signed-in caller's session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    /// SHA-256 of its token.
    pub digest: [u8; 32],
    /// Where the identity came from: `jwt:PROVIDER`, `oidc:ISSUER`.
    pub source: String,
    pub expires_at: jitgate_core::Timestamp,
}

pub struct Authenticator {
    by_digest: HashMap<[u8; 32], Caller>,
}

pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    pub fn new(config: &Config) -> Self {
        let by_digest = config
            .principals
            .iter()
            .filter_map(|p| {
                let digest = p.token_sha256?;
                let caller = Caller {
                    is_admin: Selector::any_matches(&config.admins, &p.principal),
                    is_auditor: Selector::any_matches(&config.auditors, &p.principal),
                    principal: p.principal.clone(),
                    session: None,
                };
                Some((digest, caller))
            })
            .collect();
        Self { by_digest }
    }

    pub fn authenticate(&self, token: &str) -> Option<&Caller> {
        let digest = token_digest(token);
        let (stored, caller) = self.by_digest.get_key_value(&digest)?;
        bool::from(stored.ct_eq(&digest)).then_some(caller)
    }
}
