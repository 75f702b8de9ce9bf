//! Workload identity: a CI job's or an agent's JWT, checked against its provider's keys and the
//! provider's terms (issuer, audiences, bound claims), becomes a principal with a bounded life.
//! Every refusal names the check that failed.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jitgate_core::{Principal, Timestamp, duration};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::config::JwtProvider;
use crate::error::{Check, IdentityError};
use crate::jwks::KeySource;

/// How far apart our clock and the provider's may be.
pub const SKEW: Duration = Duration::from_secs(60);

/// Claims that say which run a token came from, kept in `auth.token_issued` when present
/// (GitHub Actions, GitLab CI), so a grant is traceable to the exact job.
const TRACE_CLAIMS: &[&str] = &[
    "sub",
    "jti",
    "repository",
    "repository_id",
    "repository_owner",
    "ref",
    "ref_type",
    "sha",
    "workflow",
    "workflow_ref",
    "job_workflow_ref",
    "run_id",
    "run_number",
    "run_attempt",
    "actor",
    "event_name",
    "environment",
    "namespace_path",
    "project_path",
    "project_id",
    "pipeline_id",
    "pipeline_source",
    "job_id",
    "user_login",
    "ci_config_ref_uri",
];

/// A JWT that passed every check, and what it entitles to.
#[derive(Debug, Clone)]
pub struct Verified {
    pub provider: String,
    pub principal: Principal,
    pub jti: String,
    /// The JWT's own `exp`.
    pub jwt_expires_at: Timestamp,
    /// When the jitgate token made from it ends: `exp` or `max_ttl` from now, the earlier.
    pub expires_at: Timestamp,
    /// The claims that identify the run, the bound ones among them.
    pub claims: Map<String, Value>,
}

/// The configured workload identity providers, by name.
pub struct Workload {
    providers: HashMap<String, (JwtProvider, KeySource)>,
}

impl Workload {
    pub fn new(providers: &[JwtProvider]) -> Self {
        let http = reqwest::Client::new();
        let providers = providers
            .iter()
            .map(|p| {
                let keys = KeySource::new(&p.name, &p.issuer, p.jwks_url.as_deref(), http.clone());
                (p.name.clone(), (p.clone(), keys))
            })
            .collect();
        Self { providers }
    }

    /// Whether a provider of that name is configured.
    pub fn has(&self, provider: &str) -> bool {
        self.providers.contains_key(provider)
    }

