//! The mounts the agent makes on the host: each container's overlay rootfs
//! (lower = the task's unpacked image, upper/work on the task's volume).

use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A failed mount or unmount.
#[derive(Debug, thiserror::Error)]
#[error("{op} {target}: {err}")]
pub struct MountError {
    op: &'static str,
    target: String,
    err: nix::Error,
}

/// Mounts an overlay at `target`.
pub fn overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<(), MountError> {
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|err| MountError {
        op: "mount overlay",
        target: target.display().to_string(),
        err,
    })
}

/// Unmounts `target`; if it is busy, detaches it so it goes away once the
/// last user does.
pub fn unmount(target: &Path) -> Result<(), MountError> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::Error::EBUSY) => umount2(target, MntFlags::MNT_DETACH),
        Err(e) => Err(e),
    }
    .map_err(|err| MountError {
        op: "umount",
        target: target.display().to_string(),
        err,
    })
}
