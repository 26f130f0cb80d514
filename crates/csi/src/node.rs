//! The node plugin's work: publish (KMS key, LUKS2 volume, mount),
//! unpublish (unmount, shred, retire the grant), stats, and recovery of
//! what a previous run of the plugin left. Blocking code: the gRPC layer
//! runs it on tokio's blocking pool.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_api::client::kms::{
    DATA_KEY_BYTES, DecryptRequest, GrantConstraints, GrantRequest, KmsClient, KmsError,
};
use ferry_volume as volume;

use crate::attrs::{self, Pod};
use crate::record::{Layout, Params, Phase, Record};

/// What the plugin needs besides its KMS client.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name (`--node-id`): NodeGetInfo and the `ferry:node` context.
    pub node_id: String,
    /// Records and images live under here.
    pub data_dir: PathBuf,
    /// The key used when a volume names no `kmsKeyId`.
    pub default_key_id: String,
    /// How to start a volume's serving process.
    pub server: volume::ServerCommand,
}

/// A failed node operation, by the gRPC code the CSI spec gives it.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad or missing input (INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// A capability this plugin does not support, or a second publish of a
    /// volume at another target (FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Already published at this target with other parameters (ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// No such volume (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// Another call for the same volume is running (ABORTED).
    #[error("an operation for volume {0} is already in progress")]
    Aborted(String),
    /// A KMS call failed; `named_key` says whether the pod chose the key.
    #[error("{source}")]
    Kms {
        /// The error.
        source: KmsError,
        /// The pod named the key (`kmsKeyId`); else it is the plugin's default.
        named_key: bool,
    },
    /// Anything else (INTERNAL).
    #[error("{0}")]
    Internal(String),
}

impl NodeError {
    fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        NodeError::Internal(format!("{what}: {e}"))
    }
}

/// A validated NodePublishVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Volume id.
    pub volume_id: String,
    /// Target path.
    pub target_path: PathBuf,
    /// Everything else that must match on a repeated call.
    pub params: Params,
}

/// What to do with a NodePublishVolume given what is recorded for its volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing recorded: make the volume.
    Create,
    /// Already published there with these parameters: OK.
    Done,
    /// A half-made (or lost) volume: undo what is left, then make it anew.
    Redo,
}

/// The spec's table for a second NodePublishVolume of a volume on a node
/// (access modes are single-node only): same target and parameters → OK;
/// same target, other parameters → ALREADY_EXISTS; other target →
/// FAILED_PRECONDITION.
pub fn decide(
    existing: Option<&Record>,
    req: &Publish,
    mounted: bool,
) -> Result<Decision, NodeError> {
    let Some(r) = existing else {
        return Ok(Decision::Create);
    };
    if r.phase == Phase::Publishing {
        return Ok(Decision::Redo);
    }
    if r.target_path != req.target_path {
        return Err(NodeError::FailedPrecondition(format!(
            "volume {} is already published at {} (single-node volume)",
            r.volume_id,
            r.target_path.display()
        )));
    }
    if r.params != req.params {
        return Err(NodeError::AlreadyExists(format!(
            "volume {} is already published at {} with other parameters",
            r.volume_id,
            r.target_path.display()
        )));
    }
    Ok(if mounted {
        Decision::Done
    } else {
        Decision::Redo
    })
}

/// The node plugin.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    layout: Layout,
    kms: KmsClient,
    /// The plugin's own principal: grantee and retiring principal of its grants.
    grantee: String,
    busy: Mutex<HashSet<String>>,
}

/// Marks a volume id busy for the life of the guard.
struct Busy<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.id);
        }
    }
}

/// What recovery found and did (for the log and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Volumes still mounted and served: kept.
    pub adopted: Vec<String>,
    /// Volumes whose target or server is gone, or half made: shredded.
    pub shredded: Vec<String>,
    /// Directories without a readable record: image shredded, removed.
    pub strays: usize,
    /// Volumes that could not be cleaned up now (kept for a later try).
    pub failed: Vec<String>,
}

impl Node {
    /// A node plugin; learns its own principal from STS.
    pub fn new(cfg: Config, kms: KmsClient) -> Result<Self, KmsError> {
        let grantee = kms.caller_arn()?;
        Ok(Node {
            layout: Layout::new(&cfg.data_dir),
            cfg,
            kms,
            grantee,
            busy: Mutex::new(HashSet::new()),
        })
    }

    /// The node id.
    pub fn node_id(&self) -> &str {
        &self.cfg.node_id
    }

    /// The principal the plugin's grants name.
    pub fn principal(&self) -> &str {
        &self.grantee
    }

