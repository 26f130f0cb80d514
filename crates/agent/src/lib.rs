//! ferry-agent: runs tasks.
//!
//! - [`plan`]: the boundary with the control plane: what to run
//!   ([`plan::TaskPlan`]), what happened ([`plan::TaskEvent`]), and the key
//!   provider the agent asks for a task volume's passphrase.
//! - [`image`]: the local image store (import, names, layers, unpacking).
//! - [`bundle`]: OCI runtime spec (`config.json`) for a container.
//! - [`runc`]: driving the OCI runtime; exit status via subreaping.
//! - [`net`]: the task's network namespace and CNI plugins.
//! - [`cgroup`]: the task's cgroup with its cpu/memory limits.
//! - [`mounts`]: overlay rootfs mounts.
//! - [`logs`]: container log capture and the [`logs::LogSink`] trait.
pub mod bundle;
pub mod cgroup;
pub mod image;
pub mod logs;
pub mod mounts;
pub mod net;
pub mod plan;
pub mod runc;
