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
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferry_agent::TaskStorage;
use ferry_kms::platform::context;
use ferry_proto::TaskFailure;
use ferry_proto::plan::{StoragePlan, TaskPlan};
use ferry_volume::{KmsToken, Passphrase};

use crate::admission::{self, DiskSpace, StoragePolicy};
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

pub use ferry_proto::storage::VolumeFacts;

/// The segment cipher of every encrypted task volume. ferry_volume has no
/// reader of the header's segment parameters, but it needs none here:
/// docs/volume-format.md fixes them, and the volume server opens a volume
/// only through `ferry_volume::luks::open`, which refuses anything but
/// aes-xts-plain64 with a 512-bit key, so a mounted volume has exactly these.
const CIPHER: &str = "aes-xts-plain64";
/// The volume key's size in bits (AES-256-XTS: two 256-bit keys).
const KEY_BITS: u32 = ferry_volume::key::VOLUME_KEY_LEN as u32 * 8;

/// What is kept per attached task.
struct Attached {
    mount: Box<dyn Mounted>,
    image: PathBuf,
    grant: Option<Grant>,
    /// The volume's size (what admission promised the task).
    size: u64,
    /// Set before a detach stops the volume server on purpose, so its
    /// watcher does not take the exit for a failure.
    stopping: Arc<AtomicBool>,
}

/// Told `(task_arn, reason)` when a task's storage fails under it (its
/// volume server died); the runtime stops the task.
pub type StorageFailure = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How long an admission holds its space if the task never attaches a
/// volume (it failed before, or was never started).
const RESERVATION_TTL: Duration = Duration::from_secs(600);

/// A failed attach: why, and the grant to retire if one was made.
struct Failed(TaskFailure, Option<Grant>);

/// Task volumes under one directory.
pub struct TaskVolumes {
    keys: Arc<dyn VolumeKeys>,
    engine: Arc<dyn VolumeEngine>,
    tasks_dir: PathBuf,
    attached: Mutex<HashMap<String, Attached>>,
    /// `None` on a remote agent: EFS file systems live on the host that
    /// made them, which is never a remote agent (placement keeps tasks
    /// that mount one off remote agents; a plan that still names one is
    /// refused).
    efs: Option<Arc<EfsVolumes>>,
    /// Admission by free space; `None` admits everything.
    policy: Option<StoragePolicy>,
    /// Space admitted per task id (bytes, when), until the task ends.
    reserved: Mutex<HashMap<String, (u64, Instant)>>,
    on_failure: OnceLock<StorageFailure>,
}

impl TaskVolumes {
    /// Volumes under `tasks_dir`; EFS volumes of a task are bound in by
    /// `efs` once its volume is up (`None`: a task that mounts one is
    /// refused).
    pub fn new(
        keys: Arc<dyn VolumeKeys>,
        engine: Arc<dyn VolumeEngine>,
        tasks_dir: PathBuf,
        efs: Option<Arc<EfsVolumes>>,
    ) -> Self {
        Self {
            keys,
            engine,
            tasks_dir,
            attached: Mutex::new(HashMap::new()),
            efs,
            policy: None,
            reserved: Mutex::new(HashMap::new()),
            on_failure: OnceLock::new(),
        }
    }

