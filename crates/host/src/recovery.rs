//! Crash recovery: one entry point that releases what a previous server left
//! on this host, in the order the resources nest. It runs after the control
//! plane has offered every unfinished task for re-adoption (see
//! [`crate::runtime`]) and skips what was adopted; everything else found is
//! released:
//!
//! 1. the agent's orphaned tasks: containers, network namespaces, overlay
//!    rootfs mounts;
//! 2. task volumes under `DATA/tasks`: the EFS binds under a task's root
//!    first, then its volume (unmounted, crypto-shredded, deleted);
//! 3. EFS file systems still mounted on the host.
//!
//! A task volume's KMS grant is retired too: its id and key ARN were
//! recorded beside the volume when it was made
//! ([`crate::task_volumes::GRANT_FILE`]).

use std::path::Path;

use ferry_agent::Agent;
use ferry_volume::mountinfo::{is_mount_point, mounts_under};

use crate::efs::EfsVolumes;
use crate::engine::VolumeEngine;
use crate::keys::VolumeKeys;
use crate::task_volumes::{ENCRYPTED_IMAGE, Grant, PLAIN_IMAGE, ROOT};

/// Releases everything a previous server left but for the tasks this
/// server re-adopted (`adopted(task_id)`: their volumes; the agent already
/// knows its own); returns what could not be released, one line each.
pub fn release_leftovers(
    agent: &Agent,
    engine: &dyn VolumeEngine,
    keys: &dyn VolumeKeys,
    tasks_dir: &Path,
    efs: Option<&EfsVolumes>,
    adopted: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for id in agent.orphaned_tasks() {
        if let Err(e) = agent.cleanup_orphan(&id) {
            problems.extend(e);
        }
    }
    if let Ok(entries) = std::fs::read_dir(tasks_dir) {
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(adopted) {
                continue;
            }
            if let Err(e) = release_task_dir(engine, keys, &e.path()) {
                problems.push(e);
            }
        }
    }
    if let Some(efs) = efs {
        problems.extend(efs.recover());
    }
    problems
}

/// Unmounts and destroys the volume a previous server left in `dir`, and
/// retires its grant.
pub fn release_task_dir(
    engine: &dyn VolumeEngine,
    keys: &dyn VolumeKeys,
    dir: &Path,
) -> Result<(), String> {
    let root = dir.join(ROOT);
    // EFS volumes are bind mounts under the task's volume: those first.
    for m in mounts_under(&root) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    // Never delete through a mount that is still there: it may be a
    // persistent file system.
    if let Some(m) = mounts_under(&root).first() {
        return Err(format!("{} is still mounted", m.display()));
    }
    if is_mount_point(&root) {
        engine
            .unmount(&root)
            .map_err(|e| format!("unmounting {}: {e}", root.display()))?;
    }
    let luks = dir.join(ENCRYPTED_IMAGE);
    if luks.exists() {
        engine
            .shred(&luks)
            .map_err(|e| format!("shredding {}: {e}", luks.display()))?;
    }
    let _ = std::fs::remove_file(dir.join(PLAIN_IMAGE));
    // The volume is gone; the grant that could unwrap its key goes too. A
    // grant the KMS no longer has (retired before the crash) is fine.
    if let Some(g) = Grant::recorded(dir)
        && let Err(e) = keys.retire(&g.key_arn, &g.grant_id)
        && e.kms_error().is_none_or(|k| k.code != "NotFoundException")
    {
        return Err(format!(
            "retiring grant {} of {}: {e}",
            g.grant_id,
            dir.display()
        ));
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
}
