//! Sector-cipher micro-benchmark (plain harness: `cargo bench -p ferry-volume --bench cipher`).
//!
//! Encrypts and decrypts 1 MiB batches of 4 KiB sectors on one thread with
//! each [`SectorCipher`] engine (key schedule once, tweak per sector): the
//! VAES engine that `SectorCipher::new` picks on this CPU, and OpenSSL's EVP
//! path as the baseline in the same run, with their ratio. Also memcpy (the
//! floor any data path pays) and OpenSSL re-keyed per sector (what a naive
//! `Crypter::new` per sector costs). Engines are measured interleaved, in
//! rounds, so a burst of load from elsewhere hits both alike.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferry_volume::VolumeKey;
use ferry_volume::cipher::{Engine, SECTOR, SectorCipher, tweak, vaes_available};

const BATCH: usize = 1 << 20;
const ROUNDS: usize = 5;

/// GB/s of `f` (one call = one BATCH) over ~0.6 s, after a warm-up.
fn measure(mut f: impl FnMut()) -> f64 {
    for _ in 0..8 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(600) {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    (n as f64 * BATCH as f64) / start.elapsed().as_secs_f64() / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut key = VolumeKey::zeroed();
    openssl::rand::rand_bytes(key.expose_mut()).unwrap();
    let input: Vec<u8> = (0..BATCH).map(|i| i as u8).collect();
    let mut out = vec![0u8; BATCH];

    let mut engines = vec![Engine::Openssl];
    if vaes_available() {
        engines.push(Engine::Vaes);
    } else {
        println!("note: this CPU has no VAES/AVX2/VPCLMULQDQ; only OpenSSL is measured");
    }
    assert_eq!(
        SectorCipher::new(&key).unwrap().engine(),
        *engines.last().unwrap(),
        "SectorCipher::new picks the fastest available engine"
    );
    // results[engine][direction] = per-round GB/s
    let mut results = vec![[Vec::new(), Vec::new()]; engines.len()];
    let mut sector = 0u64;
    for _ in 0..ROUNDS {
        for (e, &engine) in engines.iter().enumerate() {
            let mut c = SectorCipher::with_engine(&key, engine).unwrap();
            results[e][0].push(measure(|| {
                c.encrypt(sector, black_box(&input), &mut out).unwrap();
                sector = sector.wrapping_add((BATCH / SECTOR) as u64);
            }));
            results[e][1].push(measure(|| {
                c.decrypt(sector, black_box(&input), &mut out).unwrap();
                sector = sector.wrapping_add((BATCH / SECTOR) as u64);
            }));
        }
    }
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

    let base = [median(results[0][0].clone()), median(results[0][1].clone())];
    println!(
        "| sector cipher, 4 KiB sectors, 1 thread (median of {ROUNDS} rounds) | GB/s | vs OpenSSL EVP | vs memcpy |"
    );
    println!("|---|---:|---:|---:|");
    for (e, engine) in engines.iter().enumerate() {
        for (d, dir) in ["encrypt", "decrypt"].iter().enumerate() {
            let v = median(results[e][d].clone());
            let runs: Vec<String> = results[e][d].iter().map(|x| format!("{x:.2}")).collect();
            println!(
                "| AES-256-XTS {dir}, {engine:?} engine (rounds: {}) | {v:.2} | {:.2}x | {:.2} |",
                runs.join(" "),
                v / base[d],
                v / copy
            );
        }
    }
    println!(
        "| AES-256-XTS encrypt, OpenSSL re-keyed per sector | {rekey:.2} | {:.2}x | {:.2} |",
        rekey / base[0],
        rekey / copy
    );
    println!("| memcpy (floor) | {copy:.2} | | 1.00 |");
    black_box(&out);
}
