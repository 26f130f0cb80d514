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
///
/// Idempotent: a `target` that is not a mount point (`EINVAL`) or does not
/// exist (`ENOENT`) is already unmounted, so both are `Ok`. Crash recovery
/// relies on this to unmount whatever a record names without first
/// checking what is still mounted.
pub fn unmount(target: &Path) -> Result<(), MountError> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => Ok(()),
        Err(nix::Error::EBUSY) => umount2(target, MntFlags::MNT_DETACH),
        Err(e) => Err(e),
    }
    .map_err(|err| MountError {
        op: "umount",
        target: target.display().to_string(),
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmount_of_a_missing_path_is_ok() {
        // The path lookup fails before any permission check, so this holds
        // unprivileged too.
        let dir = tempfile::tempdir().unwrap();
        unmount(&dir.path().join("missing")).unwrap();
    }

    #[test]
    fn unmount_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m");
        std::fs::create_dir(&target).unwrap();
        if let Err(e) = mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        ) {
            // Without CAP_SYS_ADMIN every umount2 of an existing path is
            // EPERM, so there is nothing to check (CI runs as root).
            assert_eq!(e, nix::Error::EPERM, "mounting a tmpfs");
            return;
        }
        unmount(&target).unwrap();
        // Now a plain directory, not a mount point (EINVAL).
        unmount(&target).unwrap();
        unmount(dir.path()).unwrap();
    }
}
