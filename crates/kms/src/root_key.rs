//! The root key: the trust anchor that wraps every other key at rest.
//!
//! It is 32 random bytes in `DIR/root.key` (mode 0600, in the 0700 data
//! directory), created on first start. It plays the role of an HSM's key-
//! encryption key: whoever can read that file can unwrap the key store, so
//! the file's protection (permissions, the disk it lives on, backups) is the
//! deployment's trust boundary. Nothing else on disk holds key material in
//! plaintext. See docs/kms.md.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
        let path = dir.join("root.key");
        let io = |source| RootKeyError::Io {
            path: path.clone(),
            source,
        };
        match OpenOptions::new().read(true).open(&path) {
            Ok(mut f) => {
                let mode = f.metadata().map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(RootKeyError::Invalid(
                        path,
                        "is readable by others than its owner (want mode 0600)",
                    ));
                }
                let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
                f.read_to_end(&mut buf).map_err(io)?;
                let key: [u8; KEY_LEN] = buf
                    .as_slice()
                    .try_into()
                    .map_err(|_| RootKeyError::Invalid(path.clone(), "is not 32 bytes long"))?;
                Ok(Self {
                    key: Zeroizing::new(key),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = crypto::random_key()?;
                let tmp = dir.join("root.key.tmp");
                let _ = fs::remove_file(&tmp);
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io)?;
                f.write_all(key.as_slice()).map_err(io)?;
                f.sync_all().map_err(io)?;
                fs::rename(&tmp, &path).map_err(io)?;
                Ok(Self { key })
            }
            Err(e) => Err(io(e)),
        }
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
}
