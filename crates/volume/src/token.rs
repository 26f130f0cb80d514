//! [`KmsToken`]: LUKS2 token 0 (`ferry-kms`) of a KMS-keyed volume, typed.
//!
//! It records which KMS key wraps the volume's data key, the wrapped data
//! key and the encryption context it is bound to, so anyone with the right
//! KMS permission can open the volume with standard tools
//! (docs/volume-format.md, "Token 0"). Base64 appears only here, at the
//! disk boundary: in memory the wrapped key is bytes.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::luks::{self, OpenError};

/// Token 0 of a KMS-keyed volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsToken {
    /// The ARN of the KMS key that wraps the data key.
    pub key_arn: String,
    /// The wrapped data key (`CiphertextBlob`; not secret without KMS access).
    pub wrapped_data_key: Vec<u8>,
    /// The encryption context the data key is bound to.
    pub encryption_context: BTreeMap<String, String>,
}

/// A token that is missing or not a `ferry-kms` token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The header could not be read.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The volume has no token 0.
    #[error("the volume has no ferry-kms token")]
    Missing,
    /// A member is missing or malformed.
    #[error("the token lacks a valid {0}")]
    Invalid(&'static str),
}

impl KmsToken {
    /// The token's JSON, as [`crate::FormatOptions::token`] takes it
    /// (`type` and `keyslots` are added by `format`).
    pub fn to_json(&self) -> Value {
        json!({
            "keyArn": self.key_arn,
            "wrappedDataKey": B64.encode(&self.wrapped_data_key),
            "encryptionContext": self.encryption_context,
        })
    }

    /// Parses a token's JSON.
    pub fn from_json(v: &Value) -> Result<Self, TokenError> {
        let key_arn = v
            .get("keyArn")
            .and_then(Value::as_str)
            .ok_or(TokenError::Invalid("keyArn"))?;
        let wrapped_data_key = v
            .get("wrappedDataKey")
            .and_then(Value::as_str)
            .and_then(|b| B64.decode(b).ok())
            .ok_or(TokenError::Invalid("wrappedDataKey"))?;
        let encryption_context = v
            .get("encryptionContext")
            .cloned()
            .and_then(|c| serde_json::from_value(c).ok())
            .ok_or(TokenError::Invalid("encryptionContext"))?;
        Ok(Self {
            key_arn: key_arn.to_owned(),
            wrapped_data_key,
            encryption_context,
        })
    }

    /// Reads token 0 of the volume at `image`.
    pub fn read(image: &Path) -> Result<Self, TokenError> {
        let v = luks::read_token(image)?.ok_or(TokenError::Missing)?;
        Self::from_json(&v)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_documented_shape() {
        let t = KmsToken {
            key_arn: "arn:aws:kms:us-east-1:1:key/k".into(),
            wrapped_data_key: vec![1, 2, 3],
            encryption_context: BTreeMap::from([("aws:ecs:clusterName".into(), "c".into())]),
        };
        let v = t.to_json();
        assert_eq!(v["wrappedDataKey"], "AQID");
        assert_eq!(v["encryptionContext"]["aws:ecs:clusterName"], "c");
        assert_eq!(KmsToken::from_json(&v).unwrap(), t);
        let mut bad = v.clone();
        bad["wrappedDataKey"] = json!("not base64!");
        assert!(matches!(
            KmsToken::from_json(&bad),
            Err(TokenError::Invalid("wrappedDataKey"))
        ));
    }
}
