//! Expiry of STOPPED tasks: they stay describable for the retention
//! (at least an hour, as ECS), then are deleted from the store and the
//! read cache.

use std::sync::atomic::Ordering;

use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::model::task::{TaskRecord, TaskStatus};
use crate::service::Core;

/// Deletes STOPPED tasks older than the retention. Returns how many.
pub fn sweep_stopped(core: &Core, now: f64) -> Result<usize, EcsError> {
    core.last_sweep.store(now as u64, Ordering::Relaxed);
    // Revisions whose deletion waited for their tasks and services.
    crate::ops::task_definitions::sweep_deleted(core)?;
    let horizon = now - core.cfg.stopped_task_retention_secs.max(3600.0);
    let old: Vec<(String, TaskRecord)> = core
        .store
        .scan::<TaskRecord>(db::TASKS, "")?
        .into_iter()
        .filter(|(_, t)| {
            t.last_status == TaskStatus::Stopped && t.stopped_at.is_some_and(|s| s < horizon)
        })
        .collect();
    // Revoked when they stopped; once more before the record that names
    // them goes (idempotent), so nothing of a forgotten task stays valid.
    for (_, t) in &old {
        super::events::release(core, t);
    }
    let old: Vec<String> = old.into_iter().map(|(k, _)| k).collect();
    if old.is_empty() {
        return Ok(0);
    }
    core.store.write(|w| {
        for k in &old {
            w.delete(db::TASKS, k)?;
        }
        Ok::<_, EcsError>(())
    })?;
    core.tasks.remove(&old);
    Ok(old.len())
}

/// Sweeps at most once a minute; called from busy paths (RunTask,
/// ListTasks, service launches) so no timer thread is needed. In a fleet
/// only the scheduler lease's holder sweeps (one sweeper, not one per
/// replica).
pub fn maybe_sweep(core: &Core) {
    if !crate::leader::is_leader(core) {
        return;
    }
    let now = clock::now();
    let last = core.last_sweep.load(Ordering::Relaxed);
    if (now as u64).saturating_sub(last) >= 60
        && let Err(e) = sweep_stopped(core, now)
    {
        tracing::warn!(error = %e, "expiring stopped tasks failed");
    }
}
