//! People signing in through the OpenID provider: the browser flow (`GET /auth/login` →
//! provider → `GET /auth/callback`) and the device flow (`POST /api/v1/auth/device`, then
//! `…/device/poll`). Both end in a session token like a workload's, with the person's groups as
//! the provider gave them at this sign-in, audited as `auth.signed_in`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jitgate_core::{EventDraft, Timestamp};
use jitgate_identity::IdentityError;
use jitgate_identity::oidc::{Oidc, Person};
use jitgate_store::{AuthSession, SessionBody};
use serde_json::{Value, json};

use crate::auth::token_digest;
use crate::error::Error;
use crate::identity::{Issued, SESSION_PREFIX};
use crate::service::App;

/// Device sign-ins under way, by the handle the CLI polls with.
#[derive(Default)]
pub struct Devices(Mutex<HashMap<String, Device>>);

/// Browser sign-ins begun by `jitgate login --browser`: by `state`, where the CLI listens and
/// its PKCE challenge; then, once signed in, by one-time code, the session waiting for the CLI.
#[derive(Default)]
pub struct Loopbacks {
    begun: Mutex<HashMap<String, Loopback>>,
    done: Mutex<HashMap<String, (Issued, String, Timestamp)>>,
}

struct Loopback {
    redirect: String,
    challenge: String,
}

/// How long the CLI has to collect its session after the browser came back.
const LOOPBACK_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);
/// Sign-ins in progress kept at most; past it they start afresh.
const MAX_WAITING: usize = 10_000;

/// The browser sign-in's end: the session itself, or where to send the browser for the CLI.
pub enum BrowserEnd {
    Session(Issued),
    Loopback(String),
}

/// Only a listener on this machine may receive the code.
fn loopback_url(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let local = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    (u.scheme() == "http" && local && u.port().is_some()).then(|| u.to_string())
}

enum Device {
    Waiting,
    Finished(Result<Person, IdentityError>),
}

/// What `jitgate login` shows the person, and the handle it polls with.
#[derive(Debug, Clone)]
pub struct DeviceShown {
    pub device: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub interval_secs: u64,
    pub expires_in_secs: u64,
}

/// A device sign-in's state, as the poll answers it.
pub enum DevicePoll {
    Pending,
    Done(Issued),
}

impl App {
    fn oidc(&self) -> Result<&Oidc, Error> {
        self.identity.oidc.as_ref().ok_or_else(|| {
            Error::NotFound("sign-in through an OpenID provider ([identity.oidc])".into())
        })
    }

    fn oidc_source(&self) -> String {
        self.identity
            .oidc
            .as_ref()
            .map_or_else(String::new, |o| format!("oidc:{}", o.issuer()))
    }

    /// Where to send a browser that wants to sign in. With `cli` (`jitgate login --browser`: a
    /// loopback URL and the CLI's PKCE challenge), the session goes to the CLI at the end.
    pub async fn oidc_login_url(&self, cli: Option<(&str, &str)>) -> Result<String, Error> {
        let cli = match cli {
            Some((url, challenge)) => {
                let url = loopback_url(url).ok_or_else(|| {
                    Error::Core(jitgate_core::CoreError::Invalid(format!(
                        "cli {url:?} must be http://127.0.0.1:PORT/… (a listener on this machine)"
                    )))
                })?;
                if challenge.len() < 43 {
                    return Err(Error::Core(jitgate_core::CoreError::Invalid(
                        "cli_challenge must be the base64url SHA-256 of a verifier".into(),
                    )));
                }
                Some(Loopback {
                    redirect: url,
                    challenge: challenge.to_owned(),
                })
            }
            None => None,
        };
        match self.oidc()?.login_url().await {
            Ok((url, state)) => {
                if let (Some(l), Ok(mut begun)) = (cli, self.identity.loopbacks.begun.lock()) {
                    if begun.len() >= MAX_WAITING {
                        begun.clear();
                    }
                    begun.insert(state, l);
                }
                Ok(url)
            }
            Err(e) => Err(self.sign_in_refused(&self.oidc_source(), e).await),
        }
    }

    /// The provider sent the browser back: sign the person in.
    pub async fn oidc_callback(&self, code: &str, state: &str) -> Result<BrowserEnd, Error> {
        let person = match self.oidc()?.callback(code, state).await {
            Ok(person) => person,
            Err(e) => return Err(self.sign_in_refused(&self.oidc_source(), e).await),
        };
        let cli = self
            .identity
            .loopbacks
            .begun
            .lock()
            .ok()
            .and_then(|mut b| b.remove(state));
        let issued = self
            .sign_in(
                person,
                if cli.is_some() {
                    "cli-browser"
                } else {
                    "browser"
                },
            )
            .await?;
        let Some(cli) = cli else {
            return Ok(BrowserEnd::Session(issued));
        };
        let code = jitgate_core::ids::new_secret("jgc");
        let now = self.now();
        if let Ok(mut done) = self.identity.loopbacks.done.lock() {
            done.retain(|_, (_, _, at)| now.duration_since(*at).unsigned_abs() < LOOPBACK_WINDOW);
            done.insert(code.clone(), (issued, cli.challenge, now));
        }
        let sep = if cli.redirect.contains('?') { '&' } else { '?' };
        Ok(BrowserEnd::Loopback(format!(
            "{}{sep}code={code}",
            cli.redirect
        )))
    }

