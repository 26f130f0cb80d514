//! AES-256-GCM and randomness, from OpenSSL.
//!
//! OpenSSL because the workspace already links it (the volume engine uses it
//! for AES-XTS), it uses AES-NI/PCLMUL, and it is FIPS-validated in common
//! distributions; adding a second crypto stack would only grow the audit
//! surface.

use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use zeroize::Zeroizing;

/// AES-GCM nonce length (96 bits, the recommended size).
pub const IV_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// AES-256 key length.
pub const KEY_LEN: usize = 32;

/// A crypto failure. Deliberately carries no detail: a failed open means
/// "wrong key, wrong AAD, or tampered", and nothing more may leak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed (tampered data, wrong key or wrong AAD).
    #[error("authentication failed")]
    Auth,
    /// The crypto library failed for another reason.
    #[error("crypto library failure")]
    Library,
}

/// A 256-bit symmetric key that is wiped from memory when dropped.
pub type Key = Zeroizing<[u8; KEY_LEN]>;

/// Fills `buf` from OpenSSL's CSPRNG.
pub fn random(buf: &mut [u8]) -> Result<(), CryptoError> {
    openssl::rand::rand_bytes(buf).map_err(|_| CryptoError::Library)
}

/// A fresh random key.
pub fn random_key() -> Result<Key, CryptoError> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    random(k.as_mut_slice())?;
    Ok(k)
}

/// An AES-GCM output: (iv, ciphertext, tag).
pub type Sealed = ([u8; IV_LEN], Vec<u8>, [u8; TAG_LEN]);

/// Encrypts `plaintext` under `key` with a fresh random IV, binding `aad`.
/// Returns (iv, ciphertext, tag).
pub fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Sealed, CryptoError> {
    let mut iv = [0u8; IV_LEN];
    random(&mut iv)?;
    let mut tag = [0u8; TAG_LEN];
    let ct = encrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(&iv),
        aad,
        plaintext,
        &mut tag,
    )
    .map_err(|_| CryptoError::Library)?;
    Ok((iv, ct, tag))
}

/// Decrypts and authenticates.
pub fn open(
    key: &[u8; KEY_LEN],
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if iv.len() != IV_LEN || tag.len() != TAG_LEN {
        return Err(CryptoError::Auth);
    }
    decrypt_aead(Cipher::aes_256_gcm(), key, Some(iv), aad, ciphertext, tag)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let k = random_key().unwrap();
        let (iv, ct, tag) = seal(&k, b"aad", b"hello").unwrap();
        assert_eq!(
            open(&k, &iv, b"aad", &ct, &tag).unwrap().as_slice(),
            b"hello"
        );
        assert_eq!(open(&k, &iv, b"aaX", &ct, &tag), Err(CryptoError::Auth));
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(open(&k, &iv, b"aad", &bad, &tag), Err(CryptoError::Auth));
        let k2 = random_key().unwrap();
        assert_eq!(open(&k2, &iv, b"aad", &ct, &tag), Err(CryptoError::Auth));
    }
}
