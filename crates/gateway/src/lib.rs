//! The jitgate gateway: a PostgreSQL wire-protocol proxy. A client logs in with its principal
//! name and jitgate token, and names the resource as the database. It is let through only while
//! it holds an active grant, every statement is written to the audit log (durably, before it is
//! forwarded, unless the operator chose asynchronous auditing), and the session is cut at the
//! instant its grant ends.
//!
//! The gateway knows nothing of policies or stores: the control plane plugs in as an
//! [`Authority`], and ends sessions through the [`Registry`].

pub mod codec;
mod error;
pub mod guard;
pub mod masking;
mod registry;
mod session;
pub mod sql;

/// The pure extended-protocol tracker the sessions use, for its fuzz target.
pub use session::tracker;

/// Detectors and strategies, where they have always been found.
pub mod mask {
    pub use crate::masking::detect::{Detector, iban_ok, luhn_ok, ssn_ok};
    pub use crate::masking::strategy::{HashMemo, Masker, REDACTED, Strategy};
}

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use jitgate_core::{Clock, EventDraft, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use error::{AuthorityError, CodecError, GatewayError};
pub use registry::Registry;

/// How statements are audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// A statement is forwarded only after its event is durable; if the audit log cannot be
    /// written, the session ends instead of running unaudited (fail closed).
    Durable,
    /// Statements are forwarded at once and their events written shortly after, in batches. A
    /// crash can lose the last moments of the record; the statements themselves still ran.
    Async,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Allow logins over plain TCP from addresses other than loopback (the token travels in the
    /// clear). Off by default.
    pub allow_plaintext_remote: bool,
    pub audit: AuditMode,
    /// Record bind parameters of extended-protocol statements.
    pub record_params: bool,
    /// Largest message a client may send.
    pub max_message: usize,
    /// PEM certificate chain and private key for TLS; without them the gateway answers `N` to
    /// SSLRequest and accepts plain logins from loopback only.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Statement rules; those matching a session's resource and role are checked before each
    /// statement is forwarded.
    pub guardrails: Vec<guard::GuardRule>,
    /// Masking rules; those matching a session's resource and role apply to its results.
    pub masking: Vec<masking::MaskRule>,
}

/// The secret behind deterministic masking; never printed.
#[derive(Clone)]
pub struct MaskingKey(pub [u8; 32]);

impl std::fmt::Debug for MaskingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskingKey(..)")
    }
}

/// Loads the certificate chain and key into a TLS acceptor.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, GatewayError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        GatewayError::Protocol(format!("cannot read TLS {what} {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| GatewayError::Protocol(format!("TLS setup: {e}")))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| GatewayError::Protocol(format!("TLS certificate and key do not fit: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Where and as whom the gateway connects upstream for a session.
#[derive(Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .finish()
    }
}

/// An active grant that lets a session through.
#[derive(Debug, Clone)]
pub struct SessionGrant {
    pub principal: String,
    pub resource: String,
    /// The role the grant gives on the resource (guardrails and masking rules are chosen by it).
    pub role: String,
    pub grant_id: String,
    pub request_id: String,
    pub expires_at: Timestamp,
    pub upstream: Upstream,
    /// When `Some(schema)`, the database itself enforces this grant's column rules through
    /// masked views in that schema (same table names, first on the login's search path, no
    /// privilege on the raw columns, verified before the grant was activated). The gateway
    /// then trusts relations in that schema as masked, and a masked table named without its
    /// schema as resolving to its masked view; detectors and the other channels' protections
    /// stay.
    pub database_masking: Option<String>,
}

/// Why a login is refused: a SQLSTATE (`28P01` bad token, `28000` no grant) and a message.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// The control plane, as the gateway sees it.
#[async_trait]
pub trait Authority: Send + Sync + 'static {
    /// Checks the token and finds the principal's active grant on the resource named by
    /// `database` (`resource` or `resource/database`).
    async fn authorize(
        &self,
        user: &str,
        token: &str,
        database: &str,
    ) -> Result<SessionGrant, Refusal>;

    /// Writes audit events in order, on disk when it returns. `mode` is the gateway's: in
    /// `Durable` mode every event of a session comes through here and may take a faster durable
    /// path (the store's intake journal). An error means the gateway must not go on (fail
    /// closed).
    async fn record(&self, events: Vec<EventDraft>, mode: AuditMode) -> Result<(), AuthorityError>;
}

