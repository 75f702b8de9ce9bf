//! Audit work that runs beside the server, on its files: verification (with only public keys)
//! and reading archives back for an investigation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jitgate_audit::archive::{self, ArchivedEvent, Manifest, SegmentItem};
use jitgate_audit::{Problem, PublicKey, Report, Verifier};
use jitgate_store::{LogFile, ScanError};

use crate::audit_log::PUBLIC_KEYS_FILE;

pub struct VerifyOptions {
    pub database: PathBuf,
    /// The keys to trust; rotation events signed by them introduce later keys.
    pub keys: Vec<PublicKey>,
    /// Anchor files whose checkpoints the log must match (and not end before).
    pub anchors: Vec<PathBuf>,
    /// A local archive directory: archived ranges are walked instead of jumped.
    pub archive: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    /// The log is not what was signed.
    #[error("{0}")]
    Tampered(Problem),
    /// Verification could not run (unreadable file, bad key file).
    #[error("{0}")]
    Cannot(String),
}

/// Whether `data_dir` holds a jitgate log in `database`, so that a wrong directory is named as
/// such rather than blamed for a missing key file or an empty chain.
pub fn check_data_dir(data_dir: &Path, database: &Path) -> Result<(), VerifyFailure> {
    if !data_dir.is_dir() {
        return Err(VerifyFailure::Cannot(format!(
            "{} is not a directory: give the server's data directory ([server] data_dir), or --config",
            data_dir.display()
        )));
    }
    if !database.is_file() {
        return Err(VerifyFailure::Cannot(format!(
            "{} holds no jitgate data (no {}): give the server's data directory ([server] data_dir), or --config",
            data_dir.display(),
            database
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| database.display().to_string())
        )));
    }
    Ok(())
}

/// The public keys recorded in a data directory.
pub fn data_dir_keys(data_dir: &Path) -> Result<Vec<PublicKey>, VerifyFailure> {
    PublicKey::read_file(&data_dir.join(PUBLIC_KEYS_FILE))
        .map_err(|e| VerifyFailure::Cannot(e.to_string()))
}

/// Streams the whole log through a verifier. `progress` hears the `seq` reached now and then.
pub fn verify(
    opts: &VerifyOptions,
    progress: &mut dyn FnMut(i64),
) -> Result<Report, VerifyFailure> {
    let cannot = |e: &dyn std::fmt::Display| VerifyFailure::Cannot(e.to_string());
    let log = LogFile::open(&opts.database).map_err(|e| cannot(&e))?;
    let mut checkpoints = log.checkpoints().map_err(|e| cannot(&e))?;
    for anchor in &opts.anchors {
        checkpoints.extend(jitgate_audit::anchor::read(anchor).map_err(|e| cannot(&e))?);
    }
    let mut verifier =
        Verifier::new(opts.keys.clone(), checkpoints).map_err(VerifyFailure::Tampered)?;
    let mut segments = SegmentCache::default();
    let mut lookup =
        |gap: &jitgate_audit::Gap, name: &str| -> Result<Option<Vec<SegmentItem>>, String> {
            let Some(dir) = &opts.archive else {
                return Ok(None);
            };
            // Only the boundary's own items: one segment covers many boundaries.
            let items = segments.get(dir, name)?;
            let start = items.partition_point(|i| i.first_seq() < gap.span.first_seq);
            let end = items.partition_point(|i| i.first_seq() <= gap.span.last_seq);
            Ok(Some(items[start..end].to_vec()))
        };
    match log.scan(&mut verifier, &mut lookup, progress) {
        Ok(()) => verifier.finish().map_err(VerifyFailure::Tampered),
        Err(ScanError::Problem(p)) => Err(VerifyFailure::Tampered(p)),
        Err(ScanError::Store(e)) => Err(cannot(&e)),
    }
}

/// Segments recently read. Consecutive range boundaries usually share a segment, but a later sweep
/// can interleave its own segment with earlier ones (events a released hold had kept), so a few
/// are kept decoded.
#[derive(Default)]
struct SegmentCache {
    segments: HashMap<String, Vec<SegmentItem>>,
}

/// Decoded segments kept at most (each up to one sweep batch of events).
const CACHED_SEGMENTS: usize = 8;

impl SegmentCache {
    fn get(&mut self, dir: &Path, name: &str) -> Result<&[SegmentItem], String> {
        if !self.segments.contains_key(name) {
            if self.segments.len() >= CACHED_SEGMENTS {
                self.segments.clear();
            }
            self.segments
                .insert(name.to_owned(), read_segment(dir, name)?);
        }
        Ok(&self.segments[name])
    }
}

fn read_manifest(dir: &Path, name: &str) -> Result<Manifest, String> {
    let path = dir.join(Manifest::object_name(name));
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_segment(dir: &Path, name: &str) -> Result<Vec<SegmentItem>, String> {
    let manifest = read_manifest(dir, name)?;
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    archive::decode(&bytes, &manifest).map_err(|e| e.to_string())
}

/// Every archived event in `dir` with `since <= ts < until`, oldest first, each segment checked
/// against its manifest first.
pub fn restore(
    dir: &Path,
    since_us: Option<i64>,
    until_us: Option<i64>,
    mut each: impl FnMut(ArchivedEvent) -> std::io::Result<()>,
) -> Result<u64, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".manifest.json").map(str::to_owned))
        .collect();
    names.sort(); // names sort by their first seq
    let mut seen = HashMap::new();
    let mut count = 0;
    for name in names {
        for item in read_segment(dir, &name)? {
            if let SegmentItem::Event(e) = item
                && since_us.is_none_or(|s| e.ts_us >= s)
                && until_us.is_none_or(|u| e.ts_us < u)
                && seen.insert(e.seq, ()).is_none()
            {
                each(e).map_err(|e| e.to_string())?;
                count += 1;
            }
        }
    }
    Ok(count)
}
