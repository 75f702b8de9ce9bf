//! Startup and login: the client's startup packet and token, the grant, the upstream
//! connection with the grant's login (trust, cleartext, MD5 or SCRAM-SHA-256), and the catalog
//! that masking and guardrails read once at login.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use jitgate_core::EventDraft;
use jitgate_core::event::Outcome;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Result, Stream, UPSTREAM_MAX};
use crate::codec::{self, Startup, tag};
use crate::masking::{self, SessionMasking};
use crate::registry::CancelTarget;
use crate::sql::functions::Functions;
use crate::{GatewayError, SessionGrant, Shared};

/// A session logged in on both sides.
pub(super) struct Ready {
    pub grant: SessionGrant,
    pub upstream: TcpStream,
    pub key: (i32, i32),
    pub target: CancelTarget,
    /// The client's startup parameters (user, database and password aside).
    pub startup: Vec<(String, String)>,
    /// The settings the server reported at login.
    pub reported: HashMap<String, String>,
}

/// Reads one startup packet.
pub(super) async fn read_startup<S: AsyncRead + Unpin>(client: &mut S) -> Result<Startup> {
    let mut head = [0u8; 4];
    client.read_exact(&mut head).await?;
    let len = codec::startup_len(head)?;
    let mut body = vec![0u8; len - 4];
    client.read_exact(&mut body).await?;
    Ok(codec::parse_startup(&body)?)
}

/// Who a refused client claimed to be.
struct Claimed<'a> {
    user: &'a str,
    database: &'a str,
    peer: SocketAddr,
}

/// Reads the startup packet, checks the token and grant, logs in upstream, and hands the client
/// the upstream's parameters under a cancel key of our own. `None`: a cancel request, or a
/// refusal already answered.
pub(super) async fn login<S: Stream>(
    client: &mut S,
    mut first: Option<Startup>,
    encrypted: bool,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Option<Ready>> {
    let params = loop {
        let packet = match first.take() {
            Some(p) => p,
            None => read_startup(client).await?,
        };
        match packet {
            // No TLS on this listener, or already inside it; no GSSAPI encryption at all.
            Startup::Ssl | Startup::GssEnc => client.write_all(b"N").await?,
            Startup::Cancel { pid, secret } => {
                forward_cancel(shared, (pid, secret)).await;
                return Ok(None);
            }
            Startup::Start { params } => break params,
        }
    };
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let user = param("user")
        .ok_or_else(|| GatewayError::Protocol("no user in the startup packet".into()))?;
    let database = param("database").unwrap_or_else(|| user.clone());
    let who = Claimed {
        user: &user,
        database: &database,
        peer,
    };
    if !encrypted && !peer.ip().is_loopback() && !shared.config.allow_plaintext_remote {
        let why = if shared.tls.is_some() {
            "jitgate requires TLS from non-loopback addresses (sslmode=require)"
        } else {
            "jitgate requires TLS from non-loopback addresses; this gateway has none configured"
        };
        refuse(client, shared, &who, "28000", why).await?;
        return Ok(None);
    }
    client
        .write_all(&codec::frame_of(tag::AUTHENTICATION, &3i32.to_be_bytes()))
        .await?; // cleartext password
    let token = read_password(client).await?;
    let grant = match shared.authority.authorize(&user, &token, &database).await {
        Ok(g) => g,
        Err(r) => {
            refuse(client, shared, &who, r.code, &r.message).await?;
            return Ok(None);
        }
    };
    let startup: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| k != "user" && k != "database")
        .collect();
    upstream_login(client, grant, startup, peer, shared).await
}

/// The startup parameters sent upstream: the client's, except `replication` (a replication
/// connection is not a session the gateway can audit), with the grant's user and database.
/// Under rules, `standard_conforming_strings` is pinned `on` unless the client set it: the
/// session then reads strings as the gateway expects, and a configuration reload cannot change
/// that under it.
fn upstream_params<'a>(
    startup: &'a [(String, String)],
    grant: &'a SessionGrant,
    pin_strings: bool,
) -> Vec<(&'a str, &'a str)> {
    let mut forwarded: Vec<(&str, &str)> = startup
        .iter()
        .filter(|(k, _)| k != "replication")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mentions_strings = startup.iter().any(|(k, v)| {
        k.contains("standard_conforming_strings") || v.contains("standard_conforming_strings")
    });
    if pin_strings && !mentions_strings {
        forwarded.push(("standard_conforming_strings", "on"));
    }
    forwarded.push(("user", &grant.upstream.user));
    forwarded.push(("database", &grant.upstream.database));
    forwarded
}

