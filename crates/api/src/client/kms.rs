//! A small KMS client: the calls ferry's own KMS clients make (the CSI node
//! plugin, a remote host's storage through `ferry_host::keys::remote`),
//! SigV4-signed and sent by [`SignedClient`] to any endpoint that speaks
//! KMS's JSON 1.1 protocol (a ferry server's listener).
//!
//! Its users are KMS *clients*: they hold an access key, never a root key.
//! What they may do is the key policies' and grants' business, judged by
//! the KMS exactly as for any other caller (docs/csi.md).
//!
//! Requests carry only the members the caller gives: the KMS audits the
//! request as sent (less its secret members), so a client that sends the
//! same members as an in-process call leaves the same audit record.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::client::{ClientError, SignedClient};
use crate::sigv4::SigningCredentials;

/// An encryption context (string pairs; KMS canonicalizes their order).
pub type Context = BTreeMap<String, String>;

/// A KMS call that failed.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// KMS answered with an error (`__type` and message).
    #[error("KMS {op}: {code}: {message}")]
    Service {
        /// The operation.
        op: &'static str,
        /// The AWS error code (`NotFoundException`, ...), without the
        /// `namespace#` prefix some services put before it.
        code: String,
        /// Its message.
        message: String,
        /// The HTTP status it came with (4xx: the caller's fault; 5xx:
        /// the service's).
        status: u16,
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

/// A data key with its plaintext, as GenerateDataKey returns it. No
/// `Debug`: it holds the plaintext.
pub struct DataKey {
    /// The ARN of the key that wrapped it (KeyId of the response).
    pub key_arn: String,
    /// The plaintext data key; wiped on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// CiphertextBlob: the same key, sealed.
    pub blob: Vec<u8>,
}

/// What DescribeKey says about a key (the members ferry's clients use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    /// The key id.
    pub key_id: String,
    /// The key ARN.
    pub arn: String,
    /// `Enabled`, `Disabled`, `PendingDeletion`, `PendingImport`.
    pub key_state: String,
}

/// A grant's encryption-context constraints (CreateGrant's `Constraints`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrantConstraints<'a> {
    /// `EncryptionContextEquals`: the grant allows only this exact context.
    pub equals: Option<&'a Context>,
    /// `EncryptionContextSubset`: the grant allows contexts containing this.
    pub subset: Option<&'a Context>,
}

/// A CreateGrant request. Members left `None` are not sent.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'a> {
    /// The key (id or ARN; CreateGrant takes no alias).
    pub key_id: &'a str,
    /// Who the grant is for.
    pub grantee: &'a str,
    /// Who may retire it (besides the grantee with RetireGrant).
    pub retiring: Option<&'a str>,
    /// The operations it allows (`Decrypt`, ...).
    pub operations: &'a [&'a str],
    /// Its constraints; `None` sends no `Constraints`.
    pub constraints: Option<GrantConstraints<'a>>,
    /// Its name: CreateGrant is idempotent by name.
    pub name: Option<&'a str>,
}

/// A Decrypt request. Members left `None` (or empty) are not sent.
#[derive(Debug, Clone, Copy)]
pub struct DecryptRequest<'a> {
    /// The ciphertext blob.
    pub blob: &'a [u8],
    /// The encryption context it was sealed with (always sent, `{}` if
    /// empty, as in-process calls audit it).
    pub context: &'a Context,
    /// The key the blob must be under (`KeyId`), if named.
    pub key_id: Option<&'a str>,
    /// Grant tokens: a grant just made is usable through its token before
    /// it is visible everywhere (AWS's eventual consistency).
    pub grant_tokens: &'a [&'a str],
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

/// Bytes of a volume data key: 512 bits, the LUKS2 keyslot passphrase.
pub const DATA_KEY_BYTES: usize = 64;

impl KmsClient {
    /// A client for `endpoint` (`http://HOST:PORT`), signing for `region`.
    pub fn new(endpoint: &str, region: &str, creds: SigningCredentials) -> Result<Self, KmsError> {
        Self::new_any(&[endpoint], region, creds)
    }

