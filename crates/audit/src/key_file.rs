//! 32-byte secrets kept in files of their own (hex, one line, readable by the owner only): the
//! audit signing key, and the server's masking key, which keeps its file the same way.

use std::io::Write;
use std::path::Path;

use crate::error::KeyFileError;

/// Reads the secret at `path`, or creates it if there is none. Refuses a file others can read.
/// `what` names the secret in errors.
pub fn load_or_create(path: &Path, what: &'static str) -> Result<[u8; 32], KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path, what)?;
            hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyFileError::NotAKey {
                    path: path.to_owned(),
                    what,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            write_new(path, &secret).map_err(io)?;
            Ok(secret)
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes a secret to a new file, readable by its owner only. Never overwrites.
pub fn write_new(path: &Path, secret: &[u8; 32]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{}", hex::encode(secret))?;
    file.sync_all()
}

#[cfg(unix)]
fn check_private(path: &Path, what: &'static str) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed {
            path: path.to_owned(),
            what,
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &'static str) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_created_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = load_or_create(&path, "test key").unwrap();
        assert_eq!(load_or_create(&path, "test key").unwrap(), a);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_or_create(&path, "test key").unwrap_err().to_string();
            assert!(e.contains("readable by others"), "{e}");
        }
        assert!(write_new(&path, &a).is_err(), "never overwrites");
    }
}
