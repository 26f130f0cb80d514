//! Sealed blobs: the bytes of images (manifests, configs, layers) at rest,
//! in ferry's registry and in each host's image store.
//!
//! Every blob is encrypted with AES-256-GCM under its own 256-bit data key,
//! which a KMS key seals (envelope encryption, as ECR and S3 do): the file
//! on disk holds only the sealed data key and the ciphertext, and reading
//! it back takes a KMS `Decrypt` that the key's policy must allow and the
//! audit trail records. Blobs keep the name clients know them by: the
//! SHA-256 digest of their plaintext.
//!
//! Module map:
//! - [`keys`]: [`BlobKeys`], where data keys come from (the caller's KMS
//!   key and identity are the implementor's business), and [`DataKey`].
//! - [`stream`]: the sealed file format (docs/images.md, "Sealed blobs"):
//!   [`SealedWriter`] and [`SealedReader`] (chunked, seekable, each chunk
//!   authenticated, truncation and reordering detected).
//! - [`store`]: [`BlobStore`], a directory of sealed blobs named by
//!   digest, written through a temporary file and verified before they
//!   take their name.

#![forbid(unsafe_code)]

pub mod keys;
pub mod store;
pub mod stream;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use keys::{BlobKeys, Context, DataKey, KeyError};
pub use store::{BlobStore, BlobUpload, Digest, FinishedUpload, StoredBlob};
pub use stream::{SealedReader, SealedWriter};

/// Why a blob could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The KMS refused or failed to give or open the data key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A file operation failed.
    #[error("{context}: {err}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        err: std::io::Error,
    },
    /// The file is not a sealed blob, or it does not authenticate under its
    /// key and context (tampered, truncated, or moved from elsewhere).
    #[error("sealed blob {0} does not authenticate (corrupt, truncated or tampered)")]
    Tampered(String),
    /// The content does not have the digest (or size) it was given under.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the client said.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Not a digest this store accepts.
    #[error("unsupported digest {0:?} (only sha256:<64 hex> is supported)")]
    BadDigest(String),
    /// No blob of that digest.
    #[error("blob {0} not found")]
    NotFound(String),
    /// The cipher library failed.
    #[error("the cipher library failed")]
    Crypto,
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BlobError {
    let context = context.into();
    move |err| BlobError::Io { context, err }
}
