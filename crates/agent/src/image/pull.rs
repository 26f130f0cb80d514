//! Pulling from an OCI distribution registry (Docker Registry HTTP API v2):
//! manifest (resolving an index to this machine's platform), config and
//! layers, each verified against its digest and size, layers also against
//! the config's diff_ids, then committed to the store like an import.
//! Registries that challenge with `Basic` get the caller's credentials;
//! those that challenge with `Bearer` (Docker Hub, most public ones) get a
//! token from their token service, anonymously or with the credentials as
//! Basic. Registries on loopback (`localhost`, `127.*`, `[::1]`) are spoken
//! to over plain HTTP, everything else over HTTPS. Network errors are
//! retried a couple of times; answers (404, 401) are not. Errors read as
//! Fargate's runtime words them ([`PullError`]).

use std::collections::HashMap;
use std::io::{self, Read};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_blob::FinishedUpload;
use ferry_proto::plan::RegistryAuth;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use ureq::tls::{TlsConfig, TlsProvider};
use zeroize::Zeroizing;

use super::archive::{Imported, verify_diff_ids};
use super::{ImageError, ImageStore, Reference, copy_hashed, digest_hex, io_err};

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";
const MAX_MANIFEST: u64 = 4 << 20;

/// Progress of a pull, for a progress bar.
#[derive(Debug, Clone)]
pub enum PullProgress {
    /// A blob download starts (`total` bytes).
    Start {
        /// The blob.
        digest: String,
        /// Its size.
        total: u64,
    },
    /// `n` more bytes of the current blob arrived.
    Bytes(u64),
    /// The current blob is complete (or was already in the store).
    Done {
        /// The blob.
        digest: String,
    },
}

/// How to reach an image's registry.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Credentials: sent as HTTP Basic to a registry that asks for Basic,
    /// or to the token endpoint of one that asks for a Bearer token.
    pub auth: Option<RegistryAuth>,
    /// A base URL that replaces `https://REGISTRY` (ferry's own registry,
    /// named `ACCOUNT.dkr.ecr.REGION.amazonaws.com` in task definitions and
    /// served at `http://127.0.0.1:PORT`).
    pub endpoint: Option<String>,
}

/// Why a pull failed. `Display` is the detail of a
/// `CannotPullContainerError`, in the words Fargate's runtime uses.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The manifest could not be fetched.
    #[error(
        "pull image manifest has been retried {attempts} time(s): failed to resolve ref {reference}: {detail}"
    )]
    Resolve {
        /// The normalized reference.
        reference: String,
        /// Requests made (network errors are retried, answers are not).
        attempts: u32,
        /// What went wrong.
        detail: String,
    },
    /// The manifest was found but a blob could not be fetched.
    #[error("failed to copy: {0}")]
    Copy(String),
    /// The content is not what it claims, or the store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// Requests per URL when the network fails (not when the registry answers).
const ATTEMPTS: u32 = 3;
/// Wait before the first retry; doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(250);

/// A failed request: what to say and how many requests were made.
#[derive(Debug)]
struct Failure {
    detail: String,
    attempts: u32,
    not_found: bool,
}

impl Failure {
    fn answer(detail: String) -> Self {
        Self {
            detail,
            attempts: 1,
            not_found: false,
        }
    }
}

/// `unexpected status from GET request to URL: 401 Unauthorized`.
fn status_text(url: &str, status: ureq::http::StatusCode) -> String {
    format!(
        "unexpected status from GET request to {url}: {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string()
}

/// A transport error as Go's net package words it (what Fargate shows).
fn transport_text(url: &str, host: &str, e: &ureq::Error) -> String {
    let why = match e {
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            format!("dial tcp {host}: connect: connection refused")
        }
        ureq::Error::HostNotFound => format!("dial tcp: lookup {host}: no such host"),
        ureq::Error::Timeout(_) => format!("dial tcp {host}: i/o timeout"),
        ureq::Error::ConnectionFailed => format!("dial tcp {host}: connect: connection failed"),
        other => other.to_string(),
    };
    format!("failed to do request: Get \"{url}\": {why}")
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    /// `Basic realm="..."`.
    Basic,
    /// `Bearer realm="...",service="...",scope="..."`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// Anything else (the scheme).
    Other(String),
}

