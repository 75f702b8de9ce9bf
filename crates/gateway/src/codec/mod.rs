//! PostgreSQL wire-protocol framing: the startup packet, frame boundaries, and the few frontend
//! messages the gateway looks inside (Query, Parse, Bind). Everything else is relayed as opaque
//! frames. These functions see untrusted bytes: they never panic and never allocate more than
//! the frame in hand; a fuzz target and property tests exercise them.

use bytes::{BufMut, BytesMut};

use crate::error::CodecError;

mod messages;

pub use messages::{
    Backend, Frontend, Target, function_call_shape, function_result, message_fields, message_frame,
    notification, notification_frame, parameter_status, parameter_status_frame, tag,
};

pub const SSL_REQUEST: i32 = 80877103;
pub const GSSENC_REQUEST: i32 = 80877104;
pub const CANCEL_REQUEST: i32 = 80877102;
pub const PROTOCOL_3_0: i32 = 196608;
/// PostgreSQL's own limit for a startup packet.
pub const MAX_STARTUP: usize = 10_000;

/// What a client's first packet asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    Ssl,
    GssEnc,
    Cancel { pid: i32, secret: i32 },
    Start { params: Vec<(String, String)> },
}

/// The length of a startup packet (from its first 4 bytes), checked.
pub fn startup_len(head: [u8; 4]) -> Result<usize, CodecError> {
    let len = i32::from_be_bytes(head);
    if !(8..=MAX_STARTUP as i32).contains(&len) {
        return Err(CodecError::Malformed(format!(
            "startup packet length {len} is out of range"
        )));
    }
    Ok(len as usize)
}

/// Parses a startup packet's body (everything after its length).
pub fn parse_startup(body: &[u8]) -> Result<Startup, CodecError> {
    let code = read_i32(body, 0)?;
    match code {
        SSL_REQUEST => Ok(Startup::Ssl),
        GSSENC_REQUEST => Ok(Startup::GssEnc),
        CANCEL_REQUEST => Ok(Startup::Cancel {
            pid: read_i32(body, 4)?,
            secret: read_i32(body, 8)?,
        }),
        PROTOCOL_3_0 => {
            let mut params = Vec::new();
            let mut rest = &body[4..];
            loop {
                let (key, after) = cstr(rest)?;
                if key.is_empty() {
                    break;
                }
                let (value, after) = cstr(after)?;
                params.push((key.to_owned(), value.to_owned()));
                rest = after;
            }
            Ok(Startup::Start { params })
        }
        other => Err(CodecError::Malformed(format!(
            "unsupported protocol version or request code {other}"
        ))),
    }
}

/// If `buf` starts with a complete regular frame (type byte, 4-byte length), its type and total
/// size; `None` if more bytes are needed. A length over `max` is an error.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, CodecError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(CodecError::Malformed(format!(
            "message length {len} is below 4"
        )));
    }
    let total = len as usize + 1;
    if total > max {
        return Err(CodecError::TooLarge { size: total, max });
    }
    Ok((buf.len() >= total).then_some((buf[0], total)))
}

/// The SQL of a Query ('Q') message body.
pub fn query(body: &[u8]) -> Result<&str, CodecError> {
    Ok(cstr(body)?.0)
}

/// A Parse ('P') message body: statement name and SQL.
pub fn parse(body: &[u8]) -> Result<(&str, &str), CodecError> {
    let (name, rest) = cstr(body)?;
    let (sql, _) = cstr(rest)?;
    Ok((name, sql))
}

/// A Bind ('B') message body: portal, statement, and the parameters as text where they are text
/// format (binary ones as `<binary N bytes>`, NULL as `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub portal: String,
    pub statement: String,
    pub params: Vec<Option<String>>,
    /// Result column formats as sent: none (all text), one (for all), or one per column.
    pub result_formats: Vec<i16>,
}

