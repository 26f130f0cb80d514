//! The audit trail: one CloudTrail-shaped JSON line per KMS call, success
//! or failure, appended to `DIR/kms-audit.jsonl`.
//!
//! Records carry the caller, the operation, the request parameters with
//! every secret-bearing field removed (plaintext, ciphertext, grant tokens)
//! and the error code; never key material. The cryptographic operations
//! only return after their record was appended: if the append fails, the
//! call fails with `KMSInternalException`. The file itself, and its group
//! commit, is [`crate::audit_file`].

pub use crate::audit_file::Ticket;
use ferry_proto::{Principal, RequestContext};
use serde_json::{Map, Value};

/// Request and response members that may carry secrets; never audited.
const SECRET_FIELDS: &[&str] = &[
    "Plaintext",
    "CiphertextBlob",
    "CiphertextForRecipient",
    "GrantToken",
    "GrantTokens",
    "Recipient",
    "Message",
    "Signature",
    "Mac",
    "PrivateKeyPlaintext",
    "PrivateKeyCiphertextBlob",
    "PublicKey",
    "ImportToken",
    "EncryptedKeyMaterial",
];

/// Where audit lines go. A trait so unit tests can inject failures.
pub trait AuditSink: Send + Sync {
    /// Appends one line (without the newline); returns once it is written.
    fn append(&self, line: &[u8]) -> std::io::Result<()>;

    /// Queues one line; the ticket completes once it is written (possibly
    /// together with others). Default: [`AuditSink::append`] at once.
    fn submit(&self, line: &[u8]) -> Ticket {
        Ticket::done(self.append(line))
    }
}

fn camel(k: &str) -> String {
    let mut c = k.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A copy of a request or response object with secret members removed and
/// member names in CloudTrail's lowerCamelCase.
pub fn sanitize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if SECRET_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                // Encryption contexts keep their own keys verbatim.
                let inner = if k.contains("EncryptionContext") || k == "Tags" || k == "Constraints"
                {
                    v.clone()
                } else {
                    sanitize(v)
                };
                out.insert(camel(k), inner);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sanitize).collect()),
        other => other.clone(),
    }
}

/// The longest error message and user agent a record keeps (bytes).
const MAX_AUDITED_TEXT: usize = 1024;
/// The largest request member a failed call's record keeps (serialized
/// bytes): a refused request may be refused precisely for its size, and
/// validation stops at the first bad member, so later ones are unchecked.
pub const MAX_FAILED_MEMBER: usize = 1024;

