//! ferry-host: what a ferry server does on its own host with storage and
//! keys, as a library (the `ferry` binary only composes it).
//!
//! Module map:
//! - [`task_volumes`]: each task's ephemeral volume (the agent's
//!   `TaskStorage`): a LUKS2 volume keyed by a fresh KMS data key,
//!   crypto-shredded at the end; or a plain one for platform version 1.3.0.
//! - [`efs`]: EFS-style persistent file systems (the `ferry_efs::Backend`)
//!   and their mounts into tasks, idmapped for access points with a POSIX
//!   user.
//! - [`runtime`]: the control plane's `TaskRuntime` over the agent.
//! - [`recovery`]: the one crash-recovery entry point.
//! - [`remote`]: a host joined to a control plane over the API (`ferry
//!   agent`): registration, re-adoption, the poll loop, the event outbox.
//! - [`keys`]: the key operations host storage needs ([`keys::VolumeKeys`]),
//!   implemented by the KMS's `Platform` (in process) and by
//!   [`keys::remote::ApiKeys`] (over the KMS API, for a remote host; also
//!   the image store's `ferry_blob::BlobKeys`).
//! - [`engine`]: the volume engine ([`engine::VolumeEngine`]), implemented
//!   by ferry-volume's LUKS2 engine ([`engine::Luks2`]).
//! - `sys`: the only `unsafe`: the new mount API calls for idmapped mounts.
//!
//! Keys and volumes sit behind [`keys::VolumeKeys`] and
//! [`engine::VolumeEngine`] so the decisions made here (what is created,
//! released and retired, in which order, on which failure) are unit-tested
//! with fakes; the end-to-end tests run the real ones.

pub mod admission;
pub mod efs;
pub mod engine;
pub mod keys;
pub mod recovery;
pub mod remote;
pub mod runtime;
mod sys;
pub mod task_volumes;

pub use efs::EfsVolumes;
pub use engine::{Luks2, VolumeEngine};
pub use keys::VolumeKeys;
pub use runtime::HostRuntime;
pub use task_volumes::TaskVolumes;

/// `DATA/tasks`: where task volumes live.
pub fn tasks_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("tasks")
}
