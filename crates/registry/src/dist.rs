//! The OCI distribution API under `/v2/` (distribution-spec), as a raw
//! HTTP service of the listener: blob bodies stream between the socket and
//! a blocking thread that seals (or unseals) them, never whole in memory.
//!
//! Authentication is HTTP Basic `AWS:<token>` ([`Registry::authenticate`]);
//! each route is authorized as the ECR action it stands for on the
//! repository's ARN (pull: `ecr:BatchGetImage`,
//! `ecr:GetDownloadUrlForLayer`; push: `ecr:InitiateLayerUpload`,
//! `ecr:UploadLayerPart`, `ecr:CompleteLayerUpload`, `ecr:PutImage`,
//! `ecr:BatchCheckLayerAvailability`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use base64::Engine;
use bytes::Bytes;
use ferry_api::{Body, HttpResponse, HttpService, full_body};
use ferry_blob::Digest;
use ferry_proto::{AwsError, Caller};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use crate::model::RepoRecord;
use crate::uploads::{parse_content_range, parse_range, upload_range};
use crate::{MANIFEST_LIMIT, Registry, blob_error, keys, names};

/// A distribution-spec error: status, code, message.
#[derive(Debug)]
pub struct DistError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> DistError {
    DistError {
        status,
        code,
        message: message.into(),
    }
}

/// An ECR error in distribution terms.
fn from_aws(e: AwsError, manifest: bool) -> DistError {
    use StatusCode as S;
    let (status, code) = match e.code.as_str() {
        "RepositoryNotFoundException" => (S::NOT_FOUND, "NAME_UNKNOWN"),
        "ImageNotFoundException" => (S::NOT_FOUND, "MANIFEST_UNKNOWN"),
        "LayersNotFoundException" | "ReferencedImagesNotFoundException" if manifest => {
            (S::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
        }
        "LayersNotFoundException" => (S::NOT_FOUND, "BLOB_UNKNOWN"),
        "ImageTagAlreadyExistsException" => (S::BAD_REQUEST, "TAG_INVALID"),
        "ImageDigestDoesNotMatchException" | "InvalidLayerException" => {
            (S::BAD_REQUEST, "DIGEST_INVALID")
        }
        "InvalidParameterException" if manifest => (S::BAD_REQUEST, "MANIFEST_INVALID"),
        "InvalidParameterException" => (S::BAD_REQUEST, "UNSUPPORTED"),
        "AccessDeniedException" => (S::FORBIDDEN, "DENIED"),
        "KmsException" => (S::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        _ if e.status >= 500 => (S::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        _ => (S::BAD_REQUEST, "UNSUPPORTED"),
    };
    err(status, code, e.message)
}

fn error_response(e: &DistError, realm: &str) -> HttpResponse {
    let body =
        serde_json::json!({"errors": [{"code": e.code, "message": e.message, "detail": null}]});
    let mut r = http::Response::new(full_body(serde_json::to_vec(&body).unwrap_or_default()));
    *r.status_mut() = e.status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    if e.status == StatusCode::UNAUTHORIZED
        && let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
    {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The distribution API over a [`Registry`].
pub struct Distribution {
    registry: Arc<Registry>,
}

impl Distribution {
    /// The API of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

impl HttpService for Distribution {
    fn call(
        &self,
        req: http::Request<Incoming>,
        _peer: SocketAddr,
    ) -> Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send>> {
        let reg = self.registry.clone();
        Box::pin(async move {
            let realm = names::registry_host(reg.region(), reg.account());
            match handle(reg, req).await {
                Ok(r) => r,
                Err(e) => error_response(&e, &realm),
            }
        })
    }
}

/// What a `/v2/...` path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    Uploads(String),
    Upload(String, String),
}

fn route(path: &str) -> Option<Route> {
    let rest = match path {
        "/v2" | "/v2/" => return Some(Route::Base),
        p => p.strip_prefix("/v2/")?,
    };
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name.to_owned()));
    }
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
        return Some(if id.is_empty() {
            Route::Uploads(name.to_owned())
        } else {
            Route::Upload(name.to_owned(), id.to_owned())
        });
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(Route::Uploads(name.to_owned()));
    }
    if let Some((name, r)) = rest.rsplit_once("/manifests/") {
        return Some(Route::Manifest(name.to_owned(), r.to_owned()));
    }
    if let Some((name, d)) = rest.rsplit_once("/blobs/") {
        return Some(Route::Blob(name.to_owned(), d.to_owned()));
    }
    None
}

fn query_param(uri: &http::Uri, key: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn basic_credentials(
    req: &http::Request<Incoming>,
) -> Option<(String, zeroize::Zeroizing<String>)> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?,
    );
    let s = std::str::from_utf8(&raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), zeroize::Zeroizing::new(p.to_owned())))
}

