//! User namespaces: a task's container root runs as an unprivileged host
//! uid (docs/runtime.md, "User namespaces").
//!
//! Each task gets its own range of [`RANGE_SIZE`] host uids and gids
//! ([`IdRange`]): container id `n` is host id `base + n`. Ranges are
//! allocated from the per-task records (`STATE/tasks/<id>.json`, field
//! `userns_base`), so a restarted server does not hand out a range a live
//! (or not yet cleaned up) task still holds, and never one that
//! `/etc/subuid` or `/etc/subgid` gives to a host user.
//!
//! Ownership is shifted when the image is unpacked onto the task's own
//! volume (Docker's userns-remap; see `image::unpack`), not by idmapped
//! mounts: runc 1.1 cannot express them, and the rootfs is per task
//! anyway.
//!
//! The task's containers share one user namespace, made by the agent with
//! the task's network namespace inside it ([`create_namespaces`]).
//!
//! runc's init runs as the container's root (host uid `base`) when it
//! mounts the rootfs and the binds, so it must be able to walk to them;
//! the data directory is 0700. [`TaskView`] binds the task's volume at
//! `/run/ferry-userns/TASK_ID/task`, under a directory only `base` (and
//! host root) may enter, and the bundle names paths through it.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use nix::mount::{MsFlags, mount};

use crate::mounts;
use crate::recovery::TaskRecord;

/// The first host id handed to a task (below it: the host's own users).
pub const FIRST_HOST_ID: u32 = 100_000;
/// Ids per task: container ids 0..65535 (uid 65534 is `nobody`).
pub const RANGE_SIZE: u32 = 65_536;
/// Where task volumes are bound for runc to reach (see [`TaskView`]).
pub const VIEW_ROOT: &str = "/run/ferry-userns";

/// Whether tasks run in user namespaces (`ferry server --userns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsernsMode {
    /// On if the kernel allows it ([`probe`] at agent start), else off.
    #[default]
    Auto,
    /// On; the agent refuses to start if the kernel does not allow it.
    On,
    /// Off: container root is host root (with the capability set and
    /// seccomp filter of docs/runtime.md).
    Off,
}

impl FromStr for UsernsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err(format!("{s:?} is not one of auto, on, off")),
        }
    }
}

impl std::fmt::Display for UsernsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// Why a task cannot get (or use) its user namespace.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// A file or mount operation failed.
    #[error("{what}: {err}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        err: io::Error,
    },
    /// Every range is held by a task.
    #[error("no free user namespace id range: every one is held by a task")]
    Exhausted,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> UsernsError {
    let what = what.into();
    move |err| UsernsError::Io { what, err }
}

/// A task's host ids: container id `n` is host id `base + n`, for
/// `n < RANGE_SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    base: u32,
}

impl IdRange {
    /// The range of slot `slot`, if it fits below the invalid id
    /// `u32::MAX` (`(uid_t)-1`).
    pub fn slot(slot: u32) -> Option<Self> {
        let base = u64::from(FIRST_HOST_ID) + u64::from(slot) * u64::from(RANGE_SIZE);
        if base + u64::from(RANGE_SIZE) > u64::from(u32::MAX) {
            return None;
        }
        Some(Self {
            base: u32::try_from(base).ok()?,
        })
    }

    /// The range starting at `base` (a recorded one), if `base` is a slot's.
    pub fn from_base(base: u32) -> Option<Self> {
        let off = base.checked_sub(FIRST_HOST_ID)?;
        if off % RANGE_SIZE != 0 {
            return None;
        }
        Self::slot(off / RANGE_SIZE)
    }

    /// The host id of container root.
    pub fn base(&self) -> u32 {
        self.base
    }

    /// The host id of container id `id`, `None` outside the range.
    pub fn host(&self, id: u64) -> Option<u32> {
        let id = u32::try_from(id).ok().filter(|i| *i < RANGE_SIZE)?;
        Some(self.base + id)
    }

    /// Whether the range meets host ids `start .. start + len`.
    fn overlaps(&self, start: u64, len: u64) -> bool {
        let (b, e) = (
            u64::from(self.base),
            u64::from(self.base) + u64::from(RANGE_SIZE),
        );
        start < e && b < start.saturating_add(len)
    }

    /// The `/proc/PID/uid_map` line runc writes: `0 BASE 65536`.
    pub fn map_line(&self) -> String {
        format!("0 {} {RANGE_SIZE}", self.base)
    }
}