    fn claim(&self, id: &str) -> Result<Busy<'_>, NodeError> {
        let mut s = self
            .busy
            .lock()
            .map_err(|_| NodeError::Internal("lock poisoned".into()))?;
        if !s.insert(id.to_owned()) {
            return Err(NodeError::Aborted(id.to_owned()));
        }
        Ok(Busy {
            set: &self.busy,
            id: id.to_owned(),
        })
    }

    fn load(&self, id: &str) -> Option<Record> {
        self.layout.scan_one(id)
    }

    /// NodePublishVolume.
    pub fn publish(&self, req: &Publish) -> Result<(), NodeError> {
        let _busy = self.claim(&req.volume_id)?;
        let existing = self.load(&req.volume_id);
        let mounted = existing.as_ref().is_some_and(|r| serving(&r.target_path));
        match decide(existing.as_ref(), req, mounted)? {
            Decision::Done => return Ok(()),
            Decision::Redo => {
                if let Some(r) = &existing {
                    self.teardown(r)?;
                }
            }
            Decision::Create => {}
        }
        let mut rec = Record {
            volume_id: req.volume_id.clone(),
            target_path: req.target_path.clone(),
            params: req.params.clone(),
            phase: Phase::Publishing,
            key_arn: None,
            grant_id: None,
        };
        let r = self.create(&mut rec);
        if r.is_err()
            && let Err(e) = self.teardown(&rec)
        {
            tracing::warn!(volume = %rec.volume_id, "rolling back a failed publish: {e}");
        }
        r
    }

    fn save(&self, rec: &Record) -> Result<(), NodeError> {
        self.layout
            .save(rec)
            .map_err(|e| NodeError::internal("writing the volume record", e))
    }

    fn create(&self, rec: &mut Record) -> Result<(), NodeError> {
        let p = &rec.params;
        let named_key = p.kms_key_id.is_some();
        let kms_err = |source| NodeError::Kms { source, named_key };
        let key_id = p
            .kms_key_id
            .clone()
            .unwrap_or_else(|| self.cfg.default_key_id.clone());
        let ctx = attrs::encryption_context(&p.pod, &self.cfg.node_id);
        self.save(rec)?;
        let wrapped = self
            .kms
            .generate_data_key_without_plaintext(&key_id, &ctx, DATA_KEY_BYTES)
            .map_err(kms_err)?;
        rec.key_arn = Some(wrapped.key_arn.clone());
        self.save(rec)?;
        // Decrypt only, for exactly the pod's context; the plugin itself
        // is grantee and retiring principal.
        let name = grant_name(&rec.volume_id);
        let grant = self
            .kms
            .create_grant(&GrantRequest {
                key_id: &wrapped.key_arn,
                grantee: &self.grantee,
                retiring: Some(&self.grantee),
                operations: &["Decrypt"],
                constraints: Some(GrantConstraints {
                    equals: Some(&ctx),
                    subset: None,
                }),
                name: Some(&name),
            })
            .map_err(kms_err)?;
        rec.grant_id = Some(grant.id.clone());
        self.save(rec)?;
        let mut plain = self
            .kms
            .decrypt(&DecryptRequest {
                blob: &wrapped.blob,
                context: &ctx,
                key_id: Some(&wrapped.key_arn),
                grant_tokens: &[&grant.token],
            })
            .map_err(kms_err)?;
        drop(grant);
        if plain.len() != DATA_KEY_BYTES {
            return Err(kms_err(KmsError::Malformed {
                op: "Decrypt",
                detail: "Plaintext is not a 64-byte data key".into(),
            }));
        }
        let pass = volume::Passphrase::new(std::mem::take(&mut *plain))
            .map_err(|e| NodeError::internal("data key", e))?;
        let token = volume::KmsToken {
            key_arn: wrapped.key_arn.clone(),
            wrapped_data_key: wrapped.blob.clone(),
            encryption_context: ctx,
        };
        let image = self.layout.image(&rec.volume_id);
        volume::format(
            &image,
            &volume::FormatOptions {
                size: rec.params.size,
                passphrase: &pass,
                token: Some(&token.to_json()),
            },
        )
        .map_err(|e| NodeError::internal("creating the volume", e))?;
        std::fs::create_dir_all(&rec.target_path)
            .map_err(|e| NodeError::internal("creating the target path", e))?;
        let runtime_root = self.layout.runtime_root(&self.layout.dir(&rec.volume_id));
        let handle = volume::mount(&volume::MountOptions {
            image: &image,
            target: &rec.target_path,
            passphrase: Some(&pass),
            server: &self.cfg.server,
            runtime_root: &runtime_root,
        })
        .map_err(|e| NodeError::internal("mounting the volume", e))?;
        drop(pass);
        // The volume server outlives this call (and this process): the
        // record, not the handle, is how unpublish finds it.
        handle.detach();
        prepare_root(&rec.target_path, &rec.params)?;
        rec.phase = Phase::Published;
        self.save(rec)
    }

    /// Undoes whatever a record says exists: unmount, shred, retire the
    /// grant, remove the target directory and the record. Idempotent; on
    /// error the record stays for the next try.
    fn teardown(&self, rec: &Record) -> Result<(), NodeError> {
        match volume::unmount(&rec.target_path) {
            Ok(()) | Err(volume::UnmountError::NotMounted(_)) => {}
            Err(e) => return Err(NodeError::internal("unmounting the volume", e)),
        }
        // A server whose mount went without us (target unmounted or
        // removed while the plugin was down) is found by its runtime root.
        release_runtime(&self.layout.runtime_root(&self.layout.dir(&rec.volume_id)))?;
        let image = self.layout.image(&rec.volume_id);
        if image.exists() {
            volume::shred(&image).map_err(|e| NodeError::internal("shredding the volume", e))?;
        }
        if let (Some(key), Some(grant)) = (&rec.key_arn, &rec.grant_id) {
            match self.kms.retire_grant(key, grant) {
                Ok(()) => {}
                // Retired by an earlier try whose record update was lost.
                Err(e) if e.code() == Some("NotFoundException") => {}
                Err(source) => {
                    return Err(NodeError::Kms {
                        source,
                        named_key: false,
                    });
                }
            }
        }
        remove_target_dir(&rec.target_path)?;
        self.layout
            .remove(&rec.volume_id)
            .map_err(|e| NodeError::internal("removing the volume record", e))
    }

    /// NodeUnpublishVolume: succeeds for a volume that is not (or no
    /// longer) published at `target`.
    pub fn unpublish(&self, volume_id: &str, target: &Path) -> Result<(), NodeError> {
        let _busy = self.claim(volume_id)?;
        match self.load(volume_id) {
            Some(r) if r.target_path == target => self.teardown(&r),
            _ => remove_target_dir(target),
        }
    }

    /// NodeGetVolumeStats: the volume's file system usage.
    pub fn stats(&self, volume_id: &str, path: &Path) -> Result<Usage, NodeError> {
        let not_found = || {
            NodeError::NotFound(format!(
                "volume {volume_id} is not published at {}",
                path.display()
            ))
        };
        let r = self.load(volume_id).ok_or_else(not_found)?;
        if r.target_path != path || r.phase != Phase::Published || !serving(path) {
            return Err(not_found());
        }
        let s = nix::sys::statvfs::statvfs(path)
            .map_err(|e| NodeError::internal("statfs of the volume", e))?;
        let frag = s.fragment_size();
        let (blocks, free, avail) = (s.blocks(), s.blocks_free(), s.blocks_available());
        Ok(Usage {
            bytes_total: blocks * frag,
            bytes_available: avail * frag,
            bytes_used: blocks.saturating_sub(free) * frag,
            inodes_total: s.files(),
            inodes_available: s.files_available(),
            inodes_used: s.files().saturating_sub(s.files_free()),
        })
    }

    /// Recovery at start: keeps volumes still mounted and served, undoes
    /// the rest (target gone, server dead, publish cut short), shreds
    /// images without a record.
    pub fn recover(&self) -> Recovery {
        let mut out = Recovery::default();
        let found = match self.layout.scan() {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("reading {}: {e}", self.layout.root().display());
                return out;
            }
        };
        for (dir, rec) in found {
            match rec {
                None => {
                    if let Err(e) = release_runtime(&self.layout.runtime_root(&dir)) {
                        tracing::warn!("stopping the server of stray {}: {e}", dir.display());
                        continue;
                    }
                    let image = dir.join(crate::record::IMAGE);
                    if image.exists()
                        && let Err(e) = volume::shred(&image)
                    {
                        tracing::warn!("shredding stray {}: {e}", image.display());
                        continue;
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                    out.strays += 1;
                }
                Some(r) if r.phase == Phase::Published && serving(&r.target_path) => {
                    tracing::info!(volume = %r.volume_id, target = %r.target_path.display(), "re-adopted a published volume");
                    out.adopted.push(r.volume_id);
                }
                Some(r) => match self.teardown(&r) {
                    Ok(()) => {
                        tracing::info!(volume = %r.volume_id, "shredded an orphaned volume");
                        out.shredded.push(r.volume_id);
                    }
                    Err(e) => {
                        tracing::warn!(volume = %r.volume_id, "cleaning up an orphaned volume: {e}");
                        out.failed.push(r.volume_id);
                    }
                },
            }
        }
        out
    }
}