fn unauthorized() -> DistError {
    err(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required: log in with user AWS and the password from aws ecr get-login-password",
    )
}

fn denied(e: AwsError) -> DistError {
    err(StatusCode::FORBIDDEN, "DENIED", e.message)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DistError> + Send + 'static,
) -> Result<T, DistError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "the registry failed while handling the request",
        )
    })?
}

fn response(status: StatusCode) -> http::response::Builder {
    http::Response::builder()
        .status(status)
        .header("docker-distribution-api-version", "registry/2.0")
}

fn built(b: http::response::Builder, body: Body) -> Result<HttpResponse, DistError> {
    b.body(body).map_err(|_| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "a response header was invalid",
        )
    })
}

async fn handle(
    reg: Arc<Registry>,
    req: http::Request<Incoming>,
) -> Result<HttpResponse, DistError> {
    let route = route(req.uri().path())
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "UNSUPPORTED", "no such endpoint"))?;
    let caller = {
        let creds = basic_credentials(&req).ok_or_else(unauthorized)?;
        let r = reg.clone();
        blocking(move || r.authenticate(&creds.0, &creds.1).ok_or_else(unauthorized)).await?
    };
    let method = req.method().clone();
    match route {
        Route::Base => built(
            response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"),
            full_body("{}"),
        ),
        Route::Catalog => catalog(reg, caller, req.uri()).await,
        Route::Tags(name) => tags_list(reg, caller, &name, req.uri()).await,
        Route::Manifest(name, reference) => match method {
            Method::GET | Method::HEAD => {
                get_manifest(reg, caller, name, reference, method == Method::HEAD).await
            }
            Method::PUT => put_manifest(reg, caller, name, reference, req).await,
            Method::DELETE => delete_manifest(reg, caller, name, reference).await,
            _ => Err(method_not_allowed()),
        },
        Route::Blob(name, digest) => match method {
            Method::GET | Method::HEAD => {
                get_blob(reg, caller, name, digest, method == Method::HEAD, req).await
            }
            Method::DELETE => delete_blob(reg, caller, name, digest).await,
            _ => Err(method_not_allowed()),
        },
        Route::Uploads(name) if method == Method::POST => {
            start_upload(reg, caller, name, req).await
        }
        Route::Upload(name, id) => match method {
            Method::GET => upload_status(reg, caller, name, id, StatusCode::NO_CONTENT).await,
            Method::PATCH => patch_upload(reg, caller, name, id, req).await,
            Method::PUT => finish_upload(reg, caller, name, id, req).await,
            Method::DELETE => {
                repo_for(&reg, &caller, &name, "UploadLayerPart").await?;
                reg.uploads.remove(&id).ok_or_else(|| upload_unknown(&id))?;
                built(response(StatusCode::NO_CONTENT), full_body(Bytes::new()))
            }
            _ => Err(method_not_allowed()),
        },
        Route::Uploads(_) => Err(method_not_allowed()),
    }
}

fn method_not_allowed() -> DistError {
    err(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "the operation is unsupported",
    )
}

fn upload_unknown(id: &str) -> DistError {
    err(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        format!("upload {id} is unknown (or expired)"),
    )
}

/// The repository `name`, with `ecr:ACTION` on it authorized for `caller`.
async fn repo_for(
    reg: &Arc<Registry>,
    caller: &Caller,
    name: &str,
    action: &'static str,
) -> Result<RepoRecord, DistError> {
    if !names::valid_repository_name(name) {
        return Err(err(
            StatusCode::NOT_FOUND,
            "NAME_INVALID",
            format!("invalid repository name {name:?}"),
        ));
    }
    let arn = names::repository_arn(reg.region(), reg.account(), name);
    reg.authorize(caller, action, &arn).map_err(denied)?;
    let (r, name) = (reg.clone(), name.to_owned());
    blocking(move || r.repository(&name).map_err(|e| from_aws(e, false))).await
}

