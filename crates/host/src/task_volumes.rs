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
//! (header and keyslots wiped, file deleted), retire the grant (by the key
//! ARN kept from attach: no DescribeKey), remove the directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_agent::TaskStorage;
use ferry_kms::platform::context;
use ferry_proto::TaskFailure;
use ferry_proto::plan::{StoragePlan, TaskPlan};
use ferry_volume::{KmsToken, Passphrase};

use crate::efs::EfsVolumes;
use crate::engine::{Mounted, VolumeEngine};
use crate::keys::VolumeKeys;

const GIB: u64 = 1 << 30;

/// The encrypted volume's file in a task's directory.
pub const ENCRYPTED_IMAGE: &str = "volume.luks";
/// The plain volume's file in a task's directory.
pub const PLAIN_IMAGE: &str = "volume.img";
/// The mount point in a task's directory.
pub const ROOT: &str = "root";
/// The task's live grant, recorded beside its volume so that recovery
/// after a crash can retire it (ids and ARNs only: nothing secret).
pub const GRANT_FILE: &str = "grant.json";

/// The grant that let the platform unwrap a task's data key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The KMS key's ARN.
    pub key_arn: String,
    /// The grant's id.
    pub grant_id: String,
}

impl Grant {
    /// Records the grant in a task's directory.
    fn record(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(GRANT_FILE), json)
    }

    /// The grant recorded in a task's directory, if any.
    pub fn recorded(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(GRANT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// What is kept per attached task.
struct Attached {
    mount: Box<dyn Mounted>,
    image: PathBuf,
    grant: Option<Grant>,
}

/// A failed attach: why, and the grant to retire if one was made.
struct Failed(TaskFailure, Option<Grant>);

/// Task volumes under one directory.
pub struct TaskVolumes {
    keys: Arc<dyn VolumeKeys>,
    engine: Arc<dyn VolumeEngine>,
    tasks_dir: PathBuf,
    attached: Mutex<HashMap<String, Attached>>,
    efs: Arc<EfsVolumes>,
}

impl TaskVolumes {
    /// Volumes under `tasks_dir`; EFS volumes of a task are bound in by
    /// `efs` once its volume is up.
    pub fn new(
        keys: Arc<dyn VolumeKeys>,
        engine: Arc<dyn VolumeEngine>,
        tasks_dir: PathBuf,
        efs: Arc<EfsVolumes>,
    ) -> Self {
        Self {
            keys,
            engine,
            tasks_dir,
            attached: Mutex::new(HashMap::new()),
            efs,
        }
    }

    fn task_dir(&self, plan: &TaskPlan) -> PathBuf {
        self.tasks_dir.join(&plan.task_id)
    }

    /// Where the task's volume is mounted once attached (the agent's
    /// `task_root`).
    pub fn mount_point(&self, plan: &TaskPlan) -> PathBuf {
        self.task_dir(plan).join(ROOT)
    }

    /// Format, then mount; on failure, undo what was made.
    fn make(&self, plan: &TaskPlan, dir: &Path) -> Result<Attached, Failed> {
        let size = u64::from(plan.ephemeral_storage_gib) * GIB;
        let root = dir.join(ROOT);
        std::fs::create_dir_all(&root).map_err(|e| {
            Failed(
                TaskFailure::plain(format!("creating {}: {e}", root.display())),
                None,
            )
        })?;
        match &plan.storage {
            StoragePlan::Encrypted { kms_key_arn } => {
                let ec = context::task_volume(&plan.account, &plan.cluster_name, &plan.task_arn);
                let mut key = self
                    .keys
                    .issue(kms_key_arn, ec)
                    .map_err(|e| Failed(TaskFailure::plain(e.to_string()), None))?;
                let grant = Grant {
                    key_arn: key.wrapped.key_arn.clone(),
                    grant_id: std::mem::take(&mut key.grant_id),
                };
                if let Err(e) = grant.record(dir) {
                    return Err(Failed(
                        TaskFailure::plain(format!("recording the task's grant: {e}")),
                        Some(grant),
                    ));
                }
                // The plaintext moves into the passphrase: no copy is left.
                let passphrase = match Passphrase::new(std::mem::take(&mut *key.plaintext)) {
                    Ok(p) => p,
                    Err(e) => {
                        return Err(Failed(
                            TaskFailure::plain(format!("data key: {e}")),
                            Some(grant),
                        ));
                    }
                };
                let token = KmsToken {
                    key_arn: key.wrapped.key_arn,
                    wrapped_data_key: key.wrapped.ciphertext_blob,
                    encryption_context: key.wrapped.encryption_context,
                };
                let image = dir.join(ENCRYPTED_IMAGE);
                if let Err(e) = self.engine.format(&image, size, &passphrase, &token) {
                    return Err(Failed(
                        TaskFailure::plain(format!("creating the encrypted volume: {e}")),
                        Some(grant),
                    ));
                }
                match self.engine.mount(&image, &root, Some(&passphrase)) {
                    Ok(mount) => Ok(Attached {
                        mount,
                        image,
                        grant: Some(grant),
                    }),
                    Err(e) => {
                        let _ = self.engine.shred(&image);
                        Err(Failed(
                            TaskFailure::plain(format!("mounting the encrypted volume: {e}")),
                            Some(grant),
                        ))
                    }
                }
            }
            StoragePlan::Unencrypted => {
                let image = dir.join(PLAIN_IMAGE);
                self.engine.format_plain(&image, size).map_err(|e| {
                    Failed(
                        TaskFailure::plain(format!("creating the volume: {e}")),
                        None,
                    )
                })?;
                let mount = self.engine.mount(&image, &root, None).map_err(|e| {
                    let _ = std::fs::remove_file(&image);
                    Failed(
                        TaskFailure::plain(format!("mounting the volume: {e}")),
                        None,
                    )
                })?;
                Ok(Attached {
                    mount,
                    image,
                    grant: None,
                })
            }
        }
    }

    fn retire(&self, g: &Grant) -> Result<(), TaskFailure> {
        self.keys
            .retire(&g.key_arn, &g.grant_id)
            .map_err(|e| TaskFailure::plain(e.to_string()))
    }
}

impl TaskStorage for TaskVolumes {
    fn attach(&self, plan: &TaskPlan) -> Result<PathBuf, TaskFailure> {
        let dir = self.task_dir(plan);
        std::fs::create_dir_all(&dir)
            .map_err(|e| TaskFailure::plain(format!("creating {}: {e}", dir.display())))?;
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
                        tracing::warn!(task = %plan.task_id, "releasing the task's volume: {e}");
                    }
                    return Err(reason);
                }
                Ok(target)
            }
            Err(Failed(reason, grant)) => {
                if let Some(g) = grant {
                    let _ = self.retire(&g);
                }
                let _ = std::fs::remove_dir_all(&dir);
                Err(reason)
            }
        }
    }

    fn detach(&self, plan: &TaskPlan, _task_root: &Path) -> Result<(), TaskFailure> {
        let mut errors = Vec::new();
        if let Err(e) = self.efs.detach_task(plan) {
            errors.push(e.to_string());
        }
        let a = self
            .attached
            .lock()
            .map_err(|_| TaskFailure::plain("volume table poisoned"))?
            .remove(&plan.task_id)
            .ok_or_else(|| {
                TaskFailure::plain(format!("no volume attached for task {}", plan.task_id))
            })?;
        if let Err(e) = a.mount.unmount() {
            errors.push(format!("unmounting the volume: {e}"));
        }
        // Shred even if the unmount failed: the serving process holds the
        // only copy of the volume key, and wiping the header and keyslots
        // makes the data unrecoverable once it is gone.
        let destroyed = if a.grant.is_some() {
            self.engine.shred(&a.image).map_err(|e| e.to_string())
        } else {
            std::fs::remove_file(&a.image).map_err(|e| e.to_string())
        };
        if let Err(e) = destroyed {
            errors.push(format!("destroying the volume: {e}"));
        }
        if let Some(g) = &a.grant
            && let Err(e) = self.retire(g)
        {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            let _ = std::fs::remove_dir_all(self.task_dir(plan));
            Ok(())
        } else {
            Err(TaskFailure::plain(errors.join("; ")))
        }
    }
}

