//! DataRows rewritten by their row's shape: each column's verdict (kept, masked whole by a
//! rule, computed from masked data, withheld) and what to do with its values, worked out once
//! per row description. A row is written as it is read, straight into the buffer sent to the
//! client: runs of values that pass unchanged are copied whole, replacements are written in
//! place.

use std::borrow::Cow;

use bytes::BytesMut;

use super::{Counts, SLOTS_PER_RULE, SessionMasking, StatementPlan};
use crate::codec::{self, Field};
use crate::error::CodecError;
use crate::mask::{Detector, Strategy};

/// A row description with each column's verdict worked out once, not once per value: the
/// shape of the rows that follow it.
pub struct RowShape {
    columns: Vec<Column>,
}

/// How one column's values are masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// No rule masks it whole (detectors may still look inside).
    Keep,
    /// Masked whole: the counting slot of its rule, and the strategy.
    Mask { slot: usize, strategy: Strategy },
    /// It cannot be judged: every value withheld.
    Withhold,
}

struct Column {
    field: Field,
    verdict: Verdict,
    /// What to do with its values, from the verdict and the field's type.
    action: Action,
}

/// What [`SessionMasking::row_into`] does with a column's values, decided from its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Passed as it is: no rule masks it and no detector looks at it.
    Keep,
    /// Text that detectors look at: passed as it is unless one of them could find something.
    Detect,
    /// A plain text column masked whole: replaced in place.
    Replace { slot: usize, strategy: Strategy },
    /// Everything else (withheld columns, JSON, binary numbers): judged value by value.
    Judge,
}

/// What a value computed from masked data becomes: redacted (a part kept or a keyed hash of a
/// value the user chose what to compute from would tell what the mask hides), or NULL under a
/// `null` rule.
pub(super) fn computed_strategy(s: Strategy) -> Strategy {
    match s {
        Strategy::Null => Strategy::Null,
        _ => Strategy::Redact,
    }
}

impl SessionMasking {
    /// The verdict on one result column of a statement planned as `plan`.
    fn verdict(&self, f: &Field, plan: &StatementPlan) -> Verdict {
        if plan.unknown {
            return Verdict::Withhold;
        }
        if !self.by_column {
            return Verdict::Keep;
        }
        let whole = |rule: usize, computed: bool| {
            let s = self.rules[rule].strategy;
            Verdict::Mask {
                slot: rule * SLOTS_PER_RULE,
                strategy: if computed { computed_strategy(s) } else { s },
            }
        };
        if f.table_oid == 0 {
            // No table behind it: masked if its statement computes from masked data, or if a
            // rule names a bare column of its name.
            if let Some(rule) = plan.computed {
                return whole(rule, true);
            }
            return match self
                .rules
                .iter()
                .position(|r| r.columns.iter().any(|p| p.matches_name(&f.name)))
            {
                Some(rule) => whole(rule, false),
                None => Verdict::Keep,
            };
        }
        match self.catalog.column_rule(f.table_oid, f.attnum) {
            Err(()) => Verdict::Withhold,
            Ok(None) => Verdict::Keep,
            Ok(Some(rule)) => whole(rule, false),
        }
    }

    /// The shape of the rows described by `fields`, for a statement planned as `plan`.
    pub fn shape(&self, fields: Vec<Field>, plan: &StatementPlan) -> RowShape {
        let columns = fields
            .into_iter()
            .map(|field| {
                let verdict = self.verdict(&field, plan);
                let action = self.action(&field, verdict);
                Column {
                    field,
                    verdict,
                    action,
                }
            })
            .collect();
        RowShape { columns }
    }

    fn action(&self, f: &Field, verdict: Verdict) -> Action {
        match verdict {
            // Types whose text is the value itself, in either format (not JSON, whose masks
            // are JSON strings, nor jsonb, whose binary form has a version byte).
            Verdict::Mask { slot, strategy }
                if matches!(f.type_oid, TEXT | VARCHAR | BPCHAR | NAME | UNKNOWN) =>
            {
                Action::Replace { slot, strategy }
            }
            Verdict::Keep if self.detectors.is_empty() => Action::Keep,
            // A binary integer too short, written out, for any detector.
            Verdict::Keep
                if f.format == 1
                    && matches!(
                        (f.type_oid, self.shortest_detectable),
                        (INT2, 7..) | (INT4, 12..)
                    ) =>
            {
                Action::Keep
            }
            Verdict::Keep if f.format == 0 || is_text_type(f.type_oid) => Action::Detect,
            _ => Action::Judge,
        }
    }

    /// The DataRow body masked, or `None` if nothing in it needs masking.
    #[cfg(test)]
    pub fn row(
        &mut self,
        shape: Option<&RowShape>,
        body: &[u8],
        counts: &mut Counts,
    ) -> Result<Option<BytesMut>, CodecError> {
        let mut out = BytesMut::with_capacity(body.len() + 64);
        Ok(self
            .row_into(shape, body, counts, &[], &mut out)?
            .then_some(out))
    }

