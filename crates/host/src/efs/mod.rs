//! EFS-style persistent file systems: the `ferry_efs::Backend` over the
//! volume engine and the KMS, and the host mounts that give tasks their EFS
//! volumes. See docs/efs.md.
//!
//! A file system is a persistent volume in the ephemeral-volume format
//! (LUKS2, aes-xts-plain64, token 0 `ferry-kms`) at
//! `DATA/efs/FS_ID/volume.luks` (or a plain `volume.img` when created with
//! `Encrypted=false`), 100 GiB sparse. Its 64-byte data key is made once
//! with `GenerateDataKeyWithoutPlaintext` and kept only wrapped, in the
//! token; each time the file system is mounted the key is unwrapped again
//! (`CreateGrant` Decrypt-only, `Decrypt`, `RetireGrant`), so disabling the
//! key or scheduling its deletion stops new mounts, and every use is in the
//! KMS audit trail.
//!
//! While any task uses it, the file system is mounted once on the host at
//! `DATA/efs/FS_ID/mnt` (refcounted by task); each task gets a bind mount of
//! the access point's root directory (or `rootDirectory`) at
//! `TASK_ROOT/volumes/NAME`, which the agent binds into containers
//! (read-only where `mountPoints[].readOnly`). Access points with a
//! `PosixUser` get an idmapped bind ([`idmap`]).

mod idmap;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_efs::client_access::{self, Access, Client};
use ferry_efs::model::{AP_TABLE, AccessPoint, CreationInfo, FS_TABLE, FileSystem};
use ferry_efs::{Backend, CreatedVolume};
use ferry_kms::platform::{PLATFORM_KEY_ALIAS, WrappedKey, context};
use ferry_proto::plan::{TaskPlan, VolumeKind};
use ferry_proto::{AwsError, Caller, RequestContext, TaskFailure};
use ferry_store::Store;
use ferry_volume::mountinfo::is_mount_point;
use ferry_volume::{KmsToken, Passphrase};

use crate::engine::{Mounted, VolumeEngine};
use crate::keys::VolumeKeys;

/// Size of every file system's volume: EFS is elastic, the file is sparse
/// (only what is written costs disk), and the volume engine caps at 200 GiB.
pub const FS_SIZE: u64 = 100 << 30;

const ENCRYPTED_IMAGE: &str = "volume.luks";
const PLAIN_IMAGE: &str = "volume.img";
const MOUNT_DIR: &str = "mnt";

/// A file system mounted on the host, and the tasks using it.
struct HostMount {
    handle: Box<dyn Mounted>,
    users: HashSet<String>,
}

/// One EFS volume bound into a task.
struct TaskBind {
    fs_id: String,
    target: PathBuf,
}

#[derive(Default)]
struct State {
    mounted: HashMap<String, HostMount>,
    tasks: HashMap<String, Vec<TaskBind>>,
}

/// Who a task is when it mounts with IAM authorization: its task role's
/// session, with the role's policies (the file-system policy is evaluated
/// against it). Provided by the binary's wiring (control plane + IAM).
pub trait TaskClients: Send + Sync {
    /// The caller the task's role session is, if the task has a task role.
    fn task_role_caller(&self, task_arn: &str) -> Option<Caller>;
}

/// The file systems under `DATA/efs`.
pub struct EfsVolumes {
    /// Task role sessions for IAM-authorized mounts (set once the control
    /// plane exists).
    clients: std::sync::OnceLock<Arc<dyn TaskClients>>,
    keys: Arc<dyn VolumeKeys>,
    engine: Arc<dyn VolumeEngine>,
    store: Arc<Store>,
    root: PathBuf,
    /// `ferry server --require-encrypted-storage`: refuse `Encrypted=false`.
    require_encrypted: bool,
    /// Mounting, unmounting, shredding and the in-use check all hold this,
    /// so a file system is never mounted twice or shredded while in use.
    state: Mutex<State>,
}

