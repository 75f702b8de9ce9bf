//! `jitgate login`, `logout`, and the credentials file they keep: one signed-in token per server
//! URL in `$XDG_CONFIG_HOME/jitgate/credentials.toml` (mode 0600). Client commands use it when
//! neither `--token` nor `JITGATE_TOKEN` is given.

use std::path::{Path, PathBuf};

use anyhow::Context;
use jitgate_core::{Clock, SystemClock, Timestamp};
use serde_json::{Value, json};
use toml_edit::{DocumentMut, Item, Table, value};

use crate::client::{Client, usage};

/// Where the credentials are kept: `$XDG_CONFIG_HOME/jitgate/credentials.toml`, else
/// `~/.config/jitgate/credentials.toml`.
pub fn credentials_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("jitgate").join("credentials.toml"))
}

/// The server's key in the file: its URL without a trailing slash.
fn key(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

fn read(path: &Path) -> anyhow::Result<DocumentMut> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<DocumentMut>()
            .with_context(|| format!("{} is not valid TOML", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DocumentMut::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The stored token for `url`, unless it has expired.
pub fn stored_token(url: &str) -> Option<String> {
    let doc = read(&credentials_path()?).ok()?;
    let entry = doc.get("servers")?.get(key(url))?;
    let expires: Option<Timestamp> = entry.get("expires_at")?.as_str()?.parse().ok();
    if expires.is_some_and(|t| t <= SystemClock.now()) {
        return None;
    }
    entry.get("token")?.as_str().map(str::to_owned)
}

/// Writes the file whole, readable by its owner only, through a temporary file so a crash
/// leaves the old one.
fn write(path: &Path, doc: &DocumentMut) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("the credentials path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("toml.tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(doc.to_string().as_bytes())?;
        f.sync_all()?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn store(url: &str, issued: &Value) -> anyhow::Result<PathBuf> {
    let path = credentials_path().context("neither XDG_CONFIG_HOME nor HOME is set")?;
    let mut doc = read(&path)?;
    let servers = doc
        .entry("servers")
        .or_insert(Item::Table(Table::new()))
        .as_table_mut()
        .context("`servers` in the credentials file is not a table")?;
    servers.set_implicit(true);
    let mut entry = Table::new();
    for k in ["token", "name", "session", "expires_at"] {
        if let Some(v) = issued[k].as_str() {
            entry.insert(k, value(v));
        }
    }
    servers.insert(&key(url), Item::Table(entry));
    write(&path, &doc)?;
    Ok(path)
}

fn forget(url: &str) -> anyhow::Result<bool> {
    let Some(path) = credentials_path() else {
        return Ok(false);
    };
    let mut doc = read(&path)?;
    let removed = doc
        .get_mut("servers")
        .and_then(Item::as_table_mut)
        .and_then(|t| t.remove(&key(url)))
        .is_some();
    if removed {
        write(&path, &doc)?;
    }
    Ok(removed)
}

/// `jitgate login --provider NAME`: trades the workload's JWT (from `--jwt-file`, or
/// `JITGATE_ID_TOKEN`) for a jitgate token and stores it for `url`.
pub async fn login_workload(
    url: &str,
    provider: &str,
    jwt_file: Option<&Path>,
    id_token: Option<String>,
) -> anyhow::Result<Value> {
    let jwt = match (jwt_file, id_token) {
        (Some(f), _) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read {}", f.display()))?
            .trim()
            .to_owned(),
        (None, Some(t)) => t.trim().to_owned(),
        (None, None) => {
            return Err(usage(
                "no identity token: pass --jwt-file FILE or set JITGATE_ID_TOKEN (the JWT your CI platform gives the job)",
            ));
        }
    };
    // The exchange needs no jitgate token: the JWT is the credential.
    let client = Client::anonymous(url);
    let issued = client
        .post(
            "/api/v1/auth/token",
            json!({ "provider": provider, "jwt": jwt }),
        )
        .await?;
    store(url, &issued)?;
    Ok(issued)
}

/// `jitgate logout`: ends the stored session on the server, and forgets it here either way.
pub async fn logout(url: &str) -> anyhow::Result<bool> {
    let Some(token) = stored_token(url) else {
        forget(url)?;
        return Ok(false);
    };
    let client = Client::new(url, Some(token))?;
    let ended = client.post("/api/v1/auth/logout", json!({})).await;
    forget(url)?;
    ended.map(|_| true)
}

/// `jitgate login` for people: the device flow through the server's OpenID provider. Shows the
/// verification URL and code (through `say`), waits until the person approved at the provider,
/// then stores the session token for `url`.
pub async fn login_device(url: &str, say: impl Fn(&str)) -> anyhow::Result<Value> {
    let client = Client::anonymous(url);
    let d = client.post("/api/v1/auth/device", json!({})).await?;
    let device = d["device"]
        .as_str()
        .context("the server sent no device handle")?
        .to_owned();
    let uri = d["verification_uri"].as_str().unwrap_or_default();
    let code = d["user_code"].as_str().unwrap_or_default();
    say(&format!("To sign in, open {uri} and enter the code {code}"));
    if let Some(complete) = d["verification_uri_complete"].as_str() {
        say(&format!("(or open {complete})"));
    }
    say("Waiting for you to approve it there…");
    let interval = std::time::Duration::from_secs(d["interval"].as_u64().unwrap_or(5).clamp(1, 60));
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(d["expires_in"].as_u64().unwrap_or(600));
    loop {
        let p = client
            .post("/api/v1/auth/device/poll", json!({ "device": device }))
            .await?;
        if p["status"] == "done" {
            let issued = p["session"].clone();
            store(url, &issued)?;
            return Ok(issued);
        }
        if std::time::Instant::now() > deadline {
            return Err(crate::client::Failure::Refused(
                "the code expired before it was approved; run jitgate login again".into(),
            )
            .into());
        }
        tokio::time::sleep(interval).await;
    }
}

/// `jitgate login --browser`: a browser sign-in whose end comes back to a listener on this
/// machine. The CLI makes a PKCE verifier and sends only its SHA-256; the browser brings a
/// one-time code to the listener; the CLI trades code and verifier for the session.
pub async fn login_browser(url: &str, say: impl Fn(&str)) -> anyhow::Result<Value> {
    use sha2::Digest;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1 for the browser's return")?;
    let back = format!("http://127.0.0.1:{}/done", listener.local_addr()?.port());
    let verifier = jitgate_core::ids::new_secret("pkce");
    let challenge = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        sha2::Sha256::digest(verifier.as_bytes()),
    );
    let start = format!(
        "{}/auth/login{}",
        key(url),
        crate::client::query(&[("cli", Some(back)), ("cli_challenge", Some(challenge))])
    );
    say("Open this URL in your browser to sign in:");
    say(&start);
    // Best effort: a desktop opens it; anywhere else the person copies it.
    let _ = std::process::Command::new("xdg-open")
        .arg(&start)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let code = tokio::time::timeout(
        std::time::Duration::from_secs(600),
        wait_for_code(&listener),
    )
    .await
    .map_err(|_| {
        crate::client::Failure::Refused("no sign-in came back within 10 minutes".into())
    })??;
    let issued = Client::anonymous(url)
        .post(
            "/api/v1/auth/loopback",
            json!({ "code": code, "verifier": verifier }),
        )
        .await?;
    store(url, &issued)?;
    Ok(issued)
}

/// The first request to the listener that brings `code=`; it is answered with a page saying to
/// go back to the terminal.
async fn wait_for_code(listener: &tokio::net::TcpListener) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let (mut conn, _) = listener.accept().await?;
        let mut buf = vec![0u8; 8192];
        let n = conn.read(&mut buf).await.unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head.split_whitespace().nth(1).unwrap_or("");
        let code = target
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("code=")))
            .map(str::to_owned);
        let body = if code.is_some() {
            "Signed in to jitgate. You may close this tab and go back to the terminal."
        } else {
            "This address waits for jitgate's sign-in."
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(reply.as_bytes()).await;
        if let Some(code) = code {
            return Ok(code);
        }
    }
}
