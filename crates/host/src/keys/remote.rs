//! The host's key operations over the KMS JSON API: [`ApiKeys`], for a
//! host that reaches the control plane only over HTTP (`ferry agent`) and
//! holds no root key, only an access key that authenticates as the
//! service principal `fargate.amazonaws.com`.
//!
//! Every method makes the KMS calls the in-process [`Platform`] method of
//! the same name makes, with the same members: the same key, encryption
//! context, grant (grantee and retiring principal Fargate, Decrypt only,
//! `EncryptionContextEquals`) and key lengths. The KMS audits a JSON call
//! as its request reads (less its secret members) and a typed call as the
//! same request would read, so a task a remote host starts leaves the
//! audit records one started in process leaves (the integration test
//! compares them). Two differences, neither in what is audited:
//! - Decrypt under a grant just made carries that grant's token, as AWS
//!   clients must (a grant is usable through its token before it is
//!   visible everywhere); tokens are never audited.
//! - The platform key's ARN, which [`Platform`] resolves when the KMS
//!   opens, is asked for once (`DescribeKey` of [`PLATFORM_KEY_ALIAS`], one
//!   more audit record) before the first image-store key.
//!
//! KMS refusals keep their `__type` code, message and HTTP status
//! ([`PlatformError::Kms`]), so callers that inspect
//! [`PlatformError::kms_error`] (recovery's "grant already gone") behave
//! as with [`Platform`]; an unreachable KMS or a malformed answer is
//! [`PlatformError::Remote`].
//!
//! The calls block (up to 30 s each, the client's timeout): call them
//! where blocking is allowed, as the in-process ones are.
//!
//! [`Platform`]: ferry_kms::Platform

use std::sync::OnceLock;

use ferry_api::client::kms::{
    DecryptRequest, GrantConstraints, GrantRequest, KeyDescription, KmsClient, KmsError,
};
use ferry_blob::{BlobKeys, DataKey, KeyError};
use ferry_kms::platform::{
    BLOB_KEY_BYTES, EncryptionContext, IssuedKey, PlatformError, VOLUME_KEY_BYTES, WrappedKey,
};
use ferry_kms::{FARGATE_PRINCIPAL, PLATFORM_KEY_ALIAS};
use ferry_proto::{AwsError, Principal, RequestContext};
use zeroize::Zeroizing;

use super::VolumeKeys;

/// The host's volume and image-store keys, over a KMS endpoint, as the
/// principal the client's access key belongs to (Fargate's).
#[derive(Debug)]
pub struct ApiKeys {
    kms: KmsClient,
    account: String,
    /// The platform key's ARN, once asked for: it cannot change (its alias
    /// is reserved and the key cannot be deleted; `ferry_kms::platform`).
    platform_key_arn: OnceLock<String>,
}

/// A created grant: its id, and its token (wiped on drop, never printed).
struct Granted {
    id: String,
    token: Zeroizing<String>,
}

impl ApiKeys {
    /// Keys through `kms`, whose credentials must authenticate as
    /// `fargate.amazonaws.com` of `account`; `account` is the one the
    /// encryption contexts name (from the host's configuration).
    pub fn new(kms: KmsClient, account: impl Into<String>) -> Self {
        Self {
            kms,
            account: account.into(),
            platform_key_arn: OnceLock::new(),
        }
    }

    /// The account the keys' contexts are bound to.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The platform key's ARN: `DescribeKey` of its alias, on first use.
    pub fn platform_key_arn(&self) -> Result<&str, PlatformError> {
        if let Some(arn) = self.platform_key_arn.get() {
            return Ok(arn);
        }
        let d = self.describe(PLATFORM_KEY_ALIAS)?;
        Ok(self.platform_key_arn.get_or_init(|| d.arn))
    }

    /// `DescribeKey` as Fargate.
    pub fn describe(&self, key_id: &str) -> Result<KeyDescription, PlatformError> {
        self.kms
            .describe_key(key_id)
            .map_err(platform_error("DescribeKey"))
    }

    /// `GenerateDataKeyWithoutPlaintext` as Fargate: a new data key of
    /// `bytes` bytes under `key_id`, sealed, for `context`
    /// (`Platform::new_wrapped_key`).
    pub fn new_wrapped_key(
        &self,
        key_id: &str,
        context: EncryptionContext,
        bytes: usize,
    ) -> Result<WrappedKey, PlatformError> {
        let w = self
            .kms
            .generate_data_key_without_plaintext(key_id, &context, bytes)
            .map_err(platform_error("GenerateDataKeyWithoutPlaintext"))?;
        Ok(WrappedKey {
            key_arn: w.key_arn,
            ciphertext_blob: w.blob,
            encryption_context: context,
        })
    }

