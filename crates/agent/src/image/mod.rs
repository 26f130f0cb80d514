//! The local image store: sealed, content-addressed blobs plus a name
//! table (docs/images.md).
//!
//! Layout under the store's directory (`DATA_DIR/images`):
//!
//! ```text
//! format               "ferry sealed image store v1": a store without it
//!                      holds plaintext blobs of an older ferry and is removed
//! blobs/sha256/<hex>   manifests, configs and layers, each a sealed blob
//!                      (ferry_blob) named by the digest of its plaintext
//! blobs/uploads/       blobs being written (removed on failure and at open)
//! refs.json            {"refs": {"docker.io/library/httpd:2.4": "sha256:<manifest>"},
//!                       "last_used": {"sha256:<manifest>": <unix ms>}}
//! lock                 flock'd while the name table or the blob set changes
//! ```
//!
//! Every blob is sealed under a data key from the store's [`BlobKeys`]
//! (the server's: the platform KMS key, as `fargate.amazonaws.com`), bound
//! to the store's encryption context; reading one back is a KMS `Decrypt`.
//! No byte of an image is written to disk in plaintext: imports and pulls
//! stream into sealed uploads, and unpacking reads through the sealed
//! reader, whose digest check fails the unpack of a swapped blob.
//!
//! Writers name blobs and replace `refs.json` under the lock, only once
//! everything is verified, so a failed import leaves the store as it was.
//! Images that running tasks use are pinned ([`ImageStore::pin`]); the
//! size limit ([`ImageStore::set_limit`]) collects the least recently used
//! unpinned images after every import and pull.
//!
//! - [`mod@reference`]: name normalization (`httpd:2.4` == `docker.io/library/httpd:2.4`).
//! - [`archive`]: importing oci-archive and `docker save` tars.
//! - [`pull`]: pulling from an OCI distribution registry.
//! - [`puller`]: images for tasks, one pull per image however many ask.
//! - [`unpack`]: applying layers (with OCI whiteouts) to a rootfs directory.
//! - [`gc`]: which images the size limit collects.

pub mod admin;
pub mod archive;
pub mod gc;
pub mod pull;
pub mod puller;
pub mod reference;
pub mod unpack;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_blob::{
    BlobError, BlobKeys, BlobStore, BlobUpload, Context, FinishedUpload, SealedReader,
};
use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use reference::{Reference, ReferenceError};

/// The largest manifest or config the store reads into memory.
const MAX_METADATA: u64 = 16 << 20;
const FORMAT: &str = "ferry sealed image store v1\n";

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file operation failed.
    #[error("{context}: {err}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        err: io::Error,
    },
    /// The archive or a blob is not what it claims to be.
    #[error("{0}")]
    Corrupt(String),
    /// No image of that name.
    #[error("image {0} not found in the local image store")]
    NotFound(String),
    /// A name that does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Something the store does not support (e.g. zstd layers).
    #[error("{0}")]
    Unsupported(String),
    /// Sealing or opening a blob failed (the KMS refused, or a blob does
    /// not authenticate).
    #[error(transparent)]
    Sealed(#[from] BlobError),
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |err| ImageError::Io { context, err }
}

/// An I/O error from reading a sealed blob, with the blob error (tampering,
/// digest mismatch, KMS refusal) it may carry.
pub(crate) fn read_err(what: &str) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |e| {
        if e.get_ref().is_some_and(|i| i.is::<BlobError>()) {
            if let Some(inner) = e.into_inner()
                && let Ok(b) = inner.downcast::<BlobError>()
            {
                return ImageError::Sealed(*b);
            }
            return ImageError::Corrupt(format!("{what}: unreadable"));
        }
        ImageError::Corrupt(one_line(&format!("{what}: {e}")))
    }
}

/// One stored image: its manifest and config, resolved from a name.
#[derive(Debug, Clone)]
pub struct Image {
    /// The normalized name it was found under.
    pub reference: Reference,
    /// `sha256:...` of the manifest: the image's identity.
    pub manifest_digest: String,
    /// The OCI manifest.
    pub manifest: ImageManifest,
    /// The OCI image config (entrypoint, cmd, env, user, ...).
    pub config: ImageConfiguration,
}

