//! `jitgate login` for workloads end to end: a JWT from a test issuer (its JWKS served on
//! 127.0.0.1), traded by the real CLI against a real server process, kept in the credentials
//! file, used by later commands, and signed out.

use std::path::Path;
use std::process::{Command, Output};

use jitgate_core::{Clock, SystemClock};
use jitgate_identity::testing::{SigningKey, TestIssuer};
use serde_json::Value;

mod common;

use common::*;

/// Runs the CLI with no token of its own: only what `jitgate login` stored.
fn cli(url: &str, config_home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("JITGATE_URL", url)
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("JITGATE_TOKEN")
        .env_remove("JITGATE_ID_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_ci_job_logs_in_with_its_jwt_uses_the_stored_token_and_logs_out() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let issuer = rt.block_on(TestIssuer::start());
    let key = SigningKey::rsa("gh-1");
    issuer.publish(&[&key]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        r#"
[[identity.jwt]]
name = "github-actions"
issuer = "{}"
audiences = ["jitgate"]
principal = "service:{{repository}}"
bound_claims = {{ repository = "acme/*" }}
groups = ["deployers"]

[[policies]]
name = "deployers"
principals = ["group:deployers"]
resources = ["orders-db"]
roles = ["deploy"]
max_duration = "10m"
[policies.approval]
required = 0
"#,
        issuer.url
    );
    let s = Server::start(&config_with(dir.path(), port, &extra), port);
    let home = dir.path().join("home");
    let now = SystemClock.now().as_second();
    let jwt = key.sign(&issuer.github_claims("acme/api", "refs/heads/main", now, "run-1"));
    let jwt_file = dir.path().join("id-token");
    std::fs::write(&jwt_file, &jwt).unwrap();

    let login = ["login", "--provider", "github-actions", "--jwt-file"];
    let mut args = login.to_vec();
    args.extend([jwt_file.to_str().unwrap(), "-o", "json"]);
    let t = json(&cli(&s.url, &home, &args, &[]));
    assert_eq!(t["name"], "acme/api");
    assert!(
        t.get("token").is_none(),
        "the token is stored, not printed: {t}"
    );

    let file = home.join("jitgate").join("credentials.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("[servers.\"{}\"]", s.url)), "{text}");
    assert!(text.contains("token = \"jgs_"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // Later commands use the stored token.
    let me = json(&cli(&s.url, &home, &["whoami", "-o", "json"], &[]));
    assert_eq!(me["source"], "jwt:github-actions");
    assert_eq!(me["groups"], serde_json::json!(["deployers"]));
    let args = [
        "request",
        "create",
        "--resource",
        "orders-db",
        "--role",
        "deploy",
        "--duration",
        "5m",
        "-o",
        "json",
    ];
    let r = json(&cli(&s.url, &home, &args, &[]));
    assert_eq!(r["principal"], "acme/api");

    // The same JWT again is a replay: refused, exit 1, saying why.
    let mut args = login.to_vec();
    args.push(jwt_file.to_str().unwrap());
    let out = cli(&s.url, &home, &args, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already used"));

    // From the environment, as CI platforms hand it over.
    let jwt2 = key.sign(&issuer.github_claims("acme/web", "refs/heads/main", now, "run-2"));
    let args = ["login", "--provider", "github-actions", "-o", "json"];
    let t = json(&cli(&s.url, &home, &args, &[("JITGATE_ID_TOKEN", &jwt2)]));
    assert_eq!(t["name"], "acme/web");

    let out = cli(&s.url, &home, &["logout"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&s.url, &home, &["whoami"], &[]);
    assert_eq!(out.status.code(), Some(2), "no token is left");
    let events = s.json("root", &["audit", "search", "--action", "auth.*"]);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "auth.token_issued",
            "auth.refused",
            "auth.token_issued",
            "auth.signed_out"
        ]
    );
}

/// A server process with `[identity.oidc]` on a fresh oidc-provider, where dora is in dba and oncall.
fn with_provider() -> (
    tempfile::TempDir,
    jitgate_identity::testing_oidc::TestProvider,
    Server,
) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let idp = jitgate_identity::testing_oidc::TestProvider::start(&format!(
        "http://127.0.0.1:{port}/auth/callback"
    ));
    idp.set_groups("dora", &["dba", "oncall"]);
    std::fs::write(dir.path().join("oidc-secret"), "test-secret").unwrap();
    let extra = format!(
        "\n[identity.oidc]\nissuer = \"{}\"\nclient_id = \"jitgate\"\nclient_secret_file = \"oidc-secret\"\nredirect_url = \"http://127.0.0.1:{port}/auth/callback\"\n",
        idp.issuer
    );
    let s = Server::start(&config_with(dir.path(), port, &extra), port);
    (dir, idp, s)
}

/// Runs `jitgate login ARGS` as a person would, `drive` playing the browser with the first two
/// lines it printed; returns what it printed after them.
fn person_login(
    s: &Server,
    home: &Path,
    args: &[&str],
    drive: impl FnOnce(&str, &str),
) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .arg("login")
        .args(args)
        .env("JITGATE_URL", &s.url)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("JITGATE_TOKEN")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    drive(&first, &second);
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{rest:?}");
    rest
}

fn assert_dora(s: &Server, home: &Path) {
    let me = json(&cli(&s.url, home, &["whoami", "-o", "json"], &[]));
    assert_eq!(me["name"], "dora@example.com");
    assert_eq!(me["groups"], serde_json::json!(["dba", "oncall"]));
    assert!(me["source"].as_str().unwrap().starts_with("oidc:"));
    assert!(me["expires_at"].is_string());
}

#[test]
fn a_person_logs_in_with_the_device_flow_and_whoami_shows_their_provider_groups() {
    use jitgate_identity::testing_oidc::Browser;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, _idp, s) = with_provider();
    let home = dir.path().join("home");
    let rest = person_login(&s, &home, &[], |first, _| {
        // "To sign in, open URI and enter the code CODE"
        assert!(first.starts_with("To sign in, open "), "{first}");
        let words: Vec<&str> = first.split_whitespace().collect();
        let (uri, code) = (words[4], words[words.len() - 1]);
        let page = rt.block_on(async { Browser::new().approve_device(uri, code, "dora").await });
        assert!(page.status < 400, "{}", page.body);
    });
    assert!(
        rest.iter().any(|l| l.contains("dora@example.com")),
        "{rest:?}"
    );
    assert_dora(&s, &home);
}

#[test]
fn a_person_logs_in_with_a_browser_that_comes_back_to_the_cli() {
    use jitgate_identity::testing_oidc::Browser;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, _idp, s) = with_provider();
    let home = dir.path().join("home");
    person_login(&s, &home, &["--browser"], |first, url| {
        assert!(first.starts_with("Open this URL"), "{first}");
        let back = reqwest::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "cli")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        rt.block_on(async {
            let mut b = Browser::new();
            let start = b.get(url).await;
            let at_cli = b.sign_in(start, "dora", &back).await;
            assert_eq!(at_cli.status, 0, "{}", at_cli.body);
            assert!(at_cli.url.contains("code=jgc_"), "{}", at_cli.url);
            let page = b.get(&at_cli.url).await;
            assert!(page.body.contains("Signed in"), "{}", page.body);
        });
    });
    assert_dora(&s, &home);
}
