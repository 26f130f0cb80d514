//! The sector cipher: AES-256-XTS over 4096-byte sectors, as LUKS2 /
//! dm-crypt `aes-xts-plain64` with `iv_large_sectors` lays it out.
//!
//! The tweak of a sector is its number in 4096-byte units from the start of
//! the data segment, as a 64-bit little-endian integer padded to 16 bytes.
//! One [`SectorCipher`] per thread: the key schedule is set up once, and only
//! the tweak changes per sector.
//!
//! Two engines behind one API: on x86-64 CPUs with VAES, AVX2 and VPCLMULQDQ
//! our own VAES implementation (`vaes` module, ~2x OpenSSL 3.0 here, see
//! docs/volume-engine.md); everywhere else OpenSSL's EVP AES-256-XTS. Both
//! are byte-identical (tests below, against OpenSSL and IEEE 1619 vectors).

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;

use crate::key::VolumeKey;

/// Sector size in bytes (the LUKS2 segment's `sector_size`).
pub const SECTOR: usize = 4096;

/// Errors from the cipher.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    /// OpenSSL refused the key.
    #[error("openssl: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
    /// Both XTS key halves are equal (OpenSSL refuses such keys too).
    #[error("the two halves of the XTS key are equal")]
    DuplicateKeyHalves,
    /// The requested engine does not run on this CPU.
    #[error("the {0:?} cipher engine is not available on this CPU")]
    Unavailable(Engine),
    /// A buffer was not a whole number of sectors, or the output was too short.
    #[error("buffer of {0} bytes is not whole 4096-byte sectors")]
    Length(usize),
}

/// Which AES-256-XTS implementation a [`SectorCipher`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Our VAES/AVX2 code (x86-64 with VAES, AVX2, VPCLMULQDQ).
    Vaes,
    /// OpenSSL's EVP AES-256-XTS (AES-NI or whatever OpenSSL picks).
    Openssl,
}

enum Inner {
    #[cfg(target_arch = "x86_64")]
    Vaes(crate::vaes::Xts),
    /// One context for each direction.
    Openssl { enc: CipherCtx, dec: CipherCtx },
}

/// A per-thread AES-256-XTS sector cipher.
pub struct SectorCipher {
    inner: Inner,
}

impl SectorCipher {
    /// Sets up the fastest engine this CPU runs with `key` (the key schedule
    /// is computed here, once).
    pub fn new(key: &VolumeKey) -> Result<Self, CipherError> {
        if vaes_available() {
            Self::with_engine(key, Engine::Vaes)
        } else {
            Self::with_engine(key, Engine::Openssl)
        }
    }

    /// Sets up a given engine (for tests and the benchmark).
    pub fn with_engine(key: &VolumeKey, engine: Engine) -> Result<Self, CipherError> {
        let k = key.expose();
        // Same rule as OpenSSL's XTS (constant-time, like its CRYPTO_memcmp).
        if k[..32]
            .iter()
            .zip(&k[32..])
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
        {
            return Err(CipherError::DuplicateKeyHalves);
        }
        let inner = match engine {
            #[cfg(target_arch = "x86_64")]
            Engine::Vaes => {
                Inner::Vaes(crate::vaes::Xts::new(k).ok_or(CipherError::Unavailable(engine))?)
            }
            #[cfg(not(target_arch = "x86_64"))]
            Engine::Vaes => return Err(CipherError::Unavailable(engine)),
            Engine::Openssl => {
                let cipher = Cipher::aes_256_xts();
                let mut enc = CipherCtx::new()?;
                enc.encrypt_init(Some(cipher), Some(k), None)?;
                enc.set_padding(false);
                let mut dec = CipherCtx::new()?;
                dec.decrypt_init(Some(cipher), Some(k), None)?;
                dec.set_padding(false);
                Inner::Openssl { enc, dec }
            }
        };
        Ok(SectorCipher { inner })
    }

    /// The engine in use.
    pub fn engine(&self) -> Engine {
        match self.inner {
            #[cfg(target_arch = "x86_64")]
            Inner::Vaes(_) => Engine::Vaes,
            Inner::Openssl { .. } => Engine::Openssl,
        }
    }

