//! The task lifecycle, in one place: launching tasks from a resolved
//! [`LaunchSpec`], stop requests, the runtime's events, reconciliation
//! after a restart, and the expiry of old STOPPED tasks.
//!
//! Callers resolve and validate their own input first: RunTask
//! ([`crate::ops::run_task`]) from the wire request, the service scheduler
//! ([`crate::scheduler`]) from a service and its deployment. Nothing here
//! knows about wire requests.

mod events;
mod identity;
mod launch;
mod reconcile;
mod stop;
mod sweep;

pub use events::sink;
pub use launch::{
    LaunchSpec, Launched, NO_STORAGE, StorageKeyChoice, check_platform, launch,
    runnable_task_definition,
};
pub use reconcile::{ReconcileReport, reconcile};
pub use stop::stop;
pub use sweep::{maybe_sweep, sweep_stopped};

use crate::db;
use crate::error::EcsError;
use crate::model::task::{TaskRecord, TaskStatus};
use crate::service::Core;

/// The tasks of `cluster` in `group` (e.g. `service:NAME`) that are not
/// STOPPED.
pub fn live_in_group(core: &Core, cluster: &str, group: &str) -> Result<Vec<TaskRecord>, EcsError> {
    Ok(core
        .store
        .scan::<TaskRecord>(db::TASKS, &db::task_prefix(cluster))?
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| t.group == group && t.last_status != TaskStatus::Stopped)
        .collect())
}