/// `?n=&last=` pagination over sorted names.
fn paginate(all: Vec<String>, uri: &http::Uri) -> (Vec<String>, Option<String>) {
    let last = query_param(uri, "last");
    let n: Option<usize> = query_param(uri, "n").and_then(|v| v.parse().ok());
    let mut items: Vec<String> = all
        .into_iter()
        .filter(|x| last.as_ref().is_none_or(|l| x > l))
        .collect();
    let mut next = None;
    if let Some(n) = n
        && items.len() > n
    {
        items.truncate(n);
        next = items.last().cloned();
    }
    (items, next)
}

fn with_link(
    b: http::response::Builder,
    path: &str,
    uri: &http::Uri,
    next: Option<String>,
) -> http::response::Builder {
    match next {
        Some(last) => {
            let n = query_param(uri, "n").unwrap_or_default();
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("n", &n)
                .append_pair("last", &last)
                .finish();
            b.header(header::LINK, format!("<{path}?{q}>; rel=\"next\""))
        }
        None => b,
    }
}

async fn catalog(
    reg: Arc<Registry>,
    caller: Caller,
    uri: &http::Uri,
) -> Result<HttpResponse, DistError> {
    let r = reg.clone();
    let names = blocking(move || {
        let repos = r.repositories().map_err(|e| from_aws(e, false))?;
        Ok(repos
            .into_iter()
            .filter(|x| r.authorize(&caller, "DescribeRepositories", &x.arn).is_ok())
            .map(|x| x.name)
            .collect::<Vec<_>>())
    })
    .await?;
    let (items, next) = paginate(names, uri);
    let body = serde_json::json!({ "repositories": items });
    built(
        with_link(
            response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"),
            "/v2/_catalog",
            uri,
            next,
        ),
        full_body(serde_json::to_vec(&body).unwrap_or_default()),
    )
}

async fn tags_list(
    reg: Arc<Registry>,
    caller: Caller,
    name: &str,
    uri: &http::Uri,
) -> Result<HttpResponse, DistError> {
    repo_for(&reg, &caller, name, "ListImages").await?;
    let (r, n) = (reg.clone(), name.to_owned());
    let mut tags = blocking(move || {
        let imgs = r.images(&n).map_err(|e| from_aws(e, false))?;
        Ok(imgs.into_iter().flat_map(|i| i.tags).collect::<Vec<_>>())
    })
    .await?;
    tags.sort();
    let (items, next) = paginate(tags, uri);
    let body = serde_json::json!({ "name": name, "tags": items });
    built(
        with_link(
            response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"),
            &format!("/v2/{name}/tags/list"),
            uri,
            next,
        ),
        full_body(serde_json::to_vec(&body).unwrap_or_default()),
    )
}

async fn get_manifest(
    reg: Arc<Registry>,
    caller: Caller,
    name: String,
    reference: String,
    head: bool,
) -> Result<HttpResponse, DistError> {
    let repo = repo_for(&reg, &caller, &name, "BatchGetImage").await?;
    let r = reg.clone();
    let (img, bytes) = blocking(move || {
        let img = r
            .find_image(&name, &reference)
            .map_err(|e| from_aws(e, true))?
            .ok_or_else(|| {
                err(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    format!("manifest unknown: {reference} is not in repository {name}"),
                )
            })?;
        // HEAD answers from the record: no unsealing, no KMS call.
        let bytes = if head {
            Vec::new()
        } else {
            r.manifest_bytes(&repo, &img)
                .map_err(|e| from_aws(e, true))?
        };
        Ok((img, bytes))
    })
    .await?;
    let b = response(StatusCode::OK)
        .header(header::CONTENT_TYPE, img.media_type.as_str())
        .header("docker-content-digest", img.digest.as_str())
        .header(header::ETAG, format!("\"{}\"", img.digest))
        .header(header::CONTENT_LENGTH, img.manifest_size);
    built(b, full_body(bytes))
}

