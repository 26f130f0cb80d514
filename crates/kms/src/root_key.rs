//! The root key: the trust anchor that wraps every other key at rest.
//!
//! It is 32 random bytes in `DIR/root.key` (mode 0600, in the 0700 data
//! directory), created on first start. It plays the role of an HSM's key-
//! encryption key: whoever can read that file can unwrap the key store, so
//! the file's protection (permissions, the disk it lives on, backups) is the
//! deployment's trust boundary. Nothing else on disk holds key material in
//! plaintext. See docs/kms.md.
//!
//! With a shared store (`ferry server --store ... --root-key FILE`) the key
//! is that file instead, the same on every replica: the database holds
//! only what it wraps, never the key itself (docs/fleet.md).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, KEY_LEN, Key};

/// Errors loading or creating the root key.
#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    /// Reading or writing the key file failed.
    #[error("root key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a root key.
    #[error("root key {0}: {1}")]
    Invalid(PathBuf, &'static str),
    /// Random generation failed.
    #[error("root key: {0}")]
    Crypto(#[from] CryptoError),
}

/// The root key, in memory. No `Debug`, no `Clone`; wiped on drop.
pub struct RootKey {
    key: Key,
}

impl RootKey {
    /// Loads `DIR/root.key`, creating it on first start.
    pub fn open_or_create(dir: &Path) -> Result<Self, RootKeyError> {
        Self::open_or_create_file(&dir.join("root.key")).map(|(key, _)| key)
    }

    /// Loads the root key from `path` (`ferry server --root-key FILE`),
    /// creating it (mode 0600) if there is no such file; the flag says
    /// whether it was created. A file others than its owner may read, or
    /// that is not exactly 32 bytes, is refused.
    ///
    /// Creation is safe against a second process creating the same file
    /// at once (two replicas started together on one host): the key is
    /// written to a file of this process's own, then hard-linked into
    /// place, which fails if the name exists; the loser reads the
    /// winner's key.
    pub fn open_or_create_file(path: &Path) -> Result<(Self, bool), RootKeyError> {
        let io = |source| RootKeyError::Io {
            path: path.to_owned(),
            source,
        };
        match Self::read_file(path) {
            Err(RootKeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other.map(|k| (k, false)),
        }
        let key = crypto::random_key()?;
        // A name of this call's own: the pid tells processes apart, the
        // counter calls within one (a stale file of a dead process with
        // the same pid is garbage and removed).
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(
            ".tmp.{}.{}",
            std::process::id(),
            CALLS.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = PathBuf::from(tmp);
        let _ = fs::remove_file(&tmp);
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(key.as_slice())?;
            f.sync_all()?;
            fs::hard_link(&tmp, path)
        })();
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                // The new name is durable only once its directory is.
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
                }
                Ok((Self { key }, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::read_file(path).map(|k| (k, false))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Reads an existing key file, checking its mode and length.
    fn read_file(path: &Path) -> Result<Self, RootKeyError> {
        let io = |source| RootKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let f = OpenOptions::new().read(true).open(path).map_err(io)?;
        let meta = f.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(RootKeyError::Invalid(
                path.to_owned(),
                "is not a regular file",
            ));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(RootKeyError::Invalid(
                path.to_owned(),
                "is readable by others than its owner (want mode 0600)",
            ));
        }
        // One byte more than a key: enough to tell a longer file, never
        // reading a large one whole.
        let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
        f.take(KEY_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(io)?;
        let key: [u8; KEY_LEN] = buf
            .as_slice()
            .try_into()
            .map_err(|_| RootKeyError::Invalid(path.to_owned(), "is not 32 bytes long"))?;
        Ok(Self {
            key: Zeroizing::new(key),
        })
    }

    /// A root key from raw bytes (tests).
    pub fn from_bytes(key: [u8; KEY_LEN]) -> Self {
        Self {
            key: Zeroizing::new(key),
        }
    }

    /// Wraps `material` (AES-256-GCM; `label` is bound as AAD so a wrapped
    /// blob cannot be moved to another record). Output: iv || ct || tag.
    pub fn wrap(&self, label: &str, material: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (iv, ct, tag) = crypto::seal(&self.key, label.as_bytes(), material)?;
        let mut out = Vec::with_capacity(iv.len() + ct.len() + tag.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Unwraps what [`RootKey::wrap`] produced under the same label.
    pub fn unwrap_material(
        &self,
        label: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if wrapped.len() < crypto::IV_LEN + crypto::TAG_LEN {
            return Err(CryptoError::Auth);
        }
        let (iv, rest) = wrapped.split_at(crypto::IV_LEN);
        let (ct, tag) = rest.split_at(rest.len() - crypto::TAG_LEN);
        crypto::open(&self.key, iv, label.as_bytes(), ct, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_wraps() {
        let d = tempfile::tempdir().unwrap();
        let a = RootKey::open_or_create(d.path()).unwrap();
        let mode = fs::metadata(d.path().join("root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let w = a.wrap("key/1", b"material").unwrap();
        let b = RootKey::open_or_create(d.path()).unwrap();
        assert_eq!(
            b.unwrap_material("key/1", &w).unwrap().as_slice(),
            b"material"
        );
        assert!(b.unwrap_material("key/2", &w).is_err());
        assert!(b.unwrap_material("key/1", &w[..10]).is_err());
    }

    #[test]
    fn world_readable_key_is_refused() {
        let d = tempfile::tempdir().unwrap();
        drop(RootKey::open_or_create(d.path()).unwrap());
        fs::set_permissions(d.path().join("root.key"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(RootKey::open_or_create(d.path()).is_err());
    }

    #[test]
    fn a_named_file_is_created_once_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("fleet.key");
        let (a, created) = RootKey::open_or_create_file(&path).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, created) = RootKey::open_or_create_file(&path).unwrap();
        assert!(!created);
        let w = a.wrap("x", b"m").unwrap();
        assert_eq!(b.unwrap_material("x", &w).unwrap().as_slice(), b"m");
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);

        let short = d.path().join("short.key");
        fs::write(&short, [7u8; 31]).unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        let e = RootKey::open_or_create_file(&short).err().unwrap();
        assert!(e.to_string().contains("is not 32 bytes long"), "{e}");
        let long = d.path().join("long.key");
        fs::write(&long, [7u8; 33]).unwrap();
        fs::set_permissions(&long, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(RootKey::open_or_create_file(&long).is_err());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = RootKey::open_or_create_file(&path).err().unwrap();
        assert!(e.to_string().contains("want mode 0600"), "{e}");
        let e = RootKey::open_or_create_file(&d.path().join("no/such/dir/k"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("no/such/dir/k"), "{e}");
    }

    #[test]
    fn two_processes_creating_one_file_end_with_one_key() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("race.key");
        let keys: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || RootKey::open_or_create_file(&p).unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let (file_key, _) = RootKey::open_or_create_file(&path).unwrap();
        let w = file_key.wrap("x", b"m").unwrap();
        assert_eq!(keys.iter().filter(|(_, c)| *c).count(), 1);
        for (k, _) in &keys {
            assert_eq!(k.unwrap_material("x", &w).unwrap().as_slice(), b"m");
        }
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
