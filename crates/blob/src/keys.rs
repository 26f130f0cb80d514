//! Where blob data keys come from.

use std::collections::BTreeMap;

use ferry_proto::AwsError;
use zeroize::Zeroizing;

/// An encryption context: what the data key is bound to (KMS's
/// `EncryptionContext`; key policies can condition on it, and the audit
/// record shows it). Also authenticated with every chunk of the blob.
pub type Context = BTreeMap<String, String>;

/// A blob's 256-bit data key. Wiped on drop; no `Debug`.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// Takes a key the KMS returned; `None` unless it is 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != k.len() {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Self(k))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The KMS's refusal (or failure) to give or open a data key, in the
/// KMS's own terms so a service can answer with it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("KMS {operation}: {}: {}", error.code, error.message)]
pub struct KeyError {
    /// `GenerateDataKey` or `Decrypt`.
    pub operation: &'static str,
    /// The KMS's error.
    pub error: AwsError,
}

/// A source of blob data keys: a KMS key, used by some principal. Each call
/// is one KMS request (and one audit record).
pub trait BlobKeys: Send + Sync {
    /// `GenerateDataKey` (32 bytes) for `context`: the plaintext key and its
    /// sealed form (a KMS ciphertext blob, stored in the blob's header).
    fn generate(&self, context: &Context) -> Result<(DataKey, Vec<u8>), KeyError>;

    /// `Decrypt` of a sealed data key bound to `context`.
    fn unwrap(&self, wrapped: &[u8], context: &Context) -> Result<DataKey, KeyError>;
}
