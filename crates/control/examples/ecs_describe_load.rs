//! Load generator for ECS DescribeTasks over HTTP with SigV4 (run in its own
//! process; `bench/ecs_describe.sh` starts the server and runs this).
//!
//! ```text
//! ecs_describe_load --endpoint http://127.0.0.1:PORT --credentials DIR/credentials \
//!                   [--connections 32] [--seconds 10] [--region us-east-1] [--tasks 50]
//! ```
//!
//! Setup: registers the source document's task definition and starts
//! `--tasks` tasks (platform 1.3.0, so no KMS call per task). Then three
//! phases of `--seconds` each over `--connections` keep-alive HTTP/1.1
//! connections, every request signed with ferry's SigV4 signer and checked:
//! ListClusters (the baseline: the same HTTP, SigV4 and JSON path with a
//! trivial operation), DescribeTasks of one task, and DescribeTasks of ten
//! tasks. Prints requests/s, tasks/s and p50/p99 latency per phase and the
//! ratio to the baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_api::sigv4::{Signer, SigningCredentials};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

struct Opts {
    host: String,
    creds: SigningCredentials,
    region: String,
    connections: usize,
    seconds: u64,
    tasks: usize,
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
    let num = |n: &str, d: usize| arg(&args, n).and_then(|s| s.parse().ok()).unwrap_or(d);
    Ok(Opts {
        host,
        creds: SigningCredentials {
            access_key_id: id,
            secret_access_key: secret,
        },
        region: arg(&args, "--region").unwrap_or_else(|| "us-east-1".into()),
        connections: num("--connections", 32),
        seconds: num("--seconds", 10) as u64,
        tasks: num("--tasks", 50).max(10),
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

async fn call(conn: &mut Conn, o: &Opts, op: &str, body: &Value) -> Result<Value, String> {
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
        HeaderValue::from_str(&format!("AmazonEC2ContainerServiceV20141113.{op}"))
            .map_err(|e| e.to_string())?,
    );
    Signer {
        creds: &o.creds,
        region: &o.region,
        service: "ecs",
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Baseline,
    Describe1,
    Describe10,
}

struct PhaseResult {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn phase(o: Arc<Opts>, arns: Arc<Vec<String>>, p: Phase) -> Result<PhaseResult, String> {
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..o.connections {
        let (o, arns) = (o.clone(), arns.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = connect(&o.host).await?;
            let mut lat = Vec::with_capacity(100_000);
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                match p {
                    Phase::Baseline => {
                        let r = call(&mut conn, &o, "ListClusters", &json!({})).await?;
                        if r["clusterArns"].as_array().is_none_or(Vec::is_empty) {
                            return Err("ListClusters returned no clusters".to_string());
                        }
                    }
                    Phase::Describe1 | Phase::Describe10 => {
                        let n = if p == Phase::Describe1 { 1 } else { 10 };
                        let want: Vec<&String> =
                            (0..n).map(|k| &arns[(i + k) % arns.len()]).collect();
                        let r =
                            call(&mut conn, &o, "DescribeTasks", &json!({"tasks": want})).await?;
                        let got = r["tasks"].as_array().map_or(0, Vec::len);
                        if got != n || r["tasks"][0]["taskArn"] != json!(want[0]) {
                            return Err(format!("DescribeTasks returned {got} of {n} tasks"));
                        }
                    }
                }
                lat.push(t.elapsed());
                i += o.connections;
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.map_err(|e| e.to_string())??);
    }
    Ok(PhaseResult {
        requests: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn setup(o: &Opts) -> Result<Vec<String>, String> {
    let mut conn = connect(&o.host).await?;
    let td = json!({
        "family": "bench-describe", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{"name": "sample-fargate-app", "image": "httpd:2.4", "essential": true,
            "entryPoint": ["sh", "-c"], "command": ["httpd-foreground"],
            "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}]}]
    });
    call(&mut conn, o, "RegisterTaskDefinition", &td).await?;
    let mut arns = Vec::new();
    while arns.len() < o.tasks {
        let n = (o.tasks - arns.len()).min(10);
        let r = call(
            &mut conn,
            o,
            "RunTask",
            &json!({"taskDefinition": "bench-describe", "count": n, "launchType": "FARGATE",
                "platformVersion": "1.3.0",
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}}),
        )
        .await?;
        for t in r["tasks"].as_array().into_iter().flatten() {
            arns.push(t["taskArn"].as_str().ok_or("task without ARN")?.to_owned());
        }
    }
    Ok(arns)
}

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ecs_describe_load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ecs_describe_load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let o = Arc::new(opts()?);
    let arns = Arc::new(setup(&o).await?);
    println!(
        "{} tasks, {} connections, {}s per phase",
        arns.len(),
        o.connections,
        o.seconds
    );
    let mut base_rps = 0.0;
    for (name, p) in [
        ("ListClusters (baseline)", Phase::Baseline),
        ("DescribeTasks x1", Phase::Describe1),
        ("DescribeTasks x10", Phase::Describe10),
    ] {
        let mut r = phase(o.clone(), arns.clone(), p).await?;
        r.latencies.sort();
        let rps = r.requests as f64 / r.elapsed.as_secs_f64();
        if p == Phase::Baseline {
            base_rps = rps;
        }
        let per = match p {
            Phase::Describe10 => 10.0,
            _ => 1.0,
        };
        println!(
            "{name:<24} {rps:>9.0} req/s {:>9.0} tasks/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {:.2}x baseline",
            if p == Phase::Baseline { 0.0 } else { rps * per },
            pct(&r.latencies, 0.50).as_secs_f64() * 1e3,
            pct(&r.latencies, 0.99).as_secs_f64() * 1e3,
            if base_rps > 0.0 { rps / base_rps } else { 0.0 },
        );
    }
    Ok(())
}