    /// Checks `jwt` as a token of `provider` at `now`.
    pub async fn verify(
        &self,
        provider: &str,
        jwt: &str,
        now: Timestamp,
    ) -> Result<Verified, IdentityError> {
        let (p, keys) = self.providers.get(provider).ok_or_else(|| {
            // The name is the caller's: shown only when it is short and plain.
            let plain = provider.len() <= 64
                && provider
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            let provider = if plain {
                provider
            } else {
                "(not a provider name)"
            };
            IdentityError::refused(
                Check::Provider,
                format!("no workload identity provider is named {provider:?}"),
            )
        })?;
        let header = Header::read(jwt)?;
        let key = keys.key(header.kid.as_deref(), now).await?;
        if key.alg != header.alg {
            return Err(IdentityError::refused(
                Check::Algorithm,
                format!(
                    "the token says {:?}, but its key is for {:?}",
                    header.alg, key.alg
                ),
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false; // checked below, against our Clock
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Map<String, Value>>(jwt, &key.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => IdentityError::refused(
                    Check::Signature,
                    format!(
                        "the signature does not verify with {provider}'s key {:?}",
                        header.kid.as_deref().unwrap_or("")
                    ),
                ),
                _ => IdentityError::refused(
                    Check::Format,
                    format!("not a JWT jitgate can read: {e}"),
                ),
            })?
            .claims;
        check_claims(p, &claims, now)?;
        verified(p, claims, now)
    }
}

/// Issuer, audience, time, `jti` and bound claims.
fn check_claims(
    p: &JwtProvider,
    claims: &Map<String, Value>,
    now: Timestamp,
) -> Result<(), IdentityError> {
    let refused = |c, m: String| IdentityError::refused(c, m);
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss != p.issuer {
        return Err(refused(
            Check::Issuer,
            format!("issuer {iss:?} is not {:?}", p.issuer),
        ));
    }
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !auds
        .iter()
        .any(|a| p.audiences.iter().any(|ours| ours == a))
    {
        return Err(refused(
            Check::Audience,
            format!("audience {auds:?} is not one of {:?}", p.audiences),
        ));
    }
    let skew = SKEW.as_secs() as i64;
    let now_s = now.as_second();
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| refused(Check::Expiry, "the token has no exp".into()))?;
    if now_s > exp + skew {
        return Err(refused(
            Check::Expiry,
            format!("the token expired at {}", seconds(exp)),
        ));
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
        && nbf > now_s + skew
    {
        return Err(refused(
            Check::NotBefore,
            format!("the token is not valid before {}", seconds(nbf)),
        ));
    }
    match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() => {}
        _ => {
            return Err(refused(
                Check::Jti,
                "the token has no jti, so a replay could not be told apart".into(),
            ));
        }
    }
    for (claim, glob) in &p.bound_claims {
        let values: Vec<String> = match claims.get(claim) {
            Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
            Some(v) => scalar(v).into_iter().collect(),
            None => vec![],
        };
        if !values.iter().any(|v| glob.matches(v)) {
            let shown = match values.as_slice() {
                [] => "missing".to_owned(),
                [one] => format!("{one:?}"),
                many => format!("{many:?}"),
            };
            return Err(refused(
                Check::BoundClaims,
                format!(
                    "claim {claim} is {shown}, which does not match {:?}",
                    glob.as_str()
                ),
            ));
        }
    }
    Ok(())
}

fn verified(
    p: &JwtProvider,
    claims: Map<String, Value>,
    now: Timestamp,
) -> Result<Verified, IdentityError> {
    let name = p
        .principal
        .render(&claims)
        .map_err(|m| IdentityError::refused(Check::Principal, m))?;
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let jwt_expires_at = seconds(exp);
    let expires_at = jwt_expires_at.min(duration::add(now, p.max_ttl));
    if expires_at <= now {
        return Err(IdentityError::refused(
            Check::Expiry,
            format!("the token expired at {jwt_expires_at}"),
        ));
    }
    let kept = claims
        .iter()
        .filter(|(k, _)| {
            TRACE_CLAIMS.contains(&k.as_str()) || p.bound_claims.iter().any(|(b, _)| b == *k)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let groups: Vec<&str> = p.groups.iter().map(String::as_str).collect();
    let principal = match p.principal.kind {
        jitgate_core::PrincipalKind::User => Principal::user(&name, &groups),
        jitgate_core::PrincipalKind::Service => Principal::service(&name, &groups),
    };
    Ok(Verified {
        provider: p.name.clone(),
        principal,
        jti: claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        jwt_expires_at,
        expires_at,
        claims: kept,
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn seconds(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::MIN)
}

/// The JWT header, read by hand so that `alg: none` and HS* get their own refusal rather than a
/// parse error.
struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

impl Header {
    fn read(jwt: &str) -> Result<Self, IdentityError> {
        let format = |m: &str| IdentityError::refused(Check::Format, format!("not a JWT: {m}"));
        let mut parts = jwt.split('.');
        let (Some(head), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format("expected three dot-separated parts"));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(head)
            .map_err(|_| format("the header is not base64url"))?;
        let v: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|_| format("the header is not a JSON object"))?;
        let alg = v.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = match alg {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            "none" | "None" | "NONE" | "" => {
                return Err(IdentityError::refused(
                    Check::Algorithm,
                    "alg \"none\" is refused: the token is unsigned",
                ));
            }
            hs if hs.starts_with("HS") => {
                return Err(IdentityError::refused(
                    Check::Algorithm,
                    format!(
                        "alg {hs:?} is refused: a shared-secret algorithm cannot be checked against a provider's public keys"
                    ),
                ));
            }
            other => {
                return Err(IdentityError::refused(
                    Check::Algorithm,
                    format!("alg {other:?} is refused; only RS256, ES256 and EdDSA are accepted"),
                ));
            }
        };
        let kid = v.get("kid").and_then(Value::as_str).map(str::to_owned);
        Ok(Self { alg, kid })
    }
}