    /// A client for equivalent `endpoints` (replicas), each asked in turn
    /// while the others cannot be reached ([`SignedClient::new_any`]).
    pub fn new_any(
        endpoints: &[&str],
        region: &str,
        creds: SigningCredentials,
    ) -> Result<Self, KmsError> {
        let http = SignedClient::new_any(endpoints, region, creds, Duration::from_secs(30))
            .map_err(|e| match e {
                ClientError::Endpoint(url) => KmsError::Endpoint(url),
                other => KmsError::Endpoint(other.to_string()),
            })?;
        Ok(KmsClient { http })
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        self.http.url()
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
        // A grant token in the body cannot be wiped from every copy the
        // HTTP stack makes; the processes that hold one are mlocked and
        // undumpable, and the copies the caller keeps are wiped.
        let (status, bytes) = self.post(op, "kms", &headers, body.to_string().into_bytes())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| KmsError::Malformed {
            op,
            detail: format!("HTTP {status}, not JSON: {e}"),
        })?;
        if status == 200 {
            return Ok(v);
        }
        Err(service_error(op, status, &v))
    }

    /// The ARN of the principal these credentials belong to (STS
    /// GetCallerIdentity, which needs no permission): the grantee and
    /// retiring principal of the grants the CSI plugin makes.
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
                status,
            });
        }
        tag("Arn").ok_or(KmsError::Malformed {
            op: OP,
            detail: "no Arn".into(),
        })
    }

    /// GenerateDataKeyWithoutPlaintext: a new data key of `bytes` bytes,
    /// wrapped under `key_id` and bound to `context`.
    pub fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &Context,
        bytes: usize,
    ) -> Result<WrappedKey, KmsError> {
        const OP: &str = "GenerateDataKeyWithoutPlaintext";
        let v = self.call(
            OP,
            &json!({"KeyId": key_id, "EncryptionContext": context, "NumberOfBytes": bytes}),
        )?;
        Ok(WrappedKey {
            key_arn: str_field(OP, &v, "KeyId")?.to_owned(),
            blob: blob_field(OP, &v, "CiphertextBlob")?,
        })
    }

    /// GenerateDataKey: a new data key of `bytes` bytes under `key_id`,
    /// bound to `context`, in plaintext and sealed. A plaintext of another
    /// length is refused (`Malformed`).
    pub fn generate_data_key(
        &self,
        key_id: &str,
        context: &Context,
        bytes: usize,
    ) -> Result<DataKey, KmsError> {
        const OP: &str = "GenerateDataKey";
        let v = self.call(
            OP,
            &json!({"KeyId": key_id, "EncryptionContext": context, "NumberOfBytes": bytes}),
        )?;
        let key_arn = str_field(OP, &v, "KeyId")?.to_owned();
        let blob = blob_field(OP, &v, "CiphertextBlob")?;
        let plaintext = plaintext_field(OP, v)?;
        if plaintext.len() != bytes {
            return Err(malformed(OP, "Plaintext is not as long as asked for"));
        }
        Ok(DataKey {
            key_arn,
            plaintext,
            blob,
        })
    }

    /// DescribeKey: the key `key_id` (id, ARN, alias name or alias ARN)
    /// names.
    pub fn describe_key(&self, key_id: &str) -> Result<KeyDescription, KmsError> {
        const OP: &str = "DescribeKey";
        let v = self.call(OP, &json!({ "KeyId": key_id }))?;
        let m = v
            .get("KeyMetadata")
            .ok_or_else(|| malformed(OP, "no KeyMetadata"))?;
        Ok(KeyDescription {
            key_id: str_field(OP, m, "KeyId")?.to_owned(),
            arn: str_field(OP, m, "Arn")?.to_owned(),
            key_state: str_field(OP, m, "KeyState")?.to_owned(),
        })
    }

    /// CreateGrant as `req` says.
    pub fn create_grant(&self, req: &GrantRequest<'_>) -> Result<Grant, KmsError> {
        const OP: &str = "CreateGrant";
        let v = self.call(OP, &create_grant_body(req))?;
        Ok(Grant {
            id: str_field(OP, &v, "GrantId")?.to_owned(),
            token: Zeroizing::new(str_field(OP, &v, "GrantToken")?.to_owned()),
        })
    }

    /// Decrypt as `req` says: the plaintext, of whatever length it is (the
    /// caller knows what length it sealed).
    pub fn decrypt(&self, req: &DecryptRequest<'_>) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        const OP: &str = "Decrypt";
        let v = self.call(OP, &decrypt_body(req))?;
        plaintext_field(OP, v)
    }

    /// RetireGrant by key and grant id (a restarted client has no token).
    pub fn retire_grant(&self, key_id: &str, grant_id: &str) -> Result<(), KmsError> {
        self.call(
            "RetireGrant",
            &json!({"KeyId": key_id, "GrantId": grant_id}),
        )
        .map(drop)
    }

    /// RetireGrant by the grant's token (the grant was just made).
    pub fn retire_grant_by_token(&self, grant_token: &str) -> Result<(), KmsError> {
        self.call("RetireGrant", &json!({ "GrantToken": grant_token }))
            .map(drop)
    }
}

/// CreateGrant's body: only the members `req` sets.
fn create_grant_body(req: &GrantRequest<'_>) -> Value {
    let mut m = Map::new();
    m.insert("KeyId".into(), json!(req.key_id));
    m.insert("GranteePrincipal".into(), json!(req.grantee));
    if let Some(r) = req.retiring {
        m.insert("RetiringPrincipal".into(), json!(r));
    }
    m.insert("Operations".into(), json!(req.operations));
    if let Some(c) = req.constraints {
        let mut cm = Map::new();
        if let Some(s) = c.subset {
            cm.insert("EncryptionContextSubset".into(), json!(s));
        }
        if let Some(e) = c.equals {
            cm.insert("EncryptionContextEquals".into(), json!(e));
        }
        m.insert("Constraints".into(), Value::Object(cm));
    }
    if let Some(n) = req.name {
        m.insert("Name".into(), json!(n));
    }
    Value::Object(m)
}

