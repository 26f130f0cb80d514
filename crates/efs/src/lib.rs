//! ferry-efs: persistent file systems with the Amazon EFS REST-JSON API
//! (`aws efs ...`, SigV4 service name `elasticfilesystem`). See docs/efs.md.
//!
//! Modules:
//! - [`error`]: the EFS errors (REST-JSON shape, HTTP status from the model).
//! - [`model`]: the file-system and access-point records kept in ferry-store.
//! - [`backend`]: the storage behind a file system (the persistent LUKS2
//!   volume, provided by the binary's wiring so this crate needs no KMS).
//! - [`route`]: method + path + query to an operation.
//! - [`service`]: the operations and the [`ferry_proto::RestService`] hook.

#![forbid(unsafe_code)]

pub mod backend;
pub mod error;
pub mod model;
pub mod route;
pub mod service;

pub use backend::{Backend, CreatedVolume};
pub use error::EfsError;
pub use service::EfsService;
