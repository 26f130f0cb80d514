//! The control plane's side of the agent boundary.
//!
//! The control plane records a task, builds its [`TaskPlan`] and calls
//! [`TaskRuntime::start`]. From then on the runtime owns the task's
//! resources and reports what happens through the [`EventSink`]; the control
//! plane applies each [`TaskEvent`] to the task record (lastStatus,
//! timestamps, containers, stopCode). The control plane never touches
//! volumes, namespaces or processes itself.
//!
//! # Contract for implementors
//!
//! - [`TaskRuntime::start`] must return promptly (do the work on your own
//!   thread); it is called after the task record is durably written, with no
//!   lock held, so the sink may be called from any thread, even before
//!   `start` returns.
//! - Report events in order: `Provisioned` (network + volume ready), then
//!   `ContainerRunning` per container, `Running` once every essential
//!   container runs, `ContainerExited` per container, and finally exactly
//!   one `Stopped` once everything of the task is released (volume
//!   crypto-shredded, namespace gone). A task that fails before `Running`
//!   still ends with `Stopped { stop_code: "TaskFailedToStart", .. }` and a
//!   `stopped_reason` a user can act on (e.g. "image httpd:2.4 not found").
//! - When an essential container exits, stop the rest of the task yourself
//!   (as Fargate does) and report `Stopped` with
//!   `EssentialContainerExited`; the control plane also records that code
//!   as soon as it sees the essential `ContainerExited`.
//! - [`TaskRuntime::stop`] is a request: idempotent, returns promptly, and
//!   is answered by the usual `ContainerExited`/`Stopped` events. The
//!   control plane has already recorded `desiredStatus STOPPED`, the stop
//!   code and the reason; the `stop_code` in your `Stopped` event is only
//!   used if none was recorded. Stopping an unknown task is a no-op.
//! - [`TaskRuntime::reattach`] is called once per unfinished task when the
//!   server starts (see `docs/control-plane.md`, "Restart"). Return
//!   [`Reattach::Adopted`] if the task's supervisor is still alive and you
//!   will keep reporting its events through the new sink, or
//!   [`Reattach::Gone`] if nothing of it is left (the control plane then
//!   marks it STOPPED). A runtime that had released the task's resources but
//!   could not report `Stopped` before the restart returns `Gone`.
//! - Events after `Stopped`, and events that would move a task backwards,
//!   are ignored, so a runtime need not de-duplicate.

use std::sync::Arc;

use ferry_proto::plan::{TaskEvent, TaskPlan};

/// Where a runtime reports a task's events. Cheap to clone; callable from
/// any thread; never blocks for long (one store transaction).
pub type EventSink = Arc<dyn Fn(TaskEvent) + Send + Sync>;

/// How a runtime asks the control plane to stop a task on the host's
/// behalf (`task_arn`, `stop_code`, `reason`): recorded as a StopTask is
/// (desired STOPPED, the code and reason kept), then the runtime's
/// [`TaskRuntime::stop`] is called.
pub type HostStop = Arc<dyn Fn(&str, &str, &str) + Send + Sync>;

/// What became of an unfinished task across a server restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reattach {
    /// The runtime still has the task and reports its events to the new
    /// sink from now on.
    Adopted,
    /// Nothing of the task is left; `reason` says why, in words fit for the
    /// task's `stoppedReason`.
    Gone {
        /// Why the task is gone.
        reason: String,
    },
}

/// Runs tasks. Implemented by the agent; see the module docs for the
/// contract.
pub trait TaskRuntime: Send + Sync {
    /// Starts `plan`'s task and reports its events to `events`.
    fn start(&self, plan: TaskPlan, events: EventSink);

    /// Asks the runtime to stop the task `task_arn`; `stop_code` and
    /// `reason` are the recorded `stopCode` and `stoppedReason`
    /// (`UserInitiated`, `ServiceSchedulerInitiated`, ...).
    fn stop(&self, task_arn: &str, stop_code: &str, reason: &str);

    /// After a server restart: re-adopt the task described by `plan`, which
    /// a previous server started and which is not yet recorded as STOPPED.
    fn reattach(&self, plan: &TaskPlan, events: EventSink) -> Reattach;

    /// Whether the host can take `plan`'s task now (its ephemeral storage,
    /// against the free space of the host's disk). `Err` carries a detail
    /// fit for RunTask's `failures` and a service event. A runtime that
    /// admits a task reserves what it needs until the task ends (or, if
    /// `start` never comes, for a while), so concurrent launches do not
    /// both take the last of the space.
    fn admit(&self, plan: &TaskPlan) -> Result<(), String> {
        let _ = plan;
        Ok(())
    }

    /// Given once by the control plane at start: how the runtime stops a
    /// task whose host resources failed (its storage, say), so the stop
    /// code and reason are recorded before its containers exit.
    fn set_host_stop(&self, stop: HostStop) {
        let _ = stop;
    }
}

/// The runtime of a server without an agent: every task fails to start
/// with a reason that says so. Lets the API run (clusters, task
/// definitions, validation) before the agent is wired in.
#[derive(Debug, Default)]
pub struct Unavailable;

impl TaskRuntime for Unavailable {
    fn start(&self, _plan: TaskPlan, events: EventSink) {
        events(TaskEvent::Stopped {
            stop_code: "TaskFailedToStart".into(),
            stopped_reason: "no task runtime is configured in this ferry server".into(),
        });
    }

    fn stop(&self, _task_arn: &str, _stop_code: &str, _reason: &str) {}

    fn reattach(&self, _plan: &TaskPlan, _events: EventSink) -> Reattach {
        Reattach::Gone {
            reason: "no task runtime is configured in this ferry server".into(),
        }
    }
}
