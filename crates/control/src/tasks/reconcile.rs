//! Reconciliation after a restart: every task of this host not recorded as
//! STOPPED is offered to the runtime again; tasks it no longer has are
//! recorded as STOPPED (see `docs/control-plane.md`, "Restart"). Role
//! sessions follow: an adopted task's task role is served again under its
//! credentials id; the sessions of this host's STOPPED tasks are revoked
//! (again: the previous server may have stopped before it could).
//!
//! Only this host's tasks (on a single-host store: every task) are
//! offered. A task recorded STOPPED while its leftovers are still here
//! (this host was lost, and the lease holder gave up on its tasks) is not
//! offered, so the runtime does not re-adopt it and the host's leftovers
//! release (`ferry_host::recovery::release_leftovers`, run after this)
//! kills its containers and crypto-shreds its volume.

use std::sync::Arc;

use ferry_proto::plan::TaskEvent;

use super::events::{apply_event, release, sink};
use crate::db;
use crate::error::EcsError;
use crate::identity::TaskRef;
use crate::model::task::{TaskRecord, TaskStatus, stop_code};
use crate::runtime::Reattach;
use crate::service::Core;

/// What [`crate::EcsService::new`] found and did about unfinished tasks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Tasks the runtime re-adopted.
    pub adopted: usize,
    /// Tasks the runtime no longer had, now recorded as STOPPED.
    pub lost: usize,
}

/// Reattaches or stops every task that is not STOPPED.
pub fn reconcile(core: &Arc<Core>) -> Result<ReconcileReport, EcsError> {
    let mut report = ReconcileReport::default();
    type Keyed = Vec<(String, TaskRecord)>;
    let (stopped, open): (Keyed, Keyed) = core
        .store
        .scan::<TaskRecord>(db::TASKS, "")?
        .into_iter()
        .filter(|(_, t)| core.runs_here(t))
        .partition(|(_, t)| t.last_status == TaskStatus::Stopped);
    for (_, t) in &stopped {
        release(core, t);
    }
    for (key, t) in open {
        let events = sink(core, &t.plan.cluster_name, &t.plan.task_id);
        // Held before the runtime reports anything of it.
        core.local.held.insert(&key, t.arn());
        match core.runtime.reattach(&t.plan, events) {
            Reattach::Adopted => {
                report.adopted += 1;
                if let (Some(role), Some(id)) = (&t.roles.task_role_arn, &t.roles.credentials_id) {
                    let me = TaskRef {
                        arn: t.arn(),
                        id: &t.plan.task_id,
                    };
                    if let Err(e) = core.identity.roles.task_role(me, role, id) {
                        tracing::warn!(
                            task = t.arn(),
                            "the task role's credentials cannot be served again: {e}"
                        );
                    }
                }
                if t.desired_status == TaskStatus::Stopped && core.local.held.stop_once(&key) {
                    // The stop may not have reached the old runtime.
                    let code = t.stop_code.as_deref().unwrap_or(stop_code::USER_INITIATED);
                    let reason = t.stopped_reason.as_deref().unwrap_or_default();
                    core.runtime.stop(t.arn(), code, reason);
                }
            }
            Reattach::Gone { reason } => {
                report.lost += 1;
                core.local.held.done(&key);
                let code = crate::hosts::lost_stop_code(&t);
                apply_event(
                    core,
                    &key,
                    &TaskEvent::Stopped {
                        stop_code: code.into(),
                        stopped_reason: reason,
                    },
                )?;
            }
        }
    }
    // ENIs a previous server allocated for tasks it never recorded, or
    // whose release it did not finish, go back to their subnets. Not in a
    // fleet: another replica may be between allocating a task's ENI and
    // recording the task.
    if !core.cfg.fleet {
        let held: std::collections::HashSet<String> = core
            .store
            .scan::<TaskRecord>(db::TASKS, "")?
            .into_iter()
            .filter(|(_, t)| t.last_status != TaskStatus::Stopped)
            .map(|(_, t)| t.eni_id)
            .collect();
        core.networks.release_unless(&|eni| held.contains(eni));
    }
    if report != ReconcileReport::default() {
        tracing::info!(
            adopted = report.adopted,
            lost = report.lost,
            "reconciled tasks"
        );
    }
    Ok(report)
}
