//! Signed-in callers: workload JWTs traded for jitgate tokens (`POST /api/v1/auth/token`), and
//! the sessions those tokens stand for. A session token is random, stored only as its SHA-256
//! with its expiry and the claims it was issued on, and compared in constant time; the API and
//! the gateway accept it like a static `[[principals]]` token until it expires or is ended.

use std::collections::HashMap;
use std::sync::Mutex;

use jitgate_core::event::Outcome;
use jitgate_core::{EventDraft, Principal, Selector, Timestamp};
use jitgate_identity::{Check, IdentityError, Workload};
use jitgate_store::{AuthSession, SessionBody, SessionKey, UsedJti};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::auth::{Caller, SessionInfo, token_digest};
use crate::config::Config;
use crate::error::Error;
use crate::service::App;

/// Session tokens start with this, so other tokens cost no store read.
pub const SESSION_PREFIX: &str = "jgs_";
/// Sessions kept in memory at most; past it the cache starts afresh.
const CACHE_LIMIT: usize = 10_000;

/// Workload providers and the sessions seen lately.
pub struct Identity {
    pub workload: Workload,
    /// People's sign-in, when `[identity.oidc]` is configured.
    pub oidc: Option<jitgate_identity::oidc::Oidc>,
    pub(crate) devices: crate::signin::Devices,
    pub(crate) loopbacks: crate::signin::Loopbacks,
    /// Live sessions by token digest, so an API call needs no store read. Ending a session
    /// through this server removes it at once.
    cache: Mutex<HashMap<[u8; 32], Caller>>,
}

impl Identity {
    pub fn new(config: &Config, clock: std::sync::Arc<dyn jitgate_core::Clock>) -> Self {
        Self {
            workload: Workload::new(&config.identity.jwt),
            oidc: config
                .identity
                .oidc
                .clone()
                .map(|o| jitgate_identity::oidc::Oidc::new(o, clock)),
            devices: Default::default(),
            loopbacks: Default::default(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Caller> {
        self.cache.lock().ok()?.get(digest).cloned()
    }

    fn remember(&self, digest: [u8; 32], caller: &Caller) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(digest, caller.clone());
        }
    }

    fn forget(&self, digests: impl IntoIterator<Item = [u8; 32]>) {
        if let Ok(mut cache) = self.cache.lock() {
            for d in digests {
                cache.remove(&d);
            }
        }
    }
}

/// A jitgate token issued for a workload JWT.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub session: String,
    pub principal: Principal,
    pub expires_at: Timestamp,
}

