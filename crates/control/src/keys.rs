//! The KMS checks the control plane needs, behind a trait so the control
//! plane can be tested without a KMS: a cluster's customer-managed key for
//! Fargate ephemeral storage must exist, be enabled, be a symmetric
//! encryption key and be named by key id or key ARN (not an alias); tasks
//! without such a key use the platform-managed key.
//!
//! [`KmsStorageKeys`] implements it over the embedded KMS (any
//! `JsonService` answering `TrentService`), calling it in-process as the
//! `fargate.amazonaws.com` service principal so the calls show in the KMS
//! audit trail like Fargate's.

use std::sync::Arc;

use ferry_proto::{Caller, JsonService, RequestContext};

/// Why a key cannot protect Fargate ephemeral storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyCheckError {
    /// An alias was given; Fargate needs the key id or key ARN.
    #[error("'{0}' is an alias; fargateEphemeralStorageKmsKeyId must be a key ID or key ARN")]
    Alias(String),
    /// The KMS does not know the key.
    #[error("KMS key '{0}' was not found")]
    NotFound(String),
    /// The key is not enabled.
    #[error("KMS key '{arn}' is {state}; it must be Enabled")]
    NotEnabled {
        /// The key's ARN.
        arn: String,
        /// Its KeyState.
        state: String,
    },
    /// The key is not a symmetric encryption key.
    #[error(
        "KMS key '{arn}' has key spec {spec} and usage {usage}; it must be a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key"
    )]
    NotSymmetric {
        /// The key's ARN.
        arn: String,
        /// Its KeySpec.
        spec: String,
        /// Its KeyUsage.
        usage: String,
    },
    /// The KMS refused or failed; carries its error.
    #[error("KMS refused the key check: {0}")]
    Kms(String),
}

/// KMS checks for ephemeral storage keys.
pub trait StorageKeys: Send + Sync {
    /// Checks that `key_id` (key id or key ARN) can protect Fargate
    /// ephemeral storage; returns its key ARN.
    fn check_cluster_key(&self, key_id: &str) -> Result<String, KeyCheckError>;

    /// The ARN of the platform-managed key used when a cluster has no
    /// customer-managed key.
    fn platform_key_arn(&self) -> Result<String, KeyCheckError>;

    /// Fargate's check at CreateCluster/UpdateCluster: with `DryRun`, as
    /// the service principal, `GenerateDataKeyWithoutPlaintext` and
    /// `CreateGrant` (Decrypt) under `key_arn` with the cluster's
    /// encryption context. Fails with the KMS's reason when the key policy
    /// (or the key's state) would stop tasks from getting data keys.
    fn dry_run_for_cluster(&self, _key_arn: &str, _cluster: &str) -> Result<(), KeyCheckError> {
        Ok(())
    }
}

/// [`StorageKeys`] over the embedded KMS.
pub struct KmsStorageKeys {
    kms: Arc<dyn JsonService>,
    account: String,
    region: String,
    platform_key: String,
}

impl KmsStorageKeys {
    /// Calls `kms` (the `TrentService`) as `fargate.amazonaws.com` in
    /// `account`/`region`. `platform_key` names the platform-managed key
    /// (key id, ARN or alias, e.g. `alias/aws/ecs`); it is resolved to an
    /// ARN with DescribeKey.
    pub fn new(
        kms: Arc<dyn JsonService>,
        account: impl Into<String>,
        region: impl Into<String>,
        platform_key: impl Into<String>,
    ) -> Self {
        Self {
            kms,
            account: account.into(),
            region: region.into(),
            platform_key: platform_key.into(),
        }
    }

    fn ctx(&self) -> RequestContext {
        RequestContext::internal(
            Caller::service(self.account.clone(), "fargate.amazonaws.com"),
            self.region.clone(),
        )
    }

    /// Calls `operation` with `DryRun`; only `DryRunOperationException`
    /// (every check passed) is success.
    fn dry_run(&self, operation: &str, body: serde_json::Value) -> Result<(), KeyCheckError> {
        let body = serde_json::to_vec(&body).map_err(|e| KeyCheckError::Kms(e.to_string()))?;
        match self.kms.call(&self.ctx(), operation, &body) {
            Err(e) if e.code == "DryRunOperationException" => Ok(()),
            Err(e) => Err(KeyCheckError::Kms(format!(
                "{operation} (DryRun) as fargate.amazonaws.com: {}: {}",
                e.code, e.message
            ))),
            Ok(_) => Err(KeyCheckError::Kms(format!("{operation} ignored DryRun"))),
        }
    }

    fn describe(&self, key_id: &str) -> Result<serde_json::Value, KeyCheckError> {
        let body = serde_json::to_vec(&serde_json::json!({ "KeyId": key_id }))
            .map_err(|e| KeyCheckError::Kms(e.to_string()))?;
        match self.kms.call(&self.ctx(), "DescribeKey", &body) {
            Ok(v) => Ok(v),
            Err(e) if e.code == "NotFoundException" => Err(KeyCheckError::NotFound(key_id.into())),
            Err(e) => Err(KeyCheckError::Kms(format!("{}: {}", e.code, e.message))),
        }
    }
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v.get("KeyMetadata")
        .and_then(|m| m.get(name))
        .and_then(|s| s.as_str())
        .unwrap_or("")
}

