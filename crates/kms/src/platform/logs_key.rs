//! The key that seals container logs at rest: 256 bits, generated once
//! under the platform key (`GenerateDataKeyWithoutPlaintext` as Fargate),
//! kept only wrapped in the state store, and unwrapped with `Decrypt` by the
//! account at every start, which the platform key's policy allows for this
//! account's ECS contexts. Both calls are audited.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_store::Store;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{LOGS_KEY_BYTES, PLATFORM_KEY_ALIAS, Platform, PlatformError, WrappedKey, context};

/// Where the wrapped key is stored (table, key).
const TABLE: &str = "server";
const KEY: &str = "logs-data-key";

/// The stored record (base64 at the store boundary, as since the first
/// release: the record format is unchanged).
#[derive(Serialize, Deserialize)]
struct WrappedLogsKey {
    ciphertext_blob: String,
}

/// Why the logs key is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum LogsKeyError {
    /// The state store failed.
    #[error("reading or storing the logs key: {0}")]
    Store(#[from] ferry_store::StoreError),
    /// The stored record is not base64.
    #[error("stored logs key is malformed")]
    Malformed,
    /// Creating the key failed.
    #[error("creating the logs key: {0}")]
    Create(PlatformError),
    /// Unwrapping the key failed.
    #[error("unwrapping the logs key: {0}")]
    Unwrap(PlatformError),
}

impl Platform {
    /// The logs sealing key, made on first use.
    pub fn logs_key(&self, store: &Store) -> Result<Zeroizing<[u8; 32]>, LogsKeyError> {
        let encryption_context = context::container_logs(self.account());
        let wrapped = match store.get::<WrappedLogsKey>(TABLE, KEY)? {
            Some(w) => WrappedKey {
                key_arn: self.platform_key_arn().to_owned(),
                ciphertext_blob: B64
                    .decode(&w.ciphertext_blob)
                    .map_err(|_| LogsKeyError::Malformed)?,
                encryption_context,
            },
            None => {
                let mut w = self
                    .new_wrapped_key(PLATFORM_KEY_ALIAS, encryption_context, LOGS_KEY_BYTES)
                    .map_err(LogsKeyError::Create)?;
                let record = WrappedLogsKey {
                    ciphertext_blob: B64.encode(&w.ciphertext_blob),
                };
                // Stored once: a replica starting at the same time may have
                // stored its key first; then every replica uses that one
                // (logs sealed by one must open on all).
                let theirs = store.write(|t| {
                    if let Some(theirs) = t.get::<WrappedLogsKey>(TABLE, KEY)? {
                        return Ok::<_, ferry_store::StoreError>(Some(theirs));
                    }
                    t.put(TABLE, KEY, &record)?;
                    Ok(None)
                })?;
                if let Some(theirs) = theirs {
                    w.ciphertext_blob = B64
                        .decode(&theirs.ciphertext_blob)
                        .map_err(|_| LogsKeyError::Malformed)?;
                }
                w
            }
        };
        let plain = self
            .unwrap_as_account(&wrapped, LOGS_KEY_BYTES)
            .map_err(LogsKeyError::Unwrap)?;
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        Ok(key)
    }
}
