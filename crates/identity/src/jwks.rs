//! A provider's signing keys (its JWKS), fetched when first needed and again when a token names
//! a key we do not have (the provider rotated its keys), at most once a minute: a flood of
//! tokens with made-up `kid`s cannot turn jitgate into a load on the provider.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jitgate_core::Timestamp;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::{Check, IdentityError};

/// The least time between two fetches of one provider's keys.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// A key set or discovery document larger than this is not one.
const MAX_DOCUMENT: usize = 1 << 20;

/// One public key and the one algorithm it verifies.
pub struct Key {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Where a provider's keys come from, and the keys last fetched.
pub struct KeySource {
    provider: String,
    issuer: String,
    jwks_url: Option<String>,
    http: reqwest::Client,
    cache: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// By `kid`; a key without one is under "".
    keys: HashMap<String, Arc<Key>>,
    /// The discovered JWKS address, once known.
    jwks_uri: Option<String>,
    fetched: Option<Timestamp>,
}

impl Cached {
    fn find(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self.keys.get(kid).cloned(),
            // A token without a `kid` is only usable when there is no choice to make.
            None if self.keys.len() == 1 => self.keys.values().next().cloned(),
            None => None,
        }
    }
}

impl KeySource {
    pub fn new(
        provider: &str,
        issuer: &str,
        jwks_url: Option<&str>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            issuer: issuer.to_owned(),
            jwks_url: jwks_url.map(str::to_owned),
            http,
            cache: Mutex::new(Cached::default()),
        }
    }

    /// The key a token names: from the cache, else from a fresh fetch if the last one is a
    /// minute old. Concurrent callers wait for one fetch rather than each making their own.
    pub async fn key(&self, kid: Option<&str>, now: Timestamp) -> Result<Arc<Key>, IdentityError> {
        let mut cached = self.cache.lock().await;
        if let Some(key) = cached.find(kid) {
            return Ok(key);
        }
        let may_fetch = cached
            .fetched
            .is_none_or(|at| now.duration_since(at).unsigned_abs() >= REFETCH_INTERVAL);
        let kid_text = kid.unwrap_or("(none)");
        if !may_fetch {
            return Err(IdentityError::refused(
                Check::Key,
                format!(
                    "{} has no key with kid {kid_text:?} (its keys were fetched less than a minute ago)",
                    self.provider
                ),
            ));
        }
        cached.fetched = Some(now);
        let url = match (&self.jwks_url, &cached.jwks_uri) {
            (Some(u), _) | (None, Some(u)) => u.clone(),
            (None, None) => {
                let u = self.discover().await?;
                cached.jwks_uri = Some(u.clone());
                u
            }
        };
        let set: JwkSetDoc = self.get_json(&url).await?;
        cached.keys = usable_keys(set.keys);
        tracing::info!(provider = %self.provider, keys = cached.keys.len(), "fetched the provider's signing keys");
        cached.find(kid).ok_or_else(|| {
            IdentityError::refused(
                Check::Key,
                format!(
                    "{} has no key with kid {kid_text:?} for RS256, ES256 or EdDSA",
                    self.provider
                ),
            )
        })
    }

    /// The JWKS address from the issuer's discovery document, which must name the same issuer.
    async fn discover(&self) -> Result<String, IdentityError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let doc: Discovery = self.get_json(&url).await?;
        if doc.issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(self.unavailable(format!(
                "its discovery document names issuer {:?}, not {:?}",
                doc.issuer, self.issuer
            )));
        }
        let parsed = reqwest::Url::parse(&doc.jwks_uri).map_err(|e| {
            self.unavailable(format!("jwks_uri {:?} is not a URL: {e}", doc.jwks_uri))
        })?;
        let local = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && local) {
            return Err(self.unavailable(format!("jwks_uri {:?} is not https://", doc.jwks_uri)));
        }
        Ok(doc.jwks_uri)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, IdentityError> {
        let failed = |e: reqwest::Error| IdentityError::Unavailable {
            provider: self.provider.clone(),
            message: format!("GET {url}: {e}"),
            source: Some(e),
        };
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?;
        let body = resp.bytes().await.map_err(failed)?;
        if body.len() > MAX_DOCUMENT {
            return Err(self.unavailable(format!("GET {url}: more than {MAX_DOCUMENT} bytes")));
        }
        serde_json::from_slice(&body)
            .map_err(|e| self.unavailable(format!("GET {url}: not the expected JSON: {e}")))
    }

    fn unavailable(&self, message: String) -> IdentityError {
        IdentityError::Unavailable {
            provider: self.provider.clone(),
            message,
            source: None,
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct JwkSetDoc {
    keys: Vec<serde_json::Value>,
}

/// The signing keys of a set that verify RS256, ES256 or EdDSA; the rest (encryption keys,
/// other curves and algorithms, key types we do not know) are left out, not an error.
fn usable_keys(keys: Vec<serde_json::Value>) -> HashMap<String, Arc<Key>> {
    keys.into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk| {
            let alg = algorithm(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some((
                jwk.common.key_id.clone().unwrap_or_default(),
                Arc::new(Key { alg, key }),
            ))
        })
        .collect()
}

/// The algorithm a key is for: what its `alg` says, which must fit its type, else what its type
/// and curve imply.
fn algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Some(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Some(by_type),
        Some(KeyAlgorithm::EdDSA) if by_type == Algorithm::EdDSA => Some(by_type),
        Some(_) => None,
    }
}