/// Decrypt's body: only the members `req` sets.
fn decrypt_body(req: &DecryptRequest<'_>) -> Value {
    let mut m = Map::new();
    m.insert("CiphertextBlob".into(), json!(B64.encode(req.blob)));
    m.insert("EncryptionContext".into(), json!(req.context));
    if let Some(k) = req.key_id {
        m.insert("KeyId".into(), json!(k));
    }
    if !req.grant_tokens.is_empty() {
        m.insert("GrantTokens".into(), json!(req.grant_tokens));
    }
    Value::Object(m)
}

/// A KMS error answer: `__type` (less any `namespace#` prefix) and message.
fn service_error(op: &'static str, status: u16, v: &Value) -> KmsError {
    let (code, message) =
        super::aws_error(v).unwrap_or_else(|| (format!("HTTP {status}"), String::new()));
    KmsError::Service {
        op,
        code,
        message,
        status,
    }
}

/// The `Plaintext` member, decoded; the response is consumed so the only
/// copy left is the one wiped on drop.
fn plaintext_field(op: &'static str, v: Value) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let Value::Object(mut m) = v else {
        return Err(malformed(op, "not a JSON object"));
    };
    let b64 = match m.remove("Plaintext") {
        Some(Value::String(s)) => Zeroizing::new(s),
        _ => return Err(malformed(op, "no Plaintext")),
    };
    B64.decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| malformed(op, "Plaintext is not base64"))
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

fn blob_field(op: &'static str, v: &Value, k: &str) -> Result<Vec<u8>, KmsError> {
    B64.decode(str_field(op, v, k)?)
        .map_err(|_| malformed(op, &format!("{k} is not base64")))
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

    fn ctx() -> Context {
        [("a".to_owned(), "1".to_owned())].into()
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

    #[test]
    fn grant_body_sends_only_what_is_set() {
        let c = ctx();
        let full = create_grant_body(&GrantRequest {
            key_id: "arn:k",
            grantee: "g",
            retiring: Some("r"),
            operations: &["Decrypt"],
            constraints: Some(GrantConstraints {
                equals: Some(&c),
                subset: None,
            }),
            name: Some("n"),
        });
        assert_eq!(
            full,
            json!({"KeyId": "arn:k", "GranteePrincipal": "g", "RetiringPrincipal": "r",
                   "Operations": ["Decrypt"], "Constraints": {"EncryptionContextEquals": {"a": "1"}},
                   "Name": "n"})
        );
        let bare = create_grant_body(&GrantRequest {
            key_id: "k",
            grantee: "g",
            retiring: None,
            operations: &["Decrypt", "RetireGrant"],
            constraints: None,
            name: None,
        });
        assert_eq!(
            bare,
            json!({"KeyId": "k", "GranteePrincipal": "g", "Operations": ["Decrypt", "RetireGrant"]})
        );
    }

    #[test]
    fn decrypt_body_sends_only_what_is_set() {
        let c = ctx();
        let plain = decrypt_body(&DecryptRequest {
            blob: b"xyz",
            context: &c,
            key_id: None,
            grant_tokens: &[],
        });
        assert_eq!(
            plain,
            json!({"CiphertextBlob": "eHl6", "EncryptionContext": {"a": "1"}})
        );
        let named = decrypt_body(&DecryptRequest {
            blob: b"xyz",
            context: &c,
            key_id: Some("arn:k"),
            grant_tokens: &["t1"],
        });
        assert_eq!(named["KeyId"], "arn:k");
        assert_eq!(named["GrantTokens"], json!(["t1"]));
    }

    #[test]
    fn error_answers_keep_code_message_and_status() {
        let e = service_error(
            "Decrypt",
            400,
            &json!({"__type": "com.amazonaws.kms#NotFoundException", "message": "gone"}),
        );
        assert!(
            matches!(&e, KmsError::Service { op: "Decrypt", code, message, status: 400 }
                if code == "NotFoundException" && message == "gone"),
            "{e}"
        );
        let e = service_error("Decrypt", 503, &json!({}));
        assert_eq!(e.code(), Some("HTTP 503"));
    }

    #[test]
    fn plaintext_is_decoded_or_refused() {
        let p = plaintext_field("Decrypt", json!({"Plaintext": "AAEC"})).unwrap();
        assert_eq!(&*p, &[0, 1, 2]);
        assert!(matches!(
            plaintext_field("Decrypt", json!({"Plaintext": "%%"})),
            Err(KmsError::Malformed { .. })
        ));
        assert!(matches!(
            plaintext_field("Decrypt", json!({})),
            Err(KmsError::Malformed { .. })
        ));
    }
}