    /// A Decrypt-only grant to Fargate for exactly `w`'s context, which
    /// Fargate may retire (`Platform::grant_decrypt`).
    fn grant_decrypt(&self, w: &WrappedKey) -> Result<Granted, PlatformError> {
        let g = self
            .kms
            .create_grant(&GrantRequest {
                key_id: &w.key_arn,
                grantee: FARGATE_PRINCIPAL,
                retiring: Some(FARGATE_PRINCIPAL),
                operations: &["Decrypt"],
                constraints: Some(GrantConstraints {
                    equals: Some(&w.encryption_context),
                    subset: None,
                }),
                name: None,
            })
            .map_err(platform_error("CreateGrant"))?;
        Ok(Granted {
            id: g.id,
            token: g.token,
        })
    }

    /// `Decrypt` of `w` (no `KeyId`, as the platform sends none), checked
    /// to be `len` bytes.
    fn decrypt(
        &self,
        w: &WrappedKey,
        grant_token: Option<&str>,
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        let tokens: Vec<&str> = grant_token.into_iter().collect();
        let plain = self
            .kms
            .decrypt(&DecryptRequest {
                blob: &w.ciphertext_blob,
                context: &w.encryption_context,
                key_id: None,
                grant_tokens: &tokens,
            })
            .map_err(platform_error("Decrypt"))?;
        if plain.len() != len {
            return Err(PlatformError::WrongLength);
        }
        Ok(plain)
    }

    /// A fresh 64-byte data key for a task volume under `key_arn`, and the
    /// grant that let Fargate unwrap it. On failure no grant is left live
    /// (`Platform::issue`).
    pub fn issue(
        &self,
        key_arn: &str,
        context: EncryptionContext,
    ) -> Result<IssuedKey, PlatformError> {
        let wrapped = self.new_wrapped_key(key_arn, context, VOLUME_KEY_BYTES)?;
        let grant = self.grant_decrypt(&wrapped)?;
        match self.decrypt(&wrapped, Some(&grant.token), VOLUME_KEY_BYTES) {
            Ok(plaintext) => Ok(IssuedKey {
                plaintext,
                wrapped,
                grant_id: grant.id,
            }),
            Err(e) => {
                // Don't leave a live grant behind for a task that won't start.
                let _ = self.retire(&wrapped.key_arn, &grant.id);
                Err(e)
            }
        }
    }

    /// Retires a grant [`ApiKeys::issue`] made (`RetireGrant` by key ARN
    /// and grant id, as its retiring principal).
    pub fn retire(&self, key_arn: &str, grant_id: &str) -> Result<(), PlatformError> {
        self.kms
            .retire_grant(key_arn, grant_id)
            .map_err(platform_error("RetireGrant"))
    }

