//! Importing image archives: `oci-archive` tars (an OCI image layout:
//! `oci-layout`, `index.json`, `blobs/sha256/...`, as skopeo, buildah and
//! `podman save --format oci-archive` write them) and `docker save` tars
//! (`manifest.json`, `<id>.json` config, `<id>/layer.tar`, or the OCI-style
//! blob paths newer Docker writes).
//!
//! Each file of the archive is streamed straight into a sealed upload of
//! the store while it is hashed (no plaintext temporary file); then each
//! manifest, config and layer is checked against its digest and size, and
//! each layer's uncompressed digest against the config's `rootfs.diff_ids`
//! (one more read, through the sealed reader). Only then are the blobs
//! named and the names written, so a truncated or corrupt archive changes
//! nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use flate2::read::GzDecoder;
use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, ImageManifestBuilder,
    MediaType,
};
use serde::Deserialize;

use ferry_blob::{FinishedUpload, SealedReader};

use super::unpack::{Compression, corrupt, drain, layer_reader};
use super::{ImageError, ImageStore, Reference, copy_hashed, digest_hex, io_err, one_line};

/// One image an import added or re-tagged.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The names it now has.
    pub names: Vec<Reference>,
    /// Its manifest digest.
    pub manifest_digest: String,
}

/// A regular file from the archive, sealed into an upload.
struct Staged {
    digest: String,
    size: u64,
}

/// The archive's files, by normalized path, plus its symlinks, and one
/// sealed upload per distinct content.
struct Staging<'s> {
    store: &'s ImageStore,
    files: BTreeMap<String, Staged>,
    links: BTreeMap<String, String>,
    uploads: HashMap<String, FinishedUpload>,
}

impl Staging<'_> {
    fn upload(&self, f: &Staged) -> Result<&FinishedUpload, ImageError> {
        self.uploads
            .get(&f.digest)
            .ok_or_else(|| ImageError::Corrupt(format!("{} was not staged", f.digest)))
    }

    /// A (small) staged file's bytes, read back through the sealed reader.
    fn read(&self, f: &Staged) -> Result<Vec<u8>, ImageError> {
        self.store.read_upload(self.upload(f)?)
    }

    /// A staged file as a sealed stream.
    fn open(&self, f: &Staged) -> Result<SealedReader<File>, ImageError> {
        self.store.open_upload(self.upload(f)?)
    }

    fn get(&self, path: &str) -> Option<&Staged> {
        let mut p = normalize(Path::new(path))?;
        // Follow a few symlinks (docker save links duplicate layers).
        for _ in 0..8 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    fn need(&self, path: &str) -> Result<&Staged, ImageError> {
        self.get(path)
            .ok_or_else(|| ImageError::Corrupt(format!("archive is missing {path}")))
    }

    /// The blob `desc` names, checked against its digest and size.
    fn blob(&self, desc: &Descriptor) -> Result<&Staged, ImageError> {
        let digest = desc.digest().to_string();
        let hex = digest_hex(&digest)?;
        let f = self.need(&format!("blobs/sha256/{hex}"))?;
        check(f, &digest, Some(desc.size()))?;
        Ok(f)
    }
}

fn check(f: &Staged, digest: &str, size: Option<u64>) -> Result<(), ImageError> {
    if f.digest != digest {
        return Err(ImageError::Corrupt(format!(
            "digest mismatch: expected {digest}, content is {}",
            f.digest
        )));
    }
    if let Some(s) = size
        && s != f.size
    {
        return Err(ImageError::Corrupt(format!(
            "size mismatch for {digest}: expected {s} bytes, found {}",
            f.size
        )));
    }
    Ok(())
}