/// Whether this kernel (and host) lets the agent run tasks in user
/// namespaces: user namespaces enabled (`user.max_user_namespaces` > 0),
/// one can be made and given an id map (util-linux `unshare`), and the
/// bind directory can be created. `Err` says why not.
pub fn probe() -> Result<(), String> {
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .map_err(|e| format!("reading /proc/sys/user/max_user_namespaces: {e}"))?;
    if max.trim().parse::<u64>().unwrap_or(0) == 0 {
        return Err("user namespaces are disabled (user.max_user_namespaces = 0)".into());
    }
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "true"])
        .output()
        .map_err(|e| format!("running unshare (util-linux): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "unshare --user --map-root-user failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    view_root().map_err(|e| e.to_string())?;
    Ok(())
}

/// Ranges are handed out one at a time per process: the records are read
/// and the new one written under this lock.
static ALLOCATE: Mutex<()> = Mutex::new(());

/// Gives the task of `record` the lowest free range, records it
/// (`userns_base`) and saves the record in `state_dir`. Held ranges are
/// those of every other record in `state_dir` (live tasks and tasks not
/// yet cleaned up after a crash) and those `/etc/subuid` and `/etc/subgid`
/// give to host users.
pub fn allocate(state_dir: &Path, record: &mut TaskRecord) -> Result<IdRange, UsernsError> {
    // A poisoned lock only means another allocation panicked; the records
    // on disk are still the truth.
    let _guard = ALLOCATE.lock().unwrap_or_else(|p| p.into_inner());
    let held: HashSet<u32> = TaskRecord::list(state_dir)
        .into_iter()
        .filter(|id| *id != record.task_id)
        .filter_map(|id| TaskRecord::load(state_dir, &id).ok())
        .filter_map(|r| r.userns_base)
        .collect();
    let reserved: Vec<(u64, u64)> = ["/etc/subuid", "/etc/subgid"]
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| subordinate_ranges(&text))
        .collect();
    let range = pick(&held, &reserved).ok_or(UsernsError::Exhausted)?;
    record.userns_base = Some(range.base);
    record
        .save(state_dir)
        .map_err(io_err("writing the task record"))?;
    Ok(range)
}

/// The lowest slot's range neither `held` (bases) nor meeting `reserved`
/// (start, count).
fn pick(held: &HashSet<u32>, reserved: &[(u64, u64)]) -> Option<IdRange> {
    (0..)
        .map_while(IdRange::slot)
        .find(|r| !held.contains(&r.base) && !reserved.iter().any(|(s, n)| r.overlaps(*s, *n)))
}

