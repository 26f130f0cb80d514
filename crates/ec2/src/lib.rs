//! ferry's VPC service: the EC2 API subset that defines a task's network
//! (VPCs, subnets, security groups and their rules, the tasks' ENIs,
//! tags, availability zones) over the EC2 query protocol, and the typed
//! in-process API RunTask ([`Ec2::attach`], [`Ec2::detach`]) and the task
//! firewall ([`Ec2::firewall_rules`], [`Ec2::on_rules_changed`]) use.
//! See docs/vpc.md.
//!
//! Module map:
//! - [`ec2`]: the state ([`Ec2`]): durable in the state store (`ec2_*`
//!   tables), live in memory; the default VPC; ENI allocation; the
//!   firewall view.
//! - [`api`]: the query service ([`Ec2Service`]) and its action map.
//! - `ops`: the operations, one module per resource (`vpcs`, `subnets`,
//!   `groups` with their rules, `enis`, `tags`, `zones`), and what they
//!   share (filters, pagination, `DryRun`, tag specifications).
//! - [`model`]: the stored records; [`error`]: the errors.

#![forbid(unsafe_code)]

pub mod api;
pub mod ec2;
pub mod error;
pub mod model;
mod ops;

pub use api::Ec2Service;
pub use ec2::{AttachRequest, Ec2, ServiceEniRequest};
pub use error::{ApiError, AttachError, Ec2Error, ServiceEniError};

/// A timestamp as EC2 answers it (`2024-05-01T12:00:00.000Z`).
pub(crate) fn fmt_time(unix: i64) -> String {
    const F: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(F).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