pub(crate) struct Shared {
    pub config: GatewayConfig,
    pub authority: Arc<dyn Authority>,
    pub clock: Arc<dyn Clock>,
    pub registry: Arc<Registry>,
    /// Events that need not hold a statement back (results, and statements in async mode).
    pub background: mpsc::Sender<EventDraft>,
    /// TLS for clients that ask for it, when a certificate is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub masker: Arc<mask::Masker>,
    /// The names of each upstream server version's built-in functions, read once and shared.
    pub builtins:
        std::sync::Mutex<std::collections::HashMap<String, Arc<std::collections::HashSet<String>>>>,
}

/// A listening gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Binds the listener and serves sessions until the task is aborted.
/// `masking_key` is the key of the `hash` strategy: a secret of the installation, not config.
pub async fn start(
    config: GatewayConfig,
    masking_key: MaskingKey,
    authority: Arc<dyn Authority>,
    clock: Arc<dyn Clock>,
    registry: Arc<Registry>,
) -> Result<Running, GatewayError> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let (background, rx) = mpsc::channel(65_536);
    tokio::spawn(write_in_background(authority.clone(), config.audit, rx));
    let masker = Arc::new(mask::Masker::new(masking_key.0));
    let shared = Arc::new(Shared {
        masker,
        builtins: Default::default(),
        config,
        authority,
        clock,
        registry,
        background,
        tls,
    });
    // Durable sessions wait for the intake journal at every statement; on session threads they
    // measured 7-15 % more CPU per statement for the same throughput (two alternated runs), so
    // they stay on the shared runtime.
    let threads = match shared.config.audit {
        AuditMode::Async => Some(session_threads()?),
        AuditMode::Durable => None,
    };
    let task = tokio::spawn(async move {
        // `threads` is held by the accept loop: when it ends, the session threads end with
        // their sessions.
        let mut next = 0;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    match &threads {
                        None => {
                            tokio::spawn(session::serve(stream, peer, shared.clone()));
                        }
                        Some((handles, _stop)) => {
                            next += 1;
                            let thread = &handles[next % handles.len()];
                            hand_over(thread, stream, peer, shared.clone());
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    tracing::info!(%addr, "gateway listening (PostgreSQL protocol)");
    Ok(Running { addr, task })
}

/// Starts one thread per core, each running a single-threaded runtime; async-mode sessions are
/// dealt out to them in turn. A session's reads, writes and timers then wake only its own thread: on the
/// shared work-stealing runtime, workers woke each other (0.4 `futex` wakes per select-only
/// transaction; none now), and the async gateway spent 39.4 µs of CPU per statement against
/// 36.0 µs now, in alternated runs. The cost is balance: a thread's sessions cannot move to an
/// idle one. The threads run until the sender returned is dropped.
fn session_threads()
-> Result<(Vec<tokio::runtime::Handle>, tokio::sync::watch::Sender<()>), GatewayError> {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(runtime.handle().clone());
        let mut stopped = stopped.clone();
        std::thread::Builder::new()
            .name(format!("jitgate-gw-{i}"))
            .spawn(move || {
                // Returns when the sender is dropped.
                let _ = runtime.block_on(stopped.changed());
            })?;
    }
    Ok((handles, stop))
}

/// Moves an accepted connection to a session thread, registered again with that thread's own
/// reactor so that its wakeups stay there.
fn hand_over(
    thread: &tokio::runtime::Handle,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) {
    let handed = move |e: std::io::Error| {
        tracing::warn!(%peer, error = %e, "gateway could not hand a connection to its session thread");
    };
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => return handed(e),
    };
    thread.spawn(async move {
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => session::serve(stream, peer, shared).await,
            Err(e) => handed(e),
        }
    });
}

/// Batches background events into as few writes as possible: once one arrives, it waits 50 ms
/// for more, so a busy gateway makes about twenty writes a second, not one per statement. Each
/// write is a commit with a fixed cost (the pages every commit touches, the sync): gathering
/// for 50 ms rather than 5 cut the async gateway's CPU per statement by about 8 %. (Durable
/// statement events never come this way.)
async fn write_in_background(
    authority: Arc<dyn Authority>,
    mode: AuditMode,
    mut rx: mpsc::Receiver<EventDraft>,
) {
    const GATHER: std::time::Duration = std::time::Duration::from_millis(50);
    const MOST: usize = 8192;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MOST).await > 0 {
        tokio::time::sleep(GATHER).await;
        while batch.len() < MOST {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if let Err(e) = authority.record(std::mem::take(&mut batch), mode).await {
            tracing::error!(error = %e, "could not write gateway audit events");
        }
    }
}
