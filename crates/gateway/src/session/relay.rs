//! The relay loop: client bytes to the server and server bytes to the client, each read
//! buffer's whole frames inspected ([`super::client`], [`super::server`]) and sent on in one
//! write, until either side closes, the grant ends, or the control plane says so.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::login::send_cancel;
use super::{Result, Rewrite, Session, Stream};
use crate::AuditMode;
use crate::codec;
use crate::registry::{CancelTarget, Control};

impl Session<'_> {
    /// Relays until either side closes or the grant ends; returns why the session closed.
    pub(super) async fn relay<S: Stream>(
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
        if self.tracker.pending() > 0 {
            send_cancel(target).await;
        }
        Ok(format!("grant {cut}"))
    }
}