/// A line of `ferry image ls`.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// Normalized name.
    pub reference: Reference,
    /// Manifest digest.
    pub manifest_digest: String,
    /// Compressed size of config plus layers, in bytes.
    pub size: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Refs {
    refs: BTreeMap<String, String>,
    /// Manifest digest -> when a task last resolved it (or it was
    /// imported), in Unix milliseconds: the size limit's LRU order.
    #[serde(default)]
    last_used: BTreeMap<String, u64>,
}

type Pins = Arc<Mutex<HashMap<String, usize>>>;

/// A running task's hold on an image: while any [`Pin`] of a manifest
/// digest lives, neither the size limit nor `prune` nor `rm` removes its
/// blobs. Released on drop.
pub struct Pin {
    pins: Pins,
    digest: String,
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pin({})", self.digest)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pins.lock()
            && let Some(n) = p.get_mut(&self.digest)
        {
            *n -= 1;
            if *n == 0 {
                p.remove(&self.digest);
            }
        }
    }
}

/// The store. Cheap to clone: clones share keys, limit and pins.
#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    blobs: BlobStore,
    keys: Arc<dyn BlobKeys>,
    context: Arc<Context>,
    /// Bytes on disk (sealed) the blobs may use; `u64::MAX`: no limit.
    limit: Arc<AtomicU64>,
    pins: Pins,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.root)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl ImageStore {
    /// Opens (creating if needed) a store at `root` (e.g. `DATA_DIR/images`)
    /// whose blobs are sealed with data keys from `keys`, bound to
    /// `context`. A store of an older ferry (plaintext blobs) is removed.
    pub fn open(
        root: impl Into<PathBuf>,
        keys: Arc<dyn BlobKeys>,
        context: Context,
    ) -> Result<Self, ImageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
        let format = root.join("format");
        if !format.exists() {
            let old: Vec<PathBuf> = ["blobs", "tmp", "refs.json"]
                .iter()
                .map(|n| root.join(n))
                .filter(|p| p.exists())
                .collect();
            if !old.is_empty() {
                tracing::warn!(
                    "removing the plaintext image store of an older ferry in {} \
                     (images are now sealed at rest; import or pull them again)",
                    root.display()
                );
            }
            for p in old {
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(io_err(format!("removing {}", p.display())))?;
            }
            write_atomic(&root, &format, FORMAT.as_bytes())?;
        }
        let blobs = BlobStore::open(root.join("blobs"))?;
        Ok(Self {
            root,
            blobs,
            keys,
            context: Arc::new(context),
            limit: Arc::new(AtomicU64::new(u64::MAX)),
            pins: Pins::default(),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Limits the sealed blobs to `bytes` on disk (`None`: no limit). Takes
    /// effect at the next import or pull.
    pub fn set_limit(&self, bytes: Option<u64>) {
        self.limit
            .store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Bytes the sealed blobs take on disk.
    pub fn usage(&self) -> Result<u64, ImageError> {
        Ok(self.blobs.list()?.iter().map(|(_, n)| n).sum())
    }

    /// Whether the store holds the blob `digest`.
    pub fn has_blob(&self, digest: &str) -> Result<bool, ImageError> {
        Ok(self.blobs.contains(&ferry_blob::Digest::parse(digest)?))
    }

    /// Opens a blob for reading (a KMS Decrypt); a whole front-to-back read
    /// checks its digest.
    pub fn open_blob(&self, digest: &str) -> Result<SealedReader<File>, ImageError> {
        let d = ferry_blob::Digest::parse(digest)?;
        Ok(self.blobs.open_blob(&d, &*self.keys, &self.context)?)
    }

    /// Reads a whole (small) blob: a manifest or config.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let d = ferry_blob::Digest::parse(digest)?;
        Ok(self
            .blobs
            .read_all(&d, &*self.keys, &self.context, MAX_METADATA)?)
    }

    /// Starts a sealed blob (a KMS GenerateDataKey): write the plaintext,
    /// then `finish` it and hand it to [`ImageStore::commit`].
    pub(crate) fn create_blob(&self) -> Result<BlobUpload, ImageError> {
        Ok(self.blobs.create(&*self.keys, &self.context)?)
    }

    /// Seals `bytes` into an upload (a manifest ferry made or fetched).
    pub(crate) fn seal_bytes(&self, bytes: &[u8]) -> Result<FinishedUpload, ImageError> {
        let mut up = self.create_blob()?;
        up.write_all(bytes).map_err(io_err("sealing a blob"))?;
        Ok(up.finish()?)
    }

    /// Reads an upload back whole (a config being imported).
    pub(crate) fn read_upload(&self, up: &FinishedUpload) -> Result<Vec<u8>, ImageError> {
        let r = up.open(&*self.keys, &self.context)?;
        if r.len() > MAX_METADATA {
            return Err(ImageError::Corrupt(format!(
                "{} is larger than {MAX_METADATA} bytes",
                up.digest()
            )));
        }
        let mut out = Vec::new();
        let mut r = r;
        r.read_to_end(&mut out)
            .map_err(read_err(up.digest().as_str()))?;
        Ok(out)
    }

    /// Opens an upload for reading (a layer being verified).
    pub(crate) fn open_upload(
        &self,
        up: &FinishedUpload,
    ) -> Result<SealedReader<File>, ImageError> {
        Ok(up.open(&*self.keys, &self.context)?)
    }

    fn lock(&self) -> Result<Flock<File>, ImageError> {
        let p = self.root.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(format!("opening {}", p.display())))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| ImageError::Io {
            context: format!("locking {}", p.display()),
            err: e.into(),
        })
    }

    fn read_refs(&self) -> Result<Refs, ImageError> {
        let p = self.root.join("refs.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ImageError::Corrupt(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Refs::default()),
            Err(e) => Err(io_err(format!("reading {}", p.display()))(e)),
        }
    }

    fn write_refs(&self, refs: &Refs) -> Result<(), ImageError> {
        let body = serde_json::to_vec_pretty(refs)
            .map_err(|e| ImageError::Corrupt(format!("encoding refs: {e}")))?;
        write_atomic(&self.root, &self.root.join("refs.json"), &body)
    }

    /// Names verified uploads and points `names` at the manifest `digest`,
    /// under the store lock (so a concurrent `rm` cannot collect the blobs
    /// before the names exist); then applies the size limit, sparing the
    /// images just committed. Returns the names the limit removed.
    pub(crate) fn commit(
        &self,
        blobs: Vec<FinishedUpload>,
        tags: &[(Vec<Reference>, String)],
    ) -> Result<Vec<Reference>, ImageError> {
        let _lock = self.lock()?;
        for up in blobs {
            up.commit()?;
        }
        let mut refs = self.read_refs()?;
        let now = now_ms();
        for (names, digest) in tags {
            for n in names {
                refs.refs.insert(n.to_string(), digest.to_string());
            }
            refs.last_used.insert(digest.clone(), now);
        }
        self.write_refs(&refs)?;
        let keep: BTreeSet<String> = tags.iter().map(|(_, d)| d.clone()).collect();
        let removed = self.collect_locked(&mut refs, &keep, false)?;
        for r in &removed {
            tracing::info!(
                "image store over its limit: removed {}, the least recently used image no task uses",
                r.familiar()
            );
        }
        Ok(removed)
    }

    /// Resolves a name as written in a task definition, and records the use
    /// (the size limit collects the least recently used images first).
    pub fn resolve(&self, name: &str) -> Result<Image, ImageError> {
        self.resolve_inner(name, false).map(|(i, _)| i)
    }

    /// [`ImageStore::resolve`], and pins the image in the same step (no
    /// collection can come between): what a task holds until it stops.
    pub fn resolve_pinned(&self, name: &str) -> Result<(Image, Pin), ImageError> {
        let (img, pin) = self.resolve_inner(name, true)?;
        let pin = pin.ok_or_else(|| ImageError::NotFound(name.to_owned()))?;
        Ok((img, pin))
    }

    fn resolve_inner(&self, name: &str, pin: bool) -> Result<(Image, Option<Pin>), ImageError> {
        let reference = Reference::parse(name)?;
        let _lock = self.lock()?;
        let mut refs = self.read_refs()?;
        let digest = match (&reference.tag, &reference.digest) {
            (_, Some(d)) => d.clone(),
            _ => refs
                .refs
                .get(&reference.to_string())
                .cloned()
                .ok_or_else(|| ImageError::NotFound(name.to_string()))?,
        };
        digest_hex(&digest)?;
        if !self.has_blob(&digest)? {
            return Err(ImageError::NotFound(name.to_string()));
        }
        let manifest = ImageManifest::from_reader(&self.read_blob(&digest)?[..])
            .map_err(|e| ImageError::Corrupt(format!("manifest {digest}: {e}")))?;
        let cdigest = manifest.config().digest().to_string();
        let config = ImageConfiguration::from_reader(&self.read_blob(&cdigest)?[..])
            .map_err(|e| ImageError::Corrupt(format!("config {cdigest}: {e}")))?;
        if refs.refs.values().any(|d| *d == digest) {
            refs.last_used.insert(digest.clone(), now_ms());
            self.write_refs(&refs)?;
        }
        let pin = pin.then(|| self.pin_locked(&digest));
        Ok((
            Image {
                reference,
                manifest_digest: digest,
                manifest,
                config,
            },
            pin,
        ))
    }

    /// Pins the image `manifest_digest` (`sha256:<hex>`) until the returned
    /// [`Pin`] drops: its blobs are not collected meanwhile.
    pub fn pin(&self, manifest_digest: &str) -> Result<Pin, ImageError> {
        let _lock = self.lock()?;
        Ok(self.pin_locked(manifest_digest))
    }

    fn pin_locked(&self, digest: &str) -> Pin {
        if let Ok(mut p) = self.pins.lock() {
            *p.entry(digest.to_owned()).or_default() += 1;
        }
        Pin {
            pins: self.pins.clone(),
            digest: digest.to_owned(),
        }
    }

    fn pinned(&self) -> BTreeSet<String> {
        self.pins
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// All named images, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let refs = self.read_refs()?;
        let mut out = Vec::new();
        for (name, digest) in refs.refs {
            let reference = Reference::parse(&name)?;
            let size = match self.manifest(&digest) {
                Ok(m) => m.config().size() + m.layers().iter().map(|l| l.size()).sum::<u64>(),
                Err(_) => 0,
            };
            out.push(ImageSummary {
                reference,
                manifest_digest: digest,
                size,
            });
        }
        Ok(out)
    }

    fn manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        ImageManifest::from_reader(&self.read_blob(digest)?[..])
            .map_err(|e| ImageError::Corrupt(format!("manifest {digest}: {e}")))
    }

    /// The blobs (hex) of the image `digest`: manifest, config, layers.
    fn image_blobs(&self, digest: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if let Ok(h) = digest_hex(digest) {
            out.insert(h.to_owned());
        }
        if let Ok(m) = self.manifest(digest) {
            out.insert(m.config().digest().digest().to_string());
            for l in m.layers() {
                out.insert(l.digest().digest().to_string());
            }
        }
        out
    }

    /// Removes a name, then every blob no remaining name (nor running task)
    /// needs. Returns the removed reference.
    pub fn remove(&self, name: &str) -> Result<Reference, ImageError> {
        let reference = Reference::parse(name)?;
        let _lock = self.lock()?;
        let mut refs = self.read_refs()?;
        let Some(digest) = refs.refs.remove(&reference.to_string()) else {
            return Err(ImageError::NotFound(name.to_string()));
        };
        if !refs.refs.values().any(|d| *d == digest) {
            refs.last_used.remove(&digest);
        }
        self.write_refs(&refs)?;
        self.sweep_locked(&refs)?;
        Ok(reference)
    }

    /// Removes every image no running task uses. Returns the removed names.
    pub fn prune(&self) -> Result<Vec<Reference>, ImageError> {
        let _lock = self.lock()?;
        let mut refs = self.read_refs()?;
        self.collect_locked(&mut refs, &BTreeSet::new(), true)
    }

    /// Removes least recently used, unpinned images (not in `keep`) while
    /// the blobs exceed the limit (`all`: every such image), then the blobs
    /// nothing needs. Under the lock.
    fn collect_locked(
        &self,
        refs: &mut Refs,
        keep: &BTreeSet<String>,
        all: bool,
    ) -> Result<Vec<Reference>, ImageError> {
        let limit = if all {
            0
        } else {
            self.limit.load(Ordering::Relaxed)
        };
        let sizes: BTreeMap<String, u64> = self
            .blobs
            .list()?
            .into_iter()
            .map(|(d, n)| (d.hex().to_owned(), n))
            .collect();
        if limit == u64::MAX || (!all && sizes.values().sum::<u64>() <= limit) {
            return Ok(Vec::new());
        }
        let pinned = self.pinned();
        let digests: BTreeSet<&String> = refs.refs.values().collect();
        let images: Vec<gc::GcImage> = digests
            .into_iter()
            .map(|d| gc::GcImage {
                digest: d.clone(),
                last_used: refs.last_used.get(d).copied().unwrap_or(0),
                blobs: self.image_blobs(d),
                protected: keep.contains(d) || pinned.contains(d),
            })
            .collect();
        let victims = gc::lru_victims(&images, &sizes, limit);
        if victims.is_empty() {
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        refs.refs.retain(|name, d| {
            if victims.contains(d) {
                if let Ok(r) = Reference::parse(name) {
                    removed.push(r);
                }
                false
            } else {
                true
            }
        });
        for v in &victims {
            refs.last_used.remove(v);
        }
        self.write_refs(refs)?;
        self.sweep_locked(refs)?;
        Ok(removed)
    }

    /// Removes every blob that no name and no pinned image reaches.
    fn sweep_locked(&self, refs: &Refs) -> Result<(), ImageError> {
        let mut keep = BTreeSet::new();
        let roots: BTreeSet<String> = refs.refs.values().cloned().chain(self.pinned()).collect();
        for d in &roots {
            keep.extend(self.image_blobs(d));
        }
        for (d, _) in self.blobs.list()? {
            if !keep.contains(d.hex()) {
                self.blobs.remove(&d)?;
            }
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Replaces `path` (in `dir`) with `body`, synced, by a rename.
fn write_atomic(dir: &Path, path: &Path, body: &[u8]) -> Result<(), ImageError> {
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(io_err("creating a temporary file"))?;
    tmp.write_all(body)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err(format!("writing {}", path.display())))?;
    tmp.persist(path)
        .map_err(|e| io_err(format!("replacing {}", path.display()))(e.error))?;
    Ok(())
}

/// An error text from a parser, fit for a one-line message: tar's errors
/// can quote raw header bytes (newlines, binary) from a foreign file.
pub(crate) fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if s.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

/// `sha256:<hex>` -> `<hex>`, checked (it becomes a file name).
pub(crate) fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(h),
        _ => Err(ImageError::Unsupported(format!(
            "unsupported digest {digest:?} (only sha256 is supported)"
        ))),
    }
}