/// `a/./b/../c` -> `a/c`; `None` for paths that leave the archive root.
fn normalize(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn stage<'s>(
    store: &'s ImageStore,
    source: impl Read,
    archive: &Path,
) -> Result<Staging<'s>, ImageError> {
    let bad = |e: io::Error| {
        if e.get_ref().is_some_and(|i| i.is::<ferry_blob::BlobError>()) {
            return super::read_err("sealing an archive file")(e);
        }
        ImageError::Corrupt(format!(
            "{}: not a valid image archive (truncated or corrupt): {}",
            archive.display(),
            one_line(&e.to_string())
        ))
    };
    stage_from(store, source, archive, &bad)
}

fn stage_from<'s>(
    store: &'s ImageStore,
    source: impl Read,
    archive: &Path,
    bad: &dyn Fn(io::Error) -> ImageError,
) -> Result<Staging<'s>, ImageError> {
    let mut file = BufReader::new(source);
    // `docker save | gzip` is common; accept a gzipped archive too.
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(bad)?;
    let head = io::Cursor::new(magic[..n].to_vec()).chain(file);
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(GzDecoder::new(head))
    } else {
        Box::new(head)
    };
    let mut tar = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    let mut links = BTreeMap::new();
    let mut uploads = HashMap::new();
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(name) = normalize(&path) else {
            return Err(ImageError::Corrupt(format!(
                "{}: archive entry {} escapes the archive",
                archive.display(),
                path.display()
            )));
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut up = store.create_blob()?;
                io::copy(&mut entry, &mut up).map_err(bad)?;
                let done = up.finish()?;
                let staged = Staged {
                    digest: done.digest().to_string(),
                    size: done.size(),
                };
                uploads.entry(staged.digest.clone()).or_insert(done);
                files.insert(name, staged);
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name().map_err(bad)?.unwrap_or_default();
                let base = if entry.header().entry_type() == tar::EntryType::Link {
                    PathBuf::new()
                } else {
                    Path::new(&name)
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default()
                };
                if let Some(t) = normalize(&base.join(target)) {
                    links.insert(name, t);
                }
            }
            _ => {}
        }
    }
    if files.is_empty() {
        return Err(ImageError::Corrupt(format!(
            "{}: not an image archive (no files)",
            archive.display()
        )));
    }
    Ok(Staging {
        store,
        files,
        links,
        uploads,
    })
}

/// A manifest ready to be committed: its blobs and names.
struct Ready {
    manifest_digest: String,
    /// Digests of manifest, config and layers.
    blobs: Vec<String>,
    names: Vec<Reference>,
    /// A manifest made for a `docker save` image, sealed.
    made: Option<FinishedUpload>,
}

