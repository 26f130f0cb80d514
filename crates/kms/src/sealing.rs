//! Secrets other services must keep but may not store in plaintext (the
//! IAM store's secret access keys and session secrets: SigV4 is HMAC, so
//! the server needs them back), sealed under the root key.
//!
//! AES-256-GCM under the root key, with the caller's label bound as
//! associated data under a `sealed/` namespace: a sealed blob only opens
//! under the label it was sealed with, and never collides with the KMS's
//! own key-material labels (`kms-key/...`). Not a KMS key operation: no key
//! policy, no audit record; the caller is ferry itself.

use ferry_proto::AwsError;
use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::service::Kms;

fn label_of(label: &str) -> String {
    format!("sealed/{label}")
}

impl Kms {
    /// Seals `plaintext` under the root key, bound to `label` (e.g.
    /// `iam/access-key/AKIA...`).
    pub fn seal_secret(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, AwsError> {
        self.keys
            .root
            .wrap(&label_of(label), plaintext)
            .map_err(|_| KmsError::internal("sealing a secret failed"))
    }

    /// Opens what [`Kms::seal_secret`] sealed under the same `label`.
    pub fn unseal_secret(
        &self,
        label: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AwsError> {
        self.keys
            .root
            .unwrap_material(&label_of(label), sealed)
            .map_err(|_| {
                KmsError::internal(format!(
                    "the sealed secret {label} does not open under the root key"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::audit::AuditSink;
    use crate::{Kms, RootKey};

    struct Discard;
    impl AuditSink for Discard {
        fn append(&self, _line: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn sealed_secrets_open_only_under_their_label() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ferry_store::Store::open(&dir.path().join("s.redb")).unwrap());
        let kms = Kms::with_sink(
            store,
            RootKey::from_bytes([7; 32]),
            Box::new(Discard),
            "111122223333",
            "us-east-1",
        )
        .unwrap();
        let sealed = kms.seal_secret("iam/access-key/AKIA1", b"s3cr3t").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(
            &**kms.unseal_secret("iam/access-key/AKIA1", &sealed).unwrap(),
            b"s3cr3t"
        );
        assert!(kms.unseal_secret("iam/access-key/AKIA2", &sealed).is_err());
        assert!(kms.unseal_secret("kms-key/x/1", &sealed).is_err());
    }
}