    /// Appends `before` and then the masked DataRow frame to `out` if anything in the row needs
    /// masking, and says whether it did; otherwise (and on error) leaves `out` as it was. The
    /// row is written as it is read, straight into the buffer sent to the client (`before` is
    /// what precedes the row there): runs of values that pass unchanged are copied whole,
    /// replacements are written in place, and nothing is allocated for a value seen before.
    pub fn row_into(
        &mut self,
        shape: Option<&RowShape>,
        body: &[u8],
        counts: &mut Counts,
        before: &[u8],
        out: &mut BytesMut,
    ) -> Result<bool, CodecError> {
        let mut values = codec::data_row_values(body)?;
        let declared = values.count_declared();
        let mark = out.len();
        // Where the row's frame begins in `out`, once a first changed value has begun it.
        let mut start = None;
        // Where the values not yet copied to `out` begin: each runs from its length to its end.
        let mut unwritten = values.position();
        // Each value's column, in order; past the description's end (or without one), none.
        let mut columns = shape.map(|s| s.columns.iter());
        loop {
            let value_start = values.position();
            let value = match values.next() {
                None => break,
                Some(Ok(range)) => range.map(|r| &body[r]),
                Some(Err(e)) => {
                    out.truncate(mark);
                    return Err(e);
                }
            };
            let column = columns
                .as_mut()
                .and_then(Iterator::next)
                .map(|c| (&c.field, c.verdict, c.action));
            let Some(v) = value else {
                continue; // NULL stays NULL
            };
            // Before a value is written changed: the unchanged ones before it, as they came.
            let mut flush_unchanged = |out: &mut BytesMut| {
                start.get_or_insert_with(|| {
                    out.extend_from_slice(before);
                    codec::begin_data_row(declared, out)
                });
                out.extend_from_slice(&body[unwritten..value_start]);
            };
            match column {
                None => {
                    // No description to judge it by: fail closed.
                    flush_unchanged(out);
                    counts.add(self.withheld_slot(), 1);
                    codec::put_row_value(None, out);
                }
                Some((_, _, Action::Keep)) => continue,
                Some((f, _, Action::Detect)) if !self.plausible(strip(f, v)) => continue,
                // A whole-column mask of plain text, written in place.
                Some((_, _, Action::Replace { slot, strategy })) => {
                    flush_unchanged(out);
                    counts.add(slot, 1);
                    codec::put_row_value_with(out, |out| {
                        self.masker.write(strategy, v, &mut self.memo, out)
                    });
                }
                Some((f, verdict, _)) => match self.value(f, verdict, v, counts) {
                    Masked::Same => continue,
                    Masked::Withheld => {
                        flush_unchanged(out);
                        counts.add(self.withheld_slot(), 1);
                        codec::put_row_value(None, out);
                    }
                    Masked::To(v) => {
                        flush_unchanged(out);
                        codec::put_row_value(v.as_deref(), out);
                    }
                },
            }
            unwritten = values.position();
        }
        let Some(start) = start else {
            return Ok(false);
        };
        out.extend_from_slice(&body[unwritten..values.position()]);
        codec::end_data_row(start, out);
        Ok(true)
    }

    /// Whether any rule's detectors could find something in these bytes.
    pub(super) fn plausible(&self, bytes: &[u8]) -> bool {
        bytes.len() >= self.shortest_detectable && Detector::any_plausible(&self.detectors, bytes)
    }

    pub(super) fn value(
        &mut self,
        f: &Field,
        verdict: Verdict,
        v: &[u8],
        counts: &mut Counts,
    ) -> Masked {
        // Only a text type can carry a mask: `*****` in an integer column, even in text format,
        // is a value no typed client can parse. Other types are withheld when masked.
        let text_like = is_text_type(f.type_oid);
        match verdict {
            Verdict::Withhold => return Masked::Withheld,
            Verdict::Mask { slot, strategy } => {
                counts.add(slot, 1);
                if strategy == Strategy::Null {
                    return Masked::To(None);
                }
                // A masked value of a non-text type has no valid encoding.
                let mut digits = itoa::Buffer::new();
                let Some(text) = text_like.then(|| readable(f, v, &mut digits)).flatten() else {
                    return Masked::Withheld;
                };
                return Masked::To(
                    self.masker
                        .replace(strategy, &text, &mut self.memo)
                        .map(|s| encode(f, s, true)),
                );
            }
            Verdict::Keep => {}
        }
        if self.detectors.is_empty() {
            return Masked::Same;
        }
        // Text is judged before its UTF-8 is checked; binary numbers once they are digits.
        let is_text = f.format == 0 || text_like;
        if is_text && !self.plausible(strip(f, v)) {
            return Masked::Same;
        }
        let mut digits = itoa::Buffer::new();
        let Some(text) = readable(f, v, &mut digits) else {
            // A binary value the gateway cannot read as text or digits.
            return if is_opaque_safe(f.type_oid) {
                Masked::Same
            } else {
                Masked::Withheld
            };
        };
        if !is_text && !self.plausible(text.as_bytes()) {
            return Masked::Same;
        }
        let mut current: Option<String> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.detectors.is_empty() {
                continue;
            }
            let mut found = [0u32; 6];
            let input = current.as_deref().unwrap_or(&text);
            let result = self.masker.scrub(
                &rule.detectors,
                rule.strategy,
                input,
                &mut found,
                &mut self.memo,
            );
            for (d, &n) in found.iter().enumerate() {
                if n > 0 {
                    counts.add(i * SLOTS_PER_RULE + 1 + d, n as u64);
                }
            }
            match result {
                None => {}
                Some(None) => return Masked::To(None),
                Some(Some(s)) => current = Some(s),
            }
        }
        match current {
            None => Masked::Same,
            // Found in a value whose type cannot carry the mask (a card number in a bigint):
            // withhold it.
            Some(_) if !text_like || std::str::from_utf8(strip(f, v)).is_err() => Masked::Withheld,
            Some(s) => Masked::To(Some(encode(f, s, false))),
        }
    }
}

