//! The platform's own use of keys: what Fargate does with KMS keys on a
//! task's behalf, as the service principal `fargate.amazonaws.com`.
//!
//! This module owns the Fargate principal, the data-key sizes, the
//! encryption contexts ([`context`]), the platform-managed key (created on
//! first start, its ARN resolved once), and the dry-run check Fargate makes
//! at CreateCluster. Every call goes through the KMS's typed operations
//! ([`Kms::execute`]): the same authorization (key policies, grants) and
//! the same audit record as a call over HTTP, with no JSON or base64 in
//! between. Plaintext keys come back as [`Zeroizing`] bytes.
//!
//! The task-volume flow ([`Platform::issue`]):
//! `GenerateDataKeyWithoutPlaintext` (64 bytes) under the cluster's key,
//! `CreateGrant` (Decrypt only, for exactly the task's context), `Decrypt`;
//! at teardown [`Platform::retire`] (`RetireGrant`, by the key ARN kept from
//! the first call).

pub mod context;
mod key;
mod logs_key;

use std::sync::Arc;

use ferry_proto::{AwsError, Caller, RequestContext};
use zeroize::Zeroizing;

pub use context::EncryptionContext;
pub use key::{ensure_platform_key, platform_policy};
pub use logs_key::LogsKeyError;

use crate::error::KmsError;
use crate::model::Constraints;
use crate::ops::KeyMetadata;
use crate::ops::data::{Decrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext};
use crate::ops::grants::{CreateGrant, GrantCreated, RetireGrant};
use crate::ops::keys::DescribeKey;
use crate::service::{Kms, Operation};

/// The platform key's alias.
pub const PLATFORM_KEY_ALIAS: &str = "alias/aws/ecs-ephemeral";

/// The service principal the platform acts as.
pub const FARGATE_PRINCIPAL: &str = "fargate.amazonaws.com";

/// A volume's data key: 512 bits, the LUKS2 keyslot passphrase
/// (docs/volume-format.md).
pub const VOLUME_KEY_BYTES: usize = 64;

/// The container-logs sealing key: 256 bits (AES-256-GCM).
pub const LOGS_KEY_BYTES: usize = 32;

/// An image-store blob's data key: 256 bits (AES-256-GCM, ferry_blob).
pub const BLOB_KEY_BYTES: usize = 32;

/// A data key sealed under a KMS key: what a volume's token records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The ARN of the KMS key that sealed it.
    pub key_arn: String,
    /// The ciphertext blob (not secret without KMS access).
    pub ciphertext_blob: Vec<u8>,
    /// The encryption context it is bound to.
    pub encryption_context: EncryptionContext,
}

/// A fresh data key for a task volume, unwrapped under a grant that stays
/// until [`Platform::retire`]. No `Debug`: it holds the plaintext.
pub struct IssuedKey {
    /// The plaintext data key; wiped on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The same key, sealed.
    pub wrapped: WrappedKey,
    /// The Decrypt grant made for it.
    pub grant_id: String,
}

/// Why a platform key operation failed. Its `Display` is fit for a task's
/// `stoppedReason` (it names the operation and the KMS's error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// The KMS refused or failed.
    #[error("KMS {operation} failed: {}: {}", error.code, error.message)]
    Kms {
        /// The operation.
        operation: &'static str,
        /// The KMS's error.
        error: AwsError,
    },
    /// Decrypt returned a key of another length than was sealed.
    #[error("KMS Decrypt returned a data key of the wrong length")]
    WrongLength,
    /// A dry run was carried out for real (a KMS fault).
    #[error("{0} ignored DryRun")]
    DryRunIgnored(&'static str),
    /// A KMS reached over the network (a remote host's keys,
    /// `ferry_host::keys::remote`) could not be asked, or answered outside
    /// its API model: there is no KMS error to pass on, so
    /// [`PlatformError::kms_error`] is `None`.
    #[error("KMS {operation} failed: {detail}")]
    Remote {
        /// The operation.
        operation: &'static str,
        /// What went wrong (unreachable endpoint, malformed answer).
        detail: String,
    },
}

