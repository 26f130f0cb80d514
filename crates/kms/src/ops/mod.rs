//! One module per group of operations; each handler takes the parsed
//! request and returns the JSON response (or the AWS error), recording the
//! key ARNs it touched for the audit trail.

pub mod aliases;
pub mod data;
pub mod grants;
pub mod keys;
pub mod platform;
pub mod policies;
pub mod rotation;
pub mod tags;

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};

use crate::error::KmsError;
use crate::keystore::{LiveKey, Request};
use crate::model::{KeyRecord, KeyState};
use crate::params::Params;
use crate::service::Kms;

/// `KeyMetadata` for a key.
pub fn key_metadata(rec: &KeyRecord) -> Value {
    let mut m = json!({
        "AWSAccountId": rec.account,
        "KeyId": rec.key_id,
        "Arn": rec.arn,
        "CreationDate": rec.created,
        "Enabled": rec.state == KeyState::Enabled,
        "Description": rec.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": rec.state.as_str(),
        "Origin": "AWS_KMS",
        "KeyManager": rec.key_manager,
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
    });
    if let Value::Object(o) = &mut m {
        if let Some(d) = rec.deletion_date {
            o.insert("DeletionDate".into(), json!(d));
        }
        if let Some(c) = rec.current() {
            o.insert("CurrentKeyMaterialId".into(), json!(c.id));
        }
    }
    m
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

/// Records the key's ARN for the audit trail and authorizes `action` on it
/// (with no request context): how most key operations start.
pub fn authorize(
    kms: &Kms,
    ctx: &RequestContext,
    res: &mut Vec<String>,
    key: &LiveKey,
    action: &str,
) -> Result<(), AwsError> {
    res.push(key.rec.arn.clone());
    kms.keys.authorize(ctx, key, action, &Request::default())
}