pub fn bind(body: &[u8]) -> Result<Bind, CodecError> {
    let (portal, rest) = cstr(body)?;
    let (statement, rest) = cstr(rest)?;
    let mut at = 0;
    let nformats = read_i16(rest, at)? as usize;
    at += 2;
    let mut formats = Vec::with_capacity(nformats.min(1024));
    for _ in 0..nformats {
        formats.push(read_i16(rest, at)?);
        at += 2;
    }
    let nparams = read_i16(rest, at)?;
    if nparams < 0 {
        return Err(CodecError::Malformed("negative parameter count".into()));
    }
    at += 2;
    let mut params = Vec::with_capacity((nparams as usize).min(1024));
    for i in 0..nparams as usize {
        let Some(range) = read_value(rest, &mut at, "parameter runs past the message")? else {
            params.push(None);
            continue;
        };
        let format = match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => *formats.get(i).unwrap_or(&0),
        };
        let value = &rest[range];
        params.push(Some(match (format, std::str::from_utf8(value)) {
            (0, Ok(text)) => text.to_owned(),
            _ => format!("<binary {} bytes>", value.len()),
        }));
    }
    let nresults = read_i16(rest, at)?;
    if nresults < 0 {
        return Err(CodecError::Malformed("negative result format count".into()));
    }
    at += 2;
    let mut result_formats = Vec::with_capacity((nresults as usize).min(1024));
    for _ in 0..nresults {
        result_formats.push(read_i16(rest, at)?);
        at += 2;
    }
    Ok(Bind {
        portal: portal.to_owned(),
        statement: statement.to_owned(),
        params,
        result_formats,
    })
}

/// One column of a RowDescription ('T').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The table the column comes from (0 for an expression), and its attribute number.
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// The fields of a RowDescription ('T') body.
pub fn row_description(body: &[u8]) -> Result<Vec<Field>, CodecError> {
    let n = read_i16(body, 0)?;
    let mut rest = &body[2..];
    let mut fields = Vec::with_capacity((n.max(0) as usize).min(1664));
    for _ in 0..n {
        let (name, after) = cstr(rest)?;
        let fixed = after
            .get(..18)
            .ok_or_else(|| CodecError::Malformed("row description ends early".into()))?;
        fields.push(Field {
            name: name.to_owned(),
            table_oid: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]),
            attnum: i16::from_be_bytes([fixed[4], fixed[5]]),
            type_oid: u32::from_be_bytes([fixed[6], fixed[7], fixed[8], fixed[9]]),
            format: i16::from_be_bytes([fixed[16], fixed[17]]),
        });
        rest = &after[18..];
    }
    Ok(fields)
}

/// The values of a DataRow ('D') body: byte ranges within `body`, `None` for NULL.
pub fn data_row(body: &[u8]) -> Result<Vec<Option<std::ops::Range<usize>>>, CodecError> {
    data_row_values(body)?.collect()
}

/// The values of a DataRow body one at a time, as [`data_row`] gives them, for a reader that
/// needs each only once (masking writes the row out as it reads it).
pub fn data_row_values(body: &[u8]) -> Result<DataRowValues<'_>, CodecError> {
    let n = read_i16(body, 0)?;
    Ok(DataRowValues {
        body,
        at: 2,
        left: n.max(0),
    })
}

pub struct DataRowValues<'a> {
    body: &'a [u8],
    at: usize,
    left: i16,
}

impl DataRowValues<'_> {
    /// How many values the row says it has.
    pub fn count_declared(&self) -> i16 {
        self.left
    }

    /// Where in the body the next value's length is, or where the values ended.
    pub fn position(&self) -> usize {
        self.at
    }
}

impl Iterator for DataRowValues<'_> {
    type Item = Result<Option<std::ops::Range<usize>>, CodecError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let value = read_value(self.body, &mut self.at, "value runs past the row");
        // After a malformed value nothing further can be read.
        self.left = if value.is_ok() { self.left - 1 } else { 0 };
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // No lower bound: a malformed value ends the row early.
        (0, Some(self.left as usize))
    }
}

/// A DataRow frame with the given values.
pub fn data_row_frame<'a>(values: impl ExactSizeIterator<Item = Option<&'a [u8]>>) -> BytesMut {
    let mut out = BytesMut::new();
    put_data_row(values, &mut out);
    out
}

/// Appends a DataRow frame with the given values to `out`.
pub fn put_data_row<'a>(
    values: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
    out: &mut BytesMut,
) {
    let start = begin_data_row(values.len() as i16, out);
    for v in values {
        put_row_value(v, out);
    }
    end_data_row(start, out);
}