/// Connects upstream as the grant's login and authenticates.
async fn upstream_login<S: Stream>(
    client: &mut S,
    grant: SessionGrant,
    startup: Vec<(String, String)>,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Option<Ready>> {
    let addr = tokio::net::lookup_host((grant.upstream.host.as_str(), grant.upstream.port))
        .await?
        .next()
        .ok_or_else(|| GatewayError::Protocol(format!("cannot resolve {}", grant.upstream.host)))?;
    let mut upstream = match TcpStream::connect(addr).await {
        Ok(u) => u,
        Err(e) => {
            let message = format!("jitgate cannot reach {}: {e}", grant.resource);
            refused_upstream(shared, &grant, peer, "08006", &message).await;
            client
                .write_all(&codec::error_response("FATAL", "08006", &message))
                .await?;
            return Ok(None);
        }
    };
    let _ = upstream.set_nodelay(true);
    let pin = super::rules_apply(shared, &grant);
    let mut out = BytesMut::new();
    frontend::startup_message(upstream_params(&startup, &grant, pin), &mut out)?;
    upstream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut greeting = BytesMut::new();
    greeting.extend_from_slice(&codec::frame_of(tag::AUTHENTICATION, &0i32.to_be_bytes()));
    let mut scram: Option<sasl::ScramSha256> = None;
    let mut key = None;
    let mut reported = HashMap::new();
    loop {
        let (kind, frame) = read_frame(&mut upstream, &mut buf, UPSTREAM_MAX).await?;
        let body = &frame[5..];
        match kind {
            tag::AUTHENTICATION => {
                let reply = authenticate(body, &grant, &mut scram)?;
                if !reply.is_empty() {
                    upstream.write_all(&reply).await?;
                }
            }
            tag::BACKEND_KEY_DATA => {
                let (pid, secret) = (read_i32(body, 0), read_i32(body, 4));
                let target = CancelTarget { addr, pid, secret };
                let mine = shared.registry.issue_cancel_key(target);
                let mut kbody = Vec::with_capacity(8);
                kbody.extend_from_slice(&mine.0.to_be_bytes());
                kbody.extend_from_slice(&mine.1.to_be_bytes());
                greeting.extend_from_slice(&codec::frame_of(tag::BACKEND_KEY_DATA, &kbody));
                key = Some((mine, target));
            }
            tag::ERROR_RESPONSE => {
                // The upstream refused a login jitgate admitted (the login is gone, the
                // database does not exist, too many connections): on record, and the client
                // hears it as it is.
                let code = codec::error_code(body).unwrap_or_default();
                let message = codec::message_fields(body)
                    .and_then(|f| {
                        f.iter()
                            .find(|(t, _)| *t == b'M')
                            .map(|(_, m)| m.to_string())
                    })
                    .unwrap_or_default();
                refused_upstream(shared, &grant, peer, &code, &message).await;
                client.write_all(&frame).await?;
                return Ok(None);
            }
            tag::READY_FOR_QUERY => {
                greeting.extend_from_slice(&frame);
                client.write_all(&greeting).await?;
                let (key, target) = key.ok_or_else(|| {
                    GatewayError::Protocol("upstream sent no BackendKeyData".into())
                })?;
                return Ok(Some(Ready {
                    grant,
                    upstream,
                    key,
                    target,
                    startup,
                    reported,
                }));
            }
            tag::PARAMETER_STATUS => {
                if let Some((name, value)) = codec::parameter_status(body) {
                    reported.insert(name.to_owned(), value.to_owned());
                }
                greeting.extend_from_slice(&frame);
            }
            _ => greeting.extend_from_slice(&frame), // NoticeResponse, NegotiateProtocolVersion
        }
    }
}

fn read_i32(body: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(
        body.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_default(),
    )
}

/// The reply to one upstream Authentication request (empty if none is due).
fn authenticate(
    body: &[u8],
    grant: &SessionGrant,
    scram: &mut Option<sasl::ScramSha256>,
) -> Result<BytesMut> {
    let password = grant.upstream.password.as_bytes();
    let mut reply = BytesMut::new();
    match read_i32(body, 0) {
        0 => {}
        3 => frontend::password_message(password, &mut reply)?,
        5 => {
            let salt: [u8; 4] = body
                .get(4..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| GatewayError::Protocol("bad MD5 request".into()))?;
            let hash = md5_hash(grant.upstream.user.as_bytes(), password, salt);
            frontend::password_message(hash.as_bytes(), &mut reply)?;
        }
        10 => {
            let s = sasl::ScramSha256::new(password, sasl::ChannelBinding::unsupported());
            frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut reply)?;
            *scram = Some(s);
        }
        11 => {
            let s = scram
                .as_mut()
                .ok_or_else(|| GatewayError::Protocol("SASL continue before start".into()))?;
            s.update(&body[4..])?;
            frontend::sasl_response(s.message(), &mut reply)?;
        }
        12 => scram
            .as_mut()
            .ok_or_else(|| GatewayError::Protocol("SASL final before start".into()))?
            .finish(&body[4..])?,
        other => {
            return Err(GatewayError::Protocol(format!(
                "unsupported upstream authentication method {other}"
            )));
        }
    }
    Ok(reply)
}

