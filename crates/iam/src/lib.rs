//! ferry's identity layer: IAM roles, users, access keys and policies, and
//! STS sessions, spoken over the AWS query protocol (form-encoded POST, XML
//! answers) as the AWS CLI and SDKs speak to `iam` and `sts`; and the
//! credential table every request to ferry is authenticated against.
//!
//! Module map:
//! - [`iam`]: the identity store ([`Iam`]): durable in the state store,
//!   live in memory; authentication ([`Iam::authenticate`]); sessions
//!   ([`Iam::assume_role`], [`Iam::assume_role_for_service`],
//!   [`Iam::revoke_owner`]); remote agents' service keys
//!   ([`Iam::create_agent_key`]); the [`Sealer`] that keeps secrets sealed.
//! - [`trust`]: trust policies and who may assume a role.
//! - [`managed`]: the built-in AWS managed policies.
//! - [`api`]: the IAM query service ([`IamService`]).
//! - [`sts`]: the STS query service ([`StsService`]).
//! - [`model`]: stored records; [`validate`]: the models' constraints;
//!   [`ids`]: AWS-shaped ids and secrets; [`error`]: the error codes.

#![forbid(unsafe_code)]

pub mod api;
pub mod error;
pub mod iam;
pub mod ids;
pub mod managed;
pub mod model;
pub mod sts;
pub mod trust;
pub mod validate;

pub use api::IamService;
pub use iam::{
    AGENT_PRINCIPAL, AssumeRoleRequest, AssumedRole, AuthRefusal, Iam, Sealer, SessionCredentials,
};
pub use sts::StsService;

#[cfg(test)]
mod tests;
