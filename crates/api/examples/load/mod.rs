//! The lean HTTP/1.1 + SigV4 client the load generators share
//! (`kms_load.rs`, `ecs_describe_load.rs`; each includes this module).
//!
//! The generators share the machine with the server, so the client is lean:
//! raw HTTP/1.1 on tokio, buffers reused per connection, and the SigV4
//! signing key derived once per day (as the AWS SDKs cache it). Every
//! request is still signed in full: the SHA-256 of its body, its canonical
//! request and string to sign, and the HMAC signature.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_api::sigv4::{ALGORITHM, signing_key};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// The options every generator takes: `--endpoint`, `--credentials`,
/// `--region`, `--connections`, `--seconds`, `--threads`.
pub struct Opts {
    pub host: String,
    pub access_key_id: String,
    pub secret: Zeroizing<String>,
    pub region: String,
    pub connections: usize,
    pub seconds: u64,
    pub threads: usize,
    args: Vec<String>,
}

impl Opts {
    fn parse(connections: usize, threads: usize) -> Result<Self, String> {
        let args: Vec<String> = std::env::args().collect();
        let endpoint = arg(&args, "--endpoint").ok_or("--endpoint is required")?;
        let host = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let path = arg(&args, "--credentials").ok_or("--credentials is required")?;
        let (access_key_id, secret) =
            ferry_api::credentials::read_credentials(std::path::Path::new(&path))
                .map_err(|e| e.to_string())?;
        let mut o = Self {
            host,
            access_key_id,
            secret,
            region: arg(&args, "--region").unwrap_or_else(|| "us-east-1".into()),
            connections: 0,
            seconds: 0,
            threads: 0,
            args,
        };
        o.connections = o.num("--connections", connections)?;
        o.seconds = o.num("--seconds", 10)? as u64;
        o.threads = o.num("--threads", threads)?.max(1);
        Ok(o)
    }

    /// A numeric option of the generator's own, or `default`.
    pub fn num(&self, name: &str, default: usize) -> Result<usize, String> {
        arg(&self.args, name)
            .map(|s| s.parse().map_err(|_| format!("{name}: not a number: {s}")))
            .unwrap_or(Ok(default))
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Parses the options (with the generator's defaults for `--connections`
/// and `--threads`), runs `run` on a tokio runtime of `--threads` worker
/// threads (one: the current thread), and prints an error as `NAME: error`.
pub fn main<F, Fut>(
    name: &str,
    connections: usize,
    threads: usize,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(Arc<Opts>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let result = Opts::parse(connections, threads).and_then(|o| {
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
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The AWS JSON 1.1 service a connection talks to.
#[derive(Clone, Copy)]
pub struct Service {
    /// The SigV4 service name (`kms`).
    pub name: &'static str,
    /// The `X-Amz-Target` prefix (`TrentService`); empty for a query
    /// protocol service (IAM, STS), whose body is a form naming the Action.
    pub target: &'static str,
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
    service: Service,
    second: u64,
    amz_date: String,
    day: String,
    key: Zeroizing<[u8; 32]>,
    creq: String,
    sts: String,
}

impl SigV4 {
    fn new(opts: Arc<Opts>, service: Service) -> Self {
        Self {
            opts,
            service,
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
            self.key = signing_key(
                &self.opts.secret,
                &self.day,
                &self.opts.region,
                self.service.name,
            );
        }
    }

    /// Writes the complete HTTP request for `op` with `body` into `out`.
    fn request(&mut self, op: &str, body: &[u8], out: &mut Vec<u8>) {
        self.tick();
        let o = &self.opts;
        let Service { name, target } = self.service;
        let payload = hex::encode(Sha256::digest(body));
        let query = target.is_empty();
        let content_type = if query {
            "application/x-www-form-urlencoded; charset=utf-8"
        } else {
            "application/x-amz-json-1.1"
        };
        self.creq.clear();
        if query {
            let _ = write!(
                self.creq,
                "POST\n/\n\ncontent-type:{content_type}\nhost:{}\nx-amz-date:{}\n\ncontent-type;host;x-amz-date\n{payload}",
                o.host, self.amz_date
            );
        } else {
            let _ = write!(
                self.creq,
                "POST\n/\n\ncontent-type:{content_type}\nhost:{}\nx-amz-date:{}\nx-amz-target:{target}.{op}\n\ncontent-type;host;x-amz-date;x-amz-target\n{payload}",
                o.host, self.amz_date
            );
        }
        let scope = format_args!("{}/{}/{name}/aws4_request", self.day, o.region);
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
        let (target_header, signed) = if query {
            (String::new(), "content-type;host;x-amz-date")
        } else {
            (
                format!("X-Amz-Target: {target}.{op}\r\n"),
                "content-type;host;x-amz-date;x-amz-target",
            )
        };
        let _ = write!(
            VecWriter(out),
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n{target_header}X-Amz-Date: {}\r\nAuthorization: {ALGORITHM} Credential={}/{}/{}/{name}/aws4_request, SignedHeaders={signed}, Signature={sig}\r\nContent-Length: {}\r\n\r\n",
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

/// `fmt::Write` into a byte buffer, to format request bodies without a
/// `String` in between.
pub struct VecWriter<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// One keep-alive connection with its reused buffers.
pub struct Conn {
    stream: TcpStream,
    sig: SigV4,
    req: Vec<u8>,
    resp: Vec<u8>,
}

impl Conn {
    pub async fn open(opts: Arc<Opts>, service: Service) -> Result<Self, String> {
        let stream = TcpStream::connect(&opts.host)
            .await
            .map_err(|e| format!("connect {}: {e}", opts.host))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Self {
            stream,
            sig: SigV4::new(opts, service),
            req: Vec::with_capacity(2048),
            resp: Vec::with_capacity(4096),
        })
    }

    /// Sends one signed request and returns the response body (HTTP 200
    /// checked).
    pub async fn call(&mut self, op: &str, body: &[u8]) -> Result<&[u8], String> {
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

/// A request's latency in microseconds, as the generators collect them.
pub fn micros(d: std::time::Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// The `p` percentile, in milliseconds, of latencies in microseconds
/// (sorted).
pub fn pct(l: &[u32], p: f64) -> f64 {
    if l.is_empty() {
        return 0.0;
    }
    let i = ((l.len() as f64 - 1.0) * p).round() as usize;
    f64::from(l[i.min(l.len() - 1)]) / 1000.0
}