/// Audits a login jitgate admitted that the upstream then refused, with its SQLSTATE.
async fn refused_upstream(
    shared: &Shared,
    grant: &SessionGrant,
    peer: SocketAddr,
    code: &str,
    message: &str,
) {
    let mut e = EventDraft::new(shared.clock.now(), &grant.principal, "session.refused")
        .outcome(Outcome::Denied)
        .details(json!({
            "database": grant.upstream.database, "client_addr": peer.to_string(),
            "upstream_user": grant.upstream.user, "code": code, "message": message,
            "refused_by": "upstream",
        }));
    e.resource = Some(grant.resource.clone());
    e.subject = Some(grant.principal.clone());
    e.request_id = Some(grant.request_id.clone());
    e.grant_id = Some(grant.grant_id.clone());
    let _ = shared.background.send(e).await;
}

/// Audits a refused login and tells the client why, with its SQLSTATE.
async fn refuse<S: Stream>(
    client: &mut S,
    shared: &Shared,
    who: &Claimed<'_>,
    code: &str,
    message: &str,
) -> Result<()> {
    // Before authentication the claimed name is all we have; the record says so.
    let actor = format!("{} (unauthenticated)", who.user);
    let e = EventDraft::new(shared.clock.now(), &actor, "session.refused").outcome(Outcome::Denied).details(json!({
        "user": who.user, "database": who.database, "client_addr": who.peer.to_string(), "code": code, "message": message,
    }));
    let _ = shared.background.send(e).await;
    client
        .write_all(&codec::error_response("FATAL", code, message))
        .await?;
    Ok(())
}

async fn read_password<S: Stream>(client: &mut S) -> Result<String> {
    let mut buf = BytesMut::with_capacity(256);
    let (kind, frame) = read_frame(client, &mut buf, 64 * 1024).await?;
    if kind != tag::PASSWORD {
        return Err(GatewayError::Protocol(format!(
            "expected a password message, got {:?}",
            kind as char
        )));
    }
    Ok(codec::query(&frame[5..])?.to_owned())
}

/// Reads one whole frame from `r`, keeping any bytes after it in `buf`.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(u8, BytesMut)> {
    loop {
        if let Some((kind, total)) = codec::frame(buf, max)? {
            return Ok((kind, buf.split_to(total)));
        }
        if r.read_buf(buf).await? == 0 {
            return Err(GatewayError::Protocol(
                "connection closed mid-message".into(),
            ));
        }
    }
}

/// Sends a client's CancelRequest on to the upstream backend its key stands for.
async fn forward_cancel(shared: &Shared, key: (i32, i32)) {
    if let Some(t) = shared.registry.cancel_target(key) {
        send_cancel(t).await;
    }
}

pub(super) async fn send_cancel(t: CancelTarget) {
    let mut out = BytesMut::new();
    frontend::cancel_request(t.pid, t.secret, &mut out);
    if let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(t.addr)).await
    {
        let _ = s.write_all(&out).await;
    }
}

/// What the catalog query reads, section by section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Columns,
    ViewReads,
    Inherits,
    Withheld,
    OtherFunctions,
    Builtins,
}