/// The request members each operation's model defines: only these are
/// recorded (as CloudTrail records modeled parameters), so members the
/// service ignores cannot grow the trail.
fn modeled_members(op: &str) -> &'static [&'static str] {
    match op {
        "CreateKey" => &[
            "Policy",
            "Description",
            "KeyUsage",
            "CustomerMasterKeySpec",
            "KeySpec",
            "Origin",
            "CustomKeyStoreId",
            "BypassPolicyLockoutSafetyCheck",
            "Tags",
            "MultiRegion",
            "XksKeyId",
        ],
        "DescribeKey" => &["KeyId", "GrantTokens"],
        "ListKeys" => &["Limit", "Marker"],
        "EnableKey"
        | "DisableKey"
        | "CancelKeyDeletion"
        | "DisableKeyRotation"
        | "GetKeyRotationStatus"
        | "RotateKeyOnDemand" => &["KeyId"],
        "ScheduleKeyDeletion" => &["KeyId", "PendingWindowInDays"],
        "CreateAlias" | "UpdateAlias" => &["AliasName", "TargetKeyId"],
        "DeleteAlias" => &["AliasName"],
        "ListAliases" | "ListKeyPolicies" | "ListResourceTags" => &["KeyId", "Limit", "Marker"],
        "Encrypt" => &[
            "KeyId",
            "Plaintext",
            "EncryptionContext",
            "GrantTokens",
            "EncryptionAlgorithm",
            "DryRun",
        ],
        "Decrypt" => &[
            "CiphertextBlob",
            "EncryptionContext",
            "GrantTokens",
            "KeyId",
            "EncryptionAlgorithm",
            "Recipient",
            "DryRun",
            "DryRunModifiers",
        ],
        "GenerateDataKey" => &[
            "KeyId",
            "EncryptionContext",
            "NumberOfBytes",
            "KeySpec",
            "GrantTokens",
            "Recipient",
            "DryRun",
        ],
        "GenerateDataKeyWithoutPlaintext" => &[
            "KeyId",
            "EncryptionContext",
            "KeySpec",
            "NumberOfBytes",
            "GrantTokens",
            "DryRun",
        ],
        "GenerateRandom" => &["NumberOfBytes", "CustomKeyStoreId", "Recipient"],
        "ReEncrypt" => &[
            "CiphertextBlob",
            "SourceEncryptionContext",
            "SourceKeyId",
            "DestinationKeyId",
            "DestinationEncryptionContext",
            "SourceEncryptionAlgorithm",
            "DestinationEncryptionAlgorithm",
            "GrantTokens",
            "DryRun",
            "DryRunModifiers",
        ],
        "EnableKeyRotation" => &["KeyId", "RotationPeriodInDays"],
        "ListKeyRotations" => &["KeyId", "IncludeKeyMaterial", "Limit", "Marker"],
        "CreateGrant" => &[
            "KeyId",
            "GranteePrincipal",
            "RetiringPrincipal",
            "Operations",
            "Constraints",
            "GrantTokens",
            "Name",
            "DryRun",
        ],
        "ListGrants" => &["Limit", "Marker", "KeyId", "GrantId", "GranteePrincipal"],
        "RetireGrant" => &["GrantToken", "KeyId", "GrantId", "DryRun"],
        "RevokeGrant" => &["KeyId", "GrantId", "DryRun"],
        "GetKeyPolicy" => &["KeyId", "PolicyName"],
        "PutKeyPolicy" => &[
            "KeyId",
            "PolicyName",
            "Policy",
            "BypassPolicyLockoutSafetyCheck",
        ],
        "TagResource" => &["KeyId", "Tags"],
        "UpdateKeyDescription" => &["KeyId", "Description"],
        "Sign" => &[
            "KeyId",
            "Message",
            "MessageType",
            "GrantTokens",
            "SigningAlgorithm",
            "DryRun",
        ],
        "Verify" => &[
            "KeyId",
            "Message",
            "MessageType",
            "Signature",
            "SigningAlgorithm",
            "GrantTokens",
            "DryRun",
        ],
        "GetPublicKey" => &["KeyId", "GrantTokens"],
        "GenerateMac" => &["Message", "KeyId", "MacAlgorithm", "GrantTokens", "DryRun"],
        "VerifyMac" => &[
            "Message",
            "KeyId",
            "MacAlgorithm",
            "Mac",
            "GrantTokens",
            "DryRun",
        ],
        "GenerateDataKeyPair" => &[
            "EncryptionContext",
            "KeyId",
            "KeyPairSpec",
            "GrantTokens",
            "Recipient",
            "DryRun",
        ],
        "GenerateDataKeyPairWithoutPlaintext" => &[
            "EncryptionContext",
            "KeyId",
            "KeyPairSpec",
            "GrantTokens",
            "DryRun",
        ],
        "GetParametersForImport" => &["KeyId", "WrappingAlgorithm", "WrappingKeySpec"],
        "ImportKeyMaterial" => &[
            "KeyId",
            "ImportToken",
            "EncryptedKeyMaterial",
            "ValidTo",
            "ExpirationModel",
            "ImportType",
            "KeyMaterialDescription",
            "KeyMaterialId",
        ],
        "DeleteImportedKeyMaterial" => &["KeyId", "KeyMaterialId"],
        "ListRetirableGrants" => &["Limit", "Marker", "RetiringPrincipal"],
        "UntagResource" => &["KeyId", "TagKeys"],
        _ => &[],
    }
}

