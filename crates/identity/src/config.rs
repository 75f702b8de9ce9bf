//! `[identity.oidc]` and `[[identity.jwt]]`: the raw shape serde reads (unknown keys refused) and
//! its validation into [`IdentityConfig`]. Problems come back with their key path below
//! `identity`, so the server's config loader can name the file, line and key of each.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use glob::Pattern;
use jitgate_core::{PrincipalKind, duration};
use serde::Deserialize;

/// `[identity]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    oidc: Option<RawOidc>,
    #[serde(default)]
    jwt: Vec<RawJwt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    redirect_url: String,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default = "default_user_claim")]
    user_claim: String,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    #[serde(default)]
    allowed_groups: Vec<String>,
    #[serde(default = "default_session_ttl")]
    session_ttl: String,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "groups"]
        .map(String::from)
        .into()
}

fn default_user_claim() -> String {
    "email".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_session_ttl() -> String {
    "8h".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    name: String,
    issuer: String,
    jwks_url: Option<String>,
    audiences: Vec<String>,
    principal: String,
    #[serde(default)]
    bound_claims: BTreeMap<String, String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default = "default_max_ttl")]
    max_ttl: String,
}

fn default_max_ttl() -> String {
    "15m".into()
}

/// A validated `[identity]`.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    pub oidc: Option<OidcConfig>,
    pub jwt: Vec<JwtProvider>,
}

/// People sign in through this OpenID provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client.
    pub client_secret: Option<ClientSecret>,
    pub redirect_url: String,
    pub scopes: Vec<String>,
    pub user_claim: String,
    pub groups_claim: String,
    /// Empty: anyone the provider signs in may; else only members of one of these.
    pub allowed_groups: Vec<String>,
    pub session_ttl: Duration,
}

/// The OIDC client secret; Debug never shows it.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A workload identity provider: whose JWTs are traded for jitgate tokens, and on what terms.
#[derive(Debug, Clone)]
pub struct JwtProvider {
    pub name: String,
    pub issuer: String,
    /// `None`: found through the issuer's discovery document.
    pub jwks_url: Option<String>,
    pub audiences: Vec<String>,
    pub principal: PrincipalTemplate,
    /// Claim name and glob; every one must match.
    pub bound_claims: Vec<(String, Pattern)>,
    pub groups: Vec<String>,
    pub max_ttl: Duration,
}

/// `service:{repository}`: a principal kind and a name made from the token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalTemplate {
    pub kind: PrincipalKind,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Claim(String),
}

impl PrincipalTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, rest) = match text.split_once(':') {
            Some(("user", rest)) => (PrincipalKind::User, rest),
            Some(("service", rest)) => (PrincipalKind::Service, rest),
            _ => {
                return Err(format!(
                    "{text:?} must start with user: or service:, as in \"service:{{repository}}\""
                ));
            }
        };
        let mut parts = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("{text:?} has a {{ without its }}"))?;
                    let claim = &rest[1..end];
                    if claim.is_empty() || claim.contains('{') {
                        return Err(format!("{text:?} has an empty or nested {{claim}}"));
                    }
                    parts.push(Part::Claim(claim.to_owned()));
                    rest = &rest[end + 1..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    if rest[..end].contains('}') {
                        return Err(format!("{text:?} has a }} without its {{"));
                    }
                    parts.push(Part::Text(rest[..end].to_owned()));
                    rest = &rest[end..];
                }
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Claim(_))) {
            return Err(format!(
                "{text:?} names no claim: every token would be the same principal"
            ));
        }
        Ok(Self { kind, parts })
    }

    /// The principal's name for a token's claims: every claim named must be a string or a
    /// number, and the name may hold no control characters.
    pub fn render(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, String> {
        let mut name = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => name.push_str(t),
                Part::Claim(c) => match claims.get(c) {
                    Some(serde_json::Value::String(s)) => name.push_str(s),
                    Some(serde_json::Value::Number(n)) => name.push_str(&n.to_string()),
                    Some(_) => return Err(format!("claim {c:?} is not a string")),
                    None => return Err(format!("the token has no {c:?} claim")),
                },
            }
        }
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(format!(
                "the principal name {name:?} is empty or has control characters"
            ));
        }
        Ok(name)
    }
}