impl EfsVolumes {
    /// File systems under `data_dir/efs`.
    pub fn new(
        keys: Arc<dyn VolumeKeys>,
        engine: Arc<dyn VolumeEngine>,
        store: Arc<Store>,
        data_dir: &Path,
        require_encrypted: bool,
    ) -> std::io::Result<Self> {
        let root = data_dir.join("efs");
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            clients: std::sync::OnceLock::new(),
            keys,
            engine,
            store,
            root,
            require_encrypted,
            state: Mutex::new(State::default()),
        })
    }

    /// Where IAM-authorized mounts find the task's role session.
    pub fn set_clients(&self, clients: Arc<dyn TaskClients>) {
        let _ = self.clients.set(clients);
    }

    /// What the task may do on `fs` under its file-system policy
    /// (docs/efs.md, "File-system policies").
    fn client_access(
        &self,
        plan: &TaskPlan,
        fs: &FileSystem,
        ap: Option<&AccessPoint>,
        iam: bool,
        transit: bool,
    ) -> Result<Access, String> {
        let policy = match &fs.policy {
            None => None,
            Some(text) => Some(ferry_policy::Policy::parse(text).map_err(|e| {
                format!(
                    "EFS file system {}: its file system policy is invalid: {}",
                    fs.id, e.0
                )
            })?),
        };
        let caller = if iam {
            let c = self
                .clients
                .get()
                .and_then(|c| c.task_role_caller(&plan.task_arn))
                .ok_or_else(|| {
                    format!(
                        "EFS file system {}: IAM authorization is enabled but the task has no task role to mount as",
                        fs.id
                    )
                })?;
            Some(c)
        } else {
            None
        };
        let client = match &caller {
            Some(c) => Client::Role(c),
            None => Client::Anonymous,
        };
        let req = client_access::Request {
            fs_arn: &fs.arn,
            access_point_arn: ap.map(|a| a.arn.as_str()),
            secure_transport: transit,
        };
        Ok(client_access::decide(policy.as_ref(), &client, &req))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fs_dir(&self, fs_id: &str) -> PathBuf {
        self.root.join(fs_id)
    }

    /// The passphrase in a data key the KMS unwrapped.
    fn passphrase(mut plain: zeroize::Zeroizing<Vec<u8>>) -> Result<Passphrase, String> {
        Passphrase::new(std::mem::take(&mut *plain)).map_err(|e| format!("data key: {e}"))
    }

    fn create_volume(
        &self,
        ctx: &RequestContext,
        fs_id: &str,
        dir: &Path,
        encrypted: bool,
        kms_key_id: Option<&str>,
    ) -> Result<CreatedVolume, AwsError> {
        let internal = |m: String| AwsError::server("InternalServerError", m);
        if !encrypted && self.require_encrypted {
            return Err(AwsError::client(
                "BadRequest",
                "this server requires encrypted storage (--require-encrypted-storage): Encrypted must be true",
            ));
        }
        if !encrypted {
            self.engine
                .format_plain(&dir.join(PLAIN_IMAGE), FS_SIZE)
                .map_err(|e| internal(format!("creating the volume: {e}")))?;
            return Ok(CreatedVolume { kms_key_arn: None });
        }
        // A customer key must be one the caller may see; the platform then
        // uses it as the service principal (its policy must allow that).
        let key = match kms_key_id {
            Some(k) => self.keys.key_arn_for(ctx, k)?,
            None => PLATFORM_KEY_ALIAS.to_owned(),
        };
        let ec = context::file_system(self.keys.account(), fs_id);
        // The KMS's own refusal (disabled key, denied) is the API's answer.
        let wrapped = self
            .keys
            .new_wrapped_key(&key, ec)
            .map_err(|e| match e.kms_error() {
                Some(kms) => kms.clone(),
                None => internal(e.to_string()),
            })?;
        let passphrase = self
            .keys
            .unwrap_volume_key(&wrapped)
            .map_err(|e| e.to_string())
            .and_then(Self::passphrase)
            .map_err(|m| AwsError::client("BadRequest", m))?;
        let token = KmsToken {
            key_arn: wrapped.key_arn,
            wrapped_data_key: wrapped.ciphertext_blob,
            encryption_context: wrapped.encryption_context,
        };
        self.engine
            .format(&dir.join(ENCRYPTED_IMAGE), FS_SIZE, &passphrase, &token)
            .map_err(|e| internal(format!("creating the encrypted volume: {e}")))?;
        Ok(CreatedVolume {
            kms_key_arn: Some(token.key_arn),
        })
    }

    /// Mounts `fs_id` on the host (unwrapping its key) if it is not yet.
    fn mount_fs<'a>(&self, st: &'a mut State, fs_id: &str) -> Result<&'a mut HostMount, String> {
        if !st.mounted.contains_key(fs_id) {
            let dir = self.fs_dir(fs_id);
            let target = dir.join(MOUNT_DIR);
            std::fs::create_dir_all(&target)
                .map_err(|e| format!("creating {}: {e}", target.display()))?;
            // A mount whose teardown failed earlier must not get a second
            // ext4 instance on the same volume next to it.
            if is_mount_point(&target) {
                return Err(format!(
                    "EFS file system {fs_id} is still mounted at {} from an earlier use that could not be unmounted",
                    target.display()
                ));
            }
            let enc = dir.join(ENCRYPTED_IMAGE);
            let (image, passphrase) = if enc.is_file() {
                (enc.clone(), Some(self.volume_passphrase(fs_id, &enc)?))
            } else if dir.join(PLAIN_IMAGE).is_file() {
                (dir.join(PLAIN_IMAGE), None)
            } else {
                return Err(format!(
                    "EFS file system {fs_id} has no volume on this host (it was deleted)"
                ));
            };
            let handle = self
                .engine
                .mount(&image, &target, passphrase.as_ref())
                .map_err(|e| format!("mounting EFS file system {fs_id}: {e}"))?;
            st.mounted.insert(
                fs_id.to_owned(),
                HostMount {
                    handle,
                    users: HashSet::new(),
                },
            );
        }
        st.mounted
            .get_mut(fs_id)
            .ok_or_else(|| "file system table changed".to_owned())
    }

    /// The passphrase of an encrypted file system, from its token via the KMS.
    fn volume_passphrase(&self, fs_id: &str, image: &Path) -> Result<Passphrase, String> {
        let token = self
            .engine
            .read_token(image)
            .map_err(|e| format!("reading the token of {fs_id}: {e}"))?;
        let key_arn = token.key_arn.clone();
        let wrapped = WrappedKey {
            key_arn: token.key_arn,
            ciphertext_blob: token.wrapped_data_key,
            encryption_context: token.encryption_context,
        };
        self.keys
            .unwrap_volume_key(&wrapped)
            .map_err(|e| e.to_string())
            .and_then(Self::passphrase)
            .map_err(|e| {
                format!(
                    "EFS file system {fs_id}: cannot unwrap its data key with KMS key {key_arn}: {e}"
                )
            })
    }

    /// Drops `task_id` from `fs_id`'s users; unmounts when it was the last.
    fn release(&self, st: &mut State, fs_id: &str, task_id: &str) -> Result<(), String> {
        let last = match st.mounted.get_mut(fs_id) {
            Some(m) => {
                m.users.remove(task_id);
                m.users.is_empty()
            }
            None => false,
        };
        if last && let Some(m) = st.mounted.remove(fs_id) {
            m.handle
                .unmount()
                .map_err(|e| format!("unmounting EFS file system {fs_id}: {e}"))?;
        }
        Ok(())
    }

    /// Mounts the task's EFS volumes at `task_root/volumes/NAME`. On error
    /// nothing of this task stays mounted; the error is the task's
    /// `stoppedReason`.
    pub fn attach_task(&self, plan: &TaskPlan, task_root: &Path) -> Result<(), TaskFailure> {
        let mut st = self.state();
        let mut binds = Vec::new();
        let mut result = Ok(());
        for v in &plan.volumes {
            let VolumeKind::Efs {
                file_system_id,
                root_directory,
                access_point_id,
                iam,
                transit_encryption,
            } = &v.kind
            else {
                continue;
            };
            let r = self.bind_one(
                &mut st,
                plan,
                task_root,
                &v.name,
                file_system_id,
                root_directory,
                access_point_id.as_deref(),
                (*iam, *transit_encryption),
            );
            match r {
                Ok(b) => binds.push(b),
                Err(e) => {
                    result = Err(TaskFailure::plain(format!("volume {}: {e}", v.name)));
                    break;
                }
            }
        }
        st.tasks.insert(plan.task_id.clone(), binds);
        if result.is_err() {
            let _ = self.unbind_task(&mut st, &plan.task_id);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_one(
        &self,
        st: &mut State,
        plan: &TaskPlan,
        task_root: &Path,
        name: &str,
        fs_id: &str,
        root_directory: &str,
        ap_id: Option<&str>,
        (iam, transit): (bool, bool),
    ) -> Result<TaskBind, String> {
        let fs: FileSystem = self
            .store
            .get(FS_TABLE, fs_id)
            .map_err(|e| format!("reading file system {fs_id}: {e}"))?
            .ok_or_else(|| format!("EFS file system {fs_id} does not exist"))?;
        let ap: Option<AccessPoint> = match ap_id {
            None => None,
            Some(id) => Some(
                self.store
                    .get(AP_TABLE, id)
                    .map_err(|e| format!("reading access point {id}: {e}"))?
                    .filter(|a: &AccessPoint| a.file_system_id == fs.id)
                    .ok_or_else(|| {
                        format!("EFS access point {id} does not exist on file system {fs_id}")
                    })?,
            ),
        };
        let access = self.client_access(plan, &fs, ap.as_ref(), iam, transit)?;
        if !access.mount {
            // The words of the EFS mount helper's failure on Fargate, and why.
            return Err(format!(
                "EFS file system {fs_id}: mount.nfs4: access denied by server while mounting: the file system policy does not allow {} for this task ({})",
                client_access::MOUNT,
                if iam {
                    "IAM authorization as its task role"
                } else {
                    "anonymous: IAM authorization is not enabled"
                },
            ));
        }
        let m = self.mount_fs(st, &fs.id)?;
        m.users.insert(plan.task_id.clone());
        let made = self.bind_dir(
            m.handle.target(),
            task_root,
            name,
            &fs,
            ap.as_ref(),
            root_directory,
            access,
        );
        if let Err(e) = made {
            let _ = self.release(st, &fs.id, &plan.task_id);
            return Err(e);
        }
        Ok(TaskBind {
            fs_id: fs.id.clone(),
            target: task_root.join("volumes").join(name),
        })
    }

    /// Resolves (and with CreationInfo creates) the directory to expose and
    /// binds it at `task_root/volumes/NAME` with what `access` allows.
    #[allow(clippy::too_many_arguments)]
    fn bind_dir(
        &self,
        mnt: &Path,
        task_root: &Path,
        name: &str,
        fs: &FileSystem,
        ap: Option<&AccessPoint>,
        root_directory: &str,
        access: Access,
    ) -> Result<(), String> {
        let (path, creation) = match ap {
            Some(a) => (a.root_path(), a.creation_info()),
            None => (root_directory, None),
        };
        let src = resolve_dir(mnt, path, creation).map_err(|e| match ap {
            Some(a) => format!("access point {} root directory {path}: {e}", a.id),
            None => format!("rootDirectory {path} on {}: {e}", fs.id),
        })?;
        let target = task_root.join("volumes").join(name);
        std::fs::create_dir_all(&target)
            .map_err(|e| format!("creating {}: {e}", target.display()))?;
        // An access point's POSIX user replaces the client's identity (as
        // on EFS); without one, a client denied ClientRootAccess has root
        // squashed to 65534, by the same idmapped bind.
        let squash = (!access.root).then_some((client_access::SQUASH_ID, client_access::SQUASH_ID));
        match ap.and_then(AccessPoint::posix_ids).or(squash) {
            Some((uid, gid)) => idmap::bind(&src, &target, uid, gid)?,
            None => nix::mount::mount(
                Some(&src),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind-mounting {}: {e}", src.display()))?,
        }
        if !access.write {
            use nix::mount::MsFlags;
            let ro = nix::mount::mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
            if let Err(e) = ro {
                let _ = unmount_bind(&target);
                return Err(format!(
                    "making {} read-only (no {}): {e}",
                    target.display(),
                    client_access::WRITE
                ));
            }
        }
        Ok(())
    }

    fn unbind_task(&self, st: &mut State, task_id: &str) -> Result<(), String> {
        let mut errors = Vec::new();
        for b in st.tasks.remove(task_id).unwrap_or_default() {
            if let Err(e) = unmount_bind(&b.target) {
                errors.push(e);
            }
            if let Err(e) = self.release(st, &b.fs_id, task_id) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Unbinds the task's EFS volumes; unmounts file systems no task uses.
    pub fn detach_task(&self, plan: &TaskPlan) -> Result<(), TaskFailure> {
        let mut st = self.state();
        self.unbind_task(&mut st, &plan.task_id)
            .map_err(TaskFailure::plain)
    }

    /// Unmounts every file system still mounted (server shutdown, after the
    /// tasks are drained). Returns what failed.
    pub fn shutdown(&self) -> Vec<String> {
        let mut st = self.state();
        let ids: Vec<String> = st.tasks.keys().cloned().collect();
        let mut errors = Vec::new();
        for t in ids {
            if let Err(e) = self.unbind_task(&mut st, &t) {
                errors.push(e);
            }
        }
        for (id, m) in st.mounted.drain() {
            if let Err(e) = m.handle.unmount() {
                errors.push(format!("unmounting EFS file system {id}: {e}"));
            }
        }
        errors
    }

    /// Takes back the EFS binds of a task a previous server started and
    /// left running (re-adoption): each volume's bind under `task_root`
    /// and its file system's host mount, which this server then unmounts
    /// (by path) once its last task is gone.
    pub fn adopt_task(&self, plan: &TaskPlan, task_root: &Path) -> Result<(), String> {
        let mut st = self.state();
        let mut binds = Vec::new();
        for v in &plan.volumes {
            let VolumeKind::Efs { file_system_id, .. } = &v.kind else {
                continue;
            };
            let target = task_root.join("volumes").join(&v.name);
            let mnt = self.fs_dir(file_system_id).join(MOUNT_DIR);
            if !is_mount_point(&target) || !is_mount_point(&mnt) {
                return Err(format!(
                    "EFS volume {} of the task is no longer mounted",
                    v.name
                ));
            }
            st.mounted
                .entry(file_system_id.clone())
                .or_insert_with(|| HostMount {
                    handle: Box::new(crate::engine::AdoptedMount {
                        server_pid: ferry_volume::server_pid(&mnt),
                        target: mnt,
                        engine: self.engine.clone(),
                    }),
                    users: HashSet::new(),
                })
                .users
                .insert(plan.task_id.clone());
            binds.push(TaskBind {
                fs_id: file_system_id.clone(),
                target,
            });
        }
        st.tasks.insert(plan.task_id.clone(), binds);
        Ok(())
    }

    /// Undoes [`EfsVolumes::adopt_task`] without unmounting anything (the
    /// task could not be re-adopted after all; recovery releases it).
    pub fn forget_task(&self, task_id: &str) {
        let mut st = self.state();
        for b in st.tasks.remove(task_id).unwrap_or_default() {
            let unused = st.mounted.get_mut(&b.fs_id).is_some_and(|m| {
                m.users.remove(task_id);
                m.users.is_empty()
            });
            if unused && let Some(m) = st.mounted.remove(&b.fs_id) {
                m.handle.leave();
            }
        }
    }

    /// Forgets every mount, leaving them in place (the server exits
    /// without stopping its tasks; the next one re-adopts them).
    pub fn leave(&self) {
        let mut st = self.state();
        st.tasks.clear();
        for (_, m) in st.mounted.drain() {
            m.handle.leave();
        }
    }

    /// Unmounts file systems a previous server left mounted (after a
    /// crash; call after the leftover task volumes are released), but for
    /// those a re-adopted task uses.
    pub fn recover(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return problems;
        };
        let in_use: HashSet<String> = self.state().mounted.keys().cloned().collect();
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| in_use.contains(n)) {
                continue;
            }
            let mnt = e.path().join(MOUNT_DIR);
            if is_mount_point(&mnt)
                && let Err(err) = self.engine.unmount(&mnt)
            {
                problems.push(format!("unmounting {}: {err}", mnt.display()));
            }
        }
        problems
    }
}

/// Walks `path` under `mnt` one component at a time, refusing symlinks (a
/// task could plant one to escape the file system), creating missing
/// components with `creation` (OwnerUid, OwnerGid, Permissions) if given.
fn resolve_dir(mnt: &Path, path: &str, creation: Option<CreationInfo>) -> Result<PathBuf, String> {
    let mut cur = mnt.to_path_buf();
    for c in Path::new(path).components() {
        let name = match c {
            Component::RootDir => continue,
            Component::Normal(n) => n,
            _ => return Err("invalid path".into()),
        };
        cur.push(name);
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_dir() => continue,
            Ok(_) => return Err(format!("{} is not a directory", cur.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.to_string()),
        }
        let Some(ci) = creation else {
            return Err("does not exist (and no CreationInfo to create it)".into());
        };
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            // Another task created it first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && cur.is_dir() => continue,
            Err(e) => return Err(format!("creating {}: {e}", cur.display())),
        }
        std::os::unix::fs::chown(&cur, Some(ci.owner_uid), Some(ci.owner_gid))
            .map_err(|e| format!("chown {}: {e}", cur.display()))?;
        std::fs::set_permissions(
            &cur,
            std::fs::Permissions::from_mode(ci.permissions & 0o7777),
        )
        .map_err(|e| format!("chmod {}: {e}", cur.display()))?;
    }
    Ok(cur)
}

