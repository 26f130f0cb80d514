//! Sector-cipher micro-benchmark (plain harness: `cargo bench -p ferry-volume --bench cipher`).
//!
//! Encrypts and decrypts 1 MiB batches of 4 KiB sectors on one thread with
//! [`SectorCipher`] (AWS-LC, key schedule once, IV per sector), and compares
//! in the same run with: the previous OpenSSL 3.0 implementation (keyed once,
//! `EVP_CipherInit_ex` with only the IV per sector), memcpy (the floor any
//! data path pays) and OpenSSL re-keyed per sector (what a naive
//! `Crypter::new` per sector costs).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferry_volume::VolumeKey;
use ferry_volume::cipher::{SECTOR, SectorCipher, tweak};
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;

const BATCH: usize = 1 << 20;

fn measure(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    (n as f64 * BATCH as f64) / start.elapsed().as_secs_f64() / 1e9
}

/// The previous `SectorCipher` (OpenSSL 3.0 EVP, IV re-set per sector).
fn openssl_sectors(ctx: &mut CipherCtx, encrypt: bool, first: u64, input: &[u8], out: &mut [u8]) {
    for (i, (src, dst)) in input
        .chunks_exact(SECTOR)
        .zip(out.chunks_exact_mut(SECTOR))
        .enumerate()
    {
        let iv = tweak(first + i as u64);
        if encrypt {
            ctx.encrypt_init(None, None, Some(&iv)).unwrap();
        } else {
            ctx.decrypt_init(None, None, Some(&iv)).unwrap();
        }
        ctx.cipher_update(src, Some(dst)).unwrap();
    }
}

fn main() {
    let mut key = VolumeKey::zeroed();
    openssl::rand::rand_bytes(key.expose_mut()).unwrap();
    let mut c = SectorCipher::new(&key).unwrap();
    let mut oenc = CipherCtx::new().unwrap();
    oenc.encrypt_init(Some(Cipher::aes_256_xts()), Some(key.expose()), None)
        .unwrap();
    let mut odec = CipherCtx::new().unwrap();
    odec.decrypt_init(Some(Cipher::aes_256_xts()), Some(key.expose()), None)
        .unwrap();
    let input: Vec<u8> = (0..BATCH).map(|i| i as u8).collect();
    let mut out = vec![0u8; BATCH];
    let mut sector = 0u64;

    let enc = measure(|| {
        c.encrypt(sector, black_box(&input), &mut out).unwrap();
        sector += (BATCH / SECTOR) as u64;
    });
    let ossl_enc = measure(|| {
        openssl_sectors(&mut oenc, true, sector, black_box(&input), &mut out);
        sector += (BATCH / SECTOR) as u64;
    });
    let dec = measure(|| {
        c.decrypt(sector, black_box(&input), &mut out).unwrap();
    });
    let ossl_dec = measure(|| {
        openssl_sectors(&mut odec, false, sector, black_box(&input), &mut out);
    });
    let copy = measure(|| {
        out.copy_from_slice(black_box(&input));
    });
    let rekey = measure(|| {
        for (i, (s, d)) in input
            .chunks_exact(SECTOR)
            .zip(out.chunks_exact_mut(SECTOR))
            .enumerate()
        {
            let mut cr = openssl::symm::Crypter::new(
                openssl::symm::Cipher::aes_256_xts(),
                openssl::symm::Mode::Encrypt,
                key.expose(),
                Some(&tweak(i as u64)),
            )
            .unwrap();
            cr.update(s, d).unwrap();
        }
    });
    println!("| sector cipher, 4 KiB sectors, 1 thread | GB/s | vs OpenSSL 3.0 | vs memcpy |");
    println!("|---|---:|---:|---:|");
    for (name, v, base) in [
        ("AES-256-XTS encrypt (SectorCipher, AWS-LC)", enc, ossl_enc),
        (
            "AES-256-XTS encrypt (OpenSSL 3.0, IV per sector)",
            ossl_enc,
            ossl_enc,
        ),
        ("AES-256-XTS decrypt (SectorCipher, AWS-LC)", dec, ossl_dec),
        (
            "AES-256-XTS decrypt (OpenSSL 3.0, IV per sector)",
            ossl_dec,
            ossl_dec,
        ),
        (
            "AES-256-XTS encrypt, OpenSSL re-keyed per sector",
            rekey,
            ossl_enc,
        ),
        ("memcpy (baseline)", copy, ossl_enc),
    ] {
        println!("| {name} | {v:.2} | {:.2} | {:.2} |", v / base, v / copy);
    }
    black_box(&out);
}