impl Challenge {
    fn parse(header: &str) -> Self {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        // Values are quoted strings that may hold commas (scopes do).
        let mut kv = Vec::new();
        let mut rest = params.trim();
        while let Some((k, after)) = rest.split_once('=') {
            let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
            let after = after.trim_start();
            let (v, next) = if let Some(q) = after.strip_prefix('"') {
                match q.find('"') {
                    Some(i) => (&q[..i], &q[i + 1..]),
                    None => (q, ""),
                }
            } else {
                match after.find(',') {
                    Some(i) => (&after[..i], &after[i..]),
                    None => (after, ""),
                }
            };
            kv.push((k, v.to_string()));
            rest = next.trim_start().trim_start_matches(',');
        }
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        if scheme.eq_ignore_ascii_case("basic") {
            Self::Basic
        } else if scheme.eq_ignore_ascii_case("bearer")
            && let Some(realm) = get("realm")
        {
            Self::Bearer {
                realm,
                service: get("service"),
                scope: get("scope"),
            }
        } else {
            Self::Other(scheme.to_string())
        }
    }
}

fn basic(auth: &RegistryAuth) -> Zeroizing<String> {
    let raw = Zeroizing::new(format!("{}:{}", auth.username(), auth.password()));
    Zeroizing::new(format!("Basic {}", B64.encode(raw.as_bytes())))
}

struct Client {
    http: ureq::Agent,
    base: String,
    /// `host:port` for messages.
    host: String,
    repo: String,
    auth: Option<RegistryAuth>,
    /// The `Authorization` header once a challenge was answered.
    authorization: Option<Zeroizing<String>>,
}

