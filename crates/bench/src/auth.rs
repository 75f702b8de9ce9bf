//! `jitgate-bench auth`: token exchanges per second (a workload JWT, checked against a JWKS
//! served on 127.0.0.1, traded for a session token over HTTP), and what authenticating an API
//! request costs with a session token against a static `[[principals]]` token, as a ratio in
//! the same run. The JWTs are minted (Ed25519) before the clock starts, each with its own `jti`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jitgate_core::{Clock, SystemClock};
use jitgate_identity::testing::{SigningKey, TestIssuer};
use serde_json::json;

use crate::{load, percentile, start_with};

pub async fn run(seconds: u64, concurrency: usize) -> anyhow::Result<()> {
    let issuer = TestIssuer::start().await;
    let key = SigningKey::ed25519("bench-1");
    issuer.publish(&[&key]);
    let extra = format!(
        r#"
[[identity.jwt]]
name = "ci"
issuer = "{}"
audiences = ["jitgate"]
principal = "service:{{repository}}"
bound_claims = {{ repository = "acme/*", ref = "refs/heads/main" }}
groups = ["ci"]
"#,
        issuer.url
    );
    let dir = tempfile::tempdir()?;
    let running = start_with(dir.path(), &extra).await?;
    let base = format!("http://{}", running.addr);
    let window = Duration::from_secs(seconds);

    // Enough JWTs for a generous rate over the window; each may be traded once.
    let now = SystemClock.now().as_second();
    let count = 20_000 * seconds as usize;
    eprintln!("auth: minting {count} JWTs, then {concurrency} clients for {seconds}s per phase");
    let jwts: Arc<Vec<String>> = Arc::new(
        (0..count)
            .map(|i| {
                let claims =
                    issuer.github_claims("acme/api", "refs/heads/main", now, &format!("bench-{i}"));
                key.sign(&claims)
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/api/v1/auth/token");
    let (exchange_per_s, mut lat) = {
        let (jwts, next) = (jwts.clone(), next.clone());
        load(window, concurrency, move |c| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let (url, jwt) = (url.clone(), jwts.get(i).cloned());
            async move {
                let jwt = jwt.ok_or_else(|| anyhow::anyhow!("ran out of minted JWTs"))?;
                c.post(&url)
                    .json(&json!({ "provider": "ci", "jwt": jwt }))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .await
    };
    lat.sort_by(f64::total_cmp);
    println!(
        "token exchange: {exchange_per_s:.0}/s, p50 {:.2} ms, p99 {:.2} ms (target >= 2000/s)",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0)
    );

    // One more session to authenticate with.
    let last = jwts.len() - 1;
    let issued: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/token"))
        .json(&json!({ "provider": "ci", "jwt": jwts[last] }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let session = issued["token"].as_str().unwrap_or_default().to_owned();
    let whoami = format!("{base}/api/v1/whoami");
    // Alternated, the better of two each, so drift hits both alike.
    let (mut stat, mut sess) = (0f64, 0f64);
    for _ in 0..2 {
        stat = stat.max(authenticated(window, concurrency, &whoami, "tok-alice").await);
        sess = sess.max(authenticated(window, concurrency, &whoami, &session).await);
    }
    println!(
        "authenticated GET /api/v1/whoami: static token {stat:.0}/s, session token {sess:.0}/s"
    );
    println!(
        "exchange_per_s={exchange_per_s:.0} static_per_s={stat:.0} session_per_s={sess:.0} session_cost_ratio={:.3} (target <= 1.1)",
        stat / sess
    );
    running.stop().await;
    Ok(())
}

async fn authenticated(window: Duration, concurrency: usize, url: &str, token: &str) -> f64 {
    let (url, token) = (url.to_owned(), token.to_owned());
    load(window, concurrency, move |c| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            c.get(&url)
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?;
            Ok(())
        }
    })
    .await
    .0
}
