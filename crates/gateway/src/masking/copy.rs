//! COPY … TO STDOUT rows, masked by the same column rules and detectors as result rows: the
//! table's columns in the order COPY writes them, in PostgreSQL's text or CSV format.

use bytes::BytesMut;

use super::row::{Masked, TEXT, Verdict};
use super::{Counts, SLOTS_PER_RULE, SessionMasking};
use crate::codec::{self, Field};
use crate::sql::CopyFormat;

impl SessionMasking {
    /// The CopyData frame for one masked COPY row, or `None` if nothing in it needs masking.
    pub fn copy_row(
        &mut self,
        plan: &mut CopyPlan,
        row: &[u8],
        counts: &mut Counts,
    ) -> Option<BytesMut> {
        if std::mem::take(&mut plan.header_left) {
            return None; // column names
        }
        let fields = match plan.format {
            CopyFormat::Text => copy_text::split(row),
            CopyFormat::Csv { .. } => copy_csv::split(row),
        };
        let text = Field {
            name: String::new(),
            table_oid: 0,
            attnum: 0,
            type_oid: TEXT,
            format: 0,
        };
        let mut changed = false;
        let mut masked: Vec<Option<Vec<u8>>> = Vec::with_capacity(fields.len());
        for (i, field) in fields.into_iter().enumerate() {
            let Some(value) = field else {
                masked.push(None);
                continue;
            };
            let verdict = match &plan.verdicts {
                None => Verdict::Keep,
                Some(v) => match v.get(i).copied().unwrap_or(Err(())) {
                    Err(()) => Verdict::Withhold,
                    Ok(None) => Verdict::Keep,
                    Ok(Some(rule)) => Verdict::Mask {
                        slot: rule * SLOTS_PER_RULE,
                        strategy: self.rules[rule].strategy,
                    },
                },
            };
            match self.value(&text, verdict, &value, counts) {
                Masked::Same => masked.push(Some(value)),
                Masked::Withheld => {
                    counts.add(self.withheld_slot(), 1);
                    changed = true;
                    masked.push(None);
                }
                Masked::To(v) => {
                    changed = true;
                    masked.push(v);
                }
            }
        }
        if !changed {
            return None;
        }
        let body = match plan.format {
            CopyFormat::Text => copy_text::join(&masked),
            CopyFormat::Csv { .. } => copy_csv::join(&masked),
        };
        Some(codec::frame_of(b'd', &body))
    }
}

/// How the rows of one `COPY … TO STDOUT` are masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    format: CopyFormat,
    /// Each column's verdict; `None` when only detectors apply.
    verdicts: Option<Vec<Result<Option<usize>, ()>>>,
    /// A CSV header row is still to come (passed as it is).
    header_left: bool,
}

impl CopyPlan {
    pub(super) fn new(
        format: CopyFormat,
        verdicts: Option<Vec<Result<Option<usize>, ()>>>,
    ) -> CopyPlan {
        CopyPlan {
            format,
            verdicts,
            header_left: matches!(format, CopyFormat::Csv { header: true }),
        }
    }

    /// For a COPY nobody planned: every value withheld.
    pub fn withhold_all() -> CopyPlan {
        CopyPlan {
            format: CopyFormat::Text,
            verdicts: Some(Vec::new()),
            header_left: false,
        }
    }
}

/// PostgreSQL's text COPY format: tab-separated, `\N` for NULL, backslash escapes.
mod copy_text {
    pub fn split(row: &[u8]) -> Vec<Option<Vec<u8>>> {
        let row = row.strip_suffix(b"\n").unwrap_or(row);
        row.split(|&b| b == b'\t')
            .map(|f| (f != b"\\N").then(|| unescape(f)))
            .collect()
    }

    fn unescape(f: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(f.len());
        let mut it = f.iter();
        while let Some(&b) = it.next() {
            if b != b'\\' {
                out.push(b);
                continue;
            }
            match it.next() {
                Some(b'n') => out.push(b'\n'),
                Some(b't') => out.push(b'\t'),
                Some(b'r') => out.push(b'\r'),
                Some(b'b') => out.push(8),
                Some(b'f') => out.push(12),
                Some(b'v') => out.push(11),
                Some(&other) => out.push(other),
                None => out.push(b'\\'),
            }
        }
        out
    }

    pub fn join(fields: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match f {
                None => out.extend_from_slice(b"\\N"),
                Some(v) => {
                    for &b in v {
                        match b {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            8 => out.extend_from_slice(b"\\b"),
                            12 => out.extend_from_slice(b"\\f"),
                            11 => out.extend_from_slice(b"\\v"),
                            _ => out.push(b),
                        }
                    }
                }
            }
        }
        out.push(b'\n');
        out
    }
}

/// PostgreSQL's CSV COPY format with its defaults: `,` between fields, `"` quotes (doubled
/// inside), NULL as an unquoted empty field.
mod copy_csv {
    pub fn split(row: &[u8]) -> Vec<Option<Vec<u8>>> {
        let row = row.strip_suffix(b"\n").unwrap_or(row);
        let mut fields = Vec::new();
        let mut at = 0;
        loop {
            if row.get(at) == Some(&b'"') {
                let mut v = Vec::new();
                at += 1;
                while at < row.len() {
                    if row[at] == b'"' {
                        if row.get(at + 1) == Some(&b'"') {
                            v.push(b'"');
                            at += 2;
                            continue;
                        }
                        at += 1;
                        break;
                    }
                    v.push(row[at]);
                    at += 1;
                }
                fields.push(Some(v));
            } else {
                let end = row[at..]
                    .iter()
                    .position(|&b| b == b',')
                    .map_or(row.len(), |p| at + p);
                let f = &row[at..end];
                fields.push((!f.is_empty()).then(|| f.to_vec()));
                at = end;
            }
            if row.get(at) == Some(&b',') {
                at += 1;
            } else {
                break;
            }
        }
        fields
    }

    pub fn join(fields: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if let Some(v) = f {
                out.push(b'"');
                for &b in v {
                    if b == b'"' {
                        out.push(b'"');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
        out.push(b'\n');
        out
    }
}
