//! A small KMS client: the four calls a node plugin makes, SigV4-signed
//! and sent by `ferry_api::client::SignedClient`, to any endpoint
//! that speaks KMS's JSON 1.1 protocol (a ferry server's listener).
//!
//! The plugin is a KMS *client*: it holds an access key that may generate
//! wrapped data keys, make and retire grants, and decrypt only through the
//! grants it made (docs/csi.md). It never sees a root key.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_api::client::{ClientError, SignedClient};
use ferry_api::sigv4::SigningCredentials;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// A KMS call that failed.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// KMS answered with an error (`__type` and message).
    #[error("KMS {op}: {code}: {message}")]
    Service {
        /// The operation.
        op: &'static str,
        /// The AWS error code (`NotFoundException`, ...).
        code: String,
        /// Its message.
        message: String,
    },
    /// KMS could not be reached or did not answer.
    #[error("KMS {op}: cannot reach {endpoint}: {detail}")]
    Transport {
        /// The operation.
        op: &'static str,
        /// The endpoint.
        endpoint: String,
        /// Why.
        detail: String,
    },
    /// An answer that is not what the API model says.
    #[error("KMS {op}: malformed response: {detail}")]
    Malformed {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The endpoint URL is unusable.
    #[error("bad KMS endpoint {0:?}: expected http://HOST:PORT or https://HOST[:PORT]")]
    Endpoint(String),
}

impl KmsError {
    /// The AWS error code, if KMS sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            KmsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A wrapped data key, as GenerateDataKeyWithoutPlaintext returns it.
#[derive(Debug, Clone)]
pub struct WrappedKey {
    /// The ARN of the key that wrapped it (KeyId of the response).
    pub key_arn: String,
    /// CiphertextBlob.
    pub blob: Vec<u8>,
}

/// A grant made for one volume.
pub struct Grant {
    /// GrantId (not secret; kept in the volume's record to retire it).
    pub id: String,
    /// GrantToken (used at once for Decrypt, never stored).
    pub token: Zeroizing<String>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The client.
#[derive(Debug)]
pub struct KmsClient {
    http: SignedClient,
}

/// Bytes of a data key: 512 bits, the LUKS2 keyslot passphrase.
pub const DATA_KEY_BYTES: u32 = 64;

impl KmsClient {
    /// A client for `endpoint` (`http://HOST:PORT`), signing for `region`.
    pub fn new(endpoint: &str, region: &str, creds: SigningCredentials) -> Result<Self, KmsError> {
        let http = SignedClient::new(endpoint, region, creds, Duration::from_secs(30))
            .map_err(|_| KmsError::Endpoint(endpoint.into()))?;
        Ok(KmsClient { http })
    }

    fn post(
        &self,
        op: &'static str,
        service: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), KmsError> {
        self.http.post(service, headers, body).map_err(|e| match e {
            ClientError::Endpoint(url) => KmsError::Endpoint(url),
            ClientError::Transport { endpoint, detail } => KmsError::Transport {
                op,
                endpoint,
                detail,
            },
        })
    }

    /// One KMS JSON 1.1 call; the response's JSON.
    fn call(&self, op: &'static str, body: &Value) -> Result<Value, KmsError> {
        let headers = [
            ("content-type", "application/x-amz-json-1.1".to_owned()),
            ("x-amz-target", format!("TrentService.{op}")),
        ];
        let (status, bytes) = self.post(op, "kms", &headers, body.to_string().into_bytes())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| KmsError::Malformed {
            op,
            detail: format!("HTTP {status}, not JSON: {e}"),
        })?;
        if status == 200 {
            return Ok(v);
        }
        let code = v
            .get("__type")
            .and_then(Value::as_str)
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Err(KmsError::Service { op, code, message })
    }

    /// The ARN of the principal these credentials belong to (STS
    /// GetCallerIdentity, which needs no permission): the grantee and
    /// retiring principal of the grants this plugin makes.
    pub fn caller_arn(&self) -> Result<String, KmsError> {
        const OP: &str = "GetCallerIdentity";
        let headers = [(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        )];
        let body = b"Action=GetCallerIdentity&Version=2011-06-15".to_vec();
        let (status, bytes) = self.post(OP, "sts", &headers, body)?;
        let text = String::from_utf8_lossy(&bytes);
        let tag = |t: &str| {
            let open = format!("<{t}>");
            let start = text.find(&open)? + open.len();
            let end = text[start..].find(&format!("</{t}>"))? + start;
            Some(text[start..end].to_owned())
        };
        if status != 200 {
            return Err(KmsError::Service {
                op: OP,
                code: tag("Code").unwrap_or_else(|| format!("HTTP {status}")),
                message: tag("Message").unwrap_or_default(),
            });
        }
        tag("Arn").ok_or(KmsError::Malformed {
            op: OP,
            detail: "no Arn".into(),
        })
    }