/// One step of a key path below `identity`: `jwt[0].bound_claims`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Index(usize),
}

/// What is wrong, and where.
pub type Problems = Vec<(Vec<Seg>, String)>;

/// Validates `[identity]`; relative secret files are read from `base`.
pub fn validate(raw: &RawIdentity, base: &Path) -> Result<IdentityConfig, Problems> {
    let mut problems = Problems::new();
    let oidc = raw.oidc.as_ref().map(|o| oidc(o, base, &mut problems));
    let mut names = HashSet::new();
    let jwt = raw
        .jwt
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let at = |k| vec![Seg::Key("jwt"), Seg::Index(i), Seg::Key(k)];
            if !names.insert(j.name.as_str()) {
                problems.push((
                    at("name"),
                    format!("provider {:?} is defined twice", j.name),
                ));
            }
            jwt(j, &at, &mut problems)
        })
        .collect();
    if problems.is_empty() {
        Ok(IdentityConfig { oidc, jwt })
    } else {
        Err(problems)
    }
}

fn oidc(o: &RawOidc, base: &Path, problems: &mut Problems) -> OidcConfig {
    let at = |k| vec![Seg::Key("oidc"), Seg::Key(k)];
    for (key, url) in [("issuer", &o.issuer), ("redirect_url", &o.redirect_url)] {
        if let Err(m) = check_url(url) {
            problems.push((at(key), m));
        }
    }
    if o.client_id.is_empty() {
        problems.push((at("client_id"), "must not be empty".into()));
    }
    if !o.scopes.iter().any(|s| s == "openid") {
        problems.push((at("scopes"), "must include \"openid\"".into()));
    }
    let client_secret = match (&o.client_secret_env, &o.client_secret_file) {
        (Some(_), Some(_)) => {
            problems.push((
                at("client_secret_env"),
                "give client_secret_env or client_secret_file, not both".into(),
            ));
            None
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(ClientSecret(v)),
            _ => {
                problems.push((
                    at("client_secret_env"),
                    format!("environment variable {var} is not set"),
                ));
                None
            }
        },
        (None, Some(file)) => {
            let path = if file.is_relative() {
                base.join(file)
            } else {
                file.clone()
            };
            match std::fs::read_to_string(&path) {
                Ok(v) if !v.trim().is_empty() => Some(ClientSecret(v.trim().to_owned())),
                Ok(_) => {
                    problems.push((
                        at("client_secret_file"),
                        format!("{} is empty", path.display()),
                    ));
                    None
                }
                Err(e) => {
                    problems.push((
                        at("client_secret_file"),
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    None
                }
            }
        }
        (None, None) => None,
    };
    let session_ttl = duration::parse(&o.session_ttl).unwrap_or_else(|e| {
        problems.push((at("session_ttl"), e.to_string()));
        Duration::from_secs(1)
    });
    OidcConfig {
        issuer: o.issuer.trim_end_matches('/').to_owned(),
        client_id: o.client_id.clone(),
        client_secret,
        redirect_url: o.redirect_url.clone(),
        scopes: o.scopes.clone(),
        user_claim: o.user_claim.clone(),
        groups_claim: o.groups_claim.clone(),
        allowed_groups: o.allowed_groups.clone(),
        session_ttl,
    }
}

fn jwt(j: &RawJwt, at: &dyn Fn(&'static str) -> Vec<Seg>, problems: &mut Problems) -> JwtProvider {
    if j.name.is_empty()
        || !j
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        problems.push((
            at("name"),
            format!("{:?} must be letters, digits, '-', '_' or '.'", j.name),
        ));
    }
    if let Err(m) = check_url(&j.issuer) {
        problems.push((at("issuer"), m));
    }
    if let Some(Err(m)) = j.jwks_url.as_deref().map(check_url) {
        problems.push((at("jwks_url"), m));
    }
    if j.audiences.is_empty() || j.audiences.iter().any(String::is_empty) {
        problems.push((
            at("audiences"),
            "must name at least one audience, none empty".into(),
        ));
    }
    let principal = PrincipalTemplate::parse(&j.principal).unwrap_or_else(|m| {
        problems.push((at("principal"), m));
        PrincipalTemplate {
            kind: PrincipalKind::Service,
            parts: vec![],
        }
    });
    // Without bound claims, every repository on a shared issuer (all of GitHub) would get in.
    if j.bound_claims.is_empty() {
        problems.push((
            at("bound_claims"),
            "must bind at least one claim (as repository = \"acme/*\"): the issuer signs tokens for everyone on it".into(),
        ));
    }
    let bound_claims = j
        .bound_claims
        .iter()
        .filter_map(|(claim, glob)| match Pattern::new(glob) {
            Ok(p) => Some((claim.clone(), p)),
            Err(e) => {
                problems.push((
                    at("bound_claims"),
                    format!("{claim} = {glob:?} is not a valid glob: {e}"),
                ));
                None
            }
        })
        .collect();
    let max_ttl = duration::parse(&j.max_ttl).unwrap_or_else(|e| {
        problems.push((at("max_ttl"), e.to_string()));
        Duration::from_secs(1)
    });
    JwtProvider {
        name: j.name.clone(),
        issuer: j.issuer.clone(),
        jwks_url: j.jwks_url.clone(),
        audiences: j.audiences.clone(),
        principal,
        bound_claims,
        groups: j.groups.clone(),
        max_ttl,
    }
}

/// Keys and tokens are fetched over HTTPS only; plain HTTP only on this machine (tests, a
/// provider behind a local proxy).
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let local = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if local => Ok(()),
        _ => Err(format!(
            "{url:?} must be an https:// URL (http:// only on 127.0.0.1 or localhost)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<IdentityConfig, Problems> {
        #[derive(Deserialize)]
        struct Top {
            identity: RawIdentity,
        }
        let top: Top = toml::from_str(text).map_err(|e| vec![(vec![], e.to_string())])?;
        validate(&top.identity, Path::new("."))
    }

    const GITHUB: &str = r#"
[[identity.jwt]]
name = "github-actions"
issuer = "https://token.actions.githubusercontent.com"
audiences = ["jitgate"]
principal = "service:{repository}"
bound_claims = { repository = "acme/*", ref = "refs/heads/main" }
groups = ["ci"]
max_ttl = "15m"
"#;

    #[test]
    fn the_issue_example_validates() {
        let c = parse(GITHUB).unwrap();
        let p = &c.jwt[0];
        assert_eq!(p.max_ttl, Duration::from_secs(900));
        assert_eq!(p.principal.kind, PrincipalKind::Service);
        assert_eq!(p.bound_claims.len(), 2);
        assert!(p.jwks_url.is_none());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse(&GITHUB.replace("groups = [\"ci\"]", "group = [\"ci\"]")).unwrap_err();
        assert!(e[0].1.contains("unknown field `group`"), "{e:?}");
    }

    #[test]
    fn unbound_providers_plain_http_and_bad_templates_are_refused() {
        let text = GITHUB
            .replace(
                "bound_claims = { repository = \"acme/*\", ref = \"refs/heads/main\" }\n",
                "",
            )
            .replace("https://token", "http://token")
            .replace("service:{repository}", "service:{repository");
        let e = parse(&text).unwrap_err();
        let keys: Vec<_> = e.iter().map(|(p, _)| p[2].clone()).collect();
        assert_eq!(
            keys,
            [
                Seg::Key("issuer"),
                Seg::Key("principal"),
                Seg::Key("bound_claims")
            ],
            "{e:?}"
        );
    }

    #[test]
    fn templates_render_claims() {
        let t = PrincipalTemplate::parse("service:gl-{project_path}").unwrap();
        let claims = serde_json::json!({"project_path": "acme/api"});
        assert_eq!(
            t.render(claims.as_object().unwrap()).unwrap(),
            "gl-acme/api"
        );
        assert!(
            t.render(&Default::default())
                .unwrap_err()
                .contains("project_path")
        );
        assert!(PrincipalTemplate::parse("bot:{x}").is_err());
        assert!(PrincipalTemplate::parse("service:fixed").is_err());
    }
}
