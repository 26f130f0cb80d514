//! The plugin's record of each volume, one JSON file per volume under
//! `DATA_DIR/volumes/ID/record.json`, beside the volume's image. It holds
//! ids and ARNs only, nothing secret: the wrapped data key lives in the
//! volume's LUKS2 token, the plaintext key only in the volume server.
//!
//! A record is written *before* each step that leaves something behind
//! (a grant, an image, a mount), so a plugin killed at any point finds,
//! on restart, everything it has to undo.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::attrs::Pod;

/// Where a volume is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// NodePublishVolume started and has not finished.
    Publishing,
    /// Mounted at its target.
    Published,
}

/// The parameters that make two NodePublishVolume calls "the same" (the
/// spec's P1 = P2): everything but the target and secrets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    /// Volume size in bytes.
    pub size: u64,
    /// The kmsKeyId attribute as given (None: the plugin's default).
    pub kms_key_id: Option<String>,
    /// The pod.
    pub pod: Pod,
    /// Mounted read-only.
    pub read_only: bool,
    /// Group owning the volume's root (volume_mount_group / fsGroup).
    pub mount_group: Option<u32>,
}

/// A volume's record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The CSI volume id.
    pub volume_id: String,
    /// Where it is (to be) mounted.
    pub target_path: PathBuf,
    /// What was asked.
    pub params: Params,
    /// Phase.
    pub phase: Phase,
    /// The key wrapping the data key, once known.
    pub key_arn: Option<String>,
    /// The Decrypt grant, once made.
    pub grant_id: Option<String>,
}

/// Record and image paths of volumes under a data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    run: PathBuf,
}

/// The record file's name in a volume's directory.
pub const RECORD: &str = "record.json";
/// The image file's name in a volume's directory.
pub const IMAGE: &str = "volume.img";

impl Layout {
    /// Volumes live in `data_dir/volumes`.
    pub fn new(data_dir: &Path) -> Self {
        Layout {
            root: data_dir.join("volumes"),
            run: data_dir.join("run"),
        }
    }

    /// The directory holding every volume's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A volume's directory: named by the SHA-256 of its id, since CSI ids
    /// are up to 128 arbitrary bytes and a file name is not.
    pub fn dir(&self, volume_id: &str) -> PathBuf {
        self.root
            .join(hex::encode(Sha256::digest(volume_id.as_bytes())))
    }

    /// The parent of a volume's server runtime directory: one per volume,
    /// so a volume whose mount is gone still has its server found.
    pub fn runtime_root(&self, volume_dir: &Path) -> PathBuf {
        self.run.join(volume_dir.file_name().unwrap_or_default())
    }

    /// A volume's image.
    pub fn image(&self, volume_id: &str) -> PathBuf {
        self.dir(volume_id).join(IMAGE)
    }

    /// Writes a record durably (temporary file, fsync, rename, fsync dir).
    pub fn save(&self, rec: &Record) -> std::io::Result<()> {
        let dir = self.dir(&rec.volume_id);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("record.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(RECORD))?;
        std::fs::File::open(&dir)?.sync_all()
    }

    /// Removes a volume's directory (record and anything left in it).
    pub fn remove(&self, volume_id: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir(volume_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The record of one volume, if it has a readable one.
    pub fn scan_one(&self, volume_id: &str) -> Option<Record> {
        std::fs::read(self.dir(volume_id).join(RECORD))
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            .filter(|r| r.volume_id == volume_id)
    }

    /// Every volume directory with what could be read of its record.
    pub fn scan(&self) -> std::io::Result<Vec<(PathBuf, Option<Record>)>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in entries {
            let dir = e?.path();
            if !dir.is_dir() {
                continue;
            }
            let rec = std::fs::read(dir.join(RECORD))
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                // A record in the wrong directory is not this volume's.
                .filter(|r| self.dir(&r.volume_id) == dir);
            out.push((dir, rec));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_scan() {
        let tmp = tempfile::tempdir().unwrap();
        let l = Layout::new(tmp.path());
        assert!(l.scan().unwrap().is_empty());
        let rec = Record {
            volume_id: "csi-../../etc".into(),
            target_path: "/var/lib/kubelet/pods/u/volumes/x/mount".into(),
            params: Params {
                size: 1 << 30,
                kms_key_id: None,
                pod: Pod {
                    namespace: "ns".into(),
                    name: "p".into(),
                    uid: "u".into(),
                },
                read_only: false,
                mount_group: Some(2000),
            },
            phase: Phase::Publishing,
            key_arn: None,
            grant_id: None,
        };
        l.save(&rec).unwrap();
        // The id never becomes a path.
        assert!(l.dir(&rec.volume_id).starts_with(l.root()));
        assert_eq!(l.dir(&rec.volume_id).file_name().unwrap().len(), 64);
        std::fs::create_dir_all(l.root().join("junk")).unwrap();
        let mut found = l.scan().unwrap();
        found.sort_by_key(|(_, r)| r.is_some());
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].1, None);
        assert_eq!(found[1].1.as_ref(), Some(&rec));
        l.remove(&rec.volume_id).unwrap();
        l.remove(&rec.volume_id).unwrap();
        assert_eq!(l.scan().unwrap().len(), 1);
    }
}
