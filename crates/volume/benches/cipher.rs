//! Sector-cipher micro-benchmark (plain harness: `cargo bench -p ferry-volume --bench cipher`).
//!
//! Encrypts and decrypts 1 MiB batches of 4 KiB sectors on one thread with
//! [`SectorCipher`] (key schedule once, IV per sector), and compares with two
//! baselines in the same run: memcpy (the floor any data path pays) and
//! OpenSSL re-keyed per sector (what a naive `Crypter::new` per sector costs).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferry_volume::VolumeKey;
use ferry_volume::cipher::{SECTOR, SectorCipher, tweak};

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

fn main() {
    let mut key = VolumeKey::zeroed();
    openssl::rand::rand_bytes(key.expose_mut()).unwrap();
    let mut c = SectorCipher::new(&key).unwrap();
    let input: Vec<u8> = (0..BATCH).map(|i| i as u8).collect();
    let mut out = vec![0u8; BATCH];
    let mut sector = 0u64;

    let enc = measure(|| {
        c.encrypt(sector, black_box(&input), &mut out).unwrap();
        sector += (BATCH / SECTOR) as u64;
    });
    let dec = measure(|| {
        c.decrypt(sector, black_box(&input), &mut out).unwrap();
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
    println!("| sector cipher, 4 KiB sectors, 1 thread | GB/s | vs memcpy |");
    println!("|---|---:|---:|");
    for (name, v) in [
        ("AES-256-XTS encrypt (SectorCipher)", enc),
        ("AES-256-XTS decrypt (SectorCipher)", dec),
        ("AES-256-XTS encrypt, re-keyed per sector", rekey),
        ("memcpy (baseline)", copy),
    ] {
        println!("| {name} | {v:.2} | {:.2} |", v / copy);
    }
    black_box(&out);
}
