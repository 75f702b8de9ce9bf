//! The protocol's messages by name: the tag of each, and typed views of the frontend and
//! backend messages the gateway acts on. Decoding borrows from the frame; nothing is copied
//! but what a message's text must be checked for (UTF-8).

use bytes::{BufMut, BytesMut};

use super::{Bind, cstr, frame_of, read_i16, read_i32};
use crate::error::CodecError;

/// Message type bytes, as the protocol names them.
pub mod tag {
    // From the client.
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const COPY_FAIL: u8 = b'f';
    pub const TERMINATE: u8 = b'X';
    pub const PASSWORD: u8 = b'p';
    // Either way.
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    // From the server.
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY: u8 = b'I';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION: u8 = b'A';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const NO_DATA: u8 = b'n';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const COPY_IN: u8 = b'G';
    pub const COPY_OUT: u8 = b'H';
    pub const COPY_BOTH: u8 = b'W';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    pub const NEGOTIATE_VERSION: u8 = b'v';
}

/// What a Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frontend<'a> {
    Query(&'a str),
    Parse {
        name: &'a str,
        sql: &'a str,
    },
    Bind(Bind),
    Describe {
        target: Target,
        name: &'a str,
    },
    Execute {
        portal: &'a str,
    },
    Close {
        target: Target,
        name: &'a str,
    },
    Sync,
    Flush,
    /// A function run by OID (the fastpath protocol).
    FunctionCall {
        oid: u32,
    },
    CopyData,
    CopyDone,
    CopyFail,
    Terminate,
    Other(u8),
}

fn target(body: &[u8]) -> Result<(Target, &str), CodecError> {
    let (&what, rest) = body
        .split_first()
        .ok_or_else(|| CodecError::Malformed("message ends early".into()))?;
    let t = match what {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        other => {
            return Err(CodecError::Malformed(format!(
                "Describe or Close of {:?}",
                other as char
            )));
        }
    };
    Ok((t, cstr(rest)?.0))
}