/// File system usage of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in the file system.
    pub bytes_total: u64,
    /// Bytes an unprivileged writer can still use.
    pub bytes_available: u64,
    /// Bytes in use.
    pub bytes_used: u64,
    /// Inodes in the file system.
    pub inodes_total: u64,
    /// Inodes free.
    pub inodes_available: u64,
    /// Inodes in use.
    pub inodes_used: u64,
}

/// A grant name per volume: CreateGrant is idempotent by name, so a retry
/// after a lost answer does not make a second grant.
fn grant_name(volume_id: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(volume_id.as_bytes()));
    format!("ferry-csi-{}", &h[..32])
}

/// True if a ferry volume is mounted at `target` and its server is alive.
fn serving(target: &Path) -> bool {
    volume::server_pid(target).is_some_and(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    })
}

/// Stops the servers left under a volume's runtime root and removes it.
fn release_runtime(root: &Path) -> Result<(), NodeError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(NodeError::internal("reading the runtime directory", e)),
    };
    for e in entries.flatten() {
        volume::release(&e.path())
            .map_err(|e| NodeError::internal("stopping the volume server", e))?;
    }
    match std::fs::remove_dir(root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(NodeError::internal("removing the runtime directory", e))
        }
        _ => Ok(()),
    }
}

/// Group ownership for fsGroup / volume_mount_group (setgid, group
/// writable, as kubelet makes a volume it chowns itself), then read-only
/// if asked.
fn prepare_root(target: &Path, p: &Params) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(gid) = p.mount_group {
        std::os::unix::fs::chown(target, None, Some(gid))
            .map_err(|e| NodeError::internal("setting the volume's group", e))?;
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o2775))
            .map_err(|e| NodeError::internal("setting the volume's mode", e))?;
    }
    if p.read_only {
        use nix::mount::MsFlags;
        nix::mount::mount::<str, Path, str, str>(
            None,
            target,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(|e| NodeError::internal("remounting read-only", e))?;
    }
    Ok(())
}

