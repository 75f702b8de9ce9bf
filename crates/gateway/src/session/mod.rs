//! One client session: TLS, login and the upstream connection ([`login`]), the relay loop
//! ([`relay`]) that passes client messages ([`client`]) and server messages ([`server`]) on,
//! audited, checked ([`checks`]) and masked, with the protocol's state kept by a pure
//! [`tracker`], until either side closes or the grant ends.

mod checks;
mod client;
mod login;
mod relay;
mod server;
pub mod tracker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use jitgate_core::event::Outcome;
use jitgate_core::{EventDraft, duration, ids};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::{self, Startup};
use crate::guard::{SessionGuard, in_scope};
use crate::masking::{Counts, RowShape, SessionMasking, StatementPlan};
use crate::registry::Control;
use crate::sql::functions::Functions;
use crate::sql::{LexMode, Memo};
use crate::{GatewayError, SessionGrant, Shared};

use tracker::Tracker;

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
    let first = match tokio::time::timeout(LOGIN_TIMEOUT, login::read_startup(&mut tcp)).await {
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

/// Whether guardrails or masking rules apply to a grant's sessions.
fn rules_apply(shared: &Shared, grant: &SessionGrant) -> bool {
    let c = &shared.config;
    c.guardrails
        .iter()
        .any(|r| in_scope(&r.resources, &r.roles, &grant.resource, &grant.role))
        || c.masking
            .iter()
            .any(|r| in_scope(&r.resources, &r.roles, &grant.resource, &grant.role))
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
        login::login(&mut client, first, encrypted, peer, &shared),
    )
    .await;
    let ready = match login {
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
    let login::Ready {
        grant,
        mut upstream,
        key,
        target,
        startup,
        reported,
    } = ready;
    let session_id = ids::new_id("ses");
    let (reg_id, control) = shared.registry.register(&grant.grant_id, grant.expires_at);
    let mut s = Session::new(&shared, &grant, &session_id);
    s.follow_settings(&reported);
    if let Err(e) = s.read_catalog(&mut upstream, &reported).await {
        // Without the catalog no column can be judged: refuse rather than pass data unmasked.
        tracing::warn!(error = %e, "masking: cannot read the catalog");
        let _ = client
            .write_all(&codec::error_response(
                "FATAL",
                "58000",
                &format!("jitgate cannot read the catalog that masking and guardrails need ({e})"),
            ))
            .await;
        shared.registry.unregister(&grant.grant_id, reg_id);
        shared.registry.forget_cancel_key(key);
        return;
    }
    let startup_param = |k: &str| startup.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut details = json!({
        "client_addr": peer.to_string(), "application_name": startup_param("application_name"),
        "upstream_user": grant.upstream.user,
    });
    if let Some(options) = startup_param("options") {
        details["options"] = json!(options);
    }
    let opened = s.event("session.opened").details(details);
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
            Err(GatewayError::Audit(e))
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

/// The result now arriving, as masking sees it: the shape of its rows (`None` inside: no
/// description to judge them by), and how its COPY rows are masked.
#[derive(Default)]
struct Results {
    shape: Option<Option<RowShape>>,
    copying: Option<crate::masking::CopyPlan>,
}

struct Session<'a> {
    shared: &'a Shared,
    grant: &'a SessionGrant,
    id: &'a str,
    opened: Instant,
    bytes_in: u64,
    bytes_out: u64,
    statements: u64,
    /// Prepared statements, portals, and what the server owes.
    tracker: Tracker<StatementPlan>,
    /// When each audited statement still waiting for its outcome was sent, and what masking
    /// did to its results.
    started: HashMap<u64, Instant>,
    masked: HashMap<u64, Counts>,
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
    /// Masking, when rules apply to this session.
    masking: Option<SessionMasking>,
    /// The server's functions, when masking or a guard rule with tables needs them.
    functions: Functions,
    /// How the server reads SQL in this session, from what it reported.
    lex: LexMode,
    /// The client encoding can hide an ASCII quote or backslash inside a multi-byte character.
    unsafe_encoding: Option<String>,
    /// What each SQL text was found to be, so repeats are not read again.
    checked: Memo<checks::Verdict>,
    /// The result now arriving.
    now: Results,
    /// The current transaction has read masked data: errors and notices until it ends say
    /// nothing of it (a deferred constraint fails at COMMIT).
    tx_masked: bool,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, grant: &'a SessionGrant, id: &'a str) -> Self {
        let guard =
            SessionGuard::for_session(&shared.config.guardrails, &grant.resource, &grant.role);
        let masking = SessionMasking::for_session(
            &shared.config.masking,
            &grant.resource,
            &grant.role,
            shared.masker.clone(),
            grant.database_masking.clone(),
        );
        Self {
            shared,
            grant,
            id,
            opened: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            statements: 0,
            tracker: Tracker::new(masking.is_some()),
            started: HashMap::new(),
            masked: HashMap::new(),
            terminated: false,
            results: Vec::new(),
            flush_at: None,
            guard,
            marker: format!("jitgate_blocked_{:016x}_", rand::random::<u64>()),
            blocked: HashMap::new(),
            skip_to_sync: false,
            masking,
            functions: Functions::default(),
            lex: LexMode::default(),
            unsafe_encoding: None,
            checked: Memo::default(),
            now: Results::default(),
            tx_masked: false,
        }
    }

    /// Reads the catalog, when masking's column rules or a guard rule with tables need it.
    async fn read_catalog(
        &mut self,
        upstream: &mut TcpStream,
        reported: &HashMap<String, String>,
    ) -> Result<()> {
        let masking = self.masking.as_mut().filter(|m| m.needs_catalog());
        let guard_needs = self
            .guard
            .as_ref()
            .is_some_and(SessionGuard::needs_functions);
        if masking.is_none() && !guard_needs {
            return Ok(());
        }
        let version = reported.get("server_version").cloned().unwrap_or_default();
        let key = format!(
            "{}:{} {version}",
            self.grant.upstream.host, self.grant.upstream.port
        );
        self.functions = login::load_catalog(upstream, masking, key, self.shared).await?;
        Ok(())
    }

    /// Takes the settings the server reported (at login, or since): how it reads strings, and
    /// in which encoding the client speaks.
    fn follow_settings(&mut self, reported: &HashMap<String, String>) {
        for (name, value) in reported {
            self.follow_setting(name, value);
        }
    }

    fn follow_setting(&mut self, name: &str, value: &str) {
        match name {
            "standard_conforming_strings" => {
                let standard = value != "off";
                if self.lex.standard_strings != standard {
                    self.lex.standard_strings = standard;
                    // What was read under the old rules is read again.
                    self.checked.clear();
                }
            }
            "client_encoding" => {
                self.unsafe_encoding = checks::unsafe_encoding(value).then(|| value.to_owned());
            }
            _ => {}
        }
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

    /// The audit event of a statement about to be sent, numbered; its outcome is awaited.
    fn statement(
        &mut self,
        sql: &str,
        params: Option<&[Option<String>]>,
        protocol: &str,
    ) -> EventDraft {
        self.statements += 1;
        self.started.insert(self.statements, Instant::now());
        let mut details = json!({ "statement": self.statements, "protocol": protocol, "sql": sql });
        if let Some(p) = params.filter(|_| self.shared.config.record_params) {
            details["params"] = json!(p);
        }
        self.event("session.statement").details(details)
    }

    fn blocked_statement(
        &mut self,
        sql: &str,
        protocol: &str,
        b: &crate::guard::Blocked,
    ) -> EventDraft {
        let mut e = self
            .statement(sql, None, protocol)
            .outcome(Outcome::Blocked);
        // Its outcome is this event's: nothing further is awaited for it.
        self.started.remove(&self.statements);
        e.details["outcome"] = json!("blocked");
        e.details["rule"] = json!(b.rule);
        e.details["why"] = json!(b.why);
        e
    }

    /// The SQL sent upstream in place of a blocked statement: it fails at once, naming a column
    /// that carries this block's number.
    fn stand_in(&mut self, b: crate::guard::Blocked) -> String {
        let n = self.statements;
        self.blocked.insert(n, b.message());
        format!("SELECT \"{}{n}\"", self.marker)
    }

    /// An outcome's record, with its duration and what masking did to its results.
    fn result(&mut self, n: u64, mut details: serde_json::Value) -> serde_json::Value {
        if let Some(counts) = self.masked.remove(&n)
            && let Some(m) = &self.masking
            && !counts.is_empty()
        {
            details["masked"] = json!(m.named(&counts));
        }
        details["statement"] = json!(n);
        if let Some(started) = self.started.remove(&n) {
            details["duration_us"] = json!(started.elapsed().as_micros() as u64);
        }
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