    /// Admits tasks only while the data directory's disk can back them
    /// ([`crate::admission`]).
    pub fn with_admission(mut self, policy: StoragePolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Who is told when a task's storage fails under it (set once).
    pub fn on_storage_failure(&self, f: StorageFailure) {
        let _ = self.on_failure.set(f);
    }

    /// Whether the host's disk can back `plan`'s volume now; if so, its
    /// size is held for it until [`TaskVolumes::release`] or its detach.
    pub fn admit(&self, plan: &TaskPlan) -> Result<(), String> {
        let Some(policy) = self.policy else {
            return Ok(());
        };
        let request = u64::from(plan.ephemeral_storage_gib) * GIB;
        let free = nix::sys::statvfs::statvfs(&self.tasks_dir)
            .map(|st| st.blocks_available().saturating_mul(st.fragment_size()))
            .map_err(|e| {
                format!(
                    "cannot read the free space of {}: {e}",
                    self.tasks_dir.display()
                )
            })?;
        let attached = self
            .attached
            .lock()
            .map_err(|_| "volume table poisoned".to_string())?;
        let mut reserved = self
            .reserved
            .lock()
            .map_err(|_| "volume table poisoned".to_string())?;
        reserved.retain(|id, (_, at)| attached.contains_key(id) || at.elapsed() < RESERVATION_TTL);
        // What each task may still write: its size less what its image
        // already holds on the host.
        let mut outstanding: u64 = attached
            .values()
            .map(|a| {
                let used = std::fs::metadata(&a.image)
                    .map(|m| m.blocks() * 512)
                    .unwrap_or(0);
                a.size.saturating_sub(used)
            })
            .sum();
        outstanding += reserved
            .iter()
            .filter(|(id, _)| !attached.contains_key(*id))
            .map(|(_, (b, _))| *b)
            .sum::<u64>();
        admission::check(&policy, DiskSpace { free }, outstanding, request)?;
        reserved.insert(plan.task_id.clone(), (request, Instant::now()));
        Ok(())
    }

    /// Gives back what [`TaskVolumes::admit`] held for a task that ended.
    pub fn release(&self, task_id: &str) {
        if let Ok(mut r) = self.reserved.lock() {
            r.remove(task_id);
        }
    }

    /// Watches the volume server of `task_arn`'s volume: if it exits while
    /// the volume is in use, the task is told to stop.
    fn watch(&self, plan: &TaskPlan, pid: u32, stopping: Arc<AtomicBool>) {
        let Some(notify) = self.on_failure.get().cloned() else {
            return;
        };
        let arn = plan.task_arn.clone();
        let spawned = std::thread::Builder::new()
            .name("volume-watch".into())
            .spawn(move || {
                wait_exit(pid);
                if !stopping.load(Ordering::SeqCst) {
                    tracing::error!(task = %arn, pid, "the task's volume server exited");
                    notify(&arn, &storage_failure_reason(pid));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(task = %plan.task_arn, "cannot watch the volume server: {e}");
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
                        size,
                        stopping: Arc::new(AtomicBool::new(false)),
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
                    size,
                    stopping: Arc::new(AtomicBool::new(false)),
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
                if let Some(pid) = a.mount.server_pid() {
                    self.watch(plan, pid, a.stopping.clone());
                }
                if let Ok(mut m) = self.attached.lock() {
                    m.insert(plan.task_id.clone(), a);
                }
                // EFS volumes are bound under the task's volume, so they
                // come after it and go before it.
                if let Err(reason) = self.attach_efs(plan, &target) {
                    if let Err(e) = self.detach(plan, &target) {
                        tracing::warn!(task = %plan.task_id, "releasing the task's volume: {e}");
                    }
                    return Err(reason);
                }
                Ok(target)
            }
            Err(Failed(reason, grant)) => {
                self.release(&plan.task_id);
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
        if let Some(efs) = &self.efs
            && let Err(e) = efs.detach_task(plan)
        {
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
        self.release(&plan.task_id);
        a.stopping.store(true, Ordering::SeqCst);
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
            server_pid: ferry_volume::server_pid(&root),
        });
        let pid = mount.server_pid;
        let stopping = Arc::new(AtomicBool::new(false));
        // Admission counts an adopted task's volume as any other's.
        let size = u64::from(plan.ephemeral_storage_gib) * GIB;
        self.attached
            .lock()
            .map_err(|_| "volume table poisoned".to_string())?
            .insert(
                plan.task_id.clone(),
                Attached {
                    mount,
                    image,
                    grant,
                    size,
                    stopping: stopping.clone(),
                },
            );
        if let Some(efs) = &self.efs
            && let Err(e) = efs.adopt_task(plan, &root)
        {
            if let Ok(mut m) = self.attached.lock()
                && let Some(a) = m.remove(&plan.task_id)
            {
                a.mount.leave();
            }
            return Err(e);
        }
        match pid {
            Some(pid) => self.watch(plan, pid, stopping),
            None => tracing::warn!(
                task = %plan.task_arn,
                "the adopted volume's server pid is unknown: its death is not watched"
            ),
        }
        Ok(root)
    }

    /// Undoes [`TaskVolumes::adopt`] without unmounting anything.
    pub fn forget(&self, plan: &TaskPlan) {
        if let Some(efs) = &self.efs {
            efs.forget_task(&plan.task_id);
        }
        if let Ok(mut m) = self.attached.lock()
            && let Some(a) = m.remove(&plan.task_id)
        {
            a.mount.leave();
        }
    }

    /// What the host can say about the volume of `task_id` (the id, last
    /// part of the ARN), if this server holds it now. The table is locked
    /// only to copy the entry: the reads (statvfs, the LUKS2 header) run
    /// without it.
    pub fn describe(&self, task_id: &str) -> Option<VolumeFacts> {
        let (image, target, grant, size) = {
            let m = self.attached.lock().ok()?;
            let a = m.get(task_id)?;
            (
                a.image.clone(),
                a.mount.target().to_path_buf(),
                a.grant.clone(),
                a.size,
            )
        };
        let used_bytes = match nix::sys::statvfs::statvfs(&target) {
            Ok(st) => st
                .blocks()
                .saturating_sub(st.blocks_free())
                .saturating_mul(st.fragment_size()),
            Err(e) => {
                tracing::debug!(task = %task_id, "statvfs of the task's volume: {e}");
                0
            }
        };
        let encrypted = image.file_name() == Some(std::ffi::OsStr::new(ENCRYPTED_IMAGE));
        let token = if encrypted {
            match ferry_volume::read_token(&image) {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(task = %task_id, "reading the task volume's token: {e}");
                    None
                }
            }
        } else {
            None
        };
        Some(VolumeFacts {
            size_bytes: size,
            used_bytes,
            encrypted,
            cipher: encrypted.then(|| CIPHER.to_owned()),
            key_bits: encrypted.then_some(KEY_BITS),
            key_arn: grant.as_ref().map(|g| g.key_arn.clone()),
            grant_id: grant.map(|g| g.grant_id),
            token,
        })
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
        if let Some(efs) = &self.efs {
            efs.leave();
        }
    }

    /// Binds the task's EFS volumes under its root.
    fn attach_efs(&self, plan: &TaskPlan, root: &Path) -> Result<(), TaskFailure> {
        match &self.efs {
            Some(efs) => efs.attach_task(plan, root),
            None if plan
                .volumes
                .iter()
                .any(|v| matches!(v.kind, ferry_proto::plan::VolumeKind::Efs { .. })) =>
            {
                Err(TaskFailure::plain(
                    "this host has no EFS file systems: a task that mounts one runs on the host that made it",
                ))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

/// The `stoppedReason` of a task whose volume server died.
fn storage_failure_reason(pid: u32) -> String {
    format!(
        "Task ephemeral storage failed: the volume server (pid {pid}) serving the task's \
         encrypted volume exited unexpectedly; the task was stopped and its volume released"
    )
}

/// Returns once process `pid` has exited (a zombie counts). A pidfd works
/// whether or not this process is the server's parent (a restarted server
/// re-adopting volumes is not); without one, `/proc` is polled.
fn wait_exit(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd >= 0 {
        // SAFETY: the syscall returned a new descriptor that nothing else owns.
        let fd =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let mut p = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd, count 1; blocks until the process exits.
            let rc = unsafe { libc::poll(&mut p, 1, -1) };
            if rc > 0 {
                return;
            }
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
    }
    // No pidfd (ESRCH: already gone; ENOSYS: old kernel): poll /proc.
    loop {
        let gone = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(s) => s
                .rsplit_once(')')
                .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z')),
        };
        if gone {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