/// `(start, count)` of each `name:start:count` line of /etc/subuid or
/// /etc/subgid.
fn subordinate_ranges(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (_, s, n) = (f.next()?, f.next()?, f.next()?);
            Some((s.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

/// Makes `path` (not following a symlink) owned by container `uid:gid`
/// of `range`: what the agent creates for the container (its writable
/// layer's root, /etc/hosts, task volumes) must belong to the container's
/// root, not to host root (which is unmapped: `nobody` inside).
pub fn give(range: IdRange, path: &Path, uid: u32, gid: u32) -> Result<(), UsernsError> {
    let (u, g) = (range.host(uid.into()), range.host(gid.into()));
    std::os::unix::fs::lchown(path, u, g).map_err(io_err(format!("chown {}", path.display())))
}

/// Makes the task's user namespace (ids mapped to `range`) and its
/// network namespace inside it, and pins them: the user namespace at
/// `VIEW_ROOT/TASK_ID/user` (runc joins it by path), the network namespace
/// at `/run/netns/NETNS` (as `ip netns add` would; CNI configures it and
/// `ip netns delete` removes it).
///
/// The network namespace must belong to the task's user namespace: sysfs
/// can only be mounted, ports below 1024 bound and `runc exec` (health
/// checks) can only enter the network namespace from a user namespace that
/// owns it (runc 1.1 enters the user namespace first). Host root still
/// configures it from outside (the initial namespace owns every other).
///
/// A helper (`unshare --user --net cat`, util-linux) makes both; the agent
/// writes its id maps, binds the two namespaces, and ends it.
pub fn create_namespaces(task_id: &str, range: IdRange, netns: &str) -> Result<(), UsernsError> {
    let dir = view_dir(task_id, range)?;
    let mut helper = std::process::Command::new("unshare")
        .args(["--user", "--net", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(io_err("running unshare (util-linux)"))?;
    let made = pin_namespaces(helper.id(), &dir, range, netns);
    // End of input ends `cat`; kill it too in case it never got there.
    drop(helper.stdin.take());
    if made.is_err() {
        let _ = helper.kill();
    }
    let status = helper.wait();
    if let Err(e) = made {
        let _ = unpin(&dir.join("user"));
        let _ = unpin(&Path::new("/run/netns").join(netns));
        return Err(e);
    }
    match status {
        Ok(s) if s.success() => Ok(()),
        other => {
            let why = match other {
                Ok(s) => format!("exited with {s}"),
                Err(e) => e.to_string(),
            };
            Err(UsernsError::Io {
                what: "the namespace helper (unshare)".into(),
                err: io::Error::other(why),
            })
        }
    }
}

fn pin_namespaces(pid: u32, dir: &Path, range: IdRange, netns: &str) -> Result<(), UsernsError> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let own = fs::read_link("/proc/self/ns/user").map_err(io_err("reading /proc/self/ns/user"))?;
    // The helper has unshared once its user namespace is not ours (both
    // namespaces come from one unshare(2)).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match fs::read_link(proc.join("ns/user")) {
            Ok(ns) if ns != own => break,
            Ok(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(_) => {
                return Err(UsernsError::Io {
                    what: "waiting for the namespace helper".into(),
                    err: io::Error::from(io::ErrorKind::TimedOut),
                });
            }
            Err(e) => return Err(io_err("the namespace helper ended early")(e)),
        }
    }
    for f in ["uid_map", "gid_map"] {
        fs::write(proc.join(f), range.map_line())
            .map_err(io_err(format!("writing the task's {f}")))?;
    }
    pin(&proc.join("ns/user"), &dir.join("user"))?;
    let netns_dir = Path::new("/run/netns");
    fs::create_dir_all(netns_dir).map_err(io_err("creating /run/netns"))?;
    pin(&proc.join("ns/net"), &netns_dir.join(netns))
}

/// Binds a namespace file at `at` (an empty file made for it).
fn pin(ns: &Path, at: &Path) -> Result<(), UsernsError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(at)
        .map_err(io_err(format!("creating {}", at.display())))?;
    mount(Some(ns), at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| io_err(format!("binding {}", at.display()))(e.into()))
}

/// Undoes [`pin`] (missing is fine).
fn unpin(at: &Path) -> Result<(), String> {
    mounts::unmount(at).map_err(|e| e.to_string())?;
    match fs::remove_file(at) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", at.display()))
        }
        _ => Ok(()),
    }
}

/// `VIEW_ROOT/TASK_ID`: 0700, owned by the task's root.
fn view_dir(task_id: &str, range: IdRange) -> Result<PathBuf, UsernsError> {
    let dir = view_root()?.join(task_id);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(io_err(format!("creating {}", dir.display())))?;
    give(range, &dir, 0, 0)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("restricting {}", dir.display())))?;
    Ok(dir)
}

/// Lets runc's init (the container's root) reach the task's cgroup
/// directories: with cgroup v1 it binds each container's directory of
/// every hierarchy into the container, from inside the namespace. A server
/// with umask 077 makes them 0700 (runc too, inheriting it), so each
/// container's directory (`ROOT/HIERARCHY/PARENT/TASK_ID/NAME`) is made
/// here 0755 (the container reads its limits there, as under Docker) and
/// the two above it get the search bit for others. runc and the cgroup
/// cleanup take existing directories as they are.
pub fn open_cgroups(parent: &str, task_id: &str, containers: &[&str]) -> Result<(), UsernsError> {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").map_err(io_err("reading mountinfo"))?;
    let hierarchies = mountinfo.lines().filter_map(|l| {
        // `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTS ... - FSTYPE SOURCE ...`
        let (pre, post) = l.split_once(" - ")?;
        let fstype = post.split_whitespace().next()?;
        let point = pre.split_whitespace().nth(4)?;
        (matches!(fstype, "cgroup" | "cgroup2") && point.starts_with("/sys/fs/cgroup"))
            .then(|| PathBuf::from(point))
    });
    for h in hierarchies {
        let (p, t) = (h.join(parent), h.join(parent).join(task_id));
        for name in containers {
            let d = t.join(name);
            fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
                .map_err(io_err(format!("chmod {}", d.display())))?;
        }
        for d in [p, t] {
            let mode = fs::metadata(&d)
                .map_err(io_err(format!("reading {}", d.display())))?
                .permissions()
                .mode();
            fs::set_permissions(&d, fs::Permissions::from_mode((mode | 0o011) & 0o7777))
                .map_err(io_err(format!("chmod {}", d.display())))?;
        }
    }
    Ok(())
}

