//! One client session: startup and login, the upstream connection, then the relay loop that
//! audits statements and ends the session at its grant's deadline.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use jitgate_core::event::Outcome;
use jitgate_core::{EventDraft, duration, ids};
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::codec::{self, Field, Startup};
use crate::guard::{Blocked, Memo, SessionGuard};
use crate::masking::{CopyPlan, Counts, Planned, SessionMasking, Shape};
use crate::registry::{CancelTarget, Control};
use crate::{AuditMode, GatewayError, SessionGrant, Shared};

/// Startup and login must finish within this.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);
const UPSTREAM_MAX: usize = 1 << 30;
/// Outcomes are written in batches of at most this many, and at most this late.
const RESULTS_BATCH: usize = 256;
const RESULTS_EVERY: Duration = Duration::from_secs(1);

type Result<T> = std::result::Result<T, GatewayError>;

/// A client connection: plain TCP or TLS.
pub(crate) trait Stream: AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Serves one client connection: TLS if the client asks for it and the gateway has a
/// certificate, then login and relay.
pub(crate) async fn serve(mut tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let first = match tokio::time::timeout(LOGIN_TIMEOUT, read_startup(&mut tcp)).await {
        Ok(Ok(first)) => first,
        Ok(Err(e)) => return invalid_startup(&mut tcp, peer, &e).await,
        Err(_) => return,
    };
    match (&first, &shared.tls) {
        (Startup::Ssl, Some(acceptor)) => {
            if tcp.write_all(b"S").await.is_err() {
                return;
            }
            match tokio::time::timeout(LOGIN_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => handle(tls, None, true, peer, shared).await,
                _ => tracing::debug!(%peer, "TLS handshake failed"),
            }
        }
        _ => handle(tcp, Some(first), false, peer, shared).await,
    }
}

/// Tells a client its startup or login broke the protocol, and gives up on it.
async fn invalid_startup<S: Stream>(client: &mut S, peer: SocketAddr, e: &GatewayError) {
    tracing::debug!(%peer, error = %e, "gateway startup failed");
    let _ = client
        .write_all(&codec::error_response(
            "FATAL",
            "08P01",
            &format!("invalid startup: {e}"),
        ))
        .await;
}

/// Reads one startup packet.
async fn read_startup<S: AsyncRead + Unpin>(client: &mut S) -> Result<Startup> {
    let mut head = [0u8; 4];
    client.read_exact(&mut head).await?;
    let len = codec::startup_len(head)?;
    let mut body = vec![0u8; len - 4];
    client.read_exact(&mut body).await?;
    Ok(codec::parse_startup(&body)?)
}

async fn handle<S: Stream>(
    mut client: S,
    first: Option<Startup>,
    encrypted: bool,
    peer: SocketAddr,
    shared: Arc<Shared>,
) {
    let login = tokio::time::timeout(
        LOGIN_TIMEOUT,
        login(&mut client, first, encrypted, peer, &shared),
    )
    .await;
    let (grant, upstream, key, target, app) = match login {
        Ok(Ok(Some(ready))) => ready,
        Ok(Ok(None)) => return, // a cancel request, or a refusal already answered
        Ok(Err(e)) => return invalid_startup(&mut client, peer, &e).await,
        Err(_) => {
            let _ = client
                .write_all(&codec::error_response("FATAL", "08P01", "login timed out"))
                .await;
            return;
        }
    };
    let session_id = ids::new_id("ses");
    let (reg_id, control) = shared.registry.register(&grant.grant_id, grant.expires_at);
    let mut s = Session::new(&shared, &grant, &session_id);
    s.guard = SessionGuard::for_session(&shared.config.guardrails, &grant.resource, &grant.role);
    s.masking = SessionMasking::for_session(
        &shared.config.masking,
        &grant.resource,
        &grant.role,
        shared.masker.clone(),
    );
    let mut upstream = upstream;
    if let Some(m) = s.masking.as_mut().filter(|m| m.needs_catalog()) {
        // Without the catalog no column can be judged: refuse rather than pass data unmasked.
        if let Err(e) = load_catalog(&mut upstream, m).await {
            tracing::warn!(error = %e, "masking: cannot read the catalog");
            let _ = client
                .write_all(&codec::error_response(
                    "FATAL",
                    "58000",
                    &format!("jitgate cannot read the catalog that masking needs ({e})"),
                ))
                .await;
            shared.registry.unregister(&grant.grant_id, reg_id);
            shared.registry.forget_cancel_key(key);
            return;
        }
    }
    let opened = s.event("session.opened").details(json!({ "client_addr": peer.to_string(), "application_name": app, "upstream_user": grant.upstream.user }));
    let outcome = match shared
        .authority
        .record(vec![opened], shared.config.audit)
        .await
    {
        Ok(()) => s.relay(client, upstream, control, target).await,
        Err(e) => {
            let _ = client
                .write_all(&codec::error_response(
                    "FATAL",
                    "58000",
                    &format!("the audit log cannot be written; refusing unaudited access ({e})"),
                ))
                .await;
            Err(GatewayError::Protocol("audit unavailable".into()))
        }
    };
    s.flush_results().await;
    shared.registry.unregister(&grant.grant_id, reg_id);
    shared.registry.forget_cancel_key(key);
    let reason = match &outcome {
        Ok(reason) => reason.clone(),
        Err(e) => format!("error: {e}"),
    };
    let closed = s.event("session.closed").details(json!({
        "reason": reason, "bytes_in": s.bytes_in, "bytes_out": s.bytes_out, "statements": s.statements,
        "duration_ms": s.opened.elapsed().as_millis() as u64,
    }));
    let _ = shared.background.send(closed).await;
}

