//! The KMS checks the control plane needs, behind a trait so the control
//! plane can be tested without a KMS: a cluster's customer-managed key for
//! Fargate ephemeral storage must exist, be enabled, be a symmetric
//! encryption key and be named by key id or key ARN (not an alias); tasks
//! without such a key use the platform-managed key.
//!
//! The server implements [`StorageKeys`] over the KMS's typed platform path
//! (`ferry_kms::platform::Platform`, as `fargate.amazonaws.com`, audited);
//! what a key must be is decided here, by [`check_key`].

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

/// What DescribeKey says about a key, as far as [`check_key`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The key's ARN.
    pub arn: String,
    /// Its KeyState.
    pub state: String,
    /// Its KeySpec.
    pub spec: String,
    /// Its KeyUsage.
    pub usage: String,
}

/// Refuses an alias: Fargate needs the key id or key ARN.
pub fn refuse_alias(key_id: &str) -> Result<(), KeyCheckError> {
    if key_id.starts_with("alias/") || key_id.contains(":alias/") {
        return Err(KeyCheckError::Alias(key_id.into()));
    }
    Ok(())
}

/// Whether the described key can protect Fargate ephemeral storage;
/// returns its ARN.
pub fn check_key(facts: KeyFacts) -> Result<String, KeyCheckError> {
    let KeyFacts {
        arn,
        state,
        spec,
        usage,
    } = facts;
    if state != "Enabled" {
        return Err(KeyCheckError::NotEnabled { arn, state });
    }
    if spec != "SYMMETRIC_DEFAULT" || usage != "ENCRYPT_DECRYPT" {
        return Err(KeyCheckError::NotSymmetric { arn, spec, usage });
    }
    Ok(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: &str, spec: &str, usage: &str) -> KeyFacts {
        KeyFacts {
            arn: "arn:aws:kms:r:a:key/k".into(),
            state: state.into(),
            spec: spec.into(),
            usage: usage.into(),
        }
    }

    #[test]
    fn checks_cluster_keys_like_fargate() {
        assert!(refuse_alias("1234abcd").is_ok());
        assert!(matches!(
            refuse_alias("alias/x"),
            Err(KeyCheckError::Alias(_))
        ));
        assert!(matches!(
            refuse_alias("arn:aws:kms:r:a:alias/x"),
            Err(KeyCheckError::Alias(_))
        ));
        assert_eq!(
            check_key(facts("Enabled", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")).unwrap(),
            "arn:aws:kms:r:a:key/k"
        );
        assert!(matches!(
            check_key(facts("PendingDeletion", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")),
            Err(KeyCheckError::NotEnabled { ref state, .. }) if state == "PendingDeletion"
        ));
        let e = check_key(facts("Enabled", "RSA_2048", "SIGN_VERIFY")).unwrap_err();
        assert!(matches!(e, KeyCheckError::NotSymmetric { .. }));
        assert!(e.to_string().contains("RSA_2048"));
    }
}
