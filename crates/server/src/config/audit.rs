//! `[audit]`: checkpoints, anchors outside the data directory, and the archive.

use std::path::{Path, PathBuf};

use super::check::{Check, Seg, with};
use super::raw::RawConfig;
use super::{Anchor, AuditConfig, retention};

pub(super) fn audit(c: &mut Check, raw: &RawConfig, base: &Path) -> AuditConfig {
    let at = |k: &'static str| vec![Seg::Key("audit"), Seg::Key(k)];
    let a = &raw.audit;
    let data_dir = base.join(&raw.server.data_dir);
    let mut anchors = Vec::new();
    for (i, url) in a.anchors.iter().enumerate() {
        let path = with(&at("anchors"), Seg::Index(i));
        if let Some(file) = url.strip_prefix("file://") {
            let file = PathBuf::from(file);
            if !file.is_absolute() {
                c.add(path, format!("{url:?}: a file anchor needs an absolute path (file:///var/log/jitgate/checkpoints)"));
            } else if file.starts_with(&data_dir)
                || data_dir.canonicalize().is_ok_and(|d| file.starts_with(d))
            {
                c.add(path, format!("{url:?} is inside the data directory; an anchor must live elsewhere, or whoever rewrites the log rewrites it too"));
            } else {
                anchors.push(Anchor::File(file));
            }
        } else if url.starts_with("https://") || url.starts_with("http://") {
            anchors.push(Anchor::Webhook(url.clone()));
        } else {
            c.add(
                path,
                format!("{url:?} is not an anchor; use file:///PATH, https://URL or http://URL"),
            );
        }
    }
    let archive = match a.archive.strip_prefix("file://") {
        Some(dir) => PathBuf::from(dir),
        None if a.archive.contains("://") => {
            c.add(
                at("archive"),
                format!(
                    "{:?}: only a local directory is supported in this version",
                    a.archive
                ),
            );
            PathBuf::new()
        }
        None => raw.server.data_dir.join(&a.archive), // an absolute path replaces data_dir
    };
    if a.checkpoint_events == 0 {
        c.add(at("checkpoint_events"), "must be at least 1");
    }
    let retention = retention::rules(c, &raw.retention);
    AuditConfig {
        anchors,
        archive,
        checkpoint_events: a.checkpoint_events.max(1),
        checkpoint_interval: c.duration(at("checkpoint_interval"), &a.checkpoint_interval),
        retention_every: c.duration(at("retention_every"), &a.retention_every),
        retention,
    }
}
