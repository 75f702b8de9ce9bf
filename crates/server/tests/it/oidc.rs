//! People signing in through a real OpenID provider (the npm package oidc-provider, started by
//! the test), its login, consent and device pages driven over HTTP as a browser would.

use std::time::Duration;

use jitgate_identity::testing_oidc::{Browser, TestProvider, free_port};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{STANDARD, TestApp, assert_refused, read};

struct Setup {
    app: TestApp,
    idp: TestProvider,
}

/// jitgate with `[identity.oidc]` pointing at a fresh provider; `extra` goes into that table.
async fn setup(extra: &str) -> Setup {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = TestProvider::start(&format!("{base}/auth/callback"));
    std::fs::write(
        std::env::temp_dir().join(format!("jitgate-oidc-secret-{port}")),
        "test-secret",
    )
    .unwrap();
    let config = format!(
        r#"{STANDARD}
[identity.oidc]
issuer = "{issuer}"
client_id = "jitgate"
client_secret_file = "{secret}"
redirect_url = "{base}/auth/callback"
scopes = ["openid", "email", "profile", "groups"]
user_claim = "email"
groups_claim = "groups"
{extra}
"#,
        issuer = idp.issuer,
        secret = std::env::temp_dir()
            .join(format!("jitgate-oidc-secret-{port}"))
            .display(),
    );
    let app = TestApp::start_on(port, &config).await;
    Setup { app, idp }
}

