//! Importing image archives: `oci-archive` tars (an OCI image layout:
//! `oci-layout`, `index.json`, `blobs/sha256/...`, as skopeo, buildah and
//! `podman save --format oci-archive` write them) and `docker save` tars
//! (`manifest.json`, `<id>.json` config, `<id>/layer.tar`, or the OCI-style
//! blob paths newer Docker writes).
//!
//! The archive is first copied file by file into a private temporary
//! directory inside the store while every file is hashed; then each
//! manifest, config and layer is checked against its digest and size, and
//! each layer's uncompressed digest against the config's `rootfs.diff_ids`.
//! Only then are the blobs renamed into the store and the names written,
//! so a truncated or corrupt archive changes nothing.

use std::collections::BTreeMap;
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

use super::unpack::{Compression, layer_reader};
use super::{ImageError, ImageStore, Reference, copy_hashed, digest_hex, io_err, one_line};

/// One image an import added or re-tagged.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The names it now has.
    pub names: Vec<Reference>,
    /// Its manifest digest.
    pub manifest_digest: String,
}

/// A regular file from the archive, copied to the temporary directory.
struct Staged {
    tmp: PathBuf,
    digest: String,
    size: u64,
}

/// The archive's files, by normalized path, plus its symlinks.
struct Staging {
    dir: tempfile::TempDir,
    files: BTreeMap<String, Staged>,
    links: BTreeMap<String, String>,
}

impl Staging {
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

fn stage(store: &ImageStore, archive: &Path) -> Result<Staging, ImageError> {
    let bad = |e: io::Error| {
        ImageError::Corrupt(format!(
            "{}: not a valid image archive (truncated or corrupt): {}",
            archive.display(),
            one_line(&e.to_string())
        ))
    };
    let dir = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(store.root().join("tmp"))
        .map_err(io_err("creating a temporary directory in the store"))?;
    // `-` reads the archive from stdin (`docker save httpd | ferry image import -`).
    let source: Box<dyn Read> = if archive == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(archive).map_err(io_err(format!("opening {}", archive.display())))?)
    };
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
    for (i, entry) in tar.entries().map_err(bad)?.enumerate() {
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
                let tmp = dir.path().join(format!("f{i}"));
                let out = File::create(&tmp).map_err(io_err("writing the staging directory"))?;
                let (digest, size) = copy_hashed(&mut entry, out).map_err(bad)?;
                files.insert(name, Staged { tmp, digest, size });
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
    Ok(Staging { dir, files, links })
}

/// A manifest ready to be committed: its blobs and names.
struct Ready {
    manifest_digest: String,
    /// (staged temp file, digest) of manifest, config and layers.
    blobs: Vec<(PathBuf, String)>,
    names: Vec<Reference>,
}

/// Imports the archive at `path` (`-`: standard input). `name` (`NAME:TAG`) names the image when
/// the archive holds exactly one; otherwise the archive's own names are used.
pub fn import(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<Imported>, ImageError> {
    let forced = name.map(Reference::parse).transpose()?;
    let staging = stage(store, path)?;
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
    // Everything verified: move blobs in and publish the names.
    let blobs: Vec<(PathBuf, String)> = ready.iter().flat_map(|r| r.blobs.clone()).collect();
    let tags: Vec<(Vec<Reference>, String)> = ready
        .iter()
        .map(|r| (r.names.clone(), r.manifest_digest.clone()))
        .collect();
    store.commit(&blobs, &tags)?;
    let out = ready
        .into_iter()
        .map(|r| Imported {
            names: r.names,
            manifest_digest: r.manifest_digest,
        })
        .collect();
    drop(staging);
    Ok(out)
}

/// Checks the layers' uncompressed digests against the config's diff_ids.
fn check_diff_ids(config: &ImageConfiguration, layers: &[&Staged]) -> Result<(), ImageError> {
    let l: Vec<(&Path, &str)> = layers
        .iter()
        .map(|l| (l.tmp.as_path(), l.digest.as_str()))
        .collect();
    verify_diff_ids(config, &l)
}

/// Checks each layer file's uncompressed digest against the config's
/// `rootfs.diff_ids` (and that the counts agree). `layers` is (file, digest).
pub(crate) fn verify_diff_ids(
    config: &ImageConfiguration,
    layers: &[(&Path, &str)],
) -> Result<(), ImageError> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layers.len() {
        return Err(ImageError::Corrupt(format!(
            "image config lists {} layers, manifest has {}",
            diff_ids.len(),
            layers.len()
        )));
    }
    for (want, (path, digest)) in diff_ids.iter().zip(layers) {
        let (r, _) = layer_reader(path)?;
        let (got, _) = copy_hashed(r, io::sink())
            .map_err(|e| ImageError::Corrupt(format!("layer {digest} does not decompress: {e}")))?;
        if &got != want {
            return Err(ImageError::Corrupt(format!(
                "layer {digest} uncompressed digest {got} does not match the config's diff_id {want}"
            )));
        }
    }
    Ok(())
}

