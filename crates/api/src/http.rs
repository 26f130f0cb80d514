//! The HTTP/1.1 listener: reads the body (bounded), authenticates with SigV4,
//! dispatches to the JSON 1.1 or REST service, and renders the response or
//! the AWS error (`{"__type", "message"}`, `x-amzn-RequestId`).
//!
//! hyper directly (no web framework): every request takes the same path
//! (authenticate, route by `X-Amz-Target` or path), so a router's per-request
//! extension maps and boxed services would only add cost to the hot path.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::{AwsError, Caller, RequestContext};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use zeroize::Zeroizing;

use crate::router::Router;
use crate::sigv4::{self, RequestParts, SecretLookup};
use ferry_proto::RestRequest;

const JSON_11: &str = "application/x-amz-json-1.1";

type Request = http::Request<Incoming>;
type Response = http::Response<Full<Bytes>>;

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, closes idle keep-alive connections and lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Arc::new(router);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses go out in one write each; don't let Nagle hold them.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: Request| {
            let router = router.clone();
            async move { Ok::<_, Infallible>(handle(&router, peer, req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that goes away mid-request is not the server's error.
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    // Most likely out of file descriptors: wait for some to close rather
    // than spin on accept.
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(200)).await;
}

struct Lookup<'a>(&'a Router, std::cell::RefCell<Option<Caller>>);

impl SecretLookup for Lookup<'_> {
    fn secret(&self, access_key_id: &str) -> Option<Zeroizing<String>> {
        let (secret, caller) = self.0.keys.lookup(access_key_id)?;
        *self.1.borrow_mut() = Some(caller);
        Some(secret)
    }
}

async fn handle(router: &Arc<Router>, peer: SocketAddr, req: Request) -> Response {
    let request_id = request_id();
    match dispatch(router, peer, req, &request_id).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e, &request_id, false),
    }
}

async fn dispatch(
    router: &Arc<Router>,
    peer: SocketAddr,
    req: Request,
    request_id: &str,
) -> Result<Response, AwsError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, router.body_limit).await?;
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();

    // Both kinds of route sign the same request; only the signing name differs.
    let auth = |signing_name| {
        authenticate(
            router,
            &parts.method,
            &path,
            &query,
            &parts.headers,
            &body,
            signing_name,
            peer,
            request_id,
        )
    };
    if let Some(target) = parts.headers.get("x-amz-target") {
        let target = target
            .to_str()
            .map_err(|_| AwsError::unknown_operation("(invalid X-Amz-Target)"))?
            .to_owned();
        let (prefix, operation) = target
            .split_once('.')
            .ok_or_else(|| AwsError::unknown_operation(&target))?;
        let route = router
            .json
            .get(prefix)
            .ok_or_else(|| AwsError::unknown_operation(&target))?;
        if parts.method != http::Method::POST {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("JSON 1.1 requests must use POST, not {}", parts.method),
            )
            .with_status(405));
        }
        let ctx = auth(route.signing_name)?;
        let service = route.service.clone();
        let result = if service.runs_inline(operation) {
            // Quick, non-blocking operations skip the blocking-pool handoff;
            // a panic still becomes a 500, not a dropped connection.
            // The service may make the response wait (the KMS waits for its
            // audit record) without holding this worker.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                service.call_inline(&ctx, operation, &body)
            }))
            .map_err(|_| service_failed())?
            .await?
        } else {
            let operation = operation.to_owned();
            tokio::task::spawn_blocking(move || service.call(&ctx, &operation, &body))
                .await
                .map_err(|_| service_failed())??
        };
        let bytes = serde_json::to_vec(&result).map_err(|_| encode_failed())?;
        return Ok(json_response(StatusCode::OK, bytes, request_id));
    }

    let Some(route) = router.rest.iter().find(|r| r.service.matches(&path)) else {
        return Err(AwsError::client(
            "UnknownOperationException",
            format!("no operation is served at {} {path}", parts.method),
        )
        .with_status(404));
    };
    let ctx = auth(route.signing_name)?;
    let service = route.service.clone();
    let rest = RestRequest {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
    };
    let result = tokio::task::spawn_blocking(move || service.call(&ctx, &rest))
        .await
        .map_err(|_| service_failed())?;
    match result {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            let bytes = if r.body.is_null() {
                Vec::new()
            } else {
                serde_json::to_vec(&r.body).map_err(|_| encode_failed())?
            };
            let mut resp = json_response(status, bytes, request_id);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        Err(e) => Ok(error_response(&e, request_id, true)),
    }
}

/// The 500 for a service that panicked while handling a request.
fn service_failed() -> AwsError {
    AwsError::server(
        "InternalFailure",
        "the service failed while handling the request",
    )
}

/// The 500 for a response that could not be encoded.
fn encode_failed() -> AwsError {
    AwsError::server("InternalFailure", "the response could not be encoded")
}

#[allow(clippy::too_many_arguments)]
fn authenticate(
    router: &Router,
    method: &http::Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
    signing_name: &str,
    peer: SocketAddr,
    request_id: &str,
) -> Result<RequestContext, AwsError> {
    let parts = RequestParts {
        method: method.as_str(),
        path,
        query,
        headers,
        body,
    };
    let lookup = Lookup(router, std::cell::RefCell::new(None));
    sigv4::verify_cached(
        &parts,
        signing_name,
        time::OffsetDateTime::now_utc(),
        &lookup,
        &router.signing_keys,
    )?;
    let caller = lookup
        .1
        .into_inner()
        .ok_or_else(|| AwsError::server("InternalFailure", "authenticated caller missing"))?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Ok(RequestContext {
        caller,
        region: router.region.clone(),
        request_id: request_id.to_owned(),
        source_ip: peer.ip().to_string(),
        user_agent,
        via_service: None,
    })
}

/// A request id in the UUID v4 form AWS uses. It only needs to be unique,
/// not secret: the thread-local CSPRNG (seeded from the OS) makes it without
/// a system call per request.
fn request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, AwsError> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|_| {
            AwsError::client(
                "RequestEntityTooLargeException",
                format!("the request body is larger than {limit} bytes or could not be read"),
            )
            .with_status(413)
        })
}

fn json_response(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_11));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn error_response(e: &AwsError, request_id: &str, rest: bool) -> Response {
    if e.status >= 500 {
        tracing::warn!(code = %e.code, message = %e.message, request_id, "server fault");
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::to_vec(&e.to_json()).unwrap_or_default();
    let mut resp = json_response(status, body, request_id);
    if rest {
        // REST-JSON clients read the error code from this header.
        if let Ok(v) = HeaderValue::from_str(&e.code) {
            resp.headers_mut().insert("x-amzn-errortype", v);
        }
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    resp
}

#[cfg(test)]
mod tests;
