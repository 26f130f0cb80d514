//! AWS Secrets Manager (`X-Amz-Target: secretsmanager.*`, SigV4 name
//! `secretsmanager`).
//!
//! Every version's value is sealed under its own data key from the
//! secret's KMS key (`aws/secretsmanager` unless `KmsKeyId`), with the
//! encryption context `{"SecretARN": ARN, "SecretVersionId": VERSION}`;
//! reading it is a KMS Decrypt as the caller, audited. Operations:
//! - [`values`]: GetSecretValue, PutSecretValue, ListSecretVersionIds,
//!   UpdateSecretVersionStage (versions and staging labels);
//! - [`secrets`]: CreateSecret, UpdateSecret, DescribeSecret, ListSecrets,
//!   DeleteSecret, RestoreSecret;
//! - [`meta`]: TagResource, UntagResource, Put/Get/DeleteResourcePolicy,
//!   GetRandomPassword.
//!
//! Authorization: `secretsmanager:ACTION` on the secret's ARN, by the
//! caller's identity policies and the secret's resource policy
//! (`ferry_proto::authz`): an explicit Deny binds the administrator too.

mod errors;
mod meta;
pub(crate) mod model;
mod secrets;
mod values;

use std::sync::Arc;

use ferry_kms::{Kms, ManagedKey};
use ferry_policy::Policy;
use ferry_proto::authz::{Check, authorize};
use ferry_proto::{AwsError, JsonService, RequestContext};
use ferry_store::Store;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::seal::Vault;
use crate::util::now;
pub use model::{AWSCURRENT, AWSPREVIOUS};
use model::{SECRETS, SecretRecord, VALUES, has_suffix};

