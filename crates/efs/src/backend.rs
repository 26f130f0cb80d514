//! The storage behind file systems. `ferry-host` implements this over the
//! KMS and the volume engine (crates/host/src/efs); tests use a fake.

use ferry_proto::{AwsError, RequestContext};

/// What creating a file system's volume produced.
#[derive(Debug, Clone)]
pub struct CreatedVolume {
    /// The KMS key ARN that wraps the data key (None when unencrypted).
    pub kms_key_arn: Option<String>,
}

/// Creates, sizes and destroys the persistent volumes.
pub trait Backend: Send + Sync {
    /// Creates the volume of file system `fs_id`: for `encrypted`, a LUKS2
    /// volume whose data key comes from `kms_key_id` (the platform key when
    /// None) on behalf of `ctx`'s caller. Fails if the key is missing or
    /// disabled.
    fn create(
        &self,
        ctx: &RequestContext,
        fs_id: &str,
        encrypted: bool,
        kms_key_id: Option<&str>,
    ) -> Result<CreatedVolume, AwsError>;

    /// Whether a running task uses the file system.
    fn in_use(&self, fs_id: &str) -> bool;

    /// Bytes the volume occupies on disk (metered size).
    fn size(&self, fs_id: &str) -> u64;

    /// Crypto-shreds the volume.
    fn destroy(&self, fs_id: &str) -> Result<(), String>;
}