/// Copies `r` to `w`, returning (`sha256:<hex>`, byte count).
pub(crate) fn copy_hashed(mut r: impl Read, mut w: impl Write) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

/// A store sealed under in-memory test keys (unit tests of this crate).
#[cfg(test)]
impl ImageStore {
    pub(crate) fn for_tests(dir: &Path) -> Self {
        let ctx: Context = [("ferry:purpose".to_owned(), "test".to_owned())].into();
        match Self::open(
            dir,
            Arc::new(ferry_blob::testing::MemoryKeys::default()),
            ctx,
        ) {
            Ok(s) => s,
            Err(e) => panic!("opening a test store: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(b)))
    }

    /// An OCI archive of one image: one uncompressed layer holding
    /// `marker` in /marker (and `pad` bytes of padding, for sizes).
    fn archive(name: &str, marker: &str, pad: usize) -> Vec<u8> {
        let mut layer = tar::Builder::new(Vec::new());
        for (path, body) in [
            ("marker", marker.as_bytes().to_vec()),
            ("pad", vec![7u8; pad]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            layer.append_data(&mut h, path, &body[..]).unwrap();
        }
        let layer = layer.into_inner().unwrap();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}
        })
        .to_string()
        .into_bytes();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha(&layer), "size": layer.len()}]
        })
        .to_string()
        .into_bytes();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": sha(&manifest), "size": manifest.len(),
                           "annotations": {"io.containerd.image.name": name}}]
        })
        .to_string()
        .into_bytes();
        let mut ar = tar::Builder::new(Vec::new());
        let mut add = |path: String, body: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            ar.append_data(&mut h, path, body).unwrap();
        };
        add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json".into(), &index);
        for b in [&layer, &config, &manifest] {
            add(format!("blobs/sha256/{}", &sha(b)[7..]), b);
        }
        ar.into_inner().unwrap()
    }

    fn store(dir: &Path) -> ImageStore {
        ImageStore::for_tests(dir)
    }

    fn import(s: &ImageStore, name: &str, marker: &str, pad: usize) -> String {
        let a = archive(name, marker, pad);
        let out = archive::import_from(s, &a[..], Path::new("test.tar"), None).unwrap();
        out[0].manifest_digest.clone()
    }

    /// Every file under `dir`, read whole.
    fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                let t = e.file_type().unwrap();
                if t.is_dir() {
                    stack.push(e.path());
                } else if t.is_file() {
                    out.push((e.path(), fs::read(e.path()).unwrap()));
                }
            }
        }
        out
    }

    #[test]
    fn imported_images_are_sealed_and_unpack() {
        let t = tempfile::tempdir().unwrap();
        let s = store(&t.path().join("images"));
        let marker = "MARKER-sealed-store-5f1c2a";
        import(&s, "docker.io/library/web:1", marker, 10);
        for (p, b) in all_bytes(t.path()) {
            assert!(
                !b.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "plaintext marker in {}",
                p.display()
            );
        }
        let img = s.resolve("web:1").unwrap();
        let root = t.path().join("rootfs");
        unpack::unpack_image(&s, &img, &root).unwrap();
        assert_eq!(fs::read_to_string(root.join("marker")).unwrap(), marker);
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn a_swapped_layer_fails_the_unpack() {
        let t = tempfile::tempdir().unwrap();
        let s = store(&t.path().join("images"));
        import(&s, "a:1", "AAAA", 10);
        import(&s, "b:1", "BBBB", 20);
        let a = s.resolve("a:1").unwrap();
        let b = s.resolve("b:1").unwrap();
        let path = |i: &Image| {
            let d = ferry_blob::Digest::parse(i.manifest.layers()[0].digest().as_ref()).unwrap();
            s.blobs.path(&d)
        };
        fs::copy(path(&b), path(&a)).unwrap();
        let err = unpack::unpack_image(&s, &a, &t.path().join("rootfs")).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
    }

    #[test]
    fn the_limit_collects_the_least_recently_used_unpinned_image() {
        let t = tempfile::tempdir().unwrap();
        let s = store(&t.path().join("images"));
        let one = import(&s, "one:1", "1", 300_000);
        let two = import(&s, "two:1", "2", 300_000);
        let three = import(&s, "three:1", "3", 300_000);
        // `one` is used (and pinned) by a task, so `two` is the LRU victim.
        let (_, pin) = s.resolve_pinned("one:1").unwrap();
        s.set_limit(Some(s.usage().unwrap() + 1));
        let four = import(&s, "four:1", "4", 300_000);
        let names: Vec<String> = s
            .list()
            .unwrap()
            .iter()
            .map(|i| i.manifest_digest.clone())
            .collect();
        assert!(names.contains(&one) && names.contains(&three) && names.contains(&four));
        assert!(!names.contains(&two), "the LRU image was kept");
        assert!(s.usage().unwrap() <= s.limit.load(Ordering::Relaxed));
        // Prune spares the pinned image only; after the pin drops it goes too.
        s.prune().unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
        drop(pin);
        s.prune().unwrap();
        assert!(s.list().unwrap().is_empty());
        assert_eq!(s.usage().unwrap(), 0);
    }

    #[test]
    fn an_old_plaintext_store_is_removed_at_open() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("images");
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        fs::write(root.join("blobs/sha256").join("ab".repeat(32)), b"plain").unwrap();
        fs::write(root.join("refs.json"), b"{\"refs\":{}}").unwrap();
        let s = store(&root);
        assert_eq!(s.usage().unwrap(), 0);
        assert!(!root.join("refs.json").exists());
        assert!(root.join("format").exists());
    }
}