fn unmount_bind(target: &Path) -> Result<(), String> {
    use nix::mount::{MntFlags, umount2};
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(nix::Error::EBUSY) => umount2(target, MntFlags::MNT_DETACH)
            .map_err(|e| format!("unmounting {}: {e}", target.display())),
        Err(e) => Err(format!("unmounting {}: {e}", target.display())),
    }
}

impl Backend for EfsVolumes {
    fn create(
        &self,
        ctx: &RequestContext,
        fs_id: &str,
        encrypted: bool,
        kms_key_id: Option<&str>,
    ) -> Result<CreatedVolume, AwsError> {
        let dir = self.fs_dir(fs_id);
        std::fs::create_dir_all(&dir).map_err(|e| {
            AwsError::server(
                "InternalServerError",
                format!("creating {}: {e}", dir.display()),
            )
        })?;
        let r = self.create_volume(ctx, fs_id, &dir, encrypted, kms_key_id);
        if r.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        r
    }

    fn in_use(&self, fs_id: &str) -> bool {
        self.state()
            .mounted
            .get(fs_id)
            .is_some_and(|m| !m.users.is_empty())
    }

    fn size(&self, fs_id: &str) -> u64 {
        let dir = self.fs_dir(fs_id);
        [ENCRYPTED_IMAGE, PLAIN_IMAGE]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    fn destroy(&self, fs_id: &str) -> Result<(), String> {
        let mut st = self.state();
        if st.mounted.get(fs_id).is_some_and(|m| !m.users.is_empty()) {
            return Err(format!("{fs_id} is in use by a running task"));
        }
        if let Some(m) = st.mounted.remove(fs_id) {
            m.handle.unmount().map_err(|e| e.to_string())?;
        }
        let dir = self.fs_dir(fs_id);
        let enc = dir.join(ENCRYPTED_IMAGE);
        if enc.exists() {
            self.engine.shred(&enc).map_err(|e| e.to_string())?;
        }
        let plain = dir.join(PLAIN_IMAGE);
        if plain.exists() {
            std::fs::remove_file(&plain).map_err(|e| e.to_string())?;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn resolve_dir_creates_with_creation_info_and_refuses_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let mnt = t.path();
        let ci = CreationInfo {
            owner_uid: 1234,
            owner_gid: 4321,
            permissions: 0o750,
        };
        let p = resolve_dir(mnt, "/a/b", Some(ci)).unwrap();
        assert_eq!(p, mnt.join("a/b"));
        for d in [mnt.join("a"), mnt.join("a/b")] {
            let md = std::fs::metadata(&d).unwrap();
            assert_eq!(
                (md.uid(), md.gid(), md.mode() & 0o7777),
                (1234, 4321, 0o750)
            );
        }
        // Existing directories are used as they are.
        assert_eq!(resolve_dir(mnt, "/a/b", None).unwrap(), mnt.join("a/b"));
        // Missing without CreationInfo.
        let e = resolve_dir(mnt, "/missing", None).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        // A symlink planted by a task must not lead out of the file system.
        std::os::unix::fs::symlink("/etc", mnt.join("evil")).unwrap();
        let e = resolve_dir(mnt, "/evil", Some(ci)).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        assert!(resolve_dir(mnt, "/a/../etc", Some(ci)).is_err());
    }
}
