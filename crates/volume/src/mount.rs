//! Mounting and unmounting a volume: start the serving process, attach a loop
//! device to its FUSE file, make ext4 on a blank volume, mount it; and the
//! reverse, leaving no mount, loop device or process behind.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cipher::SECTOR;
use crate::ext4::Layout as Ext4Layout;
use crate::fusefs::FILE_NAME;
use crate::key::Passphrase;
use crate::loopdev::{self, LoopDevice, LoopError};
use crate::mountinfo;
use crate::server::fuse_dir;
use crate::sys;

/// Default parent of the per-volume runtime directories.
pub const RUNTIME_ROOT: &str = "/run/ferry/volumes";

/// How to start the serving process: `exe args... --image I --runtime-dir R [--plain]`.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    /// Executable (ferry re-executes itself).
    pub exe: PathBuf,
    /// Leading arguments, e.g. `["volume", "serve"]`.
    pub args: Vec<OsString>,
}

impl ServerCommand {
    /// `exe volume serve`, the ferry binary's hidden subcommand.
    pub fn ferry(exe: impl Into<PathBuf>) -> Self {
        ServerCommand {
            exe: exe.into(),
            args: vec!["volume".into(), "serve".into()],
        }
    }
}

/// What mounting needs.
#[derive(Debug)]
pub struct MountOptions<'a> {
    /// The image file.
    pub image: &'a Path,
    /// Existing directory to mount ext4 on.
    pub target: &'a Path,
    /// Passphrase for keyslot 0; `None` mounts a plain (unencrypted) image.
    pub passphrase: Option<&'a Passphrase>,
    /// How to start the serving process.
    pub server: &'a ServerCommand,
    /// Parent of the runtime directory (default [`RUNTIME_ROOT`]).
    pub runtime_root: &'a Path,
}

