//! People signing in through an OpenID provider: the authorization code flow with PKCE (S256),
//! `state` and `nonce` for browsers, and the device authorization grant (RFC 8628) for
//! terminals. Either ends in a [`Person`]: a user principal named by `user_claim`, with the
//! groups of `groups_claim` as the provider says them at this sign-in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jitgate_core::{Clock, Principal, Timestamp, duration};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreDeviceAuthorizationResponse, CoreGrantType, CoreIdTokenVerifier,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, IssuerUrl, Nonce, NonceVerifier, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::OidcConfig;
use crate::error::{Check, IdentityError};

/// How long a browser has from `GET /auth/login` to the callback.
const LOGIN_WINDOW: Duration = Duration::from_secs(600);
/// Browser sign-ins in progress at most; past it the oldest are dropped.
const MAX_PENDING: usize = 10_000;
/// An ID token signed by a key jitgate does not have refetches the provider's keys, at most
/// this often: a flood of made-up `kid`s costs the provider nothing.
const KEY_REFETCH_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct DeviceEndpoint {
    #[serde(default)]
    device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}
impl AdditionalProviderMetadata for DeviceEndpoint {}

type Metadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A person the provider signed in, as jitgate will know them.
#[derive(Debug, Clone)]
pub struct Person {
    pub principal: Principal,
    /// `sub`, the user and groups claims, `email`, `name`: what the session was issued on.
    pub claims: Map<String, Value>,
}

/// A device sign-in under way: what the person is shown, and what jitgate polls with.
pub struct DeviceStart {
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: Duration,
    pub interval: Duration,
    details: CoreDeviceAuthorizationResponse,
}

struct PendingLogin {
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    started: Timestamp,
}

/// The configured provider, discovered at first use.
pub struct Oidc {
    config: OidcConfig,
    clock: Arc<dyn Clock>,
    http: openidconnect::reqwest::Client,
    metadata: tokio::sync::Mutex<Option<Metadata>>,
    /// When the keys were last fetched again for an unknown key.
    keys_refetched: Mutex<Option<Timestamp>>,
    pending: Mutex<HashMap<String, PendingLogin>>,
}

