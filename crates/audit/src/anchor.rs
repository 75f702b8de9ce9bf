//! File anchors: an append-only file, outside the data directory, that receives every checkpoint
//! as one JSON line. Whoever truncates the log and re-signs it cannot also rewrite what the
//! anchor already holds, so `audit verify --anchor` detects it.

use std::io::{BufRead, Write};
use std::path::Path;

use crate::AuditError;
use crate::signing::Checkpoint;

pub fn append(path: &Path, checkpoints: &[Checkpoint]) -> Result<(), AuditError> {
    let err = |e: std::io::Error| AuditError::anchor(path, None, e);
    let mut lines = Vec::new();
    for cp in checkpoints {
        serde_json::to_writer(&mut lines, cp).expect("checkpoints serialise");
        lines.push(b'\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(err)?;
    file.write_all(&lines).map_err(err)?;
    file.sync_data().map_err(err)
}

pub fn read(path: &Path) -> Result<Vec<Checkpoint>, AuditError> {
    let err = |e: std::io::Error| AuditError::anchor(path, None, e);
    let file = std::fs::File::open(path).map_err(err)?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(err)?;
        if line.trim().is_empty() {
            continue;
        }
        let cp = serde_json::from_str(&line)
            .map_err(|e| AuditError::anchor(path, Some(&format!("line {}", n + 1)), e))?;
        out.push(cp);
    }
    Ok(out)
}