    /// Unwraps a 64-byte volume key under a grant that lives only for the
    /// call (CreateGrant, Decrypt, RetireGrant by token), as
    /// `Platform::unwrap_volume_key` does: a disabled key or a changed
    /// policy stops new mounts.
    pub fn unwrap_volume_key(&self, w: &WrappedKey) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        let grant = self.grant_decrypt(w)?;
        let plain = self.decrypt(w, Some(&grant.token), VOLUME_KEY_BYTES);
        let retired = self
            .kms
            .retire_grant_by_token(&grant.token)
            .map_err(platform_error("RetireGrant"));
        let plain = plain?;
        retired?;
        Ok(plain)
    }

    /// `GenerateDataKey` as Fargate under the platform key: a fresh 256-bit
    /// data key for one blob of the host's image store, and its sealed
    /// form (`Platform::new_image_blob_key`; `context` is
    /// `ferry_kms::platform::context::image_store`'s).
    pub fn new_image_blob_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), PlatformError> {
        let key_arn = self.platform_key_arn()?;
        let k = self
            .kms
            .generate_data_key(key_arn, context, BLOB_KEY_BYTES)
            .map_err(platform_error("GenerateDataKey"))?;
        Ok((k.plaintext, k.blob))
    }

    /// `Decrypt` as Fargate of an image-store blob's data key
    /// (`Platform::open_image_blob_key`: no grant, no `KeyId`).
    pub fn open_image_blob_key(
        &self,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        let plain = self
            .kms
            .decrypt(&DecryptRequest {
                blob: ciphertext_blob,
                context,
                key_id: None,
                grant_tokens: &[],
            })
            .map_err(platform_error("Decrypt"))?;
        if plain.len() != BLOB_KEY_BYTES {
            return Err(PlatformError::WrongLength);
        }
        Ok(plain)
    }

    /// The ARN of `key_id` as `caller` may see it. `Platform::key_arn_for`
    /// asks the KMS as `caller` (a user naming a key for the platform to
    /// use must be allowed to describe it); this host can ask only as
    /// Fargate, so it answers only for Fargate of its own account and
    /// refuses anyone else rather than check less.
    pub fn key_arn_for(&self, caller: &RequestContext, key_id: &str) -> Result<String, AwsError> {
        let c = &caller.caller;
        let is_us = c.account == self.account
            && matches!(&c.principal, Principal::Service(s) if s == FARGATE_PRINCIPAL);
        if !is_us {
            return Err(AwsError::client(
                "UnsupportedOperationException",
                format!(
                    "this host reaches the KMS only as {FARGATE_PRINCIPAL} and cannot check \
                     that {} may use key {key_id}",
                    c.arn()
                ),
            ));
        }
        self.describe(key_id)
            .map(|d| d.arn)
            .map_err(|e| aws_error("DescribeKey", e))
    }
}

/// A client error as the platform's: the KMS's own refusal keeps its code,
/// message and status; anything else is [`PlatformError::Remote`].
fn platform_error(operation: &'static str) -> impl FnOnce(KmsError) -> PlatformError {
    move |e| match e {
        KmsError::Service {
            code,
            message,
            status,
            ..
        } => PlatformError::Kms {
            operation,
            error: AwsError {
                code,
                message,
                status,
            },
        },
        KmsError::Transport {
            endpoint, detail, ..
        } => PlatformError::Remote {
            operation,
            detail: format!("cannot reach {endpoint}: {detail}"),
        },
        KmsError::Malformed { detail, .. } => PlatformError::Remote {
            operation,
            detail: format!("malformed response: {detail}"),
        },
        KmsError::Endpoint(url) => PlatformError::Remote {
            operation,
            detail: format!("bad KMS endpoint {url:?}"),
        },
    }
}

/// A platform error as an AWS error (what the image store and the EFS API
/// answer with): the KMS's own, or a server fault naming the operation,
/// as the in-process image keys answer.
fn aws_error(operation: &'static str, e: PlatformError) -> AwsError {
    match e {
        PlatformError::Kms { error, .. } => error,
        other => AwsError::server("KMSInternalException", format!("{operation}: {other}")),
    }
}

impl VolumeKeys for ApiKeys {
    fn account(&self) -> &str {
        ApiKeys::account(self)
    }
    fn issue(&self, key_arn: &str, context: EncryptionContext) -> Result<IssuedKey, PlatformError> {
        ApiKeys::issue(self, key_arn, context)
    }
    fn retire(&self, key_arn: &str, grant_id: &str) -> Result<(), PlatformError> {
        ApiKeys::retire(self, key_arn, grant_id)
    }
    fn new_wrapped_key(
        &self,
        key_id: &str,
        context: EncryptionContext,
    ) -> Result<WrappedKey, PlatformError> {
        ApiKeys::new_wrapped_key(self, key_id, context, VOLUME_KEY_BYTES)
    }
    fn unwrap_volume_key(&self, w: &WrappedKey) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        ApiKeys::unwrap_volume_key(self, w)
    }
    fn key_arn_for(&self, caller: &RequestContext, key_id: &str) -> Result<String, AwsError> {
        ApiKeys::key_arn_for(self, caller, key_id)
    }
}

/// The image store's data keys, as the in-process image keys give them
/// (the platform key, used as Fargate, 32 bytes, the caller's context).
impl BlobKeys for ApiKeys {
    fn generate(&self, context: &ferry_blob::Context) -> Result<(DataKey, Vec<u8>), KeyError> {
        const OP: &str = "GenerateDataKey";
        let (plain, wrapped) = self.new_image_blob_key(context).map_err(key_error(OP))?;
        let key = DataKey::from_slice(&plain).ok_or_else(|| wrong_length(OP))?;
        Ok((key, wrapped))
    }