/// Starts a DataRow frame of `n` values at the end of `out` and says where it starts, for
/// [`end_data_row`] to fill in its length once the values are appended.
pub fn begin_data_row(n: i16, out: &mut BytesMut) -> usize {
    let start = out.len();
    out.put_u8(b'D');
    out.put_i32(0);
    out.put_i16(n);
    start
}

/// Appends one value of a DataRow (`None` for NULL).
pub fn put_row_value(v: Option<&[u8]>, out: &mut BytesMut) {
    match v {
        None => out.put_i32(-1),
        Some(v) => {
            out.put_i32(v.len() as i32);
            out.put_slice(v);
        }
    }
}

/// Appends one value of a DataRow that `write` appends to `out` in place; if `write` says
/// `false` (having appended nothing), the value is NULL.
#[inline]
pub fn put_row_value_with(out: &mut BytesMut, write: impl FnOnce(&mut BytesMut) -> bool) {
    let len_at = out.len();
    out.put_i32(0);
    if write(out) {
        let len = (out.len() - len_at - 4) as i32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    } else {
        out.truncate(len_at);
        out.put_i32(-1);
    }
}

/// Fills in the length of the DataRow frame begun at `start`.
pub fn end_data_row(start: usize, out: &mut BytesMut) {
    let len = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// The portal named by an Execute ('E') message body.
pub fn execute(body: &[u8]) -> Result<&str, CodecError> {
    Ok(cstr(body)?.0)
}

/// The SQLSTATE of an ErrorResponse ('E') body from the server.
pub fn error_code(body: &[u8]) -> Option<String> {
    let mut rest = body;
    while let Some((&field, after)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let (value, after) = cstr(after).ok()?;
        if field == b'C' {
            return Some(value.to_owned());
        }
        rest = after;
    }
    None
}

/// An ErrorResponse frame.
pub fn error_response(severity: &str, code: &str, message: &str) -> BytesMut {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.replace('\0', " ").as_bytes());
        body.push(0);
    }
    body.push(0);
    frame_of(b'E', &body)
}

/// A frame with the given type and body.
pub fn frame_of(kind: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(kind);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
    out
}

fn read_i32(buf: &[u8], at: usize) -> Result<i32, CodecError> {
    buf.get(at..at + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| CodecError::Malformed("message ends early".into()))
}

/// A length-prefixed value at `*at` (length -1 is NULL) as a byte range of `buf`, moving `*at`
/// past it; `overrun` is the error when the length reaches past the end.
#[inline]
fn read_value(
    buf: &[u8],
    at: &mut usize,
    overrun: &str,
) -> Result<Option<std::ops::Range<usize>>, CodecError> {
    let len = read_i32(buf, *at)?;
    *at += 4;
    if len < 0 {
        return Ok(None);
    }
    let end = at
        .checked_add(len as usize)
        .filter(|e| *e <= buf.len())
        .ok_or_else(|| CodecError::Malformed(overrun.into()))?;
    let range = *at..end;
    *at = end;
    Ok(Some(range))
}

fn read_i16(buf: &[u8], at: usize) -> Result<i16, CodecError> {
    buf.get(at..at + 2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| CodecError::Malformed("message ends early".into()))
}

