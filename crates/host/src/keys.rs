//! The key operations host storage needs, behind a trait so its logic is
//! tested with a fake. The real implementations are the KMS's
//! [`Platform`]: typed, in-process, audited calls as the Fargate service
//! principal; and, for a host that reaches the control plane only over
//! HTTP, [`remote::ApiKeys`]: the same calls over the KMS JSON API, with
//! an access key that authenticates as that principal.

pub mod remote;

use ferry_kms::platform::{EncryptionContext, IssuedKey, Platform, PlatformError, WrappedKey};
use ferry_proto::{AwsError, RequestContext};
use zeroize::Zeroizing;

/// Data keys for volumes.
pub trait VolumeKeys: Send + Sync {
    /// The account whose contexts the keys are bound to.
    fn account(&self) -> &str;
    /// A fresh 64-byte volume key under `key_arn`, unwrapped under a grant.
    fn issue(&self, key_arn: &str, context: EncryptionContext) -> Result<IssuedKey, PlatformError>;
    /// Retires a grant [`VolumeKeys::issue`] made.
    fn retire(&self, key_arn: &str, grant_id: &str) -> Result<(), PlatformError>;
    /// A new sealed 64-byte volume key under `key_id`, never unwrapped here.
    fn new_wrapped_key(
        &self,
        key_id: &str,
        context: EncryptionContext,
    ) -> Result<WrappedKey, PlatformError>;
    /// Unwraps a volume key under a grant that lives only for the call.
    fn unwrap_volume_key(&self, w: &WrappedKey) -> Result<Zeroizing<Vec<u8>>, PlatformError>;
    /// The ARN of `key_id` as `caller` may see it.
    fn key_arn_for(&self, caller: &RequestContext, key_id: &str) -> Result<String, AwsError>;
}

impl VolumeKeys for Platform {
    fn account(&self) -> &str {
        Platform::account(self)
    }
    fn issue(&self, key_arn: &str, context: EncryptionContext) -> Result<IssuedKey, PlatformError> {
        Platform::issue(self, key_arn, context)
    }
    fn retire(&self, key_arn: &str, grant_id: &str) -> Result<(), PlatformError> {
        Platform::retire(self, key_arn, grant_id)
    }
    fn new_wrapped_key(
        &self,
        key_id: &str,
        context: EncryptionContext,
    ) -> Result<WrappedKey, PlatformError> {
        Platform::new_wrapped_key(self, key_id, context, ferry_kms::platform::VOLUME_KEY_BYTES)
    }
    fn unwrap_volume_key(&self, w: &WrappedKey) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        Platform::unwrap_volume_key(self, w)
    }
    fn key_arn_for(&self, caller: &RequestContext, key_id: &str) -> Result<String, AwsError> {
        Platform::key_arn_for(self, caller, key_id)
    }
}
