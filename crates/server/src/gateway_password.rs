//! Short-lived, single-purpose gateway passwords. `jitgate connect` asks for one instead of
//! putting the long-lived API token into a connection string (shell history, process lists).
//! Each is random, bound to one principal, one resource and one grant, and works only while
//! that grant is active. Only its SHA-256 digest is kept, in memory; a presented password is
//! hashed, looked up, and the digests compared in constant time. It is never logged.

use std::collections::HashMap;
use std::sync::Mutex;

use subtle::ConstantTimeEq;

use crate::auth::token_digest;

/// Passwords kept per grant; asking for more forgets the oldest.
const PER_GRANT: usize = 16;

/// What a gateway password lets in: this principal, on this resource, through this grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub principal: String,
    pub resource: String,
    pub grant_id: String,
}

#[derive(Default)]
pub struct GatewayPasswords {
    /// Digest → what it is bound to, and when it was issued (an ordinal, to forget the oldest).
    by_digest: Mutex<HashMap<[u8; 32], (Bound, u64)>>,
}

impl GatewayPasswords {
    /// A new password for `bound`: `jgp_` and 43 random alphanumerics (~256 bits).
    pub fn issue(&self, bound: Bound) -> String {
        let password = jitgate_core::ids::new_secret("jgp");
        let mut map = self.by_digest.lock().expect("gateway password lock");
        let next = map.values().map(|(_, n)| n + 1).max().unwrap_or(0);
        let same_grant: Vec<([u8; 32], u64)> = map
            .iter()
            .filter(|(_, (b, _))| b.grant_id == bound.grant_id)
            .map(|(d, (_, n))| (*d, *n))
            .collect();
        if same_grant.len() >= PER_GRANT
            && let Some((oldest, _)) = same_grant.iter().min_by_key(|(_, n)| *n)
        {
            map.remove(oldest);
        }
        map.insert(token_digest(&password), (bound, next));
        password
    }

    /// What `password` is bound to, if it is one of ours.
    pub fn check(&self, password: &str) -> Option<Bound> {
        let digest = token_digest(password);
        let map = self.by_digest.lock().expect("gateway password lock");
        let (stored, (bound, _)) = map.get_key_value(&digest)?;
        bool::from(stored.ct_eq(&digest)).then(|| bound.clone())
    }

    /// Forgets every password of a grant that ended.
    pub fn forget_grant(&self, grant_id: &str) {
        self.by_digest
            .lock()
            .expect("gateway password lock")
            .retain(|_, (b, _)| b.grant_id != grant_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(grant: &str) -> Bound {
        Bound {
            principal: "alice".into(),
            resource: "orders-db".into(),
            grant_id: grant.into(),
        }
    }

    #[test]
    fn a_password_is_bound_and_forgotten_with_its_grant() {
        let p = GatewayPasswords::default();
        let pw = p.issue(bound("grt_1"));
        assert!(pw.starts_with("jgp_") && pw.len() == 47);
        assert_eq!(p.check(&pw), Some(bound("grt_1")));
        assert_eq!(p.check("jgp_wrong"), None);
        assert_ne!(p.issue(bound("grt_1")), pw, "each issue is a new password");
        p.forget_grant("grt_1");
        assert_eq!(p.check(&pw), None);
    }

    #[test]
    fn only_the_newest_passwords_of_a_grant_are_kept() {
        let p = GatewayPasswords::default();
        let first = p.issue(bound("grt_1"));
        let other = p.issue(bound("grt_2"));
        for _ in 0..PER_GRANT {
            p.issue(bound("grt_1"));
        }
        assert_eq!(p.check(&first), None);
        assert!(p.check(&other).is_some());
    }
}
