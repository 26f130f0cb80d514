//! ferry's web console, served by `ferry server` at `/console/`.
//!
//! Module map:
//! - [`data`]: what the console shows that no AWS API answers (a task's
//!   volume and LUKS2 token, the KMS audit trail, the server's storage
//!   policy), as a trait the composition root implements.

#![forbid(unsafe_code)]

pub mod data;
