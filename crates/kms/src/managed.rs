//! AWS managed keys of other services: `alias/aws/secretsmanager`,
//! `alias/aws/ssm` and `alias/aws/ecr`, created the first time the service needs one (as AWS
//! creates them when an account first stores a secret or a SecureString
//! without naming a key).
//!
//! Each gets the default policy AWS gives that service's managed key: every
//! principal of the account may use it for cryptography, but only through
//! the service (`kms:CallerAccount` is the account and `kms:ViaService` is
//! `SERVICE.REGION.amazonaws.com`), and the account may view it. Like the
//! platform key ([`crate::platform`]) it is `KeyManager: AWS`, rotated
//! yearly; its `alias/aws/` alias cannot be moved, nor the key disabled,
//! deleted or given another policy, so its ARN can be cached by callers.

use ferry_proto::AwsError;
use serde_json::{Value, json};

use crate::error::KmsError;
use crate::ops::keys::new_key;
use crate::service::Kms;

/// The services that have an AWS managed key in ferry's KMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedKey {
    /// `alias/aws/secretsmanager`: seals Secrets Manager secret versions.
    SecretsManager,
    /// `alias/aws/ssm`: seals SSM SecureString parameters.
    Ssm,
    /// `alias/aws/ecr`: seals the registry's images (repositories created
    /// with encryption type KMS and no key, and, in ferry, AES256).
    Ecr,
}

impl ManagedKey {
    /// The key's alias name.
    pub fn alias(self) -> &'static str {
        match self {
            Self::SecretsManager => "alias/aws/secretsmanager",
            Self::Ssm => "alias/aws/ssm",
            Self::Ecr => "alias/aws/ecr",
        }
    }

    /// The service's endpoint prefix (`kms:ViaService` is
    /// `PREFIX.REGION.amazonaws.com`).
    pub fn service(self) -> &'static str {
        match self {
            Self::SecretsManager => "secretsmanager",
            Self::Ssm => "ssm",
            Self::Ecr => "ecr",
        }
    }

    /// The `kms:ViaService` value of the service in `region`.
    pub fn via_service(self, region: &str) -> String {
        format!("{}.{region}.amazonaws.com", self.service())
    }

    fn description(self) -> &'static str {
        match self {
            Self::SecretsManager => {
                "Default key that protects my Secrets Manager data when no other key is defined"
            }
            Self::Ssm => "Default key that protects my SSM parameters when no other key is defined",
            Self::Ecr => "Default key that protects my ECR data when no other key is defined",
        }
    }

    /// The key policy AWS gives this managed key (statement ids and
    /// wording as AWS writes them).
    pub fn policy(self, account: &str, region: &str) -> Value {
        let root = format!("arn:aws:iam::{account}:root");
        let view = json!({
            "Sid": "Allow direct access to key metadata to the account",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
            "Resource": "*"
        });
        match self {
            Self::SecretsManager => {
                let sid = "Allow access through AWS Secrets Manager for all principals in the account that are authorized to use AWS Secrets Manager";
                json!({
                    "Version": "2012-10-17",
                    "Id": "auto-secretsmanager-2",
                    "Statement": [
                        {
                            "Sid": sid,
                            "Effect": "Allow",
                            "Principal": {"AWS": "*"},
                            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:CreateGrant", "kms:DescribeKey"],
                            "Resource": "*",
                            "Condition": {"StringEquals": {
                                "kms:CallerAccount": account,
                                "kms:ViaService": self.via_service(region)
                            }}
                        },
                        {
                            "Sid": sid,
                            "Effect": "Allow",
                            "Principal": {"AWS": "*"},
                            "Action": "kms:GenerateDataKey*",
                            "Resource": "*",
                            "Condition": {
                                "StringEquals": {"kms:CallerAccount": account},
                                "StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}
                            }
                        },
                        view
                    ]
                })
            }
            Self::Ecr => self.via_service_policy("auto-ecr-1", "Amazon ECR", account, region, view),
            Self::Ssm => {
                self.via_service_policy("auto-ssm-1", "AWS Systems Manager", account, region, view)
            }
        }
    }

    /// The policy shape AWS gives the managed keys of services that use
    /// one statement for every data-key operation through the service
    /// (ECR, SSM); `service` is the name AWS writes in the statement id.
    fn via_service_policy(
        self,
        id: &str,
        service: &str,
        account: &str,
        region: &str,
        view: Value,
    ) -> Value {
        json!({
            "Version": "2012-10-17",
            "Id": id,
            "Statement": [
                {
                    "Sid": format!("Allow access through {service} for all principals in the account that are authorized to use {service}"),
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {
                        "kms:CallerAccount": account,
                        "kms:ViaService": self.via_service(region)
                    }}
                },
                view
            ]
        })
    }
}