/// Removes the target directory the plugin made (spec: the SP deletes what
/// it created), unless something is still mounted there.
fn remove_target_dir(target: &Path) -> Result<(), NodeError> {
    if volume::mountinfo::is_mount_point(target) {
        return Err(NodeError::Internal(format!(
            "{} is still a mount point",
            target.display()
        )));
    }
    match std::fs::remove_dir(target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(NodeError::internal("removing the target path", e))
        }
        _ => Ok(()),
    }
}

/// The pod a volume is for, for logs.
pub fn pod_label(p: &Pod) -> String {
    format!("{}/{}", p.namespace, p.name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(size: u64) -> Params {
        Params {
            size,
            kms_key_id: None,
            pod: Pod {
                namespace: "ns".into(),
                name: "p".into(),
                uid: "u".into(),
            },
            read_only: false,
            mount_group: None,
        }
    }

    fn req(target: &str, size: u64) -> Publish {
        Publish {
            volume_id: "v".into(),
            target_path: target.into(),
            params: params(size),
        }
    }

    fn rec(target: &str, size: u64, phase: Phase) -> Record {
        Record {
            volume_id: "v".into(),
            target_path: target.into(),
            params: params(size),
            phase,
            key_arn: None,
            grant_id: None,
        }
    }

    #[test]
    fn second_publish_follows_the_spec_table() {
        let r = rec("/t1", 1 << 30, Phase::Published);
        assert_eq!(
            decide(None, &req("/t1", 1 << 30), false).unwrap(),
            Decision::Create
        );
        assert_eq!(
            decide(Some(&r), &req("/t1", 1 << 30), true).unwrap(),
            Decision::Done
        );
        assert!(matches!(
            decide(Some(&r), &req("/t1", 2 << 30), true),
            Err(NodeError::AlreadyExists(_))
        ));
        assert!(matches!(
            decide(Some(&r), &req("/t2", 1 << 30), true),
            Err(NodeError::FailedPrecondition(_))
        ));
        // Recorded as published but its mount is gone: make it anew.
        assert_eq!(
            decide(Some(&r), &req("/t1", 1 << 30), false).unwrap(),
            Decision::Redo
        );
        let half = rec("/t1", 1 << 30, Phase::Publishing);
        assert_eq!(
            decide(Some(&half), &req("/t9", 5 << 30), false).unwrap(),
            Decision::Redo
        );
    }

    #[test]
    fn grant_names_are_valid_and_stable() {
        let a = grant_name("csi-abc");
        assert_eq!(a, grant_name("csi-abc"));
        assert_ne!(a, grant_name("csi-abd"));
        assert!(a.len() <= 256);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
}