    /// GenerateDataKeyWithoutPlaintext: a new 64-byte data key, wrapped
    /// under `key_id` and bound to `context`.
    pub fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<WrappedKey, KmsError> {
        const OP: &str = "GenerateDataKeyWithoutPlaintext";
        let v = self.call(
            OP,
            &json!({"KeyId": key_id, "NumberOfBytes": DATA_KEY_BYTES, "EncryptionContext": context}),
        )?;
        let key_arn = str_field(OP, &v, "KeyId")?.to_owned();
        let blob = B64
            .decode(str_field(OP, &v, "CiphertextBlob")?)
            .map_err(|_| malformed(OP, "CiphertextBlob is not base64"))?;
        Ok(WrappedKey { key_arn, blob })
    }

    /// CreateGrant: lets `grantee` Decrypt under `key_arn`, only with
    /// exactly `context`; `grantee` may also retire it. Idempotent by `name`.
    pub fn create_grant(
        &self,
        key_arn: &str,
        grantee: &str,
        context: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<Grant, KmsError> {
        const OP: &str = "CreateGrant";
        let v = self.call(
            OP,
            &json!({
                "KeyId": key_arn,
                "GranteePrincipal": grantee,
                "RetiringPrincipal": grantee,
                "Operations": ["Decrypt"],
                "Constraints": {"EncryptionContextEquals": context},
                "Name": name,
            }),
        )?;
        Ok(Grant {
            id: str_field(OP, &v, "GrantId")?.to_owned(),
            token: Zeroizing::new(str_field(OP, &v, "GrantToken")?.to_owned()),
        })
    }

    /// Decrypt under a grant: the plaintext data key.
    pub fn decrypt(
        &self,
        key: &WrappedKey,
        context: &BTreeMap<String, String>,
        grant_token: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        const OP: &str = "Decrypt";
        let v = self.call(
            OP,
            &json!({
                "CiphertextBlob": B64.encode(&key.blob),
                "KeyId": key.key_arn,
                "EncryptionContext": context,
                "GrantTokens": [grant_token],
            }),
        )?;
        let b64 = Zeroizing::new(str_field(OP, &v, "Plaintext")?.to_owned());
        // serde_json's Value cannot be wiped; the process is mlocked and
        // undumpable, and the copy we keep is.
        drop(v);
        let plain = Zeroizing::new(
            B64.decode(b64.as_bytes())
                .map_err(|_| malformed(OP, "Plaintext is not base64"))?,
        );
        if plain.len() != DATA_KEY_BYTES as usize {
            return Err(malformed(OP, "Plaintext is not a 64-byte data key"));
        }
        Ok(plain)
    }

    /// RetireGrant by key and grant id (a restarted plugin has no token).
    pub fn retire_grant(&self, key_arn: &str, grant_id: &str) -> Result<(), KmsError> {
        self.call(
            "RetireGrant",
            &json!({"KeyId": key_arn, "GrantId": grant_id}),
        )
        .map(drop)
    }
}

fn malformed(op: &'static str, detail: &str) -> KmsError {
    KmsError::Malformed {
        op,
        detail: detail.into(),
    }
}

fn str_field<'a>(op: &'static str, v: &'a Value, k: &str) -> Result<&'a str, KmsError> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| KmsError::Malformed {
            op,
            detail: format!("no {k}"),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn creds() -> SigningCredentials {
        SigningCredentials {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: Zeroizing::new("secret".into()),
        }
    }

    #[test]
    fn endpoint_must_be_an_http_origin() {
        assert!(KmsClient::new("http://127.0.0.1:4566", "us-east-1", creds()).is_ok());
        assert!(KmsClient::new("https://kms.example", "us-east-1", creds()).is_ok());
        for bad in ["127.0.0.1:4566", "ftp://x", "http://x/path", "", "http://"] {
            assert!(
                matches!(
                    KmsClient::new(bad, "us-east-1", creds()),
                    Err(KmsError::Endpoint(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn unreachable_endpoint_is_a_transport_error() {
        // Port 1 on loopback: nothing listens, connect is refused at once.
        let c = KmsClient::new("http://127.0.0.1:1", "us-east-1", creds()).unwrap();
        let e = c.retire_grant("k", "g").unwrap_err();
        assert!(matches!(e, KmsError::Transport { .. }), "{e}");
        assert_eq!(e.code(), None);
    }
}
