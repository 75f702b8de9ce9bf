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

    /// Where to send a browser that wants to sign in.
    pub async fn oidc_login_url(&self) -> Result<String, Error> {
        match self.oidc()?.login_url().await {
            Ok(url) => Ok(url),
            Err(e) => Err(self.sign_in_refused(&self.oidc_source(), e).await),
        }
    }

    /// The provider sent the browser back: sign the person in.
    pub async fn oidc_callback(&self, code: &str, state: &str) -> Result<Issued, Error> {
        match self.oidc()?.callback(code, state).await {
            Ok(person) => self.sign_in(person, "browser").await,
            Err(e) => Err(self.sign_in_refused(&self.oidc_source(), e).await),
        }
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
            let mut devices = self
                .identity
                .devices
                .0
                .lock()
                .map_err(|_| Error::Io("device lock poisoned".into()))?;
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