    fn unwrap(&self, wrapped: &[u8], context: &ferry_blob::Context) -> Result<DataKey, KeyError> {
        const OP: &str = "Decrypt";
        let plain = self
            .open_image_blob_key(wrapped, context)
            .map_err(key_error(OP))?;
        DataKey::from_slice(&plain).ok_or_else(|| wrong_length(OP))
    }
}

fn key_error(operation: &'static str) -> impl FnOnce(PlatformError) -> KeyError {
    move |e| match e {
        // The operation as the KMS was asked: the platform key's lookup
        // (DescribeKey) fails as itself.
        PlatformError::Kms { operation, error } => KeyError { operation, error },
        other => KeyError {
            operation,
            error: aws_error(operation, other),
        },
    }
}

fn wrong_length(operation: &'static str) -> KeyError {
    key_error(operation)(PlatformError::WrongLength)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ferry_api::sigv4::SigningCredentials;
    use ferry_proto::Caller;

    const ACCOUNT: &str = "111122223333";

    /// A client for an endpoint where nothing listens (port 1 on loopback:
    /// connect is refused at once).
    fn unreachable() -> ApiKeys {
        let creds = SigningCredentials {
            access_key_id: "AKIAHOST".into(),
            secret_access_key: Zeroizing::new("secret".into()),
        };
        let kms = KmsClient::new("http://127.0.0.1:1", "us-east-1", creds).unwrap();
        ApiKeys::new(kms, ACCOUNT)
    }

    #[test]
    fn kms_refusals_keep_code_message_and_status() {
        let e = platform_error("RetireGrant")(KmsError::Service {
            op: "RetireGrant",
            code: "NotFoundException".into(),
            message: "Grant ID g not found".into(),
            status: 400,
        });
        assert_eq!(
            e,
            PlatformError::Kms {
                operation: "RetireGrant",
                error: AwsError::client("NotFoundException", "Grant ID g not found"),
            }
        );
        assert_eq!(e.kms_error().unwrap().code, "NotFoundException");
        let e = platform_error("Decrypt")(KmsError::Service {
            op: "Decrypt",
            code: "KMSInternalException".into(),
            message: "m".into(),
            status: 500,
        });
        assert_eq!(e.kms_error().unwrap().status, 500);
    }

    #[test]
    fn an_unreachable_kms_is_no_kms_error() {
        let k = unreachable();
        let e = VolumeKeys::retire(&k, "arn:k", "g").unwrap_err();
        assert!(
            matches!(&e, PlatformError::Remote { operation: "RetireGrant", detail }
                if detail.contains("cannot reach http://127.0.0.1:1/")),
            "{e}"
        );
        assert_eq!(e.kms_error(), None);
        // As a task's stoppedReason: the operation and why.
        assert!(
            e.to_string()
                .starts_with("KMS RetireGrant failed: cannot reach")
        );
        let e = BlobKeys::unwrap(&k, b"blob", &Default::default())
            .err()
            .unwrap();
        assert_eq!(
            (e.operation, e.error.code.as_str(), e.error.status),
            ("Decrypt", "KMSInternalException", 500)
        );
        // No ARN was learnt from a failed lookup.
        assert!(k.platform_key_arn().is_err());
        assert!(k.platform_key_arn.get().is_none());
    }

    #[test]
    fn key_lookups_for_others_are_refused_without_a_call() {
        let k = unreachable();
        let user = RequestContext::internal(
            Caller {
                principal: Principal::Iam(format!("arn:aws:iam::{ACCOUNT}:user/alice")),
                ..Caller::admin(ACCOUNT)
            },
            "us-east-1",
        );
        let other_account = RequestContext::internal(
            Caller::service("999999999999", FARGATE_PRINCIPAL),
            "us-east-1",
        );
        for ctx in [
            RequestContext::internal(Caller::admin(ACCOUNT), "us-east-1"),
            user,
            other_account,
        ] {
            let e = k.key_arn_for(&ctx, "alias/mine").unwrap_err();
            assert_eq!(e.code, "UnsupportedOperationException", "{e}");
            assert!(e.message.contains(&ctx.caller.arn()), "{e}");
        }
        // Fargate itself is asked about (here: the KMS is unreachable).
        let fargate = RequestContext::internal(Caller::service(ACCOUNT, FARGATE_PRINCIPAL), "r");
        let e = k.key_arn_for(&fargate, "alias/mine").unwrap_err();
        assert_eq!((e.code.as_str(), e.status), ("KMSInternalException", 500));
    }
}
