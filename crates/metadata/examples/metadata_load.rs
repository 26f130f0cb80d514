//! Keep-alive HTTP/1.1 GET load against one URL, for bench/metadata.sh:
//! `metadata_load --url http://169.254.170.2/v4/ID/task [--connections 4]
//! [--seconds 10]`. Run it inside the task's namespace (`ip netns exec
//! ferry-TASK_ID ...`). Prints one JSON line: requests/s, p50, p99, max
//! (ms), status counts.
//!
//! Lean on purpose (raw HTTP on a current-thread tokio runtime, buffers
//! reused) so the client costs less than the server on a 2-core machine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// One connection's loop: send, read one response (Content-Length framed).
async fn conn(
    host: String,
    path: String,
    until: Instant,
) -> Result<(Vec<u32>, BTreeMap<u16, u64>), String> {
    let mut s = TcpStream::connect(&host).await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut lat = Vec::with_capacity(1 << 16);
    let mut codes = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 20];
    while Instant::now() < until {
        let t = Instant::now();
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut have = 0;
        let (head_end, body_len, code) = loop {
            let n = s.read(&mut buf[have..]).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            have += n;
            let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let code: u16 = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, len, code);
        };
        while have < head_end + body_len {
            let n = s.read(&mut buf[have..]).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            have += n;
        }
        lat.push(t.elapsed().as_micros() as u32);
        *codes.entry(code).or_insert(0) += 1;
    }
    Ok((lat, codes))
}

fn main() -> Result<(), String> {
    let url = arg("--url").ok_or("--url is required")?;
    let rest = url.strip_prefix("http://").ok_or("http:// URLs only")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    let host = if host.contains(':') {
        host
    } else {
        format!("{host}:80")
    };
    let conns: usize = arg("--connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let secs: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let results = rt.block_on(async {
        let hs: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(conn(host.clone(), path.clone(), until)))
            .collect();
        let mut out = Vec::new();
        for h in hs {
            out.push(h.await.map_err(|e| e.to_string()).and_then(|r| r));
        }
        out
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
    for r in results {
        let (l, c) = r?;
        lat.extend(l);
        for (k, v) in c {
            *codes.entry(k).or_insert(0) += v;
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        let i = ((lat.len().saturating_sub(1)) as f64 * p).round() as usize;
        f64::from(lat.get(i).copied().unwrap_or(0)) / 1000.0
    };
    println!(
        "{{\"url\": \"{url}\", \"connections\": {conns}, \"requests\": {}, \"rps\": {:.0}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"codes\": {{{}}}}}",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        lat.last().map(|v| f64::from(*v) / 1000.0).unwrap_or(0.0),
        codes
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
