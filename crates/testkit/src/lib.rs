//! Outside tools the tests run (a Python module, an npm package, a Debian package), installed
//! when missing so that `cargo test --workspace` passes on a fresh machine with nothing done
//! first.
//!
//! Each `require_*` function checks first and installs only when the check fails. The result is
//! remembered for the rest of the process, and installs are serialised by a file lock in the
//! system's temporary directory, so parallel tests, test binaries and worktrees on one machine
//! never run two installers at once (pip and dpkg both break when they race). When a tool
//! cannot be had, the test panics with what was tried and what the installer said.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// A Python module for `python3`: `require_python_module("psycopg", "psycopg[binary]")`.
/// Installs `requirement` with `python3 -m pip install` when `import module` fails.
pub fn require_python_module(module: &str, requirement: &str) {
    let check = || run(Command::new("python3").args(["-c", &format!("import {module}")]));
    ensure(&format!("python:{module}"), || {
        if check().is_ok() {
            return Ok(());
        }
        run(Command::new("python3").args(["-m", "pip", "install", "-q", requirement]))?;
        check().map_err(|e| format!("installed {requirement}, yet `import {module}` fails: {e}"))
    })
    .map(drop)
    .unwrap_or_else(|e| panic!("this test needs the Python module {module}: {e}"))
}

/// An npm package installed into the test tools' own cache directory (never globally). Returns
/// its `node_modules` directory: give it to node as `NODE_PATH`, or run `node_modules/.bin/…`.
/// `spec` is what `npm install` takes, e.g. `oidc-provider@8`.
pub fn require_npm_package(name: &str, spec: &str) -> PathBuf {
    let prefix = cache_dir().join("npm");
    let modules = prefix.join("node_modules");
    let present = || modules.join(name).join("package.json").is_file();
    ensure(&format!("npm:{spec}"), || {
        if present() {
            return Ok(());
        }
        std::fs::create_dir_all(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(spec))?;
        if present() {
            Ok(())
        } else {
            Err(format!(
                "npm installed {spec}, yet {} is missing",
                modules.join(name).display()
            ))
        }
    })
    .unwrap_or_else(|e| panic!("this test needs the npm package {spec}: {e}"));
    modules
}

/// A program from a Debian package: `require_command("chromium", "chromium")`. Returns the
/// program's path. Installs with `apt-get install` (after `apt-get update` when the package is
/// not found at first), which needs root, as on the project's machines and CI.
pub fn require_command(program: &str, package: &str) -> PathBuf {
    let found = || which(program);
    ensure(&format!("apt:{package}"), || {
        if found().is_some() {
            return Ok(());
        }
        let install = || {
            run(Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        if install().is_err() {
            run(Command::new("apt-get").args(["update", "-q"]))?;
            install()?;
        }
        found()
            .map(drop)
            .ok_or_else(|| format!("installed {package}, yet {program} is not on PATH"))
    })
    .unwrap_or_else(|e| panic!("this test needs {program} (Debian package {package}): {e}"));
    found().unwrap_or_else(|| panic!("{program} vanished from PATH"))
}

/// The PostgreSQL client, which tests run against the real server and the gateway.
pub fn psql() -> PathBuf {
    require_command("psql", "postgresql-client")
}

/// `pgbench`, which Debian ships with the server package.
pub fn pgbench() -> PathBuf {
    require_command("pgbench", "postgresql-15")
}

/// The MariaDB client.
pub fn mysql() -> PathBuf {
    require_command("mysql", "mariadb-client")
}

/// `openssl`, for test certificates.
pub fn openssl() -> PathBuf {
    require_command("openssl", "openssl")
}

/// Where installs that are not global (npm packages) live: `JITGATE_TEST_TOOLS`, or
/// `target/test-tools` of this workspace.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("JITGATE_TEST_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools"),
    }
}

/// Runs `install` at most once per process for `key`, holding the machine-wide install lock,
/// and remembers what it said.
fn ensure(key: &str, install: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    static DONE: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let mut done = DONE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(result) = done.get(key) {
        return result.clone();
    }
    let result = with_install_lock(install);
    done.insert(key.to_owned(), result.clone());
    result
}

fn with_install_lock<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let path = std::env::temp_dir().join("jitgate-test-tools.lock");
    let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("locking {}: {e}", path.display()))?;
    let result = f();
    drop(file); // closing the file releases the lock
    result
}

/// Runs `cmd`, returning what it printed on failure (or that it could not start).
fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&out.stderr).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stdout));
    Err(format!("{shown} failed ({}): {}", out.status, said.trim()))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_present_module_needs_no_install() {
        require_python_module("json", "/nonexistent/never-installed");
    }

    #[test]
    #[should_panic(expected = "this test needs the Python module jitgate_no_such_module")]
    fn a_module_that_cannot_be_installed_fails_with_what_the_installer_said() {
        require_python_module("jitgate_no_such_module", "/nonexistent/never-installed");
    }

    #[test]
    fn a_result_is_remembered_for_the_process() {
        let mut calls = 0;
        for _ in 0..3 {
            let _ = ensure("test:remembered", || {
                calls += 1;
                Err("no".into())
            });
        }
        assert_eq!(calls, 1);
    }

    /// Installs from the registries: run by hand (`cargo test -p jitgate-testkit -- --ignored`)
    /// after changing the npm or apt paths; the suite itself exercises only what its tests need.
    #[test]
    #[ignore]
    fn npm_and_apt_installs_work() {
        let modules = require_npm_package("is-number", "is-number@7.0.0");
        assert!(modules.join("is-number/package.json").is_file());
        let tree = require_command("tree", "tree");
        assert!(tree.is_file());
    }
}