async fn put_manifest(
    reg: Arc<Registry>,
    caller: Caller,
    name: String,
    reference: String,
    req: http::Request<Incoming>,
) -> Result<HttpResponse, DistError> {
    repo_for(&reg, &caller, &name, "PutImage").await?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
    let body = Limited::new(req.into_body(), MANIFEST_LIMIT as usize)
        .collect()
        .await
        .map_err(|_| {
            err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                "the manifest is larger than 4 MiB or could not be read",
            )
        })?
        .to_bytes();
    let (tag, digest) = if reference.contains(':') {
        (None, Some(reference))
    } else {
        if !names::valid_tag(&reference) {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "TAG_INVALID",
                format!("invalid tag {reference:?}"),
            ));
        }
        (Some(reference), None)
    };
    let (r, n) = (reg.clone(), name.clone());
    let img = blocking(move || {
        r.put_manifest(
            &n,
            &body,
            content_type.as_deref(),
            tag.as_deref(),
            digest.as_deref(),
        )
        .map_err(|e| from_aws(e, true))
    })
    .await?;
    built(
        response(StatusCode::CREATED)
            .header(
                header::LOCATION,
                format!("/v2/{name}/manifests/{}", img.digest),
            )
            .header("docker-content-digest", img.digest.as_str()),
        full_body(Bytes::new()),
    )
}

async fn delete_manifest(
    reg: Arc<Registry>,
    caller: Caller,
    name: String,
    reference: String,
) -> Result<HttpResponse, DistError> {
    let repo = repo_for(&reg, &caller, &name, "BatchDeleteImage").await?;
    let r = reg.clone();
    let found = blocking(move || {
        if reference.contains(':') {
            r.delete_image(&repo, &reference)
                .map_err(|e| from_aws(e, true))
        } else {
            r.untag(&repo, &reference)
                .map(|x| x.is_some())
                .map_err(|e| from_aws(e, true))
        }
    })
    .await?;
    if !found {
        return Err(err(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        ));
    }
    built(response(StatusCode::ACCEPTED), full_body(Bytes::new()))
}

fn parse_digest(d: &str) -> Result<Digest, DistError> {
    Digest::parse(d).map_err(|_| {
        err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("invalid digest {d:?}"),
        )
    })
}

/// A response body fed by a blocking thread through a bounded channel.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// Chunk size of streamed downloads.
const CHUNK: usize = 256 * 1024;

async fn get_blob(
    reg: Arc<Registry>,
    caller: Caller,
    name: String,
    digest: String,
    head: bool,
    req: http::Request<Incoming>,
) -> Result<HttpResponse, DistError> {
    let action = if head {
        "BatchCheckLayerAvailability"
    } else {
        "GetDownloadUrlForLayer"
    };
    let repo = repo_for(&reg, &caller, &name, action).await?;
    let d = parse_digest(&digest)?;
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let r = reg.clone();
    let reader = blocking(move || {
        let blobs = r.blobs(&repo).map_err(|e| from_aws(e, false))?;
        if !blobs.contains(&d) {
            return Err(err(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                format!("blob unknown: {d}"),
            ));
        }
        blobs
            .open_blob(&d, &r.repo_keys(&repo), &keys::context(&repo.arn))
            .map_err(|e| from_aws(blob_error(e), false))
    })
    .await?;
    let len = reader.len();
    let (status, start, end) = match range {
        Some(r) => match parse_range(&r, len) {
            Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e),
            None => {
                return built(
                    response(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{len}")),
                    full_body(Bytes::new()),
                );
            }
        },
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let mut b = response(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("docker-content-digest", digest.as_str())
        .header(header::CONTENT_LENGTH, count)
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
    }
    if head || count == 0 {
        return built(b, full_body(Bytes::new()));
    }
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        if start > 0
            && let Err(e) = reader.seek(SeekFrom::Start(start))
        {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = count;
        while left > 0 {
            let mut buf = vec![0u8; CHUNK.min(left as usize)];
            match reader.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other("blob ended early")));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading a sealed blob failed");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    built(b, ChannelBody(rx).boxed())
}

async fn delete_blob(
    reg: Arc<Registry>,
    caller: Caller,
    name: String,
    digest: String,
) -> Result<HttpResponse, DistError> {
    let repo = repo_for(&reg, &caller, &name, "BatchDeleteImage").await?;
    let d = parse_digest(&digest)?;
    let r = reg.clone();
    blocking(move || {
        let images = r.images(&repo.name).map_err(|e| from_aws(e, false))?;
        if images
            .iter()
            .any(|i| i.digest == digest || i.refs.contains(&digest))
        {
            return Err(err(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "the blob is referenced by an image: delete the image instead",
            ));
        }
        let removed = r
            .blobs(&repo)
            .and_then(|b| b.remove(&d).map_err(blob_error))
            .map_err(|e| from_aws(e, false))?;
        if removed {
            Ok(())
        } else {
            Err(err(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown"))
        }
    })
    .await?;
    built(response(StatusCode::ACCEPTED), full_body(Bytes::new()))
}

/// Streams `body` into the session's sealed blob on a blocking thread;
/// returns the new offset.
async fn stream_into(
    session: Arc<std::sync::Mutex<crate::uploads::Session>>,
    body: Incoming,
) -> Result<u64, DistError> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || -> Result<u64, DistError> {
        let mut s = session.lock().map_err(|_| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "upload lock poisoned",
            )
        })?;
        let mut written = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            let up = s
                .upload
                .as_mut()
                .ok_or_else(|| upload_unknown("(finished)"))?;
            up.write_all(&chunk).map_err(|e| {
                err(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    format!("writing the upload failed: {e}"),
                )
            })?;
            written += chunk.len() as u64;
        }
        s.offset += written;
        s.touched = std::time::Instant::now();
        Ok(s.offset)
    });
    let mut body = body;
    let mut read_err = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data()
                    && tx.send(data).await.is_err()
                {
                    break; // the writer failed; its error is reported below
                }
            }
            Err(e) => {
                read_err = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let offset = writer.await.map_err(|_| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "the upload writer failed",
        )
    })??;
    if let Some(e) = read_err {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "BLOB_UPLOAD_INVALID",
            format!("reading the request body failed: {e}"),
        ));
    }
    Ok(offset)
}

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

