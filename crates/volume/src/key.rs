//! Secret types: the keyslot passphrase and the 512-bit volume key.
//!
//! Both zeroize on drop and print as `<redacted>`; the volume key lives in one
//! heap allocation that is mlock'ed for its whole life.

use std::fmt;
use std::io::Read;

use zeroize::{Zeroize, Zeroizing};

use crate::sys;

/// Longest passphrase accepted (cryptsetup's own key files are limited too).
pub const MAX_PASSPHRASE: usize = 8192;

/// Errors reading a passphrase.
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    /// The key file could not be read.
    #[error("cannot read key file: {0}")]
    Read(#[from] std::io::Error),
    /// The key file was empty.
    #[error("key file is empty")]
    Empty,
    /// The key file was too long.
    #[error("key file is longer than {MAX_PASSPHRASE} bytes")]
    TooLong,
}

/// A keyslot passphrase (for ferry: 64 random bytes from the KMS). Exact bytes,
/// as `cryptsetup --key-file` reads them: no newline stripping.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wraps bytes the caller already holds.
    pub fn new(bytes: Vec<u8>) -> Result<Self, PassphraseError> {
        let p = Passphrase(Zeroizing::new(bytes));
        if p.0.is_empty() {
            return Err(PassphraseError::Empty);
        }
        if p.0.len() > MAX_PASSPHRASE {
            return Err(PassphraseError::TooLong);
        }
        Ok(p)
    }

    /// Reads the whole of `r` (a key file or a pipe).
    pub fn read_from(r: impl Read) -> Result<Self, PassphraseError> {
        let mut buf = Zeroizing::new(Vec::with_capacity(128));
        r.take(MAX_PASSPHRASE as u64 + 1).read_to_end(&mut buf)?;
        Passphrase::new(std::mem::take(&mut *buf))
    }

    /// The bytes, for handing to libcryptsetup or a pipe.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Length of the AES-256-XTS volume key in bytes (two 256-bit AES keys).
pub const VOLUME_KEY_LEN: usize = 64;

/// The volume key, in locked memory, wiped on drop.
pub struct VolumeKey {
    bytes: Box<[u8; VOLUME_KEY_LEN]>,
    locked: bool,
}

impl VolumeKey {
    /// A zeroed key buffer, locked in memory, for libcryptsetup to fill.
    pub fn zeroed() -> Self {
        let bytes = Box::new([0u8; VOLUME_KEY_LEN]);
        // Locking can fail under a tight RLIMIT_MEMLOCK; the server also calls
        // mlockall, so a failure here only loses defence in depth.
        let locked = sys::mlock(&bytes[..]).is_ok();
        VolumeKey { bytes, locked }
    }

    /// Whether `mlock` succeeded for this key.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8; VOLUME_KEY_LEN] {
        &self.bytes
    }

    /// Mutable key bytes (filled by libcryptsetup).
    pub fn expose_mut(&mut self) -> &mut [u8; VOLUME_KEY_LEN] {
        &mut self.bytes
    }
}

impl Drop for VolumeKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
        if self.locked {
            sys::munlock(&self.bytes[..]);
        }
    }
}

impl fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VolumeKey(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_is_exact_bytes_and_redacted() {
        let p = Passphrase::read_from(&b"secret\n"[..]).unwrap();
        assert_eq!(p.expose(), b"secret\n");
        assert!(!format!("{p:?}").contains("secret"));
    }

    #[test]
    fn passphrase_limits() {
        assert!(matches!(
            Passphrase::read_from(&b""[..]),
            Err(PassphraseError::Empty)
        ));
        let long = vec![1u8; MAX_PASSPHRASE + 1];
        assert!(matches!(
            Passphrase::read_from(&long[..]),
            Err(PassphraseError::TooLong)
        ));
    }

    #[test]
    fn volume_key_is_locked_and_redacted() {
        let mut k = VolumeKey::zeroed();
        k.expose_mut()[0] = 0xAB;
        assert!(k.is_locked(), "mlock of 64 bytes failed");
        assert!(!format!("{k:?}").contains("171"));
    }
}
