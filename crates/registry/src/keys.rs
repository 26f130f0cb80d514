//! The repository's data keys: `GenerateDataKey`/`Decrypt` under the
//! repository's KMS key as the ECR service principal, under the grant
//! CreateRepository made for it (so pullers need no KMS permission, as on
//! AWS), with the encryption context `{"aws:ecr:arn": ARN}`.

use std::sync::Arc;

use ferry_blob::{BlobKeys, Context, DataKey, KeyError};
use ferry_kms::Kms;
use ferry_kms::ops::data::{Decrypt, GenerateDataKey};
use ferry_proto::{AwsError, Caller, RequestContext};

/// The service principal the registry acts as.
pub const ECR_PRINCIPAL: &str = "ecr.amazonaws.com";

/// The encryption-context key ECR binds every data key to.
pub const CONTEXT_KEY: &str = "aws:ecr:arn";

/// The encryption context of a repository's blobs.
pub fn context(repository_arn: &str) -> Context {
    [(CONTEXT_KEY.to_owned(), repository_arn.to_owned())].into()
}

/// One repository's key, used as `ecr.amazonaws.com`.
pub struct RepoKeys {
    pub(crate) kms: Arc<Kms>,
    pub(crate) key_arn: String,
    pub(crate) ctx: RequestContext,
}

impl RepoKeys {
    /// Keys of `key_arn` used by the ECR service principal of `account`.
    pub fn new(kms: Arc<Kms>, key_arn: String, account: &str, region: &str) -> Self {
        let mut ctx = RequestContext::internal(Caller::service(account, ECR_PRINCIPAL), region);
        ctx.source_ip = ECR_PRINCIPAL.to_owned();
        ctx.user_agent = ECR_PRINCIPAL.to_owned();
        Self { kms, key_arn, ctx }
    }
}

impl BlobKeys for RepoKeys {
    fn generate(&self, context: &Context) -> Result<(DataKey, Vec<u8>), KeyError> {
        let fail = |error: AwsError| KeyError {
            operation: "GenerateDataKey",
            error,
        };
        let dk = self
            .kms
            .execute(
                &self.ctx,
                &GenerateDataKey {
                    key_id: &self.key_arn,
                    encryption_context: context,
                    number_of_bytes: 32,
                    dry_run: false,
                },
            )
            .map_err(fail)?;
        let key = DataKey::from_slice(&dk.plaintext).ok_or_else(|| {
            fail(AwsError::server(
                "KMSInternalException",
                "bad data key length",
            ))
        })?;
        Ok((key, dk.ciphertext_blob))
    }

    fn unwrap(&self, wrapped: &[u8], context: &Context) -> Result<DataKey, KeyError> {
        let fail = |error: AwsError| KeyError {
            operation: "Decrypt",
            error,
        };
        let dk = self
            .kms
            .execute(
                &self.ctx,
                &Decrypt {
                    ciphertext_blob: wrapped,
                    encryption_context: context,
                    key_id: Some(&self.key_arn),
                    dry_run: false,
                },
            )
            .map_err(fail)?;
        DataKey::from_slice(&dk.plaintext).ok_or_else(|| {
            fail(AwsError::server(
                "KMSInternalException",
                "bad data key length",
            ))
        })
    }
}