/// `VIEW_ROOT`, created 0711 (enter, not list) if missing.
fn view_root() -> Result<PathBuf, UsernsError> {
    let root = PathBuf::from(VIEW_ROOT);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&root)
        .map_err(io_err(format!("creating {VIEW_ROOT}")))?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o711))
        .map_err(io_err(format!("restricting {VIEW_ROOT}")))?;
    Ok(root)
}

/// A task's volume as runc (running as the container's root) reaches it:
/// `VIEW_ROOT/TASK_ID/task`, a recursive bind of the task's root, inside
/// `VIEW_ROOT/TASK_ID` (0700, owned by the task's root: no other host user
/// gets in, and the data directory can stay 0700).
#[derive(Debug, Clone)]
pub struct TaskView {
    dir: PathBuf,
    task_root: PathBuf,
}

impl TaskView {
    /// The view of `task_id`'s volume mounted at `task_root`.
    pub fn new(task_id: &str, task_root: &Path) -> Self {
        Self {
            dir: Path::new(VIEW_ROOT).join(task_id),
            task_root: task_root.to_path_buf(),
        }
    }

    /// Where the task's root is seen.
    pub fn root(&self) -> PathBuf {
        self.dir.join("task")
    }

    /// The task's user namespace (pinned by [`create_namespaces`]).
    pub fn userns(&self) -> PathBuf {
        self.dir.join("user")
    }

