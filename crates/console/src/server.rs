//! The console's HTTP front: the page and its assets, sign-in and
//! sign-out, and the JSON endpoints the page calls. Registered on the API
//! listener at `/console/` as a raw HTTP service, so it sees requests
//! before SigV4; it authenticates them itself, by session cookie, and runs
//! every AWS operation through [`ferry_api::Calls`] as the signed-in
//! principal (the same authorization as the AWS CLI's requests).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use ferry_api::{Calls, HttpResponse, HttpService, full_body};
use ferry_proto::{AwsError, Caller, Principal, RequestContext};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use zeroize::Zeroizing;

use crate::assets::Assets;
use crate::data::{ConsoleData, NetworkChoices};
use crate::session::{self, Session, Sessions};

/// The largest request body the console reads (a RunTask with overrides
/// is a few KiB).
const BODY_LIMIT: usize = 256 * 1024;

/// Every response's security headers: nothing but this origin's own
/// script and style may run or load, the page may not be framed, and no
/// referrer leaves it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The web console.
pub struct Console {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) calls: Arc<Calls>,
    pub(crate) data: Arc<dyn ConsoleData>,
    pub(crate) network: Arc<dyn NetworkChoices>,
    sessions: Sessions,
    assets: Assets,
}

impl Console {
    /// A console over the router's services (`calls`, made once every AWS
    /// service is registered), the host's data and the VPC's choices.
    pub fn new(
        calls: Arc<Calls>,
        data: Arc<dyn ConsoleData>,
        network: Arc<dyn NetworkChoices>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                calls,
                data,
                network,
                sessions: Sessions::default(),
                assets: Assets::new(),
            }),
        }
    }
}

impl HttpService for Console {
    fn call(
        &self,
        req: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut resp = match inner.route(req, peer).await {
                Ok(r) => r,
                Err(e) => error(&e),
            };
            security_headers(resp.headers_mut());
            resp
        })
    }
}

/// A signed-in request: the session and its caller as the credential
/// table has it now.
pub(crate) struct Authed {
    pub(crate) caller: Caller,
    pub(crate) session: Session,
    pub(crate) peer: SocketAddr,
    pub(crate) user_agent: String,
}

impl Authed {
    /// A request context for one AWS call made for this session.
    pub(crate) fn context(&self, region: &str) -> RequestContext {
        RequestContext {
            caller: self.caller.clone(),
            region: region.to_owned(),
            request_id: ferry_proto::new_request_id(),
            source_ip: self.peer.ip().to_string(),
            user_agent: format!("ferry-console ({})", self.user_agent),
            via_service: None,
        }
    }
}

