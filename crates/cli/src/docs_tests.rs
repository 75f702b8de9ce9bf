//! The repository's docs stand on their own: they name no file outside it, and every relative
//! link in them leads to a file that exists.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Docs, scripts and sources: what a reader of the repository reads.
fn files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    walk(&path, out);
                }
            } else if path
                .extension()
                .is_some_and(|e| e == "md" || e == "rs" || e == "sh" || e == "toml")
            {
                out.push(path);
            }
        }
    }
    let mut out = vec![repo().join(".ci/run")];
    walk(&repo(), &mut out);
    out
}

#[test]
fn no_doc_or_source_names_a_file_outside_the_repository() {
    // Spelled in pieces so this file does not name them itself.
    let outside = [format!("../{}", "shared"), format!("{}.md", "DESIGN")];
    let mut found = Vec::new();
    for path in files() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o.as_str())) {
                found.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn relative_links_in_the_docs_lead_to_files_in_the_repository() {
    let mut broken = Vec::new();
    for path in files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        for link in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            let target = link.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !path.parent().unwrap().join(target).exists() {
                broken.push(format!("{}: {link}", path.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}
