//! Load generator for the KMS over HTTP with SigV4 (run in its own process).
//!
//! ```text
//! kms_load --endpoint http://127.0.0.1:PORT --credentials DIR/credentials \
//!          [--connections 32] [--seconds 10] [--region us-east-1]
//! ```
//!
//! Creates a key, then runs three phases of `--seconds` each over
//! `--connections` keep-alive HTTP/1.1 connections: GenerateRandom (the
//! baseline: the same HTTP, SigV4, JSON and audit path without a key),
//! GenerateDataKey
//! (AES_256, with an encryption context) and Decrypt (of blobs made in the
//! first phase). Every request is signed with SigV4 by ferry's signer and
//! checked for HTTP 200. Prints ops/s and p50/p99 latency per phase, and
//! each phase's throughput relative to the baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_api::sigv4::{Signer, SigningCredentials};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};

struct Opts {
    host: String,
    creds: SigningCredentials,
    region: String,
    connections: usize,
    seconds: u64,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn opts() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().collect();
    let endpoint = arg(&args, "--endpoint").ok_or("--endpoint is required")?;
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let path = arg(&args, "--credentials").ok_or("--credentials is required")?;
    let (id, secret) = ferry_api::datadir::read_credentials(std::path::Path::new(&path))
        .map_err(|e| e.to_string())?;
    Ok(Opts {
        host,
        creds: SigningCredentials {
            access_key_id: id,
            secret_access_key: secret,
        },
        region: arg(&args, "--region").unwrap_or_else(|| "us-east-1".into()),
        connections: arg(&args, "--connections")
            .and_then(|s| s.parse().ok())
            .unwrap_or(32),
        seconds: arg(&args, "--seconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    })
}

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(host: &str) -> Result<Conn, String> {
    let stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

async fn call(
    conn: &mut Conn,
    o: &Opts,
    op: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut h = HeaderMap::new();
    h.insert(
        "host",
        HeaderValue::from_str(&o.host).map_err(|e| e.to_string())?,
    );
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    h.insert(
        "x-amz-target",
        HeaderValue::from_str(&format!("TrentService.{op}")).map_err(|e| e.to_string())?,
    );
    Signer {
        creds: &o.creds,
        region: &o.region,
        service: "kms",
    }
    .sign(
        "POST",
        "/",
        "",
        &mut h,
        &body,
        time::OffsetDateTime::now_utc(),
    )
    .map_err(|e| e.to_string())?;
    let mut req = http::Request::post("/")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    *req.headers_mut() = h;
    conn.ready().await.map_err(|e| e.to_string())?;
    let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{op}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

struct PhaseResult {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    blobs: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Random,
    DataKey,
    Decrypt,
}

async fn phase(
    o: Arc<Opts>,
    key: Arc<String>,
    blobs: Arc<Vec<String>>,
    op: Op,
) -> Result<PhaseResult, String> {
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..o.connections {
        let (o, key, blobs) = (o.clone(), key.clone(), blobs.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&o.host).await?;
            let mut lat = Vec::with_capacity(100_000);
            let mut made = Vec::new();
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op == Op::Random {
                    let r = call(&mut conn, &o, "GenerateRandom", &serde_json::json!({"NumberOfBytes": 32})).await?;
                    if r["Plaintext"].as_str().map(str::len) != Some(44) {
                        return Err("GenerateRandom returned no 32 bytes".to_string());
                    }
                } else if op == Op::Decrypt {
                    let blob = &blobs[i % blobs.len()];
                    let r = call(
                        &mut conn,
                        &o,
                        "Decrypt",
                        &serde_json::json!({"CiphertextBlob": blob, "EncryptionContext": {"bench": "kms"}}),
                    )
                    .await?;
                    if r["Plaintext"].as_str().map(str::len) != Some(44) {
                        return Err("Decrypt returned no 32-byte plaintext".to_string());
                    }
                } else {
                    let r = call(
                        &mut conn,
                        &o,
                        "GenerateDataKey",
                        &serde_json::json!({"KeyId": *key, "KeySpec": "AES_256", "EncryptionContext": {"bench": "kms"}}),
                    )
                    .await?;
                    if made.len() < 64
                        && let Some(b) = r["CiphertextBlob"].as_str()
                    {
                        made.push(b.to_owned());
                    }
                }
                lat.push(t.elapsed());
                i += o.connections;
            }
            Ok::<_, String>((lat, made))
        }));
    }
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

fn pct(l: &[Duration], p: f64) -> f64 {
    if l.is_empty() {
        return 0.0;
    }
    let i = ((l.len() as f64 - 1.0) * p).round() as usize;
    l[i.min(l.len() - 1)].as_secs_f64() * 1000.0
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

async fn run() -> Result<(), String> {
    let o = Arc::new(opts()?);
    let mut c = connect(&o.host).await?;
    let k = call(
        &mut c,
        &o,
        "CreateKey",
        &serde_json::json!({"Description": "kms_load benchmark key"}),
    )
    .await?;
    let key = Arc::new(
        k["KeyMetadata"]["Arn"]
            .as_str()
            .ok_or("CreateKey returned no Arn")?
            .to_owned(),
    );
    println!(
        "kms_load: {} connections, {} s per phase, key {}",
        o.connections, o.seconds, key
    );
    // Baseline: HTTP + SigV4 + JSON + audit with no key lookup or AES.
    let base = phase(o.clone(), key.clone(), Arc::new(Vec::new()), Op::Random).await?;
    report("GenerateRandom", &base);
    let gdk = phase(o.clone(), key.clone(), Arc::new(Vec::new()), Op::DataKey).await?;
    report("GenerateDataKey", &gdk);
    if gdk.blobs.is_empty() {
        return Err("no blobs to decrypt".into());
    }
    let dec = phase(
        o.clone(),
        key.clone(),
        Arc::new(gdk.blobs.clone()),
        Op::Decrypt,
    )
    .await?;
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kms_load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kms_load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
