//! ferry-agent: runs tasks.
//!
//! Entry point ([`task`]): build an [`AgentConfig`] (image store, state
//! directory, runtime, CNI settings, [`logs::LogSink`]), make an
//! [`Agent`], then for each task call
//! [`Agent::run_task`]`(plan, task_root, events)` with the directory where
//! the task's volume is mounted; it returns a [`TaskHandle`] whose
//! [`TaskHandle::stop`]`(stop_code, reason)` stops the task and whose
//! [`TaskHandle::wait`] returns the [`TaskOutcome`] once everything of the
//! task is released. `events` receives [`ferry_proto::plan::TaskEvent`]s, ending with
//! exactly one `Stopped`. [`Agent::run_task_with_storage`] instead takes a
//! [`TaskStorage`] that the agent attaches before the task and detaches
//! after everything else is released. See docs/runtime.md.
//!
//! The plan it runs and the events it reports are the contract types of
//! [`ferry_proto::plan`], shared with the control plane.
//!
//! - [`task`]: the agent and each task's supervisor.
//! - [`image`]: the local image store (import, names, layers, unpacking).
//! - [`bundle`]: OCI runtime spec (`config.json`) for a container.
//! - [`health`]: container health checks (state machine, schedule, `runc exec` probe).
//! - [`runc`]: driving the OCI runtime; exit status via subreaping.
//! - [`shim`]: the per-task shim process that outlives the server, and its protocol.
//! - [`net`]: the task's network namespace and interface (netlink or CNI plugins).
//! - [`cgroup`]: the task's cgroup with its cpu/memory limits.
//! - [`mounts`]: overlay rootfs mounts.
//! - [`recovery`]: per-task records of host resources, for cleanup after a crash.
//! - [`logs`]: container log capture and the [`logs::LogSink`] trait.
//! - [`userns`]: container root as an unprivileged host uid (id ranges, the task's bind for runc).

// Nothing here needs unsafe: system calls go through nix.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod cgroup;
pub mod health;
pub mod image;
pub mod logs;
pub mod mounts;
pub mod net;
pub mod recovery;
pub mod runc;
pub mod shim;
pub mod task;
pub mod userns;

pub use task::{
    Agent, AgentConfig, AgentError, OwnRegistry, StartTimings, TaskHandle, TaskOutcome, TaskStorage,
};
