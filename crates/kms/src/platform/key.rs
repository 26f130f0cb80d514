//! The platform-managed key for ephemeral storage: created on first start,
//! `KeyManager: AWS`, alias `alias/aws/ecs-ephemeral`, rotated yearly. Its
//! alias cannot be moved (`alias/aws/` is reserved) nor the key disabled or
//! deleted (AWS managed), which is why its ARN can be resolved once.
//!
//! Its policy lets the ECS service principal (`fargate.amazonaws.com`) do
//! what Fargate does with a key: generate data keys without plaintext and
//! create Decrypt-only grants for this account's clusters, retire grants
//! and describe the key. The account administrator may view it and decrypt
//! data keys of its own clusters (to open a live volume with standard
//! tools), but not change or delete it. Fargate may also generate and
//! decrypt 256-bit data keys for the host's image store, and only under
//! the image store's context (`ferry:purpose` = `image-store`).
//!
//! The policy is ferry's, not the user's (PutKeyPolicy refuses AWS managed
//! keys), so a server start brings an older data directory's copy up to
//! date.

use ferry_proto::AwsError;
use serde_json::json;

use super::context::IMAGE_STORE_PURPOSE;
use super::{FARGATE_PRINCIPAL, PLATFORM_KEY_ALIAS};
use crate::error::KmsError;
use crate::ops::keys::new_key;
use crate::service::Kms;

/// The platform key's policy.
pub fn platform_policy(account: &str) -> String {
    let root = format!("arn:aws:iam::{account}:root");
    serde_json::to_string_pretty(&json!({
        "Version": "2012-10-17",
        "Id": "ferry-ecs-ephemeral-storage",
        "Statement": [
            {
                "Sid": "Allow generate data key access for Fargate tasks.",
                "Effect": "Allow",
                "Principal": {"Service": FARGATE_PRINCIPAL},
                "Action": ["kms:GenerateDataKeyWithoutPlaintext"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:EncryptionContext:aws:ecs:clusterAccount": [account]}}
            },
            {
                "Sid": "Allow grant creation permission for Fargate tasks.",
                "Effect": "Allow",
                "Principal": {"Service": FARGATE_PRINCIPAL},
                "Action": ["kms:CreateGrant"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:EncryptionContext:aws:ecs:clusterAccount": [account]},
                    "ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]}
                }
            },
            {
                "Sid": "Allow Fargate to retire grants and describe the key.",
                "Effect": "Allow",
                "Principal": {"Service": FARGATE_PRINCIPAL},
                "Action": ["kms:RetireGrant", "kms:DescribeKey"],
                "Resource": "*"
            },
            {
                "Sid": "Allow Fargate to seal the host's image store.",
                "Effect": "Allow",
                "Principal": {"Service": FARGATE_PRINCIPAL},
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": "*",
                "Condition": {"StringEquals": {
                    "kms:EncryptionContext:aws:ecs:clusterAccount": [account],
                    "kms:EncryptionContext:ferry:purpose": [IMAGE_STORE_PURPOSE]
                }}
            },
            {
                "Sid": "Allow the account to view the key.",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
                "Resource": "*"
            },
            {
                "Sid": "Allow the account to decrypt data keys of its own clusters.",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": ["kms:Decrypt"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:EncryptionContext:aws:ecs:clusterAccount": [account]}}
            }
        ]
    }))
    .unwrap_or_default()
}

/// Creates the platform key unless its alias exists, or brings its policy
/// up to date; returns its ARN.
pub fn ensure_platform_key(kms: &Kms) -> Result<String, AwsError> {
    ensure(kms, true)
}

/// [`ensure_platform_key`]; `retry`: whether a replica that made the key
/// first may be looked for once more.
fn ensure(kms: &Kms, retry: bool) -> Result<String, AwsError> {
    let existing = {
        let st = kms.keys.state();
        match st.aliases.get(PLATFORM_KEY_ALIAS) {
            Some(a) => Some(
                st.keys
                    .get(&a.target_key_id)
                    .map(|k| {
                        (
                            k.rec.key_id.clone(),
                            k.rec.arn.clone(),
                            k.rec.policy.clone(),
                        )
                    })
                    .ok_or_else(|| KmsError::key_not_found(&a.target_key_id))?,
            ),
            None => None,
        }
    };
    if let Some((key_id, arn, policy)) = existing {
        let current = platform_policy(&kms.keys.account);
        if policy != current {
            let _w = kms.keys.writer();
            kms.keys.update_key(&key_id, |rec| {
                rec.policy = current;
                Ok(())
            })?;
        }
        return Ok(arn);
    }
    let _w = kms.keys.writer();
    // The key and its alias are written in one transaction, so a crash
    // cannot leave an unnamed platform key behind. AWS managed keys rotate
    // every year.
    let created = new_key(
        kms,
        "Default key that protects the ephemeral storage of ferry tasks when no customer managed key is set",
        "AWS",
        platform_policy(&kms.keys.account),
        Vec::new(),
        Some(PLATFORM_KEY_ALIAS),
        true,
    );
    match created {
        Ok(key) => Ok(key.rec.arn.clone()),
        // Another replica starting at the same time made it first (the
        // alias is checked in the transaction): use that one.
        Err(e) if e.code == "AlreadyExistsException" && retry => {
            drop(_w);
            kms.keys.refresh()?;
            ensure(kms, false)
        }
        Err(e) => Err(e),
    }
}
