//! ferry's web console, served by `ferry server` at `/console/`.
//!
//! Module map:
//! - [`server`]: the HTTP front (assets, sign-in/out, session and CSRF
//!   checks, security headers) and the endpoints' routing.
//! - [`session`]: the session table, its cookie and CSRF tokens.
//! - `call`: the AWS operations the page may call, as the signed-in
//!   principal, through the API's own authorization.
//! - `task`, `audit`, `compliance`: the endpoints that add what no AWS
//!   API shows (a task's storage and key trail, the KMS audit trail, the
//!   encryption summary).
//! - [`data`]: what those need from the host and the KMS, as traits the
//!   composition root implements.
//! - `assets`: the page, script and style sheet, built in.
//!
//! See docs/console.md for the design.

#![forbid(unsafe_code)]

mod assets;
mod audit;
mod call;
mod compliance;
pub mod data;
pub mod server;
pub mod session;
mod task;

pub use server::Console;