type Ready = (
    SessionGrant,
    TcpStream,
    (i32, i32),
    CancelTarget,
    Option<String>,
);

/// Reads the startup packet, checks the token and grant, logs in upstream, and hands the client
/// the upstream's parameters under a cancel key of our own.
async fn login<S: Stream>(
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
        .write_all(&codec::frame_of(b'R', &3i32.to_be_bytes()))
        .await?; // cleartext password
    let token = read_password(client).await?;
    let grant = match shared.authority.authorize(&user, &token, &database).await {
        Ok(g) => g,
        Err(r) => {
            refuse(client, shared, &who, r.code, &r.message).await?;
            return Ok(None);
        }
    };
    let addr = tokio::net::lookup_host((grant.upstream.host.as_str(), grant.upstream.port))
        .await?
        .next()
        .ok_or_else(|| GatewayError::Protocol(format!("cannot resolve {}", grant.upstream.host)))?;
    let mut upstream = match TcpStream::connect(addr).await {
        Ok(u) => u,
        Err(e) => {
            client
                .write_all(&codec::error_response(
                    "FATAL",
                    "08006",
                    &format!("jitgate cannot reach {}: {e}", grant.resource),
                ))
                .await?;
            return Ok(None);
        }
    };
    let _ = upstream.set_nodelay(true);
    let mut forwarded: Vec<(&str, &str)> = params
        .iter()
        // `replication` would turn the session into a replication connection the gateway cannot
        // audit; user and database are the grant's.
        .filter(|(k, _)| k != "user" && k != "database" && k != "replication")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    forwarded.push(("user", &grant.upstream.user));
    forwarded.push(("database", &grant.upstream.database));
    let mut out = BytesMut::new();
    frontend::startup_message(forwarded.iter().copied(), &mut out)?;
    upstream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut greeting = BytesMut::new();
    greeting.extend_from_slice(&codec::frame_of(b'R', &0i32.to_be_bytes()));
    let mut scram: Option<sasl::ScramSha256> = None;
    let mut key = None;
    loop {
        let (kind, frame) = read_frame(&mut upstream, &mut buf, UPSTREAM_MAX).await?;
        let body = &frame[5..];
        match kind {
            b'R' => {
                let code = i32::from_be_bytes(
                    body.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or_default(),
                );
                let mut reply = BytesMut::new();
                match code {
                    0 => {}
                    3 => {
                        frontend::password_message(grant.upstream.password.as_bytes(), &mut reply)?
                    }
                    5 => {
                        let salt: [u8; 4] = body
                            .get(4..8)
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(|| GatewayError::Protocol("bad MD5 request".into()))?;
                        let hash = md5_hash(
                            grant.upstream.user.as_bytes(),
                            grant.upstream.password.as_bytes(),
                            salt,
                        );
                        frontend::password_message(hash.as_bytes(), &mut reply)?;
                    }
                    10 => {
                        let s = sasl::ScramSha256::new(
                            grant.upstream.password.as_bytes(),
                            sasl::ChannelBinding::unsupported(),
                        );
                        frontend::sasl_initial_response(
                            sasl::SCRAM_SHA_256,
                            s.message(),
                            &mut reply,
                        )?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            GatewayError::Protocol("SASL continue before start".into())
                        })?;
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
                if !reply.is_empty() {
                    upstream.write_all(&reply).await?;
                }
            }
            b'K' => {
                let pid = i32::from_be_bytes(
                    body.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or_default(),
                );
                let secret = i32::from_be_bytes(
                    body.get(4..8)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or_default(),
                );
                let target = CancelTarget { addr, pid, secret };
                let mine = shared.registry.issue_cancel_key(target);
                let mut kbody = Vec::with_capacity(8);
                kbody.extend_from_slice(&mine.0.to_be_bytes());
                kbody.extend_from_slice(&mine.1.to_be_bytes());
                greeting.extend_from_slice(&codec::frame_of(b'K', &kbody));
                key = Some((mine, target));
            }
            b'E' => {
                // The upstream refused (e.g. the login is gone): the client hears it as it is.
                client.write_all(&frame).await?;
                return Ok(None);
            }
            b'Z' => {
                greeting.extend_from_slice(&frame);
                client.write_all(&greeting).await?;
                let (key, target) = key.ok_or_else(|| {
                    GatewayError::Protocol("upstream sent no BackendKeyData".into())
                })?;
                return Ok(Some((
                    grant,
                    upstream,
                    key,
                    target,
                    param("application_name"),
                )));
            }
            _ => greeting.extend_from_slice(&frame), // ParameterStatus, NoticeResponse
        }
    }
}

