//! Sector-cipher micro-benchmark (plain harness: `cargo bench -p ferry-volume --bench cipher`).
//!
//! Encrypts and decrypts 1 MiB batches of 4 KiB sectors on one thread with
//! each [`SectorCipher`] engine (key schedule once, tweak per sector): the
//! VAES engine that `SectorCipher::new` picks on this CPU, and OpenSSL's EVP
//! path as the baseline in the same run, with their ratio. Also memcpy (the
//! floor any data path pays) and OpenSSL re-keyed per sector (what a naive
//! `Crypter::new` per sector costs). Engines are measured interleaved, in
//! rounds, so a burst of load from elsewhere hits both alike, and each figure
//! is given per second of the thread's own CPU time (the per-core number on a
//! shared host) as well as per wall-clock second.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferry_volume::VolumeKey;
use ferry_volume::cipher::{Engine, SECTOR, SectorCipher, tweak, vaes_available};

const BATCH: usize = 1 << 20;
const ROUNDS: usize = 5;

/// Nanoseconds this thread has run on a CPU (first field of schedstat).
fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

/// Throughput of `f` (one call = one BATCH) over ~0.6 s after a warm-up:
/// (GB per wall-clock second, GB per second of this thread's CPU time).
/// The second is the per-core figure on a shared host: time the scheduler
/// gave to other processes does not count against us.
fn measure(mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..8 {
        f();
    }
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(600) {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    let bytes = n as f64 * BATCH as f64;
    (bytes / wall / 1e9, bytes / cpu / 1e9)
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
    // results[engine][direction] = per-round (wall, cpu) GB/s
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

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the end: {}", load.trim());
    let wall = |v: &[(f64, f64)]| median(v.iter().map(|x| x.0).collect());
    let cpu = |v: &[(f64, f64)]| median(v.iter().map(|x| x.1).collect());
    let base = [cpu(&results[0][0]), cpu(&results[0][1])];
    let base_wall = [wall(&results[0][0]), wall(&results[0][1])];
    println!(
        "| 4 KiB sectors, 1 thread, median of {ROUNDS} rounds | GB/s per CPU-second | vs OpenSSL EVP | GB/s wall clock | vs OpenSSL EVP (wall) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (e, engine) in engines.iter().enumerate() {
        for (d, dir) in ["encrypt", "decrypt"].iter().enumerate() {
            let (c, w) = (cpu(&results[e][d]), wall(&results[e][d]));
            println!(
                "| AES-256-XTS {dir}, {engine:?} engine | {c:.2} | {:.2}x | {w:.2} | {:.2}x |",
                c / base[d],
                w / base_wall[d]
            );
        }
    }
    println!(
        "| AES-256-XTS encrypt, OpenSSL re-keyed per sector | {:.2} | {:.2}x | {:.2} | |",
        rekey.1,
        rekey.1 / base[0],
        rekey.0
    );
    println!("| memcpy (floor) | {:.2} | | {:.2} | |", copy.1, copy.0);
    black_box(&out);
}
