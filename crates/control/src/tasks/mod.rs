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
pub(crate) use events::{apply_lost, finish_unstarted};
pub use launch::{
    LaunchSpec, Launched, NO_ADDRESS, NO_STORAGE, StorageKeyChoice, check_platform, launch,
    runnable_task_definition,
};
pub use reconcile::{ReconcileReport, reconcile};
pub use stop::{stop, stop_as};
pub use sweep::{maybe_sweep, sweep_stopped};

use crate::db;
use crate::error::EcsError;
use crate::model::task::{TaskRecord, TaskStatus};
use crate::model::task_definition::TaskDefSpec;
use crate::service::Core;

/// The task's identity (role sessions, secrets) made on the host that runs
/// it: its plan with the secret values, or why it cannot start.
pub(crate) fn prepare_identity(
    core: &Core,
    t: &TaskRecord,
    spec: &TaskDefSpec,
) -> Result<ferry_proto::plan::TaskPlan, String> {
    identity::prepare(core, t, spec)
}

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
