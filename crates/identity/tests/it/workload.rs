use jitgate_core::{PrincipalKind, Timestamp};
use jitgate_identity::config::{self, RawIdentity};
use jitgate_identity::testing::{SigningKey, TestIssuer, hs256, tampered, unsigned};
use jitgate_identity::{Check, IdentityError, Workload};
use serde_json::{Value, json};

const NOW: i64 = 1_790_000_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

/// Providers for GitHub- and GitLab-shaped tokens, both from `issuer`; GitLab's by its JWKS
/// address, GitHub's through discovery.
fn workload(issuer: &TestIssuer) -> Workload {
    let text = format!(
        r#"
[[jwt]]
name = "github-actions"
issuer = "{url}"
audiences = ["jitgate"]
principal = "service:{{repository}}"
bound_claims = {{ repository = "acme/*", ref = "refs/heads/main" }}
groups = ["ci"]
max_ttl = "2m"

[[jwt]]
name = "gitlab"
issuer = "{url}"
jwks_url = "{url}/jwks"
audiences = ["jitgate"]
principal = "service:gitlab-{{project_path}}"
bound_claims = {{ namespace_path = "acme", ref_type = "branch" }}
max_ttl = "1h"
"#,
        url = issuer.url
    );
    let raw: RawIdentity = toml::from_str(&text).unwrap();
    let c = config::validate(&raw, std::path::Path::new(".")).unwrap();
    Workload::new(&c.jwt)
}

async fn setup() -> (TestIssuer, SigningKey, Workload) {
    let issuer = TestIssuer::start().await;
    let key = SigningKey::rsa("gh-1");
    issuer.publish(&[&key]);
    let w = workload(&issuer);
    (issuer, key, w)
}

#[track_caller]
fn refused(r: Result<jitgate_identity::Verified, IdentityError>, check: Check, says: &str) {
    match r {
        Err(e @ IdentityError::Refused { .. }) => {
            assert_eq!(e.check(), Some(check), "{e}");
            assert!(e.to_string().contains(says), "{e} should say {says:?}");
        }
        other => panic!("expected a refusal by {check}, got {other:?}"),
    }
}

#[tokio::test]
async fn github_and_gitlab_shaped_tokens_become_short_lived_principals() {
    let (issuer, key, w) = setup().await;
    let jwt = key.sign(&issuer.github_claims("acme/api", "refs/heads/main", NOW, "j1"));
    let v = w.verify("github-actions", &jwt, at(NOW + 5)).await.unwrap();
    assert_eq!(v.principal.name, "acme/api");
    assert_eq!(v.principal.kind, PrincipalKind::Service);
    assert_eq!(v.principal.groups, ["ci"]);
    // max_ttl (2m) ends before the JWT's exp (5m).
    assert_eq!(v.expires_at, at(NOW + 5 + 120));
    assert_eq!(v.jwt_expires_at, at(NOW + 300));
    assert_eq!(v.claims["run_id"], "7345123456");
    assert_eq!(v.claims["sha"], "4f1e0c3b9a7d2e6f8c5b1a0d9e8f7c6b5a4d3e2f");
    assert!(
        !v.claims.contains_key("iat"),
        "only identifying claims are kept"
    );

    let es = SigningKey::es256("gl-1");
    issuer.publish(&[&key, &es]);
    let jwt = es.sign(&issuer.gitlab_claims("acme/billing", "main", NOW, "j2"));
    let v = w.verify("gitlab", &jwt, at(NOW)).await.unwrap();
    assert_eq!(v.principal.name, "gitlab-acme/billing");
    // The JWT's exp (5m) ends before max_ttl (1h).
    assert_eq!(v.expires_at, at(NOW + 300));
    assert_eq!(v.claims["pipeline_id"], "1001");
}

#[tokio::test]
async fn unsigned_and_shared_secret_tokens_are_refused_by_algorithm() {
    let (issuer, key, w) = setup().await;
    let claims = issuer.github_claims("acme/api", "refs/heads/main", NOW, "j1");
    refused(
        w.verify("github-actions", &unsigned(&claims), at(NOW))
            .await,
        Check::Algorithm,
        "alg \"none\"",
    );
    // The classic confusion attack: the provider's public key used as an HMAC secret.
    let public = serde_json::to_vec(&key.jwk).unwrap();
    let jwt = hs256("gh-1", &public, &claims);
    refused(
        w.verify("github-actions", &jwt, at(NOW)).await,
        Check::Algorithm,
        "HS256",
    );
}

#[tokio::test]
async fn a_forged_signature_is_refused() {
    let issuer = TestIssuer::start().await;
    let real = SigningKey::ed25519("k1");
    issuer.publish(&[&real]);
    let w = workload(&issuer);
    let forger = SigningKey::ed25519("k1"); // same kid, another key
    let jwt = forger.sign(&issuer.github_claims("acme/api", "refs/heads/main", NOW, "j1"));
    refused(
        w.verify("github-actions", &jwt, at(NOW)).await,
        Check::Signature,
        "does not verify",
    );
    // Tampering with a genuine token's claims breaks its signature too.
    let good = real.sign(&issuer.github_claims("acme/api", "refs/heads/main", NOW, "j1"));
    let evil = issuer.github_claims("acme/admin", "refs/heads/main", NOW, "j1");
    let forged = tampered(&good, &evil);
    refused(
        w.verify("github-actions", &forged, at(NOW)).await,
        Check::Signature,
        "does not verify",
    );
    assert!(w.verify("github-actions", &good, at(NOW)).await.is_ok());
}

