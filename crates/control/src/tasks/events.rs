//! The runtime's events: each task gets an [`EventSink`] that applies
//! [`TaskEvent`]s to its record (the state machine is
//! [`TaskRecord::apply`]), refreshes the read cache, and wakes the service
//! scheduler when a service's task changed.

use std::sync::Arc;

use ferry_proto::plan::TaskEvent;

use ferry_store::{LeaseInfo, WriteTxn};

use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::leader::Leader;
use crate::model::task::{TaskRecord, TaskStatus};
use crate::runtime::EventSink;
use crate::service::Core;

/// The sink for one task's events. It holds the core weakly: the runtime
/// may keep sinks longer than the service lives.
pub fn sink(core: &Arc<Core>, cluster: &str, task_id: &str) -> EventSink {
    let me = Arc::downgrade(core);
    let key = db::task_key(cluster, task_id);
    Arc::new(move |event: TaskEvent| {
        // The service may be gone (server shutting down); then the
        // event is dropped and reconciled at the next start.
        let Some(core) = me.upgrade() else { return };
        if matches!(event, TaskEvent::Stopped { .. }) {
            // Before it is recorded: the assignment loop must never take
            // a task whose runtime is done for one to start.
            core.local.held.done(&key);
        }
        match apply_event(&core, &key, &event) {
            Ok(()) => {
                if matches!(event, TaskEvent::Stopped { .. }) {
                    core.local.held.forget_done(&key);
                }
            }
            Err(e) => {
                tracing::error!(task = %key, error = %e, "recording a task event failed");
                // The last event must not be lost to a passing store failure
                // (a full disk): the task would stay DEACTIVATING until a
                // restart. Retried until the store takes it.
                if matches!(event, TaskEvent::Stopped { .. }) {
                    retry_stopped(me.clone(), key.clone(), event);
                }
            }
        }
    })
}

/// How long a `Stopped` event that could not be recorded is retried.
const STOPPED_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

fn retry_stopped(core: std::sync::Weak<Core>, key: String, event: TaskEvent) {
    let spawned = std::thread::Builder::new()
        .name("stopped-retry".into())
        .spawn(move || {
            let start = std::time::Instant::now();
            while start.elapsed() < STOPPED_RETRY_FOR {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let Some(core) = core.upgrade() else {
                    return;
                };
                if apply_event(&core, &key, &event).is_ok() {
                    tracing::info!(task = %key, "recorded the task's stop after a store failure");
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot retry recording a task's stop");
    }
}

/// Applies `event` to the task stored under `key`, if there is one. When
/// the task becomes STOPPED, its reservation on its host is dropped in the
/// same transaction, and its role sessions are revoked and its ENI freed.
pub(super) fn apply_event(core: &Core, key: &str, event: &TaskEvent) -> Result<(), EcsError> {
    apply_checked(core, key, |_| Some(event.clone()), |_, _| Ok(true)).map(|_| ())
}

/// [`apply_event`] of the event `event` makes of the record, if `check`
/// (inside the transaction) lets it; returns whether the record changed.
pub(super) fn apply_checked(
    core: &Core,
    key: &str,
    event: impl FnOnce(&TaskRecord) -> Option<TaskEvent>,
    check: impl FnOnce(&WriteTxn<'_>, &TaskRecord) -> Result<bool, EcsError>,
) -> Result<bool, EcsError> {
    let now = clock::now();
    let changed = core.store.write(|w| {
        let Some(mut t) = w.get::<TaskRecord>(db::TASKS, key)? else {
            return Ok::<_, EcsError>(None);
        };
        if !check(w, &t)? {
            return Ok(None);
        }
        let Some(event) = event(&t) else {
            return Ok(None);
        };
        let was_stopped = t.last_status == TaskStatus::Stopped;
        let changed = t.apply(&event, now);
        if changed {
            w.put(db::TASKS, key, &t)?;
            if !was_stopped && t.last_status == TaskStatus::Stopped {
                w.delete(db::PLACEMENTS, &db::placement_key(core.host_of(&t), key))?;
            }
            if t.group.starts_with("service:") {
                core.wake_scheduler();
            }
        }
        Ok(changed.then_some((t, was_stopped)))
    })?;
    let Some((t, was_stopped)) = changed else {
        return Ok(false);
    };
    if !was_stopped && t.last_status == TaskStatus::Stopped {
        release(core, &t);
    }
    core.tasks.refresh(&core.store, key)?;
    Ok(true)
}

/// The lease holder records a task of the lost host `host` STOPPED, unless
/// the host came back (its lease, seen lapsed as `lease`, was renewed) or
/// the task is no longer the host's; fenced by `leader`.
pub(crate) fn apply_lost(
    core: &Core,
    key: &str,
    host: &str,
    lease: Option<&LeaseInfo>,
    leader: &Leader,
    reason: &str,
) -> Result<bool, EcsError> {
    apply_checked(
        core,
        key,
        |t| {
            Some(TaskEvent::Stopped {
                stop_code: crate::hosts::lost_stop_code(t).into(),
                stopped_reason: reason.to_owned(),
            })
        },
        |w, t| {
            leader.check(w)?;
            if t.last_status == TaskStatus::Stopped || core.host_of(t) != host {
                return Ok(false);
            }
            let back = match lease {
                Some(l) => w.holds_lease(&crate::hosts::lease_name(host), &l.holder, l.epoch)?,
                None => false,
            };
            Ok(!back)
        },
    )
}

/// Records STOPPED a task of this host that was asked to stop before it
/// was started here (nothing of it ran, nothing is left to release on the
/// host).
pub(crate) fn finish_unstarted(
    core: &Core,
    key: &str,
    code: &str,
    reason: &str,
) -> Result<bool, EcsError> {
    apply_checked(
        core,
        key,
        |_| {
            Some(TaskEvent::Stopped {
                stop_code: code.to_owned(),
                stopped_reason: reason.to_owned(),
            })
        },
        |_, t| Ok(t.desired_status == TaskStatus::Stopped),
    )
}

/// Revokes the role sessions of a task that is STOPPED (its task role's
/// credentials are refused by every API from now on) and frees its ENI
/// (its address goes back to the subnet). Idempotent.
pub(super) fn release(core: &Core, t: &TaskRecord) {
    if !t.roles.is_empty() {
        core.identity.roles.release(t.arn());
    }
    if t.plan.network.is_some() {
        core.networks.detach(&t.eni_id);
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{env, source_doc};
    use ferry_proto::plan::TaskEvent;

    #[test]
    fn events_move_the_task_and_a_sink_may_outlive_the_service() {
        let e = env();
        e.ok("RegisterTaskDefinition", source_doc());
        let arn = e.run_one();
        let sink = e.sink(0);
        sink(TaskEvent::Provisioned {
            private_ip: "198.18.0.4".into(),
        });
        assert_eq!(e.describe(&arn)["lastStatus"], "PENDING");
        let (rt, store) = (e.rt.clone(), e.store.clone());
        drop(e.svc);
        // The service is gone: the event is dropped, nothing panics.
        sink(TaskEvent::Running);
        let t: crate::model::task::TaskRecord = store
            .get(
                crate::db::TASKS,
                &crate::db::task_key("default", &rt.started.lock().unwrap()[0].0.task_id),
            )
            .unwrap()
            .unwrap();
        assert_eq!(t.last_status, crate::model::task::TaskStatus::Pending);
    }
}
