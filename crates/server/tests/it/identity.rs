//! Workload identity over HTTP: a CI job's JWT (GitHub- or GitLab-shaped, signed by a test key
//! whose JWKS the test serves on 127.0.0.1) traded for a jitgate token, used, refused, ended.

use std::time::Duration;

use jitgate_core::{Clock, SystemClock};
use jitgate_identity::testing::{SigningKey, TestIssuer, hs256, tampered, unsigned};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{STANDARD, TestApp, assert_refused};

fn now_s() -> i64 {
    SystemClock.now().as_second()
}

fn providers(issuer: &TestIssuer) -> String {
    format!(
        r#"
[[identity.jwt]]
name = "github-actions"
issuer = "{url}"
audiences = ["jitgate"]
principal = "service:{{repository}}"
bound_claims = {{ repository = "acme/*", ref = "refs/heads/main" }}
groups = ["ci"]
max_ttl = "15m"

[[identity.jwt]]
name = "gitlab"
issuer = "{url}"
jwks_url = "{url}/jwks"
audiences = ["jitgate"]
principal = "service:gitlab-{{project_path}}"
bound_claims = {{ namespace_path = "acme" }}
groups = ["ci"]
max_ttl = "2s"

[[policies]]
name = "ci-from-the-idp"
principals = ["group:ci"]
resources = ["orders-db"]
roles = ["deploy"]
max_duration = "15m"
[policies.approval]
required = 0
"#,
        url = issuer.url
    )
}

