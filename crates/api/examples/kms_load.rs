//! Load generator for the KMS over HTTP/1.1 keep-alive with SigV4 (run in
//! its own process).
//!
//! ```text
//! kms_load --endpoint http://127.0.0.1:PORT --credentials DIR/credentials \
//!          [--connections 64] [--seconds 10] [--region us-east-1] [--threads 1]
//! ```
//!
//! Creates a key, then runs three phases of `--seconds` each over
//! `--connections` keep-alive HTTP/1.1 connections, one request in flight
//! per connection (as an SDK client pool does): GenerateRandom (the
//! baseline: the same HTTP, SigV4, JSON and audit path without a key),
//! GenerateDataKey (AES_256, with an encryption context) and Decrypt (of
//! blobs made in the GenerateDataKey phase). Prints ops/s and p50/p99
//! latency per phase, and each phase's throughput relative to the baseline.
//!
//! The client is the lean raw HTTP/1.1 + SigV4 one in `load/mod.rs`, on
//! tokio with `--threads` worker threads (default one). Every response is
//! checked: HTTP 200 and a JSON body with the expected members.

mod load;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use load::{Conn, Opts, Service, VecWriter, micros, pct};

const KMS: Service = Service {
    name: "kms",
    target: "TrentService",
};

/// The response members the generator checks.
#[derive(serde::Deserialize)]
struct Out<'a> {
    #[serde(rename = "Plaintext", borrow, default)]
    plaintext: Option<Cow<'a, str>>,
    #[serde(rename = "CiphertextBlob", borrow, default)]
    ciphertext_blob: Option<Cow<'a, str>>,
    #[serde(rename = "KeyId", borrow, default)]
    key_id: Option<Cow<'a, str>>,
}

fn parse_out<'a>(op: &str, body: &'a [u8]) -> Result<Out<'a>, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("{op}: response is not the expected JSON: {e}"))
}

/// A base64 value of 32 bytes is 44 characters.
const B64_32: usize = 44;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Random,
    DataKey,
    Decrypt,
}

struct PhaseResult {
    ops: usize,
    elapsed: Duration,
    /// Latencies in microseconds, sorted.
    latencies: Vec<u32>,
    blobs: Vec<String>,
}

/// One connection's loop until `deadline`: returns latencies (us) and, in
/// the GenerateDataKey phase, up to 64 blobs for the Decrypt phase.
async fn worker(
    opts: Arc<Opts>,
    key: Arc<String>,
    blobs: Arc<Vec<String>>,
    op: Op,
    w: usize,
    deadline: Instant,
) -> Result<(Vec<u32>, Vec<String>), String> {
    let mut conn = Conn::open(opts.clone(), KMS).await?;
    let mut lat = Vec::with_capacity(1 << 16);
    let mut made = Vec::new();
    let mut body = Vec::with_capacity(1024);
    let mut i = w;
    while Instant::now() < deadline {
        let t = Instant::now();
        body.clear();
        match op {
            Op::Random => {
                body.extend_from_slice(br#"{"NumberOfBytes":32}"#);
                let r = conn.call("GenerateRandom", &body).await?;
                let out = parse_out("GenerateRandom", r)?;
                if out.plaintext.map(|p| p.len()) != Some(B64_32) {
                    return Err("GenerateRandom returned no 32 bytes".into());
                }
            }
            Op::DataKey => {
                let _ = write!(
                    VecWriter(&mut body),
                    r#"{{"KeyId":"{key}","KeySpec":"AES_256","EncryptionContext":{{"bench":"kms"}}}}"#
                );
                let r = conn.call("GenerateDataKey", &body).await?;
                let out = parse_out("GenerateDataKey", r)?;
                if out.plaintext.map(|p| p.len()) != Some(B64_32) || out.key_id.is_none() {
                    return Err("GenerateDataKey returned no 32-byte key".into());
                }
                let blob = out
                    .ciphertext_blob
                    .ok_or("GenerateDataKey returned no CiphertextBlob")?;
                if made.len() < 64 {
                    made.push(blob.into_owned());
                }
            }
            Op::Decrypt => {
                let blob = &blobs[i % blobs.len()];
                let _ = write!(
                    VecWriter(&mut body),
                    r#"{{"CiphertextBlob":"{blob}","EncryptionContext":{{"bench":"kms"}}}}"#
                );
                let r = conn.call("Decrypt", &body).await?;
                let out = parse_out("Decrypt", r)?;
                if out.plaintext.map(|p| p.len()) != Some(B64_32) || out.key_id.is_none() {
                    return Err("Decrypt returned no 32-byte plaintext".into());
                }
            }
        }
        lat.push(micros(t.elapsed()));
        i += opts.connections;
    }
    Ok((lat, made))
}

async fn phase(
    opts: Arc<Opts>,
    key: Arc<String>,
    blobs: Arc<Vec<String>>,
    op: Op,
) -> Result<PhaseResult, String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    let tasks: Vec<_> = (0..opts.connections)
        .map(|w| {
            tokio::spawn(worker(
                opts.clone(),
                key.clone(),
                blobs.clone(),
                op,
                w,
                deadline,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut made = Vec::new();
    for t in tasks {
        let (l, m) = t.await.map_err(|e| e.to_string())??;
        latencies.extend(l);
        made.extend(m);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(PhaseResult {
        ops: latencies.len(),
        elapsed,
        latencies,
        blobs: made,
    })
}

fn report(name: &str, r: &PhaseResult) {
    println!(
        "{name:<16} {:>8} ops in {:>5.1} s = {:>8.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
        r.ops,
        r.elapsed.as_secs_f64(),
        r.ops as f64 / r.elapsed.as_secs_f64(),
        pct(&r.latencies, 0.50),
        pct(&r.latencies, 0.99)
    );
}

async fn run(opts: Arc<Opts>) -> Result<(), String> {
    let mut c = Conn::open(opts.clone(), KMS).await?;
    let r = c
        .call("CreateKey", br#"{"Description":"kms_load benchmark key"}"#)
        .await?;
    let v: serde_json::Value = serde_json::from_slice(r).map_err(|e| e.to_string())?;
    let key = Arc::new(
        v["KeyMetadata"]["Arn"]
            .as_str()
            .ok_or("CreateKey returned no Arn")?
            .to_owned(),
    );
    drop(c);
    println!(
        "kms_load: {} connections (HTTP/1.1 keep-alive, one request in flight each), {} s per phase, {} thread(s), key {}",
        opts.connections, opts.seconds, opts.threads, key
    );
    let none = Arc::new(Vec::new());
    // Baseline: HTTP + SigV4 + JSON + audit with no key lookup or AES.
    let base = phase(opts.clone(), key.clone(), none.clone(), Op::Random).await?;
    report("GenerateRandom", &base);
    let gdk = phase(opts.clone(), key.clone(), none, Op::DataKey).await?;
    report("GenerateDataKey", &gdk);
    if gdk.blobs.is_empty() {
        return Err("no blobs to decrypt".into());
    }
    let dec = phase(opts.clone(), key, Arc::new(gdk.blobs.clone()), Op::Decrypt).await?;
    report("Decrypt", &dec);
    let rate = |r: &PhaseResult| r.ops as f64 / r.elapsed.as_secs_f64();
    println!(
        "ratio to baseline: GenerateDataKey {:.2}, Decrypt {:.2}",
        rate(&gdk) / rate(&base),
        rate(&dec) / rate(&base)
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    load::main("kms_load", 64, 1, run)
}
