//! Rough throughput of both backends on this machine, for docs/store.md:
//! `cargo run --release -p ferry-store --features testing --example store_bench`
//! (as root: it starts a throwaway PostgreSQL cluster).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_store::Store;
use ferry_store::testing::TempPostgres;

#[derive(serde::Serialize, serde::Deserialize)]
struct Rec {
    n: u64,
    name: String,
}

/// Runs `op` on `threads` threads for about `secs`; returns calls per second.
fn rate(store: &Arc<Store>, threads: usize, secs: f64, op: fn(&Store, u64)) -> f64 {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < until {
                    op(&s, (t as u64) << 32 | n);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn put(s: &Store, i: u64) {
    let r = Rec {
        n: i,
        name: "x".repeat(200),
    };
    if let Err(e) = s.put("bench", &format!("k/{i:016x}"), &r) {
        eprintln!("put: {e}");
    }
}

fn increment(s: &Store, _: u64) {
    let r = s.write(|w| {
        let n = w.get::<u64>("bench", "counter")?.unwrap_or(0);
        w.put("bench", "counter", &(n + 1))
    });
    if let Err(e) = r {
        eprintln!("increment: {e}");
    }
}

fn get(s: &Store, i: u64) {
    if let Err(e) = s.get::<Rec>("bench", &format!("k/{:016x}", i % 1000)) {
        eprintln!("get: {e}");
    }
}

fn bench(name: &str, s: Arc<Store>) {
    for i in 0..1000 {
        put(&s, i);
    }
    for threads in [1, 4] {
        println!(
            "{name}: put (one-record write txn) {threads} thread(s): {:.0}/s",
            rate(&s, threads, 3.0, put)
        );
        println!(
            "{name}: read-modify-write txn {threads} thread(s): {:.0}/s",
            rate(&s, threads, 3.0, increment)
        );
        println!(
            "{name}: get {threads} thread(s): {:.0}/s",
            rate(&s, threads, 3.0, get)
        );
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let redb = Store::open(&dir.path().join("bench.redb")).unwrap_or_else(|e| panic!("{e}"));
    bench("redb", Arc::new(redb));
    let pg = TempPostgres::new();
    let s = Store::connect(&pg.url()).unwrap_or_else(|e| panic!("{e}"));
    bench("postgresql, fsync off (test cluster)", Arc::new(s));
    // Durable commits, as redb's: fsync and full-page writes back on.
    let url = pg.create_database("durable");
    let psql = std::path::Path::new("/usr/lib/postgresql/15/bin/psql");
    for sql in [
        "ALTER SYSTEM SET fsync = on",
        "ALTER SYSTEM SET full_page_writes = on",
        "SELECT pg_reload_conf()",
    ] {
        let ok = std::process::Command::new(psql)
            .args(["-q", "-d", &url, "-c", sql])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "psql {sql}");
    }
    let s = Store::connect(&url).unwrap_or_else(|e| panic!("{e}"));
    bench("postgresql, fsync on", Arc::new(s));
}