pub(super) enum Masked {
    Same,
    Withheld,
    To(Option<Vec<u8>>),
}

pub(super) const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const BPCHAR: u32 = 1042;
const NAME: u32 = 19;
const JSON: u32 = 114;
const JSONB: u32 = 3802;
const XML: u32 = 142;
const UNKNOWN: u32 = 705;
const INT2: u32 = 21;
const INT4: u32 = 23;
const INT8: u32 = 20;
const NUMERIC: u32 = 1700;

/// Types whose binary form is their text (jsonb after a version byte).
pub(super) fn is_text_type(oid: u32) -> bool {
    matches!(
        oid,
        TEXT | VARCHAR | BPCHAR | NAME | JSON | JSONB | XML | UNKNOWN
    )
}

/// Binary types that carry no text and no long digit strings: passed through as they are.
fn is_opaque_safe(oid: u32) -> bool {
    matches!(
        oid,
        16 | 700 | 701 | 1082 | 1083 | 1114 | 1184 | 1186 | 1266 | 2950 | 26 | 18
    )
}

/// The binary value without jsonb's version byte.
pub(super) fn strip<'a>(f: &Field, v: &'a [u8]) -> &'a [u8] {
    if f.format == 1 && f.type_oid == JSONB {
        v.get(1..).unwrap_or_default()
    } else {
        v
    }
}

/// The value as text detectors can read: text as it is (lossily if it is not UTF-8), binary
/// integers and numerics as their digits (integers written into `digits`, not allocated).
pub(super) fn readable<'a>(
    f: &Field,
    v: &'a [u8],
    digits: &'a mut itoa::Buffer,
) -> Option<Cow<'a, str>> {
    if f.format == 0 || is_text_type(f.type_oid) {
        let v = strip(f, v);
        // The strict check is the fast one; the lossy one only for what fails it.
        return Some(match std::str::from_utf8(v) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(v),
        });
    }
    Some(match (f.type_oid, v.len()) {
        (INT2, 2) => Cow::Borrowed(digits.format(i16::from_be_bytes([v[0], v[1]]))),
        (INT4, 4) => Cow::Borrowed(digits.format(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
        (INT8, 8) => Cow::Borrowed(digits.format(i64::from_be_bytes(v.try_into().ok()?))),
        (NUMERIC, _) => Cow::Owned(numeric_digits(v)?),
        _ => return None,
    })
}

/// The digits of a binary numeric, base-10000 groups written out (sign and point dropped):
/// enough to find a card number stored as a number.
fn numeric_digits(v: &[u8]) -> Option<String> {
    let n = i16::from_be_bytes([*v.first()?, *v.get(1)?]);
    let mut out = String::new();
    for i in 0..n.max(0) as usize {
        let at = 8 + 2 * i;
        let d = i16::from_be_bytes([*v.get(at)?, *v.get(at + 1)?]);
        if out.is_empty() {
            out.push_str(&d.to_string());
        } else {
            out.push_str(&format!("{d:04}"));
        }
    }
    Some(out)
}

/// A masked value in the column's format. A `whole` JSON value becomes a JSON string, so the
/// client's parser still accepts it; spans masked inside JSON text keep it valid as they are.
pub(super) fn encode(f: &Field, s: String, whole: bool) -> Vec<u8> {
    let json = f.type_oid == JSON || f.type_oid == JSONB;
    let text = if json && whole {
        serde_json::Value::String(s).to_string()
    } else {
        s
    };
    if f.format == 1 && f.type_oid == JSONB {
        let mut v = vec![1u8];
        v.extend_from_slice(text.as_bytes());
        return v;
    }
    text.into_bytes()
}