impl PlatformError {
    /// The KMS's own error, when it refused.
    pub fn kms_error(&self) -> Option<&AwsError> {
        match self {
            Self::Kms { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The platform's key operations over one KMS. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    kms: Arc<Kms>,
    fargate: RequestContext,
    account: RequestContext,
}

impl Platform {
    /// The platform acting on `kms` (whose account and region it serves).
    pub fn new(kms: Arc<Kms>) -> Self {
        let (account, region) = (kms.account().to_owned(), kms.region().to_owned());
        Self {
            fargate: RequestContext::internal(
                Caller::service(account.clone(), FARGATE_PRINCIPAL),
                region.clone(),
            ),
            account: RequestContext::internal(Caller::admin(account), region),
            kms,
        }
    }

    /// The account the platform serves.
    pub fn account(&self) -> &str {
        &self.fargate.caller.account
    }

    /// The ARN of the platform-managed key, resolved when the KMS opened:
    /// it cannot move or go away (see [`key`]), so tasks need no
    /// DescribeKey to find it.
    pub fn platform_key_arn(&self) -> &str {
        self.kms.platform_key_arn()
    }

    fn run<O: Operation>(&self, ctx: &RequestContext, op: &O) -> Result<O::Output, PlatformError> {
        self.kms
            .execute(ctx, op)
            .map_err(|error| PlatformError::Kms {
                operation: O::NAME,
                error,
            })
    }

    /// `GenerateDataKeyWithoutPlaintext` as Fargate: a new data key of
    /// `bytes` bytes under `key_id`, sealed, for `context`.
    pub fn new_wrapped_key(
        &self,
        key_id: &str,
        context: EncryptionContext,
        bytes: usize,
    ) -> Result<WrappedKey, PlatformError> {
        let out = self.run(
            &self.fargate,
            &GenerateDataKeyWithoutPlaintext {
                key_id,
                encryption_context: &context,
                number_of_bytes: bytes,
                dry_run: false,
            },
        )?;
        Ok(WrappedKey {
            key_arn: out.key_arn,
            ciphertext_blob: out.ciphertext_blob,
            encryption_context: context,
        })
    }

    /// A Decrypt-only grant to Fargate for exactly `w`'s context.
    fn grant_decrypt(&self, w: &WrappedKey) -> Result<GrantCreated, PlatformError> {
        self.run(
            &self.fargate,
            &CreateGrant {
                key_id: &w.key_arn,
                grantee: FARGATE_PRINCIPAL,
                retiring: Some(FARGATE_PRINCIPAL),
                operations: vec!["Decrypt".into()],
                name: None,
                constraints: Some(Constraints {
                    subset: None,
                    equals: Some(w.encryption_context.clone()),
                }),
                dry_run: false,
            },
        )
    }

    /// `Decrypt` of `w` by `ctx`, checked to be `len` bytes.
    fn decrypt(
        &self,
        ctx: &RequestContext,
        w: &WrappedKey,
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        let out = self.run(
            ctx,
            &Decrypt {
                ciphertext_blob: &w.ciphertext_blob,
                encryption_context: &w.encryption_context,
                key_id: None,
                dry_run: false,
            },
        )?;
        if out.plaintext.len() != len {
            return Err(PlatformError::WrongLength);
        }
        Ok(out.plaintext)
    }

    /// A fresh 64-byte data key for a task volume under `key_arn`, and the
    /// grant that let Fargate unwrap it. On failure no grant is left live.
    pub fn issue(
        &self,
        key_arn: &str,
        context: EncryptionContext,
    ) -> Result<IssuedKey, PlatformError> {
        let wrapped = self.new_wrapped_key(key_arn, context, VOLUME_KEY_BYTES)?;
        let grant = self.grant_decrypt(&wrapped)?;
        match self.decrypt(&self.fargate, &wrapped, VOLUME_KEY_BYTES) {
            Ok(plaintext) => Ok(IssuedKey {
                plaintext,
                wrapped,
                grant_id: grant.grant_id,
            }),
            Err(e) => {
                // Don't leave a live grant behind for a task that won't start.
                let _ = self.retire(&wrapped.key_arn, &grant.grant_id);
                Err(e)
            }
        }
    }

    /// Retires a grant [`Platform::issue`] made (`RetireGrant` by key ARN
    /// and grant id, as its retiring principal).
    pub fn retire(&self, key_arn: &str, grant_id: &str) -> Result<(), PlatformError> {
        self.run(
            &self.fargate,
            &RetireGrant {
                key_id: Some(key_arn),
                grant_id: Some(grant_id),
                ..RetireGrant::default()
            },
        )
    }

    /// Unwraps a 64-byte volume key under a grant that lives only for the
    /// call (CreateGrant, Decrypt, RetireGrant): a persistent volume's key
    /// at mount, so a disabled key or a changed policy stops new mounts.
    pub fn unwrap_volume_key(&self, w: &WrappedKey) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        let grant = self.grant_decrypt(w)?;
        let plain = self.decrypt(&self.fargate, w, VOLUME_KEY_BYTES);
        let retired = self.run(
            &self.fargate,
            &RetireGrant {
                grant_token: Some(&grant.grant_token),
                ..RetireGrant::default()
            },
        );
        let plain = plain?;
        retired?;
        Ok(plain)
    }

    /// `Decrypt` as the account's administrator, whom the platform key's
    /// policy lets decrypt data keys of its own ECS contexts (the logs key
    /// at every start).
    pub fn unwrap_as_account(
        &self,
        w: &WrappedKey,
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        self.decrypt(&self.account, w, len)
    }

    /// `GenerateDataKey` as Fargate under the platform key: a fresh 256-bit
    /// data key for one blob of the host's image store, and its sealed
    /// form. `context` is [`context::image_store`]'s (the key policy allows
    /// no other).
    pub fn new_image_blob_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), PlatformError> {
        let out = self.run(
            &self.fargate,
            &GenerateDataKey {
                key_id: self.platform_key_arn(),
                encryption_context: context,
                number_of_bytes: BLOB_KEY_BYTES,
                dry_run: false,
            },
        )?;
        Ok((out.plaintext, out.ciphertext_blob))
    }

    /// `Decrypt` as Fargate of an image-store blob's data key.
    pub fn open_image_blob_key(
        &self,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        let w = WrappedKey {
            key_arn: self.platform_key_arn().to_owned(),
            ciphertext_blob: ciphertext_blob.to_vec(),
            encryption_context: context.clone(),
        };
        self.decrypt(&self.fargate, &w, BLOB_KEY_BYTES)
    }

    /// `DescribeKey` as Fargate.
    pub fn describe(&self, key_id: &str) -> Result<KeyMetadata, PlatformError> {
        self.run(&self.fargate, &DescribeKey { key_id })
    }

    /// The ARN of the key `key_id` names, as `caller` may see it (a user
    /// naming a key for the platform to use must be allowed to describe it).
    pub fn key_arn_for(&self, caller: &RequestContext, key_id: &str) -> Result<String, AwsError> {
        self.kms
            .execute(caller, &DescribeKey { key_id })
            .map(|m| m.arn)
    }

    /// Fargate's check at CreateCluster/UpdateCluster: with `DryRun`,
    /// `GenerateDataKeyWithoutPlaintext` and `CreateGrant` (Decrypt) under
    /// `key_arn` for the cluster's context. Fails with the KMS's reason when
    /// the key policy (or the key's state) would stop tasks from getting
    /// data keys.
    pub fn dry_run_for_cluster(&self, key_arn: &str, cluster: &str) -> Result<(), PlatformError> {
        let context = context::cluster(self.account(), cluster);
        self.dry_run(&GenerateDataKeyWithoutPlaintext {
            key_id: key_arn,
            encryption_context: &context,
            number_of_bytes: VOLUME_KEY_BYTES,
            dry_run: true,
        })?;
        self.dry_run(&CreateGrant {
            key_id: key_arn,
            grantee: FARGATE_PRINCIPAL,
            retiring: None,
            operations: vec!["Decrypt".into()],
            name: None,
            constraints: Some(Constraints {
                subset: Some(context.clone()),
                equals: None,
            }),
            dry_run: true,
        })
    }

    /// A dry run passes when every check passed, which the KMS says with
    /// `DryRunOperationException` (and audits, as AWS does).
    fn dry_run<O: Operation>(&self, op: &O) -> Result<(), PlatformError> {
        match self.kms.execute(&self.fargate, op) {
            Err(e) if KmsError::is_dry_run(&e) => Ok(()),
            Err(error) => Err(PlatformError::Kms {
                operation: O::NAME,
                error,
            }),
            Ok(_) => Err(PlatformError::DryRunIgnored(O::NAME)),
        }
    }
}