impl Client {
    fn new(r: &Reference, access: &Access) -> Self {
        let host = if r.registry == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            r.registry.clone()
        };
        let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let local = name == "localhost" || name.starts_with("127.") || name == "[::1]";
        let scheme = if local { "http" } else { "https" };
        let root = match &access.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("{scheme}://{host}"),
        };
        let host = root
            .split_once("://")
            .map_or(root.as_str(), |(_, h)| h)
            .to_string();
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                TlsConfig::builder()
                    .provider(TlsProvider::NativeTls)
                    .build(),
            )
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent("ferry")
            .build()
            .into();
        Self {
            http,
            base: format!("{root}/v2/{}", r.repository),
            host,
            repo: r.repository.clone(),
            auth: access.auth.clone(),
            authorization: None,
        }
    }

    /// One GET, retried with backoff while the network fails.
    fn send(
        &self,
        url: &str,
        accept: &str,
        authorization: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, Failure> {
        let mut wait = BACKOFF;
        let mut attempt = 1;
        loop {
            let mut req = self.http.get(url).header("Accept", accept);
            if let Some(a) = authorization {
                req = req.header("Authorization", a);
            }
            match req.call() {
                Ok(resp) => return Ok(resp),
                Err(e) if attempt >= ATTEMPTS => {
                    return Err(Failure {
                        detail: transport_text(url, &self.host, &e),
                        attempts: attempt,
                        not_found: false,
                    });
                }
                Err(e) => {
                    tracing::debug!(url, attempt, "registry request failed, retrying: {e}");
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
            }
        }
    }

    /// GET `path` under the repository, answering one auth challenge.
    fn get(
        &mut self,
        path: &str,
        accept: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, Failure> {
        let url = format!("{}/{path}", self.base);
        let mut attempts = 0;
        loop {
            let resp = self
                .send(
                    &url,
                    accept,
                    self.authorization.as_deref().map(|a| a.as_str()),
                )
                .map_err(|mut f| {
                    f.attempts += attempts;
                    f
                })?;
            attempts += 1;
            let status = resp.status();
            if status == 401 && self.authorization.is_none() {
                let header = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                self.authorization = Some(self.answer(&url, &Challenge::parse(&header))?);
                continue;
            }
            if status.is_success() {
                return Ok(resp);
            }
            let mut f = Failure::answer(if status == 404 {
                "not found".into()
            } else {
                status_text(&url, status)
            });
            f.not_found = status == 404;
            f.attempts = attempts;
            return Err(f);
        }
    }

    /// The `Authorization` header for a challenge to a request of `url`.
    fn answer(&self, url: &str, c: &Challenge) -> Result<Zeroizing<String>, Failure> {
        match c {
            Challenge::Basic => match &self.auth {
                Some(a) => Ok(basic(a)),
                None => Err(Failure::answer(status_text(
                    url,
                    ureq::http::StatusCode::UNAUTHORIZED,
                ))),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let token = self.fetch_token(realm, service.as_deref(), scope.as_deref())?;
                Ok(Zeroizing::new(format!("Bearer {}", token.as_str())))
            }
            Challenge::Other(s) if s.is_empty() => Err(Failure::answer(status_text(
                url,
                ureq::http::StatusCode::UNAUTHORIZED,
            ))),
            Challenge::Other(s) => Err(Failure::answer(format!(
                "failed to authorize: unsupported authorization scheme {s}"
            ))),
        }
    }

    /// A token from the realm of a Bearer challenge: anonymous, or with
    /// the credentials as Basic (as Docker Hub's token service takes them).
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Zeroizing<String>, Failure> {
        let kind = if self.auth.is_some() {
            "oauth"
        } else {
            "anonymous"
        };
        let fail = |d: String| {
            Failure::answer(format!(
                "failed to authorize: failed to fetch {kind} token: {d}"
            ))
        };
        let mut req = self.http.get(realm);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        let own_scope = format!("repository:{}:pull", self.repo);
        req = req.query("scope", scope.unwrap_or(&own_scope));
        if let Some(a) = &self.auth {
            req = req.header("Authorization", basic(a).as_str());
        }
        let mut resp = req
            .call()
            .map_err(|e| fail(transport_text(realm, &self.host, &e)))?;
        if !resp.status().is_success() {
            return Err(fail(status_text(realm, resp.status())));
        }
        let body = Zeroizing::new(
            resp.body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_vec()
                .map_err(|e| fail(e.to_string()))?,
        );
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| fail(format!("token response: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(|t| Zeroizing::new(t.to_string()))
            .ok_or_else(|| fail("no token in the response".into()));
        // The JSON value holds a copy of the token; wipe what can be wiped.
        drop(v);
        token
    }

    /// A manifest or index by tag or digest: (bytes, sha256 digest).
    fn manifest(&mut self, r: &Reference, reference: &str) -> Result<(Vec<u8>, String), PullError> {
        let resolve = |f: Failure| PullError::Resolve {
            reference: r.to_string(),
            attempts: f.attempts,
            detail: if f.not_found {
                format!("{r}: not found")
            } else {
                f.detail
            },
        };
        let mut resp = self
            .get(&format!("manifests/{reference}"), MANIFEST_TYPES)
            .map_err(resolve)?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| PullError::Copy(format!("reading manifest: {e}")))?;
        let (digest, _) = copy_hashed(&body[..], io::sink()).map_err(io_err("hashing"))?;
        if reference.starts_with("sha256:") && reference != digest {
            return Err(ImageError::Corrupt(format!(
                "manifest digest mismatch: asked for {reference}, got {digest}"
            ))
            .into());
        }
        Ok((body, digest))
    }

    /// A blob's body.
    fn blob(&mut self, digest: &str) -> Result<ureq::http::Response<ureq::Body>, PullError> {
        self.get(&format!("blobs/{digest}"), "*/*").map_err(|f| {
            PullError::Copy(if f.not_found {
                format!("{}/blobs/{digest}: not found", self.base)
            } else {
                f.detail
            })
        })
    }
}

/// Pulls `name` into `store` from its registry (reached and authenticated
/// as `access` says), reporting download progress.
pub fn pull(
    store: &ImageStore,
    name: &str,
    access: &Access,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<Imported, PullError> {
    let r = Reference::parse(name).map_err(ImageError::from)?;
    let mut c = Client::new(&r, access);
    let tag = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (mut body, mut digest) = c.manifest(&r, &tag)?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ImageError::Corrupt(format!("manifest: {e}")))?;
    if v.get("manifests").is_some() {
        let index = ImageIndex::from_reader(&body[..])
            .map_err(|e| ImageError::Corrupt(format!("index: {e}")))?;
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        let pick = index
            .manifests()
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    p.architecture().to_string() == arch && p.os().to_string() == "linux"
                })
            })
            .ok_or_else(|| ImageError::NotFound(format!("{name} for linux/{arch}")))?;
        (body, digest) = c.manifest(&r, pick.digest().as_ref())?;
    }
    let manifest = ImageManifest::from_reader(&body[..])
        .map_err(|e| ImageError::Corrupt(format!("manifest {digest}: {e}")))?;
    // Every fetched blob is sealed as it arrives (no plaintext on disk)
    // and named only once the whole image is verified.
    let mut staged: HashMap<String, FinishedUpload> = HashMap::new();
    staged.insert(digest.clone(), store.seal_bytes(&body)?);

    // Config and layers; what the store already has is not fetched again.
    let mut fetch = |d: &Descriptor, c: &mut Client| -> Result<Option<FinishedUpload>, PullError> {
        let want = d.digest().to_string();
        digest_hex(&want)?;
        if store.has_blob(&want)? {
            progress(PullProgress::Done { digest: want });
            return Ok(None);
        }
        progress(PullProgress::Start {
            digest: want.clone(),
            total: d.size(),
        });
        let resp = c.blob(&want)?;
        let mut reader = Counting {
            inner: resp.into_body().into_reader(),
            cb: &mut *progress,
        };
        let mut up = store.create_blob()?;
        io::copy(&mut reader, &mut up)
            .map_err(|e| ImageError::Corrupt(format!("downloading {want}: {e}")))?;
        let up = up.finish().map_err(ImageError::from)?;
        let (got, size) = (up.digest().to_string(), up.size());
        if got != want || size != d.size() {
            return Err(ImageError::Corrupt(format!(
                "blob {want}: downloaded {size} bytes with digest {got}, expected {} bytes",
                d.size()
            ))
            .into());
        }
        progress(PullProgress::Done {
            digest: want.clone(),
        });
        Ok(Some(up))
    };
    let cdigest = manifest.config().digest().to_string();
    let config_bytes = match fetch(manifest.config(), &mut c)? {
        Some(up) => {
            let b = store.read_upload(&up)?;
            staged.insert(cdigest.clone(), up);
            b
        }
        None => store.read_blob(&cdigest)?,
    };
    let config = ImageConfiguration::from_reader(&config_bytes[..])
        .map_err(|e| ImageError::Corrupt(format!("image config: {e}")))?;
    let mut layers = Vec::new();
    for l in manifest.layers() {
        if let Some(up) = fetch(l, &mut c)? {
            staged.insert(l.digest().to_string(), up);
        }
        layers.push(l.digest().to_string());
    }
    verify_diff_ids(&config, &layers, |d| match staged.get(d) {
        Some(up) => store.open_upload(up),
        None => store.open_blob(d),
    })?;
    store.commit(
        staged.into_values().collect(),
        &[(vec![r.clone()], digest.clone())],
    )?;
    Ok(Imported {
        names: vec![r],
        manifest_digest: digest,
    })
}

