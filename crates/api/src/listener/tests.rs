//! The listener's timeouts and caps over raw TCP: what a slow, silent or
//! flooding client sees, with short limits so each case takes under a
//! few seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Limits;
use crate::auth::StaticKeys;
use crate::http::{HttpResponse, HttpService, full_body};
use crate::router::Router;

/// `/v2/sleep` answers after 800 ms without reading anything;
/// `/v2/body` reads the whole body and answers with its length.
struct Raw;
impl HttpService for Raw {
    fn call(
        &self,
        req: http::Request<hyper::body::Incoming>,
        _peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send>> {
        Box::pin(async move {
            if req.uri().path() == "/v2/sleep" {
                tokio::time::sleep(Duration::from_millis(800)).await;
                return http::Response::new(full_body("slept"));
            }
            match req.into_body().collect().await {
                Ok(b) => http::Response::new(full_body(format!("len={}", b.to_bytes().len()))),
                Err(_) => http::Response::new(full_body("body failed")),
            }
        })
    }
}

fn limits(header: u64, idle: u64, body: u64, total: usize, per_source: usize) -> Limits {
    Limits {
        header_timeout: Duration::from_millis(header),
        idle_timeout: Duration::from_millis(idle),
        body_timeout: Duration::from_millis(body),
        max_connections: total,
        max_connections_per_source: per_source,
    }
}

async fn start(l: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let router = Router::new(Arc::new(StaticKeys::new()), "us-east-1")
        .http_service("/v2/", Arc::new(Raw))
        .limits(l);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::serve(listener, router, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Reads until EOF (or a reset); what was read and how long it took.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let t = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Err(_) => panic!(
                "connection still open after {limit:?}; read {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

/// Reads one whole response (headers and a `content-length` body).
async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").into_bytes()
}

fn within(d: Duration, lo: u64, hi: u64) {
    assert!(
        d >= Duration::from_millis(lo) && d <= Duration::from_millis(hi),
        "took {d:?}, expected {lo}..{hi} ms"
    );
}

#[tokio::test]
async fn silent_and_half_sent_headers_are_closed_after_the_header_timeout() {
    let (addr, _stop) = start(limits(400, 5000, 5000, 100, 100)).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /v2/body HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (got, t) = read_to_close(&mut half, Duration::from_secs(3)).await;
    assert_eq!(got, "");
    within(t, 300, 1500);
    let (got, t) = read_to_close(&mut silent, Duration::from_secs(3)).await;
    assert_eq!(got, "");
    within(t, 0, 1500);

    // Trickling a byte at a time does not extend the header deadline.
    let mut slowloris = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    let mut closed = false;
    for b in b"GET /v2/sleep HTTP/1.1\r\nhost: x\r\nx-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" {
        if slowloris.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _) = if closed {
        (String::new(), t.elapsed())
    } else {
        read_to_close(&mut slowloris, Duration::from_secs(3)).await
    };
    within(t.elapsed(), 300, 3000);
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "slowloris held {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // Idle (900 ms) is longer than header (300 ms): a connection that
    // finished a request may wait past the header timeout.
    let (addr, _stop) = start(limits(300, 900, 5000, 100, 100)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&get("/v2/body")).await.unwrap();
    assert!(read_response(&mut s).await.ends_with("len=0"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(&get("/v2/body")).await.unwrap();
    assert!(read_response(&mut s).await.ends_with("len=0"));
    let (got, t) = read_to_close(&mut s, Duration::from_secs(4)).await;
    assert_eq!(got, "");
    within(t, 800, 2500);
}

#[tokio::test]
async fn a_slow_body_passes_while_bytes_move_and_is_cut_when_they_stop() {
    let (addr, _stop) = start(limits(5000, 5000, 400, 100, 100)).await;
    // 20 bytes, one per 100 ms: 2 s in all, five times the body timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v2/body HTTP/1.1\r\nhost: x\r\ncontent-length: 20\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"x").await.unwrap();
    }
    assert!(read_response(&mut s).await.ends_with("len=20"));

    // 5 of 20 bytes, then nothing: cut after the body timeout, no answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v2/body HTTP/1.1\r\nhost: x\r\ncontent-length: 20\r\n\r\nxxxxx")
        .await
        .unwrap();
    let (got, t) = read_to_close(&mut s, Duration::from_secs(3)).await;
    assert_eq!(got, "");
    within(t, 300, 1500);
}

#[tokio::test]
async fn a_slow_handler_is_not_cut_by_any_timeout() {
    // The handler takes 800 ms, longer than every timeout.
    let (addr, _stop) = start(limits(200, 200, 200, 100, 100)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&get("/v2/sleep")).await.unwrap();
    assert!(read_response(&mut s).await.ends_with("slept"));
}

#[tokio::test]
async fn over_the_per_source_cap_the_longest_waiting_connection_is_evicted() {
    let (addr, _stop) = start(limits(5000, 5000, 5000, 100, 3)).await;
    let mut flood = Vec::new();
    for _ in 0..3 {
        flood.push(TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A fourth from the same address is served; the oldest silent one goes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&get("/v2/body")).await.unwrap();
    assert!(read_response(&mut s).await.ends_with("len=0"));
    let (_, t) = read_to_close(&mut flood[0], Duration::from_secs(2)).await;
    within(t, 0, 1000);
    // The others are still held.
    flood[1].write_all(&get("/v2/body")).await.unwrap();
    assert!(read_response(&mut flood[1]).await.ends_with("len=0"));
}

#[tokio::test]
async fn over_a_cap_with_every_connection_busy_the_new_one_gets_a_503() {
    for (total, per_source) in [(100, 3), (3, 100)] {
        let (addr, _stop) = start(limits(5000, 5000, 5000, total, per_source)).await;
        // Three requests waiting for their bodies: busy, not evictable.
        let mut busy = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"POST /v2/body HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nx")
                .await
                .unwrap();
            busy.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let (got, t) = read_to_close(&mut s, Duration::from_secs(2)).await;
        assert!(got.starts_with("HTTP/1.1 503 "), "{got:?}");
        let body = got.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["__type"], "ServiceUnavailableException");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("too many connections")
        );
        within(t, 0, 500);
        // The busy ones finish normally.
        for s in &mut busy {
            s.write_all(b"yyy").await.unwrap();
            assert!(read_response(s).await.ends_with("len=4"));
        }
    }
}

#[tokio::test]
async fn the_table_releases_closed_connections() {
    let table = Arc::new(super::Table::new(limits(1000, 1000, 1000, 2, 2)));
    let ip = std::net::IpAddr::from([10, 0, 0, 1]);
    let a = table.admit(ip).unwrap();
    let b = table.admit(ip).unwrap();
    let _ra = a.conn.begin_request();
    let _rb = b.conn.begin_request();
    assert!(table.admit(ip).is_none(), "both busy: refused");
    drop(a);
    assert_eq!(table.held(), 1);
    let _c = table.admit(ip).unwrap();
    assert_eq!(table.held(), 2);
}

#[test]
fn connections_that_made_a_request_are_evicted_after_those_that_never_did() {
    use std::sync::atomic::Ordering;
    let table = Arc::new(super::Table::new(limits(1000, 1000, 1000, 100, 3)));
    let ip = std::net::IpAddr::from([10, 0, 0, 1]);
    // The oldest has made a request and is idle between requests.
    let client = table.admit(ip).unwrap();
    drop(client.conn.begin_request());
    std::thread::sleep(Duration::from_millis(5));
    let fresh1 = table.admit(ip).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let fresh2 = table.admit(ip).unwrap();
    let _new = table.admit(ip).unwrap();
    assert_eq!(fresh1.conn.phase.load(Ordering::Acquire), super::DEAD);
    assert_eq!(client.conn.phase.load(Ordering::Acquire), super::IDLE);
    assert_eq!(fresh2.conn.phase.load(Ordering::Acquire), super::HEADER);
    let _new2 = table.admit(ip).unwrap();
    assert_eq!(fresh2.conn.phase.load(Ordering::Acquire), super::DEAD);
    assert_eq!(client.conn.phase.load(Ordering::Acquire), super::IDLE);
}
