//! ferry's embedded key management service, speaking the AWS KMS API
//! (`X-Amz-Target: TrentService.*`) as a `ferry_proto::JsonService`.
//!
//! Module map:
//! - [`service`]: the `Kms` service: operation dispatch and auditing.
//! - [`ops`]: one module per group of operations (keys, aliases, data
//!   (crypto), rotation, grants, policies, tags); the ones the platform
//!   uses are typed ([`service::Operation`]).
//! - [`platform`]: the platform's own key use as `fargate.amazonaws.com`
//!   (task volumes, file systems, the logs key, the CreateCluster dry run),
//!   the platform-managed key, the encryption contexts.
//! - [`managed`]: the AWS managed keys of other services
//!   (`alias/aws/secretsmanager`, `alias/aws/ssm`), created on first use.
//! - [`keystore`]: live keys/aliases/grants, write-through to the state
//!   store; `KeyId` resolution; authorization (key policy, then grants).
//! - [`policy`]: the IAM policy grammar (the `ferry-policy` crate), re-exported.
//! - [`blob`]: the ciphertext blob format and the encryption-context AAD.
//! - [`params`]: request parameters with the model's constraints.
//! - [`audit`]: CloudTrail-shaped audit records.
//! - [`audit_file`]: the audit file, appended with group commit.
//! - [`audit_store`]: the audit trail as one table of a shared store
//!   (replicas), appended with the same group commit.
//! - [`audit_read`]: the audit trail read back (the web console): pages,
//!   filters, cursors, a task's records from an incremental index.
//! - [`model`]: stored records.
//! - [`crypto`]: AES-256-GCM and randomness (OpenSSL).
//! - [`asym`]: RSA, ECC and HMAC key material, signatures, RSAES-OAEP (OpenSSL).
//! - [`root_key`]: the root key, the trust anchor that wraps all key material at rest.
//! - [`sealing`]: other services' secrets sealed under the root key
//!   ([`Kms::seal_secret`], [`Kms::unseal_secret`]).
//! - [`harden`]: process protections for a key-holding process.
//! - [`error`]: the KMS error codes and messages.

#![forbid(unsafe_code)]

pub mod asym;
pub mod audit;
pub mod audit_file;
pub mod audit_read;
pub mod audit_store;
pub mod blob;
pub mod crypto;
pub mod error;
pub mod harden;
pub mod keystore;
pub mod managed;
pub mod model;
pub mod ops;
pub mod params;
pub mod platform;
pub use ferry_policy as policy;
pub mod root_key;
pub mod sealing;
pub mod service;

pub use managed::ManagedKey;
pub use platform::{FARGATE_PRINCIPAL, PLATFORM_KEY_ALIAS, Platform};
pub use root_key::RootKey;
pub use service::{Kms, OpenError, TARGET_PREFIX};
