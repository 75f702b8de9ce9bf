//! The checker: problems collected while raw values become domain values, each at the key path
//! it concerns, and that path mapped back to the line of the file it was written on.

use std::fmt;
use std::time::Duration;

use glob::Pattern;
use jitgate_core::{Selector, duration};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// Where a value sits in the file: `policies[0].approval.approvers`.
pub(super) type KeyPath = Vec<Seg>;

/// Collects problems while converting raw values.
pub(super) struct Check {
    problems: Vec<(KeyPath, String)>,
    /// Every principal selector read, checked against the principals once they are all known.
    pub selectors: Vec<(KeyPath, Selector)>,
    /// Whether checks that one entry names another run (see `Config::parse_in`).
    pub cross_refs: bool,
}

impl Check {
    pub fn new(cross_refs: bool) -> Self {
        Check {
            problems: vec![],
            selectors: vec![],
            cross_refs,
        }
    }

    /// Every problem found, if any.
    pub fn finish(&mut self) -> Result<(), Vec<(KeyPath, String)>> {
        match std::mem::take(&mut self.problems) {
            problems if problems.is_empty() => Ok(()),
            problems => Err(problems),
        }
    }

    pub fn add(&mut self, path: KeyPath, message: impl Into<String>) {
        self.problems.push((path, message.into()));
    }

    pub fn ok<T, E: fmt::Display>(&mut self, path: KeyPath, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.add(path, e.to_string())).ok()
    }

    /// Each item that `parse` takes; each one it refuses is a problem, worded by `why`.
    pub fn each<T>(
        &mut self,
        path: KeyPath,
        items: &[String],
        parse: impl Fn(&str) -> Option<T>,
        why: impl Fn(&str) -> String,
    ) -> Vec<T> {
        items
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                self.ok(with(&path, Seg::Index(i)), parse(s).ok_or_else(|| why(s)))
            })
            .collect()
    }

    pub fn selectors(&mut self, path: KeyPath, items: &[String]) -> Vec<Selector> {
        let mut read = Vec::new();
        for (i, s) in items.iter().enumerate() {
            let at = with(&path, Seg::Index(i));
            if let Some(s) = self.ok(at.clone(), s.parse::<Selector>()) {
                self.selectors.push((at, s.clone()));
                read.push(s);
            }
        }
        read
    }

    pub fn duration(&mut self, path: KeyPath, text: &str) -> Duration {
        self.ok(path, duration::parse(text))
            .unwrap_or(Duration::from_secs(1))
    }

    pub fn patterns(&mut self, path: KeyPath, items: &[String], what: &str) -> Vec<Pattern> {
        if items.is_empty() {
            self.add(path.clone(), format!("must name at least one {what}"));
        }
        items
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                self.ok(
                    with(&path, Seg::Index(i)),
                    Pattern::new(s).map_err(|e| format!("invalid glob {s:?}: {e}")),
                )
            })
            .collect()
    }
}

pub(super) fn with(path: &KeyPath, seg: Seg) -> KeyPath {
    let mut p = path.clone();
    p.push(seg);
    p
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

pub(super) fn path_string(path: &KeyPath) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Maps a key path back to the line it was written on, using toml_edit's spans.
pub(super) struct Locator<'a> {
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    /// The line of the deepest part of `path` that exists in the file.
    pub fn line(&self, path: &KeyPath) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item = doc.as_item();
        let mut span = None;
        for seg in path {
            let next = match seg {
                Seg::Key(k) => item.get(*k),
                Seg::Index(i) => item.get(*i),
            };
            match next {
                Some(n) => {
                    item = n;
                    span = n.span().or(span);
                }
                None => break,
            }
        }
        span.map(|s| line_of(self.text, s.start))
    }
}
