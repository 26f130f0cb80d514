//! Stop requests: StopTask (`UserInitiated`) and the service scheduler
//! (`ServiceSchedulerInitiated`). The request is recorded first, then the
//! runtime is told; its events finish the stop.

use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::leader::Leader;
use crate::model::task::TaskRecord;
use crate::service::Core;

/// Records a stop request for a task and tells the runtime. Returns the
/// updated record, or `None` if there is no such task. A task already
/// stopping or stopped is returned as it is, and the runtime is not asked
/// again.
pub fn stop(
    core: &Core,
    cluster: &str,
    task_id: &str,
    code: &str,
    reason: &str,
) -> Result<Option<TaskRecord>, EcsError> {
    stop_as(core, cluster, task_id, code, reason, &Leader(None))
}

/// [`stop`] by the scheduler lease's holder: the record is written only
/// while `leader` still holds the lease.
///
/// Whoever records the stop, only the task's host stops it: at once here
/// when this process is that host (the fast path), else the host's
/// assignment loop sees the desired status and does.
pub fn stop_as(
    core: &Core,
    cluster: &str,
    task_id: &str,
    code: &str,
    reason: &str,
    leader: &Leader,
) -> Result<Option<TaskRecord>, EcsError> {
    let key = db::task_key(cluster, task_id);
    let now = clock::now();
    let r = core.store.write(|w| {
        let Some(mut t) = w.get::<TaskRecord>(db::TASKS, &key)? else {
            return Ok::<_, EcsError>(None);
        };
        let changed = t.request_stop(code, reason, now);
        if changed {
            leader.check(w)?;
            w.put(db::TASKS, &key, &t)?;
        }
        Ok(Some((t, changed)))
    })?;
    let Some((t, changed)) = r else {
        return Ok(None);
    };
    if changed {
        core.tasks.refresh(&core.store, &key)?;
        if core.runs_here(&t) {
            let held = &core.local.held;
            if held.stop_once(&key) {
                core.runtime.stop(t.arn(), code, reason);
                // The runtime may have answered synchronously.
                return Ok(core.store.get(db::TASKS, &key)?.or(Some(t)));
            }
            // Not started here yet: the loop records it STOPPED.
            held.wake();
        }
        return Ok(Some(t));
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::{TaskStatus, stop_code};
    use crate::tests::{env, source_doc};

    #[test]
    fn a_stop_is_recorded_and_sent_once() {
        let e = env();
        let core = e.svc.core();
        e.ok("RegisterTaskDefinition", source_doc());
        assert!(
            stop(core, "default", "nope", stop_code::USER_INITIATED, "x")
                .unwrap()
                .is_none()
        );
        let arn = e.run_one();
        let id = arn.rsplit('/').next().unwrap();
        let t = stop(
            core,
            "default",
            id,
            stop_code::SERVICE_SCHEDULER_INITIATED,
            "why",
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.desired_status, TaskStatus::Stopped);
        assert_eq!(t.stop_code.as_deref(), Some("ServiceSchedulerInitiated"));
        assert_eq!(t.stopped_reason.as_deref(), Some("why"));
        let again = stop(core, "default", id, stop_code::USER_INITIATED, "again")
            .unwrap()
            .unwrap();
        assert_eq!(again.stopped_reason.as_deref(), Some("why"));
        assert_eq!(*e.rt.stopped.lock().unwrap(), vec![arn.clone()]);
        assert_eq!(e.describe(&arn)["desiredStatus"], "STOPPED");
    }
}