    /// Encrypts whole sectors from `input` into `output`; `first` is the
    /// sector number (tweak) of the first sector.
    pub fn encrypt(
        &mut self,
        first: u64,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CipherError> {
        self.run(true, first, Some(input), output)
    }

    /// Decrypts whole sectors; see [`SectorCipher::encrypt`].
    pub fn decrypt(
        &mut self,
        first: u64,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CipherError> {
        self.run(false, first, Some(input), output)
    }

    /// Decrypts whole sectors in place: the read path decrypts the buffer it
    /// read the ciphertext into, so no second buffer goes through the cache.
    pub fn decrypt_in_place(&mut self, first: u64, buf: &mut [u8]) -> Result<(), CipherError> {
        self.run(false, first, None, buf)
    }

    /// Runs the cipher over whole sectors of `input` (or of `output` itself,
    /// in place) into the start of `output`.
    fn run(
        &mut self,
        encrypt: bool,
        first: u64,
        input: Option<&[u8]>,
        output: &mut [u8],
    ) -> Result<(), CipherError> {
        let len = input.map_or(output.len(), <[u8]>::len);
        if !len.is_multiple_of(SECTOR) || output.len() < len {
            return Err(CipherError::Length(len));
        }
        let output = &mut output[..len];
        for (i, dst) in output.chunks_exact_mut(SECTOR).enumerate() {
            let src = input.map(|s| &s[i * SECTOR..(i + 1) * SECTOR]);
            // Sector numbers wrap like dm-crypt's plain64.
            let iv = tweak(first.wrapping_add(i as u64));
            match &mut self.inner {
                #[cfg(target_arch = "x86_64")]
                Inner::Vaes(x) => match src {
                    Some(src) => x.unit(encrypt, &iv, src, dst),
                    None => x.unit_in_place(encrypt, &iv, dst),
                },
                Inner::Openssl { enc, dec } => {
                    let ctx = if encrypt { enc } else { dec };
                    // Only the IV changes: passing no cipher and no key keeps the expanded key.
                    if encrypt {
                        ctx.encrypt_init(None, None, Some(&iv))?;
                    } else {
                        ctx.decrypt_init(None, None, Some(&iv))?;
                    }
                    // XTS processes one data unit per update call; final emits nothing.
                    match src {
                        Some(src) => ctx.cipher_update(src, Some(dst))?,
                        None => ctx.cipher_update_inplace(dst, SECTOR)?,
                    };
                }
            }
        }
        Ok(())
    }
}

/// Whether the VAES engine runs on this CPU.
pub fn vaes_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::vaes::supported()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
pub(crate) mod tests {
    use super::*;

    /// The engines this CPU runs. Where VAES is missing, the VAES engine
    /// cannot be exercised: check instead that it is refused and that
    /// `new` falls back to OpenSSL, and say so (CI's CPU has VAES; a
    /// contributor's older CPU must not turn the suite red).
    pub(crate) fn engines_here() -> Vec<Engine> {
        if vaes_available() {
            return vec![Engine::Vaes, Engine::Openssl];
        }
        eprintln!(
            "note: no VAES/AVX2/VPCLMULQDQ on this CPU: VAES engine tests check the fallback only"
        );
        let k = key();
        assert!(matches!(
            SectorCipher::with_engine(&k, Engine::Vaes),
            Err(CipherError::Unavailable(Engine::Vaes))
        ));
        assert_eq!(SectorCipher::new(&k).unwrap().engine(), Engine::Openssl);
        vec![Engine::Openssl]
    }

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
        for (k, engine) in keys
            .iter()
            .flat_map(|k| engines_here().into_iter().map(move |e| (k, e)))
        {
            let mut c = SectorCipher::with_engine(k, engine).unwrap();
            for &first in &firsts {
                let mut ct = vec![0u8; plain.len()];
                c.encrypt(first, &plain, &mut ct).unwrap();
                let mut back = vec![0u8; plain.len()];
                c.decrypt(first, &ct, &mut back).unwrap();
                assert_eq!(back, plain);
                let mut in_place = ct.clone();
                c.decrypt_in_place(first, &mut in_place).unwrap();
                assert_eq!(in_place, plain, "in place, {engine:?}");
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

    /// Random bytes from OpenSSL's CSPRNG (no extra crate for tests).
    fn random<const N: usize>() -> [u8; N] {
        let mut b = [0u8; N];
        openssl::rand::rand_bytes(&mut b).unwrap();
        b
    }

    fn random_key() -> VolumeKey {
        let mut k = VolumeKey::zeroed();
        openssl::rand::rand_bytes(k.expose_mut()).unwrap();
        k
    }

    /// The VAES engine against OpenSSL's one-shot AES-256-XTS, sector by
    /// sector, for many random keys, edge and random sector numbers (incl.
    /// wrapping past u64::MAX like plain64) and batch lengths, both
    /// directions, and both engines against each other.
    #[test]
    fn vaes_engine_byte_identical_to_openssl() {
        if !engines_here().contains(&Engine::Vaes) {
            return;
        }
        let mut firsts = vec![
            0u64,
            1,
            255,
            (1 << 32) - 1,
            1 << 32,
            1 << 63,
            (1 << 63) - 1,
            u64::MAX - 3,
            u64::MAX,
            0x8080_8080_8080_8080,
        ];
        for _ in 0..6 {
            firsts.push(u64::from_le_bytes(random::<8>()));
        }
        let mut plain = vec![0u8; 8 * SECTOR];
        for round in 0..48 {
            let k = random_key();
            let mut vaes = SectorCipher::with_engine(&k, Engine::Vaes).unwrap();
            assert_eq!(vaes.engine(), Engine::Vaes);
            let mut ossl = SectorCipher::with_engine(&k, Engine::Openssl).unwrap();
            openssl::rand::rand_bytes(&mut plain).unwrap();
            let first = firsts[round % firsts.len()];
            let n = 1 + round % 8;
            let p = &plain[..n * SECTOR];
            let mut ct = vec![0u8; p.len()];
            vaes.encrypt(first, p, &mut ct).unwrap();
            let mut ct2 = vec![0u8; p.len()];
            ossl.encrypt(first, p, &mut ct2).unwrap();
            assert_eq!(ct, ct2, "engines differ, first sector {first}");
            for (s, (ps, cs)) in p
                .chunks_exact(SECTOR)
                .zip(ct.chunks_exact(SECTOR))
                .enumerate()
            {
                let sector = first.wrapping_add(s as u64);
                assert_eq!(
                    cs,
                    &openssl_sector(&k, true, sector, ps)[..],
                    "sector {sector}"
                );
            }
            // Decrypt OpenSSL-made ciphertext of fresh random data (not our own).
            let c = random::<SECTOR>();
            let mut back = vec![0u8; SECTOR];
            vaes.decrypt(first, &c, &mut back).unwrap();
            assert_eq!(
                back,
                openssl_sector(&k, false, first, &c),
                "decrypt, sector {first}"
            );
            let mut rt = vec![0u8; p.len()];
            vaes.decrypt(first, &ct, &mut rt).unwrap();
            assert_eq!(rt, p, "round trip");
        }
    }

    #[test]
    fn engines_agree_on_a_large_batch() {
        let k = random_key();
        let mut plain = vec![0u8; 256 * SECTOR];
        openssl::rand::rand_bytes(&mut plain).unwrap();
        let mut a = vec![0u8; plain.len()];
        let mut b = vec![0u8; plain.len()];
        SectorCipher::new(&k)
            .unwrap()
            .encrypt(1 << 40, &plain, &mut a)
            .unwrap();
        SectorCipher::with_engine(&k, Engine::Openssl)
            .unwrap()
            .encrypt(1 << 40, &plain, &mut b)
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn refuses_equal_key_halves_in_every_engine() {
        let mut k = VolumeKey::zeroed();
        k.expose_mut().fill(7);
        for e in engines_here() {
            assert!(matches!(
                SectorCipher::with_engine(&k, e),
                Err(CipherError::DuplicateKeyHalves)
            ));
        }
        // OpenSSL itself refuses such a key too (so the engines agree).
        let mut ctx = CipherCtx::new().unwrap();
        assert!(
            ctx.encrypt_init(Some(Cipher::aes_256_xts()), Some(k.expose()), None)
                .is_err()
        );
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
