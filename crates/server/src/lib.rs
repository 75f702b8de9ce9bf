//! The jitgate control plane: configuration, the HTTP API, authentication, the expiry scheduler.

pub mod api;
pub mod audit_log;
pub mod audit_offline;
mod audit_service;
pub mod auth;
pub mod config;
mod drive;
mod error;
mod gateway;
mod gateway_password;
pub mod identity;
pub mod metrics;
pub mod policy_matrix;
pub mod policy_view;
mod scheduler;
pub mod service;
mod signin;
pub mod targets;

use std::net::SocketAddr;
use std::sync::Arc;

use jitgate_core::Clock;
use jitgate_store::SqliteStore;

pub use audit_log::AuditLog;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use audit_service::NewHold;
pub use config::Config;
pub use error::{ConfigError, Error};
pub use service::App;

/// The key of the gateway's `hash` masking strategy, in the data directory (mode 0600).
pub const MASKING_KEY_FILE: &str = "masking.key";

/// A running server: its address, and a way to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// The PostgreSQL gateway's address, when one is configured.
    pub gateway_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    gateway_task: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting requests, finishes those in flight, and stops the scheduler.
    pub async fn stop(self) {
        if let Some(g) = &self.gateway_task {
            g.abort(); // stops accepting; open sessions end with their tasks
        }
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Serves until SIGINT/SIGTERM.
    pub async fn until_signal(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        self.stop().await;
    }
}

/// Opens the store, ends whatever fell due while jitgate was down, then serves the API and runs
/// the scheduler.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Running, Error> {
    create_private_dir(&config.data_dir)?;
    if let Some(parent) = config.database_path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    let store: Arc<dyn jitgate_store::Store> = Arc::new(SqliteStore::open(&config.database_path)?);
    let instance = instance_id(&config.data_dir)?;
    let listen = config.listen;
    let audit = Arc::new(AuditLog::open(&config, store.clone(), clock.clone()).await?);
    let app = Arc::new(App::new(config, store, clock, &instance, audit)?);

    // First thing: grants whose window passed while we were down end now, before serving.
    let caught_up = app.catch_up().await?;
    if caught_up > 0 {
        tracing::info!(
            requests = caught_up,
            "ended or advanced what fell due while jitgate was down"
        );
    }
    // Then anything jitgate created in a target that no live grant accounts for goes.
    let orphans = app.reconcile().await?;
    if orphans > 0 {
        tracing::warn!(orphans, "removed logins that no live grant accounted for");
    }
    // Then whether each target holds what jitgate promises: said loudly, and audited.
    app.check_targets_at_start().await?;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {listen}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the listener's address", e))?;
    let (shutdown, rx) = watch::channel(false);
    let mut http_rx = rx.clone();
    let router = api::router(app.clone());
    let http = tokio::spawn(async move {
        let stop = async move {
            let _ = http_rx.changed().await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    let sched = tokio::spawn(scheduler::run(app.clone(), rx.clone()));
    let checkpoints = tokio::spawn(app.audit.clone().run(rx.clone()));
    let retention = tokio::spawn(scheduler::retention(app.clone(), rx));
    let tasks = vec![http, sched, checkpoints, retention];
    let mut gateway_task = None;
    let gateway_addr = match app.config.gateway.clone() {
        Some(config) => {
            let listen = config.listen;
            let key = jitgate_gateway::MaskingKey(targets::masking_key(&app.config)?);
            let authority: Arc<dyn jitgate_gateway::Authority> = app.clone();
            let gw = jitgate_gateway::start(
                config,
                key,
                authority,
                app.clock.clone(),
                app.sessions.clone(),
            )
            .await
            .map_err(|e| Error::io(format!("cannot start the gateway on {listen}"), e))?;
            gateway_task = Some(gw.task);
            let _ = app.gateway_addr.set(gw.addr);
            Some(gw.addr)
        }
        None => None,
    };
    tracing::info!(%addr, "jitgate listening");
    Ok(Running {
        addr,
        gateway_addr,
        gateway_task,
        app,
        shutdown,
        tasks,
    })
}

/// This installation's id: made once, kept in the data dir.
fn instance_id(data_dir: &std::path::Path) -> Result<String, Error> {
    let path = data_dir.join("instance_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = jitgate_core::ids::new_id("jg");
            std::fs::write(&path, &id)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            Ok(id)
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The data dir holds the database and, later, keys: owner only.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}
