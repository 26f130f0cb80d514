//! The sector cipher: AES-256-XTS over 4096-byte sectors, as LUKS2 /
//! dm-crypt `aes-xts-plain64` with `iv_large_sectors` lays it out.
//!
//! The tweak of a sector is its number in 4096-byte units from the start of
//! the data segment, as a 64-bit little-endian integer padded to 16 bytes.
//! One [`SectorCipher`] per thread: the key schedule is set up once, and only
//! the IV changes per sector.

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;

use crate::key::VolumeKey;

/// Sector size in bytes (the LUKS2 segment's `sector_size`).
pub const SECTOR: usize = 4096;

/// Errors from the cipher.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    /// OpenSSL refused (bad key, for example both XTS halves equal).
    #[error("openssl: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
    /// A buffer was not a whole number of sectors, or the output was too short.
    #[error("buffer of {0} bytes is not whole 4096-byte sectors")]
    Length(usize),
}

/// Per-thread AES-256-XTS contexts (one for each direction).
pub struct SectorCipher {
    enc: CipherCtx,
    dec: CipherCtx,
}

impl SectorCipher {
    /// Sets up both contexts with `key` (the key schedule is computed here, once).
    pub fn new(key: &VolumeKey) -> Result<Self, CipherError> {
        let cipher = Cipher::aes_256_xts();
        let mut enc = CipherCtx::new()?;
        enc.encrypt_init(Some(cipher), Some(key.expose()), None)?;
        enc.set_padding(false);
        let mut dec = CipherCtx::new()?;
        dec.decrypt_init(Some(cipher), Some(key.expose()), None)?;
        dec.set_padding(false);
        Ok(SectorCipher { enc, dec })
    }

    /// Encrypts whole sectors from `input` into `output`; `first` is the
    /// sector number (tweak) of the first sector.
    pub fn encrypt(
        &mut self,
        first: u64,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CipherError> {
        run(&mut self.enc, true, first, input, output)
    }

    /// Decrypts whole sectors; see [`SectorCipher::encrypt`].
    pub fn decrypt(
        &mut self,
        first: u64,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CipherError> {
        run(&mut self.dec, false, first, input, output)
    }
}

fn run(
    ctx: &mut CipherCtx,
    encrypt: bool,
    first: u64,
    input: &[u8],
    output: &mut [u8],
) -> Result<(), CipherError> {
    if !input.len().is_multiple_of(SECTOR) || output.len() < input.len() {
        return Err(CipherError::Length(input.len()));
    }
    for (i, (src, dst)) in input
        .chunks_exact(SECTOR)
        .zip(output.chunks_exact_mut(SECTOR))
        .enumerate()
    {
        let iv = tweak(first + i as u64);
        // Only the IV changes: passing no cipher and no key keeps the expanded key.
        if encrypt {
            ctx.encrypt_init(None, None, Some(&iv))?;
        } else {
            ctx.decrypt_init(None, None, Some(&iv))?;
        }
        // XTS processes one data unit per update call; final emits nothing.
        ctx.cipher_update(src, Some(dst))?;
    }
    Ok(())
}

/// The plain64 IV: little-endian sector number, zero-padded to 16 bytes.
pub fn tweak(sector: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&sector.to_le_bytes());
    iv
}

/// Whether a buffer is all zero bytes (an unwritten sector of a sparse file).
pub fn is_zero(buf: &[u8]) -> bool {
    // OR-fold 64-byte chunks (vectorises), stopping at the first non-zero chunk:
    // real ciphertext almost always differs from zero in its first chunk.
    buf.chunks(64)
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> VolumeKey {
        let mut k = VolumeKey::zeroed();
        for (i, b) in k.expose_mut().iter_mut().enumerate() {
            *b = i as u8;
        }
        k
    }

    /// OpenSSL's one-shot EVP AES-256-XTS of one sector: the reference.
    fn openssl_sector(k: &VolumeKey, encrypt: bool, sector: u64, data: &[u8]) -> Vec<u8> {
        let cipher = openssl::symm::Cipher::aes_256_xts();
        let iv = tweak(sector);
        if encrypt {
            openssl::symm::encrypt(cipher, k.expose(), Some(&iv), data).unwrap()
        } else {
            openssl::symm::decrypt(cipher, k.expose(), Some(&iv), data).unwrap()
        }
    }

    #[test]
    fn byte_identical_to_openssl_for_several_keys_and_sectors() {
        let mut keys = vec![key()];
        for _ in 0..3 {
            let mut k = VolumeKey::zeroed();
            openssl::rand::rand_bytes(k.expose_mut()).unwrap();
            keys.push(k);
        }
        // Sector 0, small, around 2^32 (the tweak's high half) and u64::MAX-ish.
        let firsts = [0u64, 41, (1 << 32) - 2, u64::MAX - 4];
        let mut plain = vec![0u8; 4 * SECTOR];
        openssl::rand::rand_bytes(&mut plain).unwrap();
        // Sector 1 repeats sector 0: only the tweak tells them apart.
        plain.copy_within(..SECTOR, SECTOR);
        for k in &keys {
            let mut c = SectorCipher::new(k).unwrap();
            for &first in &firsts {
                let mut ct = vec![0u8; plain.len()];
                c.encrypt(first, &plain, &mut ct).unwrap();
                let mut back = vec![0u8; plain.len()];
                c.decrypt(first, &ct, &mut back).unwrap();
                assert_eq!(back, plain);
                for (s, (p, e)) in plain
                    .chunks_exact(SECTOR)
                    .zip(ct.chunks_exact(SECTOR))
                    .enumerate()
                {
                    let sector = first + s as u64;
                    assert_eq!(
                        e,
                        &openssl_sector(k, true, sector, p)[..],
                        "sector {sector}"
                    );
                    // Decrypting OpenSSL-made ciphertext too (not only our own).
                    let theirs = openssl_sector(k, true, sector, p);
                    let mut ours = vec![0u8; SECTOR];
                    c.decrypt(sector, &theirs, &mut ours).unwrap();
                    assert_eq!(&ours[..], p);
                    assert_eq!(openssl_sector(k, false, sector, e), p);
                }
                // Same plaintext under different tweaks: different ciphertext.
                assert_ne!(ct[..SECTOR], ct[SECTOR..2 * SECTOR]);
            }
        }
    }

    #[test]
    fn rejects_partial_sectors() {
        let mut c = SectorCipher::new(&key()).unwrap();
        let mut out = vec![0u8; 100];
        assert!(matches!(
            c.encrypt(0, &[0u8; 100], &mut out),
            Err(CipherError::Length(100))
        ));
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 4096]));
        let mut b = [0u8; 4096];
        b[4095] = 1;
        assert!(!is_zero(&b));
        b[4095] = 0;
        b[3] = 1;
        assert!(!is_zero(&b));
        assert!(is_zero(&[0u8; 7]));
    }
}
