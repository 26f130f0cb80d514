//! Idmapped bind mounts for access points with a `PosixUser`.
//!
//! The bind mount of the access point's directory into a task is idmapped
//! through a user namespace whose map is `UID 0 1` / `GID 0 1`: a file the
//! container's root creates through it is owned by UID:GID on disk, and
//! files owned by UID:GID show as root's inside the container, so the
//! container acts on the file system as the access point's POSIX user
//! (ids outside the map show as the overflow id and cannot be created).
//! The user namespace comes from a short-lived `unshare --user` child whose
//! maps we write; the namespace lives on through the file descriptor.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;

/// A user namespace mapping container root to `uid`/`gid`.
fn userns(uid: u32, gid: u32) -> Result<OwnedFd, String> {
    let child = Command::new("unshare")
        .args(["--user", "--", "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting unshare: {e}"))?;
    let mut child = KillOnDrop(child);
    let pid = child.0.id();
    let mine = std::fs::read_link("/proc/self/ns/user")
        .map_err(|e| format!("reading our user namespace: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_link(format!("/proc/{pid}/ns/user")) {
            Ok(ns) if ns != mine => break,
            _ if Instant::now() > deadline => {
                return Err("the unshare child did not enter a new user namespace".into());
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
        if let Ok(Some(st)) = child.0.try_wait() {
            return Err(format!("unshare exited early: {st}"));
        }
    }
    let write = |file: &str, map: String| {
        std::fs::write(format!("/proc/{pid}/{file}"), map)
            .map_err(|e| format!("writing {file}: {e}"))
    };
    // An idmapped mount shows on-disk id `d` as map_down(d) and stores a
    // caller's id `c` as map_up(c): "UID 0 1" shows UID as 0 and stores 0
    // as UID.
    write("uid_map", format!("{uid} 0 1\n"))?;
    write("gid_map", format!("{gid} 0 1\n"))?;
    let ns = File::open(format!("/proc/{pid}/ns/user"))
        .map_err(|e| format!("opening the user namespace: {e}"))?;
    Ok(OwnedFd::from(ns))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bind-mounts `src` on `target`, idmapped so that container root acts as
/// `uid:gid`.
pub fn bind(src: &Path, target: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let ns = userns(uid, gid)?;
    let tree = sys::clone_tree(src).map_err(|e| format!("open_tree {}: {e}", src.display()))?;
    sys::set_idmap(&tree, &ns, false).map_err(|e| format!("mount_setattr (idmap): {e}"))?;
    sys::move_to(&tree, target).map_err(|e| format!("move_mount to {}: {e}", target.display()))
}
