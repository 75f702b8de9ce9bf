//! The HTTP client behind the client subcommands.

use anyhow::anyhow;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Why a client command failed, which decides its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The server refused or could not do it (exit 1).
    Refused(String),
    /// The command was used wrongly (exit 2).
    Usage(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(m) | Failure::Usage(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client with `token`, else the token `jitgate login` stored for `url`.
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let token = token
            .filter(|t| !t.is_empty())
            .or_else(|| crate::login::stored_token(url))
            .ok_or_else(|| {
                Failure::Usage("no API token: pass --token, set JITGATE_TOKEN, or sign in with `jitgate login` (`jitgate demo` prints demo tokens)".into())
            })?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        })
    }

    /// A client without a token, for the calls that sign in.
    pub fn anonymous(url: &str) -> Self {
        Self {
            base: url.trim_end_matches('/').to_owned(),
            token: String::new(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let text = self.send(method, path, body).await?.text().await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Sends a request and returns the response if it succeeded, its error as a [`Failure`] if not.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            Failure::Refused(format!(
                "cannot reach jitgate at {}: {}",
                self.base,
                root_cause(&e)
            ))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("HTTP {status}: {value}"));
        Err(match status {
            StatusCode::BAD_REQUEST => Failure::Usage(message),
            _ => Failure::Refused(message),
        }
        .into())
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Percent-encodes a query value.
pub fn enc(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Builds `?k=v&...` from the pairs that have a value.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow!(Failure::Usage(message.into()))
}