impl App {
    /// Who `token` belongs to: a configured principal, or a live session. `None` for a token
    /// nobody holds, or one that expired or was ended.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Caller>, Error> {
        if let Some(c) = self.auth.authenticate(token) {
            return Ok(Some(c.clone()));
        }
        if !token.starts_with(SESSION_PREFIX) {
            return Ok(None);
        }
        let digest = token_digest(token);
        let now = self.now();
        if let Some(c) = self.identity.cached(&digest) {
            if c.session.as_ref().is_some_and(|s| now < s.expires_at) {
                return Ok(Some(c));
            }
            self.identity.forget([digest]);
            return Ok(None);
        }
        let Some(s) = self.store.session(digest).await? else {
            return Ok(None);
        };
        if !bool::from(s.digest.ct_eq(&digest)) || !s.live_at(now) {
            return Ok(None);
        }
        let caller = self.session_caller(&s);
        self.identity.remember(digest, &caller);
        Ok(Some(caller))
    }

    fn session_caller(&self, s: &AuthSession) -> Caller {
        let p = &s.body.principal;
        Caller {
            is_admin: Selector::any_matches(&self.config.admins, p),
            is_auditor: Selector::any_matches(&self.config.auditors, p),
            principal: p.clone(),
            session: Some(SessionInfo {
                id: s.id.clone(),
                digest: s.digest,
                source: s.body.source.clone(),
                expires_at: s.expires_at,
            }),
        }
    }

    /// Trades a workload JWT of `provider` for a jitgate token: every check passed, and its
    /// `jti` never used before. Issued and refused alike are audited.
    pub async fn exchange_token(&self, provider: &str, jwt: &str) -> Result<Issued, Error> {
        let now = self.now();
        // The audit names a configured provider only: the caller's text could be anything.
        let source = if self.identity.workload.has(provider) {
            format!("jwt:{provider}")
        } else {
            "jwt:(unknown provider)".to_owned()
        };
        let v = match self.identity.workload.verify(provider, jwt, now).await {
            Ok(v) => v,
            Err(e) => return Err(self.sign_in_refused(&source, e).await),
        };
        let token = jitgate_core::ids::new_secret(SESSION_PREFIX.trim_end_matches('_'));
        let session = AuthSession {
            id: jitgate_core::ids::new_id("ses"),
            digest: token_digest(&token),
            body: SessionBody {
                principal: v.principal.clone(),
                source: format!("jwt:{provider}"),
                claims: Value::Object(v.claims.clone()),
            },
            created_at: now,
            expires_at: v.expires_at,
            ended_at: None,
        };
        let mut event =
            EventDraft::new(now, &v.principal.name, "auth.token_issued").details(json!({
                "provider": provider,
                "session": session.id,
                "groups": v.principal.groups,
                "expires_at": v.expires_at,
                "claims": v.claims,
            }));
        event.subject = Some(v.principal.name.clone());
        let jti = UsedJti {
            provider: provider.to_owned(),
            jti: v.jti.clone(),
            expires_at: v.jwt_expires_at,
        };
        let id = session.id.clone();
        if !self
            .store
            .insert_session(session, Some(jti), vec![event])
            .await?
        {
            let e = IdentityError::refused(
                Check::Jti,
                format!("jti {:?} was already used: a token is traded once", v.jti),
            );
            return Err(self.sign_in_refused(&source, e).await);
        }
        Ok(Issued {
            token,
            session: id,
            principal: v.principal,
            expires_at: v.expires_at,
        })
    }

    /// Audits a refused sign-in (`auth.refused`, naming the check) and makes its error: 401, or
    /// 503 when the provider cannot be reached.
    pub(crate) async fn sign_in_refused(&self, source: &str, e: IdentityError) -> Error {
        let check = e.check().map_or("provider_reachable", Check::as_str);
        let event = EventDraft::new(
            self.now(),
            &format!("{source} (unauthenticated)"),
            "auth.refused",
        )
        .outcome(Outcome::Denied)
        .details(json!({ "source": source, "check": check, "message": e.to_string() }));
        if let Err(write) = self.append(vec![event]).await {
            tracing::error!(error = %write, "could not audit a refused sign-in");
            return write.into();
        }
        match e {
            IdentityError::Refused { .. } => Error::SignInRefused(e.to_string()),
            IdentityError::Unavailable { .. } => {
                tracing::warn!(error = %e, "identity provider unreachable");
                Error::Unavailable(e.to_string())
            }
        }
    }

    /// Ends the sessions `key` names (`by` ends them: the holder signing out, or an admin), with
    /// an `auth.signed_out` event each. Returns how many ended.
    pub async fn end_sessions(
        &self,
        by: &Caller,
        key: SessionKey,
    ) -> Result<Vec<AuthSession>, Error> {
        let now = self.now();
        let by_name = by.principal.name.clone();
        let ended = self
            .store
            .end_sessions(
                key,
                now,
                Box::new(move |sessions| {
                    sessions
                        .iter()
                        .map(|s| {
                            let mut e =
                                EventDraft::new(now, &by_name, "auth.signed_out").details(json!({
                                    "session": s.id,
                                    "source": s.body.source,
                                }));
                            e.subject = Some(s.body.principal.name.clone());
                            e
                        })
                        .collect()
                }),
            )
            .await?;
        self.identity.forget(ended.iter().map(|s| s.digest));
        Ok(ended)
    }
}
