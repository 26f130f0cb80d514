//! Pulling from an OCI distribution registry (Docker Registry HTTP API v2):
//! manifest (resolving an index to this machine's platform), config and
//! layers, each verified against its digest and size, layers also against
//! the config's diff_ids, then committed to the store like an import.
//! Anonymous bearer-token auth (as Docker Hub uses) is supported; registries
//! on loopback (`localhost`, `127.*`, `[::1]`) are spoken to over plain
//! HTTP, everything else over HTTPS.

use std::collections::HashMap;
use std::io::{self, Read};
use std::time::Duration;

use ferry_blob::FinishedUpload;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use ureq::tls::{TlsConfig, TlsProvider};

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

struct Client {
    http: ureq::Agent,
    base: String,
    repo: String,
    token: Option<String>,
}

fn net(what: &str) -> impl FnOnce(ureq::Error) -> ImageError + '_ {
    move |e| ImageError::Corrupt(format!("{what}: {e}"))
}

impl Client {
    fn new(r: &Reference) -> Self {
        let host = if r.registry == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            r.registry.clone()
        };
        let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let local = name == "localhost" || name.starts_with("127.") || name == "[::1]";
        let scheme = if local { "http" } else { "https" };
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
            base: format!("{scheme}://{host}/v2/{}", r.repository),
            repo: r.repository.clone(),
            token: None,
        }
    }

    /// GET `path` under the repository, authenticating once if asked to.
    fn get(
        &mut self,
        path: &str,
        accept: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, ImageError> {
        let url = format!("{}/{path}", self.base);
        for _ in 0..2 {
            let mut req = self.http.get(&url).header("Accept", accept);
            if let Some(t) = &self.token {
                req = req.header("Authorization", &format!("Bearer {t}"));
            }
            let resp = req.call().map_err(net(&url))?;
            if resp.status() == 401 && self.token.is_none() {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                self.token = Some(self.fetch_token(&challenge)?);
                continue;
            }
            if resp.status() == 404 {
                return Err(ImageError::NotFound(format!(
                    "{url} (registry says not found)"
                )));
            }
            if !resp.status().is_success() {
                return Err(ImageError::Corrupt(format!(
                    "{url}: HTTP {}",
                    resp.status()
                )));
            }
            return Ok(resp);
        }
        Err(ImageError::Corrupt(format!(
            "{url}: authentication refused"
        )))
    }

    /// Anonymous token for a `Bearer realm=...,service=...` challenge.
    fn fetch_token(&self, challenge: &str) -> Result<String, ImageError> {
        let params = challenge.strip_prefix("Bearer ").ok_or_else(|| {
            ImageError::Unsupported(format!("registry wants unsupported auth: {challenge}"))
        })?;
        let get = |k: &str| {
            params.split(',').find_map(|kv| {
                let (key, v) = kv.trim().split_once('=')?;
                (key == k).then(|| v.trim_matches('"').to_string())
            })
        };
        let realm = get("realm")
            .ok_or_else(|| ImageError::Corrupt("auth challenge without realm".into()))?;
        let mut req = self.http.get(&realm);
        if let Some(s) = get("service") {
            req = req.query("service", &s);
        }
        req = req.query("scope", format!("repository:{}:pull", self.repo));
        let mut resp = req.call().map_err(net(&realm))?;
        if !resp.status().is_success() {
            return Err(ImageError::Corrupt(format!(
                "token from {realm}: HTTP {}",
                resp.status()
            )));
        }
        let body: serde_json::Value = serde_json::from_slice(
            &resp
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_vec()
                .map_err(net(&realm))?,
        )
        .map_err(|e| ImageError::Corrupt(format!("token from {realm}: {e}")))?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| ImageError::Corrupt(format!("no token from {realm}")))
    }

    /// A manifest or index by tag or digest: (bytes, sha256 digest).
    fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String), ImageError> {
        let mut resp = self.get(&format!("manifests/{reference}"), MANIFEST_TYPES)?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(net("reading manifest"))?;
        let (digest, _) = copy_hashed(&body[..], io::sink()).map_err(io_err("hashing"))?;
        if reference.starts_with("sha256:") && reference != digest {
            return Err(ImageError::Corrupt(format!(
                "manifest digest mismatch: asked for {reference}, got {digest}"
            )));
        }
        Ok((body, digest))
    }
}

/// Pulls `name` into `store`, reporting download progress.
pub fn pull(
    store: &ImageStore,
    name: &str,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<Imported, ImageError> {
    let r = Reference::parse(name)?;
    let mut c = Client::new(&r);
    let tag = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (mut body, mut digest) = c.manifest(&tag)?;
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
        (body, digest) = c.manifest(pick.digest().as_ref())?;
    }
    let manifest = ImageManifest::from_reader(&body[..])
        .map_err(|e| ImageError::Corrupt(format!("manifest {digest}: {e}")))?;
    // Every fetched blob is sealed as it arrives (no plaintext on disk)
    // and named only once the whole image is verified.
    let mut staged: HashMap<String, FinishedUpload> = HashMap::new();
    staged.insert(digest.clone(), store.seal_bytes(&body)?);

    // Config and layers; what the store already has is not fetched again.
    let mut fetch =
        |d: &Descriptor, c: &mut Client| -> Result<Option<FinishedUpload>, ImageError> {
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
            let resp = c.get(&format!("blobs/{want}"), "*/*")?;
            let mut reader = Counting {
                inner: resp.into_body().into_reader(),
                cb: &mut *progress,
            };
            let mut up = store.create_blob()?;
            io::copy(&mut reader, &mut up)
                .map_err(|e| ImageError::Corrupt(format!("downloading {want}: {e}")))?;
            let up = up.finish()?;
            let (got, size) = (up.digest().to_string(), up.size());
            if got != want || size != d.size() {
                return Err(ImageError::Corrupt(format!(
                    "blob {want}: downloaded {size} bytes with digest {got}, expected {} bytes",
                    d.size()
                )));
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