impl Section {
    fn sql(self) -> &'static str {
        match self {
            Section::Columns => masking::COLUMNS_SQL,
            Section::ViewReads => masking::VIEW_READS_SQL,
            Section::Inherits => masking::INHERITS_SQL,
            Section::Withheld => masking::WITHHELD_SQL,
            Section::OtherFunctions => masking::OTHER_FUNCTIONS_SQL,
            Section::Builtins => masking::BUILTIN_FUNCTIONS_SQL,
        }
    }
}

/// Reads what masking (`masking`, when its column rules need the catalog) and the guard
/// (`functions_needed`) need from the catalog, before the client's first statement; returns
/// the server's functions. The built-in function names are the same for every session of a
/// server version, so they are read once per upstream and version and shared.
pub(super) async fn load_catalog(
    upstream: &mut TcpStream,
    mut masking: Option<&mut SessionMasking>,
    builtin_key: String,
    shared: &Shared,
) -> Result<Functions> {
    let cached = shared
        .builtins
        .lock()
        .expect("builtins lock")
        .get(&builtin_key)
        .cloned();
    let mut sections = Vec::new();
    if masking.is_some() {
        sections.extend([
            Section::Columns,
            Section::ViewReads,
            Section::Inherits,
            Section::Withheld,
        ]);
    }
    sections.push(Section::OtherFunctions);
    if cached.is_none() {
        sections.push(Section::Builtins);
    }
    let sql = sections
        .iter()
        .map(|s| s.sql())
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = BytesMut::new();
    frontend::query(&sql, &mut out)?;
    upstream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut at = 0;
    let mut others = Vec::new();
    let mut builtins = HashSet::new();
    loop {
        let (kind, frame) = read_frame(upstream, &mut buf, UPSTREAM_MAX).await?;
        let body = &frame[5..];
        match kind {
            tag::COMMAND_COMPLETE => at += 1,
            tag::DATA_ROW => {
                let values = codec::data_row(body)?;
                let text = |i: usize| {
                    values
                        .get(i)
                        .cloned()
                        .flatten()
                        .and_then(|r| std::str::from_utf8(&body[r]).ok())
                };
                let number = |i: usize| text(i).and_then(|t| t.parse::<i64>().ok());
                match (sections.get(at), masking.as_deref_mut()) {
                    (Some(Section::Columns), Some(m)) => {
                        if let (Some(oid), Some(attnum), Some(s), Some(t), Some(c)) =
                            (number(0), number(1), text(2), text(3), text(4))
                        {
                            m.learn(oid as u32, attnum as i16, s, t, c);
                        }
                    }
                    (Some(Section::ViewReads), Some(m)) => {
                        if let (Some(v), Some(t), Some(a)) = (number(0), number(1), number(2)) {
                            m.learn_view_read(v as u32, t as u32, a as i16);
                        }
                    }
                    (Some(Section::Inherits), Some(m)) => {
                        if let (Some(child), Some(parent)) = (number(0), number(1)) {
                            m.catalog_mut().learn_inherits(child as u32, parent as u32);
                        }
                    }
                    (Some(Section::Withheld), Some(m)) => {
                        if let Some(oid) = number(0) {
                            m.catalog_mut().learn_withheld(oid as u32);
                        }
                    }
                    (Some(Section::OtherFunctions), _) => others.extend(text(0).map(str::to_owned)),
                    (Some(Section::Builtins), _) => {
                        builtins.extend(text(0).map(str::to_owned));
                    }
                    _ => {}
                }
            }
            tag::ERROR_RESPONSE => {
                return Err(GatewayError::Protocol(format!(
                    "the catalog query failed with SQLSTATE {}",
                    codec::error_code(body).unwrap_or_default()
                )));
            }
            tag::READY_FOR_QUERY => break,
            _ => {} // RowDescription, notices
        }
    }
    let builtin = match cached {
        Some(b) => b,
        None => {
            let b = Arc::new(builtins);
            shared
                .builtins
                .lock()
                .expect("builtins lock")
                .insert(builtin_key, b.clone());
            b
        }
    };
    let mut functions = Functions::new(builtin);
    for name in &others {
        functions.learn_other(name);
    }
    if let Some(m) = masking {
        m.catalog_mut().functions = functions.clone();
        m.catalog_read();
    }
    Ok(functions)
}