/// A secret's value as [`SecretsManager::get_secret_value`] returns it.
/// Exactly one of `string` and `binary` is set. Its `Debug` prints no value.
pub struct SecretValue {
    /// The secret's ARN.
    pub arn: String,
    /// The secret's name.
    pub name: String,
    /// The version read.
    pub version_id: String,
    /// `SecretString`, wiped on drop.
    pub string: Option<Zeroizing<String>>,
    /// `SecretBinary`, wiped on drop.
    pub binary: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("arn", &self.arn)
            .field("name", &self.name)
            .field("version_id", &self.version_id)
            .field("string", &self.string.as_ref().map(|_| "<redacted>"))
            .field("binary", &self.binary.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The Secrets Manager service.
pub struct SecretsManager {
    pub(crate) store: Arc<Store>,
    pub(crate) vault: Vault,
    /// `arn:aws:secretsmanager:REGION:ACCOUNT:secret:`
    pub(crate) arn_prefix: String,
}

/// One operation's handler.
type Handler = fn(&SecretsManager, &RequestContext, &[u8]) -> Result<Value, AwsError>;

fn handler(operation: &str) -> Option<Handler> {
    Some(match operation {
        "CreateSecret" => secrets::create,
        "UpdateSecret" => secrets::update,
        "DescribeSecret" => secrets::describe,
        "ListSecrets" => secrets::list,
        "DeleteSecret" => secrets::delete,
        "RestoreSecret" => secrets::restore,
        "GetSecretValue" => values::get,
        "PutSecretValue" => values::put,
        "ListSecretVersionIds" => values::list_versions,
        "UpdateSecretVersionStage" => values::update_stage,
        "TagResource" => meta::tag,
        "UntagResource" => meta::untag,
        "PutResourcePolicy" => meta::put_policy,
        "GetResourcePolicy" => meta::get_policy,
        "DeleteResourcePolicy" => meta::delete_policy,
        "GetRandomPassword" => meta::random_password,
        _ => return None,
    })
}

impl SecretsManager {
    /// Secrets Manager over `store`, sealing with `kms` (whose account and
    /// region it serves). Secrets whose recovery window has passed are
    /// deleted now and whenever they are next looked at.
    pub fn new(store: Arc<Store>, kms: Arc<Kms>) -> Result<Self, AwsError> {
        let arn_prefix = format!(
            "arn:aws:secretsmanager:{}:{}:secret:",
            kms.region(),
            kms.account()
        );
        let sm = Self {
            store,
            vault: Vault::new(kms, ManagedKey::SecretsManager),
            arn_prefix,
        };
        sm.purge_due()?;
        Ok(sm)
    }

    /// Reads a secret's value as `ctx`'s caller: `secret_id` is a name, a
    /// full ARN or a partial ARN (without the random suffix); the version
    /// is `version_id`, else the one with `version_stage`, else
    /// AWSCURRENT. Authorized as `secretsmanager:GetSecretValue` (identity
    /// and resource policies), then the KMS authorizes and audits the
    /// Decrypt of its data key as the caller. The control plane resolves a
    /// container's `secrets` with this, as the task's execution role.
    pub fn get_secret_value(
        &self,
        ctx: &RequestContext,
        secret_id: &str,
        version_id: Option<&str>,
        version_stage: Option<&str>,
    ) -> Result<SecretValue, AwsError> {
        values::fetch(self, ctx, secret_id, version_id, version_stage).map(|f| f.value)
    }

    /// The secret `secret_id` names (name, full ARN or partial ARN), if it
    /// exists. A secret whose recovery window has passed is deleted here.
    pub(crate) fn find(&self, secret_id: &str) -> Result<Option<SecretRecord>, AwsError> {
        let rec = if let Some(rest) = secret_id.strip_prefix(&self.arn_prefix) {
            // A full ARN names the secret with its suffix; a partial ARN
            // (without the suffix) names it by name.
            let full = if has_suffix(rest) {
                self.get(&rest[..rest.len() - 7])?
                    .filter(|r| r.arn == secret_id)
            } else {
                None
            };
            match full {
                Some(r) => Some(r),
                None => self.get(rest)?,
            }
        } else if secret_id.starts_with("arn:") {
            // Another account's or region's secret: none here.
            None
        } else {
            self.get(secret_id)?
        };
        match rec {
            Some(r) if r.delete_after.is_some_and(|t| t <= now()) => {
                self.purge_if_due(&r)?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    fn get(&self, name: &str) -> Result<Option<SecretRecord>, AwsError> {
        self.store.get(SECRETS, name).map_err(errors::store)
    }

    /// Finds the secret and authorizes `action` on it. A missing secret is
    /// `ResourceNotFoundException` only for a caller who may do `action`
    /// on such a name: others learn nothing about which secrets exist.
    pub(crate) fn resolve(
        &self,
        ctx: &RequestContext,
        secret_id: &str,
        action: &str,
        keys: &[(&str, Vec<String>)],
    ) -> Result<SecretRecord, AwsError> {
        crate::util::check_len("secretId", secret_id, 1, 2048)?;
        let Some(rec) = self.find(secret_id)? else {
            let resource = if secret_id.starts_with("arn:") {
                secret_id.to_owned()
            } else {
                format!("{}{secret_id}", self.arn_prefix)
            };
            let check = Check::new(action, &resource);
            authorize(&ctx.caller, &check, None)
                .map_err(|d| d.into_error("AccessDeniedException"))?;
            return Err(errors::not_found());
        };
        self.authorize(ctx, action, &rec, keys)?;
        Ok(rec)
    }

    /// Authorizes `action` on `rec` with its resource policy, its tags as
    /// `aws:ResourceTag/KEY` and `secretsmanager:ResourceTag/KEY`, its ARN
    /// as `secretsmanager:SecretId`, and `keys`.
    pub(crate) fn authorize(
        &self,
        ctx: &RequestContext,
        action: &str,
        rec: &SecretRecord,
        keys: &[(&str, Vec<String>)],
    ) -> Result<(), AwsError> {
        let policy = match &rec.policy {
            Some(text) => Some(Policy::parse(text).map_err(|_| {
                AwsError::server(
                    "InternalServiceError",
                    "the secret's stored resource policy does not parse",
                )
            })?),
            None => None,
        };
        let mut check =
            Check::new(action, &rec.arn).key("secretsmanager:SecretId", vec![rec.arn.clone()]);
        for t in &rec.tags {
            check = check
                .key(&format!("aws:ResourceTag/{}", t.key), vec![t.value.clone()])
                .key(
                    &format!("secretsmanager:ResourceTag/{}", t.key),
                    vec![t.value.clone()],
                );
        }
        for (k, v) in keys {
            check = check.key(k, v.clone());
        }
        authorize(&ctx.caller, &check, policy.as_ref())
            .map_err(|d| d.into_error("AccessDeniedException"))
    }

    /// Deletes a secret and all its values now.
    pub(crate) fn purge(&self, rec: &SecretRecord) -> Result<(), AwsError> {
        self.purge_where(rec, |_| true)
    }

    /// Deletes a secret whose recovery window has passed, deciding on the
    /// record the write transaction reads: a secret restored meanwhile
    /// (through another replica) stays. The purge is lazy (at start, when
    /// a secret is looked at, ListSecrets) on whichever replica is asked;
    /// deciding in the serialized transaction makes replicas racing delete
    /// it once, so it needs no lease.
    pub(crate) fn purge_if_due(&self, rec: &SecretRecord) -> Result<(), AwsError> {
        let t = now();
        self.purge_where(rec, |cur| cur.delete_after.is_some_and(|d| d <= t))
    }

    fn purge_where(
        &self,
        rec: &SecretRecord,
        still: impl Fn(&SecretRecord) -> bool,
    ) -> Result<(), AwsError> {
        self.store
            .write(|w| {
                // Only this incarnation of the name: a secret re-created
                // meanwhile has another ARN.
                match w.get::<SecretRecord>(SECRETS, &rec.name)? {
                    Some(cur) if cur.arn == rec.arn && still(&cur) => {
                        w.delete(SECRETS, &rec.name)?;
                    }
                    // Restored meanwhile: nothing goes.
                    Some(cur) if cur.arn == rec.arn => return Ok(()),
                    _ => {}
                }
                for (k, _) in w.scan::<Value>(VALUES, &format!("{}|", rec.arn))? {
                    w.delete(VALUES, &k)?;
                }
                Ok::<_, ferry_store::StoreError>(())
            })
            .map_err(errors::store)
    }

    /// Deletes every secret whose recovery window has passed.
    pub(crate) fn purge_due(&self) -> Result<(), AwsError> {
        let t = now();
        let all: Vec<(String, SecretRecord)> =
            self.store.scan(SECRETS, "").map_err(errors::store)?;
        for (_, rec) in all {
            if rec.delete_after.is_some_and(|d| d <= t) {
                self.purge_if_due(&rec)?;
            }
        }
        Ok(())
    }
}

/// `rec`'s record as it is now in the write transaction `w`: the same
/// secret (not one re-created under its name since), or not found.
pub(crate) fn current(
    w: &ferry_store::WriteTxn<'_>,
    rec: &SecretRecord,
) -> Result<SecretRecord, AwsError> {
    w.get::<SecretRecord>(SECRETS, &rec.name)
        .map_err(errors::store)?
        .filter(|c| c.arn == rec.arn)
        .ok_or_else(errors::not_found)
}

impl JsonService for SecretsManager {
    fn target_prefix(&self) -> &'static str {
        "secretsmanager"
    }

    // Every operation is authorized per secret with its resource policy
    // (`ferry_proto::authz`), not by the listener's action gate.
    fn authorizes_itself(&self) -> bool {
        true
    }

    fn call(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> Result<Value, AwsError> {
        match handler(operation) {
            Some(h) => h(self, ctx, body),
            None => Err(AwsError::unknown_operation(&format!(
                "secretsmanager.{operation}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
