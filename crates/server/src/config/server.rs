//! `[server]` and `[storage]`: where the API listens, who administers and audits, and where the
//! database lives.

use std::net::SocketAddr;
use std::path::PathBuf;

use jitgate_core::Selector;

use super::check::{Check, Seg, with};
use super::raw::RawConfig;

pub(super) struct Server {
    pub listen: SocketAddr,
    pub admins: Vec<Selector>,
    pub auditors: Vec<Selector>,
    pub database_path: PathBuf,
}

pub(super) fn server(c: &mut Check, raw: &RawConfig) -> Server {
    let server = vec![Seg::Key("server")];
    let listen = c
        .ok(
            with(&server, Seg::Key("listen")),
            raw.server
                .listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("{:?} is not HOST:PORT ({e})", raw.server.listen)),
        )
        .unwrap_or_else(|| ([127, 0, 0, 1], 8080).into());
    let admins = c.selectors(with(&server, Seg::Key("admins")), &raw.server.admins);
    let auditors = c.selectors(with(&server, Seg::Key("auditors")), &raw.server.auditors);

    let url_path = vec![Seg::Key("storage"), Seg::Key("url")];
    let database_path = match raw.storage.url.strip_prefix("sqlite://") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ if raw.storage.url.starts_with("postgres") => {
            c.add(
                url_path,
                "PostgreSQL storage is not available in this version yet; use sqlite://FILE",
            );
            PathBuf::new()
        }
        _ => {
            c.add(
                url_path,
                format!(
                    "{:?} is not a storage URL; expected sqlite://FILE (relative to data_dir)",
                    raw.storage.url
                ),
            );
            PathBuf::new()
        }
    };
    let database_path = if database_path.is_relative() {
        raw.server.data_dir.join(database_path)
    } else {
        database_path
    };
    Server {
        listen,
        admins,
        auditors,
        database_path,
    }
}
