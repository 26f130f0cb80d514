//! ferry-secrets: AWS Secrets Manager (`X-Amz-Target: secretsmanager.*`)
//! and SSM Parameter Store (`AmazonSSM.*`) as `ferry_proto::JsonService`s,
//! every secret value sealed under a KMS data key asked for as the caller.
//!
//! Module map:
//! - [`seal`]: the sealed form of a value and the [`seal::Vault`] that
//!   seals and opens values through ferry's KMS (as the caller, via the
//!   service, with AWS's encryption contexts).
//! - [`sm`]: Secrets Manager: secrets, versions and staging labels,
//!   deletion with a recovery window, tags, resource policies; the
//!   in-process [`SecretsManager::get_secret_value`].
//! - [`ssm`]: Parameter Store: String, StringList and SecureString
//!   parameters, versions, paths; the in-process [`Ssm::get_parameter`].
//! - `util`: time, tags, pagination tokens and the model's validation
//!   messages, shared by both.
//!
//! Both services authorize every operation with `ferry_proto::authz` (the
//! caller's identity policies and, for secrets, the secret's resource
//! policy); the KMS then authorizes each key use on its own.

#![forbid(unsafe_code)]

pub mod seal;
pub mod sm;
pub mod ssm;
mod util;

#[cfg(test)]
mod testkit;

pub use sm::{SecretValue, SecretsManager};
pub use ssm::{ParameterType, ParameterValue, Ssm};
