//! ferry-logs: container logs, readable with `aws logs ...`.
//!
//! The task runtime appends each container's output here (the `awslogs`
//! log driver: group from `awslogs-group`, stream
//! `PREFIX/CONTAINER/TASK_ID`); users read it back over the CloudWatch Logs
//! JSON 1.1 protocol (`X-Amz-Target: Logs_20140328.*`).
//!
//! Log lines are task data, so they are encrypted at rest like the task's
//! storage: every batch of events is sealed with AES-256-GCM under a key the
//! server unwraps from the KMS at start, bound (as AAD) to its group, stream
//! and position so batches cannot be swapped or replayed elsewhere.
//!
//! Modules:
//! - [`service`]: the `JsonService` (routing by operation) and the typed
//!   append API the runtime uses.
//! - `ops`: one module per group of operations (groups, streams, events).
//! - [`seal`]: the at-rest encryption of event batches.
//! - `names`: parsing of log group and stream names.
//! - `filter`: CloudWatch filter patterns (the term subset).
//! - `model`: the stored records.
//! - [`insights`]: Logs Insights queries (parser, executor, registry).
//! - The retention sweep runs on one replica at a time
//!   ([`ferry_store::singleton`]).

#![forbid(unsafe_code)]

mod filter;
pub mod insights;
mod model;
mod names;
mod ops;
pub mod seal;
pub mod service;

pub use seal::{AesGcmSealer, SealError, Sealer};
pub use service::{LogEvent, LogsService};