impl StorageKeys for KmsStorageKeys {
    fn check_cluster_key(&self, key_id: &str) -> Result<String, KeyCheckError> {
        if key_id.starts_with("alias/") || key_id.contains(":alias/") {
            return Err(KeyCheckError::Alias(key_id.into()));
        }
        let v = self.describe(key_id)?;
        let arn = field(&v, "Arn").to_owned();
        let state = field(&v, "KeyState");
        if state != "Enabled" {
            return Err(KeyCheckError::NotEnabled {
                arn,
                state: state.into(),
            });
        }
        // KeySpec is the current name; CustomerMasterKeySpec the old one.
        let spec = match field(&v, "KeySpec") {
            "" => field(&v, "CustomerMasterKeySpec"),
            s => s,
        };
        let usage = field(&v, "KeyUsage");
        if spec != "SYMMETRIC_DEFAULT" || usage != "ENCRYPT_DECRYPT" {
            return Err(KeyCheckError::NotSymmetric {
                arn,
                spec: spec.into(),
                usage: usage.into(),
            });
        }
        Ok(arn)
    }

    fn dry_run_for_cluster(&self, key_arn: &str, cluster: &str) -> Result<(), KeyCheckError> {
        let context = serde_json::json!({
            "aws:ecs:clusterAccount": self.account,
            "aws:ecs:clusterName": cluster,
        });
        self.dry_run(
            "GenerateDataKeyWithoutPlaintext",
            serde_json::json!({
                "KeyId": key_arn, "NumberOfBytes": 64,
                "EncryptionContext": context, "DryRun": true,
            }),
        )?;
        self.dry_run(
            "CreateGrant",
            serde_json::json!({
                "KeyId": key_arn,
                "GranteePrincipal": "fargate.amazonaws.com",
                "Operations": ["Decrypt"],
                "Constraints": {"EncryptionContextSubset": context},
                "DryRun": true,
            }),
        )
    }

    fn platform_key_arn(&self) -> Result<String, KeyCheckError> {
        let v = self.describe(&self.platform_key)?;
        match field(&v, "Arn") {
            "" => Err(KeyCheckError::Kms("DescribeKey returned no key ARN".into())),
            a => Ok(a.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::{AwsError, Principal};

    /// A KMS answering DescribeKey from a table, checking the caller.
    struct FakeKms;

    impl JsonService for FakeKms {
        fn target_prefix(&self) -> &'static str {
            "TrentService"
        }
        fn call(
            &self,
            ctx: &RequestContext,
            operation: &str,
            body: &[u8],
        ) -> Result<serde_json::Value, AwsError> {
            assert_eq!(operation, "DescribeKey");
            assert_eq!(
                ctx.caller.principal,
                Principal::Service("fargate.amazonaws.com".into())
            );
            let req: serde_json::Value = serde_json::from_slice(body).unwrap();
            let meta = |id: &str, state: &str, spec: &str, usage: &str| {
                Ok(serde_json::json!({"KeyMetadata": {
                    "Arn": format!("arn:aws:kms:r:a:key/{id}"), "KeyState": state,
                    "KeySpec": spec, "KeyUsage": usage}}))
            };
            match req["KeyId"].as_str().unwrap() {
                "good" => meta("good", "Enabled", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"),
                "off" => meta(
                    "off",
                    "PendingDeletion",
                    "SYMMETRIC_DEFAULT",
                    "ENCRYPT_DECRYPT",
                ),
                "rsa" => meta("rsa", "Enabled", "RSA_2048", "SIGN_VERIFY"),
                "alias/aws/ecs-ephemeral" => meta(
                    "platform",
                    "Enabled",
                    "SYMMETRIC_DEFAULT",
                    "ENCRYPT_DECRYPT",
                ),
                "denied" => Err(AwsError::client("AccessDeniedException", "no")),
                _ => Err(AwsError::client("NotFoundException", "nope")),
            }
        }
    }

    #[test]
    fn checks_cluster_keys_like_fargate() {
        let k = KmsStorageKeys::new(Arc::new(FakeKms), "a", "r", "alias/aws/ecs-ephemeral");
        assert_eq!(
            k.check_cluster_key("good").unwrap(),
            "arn:aws:kms:r:a:key/good"
        );
        assert!(matches!(
            k.check_cluster_key("alias/x"),
            Err(KeyCheckError::Alias(_))
        ));
        assert!(matches!(
            k.check_cluster_key("arn:aws:kms:r:a:alias/x"),
            Err(KeyCheckError::Alias(_))
        ));
        assert!(matches!(
            k.check_cluster_key("off"),
            Err(KeyCheckError::NotEnabled { ref state, .. }) if state == "PendingDeletion"
        ));
        let e = k.check_cluster_key("rsa").unwrap_err();
        assert!(matches!(e, KeyCheckError::NotSymmetric { .. }));
        assert!(e.to_string().contains("RSA_2048"));
        assert!(matches!(
            k.check_cluster_key("gone"),
            Err(KeyCheckError::NotFound(_))
        ));
        assert!(
            k.check_cluster_key("denied")
                .unwrap_err()
                .to_string()
                .contains("AccessDeniedException")
        );
        assert_eq!(
            k.platform_key_arn().unwrap(),
            "arn:aws:kms:r:a:key/platform"
        );
    }
}