async fn start_upload(
    reg: Arc<Registry>,
    caller: Caller,
    name: String,
    req: http::Request<Incoming>,
) -> Result<HttpResponse, DistError> {
    let repo = repo_for(&reg, &caller, &name, "InitiateLayerUpload").await?;
    let uri = req.uri().clone();
    // Cross-repository mount: re-sealed under this repository's key.
    if let (Some(mount), Some(from)) = (query_param(&uri, "mount"), query_param(&uri, "from")) {
        let d = parse_digest(&mount)?;
        let source = repo_for(&reg, &caller, &from, "GetDownloadUrlForLayer")
            .await
            .ok();
        if let Some(source) = source {
            let (r, target, d2) = (reg.clone(), repo.clone(), d.clone());
            let mounted = blocking(move || {
                let src = r.blobs(&source).map_err(|e| from_aws(e, false))?;
                if !src.contains(&d2) {
                    return Ok(false);
                }
                let dst = r.blobs(&target).map_err(|e| from_aws(e, false))?;
                if dst.contains(&d2) {
                    return Ok(true);
                }
                let reader = src
                    .open_blob(&d2, &r.repo_keys(&source), &keys::context(&source.arn))
                    .map_err(|e| from_aws(blob_error(e), false))?;
                dst.put(
                    &r.repo_keys(&target),
                    &keys::context(&target.arn),
                    reader,
                    Some(&d2),
                    None,
                )
                .map_err(|e| from_aws(blob_error(e), false))?;
                Ok(true)
            })
            .await?;
            if mounted {
                return built(
                    response(StatusCode::CREATED)
                        .header(header::LOCATION, format!("/v2/{name}/blobs/{d}"))
                        .header("docker-content-digest", d.as_str()),
                    full_body(Bytes::new()),
                );
            }
        }
        // Not mountable: an ordinary upload session, as the spec says.
    }
    let (r, rp) = (reg.clone(), repo.clone());
    let upload = blocking(move || {
        r.blobs(&rp)
            .and_then(|b| {
                b.create(&r.repo_keys(&rp), &keys::context(&rp.arn))
                    .map_err(blob_error)
            })
            .map_err(|e| from_aws(e, false))
    })
    .await?;
    let id = reg.uploads.start(&name, upload);
    if let Some(digest) = query_param(&uri, "digest") {
        // Monolithic upload: the whole blob in this request.
        return finish(reg, name, id, digest, Some(req.into_body())).await;
    }
    built(
        response(StatusCode::ACCEPTED)
            .header(header::LOCATION, upload_location(&name, &id))
            .header("docker-upload-uuid", id.as_str())
            .header(header::RANGE, "0-0")
            .header(header::CONTENT_LENGTH, 0),
        full_body(Bytes::new()),
    )
}

