//! The local image store: content-addressed blobs plus a name table.
//!
//! Layout under the store's directory (`DATA_DIR/images`):
//!
//! ```text
//! blobs/sha256/<hex>   manifests, configs and layers, named by their digest
//! refs.json            {"refs": {"docker.io/library/httpd:2.4": "sha256:<manifest>"}}
//! tmp/                 imports in progress (removed on success and failure)
//! lock                 flock'd while the name table changes
//! ```
//!
//! Writers only ever rename fully written, verified files into `blobs/` and
//! replace `refs.json` atomically, so a failed import leaves the store as it
//! was.
//!
//! - [`mod@reference`]: name normalization (`httpd:2.4` == `docker.io/library/httpd:2.4`).
//! - [`archive`]: importing oci-archive and `docker save` tars.
//! - [`pull`]: pulling from an OCI distribution registry.
//! - [`puller`]: images for tasks, one pull per image however many ask.
//! - [`unpack`]: applying layers (with OCI whiteouts) to a rootfs directory.

pub mod archive;
pub mod pull;
pub mod puller;
pub mod reference;
pub mod unpack;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use reference::{Reference, ReferenceError};

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
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |err| ImageError::Io { context, err }
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
}

/// The store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) a store at `root` (e.g. `DATA_DIR/images`).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for d in [root.join("blobs/sha256"), root.join("tmp")] {
            fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        Ok(Self { root })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob with `digest` (`sha256:<hex>`) lives.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = digest_hex(digest)?;
        Ok(self.root.join("blobs/sha256").join(hex))
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
        let p = self.root.join("refs.json");
        let mut tmp = tempfile::NamedTempFile::new_in(&self.root)
            .map_err(io_err("creating temporary refs file"))?;
        let body = serde_json::to_vec_pretty(refs)
            .map_err(|e| ImageError::Corrupt(format!("encoding refs: {e}")))?;
        tmp.write_all(&body)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io_err("writing refs"))?;
        tmp.persist(&p)
            .map_err(|e| io_err(format!("replacing {}", p.display()))(e.error))?;
        Ok(())
    }

    /// Moves staged, verified blobs into the store and points `names` at
    /// the manifest `digest`, under the store lock (so a concurrent `rm`
    /// cannot collect the blobs before the names exist).
    pub(crate) fn commit(
        &self,
        blobs: &[(PathBuf, String)],
        tags: &[(Vec<Reference>, String)],
    ) -> Result<(), ImageError> {
        let _lock = self.lock()?;
        for (tmp, digest) in blobs {
            let dest = self.blob_path(digest)?;
            if !dest.exists() {
                fs::rename(tmp, &dest).map_err(io_err(format!("storing blob {digest}")))?;
            }
        }
        for (names, digest) in tags {
            self.tag_locked(names, digest)?;
        }
        Ok(())
    }

    fn tag_locked(&self, names: &[Reference], digest: &str) -> Result<(), ImageError> {
        let mut refs = self.read_refs()?;
        for n in names {
            refs.refs.insert(n.to_string(), digest.to_string());
        }
        self.write_refs(&refs)
    }

    /// Resolves a name as written in a task definition.
    pub fn resolve(&self, name: &str) -> Result<Image, ImageError> {
        let reference = Reference::parse(name)?;
        let digest = match (&reference.tag, &reference.digest) {
            (_, Some(d)) => d.clone(),
            _ => self
                .read_refs()?
                .refs
                .get(&reference.to_string())
                .cloned()
                .ok_or_else(|| ImageError::NotFound(name.to_string()))?,
        };
        let mpath = self.blob_path(&digest)?;
        if !mpath.exists() {
            return Err(ImageError::NotFound(name.to_string()));
        }
        let manifest = ImageManifest::from_file(&mpath)
            .map_err(|e| ImageError::Corrupt(format!("manifest {digest}: {e}")))?;
        let cpath = self.blob_path(manifest.config().digest().as_ref())?;
        let config = ImageConfiguration::from_file(&cpath).map_err(|e| {
            ImageError::Corrupt(format!("config {}: {e}", manifest.config().digest()))
        })?;
        Ok(Image {
            reference,
            manifest_digest: digest,
            manifest,
            config,
        })
    }

    /// All named images, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let refs = self.read_refs()?;
        let mut out = Vec::new();
        for (name, digest) in refs.refs {
            let reference = Reference::parse(&name)?;
            let size = match ImageManifest::from_file(self.blob_path(&digest)?) {
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

    /// Removes a name, then every blob no remaining name needs. Returns the
    /// removed reference.
    pub fn remove(&self, name: &str) -> Result<Reference, ImageError> {
        let reference = Reference::parse(name)?;
        let _lock = self.lock()?;
        let mut refs = self.read_refs()?;
        if refs.refs.remove(&reference.to_string()).is_none() {
            return Err(ImageError::NotFound(name.to_string()));
        }
        self.write_refs(&refs)?;
        // Garbage-collect: keep blobs reachable from any remaining name.
        let mut keep = BTreeSet::new();
        for digest in refs.refs.values() {
            keep.insert(digest_hex(digest)?.to_string());
            if let Ok(m) = ImageManifest::from_file(self.blob_path(digest)?) {
                keep.insert(m.config().digest().digest().to_string());
                for l in m.layers() {
                    keep.insert(l.digest().digest().to_string());
                }
            }
        }
        let dir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))? {
            let e = e.map_err(io_err(format!("listing {}", dir.display())))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&n) {
                fs::remove_file(e.path()).map_err(io_err(format!("removing blob {n}")))?;
            }
        }
        Ok(reference)
    }
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
