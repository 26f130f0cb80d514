//! The HTTP/1.1 listener: reads the body (bounded), authenticates with SigV4,
//! dispatches to the JSON 1.1 or REST service, and renders the response or
//! the AWS error (`{"__type", "message"}`, `x-amzn-RequestId`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferry_proto::{AwsError, Caller, RequestContext};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use zeroize::Zeroizing;

use crate::router::{RestRequest, Router};
use crate::sigv4::{self, RequestParts, SecretLookup};

const JSON_11: &str = "application/x-amz-json-1.1";

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(Arc::new(router));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

struct Lookup<'a>(&'a Router, std::cell::RefCell<Option<Caller>>);

impl SecretLookup for Lookup<'_> {
    fn secret(&self, access_key_id: &str) -> Option<Zeroizing<String>> {
        let (secret, caller) = self.0.keys.lookup(access_key_id)?;
        *self.1.borrow_mut() = Some(caller);
        Some(secret)
    }
}

async fn handle(
    State(router): State<Arc<Router>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    // uuid reads the kernel's randomness with getrandom(2); no file to open
    // per request (ferry_proto::new_request_id opens /dev/urandom).
    let request_id = uuid::Uuid::new_v4().to_string();
    match dispatch(&router, peer, req, &request_id).await {
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
        let ctx = authenticate(
            router,
            &parts.method,
            &path,
            &query,
            &parts.headers,
            &body,
            route.signing_name,
            peer,
            request_id,
        )?;
        let service = route.service.clone();
        let result = if service.runs_inline(operation) {
            // Quick, non-blocking operations skip the blocking-pool handoff;
            // a panic still becomes a 500, not a dropped connection.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                service.call(&ctx, operation, &body)
            }))
            .map_err(|_| {
                AwsError::server(
                    "InternalFailure",
                    "the service failed while handling the request",
                )
            })??
        } else {
            let operation = operation.to_owned();
            tokio::task::spawn_blocking(move || service.call(&ctx, &operation, &body))
                .await
                .map_err(|_| {
                    AwsError::server(
                        "InternalFailure",
                        "the service failed while handling the request",
                    )
                })??
        };
        let bytes = serde_json::to_vec(&result).map_err(|_| {
            AwsError::server("InternalFailure", "the response could not be encoded")
        })?;
        return Ok(json_response(StatusCode::OK, bytes, request_id));
    }

    let Some(route) = router.rest.iter().find(|r| r.service.matches(&path)) else {
        return Err(AwsError::client(
            "UnknownOperationException",
            format!("no operation is served at {} {path}", parts.method),
        )
        .with_status(404));
    };
    let ctx = authenticate(
        router,
        &parts.method,
        &path,
        &query,
        &parts.headers,
        &body,
        route.signing_name,
        peer,
        request_id,
    )?;
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
        .map_err(|_| {
            AwsError::server(
                "InternalFailure",
                "the service failed while handling the request",
            )
        })?;
    match result {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            let bytes = if r.body.is_null() {
                Vec::new()
            } else {
                serde_json::to_vec(&r.body).map_err(|_| {
                    AwsError::server("InternalFailure", "the response could not be encoded")
                })?
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
    sigv4::verify(
        &parts,
        signing_name,
        time::OffsetDateTime::now_utc(),
        &lookup,
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
    })
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, AwsError> {
    to_bytes(body, limit).await.map_err(|_| {
        AwsError::client(
            "RequestEntityTooLargeException",
            format!("the request body is larger than {limit} bytes or could not be read"),
        )
        .with_status(413)
    })
}

fn json_response(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response {
    let mut resp = (status, body).into_response();
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
