//! The first step of reading a config: the TOML document into the raw serde shape, with every
//! structural mistake reported (syntax, unknown keys, wrong types, missing keys), not only the
//! first one serde meets.
//!
//! serde stops at its first error. So each error is located in the parsed document by its span,
//! reported, and the entry it points at is set aside; the rest is read again, until it reads
//! cleanly. What was set aside from an array shifts the indices after it; [`Removed`] maps the
//! paths of the second step's problems back to the file.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::check::{KeyPath, Seg};
use super::raw::RawConfig;

/// A key or an array index, as written in the file (keys the raw shape does not know included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Key(String),
    Index(usize),
}

/// An element set aside from the array at `array`: it was at `index`.
#[derive(Debug, Clone)]
pub(super) struct Removed {
    pub array: Vec<Part>,
    pub index: usize,
}

/// A structural mistake: where it sits, and serde's message.
pub(super) struct Mistake {
    pub offset: Option<usize>,
    pub path: Vec<Part>,
    pub message: String,
}

/// What the first step made of the text.
pub(super) struct Read {
    /// The raw shape of what could be read; `None` when nothing sensible could.
    pub raw: Option<RawConfig>,
    pub mistakes: Vec<Mistake>,
    pub removed: Vec<Removed>,
    /// Every entry set aside (keys with bad values, elements missing a key), as read.
    set_aside: Vec<Vec<Part>>,
}

impl Read {
    /// Whether anything under `key` (`principals`, `resources`) was set aside, so that checks
    /// naming its entries would report false mistakes.
    pub fn lost_from(&self, key: &str) -> bool {
        self.set_aside
            .iter()
            .any(|p| p.first() == Some(&Part::Key(key.to_owned())))
    }

    /// Maps a path into the read shape back to the file.
    pub fn in_file(&self, path: &KeyPath) -> KeyPath {
        let mut path = path.clone();
        unshift(&self.removed, &mut path);
        path
    }
}

/// A step of a path, in the raw shape's terms ([`Seg`]) or the file's ([`Part`]).
trait Step {
    fn is(&self, part: &Part) -> bool;
    fn index(&mut self) -> Option<&mut usize>;
}

impl Step for Seg {
    fn is(&self, part: &Part) -> bool {
        match (self, part) {
            (Seg::Key(a), Part::Key(b)) => *a == b.as_str(),
            (Seg::Index(a), Part::Index(b)) => a == b,
            _ => false,
        }
    }
    fn index(&mut self) -> Option<&mut usize> {
        match self {
            Seg::Index(i) => Some(i),
            Seg::Key(_) => None,
        }
    }
}

impl Step for Part {
    fn is(&self, part: &Part) -> bool {
        self == part
    }
    fn index(&mut self) -> Option<&mut usize> {
        match self {
            Part::Index(i) => Some(i),
            Part::Key(_) => None,
        }
    }
}

/// Undoes the shifts of set-aside elements in `path`, latest first: each removal's indices were
/// counted after the earlier ones.
fn unshift<S: Step>(removed: &[Removed], path: &mut [S]) {
    for r in removed.iter().rev() {
        let n = r.array.len();
        if path.len() > n
            && path[..n].iter().zip(&r.array).all(|(s, p)| s.is(p))
            && let Some(i) = path[n].index()
            && *i >= r.index
        {
            *i += 1;
        }
    }
}