fn parse_config(f: &Staged) -> Result<ImageConfiguration, ImageError> {
    let file = File::open(&f.tmp).map_err(io_err("reading staged config"))?;
    ImageConfiguration::from_reader(file)
        .map_err(|e| ImageError::Corrupt(format!("image config {}: {e}", f.digest)))
}

fn from_oci(staging: &Staging) -> Result<Vec<Ready>, ImageError> {
    let idx = staging.need("index.json")?;
    let index = ImageIndex::from_reader(File::open(&idx.tmp).map_err(io_err("reading index"))?)
        .map_err(|e| ImageError::Corrupt(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for desc in index.manifests() {
        let names = names_from_annotations(desc);
        let mut desc = desc.clone();
        let mut blobs = Vec::new();
        // A nested index (multi-platform image): pick this machine's platform.
        if *desc.media_type() == MediaType::ImageIndex {
            let f = staging.blob(&desc)?;
            blobs.push((f.tmp.clone(), f.digest.clone()));
            let inner = ImageIndex::from_reader(File::open(&f.tmp).map_err(io_err("reading"))?)
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
            blobs.clear();
        }
        let mf = staging.blob(&desc)?;
        let manifest =
            ImageManifest::from_reader(File::open(&mf.tmp).map_err(io_err("reading manifest"))?)
                .map_err(|e| ImageError::Corrupt(format!("manifest {}: {e}", mf.digest)))?;
        blobs.push((mf.tmp.clone(), mf.digest.clone()));
        let cf = staging.blob(manifest.config())?;
        let config = parse_config(cf)?;
        blobs.push((cf.tmp.clone(), cf.digest.clone()));
        let mut layers = Vec::new();
        for l in manifest.layers() {
            let lf = staging.blob(l)?;
            blobs.push((lf.tmp.clone(), lf.digest.clone()));
            layers.push(lf);
        }
        check_diff_ids(&config, &layers)?;
        out.push(Ready {
            manifest_digest: mf.digest.clone(),
            blobs,
            names,
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

fn from_docker(staging: &Staging) -> Result<Vec<Ready>, ImageError> {
    let mf = staging.need("manifest.json")?;
    let entries: Vec<DockerEntry> =
        serde_json::from_reader(File::open(&mf.tmp).map_err(io_err("reading manifest.json"))?)
            .map_err(|e| ImageError::Corrupt(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for (n, e) in entries.iter().enumerate() {
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
        let config = parse_config(cf)?;
        let mut blobs = vec![(cf.tmp.clone(), cf.digest.clone())];
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for l in &e.layers {
            let lf = staging.need(l)?;
            let (_, compression) = layer_reader(&lf.tmp)?;
            let mt = match compression {
                Compression::Gzip => MediaType::ImageLayerGzip,
                Compression::None => MediaType::ImageLayer,
            };
            descs.push(Descriptor::new(mt, lf.size, digest_of(&lf.digest)?));
            blobs.push((lf.tmp.clone(), lf.digest.clone()));
            layers.push(lf);
        }
        check_diff_ids(&config, &layers)?;
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
        let tmp = staging.dir.path().join(format!("manifest-{n}"));
        let (digest, _) = copy_hashed(
            body.as_bytes(),
            File::create(&tmp).map_err(io_err("writing manifest"))?,
        )
        .map_err(io_err("writing manifest"))?;
        blobs.push((tmp, digest.clone()));
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
        });
    }
    Ok(out)
}

fn digest_of(s: &str) -> Result<Digest, ImageError> {
    Digest::from_str(s).map_err(|e| ImageError::Corrupt(format!("digest {s}: {e}")))
}