/// Keeps only the modeled members of a nested structure.
fn only(v: &Value, members: &[&str]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| members.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The request as its record keeps it: modeled members only (nested
/// structures too), secrets removed; for a failed call, members larger
/// than [`MAX_FAILED_MEMBER`] are left out. A successful call's members
/// all passed validation, so their size is bounded by the limits in
/// `docs/kms.md`.
pub fn request_parameters(operation: &str, request: &Value, failed: bool) -> Value {
    let Value::Object(m) = request else {
        return Value::Null;
    };
    let modeled = modeled_members(operation);
    let mut kept = Map::new();
    for (k, v) in m {
        if !modeled.contains(&k.as_str()) {
            continue;
        }
        let v = match k.as_str() {
            "Constraints" => only(v, &["EncryptionContextSubset", "EncryptionContextEquals"]),
            "Tags" => match v {
                Value::Array(a) => {
                    Value::Array(a.iter().map(|t| only(t, &["TagKey", "TagValue"])).collect())
                }
                other => other.clone(),
            },
            _ => v.clone(),
        };
        if failed && serde_json::to_vec(&v).map_or(true, |b| b.len() > MAX_FAILED_MEMBER) {
            continue;
        }
        kept.insert(k.clone(), v);
    }
    sanitize(&Value::Object(kept))
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn clipped(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One audit event.
pub struct Event<'a> {
    /// The request context.
    pub ctx: &'a RequestContext,
    /// The operation name.
    pub operation: &'a str,
    /// The request body (parsed), if it parsed.
    pub request: Option<&'a Value>,
    /// The response, on success.
    pub response: Option<&'a Value>,
    /// The error code and message, on failure.
    pub error: Option<(&'a str, &'a str)>,
    /// The key ARNs the call touched.
    pub resources: &'a [String],
}

fn read_only(op: &str) -> bool {
    op.starts_with("Describe") || op.starts_with("List") || op.starts_with("Get")
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoked_by: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct Resource<'a> {
    #[serde(rename = "accountId")]
    account_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ARN")]
    arn: &'a str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    event_version: &'static str,
    user_identity: Identity<'a>,
    event_time: String,
    event_source: &'static str,
    event_name: &'a str,
    aws_region: &'a str,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: &'a str,
    user_agent: &'a str,
    request_parameters: Option<Value>,
    response_elements: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    #[serde(rename = "eventID")]
    event_id: String,
    read_only: bool,
    resources: Vec<Resource<'a>>,
    event_type: &'static str,
    management_event: bool,
    recipient_account_id: &'a str,
    event_category: &'static str,
}

fn record<'a>(e: &'a Event<'a>) -> Record<'a> {
    let c = &e.ctx.caller;
    let user_identity = match &c.principal {
        Principal::AccountAdmin => Identity {
            kind: "Root",
            principal_id: Some(&c.account),
            arn: Some(c.arn()),
            account_id: Some(&c.account),
            access_key_id: c.access_key_id.as_deref(),
            invoked_by: None,
        },
        // The platform in-process signs nothing (no key id, as CloudTrail
        // shows a service); a remote agent signs with its own key, named
        // so the trail tells which host made the call.
        Principal::Service(s) => Identity {
            kind: "AWSService",
            principal_id: None,
            arn: None,
            account_id: None,
            access_key_id: c.access_key_id.as_deref(),
            invoked_by: Some(s),
        },
        Principal::Iam(arn) => Identity {
            kind: "IAMUser",
            principal_id: None,
            arn: Some(arn.clone()),
            account_id: Some(&c.account),
            access_key_id: c.access_key_id.as_deref(),
            invoked_by: None,
        },
        Principal::AssumedRole { .. } => Identity {
            kind: "AssumedRole",
            principal_id: None,
            arn: Some(c.arn()),
            account_id: Some(&c.account),
            access_key_id: c.access_key_id.as_deref(),
            invoked_by: None,
        },
    };
    let event_time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Record {
        event_version: "1.08",
        user_identity,
        event_time,
        event_source: "kms.amazonaws.com",
        event_name: e.operation,
        aws_region: &e.ctx.region,
        source_ip_address: &e.ctx.source_ip,
        user_agent: clipped(&e.ctx.user_agent, MAX_AUDITED_TEXT),
        request_parameters: e
            .request
            .map(|r| request_parameters(e.operation, r, e.error.is_some())),
        response_elements: e.response.map(sanitize),
        error_code: e.error.map(|x| x.0),
        error_message: e.error.map(|x| clipped(x.1, MAX_AUDITED_TEXT)),
        request_id: &e.ctx.request_id,
        // Unique, not secret: the thread-local CSPRNG spares a getrandom(2)
        // per record.
        event_id: uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string(),
        read_only: read_only(e.operation),
        resources: e
            .resources
            .iter()
            .map(|arn| Resource {
                account_id: arn.split(':').nth(4).unwrap_or_default(),
                kind: "AWS::KMS::Key",
                arn,
            })
            .collect(),
        event_type: "AwsApiCall",
        management_event: true,
        recipient_account_id: &c.account,
        event_category: "Management",
    }
}

/// Renders an event as one CloudTrail-shaped JSON line (no newline).
pub fn line(e: &Event<'_>) -> Vec<u8> {
    serde_json::to_vec(&record(e)).unwrap_or_default()
}

/// Renders an event as a JSON value (for inspection and tests).
pub fn render(e: &Event<'_>) -> Value {
    serde_json::to_value(record(e)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::Caller;
    use serde_json::json;

    #[test]
    fn secrets_are_removed_and_names_camel_cased() {
        let req = json!({
            "KeyId": "alias/x",
            "Plaintext": "c2VjcmV0",
            "CiphertextBlob": "Zm9v",
            "GrantTokens": ["t"],
            "EncryptionContext": {"Purpose": "test"}
        });
        let resp = json!({"Plaintext": "c2VjcmV0", "KeyId": "arn:k", "CiphertextBlob": "Zm9v"});
        let ctx = RequestContext::internal(Caller::admin("111122223333"), "us-east-1");
        let line = render(&Event {
            ctx: &ctx,
            operation: "Decrypt",
            request: Some(&req),
            response: Some(&resp),
            error: None,
            resources: &["arn:aws:kms:us-east-1:111122223333:key/k".into()],
        });
        let text = line.to_string();
        assert!(
            !text.contains("c2VjcmV0") && !text.contains("Zm9v"),
            "{text}"
        );
        assert_eq!(line["requestParameters"]["keyId"], "alias/x");
        assert_eq!(
            line["requestParameters"]["encryptionContext"]["Purpose"],
            "test"
        );
        assert_eq!(line["eventSource"], "kms.amazonaws.com");
        assert_eq!(line["resources"][0]["accountId"], "111122223333");
        assert_eq!(line["userIdentity"]["type"], "Root");
        assert!(line.get("errorCode").is_none());
    }

    #[test]
    fn only_modeled_members_are_kept_and_failed_calls_drop_big_ones() {
        let big = "x".repeat(MAX_FAILED_MEMBER + 1);
        let req = json!({
            "KeyId": "k",
            "Junk": big,
            "EncryptionContext": {"big": big},
            "Plaintext": "c2VjcmV0",
        });
        let ok = request_parameters("Encrypt", &req, false);
        assert_eq!(ok, json!({"keyId": "k", "encryptionContext": {"big": big}}));
        let failed = request_parameters("Encrypt", &req, true);
        assert_eq!(failed, json!({"keyId": "k"}));
        // Nested structures keep their modeled members only.
        let grant =
            json!({"KeyId": "k", "Constraints": {"EncryptionContextEquals": {"a": "b"}, "X": big}});
        assert_eq!(
            request_parameters("CreateGrant", &grant, false)["constraints"],
            json!({"EncryptionContextEquals": {"a": "b"}})
        );
        let tags = json!({"Tags": [{"TagKey": "a", "TagValue": "b", "X": big}]});
        assert_eq!(
            request_parameters("CreateKey", &tags, false)["tags"],
            json!([{"TagKey": "a", "TagValue": "b"}])
        );
        assert_eq!(request_parameters("NoSuchOp", &req, false), json!({}));
        assert_eq!(clipped("héllo", 2), "h");
    }
}