impl Kms {
    /// The ARN of the AWS managed key `which`, created (with its alias and
    /// AWS's default policy, in one transaction) if it does not exist yet.
    pub fn aws_managed_key(&self, which: ManagedKey) -> Result<String, AwsError> {
        self.keys.refresh()?;
        if let Some(arn) = self.alias_target_arn(which.alias())? {
            return Ok(arn);
        }
        let _w = self.keys.writer();
        // Another caller may have created it while this one waited.
        if let Some(arn) = self.alias_target_arn(which.alias())? {
            return Ok(arn);
        }
        let policy = serde_json::to_string_pretty(&which.policy(self.account(), self.region()))
            .map_err(|_| KmsError::internal("rendering a managed key policy failed"))?;
        let created = new_key(
            self,
            which.description(),
            "AWS",
            policy,
            Vec::new(),
            Some(which.alias()),
            true,
        );
        match created {
            Ok(key) => {
                tracing::info!(alias = which.alias(), key = %key.rec.arn, "created an AWS managed key");
                Ok(key.rec.arn.clone())
            }
            // Another replica made it first (the alias is checked in the
            // transaction): use that one.
            Err(e) if e.code == "AlreadyExistsException" => {
                drop(_w);
                self.keys.refresh()?;
                self.alias_target_arn(which.alias())?
                    .ok_or_else(|| KmsError::internal("a managed key's alias vanished"))
            }
            Err(e) => Err(e),
        }
    }

    /// The ARN of the key `alias` names, if the alias exists.
    fn alias_target_arn(&self, alias: &str) -> Result<Option<String>, AwsError> {
        let st = self.keys.state();
        let Some(a) = st.aliases.get(alias) else {
            return Ok(None);
        };
        st.keys
            .get(&a.target_key_id)
            .map(|k| Some(k.rec.arn.clone()))
            .ok_or_else(|| KmsError::key_not_found(&a.target_key_id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use ferry_proto::{Caller, RequestContext};

    use super::*;
    use crate::RootKey;
    use crate::audit::AuditSink;
    use crate::ops::data::{Decrypt, GenerateDataKey};
    use crate::ops::keys::DescribeKey;

    struct Null;
    impl AuditSink for Null {
        fn append(&self, _line: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn kms(dir: &std::path::Path) -> Kms {
        let store = Arc::new(ferry_store::Store::open(&dir.join("s.redb")).unwrap());
        Kms::with_sink(
            store,
            RootKey::from_bytes([9; 32]),
            Box::new(Null),
            "111122223333",
            "us-east-1",
        )
        .unwrap()
    }

    #[test]
    fn created_once_and_usable_only_through_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let kms = kms(dir.path());
        let arn = kms.aws_managed_key(ManagedKey::SecretsManager).unwrap();
        assert_eq!(
            kms.aws_managed_key(ManagedKey::SecretsManager).unwrap(),
            arn
        );
        let ssm = kms.aws_managed_key(ManagedKey::Ssm).unwrap();
        assert_ne!(ssm, arn);

        let admin = RequestContext::internal(Caller::admin("111122223333"), "us-east-1");
        let m = kms
            .execute(
                &admin,
                &DescribeKey {
                    key_id: "alias/aws/secretsmanager",
                },
            )
            .unwrap();
        assert_eq!(m.arn, arn);
        assert_eq!(m.key_manager, "AWS");

        let ec = [("SecretARN".to_owned(), "x".to_owned())].into();
        let op = GenerateDataKey {
            key_id: "alias/aws/secretsmanager",
            encryption_context: &ec,
            number_of_bytes: 32,
            dry_run: false,
        };
        // Directly, the administrator may not use it ...
        let e = kms.execute(&admin, &op).err().unwrap();
        assert_eq!(e.code, "AccessDeniedException");
        // ... through Secrets Manager it may, and not through another service.
        let via = admin
            .clone()
            .with_via_service(ManagedKey::SecretsManager.via_service("us-east-1"));
        let dk = kms.execute(&via, &op).unwrap();
        assert_eq!(dk.plaintext.len(), 32);
        let dec = Decrypt {
            ciphertext_blob: &dk.ciphertext_blob,
            encryption_context: &ec,
            key_id: None,
            dry_run: false,
        };
        assert_eq!(
            kms.execute(&via, &dec).unwrap().plaintext.as_slice(),
            dk.plaintext.as_slice()
        );
        let wrong = admin.with_via_service(ManagedKey::Ssm.via_service("us-east-1"));
        assert!(kms.execute(&wrong, &dec).is_err());
        let reopened = kms.aws_managed_key(ManagedKey::SecretsManager);
        assert_eq!(reopened.unwrap(), arn);
    }
}
