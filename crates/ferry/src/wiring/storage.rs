//! Each task's ephemeral storage: the agent's `TaskStorage` over the volume
//! engine and the KMS.
//!
//! Platform version 1.4.0: a LUKS2 volume whose keyslot 0 is protected by a
//! fresh 64-byte KMS data key, with token 0 (`ferry-kms`) recording the key
//! ARN, the wrapped data key and the encryption context, so anyone with the
//! right KMS permission can open a live volume with standard tools.
//! Platform version 1.3.0: a plain ext4 image of the same size.
//!
//! Layout: `DATA/tasks/TASK_ID/{volume.luks | volume.img}` and the mount
//! point `DATA/tasks/TASK_ID/root`. At detach: unmount, crypto-shred
//! (header and keyslots wiped, file deleted), retire the grant, remove the
//! directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::efs::EfsVolumes;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_agent::TaskStorage;
use ferry_proto::plan::{KeyProvider, StoragePlan, TaskPlan};
use ferry_volume::{FormatOptions, MountHandle, MountOptions, Passphrase, ServerCommand};
use serde_json::json;

const GIB: u64 = 1 << 30;

/// What is kept per attached task.
struct Attached {
    mount: MountHandle,
    image: PathBuf,
    encrypted: bool,
    grant_id: Option<String>,
}

/// Task volumes under one directory.
pub struct VolumeStorage {
    keys: Arc<dyn KeyProvider>,
    tasks_dir: PathBuf,
    server: ServerCommand,
    runtime_root: PathBuf,
    attached: Mutex<HashMap<String, Attached>>,
    efs: Arc<EfsVolumes>,
}

impl VolumeStorage {
    /// Volumes under `tasks_dir`, served by `exe volume serve`.
    /// EFS volumes of a task are bound in by `efs` once its volume is up.
    pub fn new(
        keys: Arc<dyn KeyProvider>,
        tasks_dir: PathBuf,
        exe: PathBuf,
        efs: Arc<EfsVolumes>,
    ) -> Self {
        Self {
            efs,
            keys,
            tasks_dir,
            server: ServerCommand::ferry(exe),
            runtime_root: PathBuf::from(ferry_volume::RUNTIME_ROOT),
            attached: Mutex::new(HashMap::new()),
        }
    }

    fn task_dir(&self, plan: &TaskPlan) -> PathBuf {
        self.tasks_dir.join(&plan.task_id)
    }

    /// Format, then mount; on failure, undo what was made. Returns the
    /// grant id (if any) so the caller can release it on failure.
    fn make(&self, plan: &TaskPlan, dir: &Path) -> Result<Attached, (String, Option<String>)> {
        let size = u64::from(plan.ephemeral_storage_gib) * GIB;
        let root = dir.join("root");
        std::fs::create_dir_all(&root)
            .map_err(|e| (format!("creating {}: {e}", root.display()), None))?;
        match &plan.storage {
            StoragePlan::Encrypted { kms_key_arn } => {
                let key = self
                    .keys
                    .volume_key(plan, kms_key_arn)
                    .map_err(|e| (e, None))?;
                let grant = key.grant_id.clone();
                let fail = |m: String| (m, grant.clone());
                let passphrase = Passphrase::new(key.passphrase.to_vec())
                    .map_err(|e| fail(format!("data key: {e}")))?;
                // docs/volume-format.md, "Token 0".
                let token = json!({
                    "keyArn": key.key_arn,
                    "wrappedDataKey": B64.encode(&key.wrapped),
                    "encryptionContext": key.encryption_context.iter().cloned().collect::<std::collections::BTreeMap<String, String>>(),
                });
                let image = dir.join("volume.luks");
                ferry_volume::format(
                    &image,
                    &FormatOptions {
                        size,
                        passphrase: &passphrase,
                        token: Some(&token),
                    },
                )
                .map_err(|e| fail(format!("creating the encrypted volume: {e}")))?;
                let mount = ferry_volume::mount(&MountOptions {
                    image: &image,
                    target: &root,
                    passphrase: Some(&passphrase),
                    server: &self.server,
                    runtime_root: &self.runtime_root,
                })
                .map_err(|e| {
                    let _ = ferry_volume::shred(&image);
                    fail(format!("mounting the encrypted volume: {e}"))
                })?;
                Ok(Attached {
                    mount,
                    image,
                    encrypted: true,
                    grant_id: grant,
                })
            }
            StoragePlan::Unencrypted => {
                let image = dir.join("volume.img");
                ferry_volume::format_plain(&image, size)
                    .map_err(|e| (format!("creating the volume: {e}"), None))?;
                let mount = ferry_volume::mount(&MountOptions {
                    image: &image,
                    target: &root,
                    passphrase: None,
                    server: &self.server,
                    runtime_root: &self.runtime_root,
                })
                .map_err(|e| {
                    let _ = std::fs::remove_file(&image);
                    (format!("mounting the volume: {e}"), None)
                })?;
                Ok(Attached {
                    mount,
                    image,
                    encrypted: false,
                    grant_id: None,
                })
            }
        }
    }
}

impl TaskStorage for VolumeStorage {
    fn attach(&self, plan: &TaskPlan) -> Result<PathBuf, String> {
        let dir = self.task_dir(plan);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        match self.make(plan, &dir) {
            Ok(a) => {
                let target = a.mount.target().to_path_buf();
                if let Ok(mut m) = self.attached.lock() {
                    m.insert(plan.task_id.clone(), a);
                }
                // EFS volumes are bound under the task's volume, so they
                // come after it and go before it.
                if let Err(reason) = self.efs.attach_task(plan, &target) {
                    if let Err(e) = self.detach(plan, &target) {
                        eprintln!("ferry: releasing task {}: {e}", plan.task_id);
                    }
                    return Err(reason);
                }
                Ok(target)
            }
            Err((reason, grant)) => {
                if let Some(g) = grant {
                    let _ = self.keys.release(plan, &g);
                }
                let _ = std::fs::remove_dir_all(&dir);
                Err(reason)
            }
        }
    }

    fn detach(&self, plan: &TaskPlan, _task_root: &Path) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Err(e) = self.efs.detach_task(plan) {
            errors.push(e);
        }
        let a = self
            .attached
            .lock()
            .map_err(|_| "volume table poisoned".to_owned())?
            .remove(&plan.task_id)
            .ok_or_else(|| format!("no volume attached for task {}", plan.task_id))?;
        if let Err(e) = a.mount.unmount() {
            errors.push(format!("unmounting the volume: {e}"));
        }
        // Shred even if the unmount failed: the serving process holds the
        // only copy of the volume key, and wiping the header and keyslots
        // makes the data unrecoverable once it is gone.
        let shredded = if a.encrypted {
            ferry_volume::shred(&a.image).map_err(|e| e.to_string())
        } else {
            std::fs::remove_file(&a.image).map_err(|e| e.to_string())
        };
        if let Err(e) = shredded {
            errors.push(format!("destroying the volume: {e}"));
        }
        if let Some(g) = &a.grant_id
            && let Err(e) = self.keys.release(plan, g)
        {
            errors.push(e);
        }
        if errors.is_empty() {
            let _ = std::fs::remove_dir_all(self.task_dir(plan));
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
