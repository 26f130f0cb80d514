//! The HTTP/1.1 listener: reads the body (bounded), authenticates with SigV4,
//! checks IAM callers at the authorization gate ([`crate::gate`]) unless
//! the service authorizes itself, dispatches to the JSON 1.1, query (IAM,
//! STS) or REST service, and renders the response or the AWS error
//! (`{"__type", "message"}` or, for the query protocol, `<ErrorResponse>`;
//! `x-amzn-RequestId`).
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
use ferry_proto::query::{Params, QueryService};
use ferry_proto::{AwsError, Caller, RequestContext};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use zeroize::Zeroizing;

use crate::calls::service_failed;
use crate::gate;

use crate::router::Router;
use crate::sigv4::{self, AuthError, RequestParts, SecretLookup};
use ferry_proto::RestRequest;

const JSON_11: &str = "application/x-amz-json-1.1";
const TEXT_XML: &str = "text/xml";

type Request = http::Request<Incoming>;
type Response = http::Response<Full<Bytes>>;

/// The body of every response the listener sends: the framed services'
/// bodies are whole buffers, a raw HTTP service's may stream.
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A response of a raw HTTP service ([`HttpService`]).
pub type HttpResponse = http::Response<Body>;

/// A service that speaks HTTP itself rather than an AWS protocol (the OCI
/// distribution API of the registry under `/v2/`): it is handed the
/// request before its body is read and before SigV4 (it authenticates
/// its own callers), and answers with a body that may stream, so uploads
/// and downloads of any size pass through without being buffered.
pub trait HttpService: Send + Sync {
    /// Handles one request from `peer`.
    fn call(
        &self,
        req: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn Future<Output = HttpResponse> + Send>>;
}

/// A whole-buffer body as the listener's [`Body`].
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, closes idle keep-alive connections and lets in-flight
/// requests finish. Connections are bounded by the router's
/// [`crate::Limits`] (timeouts, caps; see [`crate::listener`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let table = Arc::new(crate::listener::Table::new(router.limits.clone()));
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
        // Over a cap with every held connection busy: answer and close now
        // rather than hold a descriptor and a task for it.
        let Some(guard) = table.admit(peer.ip()) else {
            crate::listener::refuse(stream);
            continue;
        };
        // Responses go out in one write each; don't let Nagle hold them.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let conn_state = guard.conn.clone();
        let service = hyper::service::service_fn(move |req: Request| {
            let router = router.clone();
            let done = conn_state.begin_request();
            async move {
                // Raw HTTP services (the registry's /v2/) see the request
                // before its body is read and before SigV4.
                let resp = if let Some(raw) = router.http_route(req.uri().path()) {
                    raw.call(req, peer).await
                } else {
                    handle(&router, peer, req)
                        .await
                        .map(|b| b.map_err(|never| match never {}).boxed())
                };
                Ok::<_, Infallible>(
                    resp.map(|inner| crate::listener::TrackedBody { inner, _done: done }),
                )
            }
        });
        let io = crate::listener::TrackedIo {
            inner: stream,
            conn: guard.conn.clone(),
        };
        // Half-close allowed: hyper then reads the socket during a request
        // only for its body, so a read waiting there is the client stalling
        // a body, which the body timeout bounds (see `listener`).
        let conn = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        // A client that goes away mid-request is not the server's error.
        tokio::spawn(crate::listener::drive(conn, guard));
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

/// The credential table as the verifier sees it, with the request's
/// session token; remembers the caller of the key it returned.
struct Lookup<'a> {
    router: &'a Router,
    session_token: Option<&'a str>,
    caller: std::cell::RefCell<Option<Caller>>,
}