struct Counting<'a, R> {
    inner: R,
    cb: &'a mut dyn FnMut(PullProgress),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.cb)(PullProgress::Bytes(n as u64));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    #[test]
    fn challenges_parse_with_quoted_commas_and_any_case() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"bearer realm=http://h/t, service="s""#),
            Challenge::Bearer {
                realm: "http://h/t".into(),
                service: Some("s".into()),
                scope: None,
            }
        );
        assert_eq!(
            Challenge::parse(
                r#"Basic realm="https://1.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#
            ),
            Challenge::Basic
        );
        assert_eq!(Challenge::parse("Basic"), Challenge::Basic);
        assert_eq!(
            Challenge::parse("Negotiate abc"),
            Challenge::Other("Negotiate".into())
        );
        // Bearer without a realm cannot be answered.
        assert_eq!(
            Challenge::parse(r#"Bearer service="s""#),
            Challenge::Other("Bearer".into())
        );
    }

    fn pull_err(name: &str, access: &Access) -> String {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::for_tests(dir.path());
        pull(&store, name, access, &mut |_| {})
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_unreachable_registry_is_retried_then_worded_as_fargate_does() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = std::time::Instant::now();
        let e = pull_err(&format!("127.0.0.1:{port}/app:1"), &Access::default());
        assert_eq!(
            e,
            format!(
                "pull image manifest has been retried 3 time(s): failed to resolve ref 127.0.0.1:{port}/app:1: failed to do request: Get \"http://127.0.0.1:{port}/v2/app/manifests/1\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
        assert!(t.elapsed() >= BACKOFF * 3, "backs off between tries");
    }

    /// A registry on loopback that challenges as `scheme` and answers every
    /// authorized manifest request with 404; records each request's path
    /// and Authorization header.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    fn registry(scheme: &'static str) -> (String, Seen) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("127.0.0.1:{}", l.local_addr().unwrap().port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (seen2, base2) = (seen.clone(), base.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization:") {
                        auth = h[h.len() - v.len()..].trim().to_string();
                    }
                }
                seen2.lock().unwrap().push((path.clone(), auth.clone()));
                // user:pass is "u:p" -> dTpw.
                let resp = if path.starts_with("/token") {
                    if auth == "Basic dTpw" {
                        "200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"token\":\"tk1\"}".to_string()
                    } else {
                        "401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_string()
                    }
                } else if auth == "Basic dTpw" || auth == "Bearer tk1" {
                    "404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
                } else {
                    let ch = if scheme == "Basic" {
                        "Basic realm=\"r\"".to_string()
                    } else {
                        format!("Bearer realm=\"http://{base2}/token\",service=\"t\"")
                    };
                    format!(
                        "401 Unauthorized\r\nWWW-Authenticate: {ch}\r\nContent-Length: 0\r\n\r\n"
                    )
                };
                let _ = s.write_all(format!("HTTP/1.1 {resp}").as_bytes());
            }
        });
        (base, seen)
    }

    fn creds(user: &str, pass: &str) -> Access {
        Access {
            auth: Some(RegistryAuth::new(user.into(), pass.to_owned().into())),
            endpoint: None,
        }
    }

    #[test]
    fn basic_challenges_get_the_credentials_and_refusals_say_401() {
        let (base, seen) = registry("Basic");
        let e = pull_err(&format!("{base}/app:1"), &creds("u", "p"));
        assert_eq!(
            e,
            format!(
                "pull image manifest has been retried 2 time(s): failed to resolve ref {base}/app:1: {base}/app:1: not found"
            )
        );
        assert_eq!(seen.lock().unwrap()[1].1, "Basic dTpw");
        let e = pull_err(&format!("{base}/app:1"), &creds("u", "wrong"));
        assert!(
            e.ends_with(&format!(
                "failed to resolve ref {base}/app:1: unexpected status from GET request to http://{base}/v2/app/manifests/1: 401 Unauthorized"
            )),
            "{e}"
        );
        let e = pull_err(&format!("{base}/app:1"), &Access::default());
        assert!(e.ends_with(": 401 Unauthorized"), "{e}");
    }

    #[test]
    fn bearer_challenges_fetch_a_token_with_the_credentials() {
        let (base, seen) = registry("Bearer");
        let e = pull_err(&format!("{base}/app:1"), &creds("u", "p"));
        assert!(e.ends_with(&format!("{base}/app:1: not found")), "{e}");
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen[1].0, "/token?service=t&scope=repository%3Aapp%3Apull");
            assert_eq!(seen[2], ("/v2/app/manifests/1".into(), "Bearer tk1".into()));
        }
        let e = pull_err(&format!("{base}/app:1"), &creds("u", "wrong"));
        assert!(
            e.ends_with(&format!(
                "failed to authorize: failed to fetch oauth token: unexpected status from GET request to http://{base}/token: 401 Unauthorized"
            )),
            "{e}"
        );
        let e = pull_err(&format!("{base}/app:1"), &Access::default());
        assert!(e.contains("failed to fetch anonymous token"), "{e}");
    }

    #[test]
    fn credentials_do_not_show_in_debug() {
        let a = creds("u", "s3cr3t-pw");
        let d = format!("{a:?}");
        assert!(!d.contains("s3cr3t-pw") && d.contains('u'), "{d}");
    }
}
