//! Sealing secret values: a fresh 256-bit data key per value from ferry's
//! KMS, asked for as the request's caller, and AES-256-GCM under it.
//!
//! The KMS sees each use exactly as AWS KMS sees a service's call on a
//! user's behalf: the caller is the principal (the key policy and the
//! caller's identity policies decide), `kms:ViaService` names the service
//! (`secretsmanager.REGION.amazonaws.com`, `ssm.REGION.amazonaws.com`),
//! the encryption context names the secret, and the audit record's source
//! is the service. A value can only be opened by someone the key's policy
//! lets Decrypt with that context, and every opening is in the audit trail.
//!
//! The sealed form (docs/secrets.md, "Sealed values") is one byte string:
//!
//! ```text
//! "FSV1" | u16 BE n | wrapped data key (n bytes, a KMS ciphertext blob)
//!        | nonce (12) | tag (16) | ciphertext
//! ```
//!
//! The GCM associated data binds the ciphertext to what it is (a label
//! such as `SecretString`) and to the encryption context, so it cannot be
//! moved to another secret, version or kind even by someone who can write
//! the store. Only this form reaches the store; the data key and the
//! plaintext live in [`Zeroizing`] buffers and die with the request.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use ferry_kms::crypto;
use ferry_kms::ops::data::{Decrypt, GenerateDataKey};
use ferry_kms::{Kms, ManagedKey};
use ferry_proto::{AwsError, RequestContext};
use zeroize::Zeroizing;

/// The sealed form's first bytes (format version 1).
pub const MAGIC: &[u8; 4] = b"FSV1";

/// The data key's length: AES-256.
const DATA_KEY_BYTES: usize = 32;

/// An encryption context (also the GCM associated data, with the label).
pub type Context = BTreeMap<String, String>;

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The KMS refused or failed (access denied, key disabled or missing,
    /// wrong context...): its error, to be reported in the service's terms.
    #[error("KMS {operation}: {error}")]
    Kms {
        /// `GenerateDataKey` or `Decrypt`.
        operation: &'static str,
        /// The KMS's error.
        error: AwsError,
    },
    /// The stored form is not a sealed value of this format.
    #[error("the sealed value is malformed")]
    Malformed,
    /// The value did not authenticate under its data key (tampered, or
    /// moved to another secret), or the cipher failed.
    #[error("the sealed value does not authenticate")]
    Crypto,
}

/// Seals and opens one service's values through the KMS. Cheap to share.
pub struct Vault {
    kms: Arc<Kms>,
    service: ManagedKey,
    via_service: String,
    source: String,
    default_key: OnceLock<String>,
}

impl Vault {
    /// A vault for `service` (which names its AWS managed key and its
    /// `kms:ViaService` value) over `kms`.
    pub fn new(kms: Arc<Kms>, service: ManagedKey) -> Self {
        let via_service = service.via_service(kms.region());
        Self {
            source: format!("{}.amazonaws.com", service.service()),
            via_service,
            service,
            kms,
            default_key: OnceLock::new(),
        }
    }

    /// The KMS.
    pub fn kms(&self) -> &Arc<Kms> {
        &self.kms
    }

    /// The service's AWS managed key's ARN (`alias/aws/secretsmanager`,
    /// `alias/aws/ssm`), created on first use. Cached: the alias of an AWS
    /// managed key cannot be moved.
    pub fn default_key_arn(&self) -> Result<String, SealError> {
        if let Some(arn) = self.default_key.get() {
            return Ok(arn.clone());
        }
        let arn = self
            .kms
            .aws_managed_key(self.service)
            .map_err(|error| SealError::Kms {
                operation: "CreateKey",
                error,
            })?;
        Ok(self.default_key.get_or_init(|| arn).clone())
    }

    /// The alias of the service's AWS managed key.
    pub fn default_key_alias(&self) -> &'static str {
        self.service.alias()
    }

    /// `ctx` as the service makes its KMS call on the caller's behalf: the
    /// same principal and request id; `kms:ViaService` set, and the
    /// service as source and user agent (as CloudTrail shows such calls).
    fn on_behalf(&self, ctx: &RequestContext) -> RequestContext {
        let mut c = ctx.clone().with_via_service(self.via_service.clone());
        c.source_ip.clone_from(&self.source);
        c.user_agent.clone_from(&self.source);
        c
    }

    /// Seals `plaintext` under a fresh data key from `key_id` (any form
    /// the KMS accepts: id, ARN, alias), bound to `context` and `label`.
    /// Returns the sealed form and the ARN of the KMS key used.
    pub fn seal(
        &self,
        ctx: &RequestContext,
        key_id: &str,
        context: &Context,
        label: &str,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, String), SealError> {
        let dk = self
            .kms
            .execute(
                &self.on_behalf(ctx),
                &GenerateDataKey {
                    key_id,
                    encryption_context: context,
                    number_of_bytes: DATA_KEY_BYTES,
                    dry_run: false,
                },
            )
            .map_err(|error| SealError::Kms {
                operation: "GenerateDataKey",
                error,
            })?;
        let key = data_key(&dk.plaintext)?;
        let wrapped_len = u16::try_from(dk.ciphertext_blob.len()).map_err(|_| SealError::Crypto)?;
        let (nonce, ct, tag) =
            crypto::seal(&key, &aad(label, context), plaintext).map_err(|_| SealError::Crypto)?;
        let mut out = Vec::with_capacity(
            MAGIC.len() + 2 + dk.ciphertext_blob.len() + nonce.len() + tag.len() + ct.len(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&wrapped_len.to_be_bytes());
        out.extend_from_slice(&dk.ciphertext_blob);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&tag);
        out.extend_from_slice(&ct);
        Ok((out, dk.key_arn))
    }

    /// Opens a sealed value: Decrypt of its data key as the caller (with
    /// `context`, audited), then AES-256-GCM with `label` and `context`.
    pub fn open(
        &self,
        ctx: &RequestContext,
        sealed: &[u8],
        context: &Context,
        label: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let parts = Parts::parse(sealed)?;
        let dk = self
            .kms
            .execute(
                &self.on_behalf(ctx),
                &Decrypt {
                    ciphertext_blob: parts.wrapped,
                    encryption_context: context,
                    key_id: None,
                    dry_run: false,
                },
            )
            .map_err(|error| SealError::Kms {
                operation: "Decrypt",
                error,
            })?;
        let key = data_key(&dk.plaintext)?;
        crypto::open(
            &key,
            parts.nonce,
            &aad(label, context),
            parts.ciphertext,
            parts.tag,
        )
        .map_err(|_| SealError::Crypto)
    }
}

