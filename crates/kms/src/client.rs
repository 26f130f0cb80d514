//! Typed helpers for in-process callers, e.g. the ECS control plane acting
//! as `fargate.amazonaws.com`. They go through the same path as HTTP
//! requests (validation, key policy and grants, audit), so an in-process
//! call is authorized and audited exactly like a remote one.
//!
//! ```ignore
//! let ctx = RequestContext::internal(Caller::service(account, FARGATE_PRINCIPAL), region);
//! let dk = kms.generate_data_key_without_plaintext(&ctx, PLATFORM_KEY_ALIAS, &context, 64)?;
//! let grant = kms.create_grant(&ctx, &dk.key_arn, FARGATE_PRINCIPAL, &["Decrypt"], &context)?;
//! let plaintext = kms.decrypt(&ctx, &dk.ciphertext_blob, &context)?;
//! kms.retire_grant(&ctx, &grant.grant_token)?;
//! ```

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::service::Kms;

/// A data key without plaintext.
#[derive(Debug, Clone)]
pub struct WrappedDataKey {
    /// The ciphertext blob (not secret without KMS access).
    pub ciphertext_blob: Vec<u8>,
    /// The key ARN it was made under.
    pub key_arn: String,
}

/// A created grant.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The grant id.
    pub grant_id: String,
    /// The grant token.
    pub grant_token: String,
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, AwsError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| KmsError::internal(format!("response lacks {name}")))
}

impl Kms {
    /// GenerateDataKeyWithoutPlaintext.
    pub fn generate_data_key_without_plaintext(
        &self,
        ctx: &RequestContext,
        key_id: &str,
        context: &BTreeMap<String, String>,
        number_of_bytes: usize,
    ) -> Result<WrappedDataKey, AwsError> {
        let v = self.call_json(
            ctx,
            "GenerateDataKeyWithoutPlaintext",
            &json!({"KeyId": key_id, "EncryptionContext": context, "NumberOfBytes": number_of_bytes}),
        )?;
        Ok(WrappedDataKey {
            ciphertext_blob: STANDARD
                .decode(field(&v, "CiphertextBlob")?)
                .map_err(|_| KmsError::internal("bad blob encoding"))?,
            key_arn: field(&v, "KeyId")?.to_owned(),
        })
    }

    /// Decrypt; the plaintext is wiped when dropped.
    pub fn decrypt(
        &self,
        ctx: &RequestContext,
        ciphertext_blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, AwsError> {
        let mut v = self.call_json(
            ctx,
            "Decrypt",
            &json!({"CiphertextBlob": STANDARD.encode(ciphertext_blob), "EncryptionContext": context}),
        )?;
        let b64 = match v.get_mut("Plaintext") {
            Some(Value::String(s)) => Zeroizing::new(std::mem::take(s)),
            _ => return Err(KmsError::internal("response lacks Plaintext")),
        };
        STANDARD
            .decode(b64.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| KmsError::internal("bad plaintext encoding"))
    }

    /// CreateGrant with an `EncryptionContextEquals` constraint.
    pub fn create_grant(
        &self,
        ctx: &RequestContext,
        key_id: &str,
        grantee: &str,
        operations: &[&str],
        context_equals: &BTreeMap<String, String>,
    ) -> Result<Grant, AwsError> {
        let v = self.call_json(
            ctx,
            "CreateGrant",
            &json!({
                "KeyId": key_id,
                "GranteePrincipal": grantee,
                "RetiringPrincipal": grantee,
                "Operations": operations,
                "Constraints": {"EncryptionContextEquals": context_equals},
            }),
        )?;
        Ok(Grant {
            grant_id: field(&v, "GrantId")?.to_owned(),
            grant_token: field(&v, "GrantToken")?.to_owned(),
        })
    }

    /// RetireGrant by token.
    pub fn retire_grant(&self, ctx: &RequestContext, grant_token: &str) -> Result<(), AwsError> {
        self.call_json(ctx, "RetireGrant", &json!({"GrantToken": grant_token}))
            .map(|_| ())
    }

    /// The ARN of the key an alias or id names (DescribeKey).
    pub fn key_arn(&self, ctx: &RequestContext, key_id: &str) -> Result<String, AwsError> {
        let v = self.call_json(ctx, "DescribeKey", &json!({"KeyId": key_id}))?;
        v.get("KeyMetadata")
            .and_then(|m| m.get("Arn"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| KmsError::internal("response lacks KeyMetadata.Arn"))
    }
}
