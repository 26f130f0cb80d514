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
pub mod asymmetric;
pub mod data;
pub mod grants;
pub mod import;
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
    /// `ENCRYPT_DECRYPT`, `SIGN_VERIFY` or `GENERATE_VERIFY_MAC`.
    pub key_usage: &'static str,
    /// `Enabled`, `Disabled`, `PendingDeletion`, `PendingImport`.
    pub key_state: &'static str,
    /// `AWS_KMS` or `EXTERNAL`.
    pub origin: String,
    /// `CUSTOMER` or `AWS`.
    pub key_manager: String,
    /// The key spec (the old name of `KeySpec`).
    pub customer_master_key_spec: &'static str,
    /// The key spec.
    pub key_spec: &'static str,
    /// For encryption keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_algorithms: Option<&'static [&'static str]>,
    /// For signing keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_algorithms: Option<&'static [&'static str]>,
    /// For HMAC keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_algorithms: Option<&'static [&'static str]>,
    /// Always false.
    pub multi_region: bool,
    /// When a key pending deletion is deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    /// When imported material expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<f64>,
    /// Imported keys with material: whether it expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_model: Option<String>,
    /// The current key material's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key_material_id: Option<String>,
}

impl KeyMetadata {
    /// The metadata of a stored key.
    pub fn of(rec: &KeyRecord) -> Self {
        let spec = crate::asym::Spec::parse(&rec.key_spec).unwrap_or(crate::asym::Spec::Symmetric);
        let usage = rec.key_usage.as_str();
        let some = |a: &'static [&'static str]| (!a.is_empty()).then_some(a);
        let state = rec.state_at(crate::model::now());
        let material = state != KeyState::PendingImport;
        Self {
            aws_account_id: rec.account.clone(),
            key_id: rec.key_id.clone(),
            arn: rec.arn.clone(),
            creation_date: rec.created,
            enabled: state == KeyState::Enabled,
            description: rec.description.clone(),
            key_usage: match usage {
                "SIGN_VERIFY" => "SIGN_VERIFY",
                "GENERATE_VERIFY_MAC" => "GENERATE_VERIFY_MAC",
                _ => "ENCRYPT_DECRYPT",
            },
            key_state: state.as_str(),
            origin: rec.origin.clone(),
            key_manager: rec.key_manager.clone(),
            customer_master_key_spec: spec.name(),
            key_spec: spec.name(),
            encryption_algorithms: some(spec.encryption_algorithms(usage)),
            signing_algorithms: some(spec.signing_algorithms(usage)),
            mac_algorithms: some(spec.mac_algorithms()),
            multi_region: false,
            deletion_date: rec.deletion_date,
            valid_to: rec.valid_to.filter(|_| material),
            expiration_model: rec.expiration_model.clone().filter(|_| material),
            current_key_material_id: rec.current().filter(|_| material).map(|c| c.id.clone()),
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