impl SecretLookup for Lookup<'_> {
    fn secret(&self, access_key_id: &str) -> Result<Zeroizing<String>, AuthError> {
        let (secret, caller) = self.router.keys.lookup(access_key_id, self.session_token)?;
        *self.caller.borrow_mut() = Some(caller);
        Ok(secret)
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

    // Every kind of route signs the same request; only the signing name
    // (and, for the query protocol, the error words) differ.
    let auth = |signing_name, protocol, target: Option<&str>| {
        authenticate(
            &Signed {
                router,
                method: &parts.method,
                path: &path,
                query: &query,
                headers: &parts.headers,
                body: &body,
                peer,
                request_id,
            },
            signing_name,
            protocol,
            target,
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
        let ctx = auth(route.signing_name, Protocol::Json, Some(prefix))?;
        let result = crate::calls::call_json(route, ctx, operation, body).await?;
        let bytes = serde_json::to_vec(&result).map_err(|_| encode_failed())?;
        return Ok(json_response(StatusCode::OK, bytes, request_id));
    }

    // No X-Amz-Target: a query-protocol request if its credential scope
    // names a query service (IAM and STS are both served at `/`).
    if let Some(route) = query_route(router, &parts.headers) {
        let service = route.service.clone();
        let ctx = match auth(route.signing_name, Protocol::Query, None) {
            Ok(ctx) => ctx,
            Err(e) => return Ok(query_error(&*service, &e, request_id)),
        };
        let signing_name = route.signing_name;
        return Ok(dispatch_query(
            service,
            ctx,
            signing_name,
            &parts.method,
            &query,
            &body,
            request_id,
        )
        .await);
    }

    // An unsigned query-protocol call (STS's AssumeRoleWithWebIdentity and
    // AssumeRoleWithSAML are unsigned on AWS): none is served, and the
    // answer must be in the query protocol's XML for the client to read it.
    if parts.method == http::Method::POST
        && !parts.headers.contains_key(header::AUTHORIZATION)
        && is_form(&parts.headers)
        && let Some(action) = Params::parse(&body).action().map(str::to_owned)
    {
        let e = AwsError::client(
            "InvalidAction",
            format!("Could not find operation {action}: ferry serves no unsigned actions"),
        );
        let doc = ferry_proto::query::Flavor::Query.error(QUERY_NAMESPACE, &e, request_id);
        return Ok(xml_response(StatusCode::BAD_REQUEST, doc, request_id));
    }

    let Some(route) = router.rest.iter().find(|r| r.service.matches(&path)) else {
        return Err(AwsError::client(
            "UnknownOperationException",
            format!("no operation is served at {} {path}", parts.method),
        )
        .with_status(404));
    };
    let ctx = auth(route.signing_name, Protocol::Json, None)?;
    let rest = RestRequest {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
    };
    let result = crate::calls::call_rest(route, ctx, rest).await;
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

/// The 500 for a response that could not be encoded.
fn encode_failed() -> AwsError {
    AwsError::server("InternalFailure", "the response could not be encoded")
}

/// The query-protocol route a request without `X-Amz-Target` is for: the
/// one whose signing name its credential scope carries.
fn query_route<'a>(
    router: &'a Router,
    headers: &HeaderMap,
) -> Option<&'a crate::router::QueryRoute> {
    if router.query.is_empty() {
        return None;
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let scope = sigv4::parse_authorization(auth).ok()?;
    router
        .query
        .iter()
        .find(|r| r.signing_name == scope.service)
}

/// Runs one authenticated query-protocol request and renders its XML
/// response or error.
async fn dispatch_query(
    service: Arc<dyn QueryService>,
    ctx: RequestContext,
    signing_name: &str,
    method: &http::Method,
    query_string: &str,
    body: &Bytes,
    request_id: &str,
) -> Response {
    // GET carries the parameters in the query string; POST in the
    // form-encoded body (and, rarely, some in the query string).
    let mut params = Params::parse(query_string.as_bytes());
    if *method == http::Method::POST {
        params.extend(body);
    } else if *method != http::Method::GET {
        let e = AwsError::client(
            "InvalidAction",
            format!("query-protocol requests must use POST or GET, not {method}"),
        )
        .with_status(405);
        return query_error(&*service, &e, request_id);
    }
    let Some(action) = params.action().map(str::to_owned) else {
        let e = AwsError::client("MissingAction", "Missing Action");
        return query_error(&*service, &e, request_id);
    };
    if let Some(v) = params.get("Version")
        && v != service.api_version()
    {
        let e = AwsError::client(
            "InvalidAction",
            format!("Could not find operation {action} for version {v}"),
        );
        return query_error(&*service, &e, request_id);
    }
    if !service.authorizes_itself()
        && let Err(e) = gate::json(&ctx, signing_name, &action)
    {
        return query_error(&*service, &service.flavor().refusal(e), request_id);
    }
    let result = if service.runs_inline(&action) {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            service.call(&ctx, &action, &params)
        }))
        .map_err(|_| service_failed())
        .and_then(|r| r)
    } else {
        let (svc, act) = (service.clone(), action.clone());
        tokio::task::spawn_blocking(move || svc.call(&ctx, &act, &params))
            .await
            .map_err(|_| service_failed())
            .and_then(|r| r)
    };
    match result {
        Ok(xml) => {
            let doc = service
                .flavor()
                .response(service.xml_namespace(), &action, &xml, request_id);
            xml_response(StatusCode::OK, doc, request_id)
        }
        Err(e) => query_error(&*service, &e, request_id),
    }
}

