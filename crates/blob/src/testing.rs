//! Data keys for tests (feature `testing`): sealed under a random key held
//! in memory, bound to the context as a KMS binds it, so tests exercise the
//! sealed path without a KMS. Never used by the server.

use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use zeroize::Zeroizing;

use crate::keys::{BlobKeys, Context, DataKey, KeyError};

/// An in-memory stand-in for a KMS key. Data keys it sealed open only
/// under the same instance and context.
pub struct MemoryKeys {
    master: Zeroizing<[u8; 32]>,
}

impl Default for MemoryKeys {
    fn default() -> Self {
        let mut master = Zeroizing::new([0u8; 32]);
        // A failing RNG leaves a zero key: tests only.
        let _ = openssl::rand::rand_bytes(&mut master[..]);
        Self { master }
    }
}

impl MemoryKeys {
    /// A given master key: test processes that share a store (a helper
    /// process reading what its parent imported) use the same one.
    pub fn with_key(master: [u8; 32]) -> Self {
        Self {
            master: Zeroizing::new(master),
        }
    }
}

fn aad(context: &Context) -> Vec<u8> {
    let mut a = Vec::new();
    for (k, v) in context {
        for s in [k, v] {
            a.extend_from_slice(&(s.len() as u64).to_be_bytes());
            a.extend_from_slice(s.as_bytes());
        }
    }
    a
}

fn refused(operation: &'static str) -> KeyError {
    KeyError {
        operation,
        error: ferry_proto::AwsError::client(
            "InvalidCiphertextException",
            "the data key does not open under this key and context",
        ),
    }
}

impl BlobKeys for MemoryKeys {
    fn generate(&self, context: &Context) -> Result<(DataKey, Vec<u8>), KeyError> {
        let mut k = Zeroizing::new([0u8; 32]);
        let mut iv = [0u8; 12];
        openssl::rand::rand_bytes(&mut k[..]).map_err(|_| refused("GenerateDataKey"))?;
        openssl::rand::rand_bytes(&mut iv).map_err(|_| refused("GenerateDataKey"))?;
        let mut tag = [0u8; 16];
        let ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.master[..],
            Some(&iv),
            &aad(context),
            &k[..],
            &mut tag,
        )
        .map_err(|_| refused("GenerateDataKey"))?;
        let mut wrapped = iv.to_vec();
        wrapped.extend_from_slice(&ct);
        wrapped.extend_from_slice(&tag);
        Ok((
            DataKey::from_slice(&k[..]).ok_or_else(|| refused("GenerateDataKey"))?,
            wrapped,
        ))
    }

    fn unwrap(&self, wrapped: &[u8], context: &Context) -> Result<DataKey, KeyError> {
        if wrapped.len() != 12 + 32 + 16 {
            return Err(refused("Decrypt"));
        }
        let (iv, rest) = wrapped.split_at(12);
        let (ct, tag) = rest.split_at(32);
        let k = Zeroizing::new(
            decrypt_aead(
                Cipher::aes_256_gcm(),
                &self.master[..],
                Some(iv),
                &aad(context),
                ct,
                tag,
            )
            .map_err(|_| refused("Decrypt"))?,
        );
        DataKey::from_slice(&k).ok_or_else(|| refused("Decrypt"))
    }
}