impl<'a> Frontend<'a> {
    pub fn decode(kind: u8, body: &'a [u8]) -> Result<Frontend<'a>, CodecError> {
        Ok(match kind {
            tag::QUERY => Frontend::Query(super::query(body)?),
            tag::PARSE => {
                let (name, sql) = super::parse(body)?;
                Frontend::Parse { name, sql }
            }
            tag::BIND => Frontend::Bind(super::bind(body)?),
            tag::DESCRIBE => {
                let (target, name) = target(body)?;
                Frontend::Describe { target, name }
            }
            tag::EXECUTE => Frontend::Execute {
                portal: super::execute(body)?,
            },
            tag::CLOSE => {
                let (target, name) = target(body)?;
                Frontend::Close { target, name }
            }
            tag::SYNC => Frontend::Sync,
            tag::FLUSH => Frontend::Flush,
            tag::FUNCTION_CALL => Frontend::FunctionCall {
                oid: read_i32(body, 0)? as u32,
            },
            tag::COPY_DATA => Frontend::CopyData,
            tag::COPY_DONE => Frontend::CopyDone,
            tag::COPY_FAIL => Frontend::CopyFail,
            tag::TERMINATE => Frontend::Terminate,
            other => Frontend::Other(other),
        })
    }
}

/// A message from the server, as far as the gateway looks into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend<'a> {
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    ParameterDescription,
    RowDescription(&'a [u8]),
    DataRow(&'a [u8]),
    CommandComplete(&'a str),
    EmptyQuery,
    PortalSuspended,
    ErrorResponse(&'a [u8]),
    NoticeResponse(&'a [u8]),
    Notification(&'a [u8]),
    ParameterStatus(&'a [u8]),
    /// The transaction status: `I` idle, `T` in a transaction, `E` in a failed one.
    ReadyForQuery(u8),
    CopyIn,
    CopyOut,
    CopyBoth,
    CopyData(&'a [u8]),
    CopyDone,
    FunctionCallResponse(&'a [u8]),
    Other(u8),
}

impl<'a> Backend<'a> {
    pub fn decode(kind: u8, body: &'a [u8]) -> Result<Backend<'a>, CodecError> {
        Ok(match kind {
            tag::DATA_ROW => Backend::DataRow(body),
            tag::PARSE_COMPLETE => Backend::ParseComplete,
            tag::BIND_COMPLETE => Backend::BindComplete,
            tag::CLOSE_COMPLETE => Backend::CloseComplete,
            tag::NO_DATA => Backend::NoData,
            tag::PARAMETER_DESCRIPTION => Backend::ParameterDescription,
            tag::ROW_DESCRIPTION => Backend::RowDescription(body),
            tag::COMMAND_COMPLETE => Backend::CommandComplete(super::query(body)?),
            tag::EMPTY_QUERY => Backend::EmptyQuery,
            tag::PORTAL_SUSPENDED => Backend::PortalSuspended,
            tag::ERROR_RESPONSE => Backend::ErrorResponse(body),
            tag::NOTICE_RESPONSE => Backend::NoticeResponse(body),
            tag::NOTIFICATION => Backend::Notification(body),
            tag::PARAMETER_STATUS => Backend::ParameterStatus(body),
            tag::READY_FOR_QUERY => Backend::ReadyForQuery(*body.first().unwrap_or(&b'I')),
            tag::COPY_IN => Backend::CopyIn,
            tag::COPY_OUT => Backend::CopyOut,
            tag::COPY_BOTH => Backend::CopyBoth,
            tag::COPY_DATA => Backend::CopyData(body),
            tag::COPY_DONE => Backend::CopyDone,
            tag::FUNCTION_CALL_RESPONSE => Backend::FunctionCallResponse(body),
            other => Backend::Other(other),
        })
    }
}

/// The fields of an ErrorResponse or NoticeResponse body; `None` if one is not UTF-8 text or
/// the body is malformed.
pub fn message_fields(body: &[u8]) -> Option<Vec<(u8, &str)>> {
    let mut fields = Vec::new();
    let mut rest = body;
    while let Some((&field, after)) = rest.split_first() {
        if field == 0 {
            return Some(fields);
        }
        let (value, after) = cstr(after).ok()?;
        fields.push((field, value));
        rest = after;
    }
    None
}

/// An ErrorResponse or NoticeResponse frame (`kind`) with these fields.
pub fn message_frame(kind: u8, fields: &[(u8, &str)]) -> BytesMut {
    let mut body = Vec::new();
    for (field, value) in fields {
        body.push(*field);
        body.extend_from_slice(value.replace('\0', " ").as_bytes());
        body.push(0);
    }
    body.push(0);
    frame_of(kind, &body)
}

/// A NotificationResponse body: the notifying backend, the channel and the payload.
pub fn notification(body: &[u8]) -> Option<(i32, &str, &str)> {
    let pid = read_i32(body, 0).ok()?;
    let (channel, rest) = cstr(body.get(4..)?).ok()?;
    let (payload, _) = cstr(rest).ok()?;
    Some((pid, channel, payload))
}

pub fn notification_frame(pid: i32, channel: &str, payload: &str) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i32(pid);
    for s in [channel, payload] {
        body.put_slice(s.replace('\0', " ").as_bytes());
        body.put_u8(0);
    }
    frame_of(tag::NOTIFICATION, &body)
}

/// A ParameterStatus body: the setting's name and value.
pub fn parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let (name, rest) = cstr(body).ok()?;
    let (value, _) = cstr(rest).ok()?;
    Some((name, value))
}

pub fn parameter_status_frame(name: &str, value: &str) -> BytesMut {
    let mut body = BytesMut::new();
    for s in [name, value] {
        body.put_slice(s.replace('\0', " ").as_bytes());
        body.put_u8(0);
    }
    frame_of(tag::PARAMETER_STATUS, &body)
}

/// The value of a FunctionCallResponse body (`None` for NULL or a malformed body).
pub fn function_result(body: &[u8]) -> Option<&[u8]> {
    let len = read_i32(body, 0).ok()?;
    body.get(4..4 + usize::try_from(len).ok()?)
}

/// The result format a FunctionCall asks for, and its argument count, read past its
/// arguments (`None` if malformed).
pub fn function_call_shape(body: &[u8]) -> Option<(usize, i16)> {
    let mut at = 4;
    let nformats = read_i16(body, at).ok()? as usize;
    at += 2 + 2 * nformats;
    let nargs = read_i16(body, at).ok()?;
    at += 2;
    for _ in 0..nargs.max(0) {
        let len = read_i32(body, at).ok()?;
        at += 4 + usize::try_from(len).unwrap_or(0);
    }
    let format = read_i16(body, at).ok()?;
    Some((nargs.max(0) as usize, format))
}