/// Reads `text` into the raw shape, collecting every structural mistake.
pub(super) fn read(text: &str) -> Read {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        // A broken document cannot be read further with any confidence: report its syntax.
        let mistakes = errors
            .iter()
            .map(|e| Mistake {
                offset: e.span().map(|s| s.start),
                path: vec![],
                message: e.message().trim().to_owned(),
            })
            .collect();
        return Read {
            raw: None,
            mistakes,
            removed: vec![],
            set_aside: vec![],
        };
    }
    let span = doc.span();
    let mut root = Spanned::new(span, DeValue::Table(doc.into_inner()));
    let mut read = Read {
        raw: None,
        mistakes: vec![],
        removed: vec![],
        set_aside: vec![],
    };
    loop {
        let error = match RawConfig::deserialize(toml::de::ValueDeserializer::from(root.clone())) {
            Ok(raw) => {
                read.raw = Some(raw);
                return read;
            }
            Err(e) => e,
        };
        let message = error.message().trim().to_owned();
        let unknown_key = message.starts_with("unknown field");
        let Some(span) = error.span() else {
            read.mistakes.push(Mistake {
                offset: None,
                path: vec![],
                message,
            });
            return read;
        };
        let mut path = vec![];
        locate(&root, &span, &mut path);
        // A key set aside for a bad value is then missing: that says nothing new.
        let repeated = missing_field(&message).is_some_and(|field| {
            let mut key = path.clone();
            key.push(Part::Key(field.to_owned()));
            read.set_aside.contains(&key)
        });
        if !repeated {
            let mut in_file = path.clone();
            unshift(&read.removed, &mut in_file);
            read.mistakes.push(Mistake {
                offset: Some(span.start),
                path: in_file,
                message,
            });
        }
        if path.is_empty() || !remove(root.get_mut(), &path, &mut read.removed) {
            return read;
        }
        // An unknown key held nothing the config reads: nothing is lost by setting it aside.
        if !unknown_key {
            read.set_aside.push(path);
        }
    }
}

/// The field a "missing field `name`" message names.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The path of the deepest entry whose key or value holds `span`. A table's span is only its
/// header (`[[policies]]`), so every child is searched before the container itself.
fn locate(value: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut Vec<Part>) -> bool {
    // Each child with its key's span (a table's) or none (an array's).
    type Child<'a, 'i> = (Part, Option<Range<usize>>, &'a Spanned<DeValue<'i>>);
    let children: Vec<Child<'_, '_>> = match value.get_ref() {
        DeValue::Table(table) => table
            .iter()
            .map(|(k, v)| (Part::Key(k.get_ref().to_string()), Some(k.span()), v))
            .collect(),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (Part::Index(i), None, v))
            .collect(),
        _ => return false,
    };
    for (part, key_span, child) in children {
        path.push(part);
        if key_span.is_some_and(|k| contains(&k, span))
            || locate(child, span, path)
            || contains(&child.span(), span)
        {
            return true;
        }
        path.pop();
    }
    false
}

/// Removes the entry at `path` (non-empty) from `value`; an array element's removal is noted.
fn remove(value: &mut DeValue<'_>, path: &[Part], removed: &mut Vec<Removed>) -> bool {
    let (last, parent) = match path.split_last() {
        Some(split) => split,
        None => return false,
    };
    let mut at = value;
    for part in parent {
        at = match (at, part) {
            (DeValue::Table(t), Part::Key(k)) => match t.get_mut(k.as_str()) {
                Some(v) => v.get_mut(),
                None => return false,
            },
            (DeValue::Array(a), Part::Index(i)) => match a.get_mut(*i) {
                Some(v) => v.get_mut(),
                None => return false,
            },
            _ => return false,
        };
    }
    match (at, last) {
        (DeValue::Table(t), Part::Key(k)) => t.remove(k.as_str()).is_some(),
        (DeValue::Array(a), Part::Index(i)) if *i < a.len() => {
            let mut kept = DeArray::new();
            for (j, v) in a.iter().enumerate() {
                if j != *i {
                    kept.push(v.clone());
                }
            }
            *a = kept;
            removed.push(Removed {
                array: parent.to_vec(),
                index: *i,
            });
            true
        }
        _ => false,
    }
}

/// `policies[0].approval`, for a problem's key.
pub(super) fn path_string(path: &[Part]) -> String {
    let mut s = String::new();
    for part in path {
        match part {
            Part::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Part::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}