/// Reads every user column's identity from the upstream, before the client's first statement.
async fn load_catalog(upstream: &mut TcpStream, m: &mut SessionMasking) -> Result<()> {
    let mut out = BytesMut::new();
    frontend::query(crate::masking::CATALOG_SQL, &mut out)?;
    upstream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Which of the two queries' rows are arriving.
    let mut second = false;
    loop {
        let (kind, frame) = read_frame(upstream, &mut buf, UPSTREAM_MAX).await?;
        let body = &frame[5..];
        match kind {
            b'C' => second = true,
            b'D' => {
                let values = codec::data_row(body)?;
                let text = |i: usize| {
                    values
                        .get(i)
                        .cloned()
                        .flatten()
                        .and_then(|r| std::str::from_utf8(&body[r]).ok())
                };
                let number = |i: usize| text(i).and_then(|t| t.parse::<i64>().ok());
                if second {
                    if let (Some(view), Some(table), Some(attnum)) =
                        (number(0), number(1), number(2))
                    {
                        m.learn_view_read(view as u32, table as u32, attnum as i16);
                    }
                } else if let (Some(oid), Some(attnum), Some(schema), Some(table), Some(column)) =
                    (number(0), number(1), text(2), text(3), text(4))
                {
                    m.learn(oid as u32, attnum as i16, schema, table, column);
                }
            }
            b'E' => {
                return Err(GatewayError::Protocol(format!(
                    "the catalog query failed with SQLSTATE {}",
                    codec::error_code(body).unwrap_or_default()
                )));
            }
            b'Z' => {
                m.catalog_read();
                return Ok(());
            }
            _ => {} // RowDescription, notices
        }
    }
}

/// Who a refused client claimed to be.
struct Claimed<'a> {
    user: &'a str,
    database: &'a str,
    peer: SocketAddr,
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
    if kind != b'p' {
        return Err(GatewayError::Protocol(format!(
            "expected a password message, got {:?}",
            kind as char
        )));
    }
    Ok(codec::query(&frame[5..])?.to_owned())
}

/// Reads one whole frame from `r`, keeping any bytes after it in `buf`.
async fn read_frame<R: AsyncRead + Unpin>(
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

async fn send_cancel(t: CancelTarget) {
    let mut out = BytesMut::new();
    frontend::cancel_request(t.pid, t.secret, &mut out);
    if let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(t.addr)).await
    {
        let _ = s.write_all(&out).await;
    }
}

/// A statement waiting for its outcome.
struct Pending {
    n: u64,
    started: Instant,
    /// A simple-protocol Query completes at ReadyForQuery; an Execute at its own completion.
    simple: bool,
    tags: Vec<String>,
    /// Values masked in its results, by rule.
    masked: Counts,
}

impl Pending {
    fn new(n: u64, simple: bool) -> Pending {
        Pending {
            n,
            started: Instant::now(),
            simple,
            tags: vec![],
            masked: Counts::default(),
        }
    }
}

struct Session<'a> {
    shared: &'a Shared,
    grant: &'a SessionGrant,
    id: &'a str,
    opened: Instant,
    bytes_in: u64,
    bytes_out: u64,
    statements: u64,
    /// Prepared statements' SQL by name, and portals' statement and parameters by name.
    prepared: HashMap<String, String>,
    portals: HashMap<String, (String, Vec<Option<String>>)>,
    pending: VecDeque<Pending>,
    /// What each expected ReadyForQuery answers, in order: a simple Query (its statement) or a
    /// Sync. Every Query and every Sync earns exactly one.
    ready_for: VecDeque<Option<u64>>,
    /// The client sent Terminate.
    terminated: bool,
    /// Outcomes not yet written, and when they must be at the latest.
    results: Vec<serde_json::Value>,
    flush_at: Option<tokio::time::Instant>,
    /// Guardrails for this session's resource and role, if any apply.
    guard: Option<SessionGuard>,
    /// A blocked statement is replaced upstream by one that fails naming a column
    /// `{marker}{n}`; the server's error is then swapped for the guardrail's, keyed by `n`.
    /// The failure keeps the server's own error handling: an open transaction is aborted, the
    /// rest of an extended-protocol batch is skipped, ReadyForQuery comes in order.
    marker: String,
    blocked: HashMap<u64, String>,
    /// After a blocked Parse the server skips everything up to Sync; so does the audit.
    skip_to_sync: bool,
    /// Masking, when rules apply to this session, and what it needs to know which row
    /// description each DataRow answers to.
    masking: Option<SessionMasking>,
    /// What masking planned for each statement text, so repeats are not parsed again.
    plans: Memo<std::result::Result<Planned, String>>,
    shapes: Shapes,
}

/// What a Describe asked about.
enum Described {
    Statement(String),
    Portal(String),
}

/// A bound portal: its statement, the result formats Bind asked for, and its own description
/// if a Describe of the portal was answered.
struct Portal {
    statement: String,
    formats: Vec<i16>,
    fields: Option<Vec<Field>>,
}

