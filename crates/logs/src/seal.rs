//! At-rest encryption of log batches.

use openssl::rand::rand_bytes;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use zeroize::Zeroizing;

const NONCE: usize = 12;
const TAG: usize = 16;

/// A sealing failure. Carries no data from the batch.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The batch did not authenticate (tampered, moved or wrong key).
    #[error("log batch failed authentication")]
    Authentication,
    /// The cipher library failed.
    #[error("log batch encryption failed: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// Seals and opens byte strings with associated data.
pub trait Sealer: Send + Sync {
    /// Encrypts `plaintext`, binding `aad`.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError>;
    /// Decrypts what [`Sealer::seal`] made with the same `aad`.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

/// AES-256-GCM with a random 96-bit nonce per batch: `nonce || ct || tag`.
pub struct AesGcmSealer {
    key: Zeroizing<[u8; 32]>,
}

impl AesGcmSealer {
    /// A sealer under `key` (the plaintext of a KMS data key).
    pub fn new(key: Zeroizing<[u8; 32]>) -> Self {
        Self { key }
    }
}

impl Sealer for AesGcmSealer {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE];
        rand_bytes(&mut nonce)?;
        let mut tag = [0u8; TAG];
        let ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            self.key.as_slice(),
            Some(&nonce),
            aad,
            plaintext,
            &mut tag,
        )?;
        let mut out = Vec::with_capacity(NONCE + ct.len() + TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < NONCE + TAG {
            return Err(SealError::Authentication);
        }
        let (nonce, rest) = sealed.split_at(NONCE);
        let (ct, tag) = rest.split_at(rest.len() - TAG);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            self.key.as_slice(),
            Some(nonce),
            aad,
            ct,
            tag,
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let s = AesGcmSealer::new(Zeroizing::new([7u8; 32]));
        let sealed = s.seal(b"g:s:1", b"hello").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(s.open(b"g:s:1", &sealed).unwrap().as_slice(), b"hello");
        assert!(matches!(
            s.open(b"g:s:2", &sealed),
            Err(SealError::Authentication)
        ));
        let mut bad = sealed.clone();
        bad[NONCE] ^= 1;
        assert!(s.open(b"g:s:1", &bad).is_err());
        assert!(s.open(b"g:s:1", &sealed[..10]).is_err());
        let other = AesGcmSealer::new(Zeroizing::new([8u8; 32]));
        assert!(other.open(b"g:s:1", &sealed).is_err());
    }
}
