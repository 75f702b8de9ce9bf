//! A PostgreSQL client that speaks raw protocol frames and keeps every byte the server sends:
//! the red team's eyes. It logs in through the gateway (cleartext password) or straight to
//! PostgreSQL (trust), sends frames in any order, and reads until the server has answered.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A frame: its type and body.
pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub fn query(sql: &str) -> Vec<u8> {
    frame(b'Q', &cstr(sql))
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend(0i16.to_be_bytes());
    frame(b'P', &b)
}

/// A Bind with no parameters; all results in text (`binary`: in binary).
pub fn bind(portal: &str, statement: &str, binary: bool) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(statement));
    b.extend(0i16.to_be_bytes()); // parameter formats
    b.extend(0i16.to_be_bytes()); // parameters
    b.extend(1i16.to_be_bytes());
    b.extend(i16::from(binary).to_be_bytes());
    frame(b'B', &b)
}

pub fn describe(what: u8, name: &str) -> Vec<u8> {
    let mut b = vec![what];
    b.extend(cstr(name));
    frame(b'D', &b)
}

pub fn execute(portal: &str) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(0i32.to_be_bytes());
    frame(b'E', &b)
}

pub fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

/// A fastpath FunctionCall of `oid` with text arguments, asking for a text result.
pub fn function_call(oid: u32, args: &[&str]) -> Vec<u8> {
    let mut b = oid.to_be_bytes().to_vec();
    b.extend(1i16.to_be_bytes());
    b.extend(0i16.to_be_bytes()); // arguments in text
    b.extend((args.len() as i16).to_be_bytes());
    for a in args {
        b.extend((a.len() as i32).to_be_bytes());
        b.extend(a.as_bytes());
    }
    b.extend(0i16.to_be_bytes()); // result in text
    frame(b'F', &b)
}

/// One message from the server.
#[derive(Debug, Clone)]
pub struct Msg {
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// An ErrorResponse's or NoticeResponse's field.
    pub fn field(&self, f: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&t, after)) = rest.split_first() {
            if t == 0 {
                break;
            }
            let end = after.iter().position(|&b| b == 0)?;
            if t == f {
                return Some(String::from_utf8_lossy(&after[..end]).into_owned());
            }
            rest = &after[end + 1..];
        }
        None
    }
}

/// Everything the server sent for some frames.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub msgs: Vec<Msg>,
    /// The raw bytes, to search for what must not be there.
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn errors(&self) -> Vec<(String, String)> {
        self.msgs
            .iter()
            .filter(|m| m.kind == b'E')
            .map(|m| {
                (
                    m.field(b'C').unwrap_or_default(),
                    m.field(b'M').unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Whether jitgate refused something (its guardrail or masking error).
    pub fn refused(&self) -> bool {
        self.errors()
            .iter()
            .any(|(code, msg)| code == "42501" && msg.contains("jitgate"))
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.bytes
            .windows(needle.len().max(1))
            .any(|w| w == needle.as_bytes())
    }

    /// The text values of every DataRow.
    pub fn values(&self) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for m in self.msgs.iter().filter(|m| m.kind == b'D') {
            let n = i16::from_be_bytes([m.body[0], m.body[1]]);
            let mut at = 2;
            for _ in 0..n {
                let len = i32::from_be_bytes(m.body[at..at + 4].try_into().unwrap());
                at += 4;
                if len < 0 {
                    out.push(None);
                } else {
                    let v = &m.body[at..at + len as usize];
                    out.push(Some(String::from_utf8_lossy(v).into_owned()));
                    at += len as usize;
                }
            }
        }
        out
    }
}

pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// What the server sent at login (ParameterStatus and all).
    pub greeting: Reply,
}

impl Raw {
    /// Logs in: `password` through the gateway (it asks for one), none straight to PostgreSQL.
    /// `None` if the server refused (its error is the greeting's).
    pub async fn connect(
        port: u16,
        params: &[(&str, &str)],
        password: Option<&str>,
    ) -> Result<Raw, Reply> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            greeting: Reply::default(),
        };
        let mut body = 196608i32.to_be_bytes().to_vec();
        for (k, v) in params {
            body.extend(cstr(k));
            body.extend(cstr(v));
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend(body);
        raw.send(&startup).await;
        loop {
            let m = raw.next().await;
            raw.greeting.bytes.extend(frame(m.kind, &m.body));
            raw.greeting.msgs.push(m.clone());
            match m.kind {
                b'R' if m.body[..4] == 3i32.to_be_bytes() => {
                    raw.send(&frame(b'p', &cstr(password.unwrap_or_default())))
                        .await;
                }
                b'E' => return Err(std::mem::take(&mut raw.greeting)),
                b'Z' => return Ok(raw),
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    async fn next(&mut self) -> Msg {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let kind = self.buf[0];
                    let body = self.buf[5..len + 1].to_vec();
                    self.buf.drain(..len + 1);
                    return Msg { kind, body };
                }
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut chunk))
                .await
                .expect("the server answers within 20 s")
                .expect("read");
            assert!(
                n > 0,
                "the server closed the connection; so far: {:?}",
                self.buf
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until `ready` ReadyForQuery messages came, then briefly for anything that follows
    /// at once (a notification).
    pub async fn until_ready(&mut self, ready: usize) -> Reply {
        let mut reply = Reply::default();
        let mut seen = 0;
        while seen < ready {
            let m = self.next().await;
            if m.kind == b'Z' {
                seen += 1;
            }
            reply.bytes.extend(frame(m.kind, &m.body));
            reply.msgs.push(m);
        }
        reply
    }

    /// Sends frames and reads until `ready` ReadyForQuery messages came.
    pub async fn exchange(&mut self, frames: &[Vec<u8>], ready: usize) -> Reply {
        self.send(&frames.concat()).await;
        self.until_ready(ready).await
    }

    /// One simple Query, answered.
    pub async fn query(&mut self, sql: &str) -> Reply {
        self.exchange(&[query(sql)], 1).await
    }
}