/// Row descriptions, so each DataRow can be read column by column. Describes and Executes are
/// tagged with the Sync batch they were sent in (counted by the ReadyForQuery each batch
/// earns); after an error the server skips the rest of its batch, and so does this.
#[derive(Default)]
struct Shapes {
    sent_ready: u64,
    got_ready: u64,
    statements: HashMap<String, Vec<Field>>,
    portals: HashMap<String, Portal>,
    describes: VecDeque<(u64, Described)>,
    executes: VecDeque<(u64, String)>,
    /// The description of the simple Query's result now arriving.
    simple: Option<Shape>,
    /// The description for the Execute now returning rows, once looked up.
    current: Option<Option<Shape>>,
    /// Plans for the COPY … TO STDOUT statements sent, and the one now running.
    copies: VecDeque<(u64, CopyPlan)>,
    copying: Option<CopyPlan>,
    /// The rule for the computed columns of simple Queries that compute from a masked
    /// column, by batch.
    taints: VecDeque<(u64, usize)>,
    /// What masking planned for prepared statements (their COPY, their computed columns),
    /// by statement name; only those with something planned.
    planned: HashMap<String, Planned>,
}

impl Shapes {
    /// Forgets what belongs to batches the server has finished.
    fn drop_stale(&mut self) {
        let g = self.got_ready;
        while self.describes.front().is_some_and(|(b, _)| *b < g) {
            self.describes.pop_front();
        }
        while self.executes.front().is_some_and(|(b, _)| *b < g) {
            self.executes.pop_front();
        }
    }

    /// The columns of the Execute at the front, in the formats its Bind asked for, and the
    /// rule for its computed columns.
    fn front_execute(&self) -> Option<(Vec<Field>, Option<usize>)> {
        let (_, portal) = self.executes.front()?;
        let p = self.portals.get(portal)?;
        let taint = self.planned.get(&p.statement).and_then(|m| m.taint);
        if let Some(f) = &p.fields {
            return Some((f.clone(), taint));
        }
        let mut fields = self.statements.get(&p.statement)?.clone();
        for (i, f) in fields.iter_mut().enumerate() {
            f.format = match p.formats.len() {
                0 => 0,
                1 => p.formats[0],
                _ => *p.formats.get(i)?,
            };
        }
        Some((fields, taint))
    }

    /// The rule for computed columns of the simple Query now answering.
    fn simple_taint(&mut self) -> Option<usize> {
        let g = self.got_ready;
        while self.taints.front().is_some_and(|(b, _)| *b < g) {
            self.taints.pop_front();
        }
        self.taints
            .front()
            .filter(|(b, _)| *b == g)
            .map(|(_, rule)| *rule)
    }
}

/// What to send in place of a read buffer some of whose frames were replaced: the bytes between
/// replaced frames are copied as they came, replacements are written in place. A buffer with
/// nothing replaced is sent as it was read, with no copy.
#[derive(Default)]
struct Rewrite {
    out: BytesMut,
    /// How far into the read buffer `out` stands for.
    copied: usize,
}

impl Rewrite {
    /// Sends `with` in place of `buf[span]`.
    fn replace(&mut self, buf: &[u8], span: std::ops::Range<usize>, with: &[u8]) {
        self.out.extend_from_slice(&buf[self.copied..span.start]);
        self.out.extend_from_slice(with);
        self.copied = span.end;
    }

    /// Lets `write` put a replacement for `buf[span]` straight into the outgoing bytes. It is
    /// given the bytes before the frame not yet copied, to write first if it replaces the frame,
    /// and says whether it did; if not, it must leave the outgoing bytes as they were.
    fn replace_in_place<E>(
        &mut self,
        buf: &[u8],
        span: std::ops::Range<usize>,
        write: impl FnOnce(&[u8], &mut BytesMut) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        if write(&buf[self.copied..span.start], &mut self.out)? {
            self.copied = span.end;
        }
        Ok(())
    }

    /// What to send for `buf[..upto]`.
    fn bytes<'b>(&'b mut self, buf: &'b [u8], upto: usize) -> &'b [u8] {
        if self.copied == 0 {
            return &buf[..upto];
        }
        self.out.extend_from_slice(&buf[self.copied..upto]);
        &self.out
    }

