//! Load generator for ECS DescribeTasks over HTTP with SigV4 (run in its own
//! process; `bench/ecs_describe.sh` starts the server and runs this).
//!
//! ```text
//! ecs_describe_load --endpoint http://127.0.0.1:PORT --credentials DIR/credentials \
//!                   [--connections 32] [--seconds 10] [--region us-east-1] [--tasks 50] \
//!                   [--threads CORES]
//! ```
//!
//! Setup: registers the source document's task definition and starts
//! `--tasks` tasks (platform 1.3.0, so no KMS call per task). Then three
//! phases of `--seconds` each over `--connections` keep-alive HTTP/1.1
//! connections, every request signed and checked, with the lean client
//! `kms_load` uses (`load/mod.rs`): ListClusters (the baseline: the same
//! HTTP, SigV4 and JSON path with a trivial operation), DescribeTasks of one
//! task, and DescribeTasks of ten tasks. Prints requests/s, tasks/s and
//! p50/p99 latency per phase and the ratio to the baseline.

mod load;

use std::sync::Arc;
use std::time::{Duration, Instant};

use load::{Conn, Opts, Service, micros, pct};
use serde_json::{Value, json};

const ECS: Service = Service {
    name: "ecs",
    target: "AmazonEC2ContainerServiceV20141113",
};

/// Sends `body` as `op` and parses the JSON response.
async fn call(conn: &mut Conn, op: &str, body: &Value) -> Result<Value, String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let r = conn.call(op, &body).await?;
    serde_json::from_slice(r).map_err(|e| e.to_string())
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
    /// Latencies in microseconds.
    latencies: Vec<u32>,
}

async fn phase(o: Arc<Opts>, arns: Arc<Vec<String>>, p: Phase) -> Result<PhaseResult, String> {
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..o.connections {
        let (o, arns) = (o.clone(), arns.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(o.clone(), ECS).await?;
            let mut lat = Vec::with_capacity(100_000);
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                match p {
                    Phase::Baseline => {
                        let r = call(&mut conn, "ListClusters", &json!({})).await?;
                        if r["clusterArns"].as_array().is_none_or(Vec::is_empty) {
                            return Err("ListClusters returned no clusters".to_string());
                        }
                    }
                    Phase::Describe1 | Phase::Describe10 => {
                        let n = if p == Phase::Describe1 { 1 } else { 10 };
                        let want: Vec<&String> =
                            (0..n).map(|k| &arns[(i + k) % arns.len()]).collect();
                        let r = call(&mut conn, "DescribeTasks", &json!({"tasks": want})).await?;
                        let got = r["tasks"].as_array().map_or(0, Vec::len);
                        if got != n || r["tasks"][0]["taskArn"] != json!(want[0]) {
                            return Err(format!("DescribeTasks returned {got} of {n} tasks"));
                        }
                    }
                }
                lat.push(micros(t.elapsed()));
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

async fn setup(o: &Arc<Opts>, tasks: usize) -> Result<Vec<String>, String> {
    let mut conn = Conn::open(o.clone(), ECS).await?;
    let td = json!({
        "family": "bench-describe", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{"name": "sample-fargate-app", "image": "httpd:2.4", "essential": true,
            "entryPoint": ["sh", "-c"], "command": ["httpd-foreground"],
            "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}]}]
    });
    call(&mut conn, "RegisterTaskDefinition", &td).await?;
    let mut arns = Vec::new();
    while arns.len() < tasks {
        let n = (tasks - arns.len()).min(10);
        let r = call(
            &mut conn,
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
    // As before the shared client: a multi-thread runtime over all cores.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    load::main("ecs_describe_load", 32, cores, run)
}

async fn run(o: Arc<Opts>) -> Result<(), String> {
    let tasks = o.num("--tasks", 50)?.max(10);
    let arns = Arc::new(setup(&o, tasks).await?);
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
        r.latencies.sort_unstable();
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
            pct(&r.latencies, 0.50),
            pct(&r.latencies, 0.99),
            if base_rps > 0.0 { rps / base_rps } else { 0.0 },
        );
    }
    Ok(())
}
