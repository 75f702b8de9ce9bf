//! Sessions: the tokens jitgate issues after a sign-in, kept only as digests.

use jitgate_core::{Principal, Timestamp};
use serde::{Deserialize, Serialize};

/// A token jitgate issued: whose, on what, until when. Never the token itself.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSession {
    /// Public: names the session in events and in `jitgate` output.
    pub id: String,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    pub body: SessionBody,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When it was signed out or revoked.
    pub ended_at: Option<Timestamp>,
}

/// What a session was issued on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionBody {
    pub principal: Principal,
    /// Where the identity came from: `jwt:github-actions`, `oidc:https://idp.example.com`.
    pub source: String,
    /// The claims it was issued on (those that identify the run or the person).
    pub claims: serde_json::Value,
}

impl AuthSession {
    /// Usable at `now`: not ended, not expired.
    pub fn live_at(&self, now: Timestamp) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// A workload JWT's id, which may be traded once.
#[derive(Debug, Clone)]
pub struct UsedJti {
    pub provider: String,
    pub jti: String,
    /// The JWT's expiry; after it the JWT is refused anyway, so the record may go.
    pub expires_at: Timestamp,
}

/// Which sessions to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKey {
    Digest([u8; 32]),
    Id(String),
    /// Every live session of this principal.
    Principal(String),
}

/// Builds the events that record the end of these sessions.
pub type EndRecord = Box<dyn FnOnce(&[AuthSession]) -> Vec<jitgate_core::EventDraft> + Send>;
