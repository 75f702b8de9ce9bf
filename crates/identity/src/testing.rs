//! A JWT issuer for tests: signing keys (RSA from a fixture, P-256 and Ed25519 made fresh),
//! GitHub- and GitLab-shaped claims, and a JWKS with its discovery document served on
//! 127.0.0.1. Built only with the `testing` feature.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use serde_json::{Value, json};

/// A 2048-bit RSA key made for these tests only (PKCS#1 DER).
const RSA_DER: &[u8] = include_bytes!("../testdata/rsa_test_key.der");

/// A private key, the algorithm it signs with, and its public half as a JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    /// The fixture RSA key (RS256), as GitHub and GitLab sign with.
    pub fn rsa(kid: &str) -> Self {
        let pair = RsaKeyPair::from_der(RSA_DER).expect("the RSA fixture parses");
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        let (n, e) = (public.n, public.e);
        Self {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(RSA_DER),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                        "n": b64(&n), "e": b64(&e)}),
        }
    }

    /// A new P-256 key (ES256).
    pub fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("P-256 key");
        let point = pair.public_key().as_ref(); // 0x04 || x || y
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}),
        }
    }

    /// A new Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 key");
        Self {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}),
        }
    }

    /// A JWT of `claims`, signed with this key and naming it by `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with(header, claims)
    }

    /// A JWT with the header given, signed with this key (to claim another key's `kid`).
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signs")
    }
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    let head = b64(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{head}.{}.", b64(claims.to_string().as_bytes()))
}

/// `jwt` with its claims replaced by `claims` and its signature kept: a forgery.
pub fn tampered(jwt: &str, claims: &Value) -> String {
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = b64(claims.to_string().as_bytes());
    parts.join(".")
}

/// A token signed with HS256 using `secret` (an attacker using a provider's public key as one).
pub fn hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("signs")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Default)]
struct Shared {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    down: AtomicBool,
    url: Mutex<String>,
}

/// An issuer on 127.0.0.1: `/.well-known/openid-configuration` and `/jwks`.
pub struct TestIssuer {
    /// Its issuer URL (also the base of its two documents).
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl TestIssuer {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        *shared.url.lock().expect("lock") = url.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Replaces the published key set.
    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.shared.keys.lock().expect("lock") = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// How many times the key set was fetched.
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }

    /// Makes both documents answer 503 (`true`) or serve again (`false`).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Claims shaped as a GitHub Actions job's token.
    pub fn github_claims(&self, repository: &str, git_ref: &str, now_s: i64, jti: &str) -> Value {
        json!({
            "iss": self.url, "aud": "jitgate", "jti": jti,
            "sub": format!("repo:{repository}:ref:{git_ref}"),
            "repository": repository, "repository_owner": repository.split('/').next(),
            "ref": git_ref, "ref_type": "branch", "sha": "4f1e0c3b9a7d2e6f8c5b1a0d9e8f7c6b5a4d3e2f",
            "workflow": "deploy", "run_id": "7345123456", "run_number": "42", "run_attempt": "1",
            "actor": "octocat", "event_name": "push",
            "iat": now_s, "nbf": now_s, "exp": now_s + 300,
        })
    }

    /// Claims shaped as a GitLab CI job's `id_tokens` token.
    pub fn gitlab_claims(&self, project_path: &str, git_ref: &str, now_s: i64, jti: &str) -> Value {
        json!({
            "iss": self.url, "aud": ["jitgate", "https://gitlab.example.com"], "jti": jti,
            "sub": format!("project_path:{project_path}:ref_type:branch:ref:{git_ref}"),
            "namespace_path": project_path.split('/').next(), "project_path": project_path,
            "project_id": "22", "ref": git_ref, "ref_type": "branch", "pipeline_id": "1001",
            "pipeline_source": "push", "job_id": "5005", "user_login": "alice",
            "iat": now_s, "nbf": now_s, "exp": now_s + 300,
        })
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let url = s.url.lock().expect("lock").clone();
    Json(json!({"issuer": url, "jwks_uri": format!("{url}/jwks")})).into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    s.fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({"keys": *s.keys.lock().expect("lock")})).into_response()
}
