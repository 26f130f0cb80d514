//! `GET /health`: whether this process can serve, for load balancers and
//! operators. Unauthenticated (a load balancer has no credentials), so it
//! says nothing secret: the status, the store's backend, the process's
//! name and ferry's version.
//!
//! `{"status":"ok","store":"postgresql","name":"api-1","version":"0.1.0"}`
//! with 200 when a round trip to the store succeeds, the same with
//! `"unavailable"` and 503 when it does not.
//!
//! Cheap by construction: both possible bodies are rendered once, and the
//! store is asked at most once per [`FRESH`] however many probes arrive
//! (the answer is shared), so an unauthenticated caller polling it hard
//! cannot turn it into load on the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::http::{HttpResponse, HttpService, full_body};

/// How long one answer from the store is reused.
pub const FRESH: Duration = Duration::from_secs(1);

/// How long a round trip may take before the store counts as unavailable
/// (a database that does not answer is as bad as one that refuses).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/health` asks: one blocking round trip to the state store.
pub trait Probe: Send + Sync + 'static {
    /// Whether the store answered.
    fn ping(&self) -> bool;
}

/// The `/health` route (register with [`crate::Router::health`]).
pub struct Health(Arc<Inner>);

struct Inner {
    probe: Arc<dyn Probe>,
    ok: Bytes,
    unavailable: Bytes,
    /// The last answer and when it was had; the lock is held across a
    /// probe, so concurrent requests wait for one probe, not start many.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

#[derive(serde::Serialize)]
struct Body<'a> {
    status: &'a str,
    store: &'a str,
    name: &'a str,
    version: &'a str,
}

impl Health {
    /// `/health` of the process `name` (`--name`, or the host's name)
    /// over a store whose backend is `store` (`redb`, `postgresql`).
    pub fn new(probe: Arc<dyn Probe>, store: &str, name: &str) -> Self {
        let render = |status| {
            Bytes::from(
                serde_json::to_vec(&Body {
                    status,
                    store,
                    name,
                    version: env!("CARGO_PKG_VERSION"),
                })
                .unwrap_or_default(),
            )
        };
        Self(Arc::new(Inner {
            probe,
            ok: render("ok"),
            unavailable: render("unavailable"),
            last: tokio::sync::Mutex::new(None),
        }))
    }
}

impl Inner {
    /// Whether the store answers (at most [`FRESH`] old).
    async fn store_up(&self) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, up)) = *last
            && at.elapsed() < FRESH
        {
            return up;
        }
        let probe = self.probe.clone();
        // A stuck probe keeps its blocking thread until the store's own
        // timeouts end it; the next one starts only after FRESH.
        let up = matches!(
            tokio::time::timeout(
                PROBE_TIMEOUT,
                tokio::task::spawn_blocking(move || probe.ping())
            )
            .await,
            Ok(Ok(true))
        );
        *last = Some((Instant::now(), up));
        up
    }

    /// The response to a request of `method`.
    async fn answer(&self, method: &http::Method) -> HttpResponse {
        if method != http::Method::GET && method != http::Method::HEAD {
            let mut resp = http::Response::new(full_body(Bytes::new()));
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let (status, body) = if self.store_up().await {
            (StatusCode::OK, self.ok.clone())
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, self.unavailable.clone())
        };
        let body = if method == http::Method::HEAD {
            Bytes::new()
        } else {
            body
        };
        let mut resp = http::Response::new(full_body(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // A cached "ok" would hide an outage.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

impl HttpService for Health {
    fn call(
        &self,
        req: http::Request<hyper::body::Incoming>,
        _peer: std::net::SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send>> {
        // The body (if any) is never read: the connection closes after
        // the answer if one was sent.
        let this = self.0.clone();
        let method = req.method().clone();
        Box::pin(async move { this.answer(&method).await })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    use super::*;
    use crate::Router;
    use crate::auth::StaticKeys;

    /// A store that answers while `up` is set; counts the round trips.
    struct Fake {
        up: AtomicBool,
        pings: AtomicUsize,
    }

    impl Probe for Fake {
        fn ping(&self) -> bool {
            self.pings.fetch_add(1, Ordering::SeqCst);
            self.up.load(Ordering::SeqCst)
        }
    }

    async fn start(probe: Arc<Fake>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let router = Router::new(Arc::new(StaticKeys::new()), "us-east-1").health(Health::new(
            probe,
            "postgresql",
            "api-1",
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(crate::serve(listener, router, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        let resp = client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn answers_unsigned_with_the_store_state_and_shares_one_probe() {
        let probe = Arc::new(Fake {
            up: AtomicBool::new(true),
            pings: AtomicUsize::new(0),
        });
        let (addr, _stop) = start(probe.clone()).await;
        let (status, body) = get(addr, "GET", "/health").await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            serde_json::json!({"status": "ok", "store": "postgresql", "name": "api-1",
                               "version": env!("CARGO_PKG_VERSION")})
        );
        // A burst within FRESH costs no further round trip.
        let burst: Vec<_> = (0..20)
            .map(|_| tokio::spawn(get(addr, "GET", "/health")))
            .collect();
        for b in burst {
            assert_eq!(b.await.unwrap().0, 200);
        }
        assert_eq!(probe.pings.load(Ordering::SeqCst), 1);

        probe.up.store(false, Ordering::SeqCst);
        tokio::time::sleep(FRESH + Duration::from_millis(50)).await;
        let (status, body) = get(addr, "GET", "/health").await;
        assert_eq!(
            (status, body["status"].as_str()),
            (503, Some("unavailable"))
        );
        assert_eq!(get(addr, "HEAD", "/health").await.0, 503);
        assert_eq!(get(addr, "POST", "/health").await.0, 405);

        // Only the exact path: anything else is the AWS listener's (an
        // unsigned request there is refused, not answered as health).
        let (status, body) = get(addr, "GET", "/healthz").await;
        assert_ne!(status, 503, "{body}");
        assert_ne!(body["status"].as_str(), Some("unavailable"));
        let (status, _) = get(addr, "GET", "/health/x").await;
        assert_ne!(status, 503);
    }
}