    /// Ready for the next read buffer.
    fn clear(&mut self) {
        self.out.clear();
        self.copied = 0;
    }
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, grant: &'a SessionGrant, id: &'a str) -> Self {
        Self {
            shared,
            grant,
            id,
            opened: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            statements: 0,
            prepared: HashMap::new(),
            portals: HashMap::new(),
            pending: VecDeque::new(),
            ready_for: VecDeque::new(),
            terminated: false,
            results: Vec::new(),
            flush_at: None,
            guard: None,
            marker: format!("jitgate_blocked_{:016x}_", rand::random::<u64>()),
            blocked: HashMap::new(),
            skip_to_sync: false,
            masking: None,
            plans: Memo::default(),
            shapes: Shapes::default(),
        }
    }

    /// Notes that the server owes a ReadyForQuery, for a simple Query (its statement) or a
    /// Sync.
    fn expect_ready(&mut self, answers: Option<u64>) {
        self.ready_for.push_back(answers);
        self.shapes.sent_ready += 1;
    }

    fn event(&self, action: &str) -> EventDraft {
        let mut e = EventDraft::new(self.shared.clock.now(), &self.grant.principal, action);
        e.resource = Some(self.grant.resource.clone());
        e.subject = Some(self.grant.principal.clone());
        e.request_id = Some(self.grant.request_id.clone());
        e.grant_id = Some(self.grant.grant_id.clone());
        e.session_id = Some(self.id.to_owned());
        e
    }

    fn deadline(&self, c: &Control) -> tokio::time::Instant {
        tokio::time::Instant::now() + duration::until(self.shared.clock.now(), c.deadline)
    }

    /// Relays until either side closes or the grant ends; returns why the session closed.
    async fn relay<S: Stream>(
        &mut self,
        client: S,
        upstream: TcpStream,
        mut control: watch::Receiver<Control>,
        target: CancelTarget,
    ) -> Result<String> {
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut ur, mut uw) = upstream.into_split();
        let mut cbuf = BytesMut::with_capacity(16 * 1024);
        let mut ubuf = BytesMut::with_capacity(64 * 1024);
        let mut events = Vec::new();
        let (mut to_server, mut to_client) = (Rewrite::default(), Rewrite::default());
        let sleep = tokio::time::sleep_until(self.deadline(&control.borrow()));
        tokio::pin!(sleep);
        // One timer for the outcomes' flush, moved to `flush_at` when a new batch sets it: a
        // fresh one per loop turn would be registered and cancelled around every statement.
        let flush = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(flush);
        // The grant may have ended between the login check and now.
        let ended_already = control.borrow_and_update().closed.clone();
        let cut = loop {
            if let Some(reason) = &ended_already {
                break reason.clone();
            }
            tokio::select! {
                read = cr.read_buf(&mut cbuf) => {
                    if read? == 0 {
                        return Ok("client closed".into());
                    }
                    let upto = self.client_frames(&cbuf, &mut events, &mut to_server)?;
                    if upto == 0 {
                        continue;
                    }
                    if !events.is_empty() {
                        let batch = std::mem::take(&mut events);
                        if self.shared.config.audit == AuditMode::Durable {
                            if let Err(e) = self.shared.authority.record(batch, AuditMode::Durable).await {
                                let msg = format!("the audit log cannot be written; refusing unaudited statements ({e})");
                                let _ = cw.write_all(&codec::error_response("FATAL", "58000", &msg)).await;
                                return Ok("audit log unavailable".into());
                            }
                        } else {
                            for e in batch {
                                let _ = self.shared.background.send(e).await;
                            }
                        }
                    }
                    uw.write_all(to_server.bytes(&cbuf, upto)).await?;
                    to_server.clear();
                    self.bytes_in += upto as u64;
                    cbuf.advance(upto);
                    if self.terminated {
                        return Ok("client terminated".into());
                    }
                }
                read = ur.read_buf(&mut ubuf) => {
                    if read? == 0 {
                        return Ok("server closed".into());
                    }
                    let upto = self.server_frames(&ubuf, &mut to_client).await?;
                    if let Some(at) = self.flush_at
                        && flush.deadline() != at
                    {
                        flush.as_mut().reset(at);
                    }
                    if upto > 0 {
                        cw.write_all(to_client.bytes(&ubuf, upto)).await?;
                        to_client.clear();
                    }
                    self.bytes_out += upto as u64;
                    ubuf.advance(upto);
                }
                _ = &mut sleep => break "expired".to_owned(),
                _ = &mut flush, if self.flush_at.is_some() => self.flush_results().await,
                changed = control.changed() => {
                    if changed.is_err() {
                        break "gateway shutting down".to_owned();
                    }
                    let c = control.borrow_and_update().clone();
                    if let Some(reason) = c.closed {
                        break reason;
                    }
                    sleep.as_mut().reset(self.deadline(&c));
                }
            }
        };
        // The grant is over: tell the client why, stop whatever runs upstream, and hang up.
        let msg = format!(
            "terminating connection: grant {} {cut}",
            self.grant.grant_id
        );
        let _ = cw
            .write_all(&codec::error_response("FATAL", "57P01", &msg))
            .await;
        let _ = cw.shutdown().await;
        if !self.pending.is_empty() {
            send_cancel(target).await;
        }
        Ok(format!("grant {cut}"))
    }

    /// Inspects the complete client frames at the start of `buf`: collects statement events,
    /// returns how many bytes they span.
    fn client_frames(
        &mut self,
        buf: &[u8],
        events: &mut Vec<EventDraft>,
        rewrite: &mut Rewrite,
    ) -> Result<usize> {
        let mut at = 0;
        while let Some((kind, total)) = codec::frame(&buf[at..], self.shared.config.max_message)? {
            let body = &buf[at + 5..at + total];
            if self.skip_to_sync && kind != b'S' {
                // The server discards these after the blocked Parse: nothing to audit.
                at += total;
                continue;
            }
            match kind {
                b'Q' => {
                    let sql = codec::query(body)?;
                    match self.check(sql) {
                        Err(b) => {
                            let stand_in = self.block_simple(sql, "simple", b, events);
                            rewrite.replace(buf, at..at + total, &stand_in);
                        }
                        Ok(planned) => {
                            let batch = self.shapes.sent_ready;
                            if let Some(rule) = planned.taint {
                                self.shapes.taints.push_back((batch, rule));
                            }
                            if let Some(plan) = planned.copy {
                                self.shapes.copies.push_back((batch, plan));
                            }
                            self.simple_statement(sql, "simple", events);
                        }
                    }
                }
                b'P' => {
                    let (name, sql) = codec::parse(body)?;
                    self.shapes.statements.remove(name);
                    self.shapes.planned.remove(name);
                    let checked = self.check(sql);
                    if let Ok(planned) = &checked
                        && !planned.is_empty()
                    {
                        // Used at an Execute of a portal bound to this statement.
                        self.shapes.planned.insert(name.to_owned(), planned.clone());
                    }
                    if let Err(b) = checked {
                        events.push(self.blocked_statement(sql, "extended", &b));
                        let stand_in = self.stand_in(b);
                        let mut with = BytesMut::new();
                        frontend::parse(name, &stand_in, std::iter::empty(), &mut with)?;
                        rewrite.replace(buf, at..at + total, &with);
                        self.prepared.remove(name);
                        self.skip_to_sync = true;
                        at += total;
                        continue;
                    }
                    self.prepared.insert(name.to_owned(), sql.to_owned());
                }
                b'B' => {
                    let b = codec::bind(body)?;
                    if self.masking.is_some() {
                        self.shapes.portals.insert(
                            b.portal.clone(),
                            Portal {
                                statement: b.statement.clone(),
                                formats: b.result_formats,
                                fields: None,
                            },
                        );
                    }
                    self.portals.insert(b.portal, (b.statement, b.params));
                }
                b'D' if self.masking.is_some() => {
                    if let Some((&what, name)) = body.split_first() {
                        let name = codec::query(name)?.to_owned();
                        let d = if what == b'S' {
                            Described::Statement(name)
                        } else {
                            Described::Portal(name)
                        };
                        self.shapes.describes.push_back((self.shapes.sent_ready, d));
                    }
                }
                b'E' => {
                    let portal = codec::execute(body)?;
                    if self.masking.is_some() {
                        let sh = &mut self.shapes;
                        sh.executes.push_back((sh.sent_ready, portal.to_owned()));
                        let plan = sh
                            .portals
                            .get(portal)
                            .and_then(|p| sh.planned.get(&p.statement)?.copy.clone());
                        if let Some(plan) = plan {
                            sh.copies.push_back((sh.sent_ready, plan));
                        }
                    }
                    let (sql, params) = match self.portals.get(portal) {
                        Some((stmt, params)) => (
                            self.prepared.get(stmt).cloned().unwrap_or_default(),
                            Some(params.clone()),
                        ),
                        None => (String::new(), None),
                    };
                    let params = params.filter(|_| self.shared.config.record_params);
                    events.push(self.statement(&sql, params, "extended"));
                    self.pending.push_back(Pending::new(self.statements, false));
                }
                b'X' => self.terminated = true,
                b'F' => {
                    // FunctionCall runs a function by OID with no SQL text: audited all the same.
                    let oid = body
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or_default();
                    let sql = format!("<function call: oid {oid}>");
                    match self.guard.as_ref().and_then(SessionGuard::function_call) {
                        Some(b) => {
                            let stand_in = self.block_simple(&sql, "function_call", b, events);
                            rewrite.replace(buf, at..at + total, &stand_in);
                        }
                        None => self.simple_statement(&sql, "function_call", events),
                    }
                }
                b'S' => {
                    self.skip_to_sync = false;
                    self.expect_ready(None);
                }
                b'C' => {
                    // Close a statement ('S') or portal ('P').
                    if let Some((&what, name)) = body.split_first() {
                        let name = codec::query(name)?;
                        if what == b'S' {
                            self.prepared.remove(name);
                            self.shapes.statements.remove(name);
                            self.shapes.planned.remove(name);
                        } else {
                            self.portals.remove(name);
                            self.shapes.portals.remove(name);
                        }
                    }
                }
                _ => {}
            }
            at += total;
        }
        Ok(at)
    }

    fn statement(
        &mut self,
        sql: &str,
        params: Option<Vec<Option<String>>>,
        protocol: &str,
    ) -> EventDraft {
        self.statements += 1;
        let mut details = json!({ "statement": self.statements, "protocol": protocol, "sql": sql });
        if let Some(p) = params {
            details["params"] = json!(p);
        }
        self.event("session.statement").details(details)
    }

    /// Guardrails first; then masking, which plans how to mask a `COPY … TO STDOUT` or
    /// refuses one it cannot mask. A plan is for the caller to keep until the COPY runs.
    fn check(&mut self, sql: &str) -> std::result::Result<Planned, Blocked> {
        if let Some(b) = self.guard.as_mut().and_then(|g| g.check(sql)) {
            return Err(b);
        }
        let Some(m) = self.masking.as_ref() else {
            return Ok(Planned::default());
        };
        self.plans.get(sql, || m.plan(sql)).map_err(|why| Blocked {
            rule: m.first_rule().to_owned(),
            why: format!("masking applies to this session: {why}"),
        })
    }

    /// A Query or FunctionCall, which the server answers up to its own ReadyForQuery:
    /// audited, and awaited.
    fn simple_statement(&mut self, sql: &str, protocol: &str, events: &mut Vec<EventDraft>) {
        events.push(self.statement(sql, None, protocol));
        self.pending.push_back(Pending::new(self.statements, true));
        self.expect_ready(Some(self.statements));
    }

    /// Audits a blocked Query or FunctionCall; returns the Query frame to send in its place.
    fn block_simple(
        &mut self,
        sql: &str,
        protocol: &str,
        b: Blocked,
        events: &mut Vec<EventDraft>,
    ) -> BytesMut {
        events.push(self.blocked_statement(sql, protocol, &b));
        let query = self.stand_in(b);
        // Its ReadyForQuery answers no pending statement.
        self.expect_ready(None);
        query_frame(&query)
    }

    /// Follows row descriptions and masks DataRows, when masking applies.
    fn mask_frame(
        &mut self,
        kind: u8,
        buf: &[u8],
        span: std::ops::Range<usize>,
        rewrite: &mut Rewrite,
    ) -> Result<()> {
        let body = &buf[span.start + 5..span.end];
        let Some(m) = &mut self.masking else {
            return Ok(());
        };
        let simple = matches!(self.ready_for.front(), Some(Some(_)));
        let sh = &mut self.shapes;
        match kind {
            b'T' => {
                let fields = codec::row_description(body)?;
                if simple {
                    let taint = sh.simple_taint();
                    sh.simple = Some(m.shape(fields, taint));
                } else {
                    sh.drop_stale();
                    match sh.describes.pop_front() {
                        Some((_, Described::Statement(name))) => {
                            sh.statements.insert(name, fields);
                        }
                        Some((_, Described::Portal(name))) => {
                            if let Some(p) = sh.portals.get_mut(&name) {
                                p.fields = Some(fields);
                            }
                        }
                        None => {}
                    }
                }
            }
            b'n' if !simple => {
                sh.drop_stale();
                sh.describes.pop_front();
            }
            b'D' => {
                let shape = if simple {
                    sh.simple.as_ref()
                } else {
                    if sh.current.is_none() {
                        sh.drop_stale();
                        sh.current = Some(
                            sh.front_execute()
                                .map(|(fields, taint)| m.shape(fields, taint)),
                        );
                    }
                    sh.current.as_ref().and_then(|c| c.as_ref())
                };
                let mut scratch = Counts::default();
                let counts = match self.pending.front_mut() {
                    Some(p) => &mut p.masked,
                    None => &mut scratch,
                };
                // Written straight into what goes to the client, after the frames before it.
                rewrite.replace_in_place(buf, span, |before, out| {
                    m.row_into(shape, body, counts, before, out)
                })?;
            }
            b'C' | b'I' | b's' => {
                if simple {
                    sh.simple = None;
                } else {
                    sh.drop_stale();
                    sh.executes.pop_front();
                    sh.current = None;
                }
            }
            b'E' => {
                sh.copying = None;
                sh.simple = None;
                sh.current = None;
                if !simple {
                    let g = sh.got_ready;
                    sh.describes.retain(|(b, _)| *b != g);
                    sh.executes.retain(|(b, _)| *b != g);
                }
            }
            b'Z' => {
                sh.got_ready += 1;
                sh.simple = None;
                sh.current = None;
                sh.copying = None;
            }
            b'H' => {
                let g = sh.got_ready;
                while sh.copies.front().is_some_and(|(b, _)| *b < g) {
                    sh.copies.pop_front();
                }
                // A COPY nobody planned for cannot be judged: every value is withheld.
                sh.copying = Some(match sh.copies.front() {
                    Some((b, _)) if *b == g => sh.copies.pop_front().expect("front").1,
                    _ => CopyPlan::withhold_all(),
                });
            }
            b'd' => {
                // CopyData with no CopyOutResponse before it breaks the protocol; if it ever
                // came, nothing in it would pass.
                let plan = sh.copying.get_or_insert_with(CopyPlan::withhold_all);
                let mut scratch = Counts::default();
                let counts = match self.pending.front_mut() {
                    Some(p) => &mut p.masked,
                    None => &mut scratch,
                };
                if let Some(frame) = m.copy_row(plan, body, counts) {
                    rewrite.replace(buf, span, &frame);
                }
            }
            b'c' => sh.copying = None,
            _ => {}
        }
        Ok(())
    }

    fn blocked_statement(&mut self, sql: &str, protocol: &str, b: &Blocked) -> EventDraft {
        let mut e = self
            .statement(sql, None, protocol)
            .outcome(Outcome::Blocked);
        e.details["outcome"] = json!("blocked");
        e.details["rule"] = json!(b.rule);
        e.details["why"] = json!(b.why);
        e
    }

    /// The SQL sent upstream in place of a blocked statement: it fails at once, naming a column
    /// that carries this block's number.
    fn stand_in(&mut self, b: Blocked) -> String {
        let n = self.statements;
        self.blocked.insert(n, b.message());
        format!("SELECT \"{}{n}\"", self.marker)
    }

    /// If `body` is the server's error for one of our stand-ins, the guardrail's error instead.
    fn swap_blocked_error(&mut self, body: &[u8]) -> Option<BytesMut> {
        let marker = self.marker.as_bytes();
        let at = body.windows(marker.len()).position(|w| w == marker)? + marker.len();
        let digits = body[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        let n: u64 = std::str::from_utf8(&body[at..at + digits])
            .ok()?
            .parse()
            .ok()?;
        let message = self.blocked.remove(&n)?;
        Some(codec::error_response("ERROR", "42501", &message))
    }

    /// Notes outcomes in the complete server frames at the start of `buf`; returns their span.
    /// Errors answering a blocked statement's stand-in become patches with the guardrail's.
    async fn server_frames(&mut self, buf: &[u8], rewrite: &mut Rewrite) -> Result<usize> {
        let mut at = 0;
        let mut results = Vec::new();
        while let Some((kind, total)) = codec::frame(&buf[at..], UPSTREAM_MAX)? {
            let body = &buf[at + 5..at + total];
            self.mask_frame(kind, buf, at..at + total, rewrite)?;
            match kind {
                b'C' => {
                    let tag = codec::query(body).unwrap_or_default().to_owned();
                    match self.pending.front_mut() {
                        Some(p) if p.simple => p.tags.push(tag),
                        Some(_) => {
                            let p = self.pending.pop_front().expect("front");
                            results.push(self.result(p, json!({ "outcome": "ok", "tag": tag })));
                        }
                        None => {}
                    }
                }
                b'E' if !self.blocked.is_empty()
                    && codec::error_code(body).as_deref() == Some("42703") =>
                {
                    if let Some(with) = self.swap_blocked_error(body) {
                        rewrite.replace(buf, at..at + total, &with);
                    } else {
                        self.note_error(body, &mut results);
                    }
                }
                b'E' => self.note_error(body, &mut results),
                b'I' | b's' if self.pending.front().is_some_and(|p| !p.simple) => {
                    let p = self.pending.pop_front().expect("front");
                    let outcome = if kind == b'I' { "empty" } else { "suspended" };
                    results.push(self.result(p, json!({ "outcome": outcome })));
                }
                b'Z' => {
                    let answers = self.ready_for.pop_front().flatten();
                    if answers.is_some()
                        && self
                            .pending
                            .front()
                            .is_some_and(|p| p.simple && Some(p.n) == answers)
                    {
                        let mut p = self.pending.pop_front().expect("front");
                        let tags = std::mem::take(&mut p.tags);
                        results.push(self.result(p, json!({ "outcome": "ok", "tags": tags })));
                    }
                }
                _ => {}
            }
            at += total;
        }
        if !results.is_empty() {
            self.flush_at
                .get_or_insert_with(|| tokio::time::Instant::now() + RESULTS_EVERY);
            self.results.extend(results);
            if self.results.len() >= RESULTS_BATCH {
                self.flush_results().await;
            }
        }
        Ok(at)
    }

    /// An error from the server ends the statement in front; after it the server skips to Sync,
    /// so what was queued behind it never runs.
    fn note_error(&mut self, body: &[u8], results: &mut Vec<serde_json::Value>) {
        let code = codec::error_code(body).unwrap_or_default();
        if let Some(p) = self.pending.pop_front() {
            results.push(self.result(p, json!({ "outcome": "error", "sqlstate": code })));
        }
        while self.pending.front().is_some_and(|p| !p.simple) {
            let p = self.pending.pop_front().expect("front");
            results.push(self.result(p, json!({ "outcome": "skipped" })));
        }
    }

    fn result(&self, p: Pending, mut details: serde_json::Value) -> serde_json::Value {
        if let Some(m) = self.masking.as_ref().filter(|_| !p.masked.is_empty()) {
            details["masked"] = json!(m.named(&p.masked));
        }
        details["statement"] = json!(p.n);
        details["duration_us"] = json!(p.started.elapsed().as_micros() as u64);
        details
    }

    /// Writes the outcomes gathered so far as one `session.results` event: one row for many
    /// statements, so auditing costs one write per statement, not two.
    async fn flush_results(&mut self) {
        if self.results.is_empty() {
            return;
        }
        let results = std::mem::take(&mut self.results);
        let failed = results.iter().filter(|r| r["outcome"] == "error").count();
        // Moved into the event, not copied (`json!` would clone every outcome).
        let mut details = serde_json::Map::new();
        details.insert("results".into(), serde_json::Value::Array(results));
        details.insert("failed".into(), failed.into());
        let e = self
            .event("session.results")
            .details(serde_json::Value::Object(details));
        let e = if failed > 0 {
            e.outcome(Outcome::Failure)
        } else {
            e
        };
        let _ = self.shared.background.send(e).await;
        self.flush_at = None;
    }
}

fn query_frame(sql: &str) -> BytesMut {
    let mut out = BytesMut::new();
    frontend::query(sql, &mut out).expect("a stand-in query has no NUL byte");
    out
}