impl Setup {
    /// Signs `account` in with a browser: jitgate → provider login and consent → callback.
    async fn browser_sign_in(&self, account: &str) -> (u16, Value) {
        let mut b = Browser::new();
        let start = b.get(&format!("{}/auth/login", self.app.base)).await;
        assert_eq!(start.status, 303, "{}", start.body);
        let to = start.location.clone().unwrap();
        for part in [
            "code_challenge_method=S256",
            "code_challenge=",
            "state=",
            "nonce=",
            "scope=openid",
        ] {
            assert!(to.contains(part), "{to} lacks {part}");
        }
        let callback = format!("{}/auth/callback", self.app.base);
        let back = b.sign_in(start, account, &callback).await;
        assert_eq!(
            back.status, 0,
            "the provider did not send the browser back: {}",
            back.body
        );
        let page = b.get(&back.url).await;
        (
            page.status,
            serde_json::from_str(&page.body).unwrap_or(Value::Null),
        )
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

    async fn events(&self, action: &str) -> Vec<Value> {
        self.app.events_of(action).await
    }
}

#[tokio::test]
async fn groups_from_the_provider_decide_auto_approval_fresh_at_each_sign_in() {
    let s = setup("allowed_groups = [\"engineering\"]").await;
    s.idp.set_groups("alice", &["engineering", "oncall"]);
    let (status, t) = s.browser_sign_in("alice").await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["name"], "alice@example.com");
    let token = t["token"].as_str().unwrap().to_owned();
    let (_, me) = s
        .with_token(&token, reqwest::Method::GET, "/api/v1/whoami", None)
        .await;
    assert_eq!(me["groups"], json!(["engineering", "oncall"]));
    assert_eq!(me["kind"], "user");
    assert_eq!(me["source"], format!("oidc:{}", s.idp.issuer));
    // oncall (from the provider) auto-approves engineering's read.
    let (status, r) = s
        .with_token(
            &token,
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(read("30m")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["state"], "active", "{r}");
    let release = format!("/api/v1/grants/{}/release", r["grant_id"].as_str().unwrap());
    let (status, _) = s
        .with_token(&token, reqwest::Method::POST, &release, None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Taken out of oncall at the provider: the next sign-in has no auto-approval.
    s.idp.set_groups("alice", &["engineering"]);
    let (_, t2) = s.browser_sign_in("alice").await;
    let token2 = t2["token"].as_str().unwrap();
    let (_, r) = s
        .with_token(
            token2,
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(read("30m")),
        )
        .await;
    assert_eq!(r["state"], "pending", "{r}");

    let signed_in = s.events("auth.signed_in").await;
    assert_eq!(signed_in.len(), 2);
    assert_eq!(
        signed_in[0]["details"]["groups"],
        json!(["engineering", "oncall"])
    );
    assert_eq!(signed_in[1]["details"]["flow"], "browser");

    // allowed_groups: someone in none of them is refused, and that is audited.
    s.idp.set_groups("mallory", &["sales"]);
    let (status, v) = s.browser_sign_in("mallory").await;
    assert_eq!(status, 401, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("allowed_groups check failed"),
        "{v}"
    );
    let refused = s.events("auth.refused").await;
    assert_eq!(
        refused.last().unwrap()["details"]["check"],
        "allowed_groups"
    );
}

#[tokio::test]
async fn a_callback_with_a_state_jitgate_never_issued_is_refused() {
    let s = setup("").await;
    assert_refused(
        &s.app
            .get("nobody", "/auth/callback?code=abc&state=forged")
            .await,
        StatusCode::UNAUTHORIZED,
        "state check failed",
    );
    // A genuine state is good once: replaying its callback is refused too.
    s.idp.set_groups("alice", &["engineering"]);
    let mut b = Browser::new();
    let start = b.get(&format!("{}/auth/login", s.app.base)).await;
    let back = b
        .sign_in(start, "alice", &format!("{}/auth/callback", s.app.base))
        .await;
    assert_eq!(b.get(&back.url).await.status, 200);
    let again = b.get(&back.url).await;
    assert_eq!(again.status, 401, "{}", again.body);
}

#[tokio::test]
async fn the_device_flow_signs_a_terminal_in() {
    let s = setup("").await;
    s.idp.set_groups("bob", &["engineering"]);
    let (status, d) = s
        .with_token("", reqwest::Method::POST, "/api/v1/auth/device", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    let device = d["device"].as_str().unwrap().to_owned();
    let poll = || {
        s.with_token(
            "",
            reqwest::Method::POST,
            "/api/v1/auth/device/poll",
            Some(json!({ "device": device })),
        )
    };
    let (status, p) = poll().await;
    assert_eq!(
        (status, p["status"].clone()),
        (StatusCode::OK, json!("pending"))
    );

    let mut b = Browser::new();
    let page = b
        .approve_device(
            d["verification_uri"].as_str().unwrap(),
            d["user_code"].as_str().unwrap(),
            "bob",
        )
        .await;
    assert!(page.status < 400, "{}", page.body);
    let start = std::time::Instant::now();
    let done = loop {
        let (status, p) = poll().await;
        assert_eq!(status, StatusCode::OK, "{p}");
        if p["status"] == "done" {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never done: {p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let token = done["session"]["token"].as_str().unwrap();
    let (_, me) = s
        .with_token(token, reqwest::Method::GET, "/api/v1/whoami", None)
        .await;
    assert_eq!(me["name"], "bob@example.com");
    assert_eq!(me["groups"], json!(["engineering"]));
    assert_eq!(
        s.events("auth.signed_in").await[0]["details"]["flow"],
        "device"
    );
}

#[tokio::test]
async fn sessions_end_at_logout_and_at_session_ttl_and_outlive_a_dead_provider() {
    let mut s = setup("session_ttl = \"3s\"").await;
    s.idp.set_groups("alice", &["engineering"]);
    let (_, t) = s.browser_sign_in("alice").await;
    let token = t["token"].as_str().unwrap().to_owned();
    let (status, _) = s
        .with_token(&token, reqwest::Method::POST, "/api/v1/auth/logout", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.with_token(&token, reqwest::Method::GET, "/api/v1/whoami", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.events("auth.signed_out").await.len(), 1);

    let (_, t) = s.browser_sign_in("alice").await;
    let token = t["token"].as_str().unwrap().to_owned();
    // The provider goes down: new sign-ins are refused clearly, the session goes on.
    s.idp.stop();
    assert_refused(
        &s.with_token("", reqwest::Method::POST, "/api/v1/auth/device", None)
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "cannot be reached",
    );
    assert_eq!(
        s.with_token(&token, reqwest::Method::GET, "/api/v1/whoami", None)
            .await
            .0,
        StatusCode::OK
    );
    // Until its session_ttl (3 s) has passed.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        s.with_token(&token, reqwest::Method::GET, "/api/v1/whoami", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_provider_down_from_the_start_refuses_sign_in_with_503() {
    let mut s = setup("").await;
    s.idp.stop();
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/auth/login", s.app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{v}"
    );
}

#[tokio::test]
async fn a_cli_loopback_sign_in_needs_a_local_listener_and_the_matching_verifier() {
    let s = setup("").await;
    s.idp.set_groups("alice", &["engineering"]);
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"; // SHA-256 of the RFC 7636 example
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let (status, v) = s
        .app
        .get(
            "nobody",
            &format!("/auth/login?cli=https://evil.example/x&cli_challenge={challenge}"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let back = "http://127.0.0.1:9/done";
    let mut b = Browser::new();
    let start = b
        .get(&format!(
            "{}/auth/login?cli={back}&cli_challenge={challenge}",
            s.app.base
        ))
        .await;
    assert_eq!(start.status, 303);
    let at_cli = b.sign_in(start, "alice", back).await;
    let code = at_cli.url.split("code=").nth(1).unwrap().to_owned();
    let trade = |verifier: &str| {
        let body = json!({ "code": code, "verifier": verifier });
        s.with_token(
            "",
            reqwest::Method::POST,
            "/api/v1/auth/loopback",
            Some(body),
        )
    };
    // Someone who saw the code but not the verifier gets nothing, and spends the code.
    let (status, v) = trade("not-the-verifier-not-the-verifier-not-the-verifier").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let (status, _) = trade(verifier).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a code is good once");

    // Again, with the verifier: the session.
    let start = b
        .get(&format!(
            "{}/auth/login?cli={back}&cli_challenge={challenge}",
            s.app.base
        ))
        .await;
    let at_cli = b.sign_in(start, "alice", back).await;
    let code = at_cli.url.split("code=").nth(1).unwrap().to_owned();
    let body = json!({ "code": code, "verifier": verifier });
    let (status, t) = s
        .with_token(
            "",
            reqwest::Method::POST,
            "/api/v1/auth/loopback",
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["name"], "alice@example.com");
}

/// The provider rotates its signing key (it restarts with a new one): the next sign-in's ID
/// token names a key jitgate does not have, so jitgate fetches the keys again and lets the
/// person in; sessions issued before go on.
#[tokio::test]
async fn a_provider_key_rotation_is_followed_at_the_next_sign_in() {
    let mut s = setup("").await;
    s.idp.set_groups("alice", &["engineering"]);
    let (status, first) = s.browser_sign_in("alice").await;
    assert_eq!(status, 200, "{first}");
    s.idp.restart_with_a_new_key();
    s.idp.set_groups("alice", &["engineering"]);
    let (status, second) = s.browser_sign_in("alice").await;
    assert_eq!(status, 200, "the new key was not fetched: {second}");
    assert_ne!(first["token"], second["token"]);
    let (status, _) = s
        .with_token(
            first["token"].as_str().unwrap(),
            reqwest::Method::GET,
            "/api/v1/whoami",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the earlier session goes on");
}
