//! ferry-efs: persistent file systems with the Amazon EFS REST-JSON API
//! (`aws efs ...`, SigV4 service name `elasticfilesystem`). See docs/efs.md.
//!
//! Modules:
//! - [`error`]: the EFS errors (REST-JSON shape, HTTP status from the model).
//! - [`model`]: the file-system, access-point and mount-target records kept
//!   in ferry-store.
//! - [`backend`]: the storage behind a file system (the persistent LUKS2
//!   volume, provided by the binary's wiring so this crate needs no KMS).
//! - [`network`]: the VPC side of mount targets (addresses, security
//!   groups), provided by the binary's wiring over the VPC service.
//! - [`client_access`]: what a task may do on a file system
//!   (ClientMount/ClientWrite/ClientRootAccess) under its file-system policy.
//! - [`route`]: method + path + query to an operation.
//! - [`service`]: the operations and the [`ferry_proto::RestService`] hook;
//!   `service::mount_targets` and `service::settings` hold the mount-target
//!   and per-file-system settings operations.

#![forbid(unsafe_code)]

pub mod backend;
pub mod client_access;
pub mod error;
pub mod model;
pub mod network;
pub mod route;
pub mod service;

pub use backend::{Backend, CreatedVolume};
pub use error::EfsError;
pub use network::{Interface, Network};
pub use service::EfsService;
