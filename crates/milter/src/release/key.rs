//! The release key: 32 secret random bytes in a file only its owner can read.
//!
//! Whoever holds the key can mint release tokens, that is let any message past the
//! filter (see [`super::token`]), so the file is treated like an SSH host key: it
//! is created with mode 0600, in one step (written under a temporary name, then
//! linked into place, so a reader never sees half a key and two processes creating
//! it at once end up with the same key), and a file that group or others could read
//! or write, that is not a regular file, or that is not exactly
//! [`KEY_LEN`] bytes is refused with an error that says what to do.
//!
//! The milter service calls [`ReleaseKey::load_or_create`] at start (as the user it
//! runs as, so the file is that user's); the command that releases mail calls
//! [`ReleaseKey::load`] and never creates one, which as root would make a file the
//! service cannot read.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Length of the key, in bytes: the output size of SHA-256, as RFC 2104 advises
/// for an HMAC key.
pub const KEY_LEN: usize = 32;

/// The secret of the release tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct ReleaseKey([u8; KEY_LEN]);

impl fmt::Debug for ReleaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.write_str("ReleaseKey(..)")
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("release key {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read or write the file.
    #[error(
        "release key {}: mode {mode:04o} lets group or others read or write it; \
         run `chmod 600 {}` (and check who could have read it: a leaked key lets its \
         holder pass any mail through the filter; delete the file to make a new one)",
        path.display(), path.display()
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not exactly [`KEY_LEN`] bytes.
    #[error(
        "release key {}: {len} bytes, not {KEY_LEN}: not a key chaff wrote; \
         delete it to have the service make a new one",
        path.display()
    )]
    Size {
        /// The key file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The path is not a regular file (a directory, a device, a symbolic link).
    #[error("release key {}: not a regular file", path.display())]
    NotAFile {
        /// The key file.
        path: PathBuf,
    },
    /// The system's random source failed.
    #[error("release key {}: no random bytes from the system: {reason}", path.display())]
    Random {
        /// The key file.
        path: PathBuf,
        /// What the random source said.
        reason: String,
    },
}

impl KeyError {
    fn io(path: &Path, source: std::io::Error) -> KeyError {
        KeyError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the key file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KeyError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

impl ReleaseKey {
    /// A key from its bytes (tests, tools).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> ReleaseKey {
        ReleaseKey(bytes)
    }

    /// A new key from the system's random source.
    pub fn generate() -> Result<ReleaseKey, getrandom::Error> {
        let mut k = [0u8; KEY_LEN];
        getrandom::fill(&mut k)?;
        Ok(ReleaseKey(k))
    }

    /// The secret bytes, for the MAC.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Reads the key file, refusing one that group or others may read or write,
    /// that is not a regular file (a symbolic link is not followed), or that is not
    /// [`KEY_LEN`] bytes.
    pub fn load(path: &Path) -> Result<ReleaseKey, KeyError> {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    KeyError::NotAFile {
                        path: path.to_path_buf(),
                    }
                } else {
                    KeyError::io(path, e)
                }
            })?;
        // Checked on the open file, so what is checked is what is read.
        let meta = f.metadata().map_err(|e| KeyError::io(path, e))?;
        if !meta.is_file() {
            return Err(KeyError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(KeyError::Size {
                path: path.to_path_buf(),
                len: meta.len(),
            });
        }
        let mut k = [0u8; KEY_LEN];
        f.read_exact(&mut k).map_err(|e| KeyError::io(path, e))?;
        // A file that grew between the check and the read is not what was checked.
        let mut extra = [0u8; 1];
        if f.read(&mut extra).map_err(|e| KeyError::io(path, e))? != 0 {
            return Err(KeyError::Size {
                path: path.to_path_buf(),
                len: KEY_LEN as u64 + 1,
            });
        }
        Ok(ReleaseKey(k))
    }

    /// Reads the key file, or creates it with a new random key (mode 0600) when it
    /// does not exist. Two processes creating it at once get the same key: the
    /// file appears whole, once, and the loser reads the winner's.
    pub fn load_or_create(path: &Path) -> Result<ReleaseKey, KeyError> {
        match ReleaseKey::load(path) {
            Err(e) if e.is_not_found() => {}
            other => return other,
        }
        let key = ReleaseKey::generate().map_err(|e| KeyError::Random {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path.file_name().map_or_else(
            || "release.key".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Random {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let tmp = dir.join(format!(
            ".{name}.tmp-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(nonce)
        ));
        let written = write_new(&tmp, key.bytes());
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                // The new name is durable once the directory is.
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(key)
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => ReleaseKey::load(path),
            Err(e) => Err(KeyError::io(path, e)),
        }
    }
}

/// Writes `bytes` to a new file (mode 0600, never an existing one) and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_key_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.key");
        let k = ReleaseKey::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        assert_eq!(ReleaseKey::load(&path).unwrap(), k);
        assert_eq!(ReleaseKey::load_or_create(&path).unwrap(), k);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(format!("{k:?}"), "ReleaseKey(..)");
    }

    #[test]
    fn concurrent_creators_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let keys: Vec<ReleaseKey> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ReleaseKey::load_or_create(&path).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unsafe_or_wrong_files_are_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, [7u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = ReleaseKey::load(&path).unwrap_err();
        assert!(
            matches!(e, KeyError::Permissions { mode: 0o640, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        // load_or_create does not "fix" it by making a new one either.
        assert!(ReleaseKey::load_or_create(&path).is_err());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            ReleaseKey::load(&path).unwrap(),
            ReleaseKey::from_bytes([7; 32])
        );
        std::fs::write(&path, [7u8; 16]).unwrap();
        let e = ReleaseKey::load(&path).unwrap_err();
        assert!(matches!(e, KeyError::Size { len: 16, .. }), "{e}");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            ReleaseKey::load(&link),
            Err(KeyError::NotAFile { .. })
        ));
        assert!(matches!(
            ReleaseKey::load(dir.path()),
            Err(KeyError::NotAFile { .. })
        ));
        let missing = ReleaseKey::load(&dir.path().join("none")).unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        // A directory that does not exist is an error, not a panic.
        let e = ReleaseKey::load_or_create(&dir.path().join("no/such/dir/k")).unwrap_err();
        assert!(matches!(e, KeyError::Io { .. }), "{e}");
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            ReleaseKey::generate().unwrap(),
            ReleaseKey::generate().unwrap()
        );
    }
}
