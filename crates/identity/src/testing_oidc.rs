//! A real OpenID provider for tests (the npm package `oidc-provider` on the machine's Node,
//! installed when missing), and a browser that drives its login, consent and device pages over
//! HTTP. Built only with the `testing` feature.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("../testdata/oidc-provider.mjs");

/// `oidc-provider` listening on 127.0.0.1, with client `jitgate` (secret `test-secret`),
/// the device flow, and each account's `groups` read from a file at every sign-in.
pub struct TestProvider {
    pub issuer: String,
    pub port: u16,
    groups_file: PathBuf,
    script: PathBuf,
    redirect: String,
    child: Option<Child>,
    _dir: tempfile_dir::Dir,
}

/// A directory removed on drop (kept small: no tempfile dependency in the library).
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binds")
        .local_addr()
        .expect("addr")
        .port()
}

impl TestProvider {
    /// Starts the provider; `redirect` is jitgate's `/auth/callback` URL.
    pub fn start(redirect: &str) -> Self {
        jitgate_testkit::require_command("node", "nodejs");
        jitgate_testkit::require_command("npm", "npm");
        let modules = jitgate_testkit::require_npm_package("oidc-provider", "oidc-provider@9");
        // An ES module finds its imports in node_modules beside it, not through NODE_PATH.
        let script = modules
            .parent()
            .expect("npm prefix")
            .join("jitgate-test-oidc-provider.mjs");
        std::fs::write(&script, SCRIPT).expect("writes the provider script");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("jitgate-oidc-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let groups_file = dir.join("groups.json");
        std::fs::write(&groups_file, "{}").expect("groups file");
        let mut provider = Self {
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            groups_file,
            script,
            redirect: redirect.to_owned(),
            child: None,
            _dir: tempfile_dir::Dir(dir),
        };
        provider.spawn();
        provider
    }

    fn spawn(&mut self) {
        let child = Command::new("node")
            .arg(&self.script)
            .arg(self.port.to_string())
            .arg(&self.redirect)
            .arg(&self.groups_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "oidc-provider did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the provider and starts it again on the same address with a new signing key:
    /// what a key rotation looks like from jitgate.
    pub fn restart_with_a_new_key(&mut self) {
        self.stop();
        self.spawn();
    }

    /// What the provider will say `account`'s groups are, from its next sign-in on.
    pub fn set_groups(&self, account: &str, groups: &[&str]) {
        let mut all: HashMap<String, Vec<String>> =
            serde_json::from_str(&std::fs::read_to_string(&self.groups_file).expect("reads"))
                .expect("json");
        all.insert(
            account.into(),
            groups.iter().map(|g| (*g).to_owned()).collect(),
        );
        std::fs::write(
            &self.groups_file,
            serde_json::to_string(&all).expect("json"),
        )
        .expect("writes");
    }

    /// Stops the provider: it is down from now on.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A browser: follows redirects by hand, keeps cookies, submits the provider's forms.
pub struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

/// A page: where it was, its status, where it redirects, its body.
pub struct Page {
    pub url: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            http,
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, url: &str) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie)
        };
        let resp = req.send().await.expect("request");
        for v in resp.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap_or("").split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies
                    .insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(|l| resolve(url, l));
        let body = resp.text().await.unwrap_or_default();
        Page {
            url: url.to_owned(),
            status,
            location,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.send(req, url).await
    }

    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Page {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req, url).await
    }

    /// Follows redirects from `page` until a page that does not redirect, or one whose URL starts
    /// with `stop_at` (which is not fetched).
    pub async fn follow(&mut self, mut page: Page, stop_at: &str) -> Page {
        for _ in 0..20 {
            match page.location.clone() {
                Some(next) if next.starts_with(stop_at) => {
                    return Page {
                        url: next,
                        status: 0,
                        location: None,
                        body: String::new(),
                    };
                }
                Some(next) => page = self.get(&next).await,
                None => return page,
            }
        }
        panic!("too many redirects, last at {}", page.url)
    }

    /// Answers the provider's login and consent pages as `account` until it redirects to a URL
    /// starting with `stop_at` (returned, not fetched) or shows a page that is neither.
    pub async fn sign_in(&mut self, mut page: Page, account: &str, stop_at: &str) -> Page {
        for _ in 0..6 {
            page = self.follow(page, stop_at).await;
            if page.status == 0 {
                return page;
            }
            let prompt = if page.body.contains(r#"name="prompt" value="login""#) {
                "login"
            } else if page.body.contains(r#"name="prompt" value="consent""#) {
                "consent"
            } else {
                return page;
            };
            let action = form_action(&page).unwrap_or_else(|| page.url.clone());
            page = if prompt == "login" {
                self.post_form(
                    &action,
                    &[("prompt", "login"), ("login", account), ("password", "any")],
                )
                .await
            } else {
                self.post_form(&action, &[("prompt", "consent")]).await
            };
        }
        page
    }

    /// Enters `user_code` at the provider's device page and confirms it, then signs in.
    pub async fn approve_device(
        &mut self,
        verification_uri: &str,
        user_code: &str,
        account: &str,
    ) -> Page {
        let page = self.get(verification_uri).await;
        let xsrf = hidden(&page.body, "xsrf").expect("the device page has an xsrf field");
        let page = self
            .post_form(
                verification_uri,
                &[("xsrf", &xsrf), ("user_code", user_code)],
            )
            .await;
        let xsrf = hidden(&page.body, "xsrf").expect("the confirm page has an xsrf field");
        let page = self
            .post_form(
                verification_uri,
                &[
                    ("xsrf", &xsrf),
                    ("user_code", user_code),
                    ("confirm", "yes"),
                ],
            )
            .await;
        self.sign_in(page, account, "never:").await
    }
}

fn form_action(page: &Page) -> Option<String> {
    let at = page.body.find("action=\"")? + 8;
    let end = page.body[at..].find('"')? + at;
    Some(resolve(
        &page.url,
        &page.body[at..end].replace("&amp;", "&"),
    ))
}

fn hidden(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let at = body.find(&marker)? + marker.len();
    let end = body[at..].find('"')? + at;
    Some(body[at..end].to_owned())
}

fn resolve(base: &str, location: &str) -> String {
    reqwest::Url::parse(base)
        .and_then(|b| b.join(location))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| location.to_owned())
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
