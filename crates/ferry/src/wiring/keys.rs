//! Per-task data keys from the embedded KMS.
//!
//! For every encrypted task volume, ferry does what Fargate documents for
//! ephemeral storage: as the service principal `fargate.amazonaws.com`,
//! `GenerateDataKeyWithoutPlaintext` (64 bytes) under the cluster's key with
//! the ECS encryption context, `CreateGrant` allowing that principal to
//! `Decrypt` under exactly that context, then `Decrypt`; at teardown,
//! `RetireGrant`. Every step goes through the KMS's own request path, so key
//! policies, grants and the audit trail apply to the platform exactly as to
//! users.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_proto::plan::{KeyProvider, StoragePlan, TaskPlan, VolumeKey};
use ferry_kms::{FARGATE_PRINCIPAL, Kms};
use ferry_proto::{AwsError, Caller, RequestContext};
use serde_json::json;

/// Data-key length: 512 bits, the LUKS2 passphrase (see the volume format).
const DATA_KEY_BYTES: usize = 64;

/// `KeyProvider` over the in-process KMS.
pub struct KmsKeyProvider {
    kms: Arc<Kms>,
}

impl KmsKeyProvider {
    /// A provider calling `kms`.
    pub fn new(kms: Arc<Kms>) -> Self {
        Self { kms }
    }

    fn ctx(&self, plan: &TaskPlan) -> RequestContext {
        RequestContext::internal(
            Caller::service(plan.account.clone(), FARGATE_PRINCIPAL),
            plan.region.clone(),
        )
    }
}

/// The encryption context of a task's data key (the volume-format contract).
pub fn encryption_context(plan: &TaskPlan) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("aws:ecs:clusterAccount".to_owned(), plan.account.clone()),
        ("aws:ecs:clusterName".to_owned(), plan.cluster_name.clone()),
        ("ferry:taskArn".to_owned(), plan.task_arn.clone()),
    ])
}

fn says(op: &str, e: AwsError) -> String {
    format!("KMS {op} failed: {}: {}", e.code, e.message)
}

impl KeyProvider for KmsKeyProvider {
    fn volume_key(&self, plan: &TaskPlan, kms_key_arn: &str) -> Result<VolumeKey, String> {
        let ctx = self.ctx(plan);
        let ec = encryption_context(plan);
        let wrapped = self
            .kms
            .generate_data_key_without_plaintext(&ctx, kms_key_arn, &ec, DATA_KEY_BYTES)
            .map_err(|e| says("GenerateDataKeyWithoutPlaintext", e))?;
        let grant = self
            .kms
            .create_grant(&ctx, &wrapped.key_arn, FARGATE_PRINCIPAL, &["Decrypt"], &ec)
            .map_err(|e| says("CreateGrant", e))?;
        let plaintext = match self.kms.decrypt(&ctx, &wrapped.ciphertext_blob, &ec) {
            Ok(p) if p.len() == DATA_KEY_BYTES => p,
            Ok(_) => {
                let _ = self.retire(&ctx, &wrapped.key_arn, &grant.grant_id);
                return Err("KMS Decrypt returned a data key of the wrong length".into());
            }
            Err(e) => {
                // Don't leave a live grant behind for a task that won't start.
                let _ = self.retire(&ctx, &wrapped.key_arn, &grant.grant_id);
                return Err(says("Decrypt", e));
            }
        };
        Ok(VolumeKey {
            passphrase: plaintext,
            wrapped: wrapped.ciphertext_blob,
            key_arn: wrapped.key_arn,
            encryption_context: ec.into_iter().collect(),
            grant_id: Some(grant.grant_id),
        })
    }

    fn release(&self, plan: &TaskPlan, grant_id: &str) -> Result<(), String> {
        let StoragePlan::Encrypted { kms_key_arn } = &plan.storage else {
            return Ok(());
        };
        let ctx = self.ctx(plan);
        let key_arn = self
            .kms
            .key_arn(&ctx, kms_key_arn)
            .map_err(|e| says("DescribeKey", e))?;
        self.retire(&ctx, &key_arn, grant_id)
    }
}

impl KmsKeyProvider {
    fn retire(&self, ctx: &RequestContext, key_arn: &str, grant_id: &str) -> Result<(), String> {
        self.kms
            .call_json(
                ctx,
                "RetireGrant",
                &json!({"KeyId": key_arn, "GrantId": grant_id}),
            )
            .map(|_| ())
            .map_err(|e| says("RetireGrant", e))
    }
}