// Re-adoption after a server restart (see `crate::runtime`): kept apart
// from attach/detach above.
impl TaskVolumes {
    /// Takes back the volume of a task a previous server attached and left
    /// mounted: rebuilds its entry from disk (the mount at `root`, the
    /// image, `grant.json`) and its EFS binds, so that [`TaskStorage::detach`]
    /// releases it as any other (unmounted by path, crypto-shredded, grant
    /// retired). Returns the mount point. On error nothing is held and the
    /// volume is left for [`crate::recovery`].
    pub fn adopt(&self, plan: &TaskPlan) -> Result<PathBuf, String> {
        let dir = self.task_dir(plan);
        let root = dir.join(ROOT);
        if !ferry_volume::mountinfo::is_mount_point(&root) {
            return Err(format!(
                "the task's volume is not mounted at {}",
                root.display()
            ));
        }
        let (image, grant) = if dir.join(ENCRYPTED_IMAGE).is_file() {
            let grant = Grant::recorded(&dir)
                .ok_or_else(|| format!("no {GRANT_FILE} beside the task's volume"))?;
            (dir.join(ENCRYPTED_IMAGE), Some(grant))
        } else if dir.join(PLAIN_IMAGE).is_file() {
            (dir.join(PLAIN_IMAGE), None)
        } else {
            return Err("the task's volume file is gone".into());
        };
        let mount = Box::new(crate::engine::AdoptedMount {
            target: root.clone(),
            engine: self.engine.clone(),
        });
        self.attached
            .lock()
            .map_err(|_| "volume table poisoned".to_string())?
            .insert(
                plan.task_id.clone(),
                Attached {
                    mount,
                    image,
                    grant,
                },
            );
        if let Err(e) = self.efs.adopt_task(plan, &root) {
            if let Ok(mut m) = self.attached.lock()
                && let Some(a) = m.remove(&plan.task_id)
            {
                a.mount.leave();
            }
            return Err(e);
        }
        Ok(root)
    }

    /// Undoes [`TaskVolumes::adopt`] without unmounting anything.
    pub fn forget(&self, plan: &TaskPlan) {
        self.efs.forget_task(&plan.task_id);
        if let Ok(mut m) = self.attached.lock()
            && let Some(a) = m.remove(&plan.task_id)
        {
            a.mount.leave();
        }
    }

    /// Whether this server holds the volume of `task_id`.
    pub fn holds(&self, task_id: &str) -> bool {
        self.attached
            .lock()
            .map(|m| m.contains_key(task_id))
            .unwrap_or(false)
    }

    /// Leaves every volume mounted and served (the server exits without
    /// stopping its tasks; the next one re-adopts them).
    pub fn leave_mounted(&self) {
        if let Ok(mut m) = self.attached.lock() {
            for (_, a) in m.drain() {
                a.mount.leave();
            }
        }
        self.efs.leave();
    }
}

#[cfg(test)]
mod tests;
