//! Wiring: the adapters that connect the library crates inside
//! `ferry server`. Each is small; the logic lives in the crates.
//!
//! - [`efs`]: EFS-style persistent file systems (the `ferry_efs::Backend`
//!   over the volume engine and KMS) and their mounts into tasks.
//! - [`keys`]: the agent's `KeyProvider` over the embedded KMS, called as
//!   the Fargate service principal, as Fargate does.
//! - [`storage`]: the agent's `TaskStorage` over the volume engine: one
//!   LUKS2 volume per task, crypto-shredded at the end.
//! - [`runtime`]: the control plane's `TaskRuntime` over the agent.
//! - [`logs`]: the agent's log sink over the Logs service, and its key.

pub mod efs;
pub mod keys;
pub mod logs;
pub mod runtime;
pub mod storage;

/// Whether `p` is a mount point (per /proc/self/mountinfo; ferry's own
/// paths have no spaces, which mountinfo would escape).
pub fn is_mount_point(p: &std::path::Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}
