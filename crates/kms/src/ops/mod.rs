//! One module per group of operations; each handler takes the parsed
//! request and returns the JSON response (or the AWS error), recording the
//! key ARNs it touched for the audit trail.
//!
//! The operations the platform itself uses (DescribeKey,
//! GenerateDataKeyWithoutPlaintext, CreateGrant, Decrypt, RetireGrant) are
//! typed requests implementing [`crate::service::Operation`]: the JSON
//! handler parses into the typed request and renders its typed output, and
//! [`crate::platform`] calls the same code in-process with no JSON between.

pub mod aliases;
pub mod data;
pub mod grants;
pub mod keys;
pub mod policies;
pub mod rotation;
pub mod tags;

use ferry_proto::authz::{self, Check};
use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};

use crate::error::KmsError;
use crate::keystore::{LiveKey, Request};
use crate::model::{KeyRecord, KeyState};
use crate::params::Params;
use crate::service::{Kms, Trail};

/// Adds `"DryRun": true` to an audited request when it was a dry run (as
/// the request's own JSON would carry it).
pub fn with_dry_run(mut v: Value, dry_run: bool) -> Value {
    if dry_run {
        v["DryRun"] = json!(true);
    }
    v
}

/// `KeyMetadata`: what DescribeKey (and the key-creating operations)
/// return about a key.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    /// The owning account.
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    /// The key id.
    pub key_id: String,
    /// The key ARN.
    pub arn: String,
    /// Creation time, epoch seconds.
    pub creation_date: f64,
    /// Whether the key state is Enabled.
    pub enabled: bool,
    /// The description.
    pub description: String,
    /// Always `ENCRYPT_DECRYPT` (ferry's keys are symmetric).
    pub key_usage: &'static str,
    /// `Enabled`, `Disabled`, `PendingDeletion`.
    pub key_state: &'static str,
    /// Always `AWS_KMS`.
    pub origin: &'static str,
    /// `CUSTOMER` or `AWS`.
    pub key_manager: String,
    /// Always `SYMMETRIC_DEFAULT` (the old name of `KeySpec`).
    pub customer_master_key_spec: &'static str,
    /// Always `SYMMETRIC_DEFAULT`.
    pub key_spec: &'static str,
    /// `["SYMMETRIC_DEFAULT"]`.
    pub encryption_algorithms: [&'static str; 1],
    /// Always false.
    pub multi_region: bool,
    /// When a key pending deletion is deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    /// The current key material's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key_material_id: Option<String>,
}

impl KeyMetadata {
    /// The metadata of a stored key.
    pub fn of(rec: &KeyRecord) -> Self {
        Self {
            aws_account_id: rec.account.clone(),
            key_id: rec.key_id.clone(),
            arn: rec.arn.clone(),
            creation_date: rec.created,
            enabled: rec.state == KeyState::Enabled,
            description: rec.description.clone(),
            key_usage: "ENCRYPT_DECRYPT",
            key_state: rec.state.as_str(),
            origin: "AWS_KMS",
            key_manager: rec.key_manager.clone(),
            customer_master_key_spec: "SYMMETRIC_DEFAULT",
            key_spec: "SYMMETRIC_DEFAULT",
            encryption_algorithms: ["SYMMETRIC_DEFAULT"],
            multi_region: false,
            deletion_date: rec.deletion_date,
            current_key_material_id: rec.current().map(|c| c.id.clone()),
        }
    }

    /// `{"KeyMetadata": ...}`, the response of the operations that return it.
    pub fn response(&self) -> Value {
        json!({ "KeyMetadata": self })
    }
}

/// AWS's key policy size quota, in bytes.
pub const MAX_POLICY_BYTES: usize = 32 * 1024;

/// Refuses a key policy over AWS's 32 KB quota, as AWS does (the model's
/// 131,072-character bound is the wire limit, not the quota).
pub fn check_policy_size(text: &str) -> Result<(), AwsError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(AwsError::client(
            "LimitExceededException",
            format!(
                "The key policy is {} bytes; the limit is {MAX_POLICY_BYTES} bytes.",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Validates `GrantTokens`: at most 10, each naming an existing grant.
pub fn check_grant_tokens(kms: &Kms, p: &Params<'_>) -> Result<(), AwsError> {
    let Some(tokens) = p.opt_list("GrantTokens", 0, 10)? else {
        return Ok(());
    };
    let st = kms.keys.state();
    for t in &tokens {
        if t.is_empty() || t.len() > 8192 || !st.grants.values().any(|g| &g.token == t) {
            return Err(KmsError::invalid_grant_token());
        }
    }
    Ok(())
}

/// Refuses changes to the platform-managed key that AWS refuses for AWS
/// managed keys.
pub fn refuse_aws_managed(key: &LiveKey, what: &str) -> Result<(), AwsError> {
    if key.aws_managed() {
        return Err(KmsError::unsupported(format!(
            "{} is an AWS managed key; you cannot {what} it.",
            key.rec.arn
        )));
    }
    Ok(())
}

/// Authorizes an operation on no particular key (CreateKey, ListKeys,
/// ListAliases, GenerateRandom) with resource `*`, as AWS does: an IAM
/// user or role session needs an identity policy that allows `kms:ACTION`;
/// the administrator may (unless an identity policy denies, which it has
/// none of); service principals may not (ferry's own key use needs none
/// of these).
pub fn authorize_account_op(ctx: &RequestContext, action: &str) -> Result<(), AwsError> {
    let full = format!("kms:{action}");
    authz::authorize(&ctx.caller, &Check::new(&full, "*"), None)
        .map_err(|d| d.into_error("AccessDeniedException"))
}

/// Records the key's ARN for the audit trail and authorizes `action` on it
/// (with no request context): how most key operations start.
pub fn authorize(
    kms: &Kms,
    ctx: &RequestContext,
    res: &mut Trail,
    key: &LiveKey,
    action: &str,
) -> Result<(), AwsError> {
    res.push(key.rec.arn.clone());
    kms.keys.authorize(ctx, key, action, &Request::default())
}