impl Inner {
    async fn route(
        self: &Arc<Self>,
        req: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<HttpResponse, AwsError> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let asset = match path.as_str() {
            "/console" => {
                let mut r = empty(StatusCode::PERMANENT_REDIRECT);
                r.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/console/"));
                return Ok(r);
            }
            "/console/" | "/console/index.html" => Some("index.html"),
            "/console/assets/app.js" => Some("app.js"),
            "/console/assets/app.css" => Some("app.css"),
            _ => None,
        };
        if let Some(name) = asset {
            if method != Method::GET && method != Method::HEAD {
                return Err(method_not_allowed(&method));
            }
            let a = self.assets.get(name).ok_or_else(|| {
                AwsError::server(
                    "InternalFailure",
                    format!("console asset {name} unreadable"),
                )
            })?;
            let mut r = http::Response::new(full_body(a.body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            );
            // The page names its assets without a version: revalidate.
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return Ok(r);
        }
        let Some(endpoint) = path.strip_prefix("/console/api/") else {
            return Err(not_found(&path));
        };
        let endpoint = endpoint.to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let (parts, body) = req.into_parts();
        let body = ferry_api::http::read_body(body, BODY_LIMIT).await?;
        let is_post = parts.method == Method::POST;
        let expect = |m: Method| {
            if parts.method == m {
                Ok(())
            } else {
                Err(method_not_allowed(&parts.method))
            }
        };
        if is_post {
            same_origin(&parts.headers)?;
        }
        if endpoint == "signin" {
            expect(Method::POST)?;
            return self.signin(&body);
        }
        let (session_id, authed) = self.authenticate(&parts.headers, peer)?;
        if is_post {
            let given = parts
                .headers
                .get("x-ferry-csrf")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !session::same_token(given, &authed.session.csrf_token) {
                return Err(AwsError::client(
                    "InvalidCsrfTokenException",
                    "the request lacks this session's X-Ferry-Csrf token",
                )
                .with_status(403));
            }
        }
        let region = self.calls.region().to_owned();
        match endpoint.as_str() {
            "session" => {
                expect(Method::GET)?;
                Ok(json(
                    StatusCode::OK,
                    &self.who(&authed.caller, &authed.session),
                ))
            }
            "signout" => {
                expect(Method::POST)?;
                self.sessions.end(&session_id);
                tracing::info!(principal = %authed.caller.arn(), "console sign-out");
                let mut r = empty(StatusCode::NO_CONTENT);
                set_cookie(&mut r, &session::clear_cookie());
                Ok(r)
            }
            "call" => {
                expect(Method::POST)?;
                let v = crate::call::call(self, &authed, &body).await?;
                Ok(json(StatusCode::OK, &v))
            }
            "task" => {
                expect(Method::GET)?;
                let v = crate::task::task(self, &authed, &query, &region).await?;
                Ok(json(StatusCode::OK, &v))
            }
            "audit" => {
                expect(Method::GET)?;
                let v = crate::audit::audit(self, &authed, &query).await?;
                Ok(json(StatusCode::OK, &v))
            }
            "compliance" => {
                expect(Method::GET)?;
                crate::compliance::compliance(self, &authed, &query).await
            }
            _ => Err(not_found(&path)),
        }
    }

    /// Who is signed in, and the session's CSRF token (sign-in and
    /// `GET /console/api/session` answer this).
    fn who(&self, caller: &Caller, session: &Session) -> serde_json::Value {
        serde_json::json!({
            "principal": caller.arn(),
            "accountId": caller.account,
            "region": self.calls.region(),
            "csrfToken": session.csrf_token,
        })
    }

    /// Sign-in: a long-term access key of the administrator or an IAM
    /// user, checked like a signature would check it.
    fn signin(&self, body: &Bytes) -> Result<HttpResponse, AwsError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct SignIn {
            access_key_id: String,
            secret_access_key: String,
        }
        let form: SignIn = serde_json::from_slice(body).map_err(|_| {
            AwsError::client(
                "ValidationException",
                "sign-in takes {\"accessKeyId\", \"secretAccessKey\"}",
            )
        })?;
        // The secret is wiped when sign-in is done with it.
        let secret = Zeroizing::new(form.secret_access_key);
        let key_id = form.access_key_id.trim();
        let caller = self
            .calls
            .authenticate_secret(key_id, &secret)
            .and_then(console_principal)
            .inspect_err(|_| {
                // Debug-formatted and cut short: the id is the client's
                // text, and must not forge log lines.
                let shown: String = key_id.chars().take(64).collect();
                tracing::info!(access_key_id = ?shown, "console sign-in refused");
            })?;
        drop(secret);
        let (id, session) = self.sessions.start(key_id);
        tracing::info!(principal = %caller.arn(), "console sign-in");
        let mut r = json(StatusCode::OK, &self.who(&caller, &session));
        set_cookie(&mut r, &session::set_cookie(&id));
        Ok(r)
    }

    /// The session of the request's cookie and its caller now.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<(String, Authed), AwsError> {
        let refused = || {
            AwsError::client(
                "UnrecognizedClientException",
                "not signed in to the console, or the session has ended",
            )
            .with_status(401)
        };
        let id = session::cookie_value(headers).ok_or_else(refused)?;
        let session = self.sessions.get(&id).ok_or_else(refused)?;
        let caller = match self
            .calls
            .current_caller(&session.access_key_id)
            .and_then(console_principal)
        {
            Ok(c) => c,
            Err(_) => {
                // The key is gone or inactive: the session ends with it.
                self.sessions.end(&id);
                return Err(refused());
            }
        };
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        Ok((
            id,
            Authed {
                caller,
                session,
                peer,
                user_agent,
            },
        ))
    }
}

/// Only people sign in: the administrator and IAM users. Keys of ferry's
/// own service principals (and session keys, which need a token) do not.
fn console_principal(caller: Caller) -> Result<Caller, AwsError> {
    match caller.principal {
        Principal::AccountAdmin | Principal::Iam(_) => Ok(caller),
        _ => Err(AwsError::client(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
        .with_status(401)),
    }
}

/// A state change must come from the console's own page: a browser sends
/// `Origin` on every cross-origin POST (and on same-origin POSTs too);
/// when present it must name the host the request was sent to. The CSRF
/// token is the main defence; this is a second one.
fn same_origin(headers: &HeaderMap) -> Result<(), AwsError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if !host.is_empty() && origin_host == host {
        Ok(())
    } else {
        Err(AwsError::client(
            "InvalidCsrfTokenException",
            format!("a state change from another origin ({origin}) is refused"),
        )
        .with_status(403))
    }
}

fn set_cookie(r: &mut HttpResponse, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

fn empty(status: StatusCode) -> HttpResponse {
    let mut r = http::Response::new(full_body(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, v: &serde_json::Value) -> HttpResponse {
    let mut r = http::Response::new(full_body(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An error in the AWS shape, with its status.
pub(crate) fn error(e: &AwsError) -> HttpResponse {
    if e.status >= 500 {
        tracing::warn!(code = %e.code, message = %e.message, "console fault");
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    json(status, &e.to_json())
}

fn not_found(path: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!("nothing is served at {path}"),
    )
    .with_status(404)
}

fn method_not_allowed(m: &Method) -> AwsError {
    AwsError::client(
        "MethodNotAllowedException",
        format!("{m} is not allowed here"),
    )
    .with_status(405)
}