impl Oidc {
    pub fn new(config: OidcConfig, clock: Arc<dyn Clock>) -> Self {
        let http = openidconnect::reqwest::Client::builder()
            // A provider that redirects its token endpoint is not followed (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            config,
            clock,
            http,
            metadata: tokio::sync::Mutex::new(None),
            keys_refetched: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn session_ttl(&self) -> Duration {
        self.config.session_ttl
    }

    fn unavailable(&self, message: String) -> IdentityError {
        IdentityError::Unavailable {
            provider: self.config.issuer.clone(),
            message,
            source: None,
        }
    }

    /// The provider's discovery document, fetched until it once succeeds, then kept.
    async fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        IdentityError,
    > {
        let mut cached = self.metadata.lock().await;
        let meta = match &*cached {
            Some(m) => m.clone(),
            None => {
                let issuer = IssuerUrl::new(self.config.issuer.clone())
                    .map_err(|e| self.unavailable(format!("issuer is not a URL: {e}")))?;
                let m = Metadata::discover_async(issuer, &self.http)
                    .await
                    .map_err(|e| self.unavailable(format!("discovery failed: {}", chain(&e))))?;
                *cached = Some(m.clone());
                m
            }
        };
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| self.unavailable(format!("redirect_url is not a URL: {e}")))?;
        let secret = self
            .config
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_owned()));
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.config.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect))
    }

    async fn device_url(&self) -> Result<DeviceAuthorizationUrl, IdentityError> {
        self.client().await?;
        let cached = self.metadata.lock().await;
        cached
            .as_ref()
            .and_then(|m| {
                m.additional_metadata()
                    .device_authorization_endpoint
                    .clone()
            })
            .ok_or_else(|| {
                self.unavailable("the provider offers no device authorization endpoint".into())
            })
    }

    /// Where to send a browser: the provider's authorization URL with PKCE (S256), `state` and
    /// `nonce`, remembered until the callback or for ten minutes. Also returns the `state`.
    pub async fn login_url(&self) -> Result<(String, String), IdentityError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &self.config.scopes {
            if s != "openid" {
                request = request.add_scope(Scope::new(s.clone()));
            }
        }
        let (url, state, nonce) = request.url();
        let now = self.clock.now();
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| self.unavailable("pending logins lock poisoned".into()))?;
        pending.retain(|_, p| now.duration_since(p.started).unsigned_abs() < LOGIN_WINDOW);
        if pending.len() >= MAX_PENDING {
            pending.clear();
        }
        pending.insert(
            state.secret().clone(),
            PendingLogin {
                verifier,
                nonce,
                started: now,
            },
        );
        Ok((url.to_string(), state.secret().clone()))
    }

    /// The browser came back with `code` and `state`: trade the code (with the PKCE verifier),
    /// verify the ID token (signature, issuer, audience, expiry, nonce), and read the person.
    pub async fn callback(&self, code: &str, state: &str) -> Result<Person, IdentityError> {
        let now = self.clock.now();
        let login = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(state))
            .filter(|p| now.duration_since(p.started).unsigned_abs() < LOGIN_WINDOW)
            .ok_or_else(|| {
                IdentityError::refused(
                    Check::State,
                    "unknown or expired state: start again at /auth/login",
                )
            })?;
        let client = self.client().await?;
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| self.unavailable(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(login.verifier);
        let tokens = request
            .request_async(&self.http)
            .await
            .map_err(|e| token_error(self, &e))?;
        self.verified_person(&tokens, &login.nonce).await
    }

    /// The person in the ID token of `tokens`, once it verified (signature, issuer, audience,
    /// expiry on jitgate's clock, and `nonce`). A token signed by a key jitgate does not know
    /// (the provider rotated its keys) refetches them, at most once a minute, and is checked
    /// again.
    async fn verified_person(
        &self,
        tokens: &CoreTokenResponse,
        nonce: impl NonceVerifier + Copy,
    ) -> Result<Person, IdentityError> {
        let id_token = tokens.id_token().ok_or_else(|| {
            IdentityError::refused(Check::IdToken, "the provider sent no ID token")
        })?;
        let client = self.client().await?;
        let verify = |verifier: CoreIdTokenVerifier<'_>| {
            let clock = self.clock.clone();
            let verifier = verifier.set_time_fn(move || chrono_now(clock.now()));
            id_token.claims(&verifier, nonce).map(|_| ())
        };
        match verify(client.id_token_verifier()) {
            Ok(()) => {}
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            )) if self.refetch_keys().await? => {
                let client = self.client().await?;
                verify(client.id_token_verifier())
                    .map_err(|e| IdentityError::refused(Check::IdToken, chain(&e)))?;
            }
            Err(e) => return Err(IdentityError::refused(Check::IdToken, chain(&e))),
        }
        self.person(&id_token.to_string())
    }

    /// Fetches the provider's keys again, unless that was done less than a minute ago; whether
    /// it did.
    async fn refetch_keys(&self) -> Result<bool, IdentityError> {
        let now = self.clock.now();
        {
            let mut last = self
                .keys_refetched
                .lock()
                .map_err(|_| self.unavailable("key refetch lock poisoned".into()))?;
            if last.is_some_and(|t| now.duration_since(t).unsigned_abs() < KEY_REFETCH_EVERY) {
                return Ok(false);
            }
            *last = Some(now);
        }
        let mut cached = self.metadata.lock().await;
        let Some(meta) = cached.take() else {
            return Ok(false);
        };
        let fetched = openidconnect::JsonWebKeySet::fetch_async(meta.jwks_uri(), &self.http).await;
        match fetched {
            Ok(keys) => {
                *cached = Some(meta.set_jwks(keys));
                Ok(true)
            }
            Err(e) => {
                *cached = Some(meta);
                Err(self.unavailable(format!("fetching the keys failed: {}", chain(&e))))
            }
        }
    }

    /// Starts a device sign-in.
    pub async fn device_start(&self) -> Result<DeviceStart, IdentityError> {
        let url = self.device_url().await?;
        let client = self.client().await?.set_device_authorization_url(url);
        let mut request = client.exchange_device_code();
        for s in &self.config.scopes {
            if s != "openid" {
                request = request.add_scope(Scope::new(s.clone()));
            }
        }
        let details: CoreDeviceAuthorizationResponse = request
            .request_async(&self.http)
            .await
            .map_err(|e| self.unavailable(format!("device authorization failed: {}", chain(&e))))?;
        Ok(DeviceStart {
            user_code: details.user_code().secret().clone(),
            verification_uri: details.verification_uri().to_string(),
            verification_uri_complete: details
                .verification_uri_complete()
                .map(|u| u.secret().clone()),
            expires_in: details.expires_in(),
            interval: details.interval(),
            details,
        })
    }

    /// Polls the provider until the person approves, refuses, or the code expires.
    pub async fn device_finish(&self, start: &DeviceStart) -> Result<Person, IdentityError> {
        let url = self.device_url().await?;
        let client = self.client().await?.set_device_authorization_url(url);
        let tokens = client
            .exchange_device_access_token(&start.details)
            .map_err(|e| self.unavailable(format!("the provider has no token endpoint: {e}")))?
            .request_async(&self.http, tokio::time::sleep, Some(start.expires_in))
            .await
            .map_err(|e| {
                IdentityError::refused(
                    Check::IdToken,
                    format!("device sign-in failed: {}", chain(&e)),
                )
            })?;
        // The device grant sends no nonce; the token comes straight from the token endpoint.
        let no_nonce = |_: Option<&Nonce>| Ok(());
        self.verified_person(&tokens, no_nonce).await
    }

    /// The person in a verified ID token: its payload, read for the configured claims.
    fn person(&self, jwt: &str) -> Result<Person, IdentityError> {
        let payload = jwt
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            .ok_or_else(|| {
                IdentityError::refused(Check::IdToken, "the ID token's claims cannot be read")
            })?;
        let c = &self.config;
        let name = payload
            .get(&c.user_claim)
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                IdentityError::refused(
                    Check::Principal,
                    format!("the ID token has no {:?} claim (user_claim)", c.user_claim),
                )
            })?;
        let groups: Vec<String> = match payload.get(&c.groups_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => vec![],
        };
        if !c.allowed_groups.is_empty() && !groups.iter().any(|g| c.allowed_groups.contains(g)) {
            return Err(IdentityError::refused(
                Check::AllowedGroups,
                format!(
                    "{name} is in none of the groups allowed to sign in ({})",
                    c.allowed_groups.join(", ")
                ),
            ));
        }
        let kept = ["sub", "email", "name", &c.user_claim, &c.groups_claim]
            .iter()
            .filter_map(|k| payload.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
        Ok(Person {
            principal: Principal::user(name, &refs),
            claims: kept,
        })
    }

    /// When a session begun now ends.
    pub fn session_end(&self, now: Timestamp) -> Timestamp {
        duration::add(now, self.config.session_ttl)
    }
}

fn chrono_now(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// A token endpoint's refusal is the person's problem (401); not reaching it is the provider's (503).
fn token_error<E: std::error::Error + 'static>(oidc: &Oidc, e: &E) -> IdentityError {
    let text = chain(e);
    if text.contains("Server returned error response") || text.contains("invalid_grant") {
        IdentityError::refused(
            Check::IdToken,
            format!("the provider refused the code: {text}"),
        )
    } else {
        oidc.unavailable(format!("token request failed: {text}"))
    }
}

/// An error and its causes, one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