    /// The CLI collects its session with the one-time code and the PKCE verifier whose
    /// challenge it began with: a code seen by anything else on the machine is useless alone.
    pub async fn loopback_token(&self, code: &str, verifier: &str) -> Result<Issued, Error> {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let now = self.now();
        let found = self
            .identity
            .loopbacks
            .done
            .lock()
            .ok()
            .and_then(|mut d| d.remove(code));
        let refused = |m: &str| Error::SignInRefused(format!("state check failed: {m}"));
        let (issued, challenge, at) = found.ok_or_else(|| refused("unknown or used code"))?;
        if now.duration_since(at).unsigned_abs() >= LOOPBACK_WINDOW {
            return Err(refused("the code expired"));
        }
        let computed = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            sha2::Sha256::digest(verifier.as_bytes()),
        );
        if !bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
            return Err(refused("the verifier does not match the challenge"));
        }
        Ok(issued)
    }

    /// Starts a device sign-in; jitgate polls the provider in the background.
    pub async fn device_start(self: &Arc<Self>) -> Result<DeviceShown, Error> {
        let start = match self.oidc()?.device_start().await {
            Ok(s) => s,
            Err(e) => return Err(self.sign_in_refused(&self.oidc_source(), e).await),
        };
        let handle = jitgate_core::ids::new_secret("jgd");
        let shown = DeviceShown {
            device: handle.clone(),
            user_code: start.user_code.clone(),
            verification_uri: start.verification_uri.clone(),
            verification_uri_complete: start.verification_uri_complete.clone(),
            interval_secs: start.interval.as_secs().max(1),
            expires_in_secs: start.expires_in.as_secs(),
        };
        if let Ok(mut d) = self.identity.devices.0.lock() {
            // Sign-ins nobody polls again would pile up; past the cap they start afresh.
            if d.len() >= MAX_WAITING {
                d.clear();
            }
            d.insert(handle.clone(), Device::Waiting);
        }
        let app = self.clone();
        tokio::spawn(async move {
            let Ok(oidc) = app.oidc() else { return };
            let result = oidc.device_finish(&start).await;
            if let Ok(mut d) = app.identity.devices.0.lock() {
                d.insert(handle, Device::Finished(result));
            }
        });
        Ok(shown)
    }

    /// Whether the person approved yet; the first poll after they did gets the session.
    pub async fn device_poll(&self, handle: &str) -> Result<DevicePoll, Error> {
        let finished = {
            let mut devices =
                self.identity.devices.0.lock().map_err(|_| {
                    Error::Unavailable("device sign-ins: a lock was poisoned".into())
                })?;
            match devices.get(handle) {
                None => return Err(Error::NotFound("device sign-in".into())),
                Some(Device::Waiting) => return Ok(DevicePoll::Pending),
                Some(Device::Finished(_)) => match devices.remove(handle) {
                    Some(Device::Finished(r)) => r,
                    _ => return Ok(DevicePoll::Pending),
                },
            }
        };
        match finished {
            Ok(person) => Ok(DevicePoll::Done(self.sign_in(person, "device").await?)),
            Err(e) => Err(self.sign_in_refused(&self.oidc_source(), e).await),
        }
    }

    /// A session for a person the provider signed in: random token, stored hashed with the
    /// claims, ending after `session_ttl`.
    async fn sign_in(&self, person: Person, flow: &str) -> Result<Issued, Error> {
        let now = self.now();
        let expires_at: Timestamp = self.oidc()?.session_end(now);
        let token = jitgate_core::ids::new_secret(SESSION_PREFIX.trim_end_matches('_'));
        let source = self.oidc_source();
        let session = AuthSession {
            id: jitgate_core::ids::new_id("ses"),
            digest: token_digest(&token),
            body: SessionBody {
                principal: person.principal.clone(),
                source: source.clone(),
                claims: Value::Object(person.claims.clone()),
            },
            created_at: now,
            expires_at,
            ended_at: None,
        };
        let mut event =
            EventDraft::new(now, &person.principal.name, "auth.signed_in").details(json!({
                "source": source,
                "flow": flow,
                "session": session.id,
                "groups": person.principal.groups,
                "expires_at": expires_at,
                "claims": person.claims,
            }));
        event.subject = Some(person.principal.name.clone());
        let id = session.id.clone();
        self.store
            .insert_session(session, None, vec![event])
            .await?;
        Ok(Issued {
            token,
            session: id,
            principal: person.principal,
            expires_at,
        })
    }
}
