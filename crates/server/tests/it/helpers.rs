use std::sync::Arc;
use std::time::{Duration, Instant};

use jitgate_core::SystemClock;
use jitgate_server::{Config, Running};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Principals of the test config; each one's token is `tok-NAME`.
pub const PRINCIPALS: &[(&str, &str, &[&str])] = &[
    ("alice", "user", &["engineering"]),
    ("bob", "user", &["engineering", "oncall"]),
    ("dora", "user", &["dba"]),
    ("dan", "user", &["dba"]),
    ("sam", "user", &["engineering", "sre"]),
    ("root", "user", &["security"]),
    ("audrey", "user", &["audit"]),
    ("ci-bot", "service", &["ci"]),
    ("mallory", "user", &["sales"]),
];

pub fn token(name: &str) -> String {
    format!("tok-{name}")
}

/// A config with the test principals and `extra` (resources and policies) appended.
pub fn config_text(data_dir: &std::path::Path, extra: &str) -> String {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\nadmins = [\"group:security\"]\nauditors = [\"group:audit\"]\n\n",
        data_dir.display().to_string()
    );
    for (name, kind, groups) in PRINCIPALS {
        let digest = hex::encode(Sha256::digest(token(name).as_bytes()));
        s += &format!(
            "[[principals]]\nname = \"{name}\"\nkind = \"{kind}\"\ngroups = {groups:?}\ntoken_sha256 = \"{digest}\"\n\n"
        );
    }
    s + extra
}

/// Resources and policies most tests use.
pub const STANDARD: &str = r#"
[[resources]]
name = "orders-db"
kind = "none"
[resources.roles.read]
[resources.roles.admin]
[resources.roles.deploy]

[[policies]]
name = "engineers-read-orders"
principals = ["group:engineering"]
resources = ["orders-*"]
roles = ["read"]
max_duration = "4h"
require_reason = true
pending_timeout = "1h"
[policies.approval]
approvers = ["group:dba"]
required = 1
[[policies.auto_approve]]
name = "oncall"
principals = ["group:oncall"]
max_duration = "30m"
[policies.break_glass]
principals = ["group:sre"]
max_duration = "1h"

[[policies]]
name = "admin-orders"
principals = ["group:engineering"]
resources = ["orders-db"]
roles = ["admin"]
max_duration = "1h"
ticket_pattern = "(INC|CHG)-[0-9]+"
[policies.approval]
approvers = ["group:dba"]
required = 2

[[policies]]
name = "ci-deploys"
principals = ["service:ci-bot"]
resources = ["orders-db"]
roles = ["deploy"]
max_duration = "15m"
[policies.approval]
required = 0
"#;

pub struct TestApp {
    /// Kept so the data directory lives as long as the test.
    _dir: tempfile::TempDir,
    pub config_path: std::path::PathBuf,
    pub running: Option<Running>,
    pub base: String,
    http: reqwest::Client,
}

impl TestApp {
    pub async fn start(extra: &str) -> TestApp {
        Self::start_on(0, extra).await
    }

    /// Like `start`, listening on `port` (0: any), for a caller that must know the URL first.
    pub async fn start_on(port: u16, extra: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("jitgate.toml");
        let text = config_text(&dir.path().join("data"), extra).replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        );
        std::fs::write(&config_path, text).unwrap();
        let mut app = TestApp {
            _dir: dir,
            config_path,
            running: None,
            base: String::new(),
            http: reqwest::Client::new(),
        };
        app.boot().await;
        app
    }

    /// The running server's service layer.
    pub fn app(&self) -> &jitgate_server::App {
        &self.running.as_ref().expect("the server runs").app
    }

    /// Where the running server's gateway listens.
    pub fn gateway_port(&self) -> u16 {
        let running = self.running.as_ref().expect("the server runs");
        running
            .gateway_addr
            .expect("a gateway is configured")
            .port()
    }

    pub async fn boot(&mut self) {
        let config = Config::load(&self.config_path).unwrap();
        let running = jitgate_server::start(config, Arc::new(SystemClock))
            .await
            .unwrap();
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    pub async fn call(
        &self,
        who: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token(who));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A call with `token` as it is (a session token; "" for none).
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    /// The events with this action, oldest first, as an admin sees them.
    pub async fn events_of(&self, action: &str) -> Vec<Value> {
        let (s, v) = self
            .get("root", &format!("/api/v1/audit/events?action={action}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v.as_array().unwrap().clone()
    }

    pub async fn get(&self, who: &str, path: &str) -> (StatusCode, Value) {
        self.call(who, Method::GET, path, None).await
    }

    pub async fn post(&self, who: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(who, Method::POST, path, Some(body)).await
    }

    /// Creates a request and insists it was accepted.
    pub async fn request(&self, who: &str, body: Value) -> Value {
        let (s, v) = self.post(who, "/api/v1/requests", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn read_request(&self, id: &str) -> Value {
        let (s, v) = self.get("root", &format!("/api/v1/requests/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Polls until the request reaches `state`, or fails after `within`.
    pub async fn wait_state(&self, id: &str, state: &str, within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.read_request(id).await;
            if v["state"] == state {
                return v;
            }
            assert!(
                start.elapsed() < within,
                "request {id} still {} after {within:?}, expected {state}",
                v["state"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn actions(&self, request_id: &str) -> Vec<String> {
        let (_, v) = self
            .get(
                "root",
                &format!("/api/v1/audit/events?request={request_id}"),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    }
}

pub fn read(duration: &str) -> Value {
    json!({ "resource": "orders-db", "role": "read", "duration": duration, "reason": "INC-1 look at orders" })
}

impl TestApp {
    /// The grantee's credentials for an active grant; insists they were given.
    pub async fn credentials(&self, who: &str, grant: &str) -> Value {
        let (s, c) = self
            .get(who, &format!("/api/v1/grants/{grant}/credentials"))
            .await;
        assert_eq!(s, StatusCode::OK, "{c}");
        c
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }
}

/// A TCP forwarder in front of a real service, which a test can take down and bring back up on
/// the same port: the target "goes away" without touching the real service.
pub struct Forwarder {
    pub port: u16,
    target: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Forwarder {
    pub async fn start(target: &str) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let f = Forwarder {
            port,
            target: target.to_owned(),
            tasks: Default::default(),
        };
        f.serve(listener);
        f
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Stops listening and cuts every forwarded connection.
    pub async fn down(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}

/// Asserts an error answer: its status, and a message that contains `says`.
#[track_caller]
pub fn assert_refused(answer: &(StatusCode, Value), status: StatusCode, says: &str) {
    let (got, v) = answer;
    assert_eq!(*got, status, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{message:?} should say {says:?}");
}