/// Errors mounting; on error everything started so far is torn down again.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point is missing or not a directory.
    #[error("mount point {0} does not exist or is not a directory")]
    MountPoint(String),
    /// The image is missing.
    #[error("image {0} does not exist")]
    NoImage(String),
    /// The serving process reported an error (wrong passphrase, not LUKS2, ...).
    #[error("{0}")]
    Server(String),
    /// Starting or talking to the serving process failed.
    #[error("volume server: {0}")]
    Spawn(std::io::Error),
    /// Loop device.
    #[error(transparent)]
    Loop(#[from] LoopError),
    /// mkfs.ext4 failed.
    #[error("mkfs.ext4 failed: {0}")]
    Mkfs(String),
    /// A used volume without ext4 is left alone rather than reformatted.
    #[error("volume holds data but no ext4 filesystem (refusing to reformat)")]
    NotExt4,
    /// Other I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// Errors unmounting.
#[derive(Debug, thiserror::Error)]
pub enum UnmountError {
    /// Nothing is mounted there.
    #[error("{0} is not mounted")]
    NotMounted(String),
    /// Something else is mounted there.
    #[error("{0} is not a ferry volume mount")]
    NotFerry(String),
    /// The ext4 unmount failed (e.g. busy); nothing was changed.
    #[error("cannot unmount {path}: {source}")]
    Umount {
        /// The mount point.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Teardown did not finish in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Other I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A mounted volume. Dropping it unmounts (best effort); call
/// [`MountHandle::unmount`] to see errors, or [`MountHandle::detach`] to leave
/// it running (it can later be unmounted with [`unmount`] by its mount point).
#[derive(Debug)]
pub struct MountHandle {
    target: PathBuf,
    runtime_dir: PathBuf,
    loop_name: String,
    server: Option<Child>,
}

impl MountHandle {
    /// The ext4 mount point.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// `loopN`.
    pub fn loop_name(&self) -> &str {
        &self.loop_name
    }

    /// Process id of the serving process.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// The serving process's runtime directory (its `server.log`).
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// Unmounts ext4, waits for the loop device to go, stops the server and
    /// waits for it, removes the runtime directory.
    pub fn unmount(mut self) -> Result<(), UnmountError> {
        self.teardown()
    }

    /// Leaves the volume mounted and its server running after this handle is gone.
    pub fn detach(mut self) {
        self.server = None;
        self.loop_name.clear();
    }

    fn teardown(&mut self) -> Result<(), UnmountError> {
        if self.loop_name.is_empty() {
            return Ok(());
        }
        let child = self.server.take();
        let r = teardown(&self.target, &self.loop_name, &self.runtime_dir, |pid| {
            stop_server(pid, child)
        });
        self.loop_name.clear();
        r
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Mounts a volume on `opts.target`; returns once the target is mounted and usable.
pub fn mount(opts: &MountOptions<'_>) -> Result<MountHandle, MountError> {
    if !opts.target.is_dir() {
        return Err(MountError::MountPoint(opts.target.display().to_string()));
    }
    if !opts.image.is_file() {
        return Err(MountError::NoImage(opts.image.display().to_string()));
    }
    let io = |what| move |source| MountError::Io { what, source };
    let target = opts.target.canonicalize().map_err(io("mount point"))?;
    let image = opts.image.canonicalize().map_err(io("image"))?;
    let runtime_dir = new_runtime_dir(opts.runtime_root).map_err(io("runtime dir"))?;
    let r = mount_in(opts, &image, &target, &runtime_dir);
    if r.is_err() {
        let _ = remove_runtime_dir(&runtime_dir);
    }
    r
}

fn mount_in(
    opts: &MountOptions<'_>,
    image: &Path,
    target: &Path,
    runtime_dir: &Path,
) -> Result<MountHandle, MountError> {
    let io = |what| move |source| MountError::Io { what, source };
    let mut cmd = Command::new(&opts.server.exe);
    cmd.args(&opts.server.args)
        .arg("--image")
        .arg(image)
        .arg("--runtime-dir")
        .arg(runtime_dir);
    if opts.passphrase.is_none() {
        cmd.arg("--plain");
    }
    let log = std::fs::File::create(runtime_dir.join("server.log")).map_err(io("server log"))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        // Not in the caller's process group: a Ctrl-C meant for the caller
        // must not take the volume away from under a mounted filesystem.
        .process_group(0);
    let mut child = cmd.spawn().map_err(MountError::Spawn)?;
    // The passphrase goes over the pipe and nowhere else; closing it is EOF.
    if let Some(mut stdin) = child.stdin.take() {
        let bytes = opts.passphrase.map(Passphrase::expose).unwrap_or_default();
        let _ = stdin.write_all(bytes);
    }
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let line = line.trim_end();
    let blank = match line {
        "ready blank" => true,
        "ready data" => false,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            let msg = line.strip_prefix("error: ").unwrap_or(line);
            let msg = if msg.is_empty() {
                "volume server exited without reporting".to_string()
            } else {
                msg.to_string()
            };
            return Err(MountError::Server(msg));
        }
    };
    let pid = child.id();
    let _ = std::fs::write(runtime_dir.join("pid"), format!("{pid}\n"));
    let stop = |child: Child| {
        let _ = stop_server(pid, Some(child));
    };
    let dev = match LoopDevice::attach(&fuse_dir(runtime_dir).join(FILE_NAME), SECTOR as u32) {
        Ok(d) => d,
        Err(e) => {
            stop(child);
            return Err(e.into());
        }
    };
    let r = prepare_and_mount(&dev, blank, target, runtime_dir);
    let loop_name = dev.name();
    // The mount holds the device now; closing ours lets autoclear fire at umount.
    drop(dev);
    if let Err(e) = r {
        wait_loop_gone(&loop_name, runtime_dir);
        stop(child);
        return Err(e);
    }
    Ok(MountHandle {
        target: target.to_path_buf(),
        runtime_dir: runtime_dir.to_path_buf(),
        loop_name,
        server: Some(child),
    })
}

fn prepare_and_mount(
    dev: &LoopDevice,
    blank: bool,
    target: &Path,
    runtime_dir: &Path,
) -> Result<(), MountError> {
    if blank {
        mkfs(&dev.path())?;
        prepare_for_full_disk(
            dev,
            &fuse_dir(runtime_dir).join(FILE_NAME),
            &runtime_dir.join(METADATA_MAP),
        );
    } else if !has_ext4_superblock(dev)? {
        return Err(MountError::NotExt4);
    }
    sys::mount(&dev.path(), target, "ext4", "").map_err(|source| MountError::Io {
        what: "mount ext4",
        source,
    })
}

/// mkfs.ext4 options: the data segment of a new volume reads as zeros
/// (holes), so nothing needs zeroing or discarding. No `resize_inode`: a
/// volume's size is fixed for its task's life, and the blocks reserved for
/// growing the group descriptor table online were most of what mkfs wrote
/// (4.3 of 4.4 MiB on 20 GiB, each block encrypted and written through FUSE).
pub const MKFS_ARGS: &[&str] = &[
    "-q",
    "-F",
    "-b",
    "4096",
    "-m",
    "0",
    "-O",
    "^resize_inode",
    "-E",
    "nodiscard,lazy_itable_init=1,lazy_journal_init=1,assume_storage_prezeroed=1",
];

fn mkfs(dev: &Path) -> Result<(), MountError> {
    let out = Command::new("mkfs.ext4")
        .args(MKFS_ARGS)
        .arg(dev)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| MountError::Mkfs(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(MountError::Mkfs(
            err.lines().last().unwrap_or("unknown error").to_string(),
        ));
    }
    Ok(())
}

/// After mkfs, prepares the new file system for a full host (see
/// docs/volume-engine.md, "A full disk"); best effort: a volume whose
/// layout could not be read still mounts, with less protection, and says so.
///
/// The layout is read from the device itself ([`crate::ext4`]) rather
/// than from `debugfs` and `dumpe2fs`: same numbers, two forks fewer.
fn prepare_for_full_disk(dev: &LoopDevice, fuse_file: &Path, map: &Path) {
    let layout = match Ext4Layout::read(dev.file()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ferry-volume: reading the new file system's layout: {e}");
            return;
        }
    };
    match layout.journal_extents() {
        Ok(extents) => preallocate_journal(&extents, layout.block_size(), fuse_file),
        Err(e) => eprintln!("ferry-volume: finding the journal: {e}"),
    }
    write_metadata_map(&layout.metadata_ranges(), map);
}

/// Allocates the backing blocks of the new file system's journal, so that
/// a journal write never needs host space: on a full host the volume
/// server refuses writes into holes (ENOSPC), and a failed journal write
/// would abort the journal (the file system turns read-only) where a
/// failed data write is only the ENOSPC the task should see.
fn preallocate_journal(extents: &[(u64, u64)], block_size: u64, fuse_file: &Path) {
    let file = match std::fs::OpenOptions::new().write(true).open(fuse_file) {
        Ok(f) => f,
        Err(_) => return,
    };
    for &(start, len) in extents {
        let (off, len) = (start * block_size, len * block_size);
        if let Err(e) = sys::fallocate(
            std::os::fd::AsFd::as_fd(&file),
            libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        ) {
            eprintln!("ferry-volume: preallocating the journal: {e}");
            return;
        }
    }
}

/// Where the volume's ext4 keeps its bitmaps and inode tables, written by
/// the mount for the volume server (`START END` byte ranges, one a line):
/// on a host short of space the server lets writes there allocate into
/// the lower half of the reserve, as a failed metadata write aborts the
/// journal (see [`crate::fusefs::VolumeFs::with_metadata_map`]).
pub const METADATA_MAP: &str = "ext4-metadata";

/// Writes [`METADATA_MAP`]. Best effort: without it the server only knows
/// metadata writes by their size.
fn write_metadata_map(ranges: &[(u64, u64)], path: &Path) {
    let text: String = ranges.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    let _ = std::fs::write(path, text);
}

fn has_ext4_superblock(dev: &LoopDevice) -> Result<bool, MountError> {
    crate::ext4::is_ext4(dev.file()).map_err(|source| MountError::Io {
        what: "read superblock",
        source,
    })
}

fn new_runtime_dir(root: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let mut id = [0u8; 8];
    openssl::rand::rand_bytes(&mut id).map_err(std::io::Error::other)?;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let dir = root.join(hex);
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::create_dir(fuse_dir(&dir))?;
    Ok(dir)
}

fn remove_runtime_dir(dir: &Path) -> std::io::Result<()> {
    let fuse = fuse_dir(dir);
    if mountinfo::is_mount_point(&fuse) {
        let _ = sys::umount(&fuse, true);
    }
    std::fs::remove_dir_all(dir)
}

/// Where a ferry volume mounted on `target` comes from: the canonical
/// target, its loop device (`loopN`) and the serving process's runtime
/// directory (which holds its `pid`).
fn locate(target: &Path) -> Result<(PathBuf, String, PathBuf), UnmountError> {
    let target = target
        .canonicalize()
        .map_err(|_| UnmountError::NotMounted(target.display().to_string()))?;
    let shown = target.display().to_string();
    let source =
        mountinfo::source_of(&target).ok_or_else(|| UnmountError::NotMounted(shown.clone()))?;
    let loop_name = source
        .strip_prefix("/dev/")
        .filter(|n| n.starts_with("loop"))
        .ok_or_else(|| UnmountError::NotFerry(shown.clone()))?
        .to_string();
    let backing =
        loopdev::backing_file(&loop_name).ok_or_else(|| UnmountError::NotFerry(shown.clone()))?;
    let runtime_dir = backing
        .strip_suffix_path(&Path::new("fuse").join(FILE_NAME))
        .filter(|d| d.join("pid").is_file())
        .ok_or(UnmountError::NotFerry(shown))?;
    Ok((target, loop_name, runtime_dir))
}

/// Unmounts the volume mounted on `target` (for operators and for re-adoption
/// after the handle is gone): same steps as [`MountHandle::unmount`].
pub fn unmount(target: &Path) -> Result<(), UnmountError> {
    let (target, loop_name, runtime_dir) = locate(target)?;
    teardown(&target, &loop_name, &runtime_dir, |pid| {
        stop_server(pid, None)
    })
}

/// Stops the serving process of a volume whose ext4 mount is already gone
/// (detached or unmounted by someone else, so [`unmount`] cannot find it
/// from a mount point) and removes its runtime directory: for a caller
/// that remembers where it put the runtime directories (the CSI plugin
/// gives each volume its own `runtime_root`). Does nothing if
/// `runtime_dir` does not exist. A loop device still reading the served
/// file sees I/O errors: only for volumes about to be shredded.
pub fn release(runtime_dir: &Path) -> Result<(), UnmountError> {
    if !runtime_dir.exists() {
        return Ok(());
    }
    let pid: Option<u32> = std::fs::read_to_string(runtime_dir.join("pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if let Some(pid) = pid {
        if process_gone(pid) {
            abort_fuse(runtime_dir);
        } else {
            stop_server(pid, None)?;
        }
    }
    remove_runtime_dir(runtime_dir)?;
    Ok(())
}

/// The process serving the volume mounted on `target`, for a volume whose
/// handle is gone (a server re-adopting a previous server's task watches
/// it as it watches its own).
pub fn server_pid(target: &Path) -> Option<u32> {
    let (_, _, runtime_dir) = locate(target).ok()?;
    std::fs::read_to_string(runtime_dir.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

trait StripSuffixPath {
    fn strip_suffix_path(&self, suffix: &Path) -> Option<PathBuf>;
}

impl StripSuffixPath for PathBuf {
    fn strip_suffix_path(&self, suffix: &Path) -> Option<PathBuf> {
        let s = self.to_str()?;
        let suf = suffix.to_str()?;
        s.strip_suffix(suf)
            .and_then(|p| p.strip_suffix('/'))
            .map(PathBuf::from)
    }
}

fn teardown(
    target: &Path,
    loop_name: &str,
    runtime_dir: &Path,
    stop: impl FnOnce(u32) -> Result<(), UnmountError>,
) -> Result<(), UnmountError> {
    let pid: Option<u32> = std::fs::read_to_string(runtime_dir.join("pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    // A dead server (killed, crashed) leaves its FUSE connection hanging:
    // abort it so every I/O of ext4 and the loop device fails at once
    // instead of waiting, then the unmounts below cannot hang.
    let dead = pid.is_some_and(process_gone);
    if dead {
        abort_fuse(runtime_dir);
    }
    if mountinfo::is_mount_point(target) {
        match sys::umount(target, false) {
            Ok(()) => {}
            // Nothing can be written back to a dead volume anyway: detach
            // the mount and let the kernel drop it once unused.
            Err(_) if dead => {
                let _ = sys::umount(target, true);
            }
            Err(source) => {
                return Err(UnmountError::Umount {
                    path: target.display().to_string(),
                    source,
                });
            }
        }
    }
    if dead {
        // With the connection aborted the loop device goes as soon as the
        // (lazily detached) ext4 lets go of it; if something still holds
        // it, go on: its I/O fails, and the image is shredded regardless.
        let _ = wait_until(Duration::from_secs(5), || {
            loopdev::backing_file(loop_name).is_none_or(|b| !b.starts_with(runtime_dir))
        });
    } else if !wait_loop_gone(loop_name, runtime_dir) {
        return Err(UnmountError::Timeout("loop device to detach"));
    }
    if let Some(pid) = pid {
        stop(pid)?;
    }
    remove_runtime_dir(runtime_dir)?;
    Ok(())
}

/// Aborts the FUSE connection mounted at `runtime_dir`'s `fuse/` (through
/// `/sys/fs/fuse/connections/N/abort`, N the mount's device minor, read
/// from mountinfo since a dead FUSE mount cannot be stat'ed). Best effort.
fn abort_fuse(runtime_dir: &Path) {
    let fuse = fuse_dir(runtime_dir);
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let Some(minor) = fuse_minor(&text, &fuse) else {
        return;
    };
    let _ = std::fs::write(format!("/sys/fs/fuse/connections/{minor}/abort"), "1");
}

/// The device minor of the mount at `mount_point` in mountinfo `text`.
fn fuse_minor(text: &str, mount_point: &Path) -> Option<u32> {
    let want = mount_point.to_str()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if f.get(4) != Some(&want) {
            return None;
        }
        f.get(2)?.split_once(':')?.1.parse().ok()
    })
}

/// Waits until `loop_name` no longer points into `runtime_dir`; true if it went.
fn wait_loop_gone(loop_name: &str, runtime_dir: &Path) -> bool {
    wait_until(Duration::from_secs(20), || {
        loopdev::backing_file(loop_name).is_none_or(|b| !b.starts_with(runtime_dir))
    })
}

/// Stops the serving process `pid`: SIGTERM, then SIGKILL after 10 s.
fn stop_server(pid: u32, child: Option<Child>) -> Result<(), UnmountError> {
    let pid_i = pid as i32;
    let _ = sys::kill(pid_i, libc::SIGTERM);
    let gone = |child: &mut Option<Child>| match child {
        Some(c) => matches!(c.try_wait(), Ok(Some(_)) | Err(_)),
        None => process_gone(pid),
    };
    let mut child = child;
    if wait_until(Duration::from_secs(10), || gone(&mut child)) {
        return Ok(());
    }
    let _ = sys::kill(pid_i, libc::SIGKILL);
    if wait_until(Duration::from_secs(5), || gone(&mut child)) {
        return Ok(());
    }
    Err(UnmountError::Timeout("volume server to exit"))
}

/// True once `/proc/PID` is gone or a zombie.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fuse_connection() {
        let text = "36 25 0:31 / /run/ferry/volumes/ab/fuse rw - fuse.ferry ferry-volume rw\n\
                    37 25 7:3 / /data/root rw - ext4 /dev/loop3 rw\n";
        assert_eq!(
            fuse_minor(text, Path::new("/run/ferry/volumes/ab/fuse")),
            Some(31)
        );
        assert_eq!(fuse_minor(text, Path::new("/elsewhere")), None);
    }

    #[test]
    fn release_removes_a_dead_servers_runtime_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("abc");
        // Nothing there: nothing to do.
        release(&dir).unwrap();
        std::fs::create_dir_all(fuse_dir(&dir)).unwrap();
        // A pid that cannot be a live process (above the kernel's pid_max).
        std::fs::write(dir.join("pid"), "4194305\n").unwrap();
        release(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn strips_runtime_suffix() {
        let p = PathBuf::from("/run/ferry/volumes/abc/fuse/volume");
        assert_eq!(
            p.strip_suffix_path(&Path::new("fuse").join(FILE_NAME)),
            Some(PathBuf::from("/run/ferry/volumes/abc"))
        );
        assert_eq!(
            PathBuf::from("/tmp/x.img").strip_suffix_path(Path::new("fuse/volume")),
            None
        );
    }
}