/// The data key as an AES-256 key.
fn data_key(plaintext: &[u8]) -> Result<Zeroizing<[u8; DATA_KEY_BYTES]>, SealError> {
    let mut key = Zeroizing::new([0u8; DATA_KEY_BYTES]);
    if plaintext.len() != DATA_KEY_BYTES {
        return Err(SealError::Crypto);
    }
    key.copy_from_slice(plaintext);
    Ok(key)
}

/// The GCM associated data: a domain string, the label and the context,
/// each length-prefixed so no two inputs give the same bytes.
fn aad(label: &str, context: &Context) -> Vec<u8> {
    let mut out = b"ferry-sealed-value/1".to_vec();
    let mut put = |s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    put(label);
    for (k, v) in context {
        put(k);
        put(v);
    }
    out
}

/// The pieces of a sealed value.
struct Parts<'a> {
    wrapped: &'a [u8],
    nonce: &'a [u8],
    tag: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> Parts<'a> {
    fn parse(b: &'a [u8]) -> Result<Self, SealError> {
        let rest = b.strip_prefix(MAGIC).ok_or(SealError::Malformed)?;
        let (len, rest) = rest.split_at_checked(2).ok_or(SealError::Malformed)?;
        let n = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (wrapped, rest) = rest.split_at_checked(n).ok_or(SealError::Malformed)?;
        let (nonce, rest) = rest
            .split_at_checked(crypto::IV_LEN)
            .ok_or(SealError::Malformed)?;
        let (tag, ciphertext) = rest
            .split_at_checked(crypto::TAG_LEN)
            .ok_or(SealError::Malformed)?;
        Ok(Self {
            wrapped,
            nonce,
            tag,
            ciphertext,
        })
    }
}

/// The KMS key ARN a sealed value's data key is wrapped under (read from
/// the KMS blob's header), for listings; `None` if it cannot be read.
pub fn key_arn_of(sealed: &[u8]) -> Option<String> {
    let parts = Parts::parse(sealed).ok()?;
    ferry_kms::blob::parse(parts.wrapped)
        .ok()
        .map(|p| p.key_arn.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::testkit;

    #[test]
    fn round_trip_binding_and_no_plaintext() {
        let t = testkit::Kit::new();
        let vault = Vault::new(t.kms.clone(), ManagedKey::SecretsManager);
        let ctx = testkit::admin();
        let key = vault.default_key_arn().unwrap();
        let c: Context = [("SecretARN".to_owned(), "arn:x".to_owned())].into();
        let secret = b"hunter2-correct-horse";
        let (sealed, arn) = vault.seal(&ctx, &key, &c, "SecretString", secret).unwrap();
        assert_eq!(arn, key);
        assert_eq!(key_arn_of(&sealed).unwrap(), key);
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        assert_eq!(
            vault
                .open(&ctx, &sealed, &c, "SecretString")
                .unwrap()
                .as_slice(),
            secret
        );
        // Another label, another context, a flipped bit: nothing opens.
        assert!(matches!(
            vault.open(&ctx, &sealed, &c, "SecretBinary"),
            Err(SealError::Crypto)
        ));
        let other: Context = [("SecretARN".to_owned(), "arn:y".to_owned())].into();
        assert!(matches!(
            vault.open(&ctx, &sealed, &other, "SecretString"),
            Err(SealError::Kms { .. })
        ));
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            vault.open(&ctx, &bad, &c, "SecretString"),
            Err(SealError::Crypto)
        ));
        assert!(matches!(
            vault.open(&ctx, b"FSV1\xff", &c, "SecretString"),
            Err(SealError::Malformed)
        ));
        // The audit trail has the two calls, as the caller, via the service.
        let lines = t.audit_lines();
        let generated = lines
            .iter()
            .find(|l| l["eventName"] == "GenerateDataKey")
            .unwrap();
        assert_eq!(generated["userIdentity"]["type"], "Root");
        assert_eq!(generated["sourceIPAddress"], "secretsmanager.amazonaws.com");
        assert_eq!(
            generated["requestParameters"]["encryptionContext"]["SecretARN"],
            "arn:x"
        );
        assert!(lines.iter().any(|l| l["eventName"] == "Decrypt"));
    }
}