fn query_error(service: &dyn QueryService, e: &AwsError, request_id: &str) -> Response {
    if e.status >= 500 {
        tracing::warn!(code = %e.code, message = %e.message, request_id, "server fault");
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let doc = service
        .flavor()
        .error(service.xml_namespace(), e, request_id);
    xml_response(status, doc, request_id)
}

/// The namespace of the query protocol's error documents when no service
/// is known (STS's, the only AWS service with unsigned query actions).
const QUERY_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Whether the body is a form (`application/x-www-form-urlencoded`).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_XML));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// Which protocol's words an authentication failure is reported in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// JSON 1.1 and REST-JSON (`UnrecognizedClientException`, ...).
    Json,
    /// The query protocol (`InvalidClientTokenId`, ...).
    Query,
}

/// The parts of a request its signature covers, and where it came from.
struct Signed<'a> {
    router: &'a Router,
    method: &'a http::Method,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    peer: SocketAddr,
    request_id: &'a str,
}

/// The request's session token: the `X-Amz-Security-Token` header, or the
/// query parameter of that name.
fn session_token<'a>(headers: &'a HeaderMap, query: &'a str) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(v) = headers.get("x-amz-security-token") {
        return v.to_str().ok().map(std::borrow::Cow::Borrowed);
    }
    if !query.contains("X-Amz-Security-Token") {
        return None;
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "X-Amz-Security-Token")
        .map(|(_, v)| v)
}

fn authenticate(
    req: &Signed<'_>,
    signing_name: &str,
    protocol: Protocol,
    target: Option<&str>,
) -> Result<RequestContext, AwsError> {
    let Signed {
        router,
        method,
        path,
        query,
        headers,
        body,
        peer,
        request_id,
    } = *req;
    let parts = RequestParts {
        method: method.as_str(),
        path,
        query,
        headers,
        body,
    };
    let token = session_token(headers, query);
    let lookup = Lookup {
        router,
        session_token: token.as_deref(),
        caller: std::cell::RefCell::new(None),
    };
    let refused = |e: sigv4::AuthError| match protocol {
        Protocol::Json => AwsError::from(e),
        Protocol::Query => e.into_query_error(),
    };
    let verified = sigv4::verify_cached(
        &parts,
        signing_name,
        time::OffsetDateTime::now_utc(),
        &lookup,
        &router.signing_keys,
    )
    .map_err(refused)?;
    // A server is one region's endpoint, as each AWS regional endpoint is:
    // a request signed for another region is refused (so every ARN in an
    // answer is in the region the request was signed for). IAM and STS are
    // global services on AWS; clients may sign them for any region.
    if verified.region != router.region && !matches!(signing_name, "iam" | "sts") {
        return Err(refused(sigv4::AuthError::Invalid(format!(
            "Credential should be scoped to a valid region, not '{}'. This endpoint serves region '{}'.",
            verified.region, router.region
        ))));
    }
    let caller = lookup
        .caller
        .into_inner()
        .ok_or_else(|| AwsError::server("InternalFailure", "authenticated caller missing"))?;
    if matches!(caller.principal, ferry_proto::Principal::Service(_))
        && !target.is_some_and(|t| router.service_targets.contains(&t))
    {
        let code = match protocol {
            Protocol::Json => "AccessDeniedException",
            Protocol::Query => "AccessDenied",
        };
        return Err(AwsError::client(
            code,
            format!(
                "the key {} belongs to {} and may call only {}",
                caller.access_key_id.as_deref().unwrap_or("?"),
                caller.arn(),
                router.service_targets.join(", ")
            ),
        )
        .with_status(403));
    }
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

/// Reads a request body of at most `limit` bytes; a larger or broken one
/// is `RequestEntityTooLargeException` (413). Raw HTTP services (the
/// console) read theirs with it too.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, AwsError> {
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