/// A NUL-terminated UTF-8 string and what follows it.
fn cstr(buf: &[u8]) -> Result<(&str, &[u8]), CodecError> {
    let end = buf
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| CodecError::Malformed("string without terminator".into()))?;
    let s = std::str::from_utf8(&buf[..end])
        .map_err(|_| CodecError::Malformed("string is not UTF-8".into()))?;
    Ok((s, &buf[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of_len(f: &[u8]) -> (u8, usize) {
        frame(f, 1 << 20).unwrap().expect("a whole frame")
    }
    use proptest::prelude::*;

    fn startup_bytes(params: &[(String, String)]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::startup_message(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut buf,
        )
        .unwrap();
        buf.to_vec()
    }

    fn text() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,40}"
    }

    proptest! {
        #[test]
        fn startup_round_trips(params in proptest::collection::vec(("[^\u{0}]{1,20}", text()), 0..8)) {
            let bytes = startup_bytes(&params);
            let len = startup_len([bytes[0], bytes[1], bytes[2], bytes[3]]);
            prop_assume!(len.is_ok());
            prop_assert_eq!(parse_startup(&bytes[4..]).unwrap(), Startup::Start { params });
        }

        #[test]
        fn query_and_parse_round_trip(sql in text(), name in text()) {
            let mut buf = BytesMut::new();
            postgres_protocol::message::frontend::query(&sql, &mut buf).unwrap();
            let (kind, total) = frame(&buf, 1 << 20).unwrap().unwrap();
            prop_assert_eq!((kind, total), (b'Q', buf.len()));
            prop_assert_eq!(query(&buf[5..]).unwrap(), sql.as_str());
            let mut buf = BytesMut::new();
            postgres_protocol::message::frontend::parse(&name, &sql, std::iter::empty(), &mut buf).unwrap();
            prop_assert_eq!(parse(&buf[5..]).unwrap(), (name.as_str(), sql.as_str()));
        }

        #[test]
        fn bind_round_trips(params in proptest::collection::vec(proptest::option::of(text()), 0..10), portal in text()) {
            let mut buf = BytesMut::new();
            postgres_protocol::message::frontend::bind(
                &portal,
                "s1",
                Some(0),
                params.iter(),
                |p, out| match p {
                    Some(t) => { out.extend_from_slice(t.as_bytes()); Ok(postgres_protocol::IsNull::No) }
                    None => Ok(postgres_protocol::IsNull::Yes),
                },
                Some(1),
                &mut buf,
            ).map_err(|_| ()).unwrap();
            let b = bind(&buf[5..]).unwrap();
            prop_assert_eq!(b, Bind { portal: portal.clone(), statement: "s1".into(), params, result_formats: vec![1] });
        }

        #[test]
        fn data_rows_round_trip(values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)), 0..12)) {
            let frame = data_row_frame(values.iter().map(|v| v.as_deref()));
            let (kind, total) = frame_of_len(&frame);
            prop_assert_eq!((kind, total), (b'D', frame.len()));
            let body = &frame[5..];
            let ranges = data_row(body).unwrap();
            let back: Vec<Option<Vec<u8>>> = ranges.into_iter().map(|r| r.map(|r| body[r].to_vec())).collect();
            prop_assert_eq!(back, values);
        }

        #[test]
        fn row_descriptions_and_data_rows_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = row_description(&body);
            let _ = data_row(&body);
        }

        #[test]
        fn frames_are_found_in_any_split(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..6), cut in 0usize..2000) {
            let mut all = BytesMut::new();
            for b in &bodies { all.extend_from_slice(&frame_of(b'd', b)); }
            let cut = cut.min(all.len());
            let head = &all[..cut];
            // Whole frames inside the cut are found, a partial one asks for more.
            let mut at = 0;
            let mut found = 0;
            while let Some((_, total)) = frame(&head[at..], 1 << 20).unwrap() { at += total; found += 1; }
            let whole: usize = bodies.iter().scan(0, |acc, b| { *acc += b.len() + 5; Some(*acc) }).filter(|end| *end <= cut).count();
            prop_assert_eq!(found, whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_startup(&bytes);
            let _ = frame(&bytes, 1 << 16);
            let _ = bind(&bytes);
            let _ = parse(&bytes);
            let _ = query(&bytes);
            let _ = error_code(&bytes);
        }
    }

    #[test]
    fn refusals_are_clear() {
        assert!(startup_len(100_000i32.to_be_bytes()).is_err());
        assert!(startup_len(3i32.to_be_bytes()).is_err());
        let huge = [b'Q', 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            frame(&huge, 1 << 20),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            frame(&[b'Q', 0, 0, 0, 1], 1 << 20),
            Err(CodecError::Malformed(_))
        ));
        assert_eq!(
            parse_startup(
                &CANCEL_REQUEST
                    .to_be_bytes()
                    .iter()
                    .chain(&7i32.to_be_bytes())
                    .chain(&9i32.to_be_bytes())
                    .copied()
                    .collect::<Vec<_>>()
            )
            .unwrap(),
            Startup::Cancel { pid: 7, secret: 9 }
        );
        let e = error_response("FATAL", "28000", "no grant");
        assert_eq!(error_code(&e[5..]).as_deref(), Some("28000"));
    }
}