async fn upload_status(
    reg: Arc<Registry>,
    caller: Caller,
    name: String,
    id: String,
    status: StatusCode,
) -> Result<HttpResponse, DistError> {
    repo_for(&reg, &caller, &name, "UploadLayerPart").await?;
    let s = reg
        .uploads
        .get(&name, &id)
        .ok_or_else(|| upload_unknown(&id))?;
    let offset = s.lock().map(|x| x.offset).unwrap_or(0);
    let mut b = response(status)
        .header(header::LOCATION, upload_location(&name, &id))
        .header("docker-upload-uuid", id.as_str())
        .header(header::CONTENT_LENGTH, 0);
    b = b.header(
        header::RANGE,
        upload_range(offset).unwrap_or_else(|| "0-0".into()),
    );
    built(b, full_body(Bytes::new()))
}

async fn patch_upload(
    reg: Arc<Registry>,
    caller: Caller,
    name: String,
    id: String,
    req: http::Request<Incoming>,
) -> Result<HttpResponse, DistError> {
    repo_for(&reg, &caller, &name, "UploadLayerPart").await?;
    let s = reg
        .uploads
        .get(&name, &id)
        .ok_or_else(|| upload_unknown(&id))?;
    if let Some(cr) = req
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
    {
        let offset = s.lock().map(|x| x.offset).unwrap_or(0);
        match parse_content_range(cr) {
            Some((start, _)) if start == offset => {}
            _ => {
                return built(
                    response(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::LOCATION, upload_location(&name, &id))
                        .header(
                            header::RANGE,
                            upload_range(offset).unwrap_or_else(|| "0-0".into()),
                        ),
                    full_body(Bytes::new()),
                );
            }
        }
    }
    stream_into(s, req.into_body()).await?;
    upload_status(reg, caller, name, id, StatusCode::ACCEPTED).await
}

async fn finish_upload(
    reg: Arc<Registry>,
    caller: Caller,
    name: String,
    id: String,
    req: http::Request<Incoming>,
) -> Result<HttpResponse, DistError> {
    repo_for(&reg, &caller, &name, "CompleteLayerUpload").await?;
    let digest = query_param(req.uri(), "digest").ok_or_else(|| {
        err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "the digest parameter is required",
        )
    })?;
    finish(reg, name, id, digest, Some(req.into_body())).await
}

/// Writes the last chunk (if any) and commits the upload as `digest`.
async fn finish(
    reg: Arc<Registry>,
    name: String,
    id: String,
    digest: String,
    body: Option<Incoming>,
) -> Result<HttpResponse, DistError> {
    let d = parse_digest(&digest);
    let s = reg
        .uploads
        .get(&name, &id)
        .ok_or_else(|| upload_unknown(&id))?;
    if let Some(body) = body {
        stream_into(s.clone(), body).await?;
    }
    reg.uploads.remove(&id);
    let d = d?;
    let d2 = d.clone();
    blocking(move || {
        let up = s
            .lock()
            .map_err(|_| {
                err(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    "upload lock poisoned",
                )
            })?
            .upload
            .take()
            .ok_or_else(|| upload_unknown(&id))?;
        up.commit(Some(&d2)).map_err(|e| match e {
            ferry_blob::BlobError::DigestMismatch { expected, actual } => err(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!("provided digest {expected} does not match the content's digest {actual}"),
            ),
            other => from_aws(blob_error(other), false),
        })
    })
    .await?;
    built(
        response(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/blobs/{d}"))
            .header("docker-content-digest", d.as_str())
            .header(header::CONTENT_LENGTH, 0),
        full_body(Bytes::new()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(route("/v2/a/b/tags/list"), Some(Route::Tags("a/b".into())));
        assert_eq!(
            route("/v2/a/b/manifests/latest"),
            Some(Route::Manifest("a/b".into(), "latest".into()))
        );
        assert_eq!(
            route("/v2/web/blobs/sha256:ab"),
            Some(Route::Blob("web".into(), "sha256:ab".into()))
        );
        assert_eq!(
            route("/v2/web/blobs/uploads/"),
            Some(Route::Uploads("web".into()))
        );
        assert_eq!(
            route("/v2/web/blobs/uploads/x-1"),
            Some(Route::Upload("web".into(), "x-1".into()))
        );
        assert_eq!(route("/v3/"), None);
    }
}