struct Setup {
    app: TestApp,
    issuer: TestIssuer,
    key: SigningKey,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    let issuer = TestIssuer::start().await;
    let key = SigningKey::rsa("gh-1");
    issuer.publish(&[&key]);
    let app = TestApp::start(&format!("{STANDARD}{}", providers(&issuer))).await;
    Setup {
        app,
        issuer,
        key,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    async fn exchange(&self, provider: &str, jwt: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/auth/token", self.app.base))
            .json(&json!({ "provider": provider, "jwt": jwt }))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn with_token(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.app.call_as(token, method, path, body).await
    }

    fn github(&self, repo: &str, git_ref: &str, jti: &str) -> String {
        self.key
            .sign(&self.issuer.github_claims(repo, git_ref, now_s(), jti))
    }

    async fn events(&self, action: &str) -> Vec<Value> {
        self.app.events_of(action).await
    }
}

#[tokio::test]
async fn a_ci_job_trades_its_jwt_for_a_token_and_gets_a_grant_traceable_to_its_run() {
    let s = setup().await;
    let (status, t) = s
        .exchange(
            "github-actions",
            &s.github("acme/api", "refs/heads/main", "run-1"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["name"], "acme/api");
    assert_eq!(t["kind"], "service");
    let token = t["token"].as_str().unwrap();
    assert!(token.starts_with("jgs_"));
    // Its life is the JWT's (5 minutes), shorter than max_ttl (15 minutes).
    let expires: jitgate_core::Timestamp = t["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires.as_second() <= now_s() + 300, "{t}");

    let (status, me) = s
        .with_token(token, reqwest::Method::GET, "/api/v1/whoami", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["source"], "jwt:github-actions");
    assert_eq!(me["groups"], json!(["ci"]));
    assert_eq!(me["session"], t["session"]);

    let body = json!({ "resource": "orders-db", "role": "deploy", "duration": "10m" });
    let (status, r) = s
        .with_token(token, reqwest::Method::POST, "/api/v1/requests", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["principal"], "acme/api");
    assert!(r["state"] == "active" || r["state"] == "approved", "{r}");

    let issued = s.events("auth.token_issued").await;
    assert_eq!(issued.len(), 1);
    let d = &issued[0]["details"];
    assert_eq!(d["claims"]["run_id"], "7345123456");
    assert_eq!(
        d["claims"]["sha"],
        "4f1e0c3b9a7d2e6f8c5b1a0d9e8f7c6b5a4d3e2f"
    );
    assert_eq!(d["claims"]["ref"], "refs/heads/main");
    assert_eq!(d["session"], t["session"]);
    // The token is nowhere in the log.
    let (_, all) = s.app.get("root", "/api/v1/audit/events").await;
    assert!(!all.to_string().contains(token));

    // GitLab-shaped, through its jwks_url, with an ES256 key.
    let gl = SigningKey::es256("gl-1");
    s.issuer.publish(&[&s.key, &gl]);
    let jwt = gl.sign(
        &s.issuer
            .gitlab_claims("acme/billing", "main", now_s(), "gl-run-1"),
    );
    let (status, t) = s.exchange("gitlab", &jwt).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["name"], "gitlab-acme/billing");
}

#[tokio::test]
async fn every_failed_check_is_a_401_naming_it_and_is_audited() {
    let s = setup().await;
    let now = now_s();
    let claims = s
        .issuer
        .github_claims("acme/api", "refs/heads/main", now, "x");
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    // A genuine token whose claims were changed: its signature no longer fits.
    let forged = tampered(
        &s.key.sign(&claims),
        &with("repository", json!("acme/admin")),
    );
    let mut forged_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    forged_header.kid = Some("gh-1".into());
    let public_key = serde_json::to_vec(&s.key.jwk).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("algorithm", unsigned(&claims), "alg \"none\""),
        ("algorithm", hs256("gh-1", &public_key, &claims), "HS256"),
        (
            "algorithm",
            SigningKey::es256("gh-1").sign_with(forged_header, &claims),
            "its key is for",
        ),
        ("signature", forged, "does not verify"),
        (
            "audience",
            s.key.sign(&with("aud", json!("other"))),
            "\"other\"",
        ),
        (
            "expiry",
            s.key.sign(&with("exp", json!(now - 120))),
            "expired",
        ),
        (
            "not_before",
            s.key.sign(&with("nbf", json!(now + 600))),
            "not valid before",
        ),
        (
            "bound_claims",
            s.key.sign(&with("ref", json!("refs/heads/dev"))),
            "refs/heads/dev",
        ),
        (
            "bound_claims",
            s.key.sign(&with("repository", json!("evil/api"))),
            "acme/*",
        ),
        (
            "issuer",
            s.key.sign(&with("iss", json!("https://evil.example"))),
            "evil.example",
        ),
    ];
    for (check, jwt, says) in &cases {
        let (status, v) = s.exchange("github-actions", jwt).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{check}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{check} check failed")),
            "{message}"
        );
        assert!(message.contains(says), "{message} should say {says}");
    }
    let refused = s.events("auth.refused").await;
    let checks: Vec<&str> = refused
        .iter()
        .map(|e| e["details"]["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, cases.iter().map(|c| c.0).collect::<Vec<_>>());
    assert!(refused.iter().all(|e| e["outcome"] == "denied"));
    assert!(s.events("auth.token_issued").await.is_empty());
    // An unknown provider: the caller's text is neither echoed at length nor the audit's actor.
    let long = "x".repeat(5000);
    let answer = s.exchange(&long, &s.key.sign(&claims)).await;
    assert_refused(&answer, StatusCode::UNAUTHORIZED, "(not a provider name)");
    let last = s.events("auth.refused").await.pop().unwrap();
    assert_eq!(last["actor"], "jwt:(unknown provider) (unauthenticated)");
}

#[tokio::test]
async fn a_jti_is_accepted_once_even_across_a_restart() {
    let mut s = setup().await;
    let jwt = s.github("acme/api", "refs/heads/main", "once");
    assert_eq!(s.exchange("github-actions", &jwt).await.0, StatusCode::OK);
    assert_refused(
        &s.exchange("github-actions", &jwt).await,
        StatusCode::UNAUTHORIZED,
        "already used",
    );
    s.app.stop().await;
    s.app.boot().await;
    let (status, v) = s.exchange("github-actions", &jwt).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let checks: Vec<Value> = s
        .events("auth.refused")
        .await
        .iter()
        .map(|e| e["details"]["check"].clone())
        .collect();
    assert_eq!(checks, [json!("jti"), json!("jti")]);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_a_minute_and_a_dead_provider_refuses_clearly() {
    // (That a refetch a minute later finds the rotated key is tested with a fake clock in the
    // identity crate: tests/it/workload.rs.)
    let s = setup().await;
    assert_eq!(
        s.exchange(
            "github-actions",
            &s.github("acme/api", "refs/heads/main", "r1")
        )
        .await
        .0,
        StatusCode::OK
    );
    let rotated = SigningKey::ed25519("gh-2");
    s.issuer.publish(&[&rotated]);
    let jwt = rotated.sign(
        &s.issuer
            .github_claims("acme/api", "refs/heads/main", now_s(), "r2"),
    );
    assert_refused(
        &s.exchange("github-actions", &jwt).await,
        StatusCode::UNAUTHORIZED,
        "key check failed",
    );
    assert_eq!(s.issuer.fetches(), 1);

    // The gitlab provider has never fetched its keys; with the provider down it cannot.
    s.issuer.set_down(true);
    let gl = SigningKey::es256("gl-1");
    let jwt = gl.sign(
        &s.issuer
            .gitlab_claims("acme/billing", "main", now_s(), "g1"),
    );
    assert_refused(
        &s.exchange("gitlab", &jwt).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "gitlab cannot be reached",
    );
    let refused = s.events("auth.refused").await;
    assert_eq!(
        refused.last().unwrap()["details"]["check"],
        "provider_reachable"
    );
}

#[tokio::test]
async fn session_tokens_stop_working_when_they_expire_or_are_ended() {
    let s = setup().await;
    let get = |token: String| {
        let s = &s;
        async move {
            s.with_token(&token, reqwest::Method::GET, "/api/v1/whoami", None)
                .await
                .0
        }
    };
    // gitlab's max_ttl is 2 s.
    let gl = SigningKey::es256("gl-1");
    s.issuer.publish(&[&s.key, &gl]);
    let jwt = gl.sign(
        &s.issuer
            .gitlab_claims("acme/billing", "main", now_s(), "e1"),
    );
    let (_, t) = s.exchange("gitlab", &jwt).await;
    let short = t["token"].as_str().unwrap().to_owned();
    assert_eq!(get(short.clone()).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get(short).await, StatusCode::UNAUTHORIZED);

    // Signing out ends the token at once.
    let (_, t) = s
        .exchange(
            "github-actions",
            &s.github("acme/api", "refs/heads/main", "l1"),
        )
        .await;
    let token = t["token"].as_str().unwrap().to_owned();
    let (status, v) = s
        .with_token(&token, reqwest::Method::POST, "/api/v1/auth/logout", None)
        .await;
    assert_eq!((status, v["ended"].clone()), (StatusCode::OK, json!(1)));
    assert_eq!(get(token).await, StatusCode::UNAUTHORIZED);

    // An admin ends every session of a principal; others may not.
    let mut tokens = vec![];
    for jti in ["a1", "a2"] {
        let (_, t) = s
            .exchange(
                "github-actions",
                &s.github("acme/api", "refs/heads/main", jti),
            )
            .await;
        tokens.push(t["token"].as_str().unwrap().to_owned());
    }
    let (status, _) = s
        .app
        .post(
            "alice",
            "/api/v1/auth/sessions/end",
            json!({"principal": "acme/api"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, live) = s
        .app
        .get("root", "/api/v1/auth/sessions?principal=acme/api")
        .await;
    assert_eq!(live.as_array().unwrap().len(), 2, "{live}");
    let (status, v) = s
        .app
        .post(
            "root",
            "/api/v1/auth/sessions/end",
            json!({"principal": "acme/api"}),
        )
        .await;
    assert_eq!((status, v["ended"].clone()), (StatusCode::OK, json!(2)));
    for t in tokens {
        assert_eq!(get(t).await, StatusCode::UNAUTHORIZED);
    }
    let out = s.events("auth.signed_out").await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[2]["actor"], "root");
    assert!(
        out[2]["details"]["session"]
            .as_str()
            .unwrap()
            .starts_with("ses_")
    );
}

#[test]
fn identity_config_mistakes_name_file_line_and_key() {
    let text = "[[identity.jwt]]\nname = \"gh\"\nissuer = \"http://idp.example.com\"\naudiences = [\"jitgate\"]\nprincipal = \"service:{repository}\"\nbound_claims = { repository = \"acme/*\" }\n";
    let e = jitgate_server::Config::parse(text, "jitgate.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("jitgate.toml:3: identity.jwt[0].issuer: \"http://idp.example.com\" must be an https:// URL"), "{e}");
    let e = jitgate_server::Config::parse(&text.replace("audiences", "audience"), "jitgate.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `audience`"), "{e}");
}

#[tokio::test]
async fn the_gateway_accepts_a_session_token_until_it_is_ended() {
    let Some(mut db) = crate::services::PgDb::create().await else {
        return;
    };
    let shared = format!("{}shared", db.prefix);
    let grants =
        format!("ALTER ROLE {shared} LOGIN PASSWORD 's3cret'; GRANT SELECT ON orders TO {shared};");
    db.role(&shared, &grants).await;
    let issuer = TestIssuer::start().await;
    let key = SigningKey::rsa("gh-1");
    issuer.publish(&[&key]);
    let config = format!(
        r#"
[gateway.postgres]
listen = "127.0.0.1:0"

[[resources]]
name = "shared-db"
kind = "postgres"
provisioning = "none"
upstream_url = "postgres://{shared}:s3cret@127.0.0.1:5432/{name}"
[resources.roles.read]

[[policies]]
name = "ci-reads"
principals = ["group:ci"]
resources = ["shared-db"]
roles = ["read"]
max_duration = "1h"
[policies.approval]
required = 0
{providers}"#,
        name = db.name,
        providers = providers(&issuer).split("[[policies]]").next().unwrap(),
    );
    let s = Setup {
        app: TestApp::start(&config).await,
        issuer,
        key,
        http: reqwest::Client::new(),
    };
    let (_, t) = s
        .exchange(
            "github-actions",
            &s.github("acme/api", "refs/heads/main", "gw-1"),
        )
        .await;
    let token = t["token"].as_str().unwrap().to_owned();
    let body = json!({"resource": "shared-db", "role": "read", "duration": "10m"});
    let (status, r) = s
        .with_token(
            &token,
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let port = s.app.gateway_port();
    let url = format!("host=127.0.0.1 port={port} dbname=shared-db user=acme/api password={token}");
    let c = crate::services::pg_connect(&url).await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // Signed out: the token no longer opens a session.
    let (status, _) = s
        .with_token(&token, reqwest::Method::POST, "/api/v1/auth/logout", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let e = crate::services::pg_connect(&url).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{e}"
    );
}