/// Imports the archive at `path` (`-`: standard input). `name` (`NAME:TAG`) names the image when
/// the archive holds exactly one; otherwise the archive's own names are used.
pub fn import(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<Imported>, ImageError> {
    if path == Path::new("-") {
        return import_from(store, io::stdin().lock(), path, name);
    }
    let f = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
    import_from(store, f, path, name)
}

/// Imports the archive read from `source` (`path` names it in messages).
pub fn import_from(
    store: &ImageStore,
    source: impl Read,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<Imported>, ImageError> {
    let forced = name.map(Reference::parse).transpose()?;
    let mut staging = stage(store, source, path)?;
    let mut ready = if staging.get("index.json").is_some() {
        from_oci(&staging)?
    } else if staging.get("manifest.json").is_some() {
        from_docker(&staging)?
    } else {
        return Err(ImageError::Corrupt(format!(
            "{}: neither an OCI archive (index.json) nor a docker save archive (manifest.json)",
            path.display()
        )));
    };
    if ready.is_empty() {
        return Err(ImageError::Corrupt(format!(
            "{}: archive holds no image",
            path.display()
        )));
    }
    if let Some(f) = forced {
        if ready.len() != 1 {
            return Err(ImageError::Unsupported(format!(
                "{}: archive holds {} images; --name needs exactly one",
                path.display(),
                ready.len()
            )));
        }
        ready[0].names = vec![f];
    }
    if let Some(r) = ready.iter().find(|r| r.names.is_empty()) {
        return Err(ImageError::Unsupported(format!(
            "{}: image {} has no name in the archive; pass --name NAME:TAG",
            path.display(),
            r.manifest_digest
        )));
    }
    // Everything verified: name the blobs and publish the names.
    let needed: BTreeSet<String> = ready.iter().flat_map(|r| r.blobs.clone()).collect();
    let mut blobs: Vec<FinishedUpload> = needed
        .iter()
        .filter_map(|d| staging.uploads.remove(d))
        .collect();
    blobs.extend(ready.iter_mut().filter_map(|r| r.made.take()));
    let tags: Vec<(Vec<Reference>, String)> = ready
        .iter()
        .map(|r| (r.names.clone(), r.manifest_digest.clone()))
        .collect();
    store.commit(blobs, &tags)?;
    Ok(ready
        .into_iter()
        .map(|r| Imported {
            names: r.names,
            manifest_digest: r.manifest_digest,
        })
        .collect())
}

/// Checks each layer's uncompressed digest against the config's
/// `rootfs.diff_ids` (and that the counts agree), reading each layer once
/// through `open`; returns each layer's compression.
pub(crate) fn verify_diff_ids(
    config: &ImageConfiguration,
    layers: &[String],
    mut open: impl FnMut(&str) -> Result<SealedReader<File>, ImageError>,
) -> Result<Vec<Compression>, ImageError> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layers.len() {
        return Err(ImageError::Corrupt(format!(
            "image config lists {} layers, manifest has {}",
            diff_ids.len(),
            layers.len()
        )));
    }
    let mut out = Vec::new();
    for (want, digest) in diff_ids.iter().zip(layers) {
        let mut blob = open(digest)?;
        let (r, compression) = layer_reader(&mut blob, digest)?;
        let (got, _) = copy_hashed(r, io::sink()).map_err(|e| {
            if e.get_ref().is_some_and(|i| i.is::<ferry_blob::BlobError>()) {
                return corrupt(digest)(e);
            }
            ImageError::Corrupt(format!("layer {digest} does not decompress: {e}"))
        })?;
        drain(blob, digest)?;
        if &got != want {
            return Err(ImageError::Corrupt(format!(
                "layer {digest} uncompressed digest {got} does not match the config's diff_id {want}"
            )));
        }
        out.push(compression);
    }
    Ok(out)
}

fn check_layers(
    staging: &Staging<'_>,
    config: &ImageConfiguration,
    layers: &[&Staged],
) -> Result<Vec<Compression>, ImageError> {
    let digests: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
    let by_digest: HashMap<&str, &Staged> =
        layers.iter().map(|l| (l.digest.as_str(), *l)).collect();
    verify_diff_ids(config, &digests, |d| match by_digest.get(d) {
        Some(f) => staging.open(f),
        None => Err(ImageError::Corrupt(format!("layer {d} was not staged"))),
    })
}

fn parse_config(staging: &Staging<'_>, f: &Staged) -> Result<ImageConfiguration, ImageError> {
    ImageConfiguration::from_reader(&staging.read(f)?[..])
        .map_err(|e| ImageError::Corrupt(format!("image config {}: {e}", f.digest)))
}

fn from_oci(staging: &Staging<'_>) -> Result<Vec<Ready>, ImageError> {
    let idx = staging.need("index.json")?;
    let index = ImageIndex::from_reader(&staging.read(idx)?[..])
        .map_err(|e| ImageError::Corrupt(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for desc in index.manifests() {
        let names = names_from_annotations(desc);
        let mut desc = desc.clone();
        // A nested index (multi-platform image): pick this machine's platform.
        if *desc.media_type() == MediaType::ImageIndex {
            let f = staging.blob(&desc)?;
            let inner = ImageIndex::from_reader(&staging.read(f)?[..])
                .map_err(|e| ImageError::Corrupt(format!("index {}: {e}", f.digest)))?;
            let arch = match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                a => a,
            };
            desc = inner
                .manifests()
                .iter()
                .find(|d| {
                    d.platform()
                        .as_ref()
                        .is_some_and(|p| p.architecture().to_string() == arch)
                })
                .or_else(|| inner.manifests().first())
                .cloned()
                .ok_or_else(|| ImageError::Corrupt("empty nested index".into()))?;
        }
        let mf = staging.blob(&desc)?;
        let manifest = ImageManifest::from_reader(&staging.read(mf)?[..])
            .map_err(|e| ImageError::Corrupt(format!("manifest {}: {e}", mf.digest)))?;
        let mut blobs = vec![mf.digest.clone()];
        let cf = staging.blob(manifest.config())?;
        let config = parse_config(staging, cf)?;
        blobs.push(cf.digest.clone());
        let mut layers = Vec::new();
        for l in manifest.layers() {
            let lf = staging.blob(l)?;
            blobs.push(lf.digest.clone());
            layers.push(lf);
        }
        check_layers(staging, &config, &layers)?;
        out.push(Ready {
            manifest_digest: mf.digest.clone(),
            blobs,
            names,
            made: None,
        });
    }
    Ok(out)
}

/// Names from an index entry: containerd's full name, else the OCI
/// `ref.name` when it is a full reference (a bare tag names nothing).
fn names_from_annotations(desc: &Descriptor) -> Vec<Reference> {
    let Some(a) = desc.annotations() else {
        return Vec::new();
    };
    let full = a.get("io.containerd.image.name").or_else(|| {
        a.get("org.opencontainers.image.ref.name")
            .filter(|n| n.contains('/') || n.contains(':'))
    });
    full.and_then(|n| Reference::parse(n).ok())
        .into_iter()
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn from_docker(staging: &Staging<'_>) -> Result<Vec<Ready>, ImageError> {
    let mf = staging.need("manifest.json")?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&staging.read(mf)?)
        .map_err(|e| ImageError::Corrupt(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in &entries {
        let cf = staging.need(&e.config)?;
        // The config's file name is its digest (`<hex>.json` or `blobs/sha256/<hex>`).
        let stem = Path::new(&e.config)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .trim_end_matches(".json");
        if stem.len() == 64 {
            check(cf, &format!("sha256:{stem}"), None)?;
        }
        let config = parse_config(staging, cf)?;
        let mut blobs = vec![cf.digest.clone()];
        let mut layers = Vec::new();
        for l in &e.layers {
            let lf = staging.need(l)?;
            blobs.push(lf.digest.clone());
            layers.push(lf);
        }
        let compression = check_layers(staging, &config, &layers)?;
        let mut descs = Vec::new();
        for (lf, c) in layers.iter().zip(compression) {
            let mt = match c {
                Compression::Gzip => MediaType::ImageLayerGzip,
                Compression::None => MediaType::ImageLayer,
            };
            descs.push(Descriptor::new(mt, lf.size, digest_of(&lf.digest)?));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                cf.size,
                digest_of(&cf.digest)?,
            ))
            .layers(descs)
            .build()
            .map_err(|e| ImageError::Corrupt(format!("building manifest: {e}")))?;
        let body = manifest
            .to_string()
            .map_err(|e| ImageError::Corrupt(format!("encoding manifest: {e}")))?;
        let made = staging.store.seal_bytes(body.as_bytes())?;
        let digest = made.digest().to_string();
        let names = e
            .repo_tags
            .iter()
            .flatten()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Ready {
            manifest_digest: digest,
            blobs,
            names,
            made: Some(made),
        });
    }
    Ok(out)
}

fn digest_of(s: &str) -> Result<Digest, ImageError> {
    Digest::from_str(s).map_err(|e| ImageError::Corrupt(format!("digest {s}: {e}")))
}