#[tokio::test]
async fn issuer_audience_time_jti_and_bound_claims_are_each_checked() {
    let (issuer, key, w) = setup().await;
    let base = issuer.github_claims("acme/api", "refs/heads/main", NOW, "j1");
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        key.sign(&c)
    };
    let check = |jwt: String, now: i64| {
        let w = &w;
        async move { w.verify("github-actions", &jwt, at(now)).await }
    };
    refused(
        check(with("aud", json!("someone-else")), NOW).await,
        Check::Audience,
        "someone-else",
    );
    refused(
        check(with("iss", json!("https://evil.example")), NOW).await,
        Check::Issuer,
        "evil.example",
    );
    // Expired. (The 60 s of skew cannot lengthen a token's life: it ends at the JWT's exp.)
    assert!(check(key.sign(&base), NOW + 299).await.is_ok());
    refused(
        check(key.sign(&base), NOW + 300).await,
        Check::Expiry,
        "expired",
    );
    refused(
        check(key.sign(&base), NOW + 300 + 61).await,
        Check::Expiry,
        "expired",
    );
    refused(
        check(with("exp", Value::Null), NOW).await,
        Check::Expiry,
        "no exp",
    );
    refused(
        check(with("nbf", json!(NOW + 120)), NOW).await,
        Check::NotBefore,
        "not valid before",
    );
    assert!(check(with("nbf", json!(NOW + 50)), NOW).await.is_ok());
    refused(
        check(with("jti", Value::Null), NOW).await,
        Check::Jti,
        "no jti",
    );
    refused(
        check(with("ref", json!("refs/heads/feature")), NOW).await,
        Check::BoundClaims,
        "claim ref is \"refs/heads/feature\", which does not match \"refs/heads/main\"",
    );
    refused(
        check(with("repository", json!("evil/api")), NOW).await,
        Check::BoundClaims,
        "acme/*",
    );
    refused(
        check(with("repository", Value::Null), NOW).await,
        Check::BoundClaims,
        "missing",
    );
    refused(
        w.verify("nope", &key.sign(&base), at(NOW)).await,
        Check::Provider,
        "\"nope\"",
    );
    refused(
        w.verify("github-actions", "not.a-jwt", at(NOW)).await,
        Check::Format,
        "three",
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_keys_at_most_once_a_minute() {
    let (issuer, old, w) = setup().await;
    let claims = issuer.github_claims("acme/api", "refs/heads/main", NOW, "j1");
    assert!(
        w.verify("github-actions", &old.sign(&claims), at(NOW))
            .await
            .is_ok()
    );
    assert_eq!(issuer.fetches(), 1);

    // The provider rotates: a token with the new kid makes jitgate fetch the keys again.
    let new = SigningKey::es256("gh-2");
    issuer.publish(&[&new]);
    let t = NOW + 61;
    assert!(
        w.verify("github-actions", &new.sign(&claims), at(t))
            .await
            .is_ok()
    );
    assert_eq!(issuer.fetches(), 2);
    // The old key is gone from the set: its tokens no longer verify.
    refused(
        w.verify("github-actions", &old.sign(&claims), at(t)).await,
        Check::Key,
        "less than a minute",
    );

    // Made-up kids within the minute cost the provider nothing.
    let stranger = SigningKey::es256("made-up");
    for _ in 0..5 {
        refused(
            w.verify("github-actions", &stranger.sign(&claims), at(t + 30))
                .await,
            Check::Key,
            "made-up",
        );
    }
    assert_eq!(issuer.fetches(), 2);
    // A minute later, one more fetch.
    refused(
        w.verify("github-actions", &stranger.sign(&claims), at(t + 61))
            .await,
        Check::Key,
        "made-up",
    );
    assert_eq!(issuer.fetches(), 3);
}

#[tokio::test]
async fn a_provider_that_is_down_refuses_new_sign_ins_clearly() {
    let (issuer, key, w) = setup().await;
    issuer.set_down(true);
    let jwt = key.sign(&issuer.github_claims("acme/api", "refs/heads/main", NOW, "j1"));
    let e = w.verify("github-actions", &jwt, at(NOW)).await.unwrap_err();
    assert!(matches!(e, IdentityError::Unavailable { .. }), "{e:?}");
    assert!(
        e.to_string().contains("github-actions cannot be reached"),
        "{e}"
    );
    // Back up: after the minute, keys are fetched and the token is good.
    issuer.set_down(false);
    assert!(w.verify("github-actions", &jwt, at(NOW + 60)).await.is_ok());
}
