//! ferry's embedded key management service, speaking the AWS KMS API.
//!
//! Module map:
//! - [`crypto`]: AES-256-GCM and randomness (OpenSSL).
//! - [`root_key`]: the root key, the trust anchor that wraps all key material at rest.
//! - [`harden`]: process protections for a key-holding process.

pub mod crypto;
pub mod harden;
pub mod root_key;

use std::sync::Arc;

use ferry_proto::{AwsError, JsonService, RequestContext};
use ferry_store::Store;

pub use root_key::RootKey;

/// The KMS (work in progress: operations arrive in the next commits).
pub struct Kms {
    _store: Arc<Store>,
    _root: RootKey,
}

impl Kms {
    /// Opens the KMS over the shared store.
    pub fn open(store: Arc<Store>, root: RootKey) -> Self {
        Self {
            _store: store,
            _root: root,
        }
    }
}

impl JsonService for Kms {
    fn target_prefix(&self) -> &'static str {
        "TrentService"
    }

    fn call(
        &self,
        _ctx: &RequestContext,
        operation: &str,
        _body: &[u8],
    ) -> Result<serde_json::Value, AwsError> {
        Err(AwsError::unknown_operation(operation))
    }
}