    /// `path` (under the task's root) as seen through the view; other
    /// paths are returned unchanged.
    pub fn path(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.task_root) {
            Ok(rel) => self.root().join(rel),
            Err(_) => path.to_path_buf(),
        }
    }

    /// Binds the task's root (with every mount under it: the containers'
    /// overlays) at [`TaskView::root`]. Call after the overlays are
    /// mounted, before the first container is created.
    pub fn mount(&self, range: IdRange) -> Result<(), UsernsError> {
        let target = self.root();
        let task_id = self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        view_dir(task_id, range)?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&target)
            .map_err(io_err(format!("creating {}", target.display())))?;
        // runc's init walks, as the container's root (an "other" user of
        // the task's own directories), to every rootfs and bind source:
        // those directories need the search bit for others (the view's
        // 0700 directory keeps every other host user out).
        let mut walk = vec![
            self.task_root.clone(),
            self.task_root.join("etc"),
            self.task_root.join("volumes"),
            self.task_root.join("containers"),
        ];
        if let Ok(rd) = fs::read_dir(self.task_root.join("containers")) {
            walk.extend(rd.flatten().map(|e| e.path()));
        }
        for d in walk.iter().filter(|d| d.is_dir()) {
            let meta = fs::metadata(d).map_err(io_err(format!("reading {}", d.display())))?;
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                fs::set_permissions(d, fs::Permissions::from_mode((mode | 0o001) & 0o7777))
                    .map_err(io_err(format!("chmod {}", d.display())))?;
            }
        }
        let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
        mount(
            Some(&self.task_root),
            &target,
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| io_err(format!("binding the task at {}", target.display()))(e.into()))?;
        // Private: nothing mounted under either copy appears in the other.
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| io_err(format!("making {} private", target.display()))(e.into()))
    }

    /// Removes `task_id`'s view: detaches the bind (with everything under
    /// it) and removes its directories. Idempotent (nothing there is fine),
    /// so crash recovery calls it for every task. It holds the task's
    /// volume busy, so it must go before the volume is detached.
    pub fn release(task_id: &str) -> Result<(), String> {
        let view = Self::new(task_id, Path::new("/"));
        if !view.dir.exists() {
            return Ok(());
        }
        let root = view.root();
        mounts::unmount(&root).map_err(|e| e.to_string())?;
        unpin(&view.userns())?;
        for d in [&root, &view.dir] {
            match fs::remove_dir(d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(format!("removing {}: {e}", d.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, base: Option<u32>) -> TaskRecord {
        TaskRecord {
            task_id: id.into(),
            task_root: PathBuf::new(),
            containers: vec![],
            netns: None,
            ip: None,
            cni_result: None,
            network_driver: None,
            userns_base: base,
            started: false,
            stop_signals: Default::default(),
        }
    }

    #[test]
    fn ranges_are_disjoint_slots_of_65536_from_100000() {
        let r0 = IdRange::slot(0).unwrap();
        let r1 = IdRange::slot(1).unwrap();
        assert_eq!((r0.base(), r1.base()), (100_000, 165_536));
        assert_eq!(r0.host(0), Some(100_000));
        assert_eq!(r0.host(1000), Some(101_000));
        assert_eq!(r0.host(65_535), Some(165_535));
        assert_eq!(r0.host(65_536), None);
        assert_eq!(r0.host(u64::from(u32::MAX) + 1), None);
        assert_eq!(r0.map_line(), "0 100000 65536");
        // The last slot ends below (uid_t)-1; the next does not exist.
        let last = (0..).map_while(IdRange::slot).last().unwrap();
        assert!(u64::from(last.base()) + u64::from(RANGE_SIZE) <= u64::from(u32::MAX));
        assert_eq!(
            IdRange::slot((last.base() - FIRST_HOST_ID) / RANGE_SIZE + 1),
            None
        );
        assert_eq!(IdRange::from_base(165_536), Some(r1));
        assert_eq!(IdRange::from_base(165_537), None);
        assert_eq!(IdRange::from_base(99_999), None);
    }

    #[test]
    fn pick_skips_held_and_subordinate_ranges() {
        let held: HashSet<u32> = [100_000].into();
        assert_eq!(pick(&held, &[]).unwrap().base(), 165_536);
        // A host user's subuid range 200000..265536 meets slots 1 and 2,
        // each partly: both are skipped.
        let sub = subordinate_ranges("alice:200000:65536\n# comment\nbad line\n");
        assert_eq!(sub, vec![(200_000, 65_536)]);
        assert_eq!(pick(&held, &sub).unwrap().base(), 296_608);
        assert_eq!(
            pick(&HashSet::new(), &[(0, 100_001)]).unwrap().base(),
            165_536
        );
    }

    #[test]
    fn allocation_uses_the_records_so_a_restart_does_not_reuse_a_live_range() {
        let state = tempfile::tempdir().unwrap();
        let mut a = record("a", None);
        let mut b = record("b", None);
        let ra = allocate(state.path(), &mut a).unwrap();
        let rb = allocate(state.path(), &mut b).unwrap();
        assert_ne!(ra, rb);
        // Saved in the records (what a restarted server reads).
        assert_eq!(
            TaskRecord::load(state.path(), "b").unwrap().userns_base,
            Some(rb.base())
        );
        // Another process (a restarted server) reads the same records: a
        // third task gets neither; once `a` is gone its range is free.
        let mut c = record("c", None);
        let rc = allocate(state.path(), &mut c).unwrap();
        assert!(rc != ra && rc != rb);
        TaskRecord::remove(state.path(), "a").unwrap();
        let mut d = record("d", None);
        assert_eq!(allocate(state.path(), &mut d).unwrap(), ra);
        // Re-allocating for a task keeps none of its own old range held.
        assert_eq!(allocate(state.path(), &mut d).unwrap(), ra);
    }

    #[test]
    fn modes_parse() {
        for m in [UsernsMode::Auto, UsernsMode::On, UsernsMode::Off] {
            assert_eq!(m.to_string().parse::<UsernsMode>(), Ok(m));
        }
        assert!("yes".parse::<UsernsMode>().is_err());
    }

    #[test]
    fn view_paths_go_through_the_bind() {
        let v = TaskView::new("t1", Path::new("/data/tasks/t1/mnt"));
        assert_eq!(v.root(), Path::new("/run/ferry-userns/t1/task"));
        assert_eq!(
            v.path(Path::new("/data/tasks/t1/mnt/etc/hosts")),
            Path::new("/run/ferry-userns/t1/task/etc/hosts")
        );
        assert_eq!(v.path(Path::new("/elsewhere")), Path::new("/elsewhere"));
    }
}
