//! `[gateway.postgres]`: the gateway's whole configuration, with the statement and masking rules
//! it enforces, so `start` hands it over as it is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jitgate_gateway::guard::GuardRule;
use jitgate_gateway::masking::MaskRule;
use jitgate_gateway::{AuditMode, GatewayConfig};

use super::check::{Check, Seg};
use super::raw::RawGateway;

/// Largest message a client may send through the gateway.
const MAX_MESSAGE: usize = 256 << 20;

pub(super) fn gateway(
    c: &mut Check,
    raw: Option<&RawGateway>,
    base: &Path,
    guardrails: &[GuardRule],
    masking: &[MaskRule],
) -> Option<GatewayConfig> {
    let g = raw?.postgres.as_ref()?;
    let at = |k: &'static str| vec![Seg::Key("gateway"), Seg::Key("postgres"), Seg::Key(k)];
    let audit = match g.audit.as_str() {
        "durable" => AuditMode::Durable,
        "async" => AuditMode::Async,
        other => {
            c.add(
                at("audit"),
                format!("{other:?} is not an audit mode; use \"durable\" or \"async\""),
            );
            AuditMode::Durable
        }
    };
    let listen = c
        .ok(
            at("listen"),
            g.listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("{:?} is not HOST:PORT ({e})", g.listen)),
        )
        .unwrap_or_else(|| ([127, 0, 0, 1], 6432).into());
    let tls = match (&g.tls_cert, &g.tls_key) {
        (Some(cert), Some(key)) => {
            let at_base = |p: &PathBuf| {
                if p.is_relative() {
                    base.join(p)
                } else {
                    p.clone()
                }
            };
            let (cert, key) = (at_base(cert), at_base(key));
            for (k, file) in [("tls_cert", &cert), ("tls_key", &key)] {
                if let Err(e) = std::fs::metadata(file) {
                    c.add(at(k), format!("cannot read {}: {e}", file.display()));
                }
            }
            Some((cert, key))
        }
        (None, None) => None,
        _ => {
            c.add(at("tls_cert"), "set both tls_cert and tls_key, or neither");
            None
        }
    };
    Some(GatewayConfig {
        listen,
        allow_plaintext_remote: g.allow_plaintext_remote,
        audit,
        record_params: g.record_params,
        max_message: MAX_MESSAGE,
        tls,
        guardrails: guardrails.to_vec(),
        masking: masking.to_vec(),
    })
}
