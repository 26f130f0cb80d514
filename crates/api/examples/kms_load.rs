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
//! The generator shares the machine with the server, so it is lean: raw
//! HTTP/1.1 on tokio (`--threads` worker threads, default one), buffers
//! reused per connection, and the SigV4 signing key derived once per day
//! (as the AWS SDKs cache it). Every request is still signed in full: the
//! SHA-256 of its body, its canonical request and string to sign, and the
//! HMAC signature. Every response is checked: HTTP 200 and a JSON body with
//! the expected members.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_api::sigv4::{ALGORITHM, signing_key};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

struct Opts {
    host: String,
    access_key_id: String,
    secret: Zeroizing<String>,
    region: String,
    connections: usize,
    seconds: u64,
    threads: usize,
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
    let (access_key_id, secret) = ferry_api::datadir::read_credentials(std::path::Path::new(&path))
        .map_err(|e| e.to_string())?;
    let num = |name: &str, default: usize| {
        arg(&args, name)
            .map(|s| s.parse().map_err(|_| format!("{name}: not a number: {s}")))
            .unwrap_or(Ok(default))
    };
    Ok(Opts {
        host,
        access_key_id,
        secret,
        region: arg(&args, "--region").unwrap_or_else(|| "us-east-1".into()),
        connections: num("--connections", 64)?,
        seconds: num("--seconds", 10)? as u64,
        threads: num("--threads", 1)?.max(1),
    })
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC).
fn amz_date(unix: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Per-connection SigV4 state: the signing key for the current day (the
/// AWS SDKs cache it the same way) and the formatted time of the current
/// second. The signature itself is computed for every request.
struct SigV4 {
    opts: Arc<Opts>,
    second: u64,
    amz_date: String,
    day: String,
    key: Zeroizing<[u8; 32]>,
    creq: String,
    sts: String,
}

impl SigV4 {
    fn new(opts: Arc<Opts>) -> Self {
        Self {
            opts,
            second: u64::MAX,
            amz_date: String::new(),
            day: String::new(),
            key: Zeroizing::new([0; 32]),
            creq: String::with_capacity(512),
            sts: String::with_capacity(256),
        }
    }

    fn tick(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now == self.second {
            return;
        }
        self.second = now;
        self.amz_date = amz_date(now);
        if !self.amz_date.starts_with(&self.day) || self.day.is_empty() {
            self.day = self.amz_date[..8].to_owned();
            self.key = signing_key(&self.opts.secret, &self.day, &self.opts.region, "kms");
        }
    }

    /// Writes the complete HTTP request for `op` with `body` into `out`.
    fn request(&mut self, op: &str, body: &[u8], out: &mut Vec<u8>) {
        self.tick();
        let o = &self.opts;
        let payload = hex::encode(Sha256::digest(body));
        self.creq.clear();
        let _ = write!(
            self.creq,
            "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:{}\nx-amz-date:{}\nx-amz-target:TrentService.{op}\n\ncontent-type;host;x-amz-date;x-amz-target\n{payload}",
            o.host, self.amz_date
        );
        let scope = format_args!("{}/{}/kms/aws4_request", self.day, o.region);
        self.sts.clear();
        let _ = write!(
            self.sts,
            "{ALGORITHM}\n{}\n{scope}\n{}",
            self.amz_date,
            hex::encode(Sha256::digest(self.creq.as_bytes()))
        );
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(self.sts.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        out.clear();
        let _ = write!(
            VecWriter(out),
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.{op}\r\nX-Amz-Date: {}\r\nAuthorization: {ALGORITHM} Credential={}/{}/{}/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={sig}\r\nContent-Length: {}\r\n\r\n",
            o.host,
            self.amz_date,
            o.access_key_id,
            self.day,
            o.region,
            body.len()
        );
        out.extend_from_slice(body);
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// One keep-alive connection with its reused buffers.
struct Conn {
    stream: TcpStream,
    sig: SigV4,
    req: Vec<u8>,
    resp: Vec<u8>,
}

impl Conn {
    async fn open(opts: Arc<Opts>) -> Result<Self, String> {
        let stream = TcpStream::connect(&opts.host)
            .await
            .map_err(|e| format!("connect {}: {e}", opts.host))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Self {
            stream,
            sig: SigV4::new(opts),
            req: Vec::with_capacity(2048),
            resp: Vec::with_capacity(4096),
        })
    }

    /// Sends one signed request and returns the response body (HTTP 200
    /// checked).
    async fn call(&mut self, op: &str, body: &[u8]) -> Result<&[u8], String> {
        self.sig.request(op, body, &mut self.req);
        self.stream
            .write_all(&self.req)
            .await
            .map_err(|e| format!("{op}: send: {e}"))?;
        self.resp.clear();
        loop {
            if let Some((status, start, len)) = parse_head(&self.resp)? {
                let end = start + len;
                while self.resp.len() < end {
                    self.read_more(op).await?;
                }
                if self.resp.len() > end {
                    return Err(format!("{op}: unexpected bytes after the response"));
                }
                let body = &self.resp[start..end];
                if status != 200 {
                    return Err(format!(
                        "{op}: HTTP {status}: {}",
                        String::from_utf8_lossy(body)
                    ));
                }
                return Ok(body);
            }
            self.read_more(op).await?;
        }
    }

    async fn read_more(&mut self, op: &str) -> Result<(), String> {
        if self.resp.capacity() - self.resp.len() < 1024 {
            self.resp.reserve(4096);
        }
        let n = self
            .stream
            .read_buf(&mut self.resp)
            .await
            .map_err(|e| format!("{op}: receive: {e}"))?;
        if n == 0 {
            return Err(format!("{op}: the server closed the connection"));
        }
        Ok(())
    }
}

/// Parses a response head: `(status, body offset, content length)`, or
/// `None` when the head is not complete yet.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut headers);
    let start = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad HTTP response: {e}")),
    };
    let status = r.code.unwrap_or(0);
    let len = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or("response without Content-Length")?;
    Ok(Some((status, start, len)))
}

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
    let mut conn = Conn::open(opts.clone()).await?;
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
        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
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

fn pct(l: &[u32], p: f64) -> f64 {
    if l.is_empty() {
        return 0.0;
    }
    let i = ((l.len() as f64 - 1.0) * p).round() as usize;
    f64::from(l[i.min(l.len() - 1)]) / 1000.0
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
    let mut c = Conn::open(opts.clone()).await?;
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
    let result = opts().and_then(|o| {
        let o = Arc::new(o);
        let rt = if o.threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(o.threads)
                .enable_all()
                .build()
        }
        .map_err(|e| e.to_string())?;
        rt.block_on(run(o))
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kms_load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
