//! The audit trail: one CloudTrail-shaped JSON line per KMS call, success
//! or failure, appended to `DIR/kms-audit.jsonl`.
//!
//! Records carry the caller, the operation, the request parameters with
//! every secret-bearing field removed (plaintext, ciphertext, grant tokens)
//! and the error code; never key material. The cryptographic operations
//! only return after their record was appended: if the append fails, the
//! call fails with `KMSInternalException`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_proto::{Principal, RequestContext};
use serde_json::{Map, Value, json};

/// Request and response members that may carry secrets; never audited.
const SECRET_FIELDS: &[&str] = &[
    "Plaintext",
    "CiphertextBlob",
    "CiphertextForRecipient",
    "GrantToken",
    "GrantTokens",
    "Recipient",
];

/// Where audit lines go. A trait so unit tests can inject failures.
pub trait AuditSink: Send + Sync {
    /// Appends one line (without the newline).
    fn append(&self, line: &[u8]) -> std::io::Result<()>;
}

/// The JSON-lines file sink.
pub struct FileSink {
    path: PathBuf,
    file: Mutex<File>,
}

impl FileSink {
    /// Opens (creating, mode 0600) the audit file for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for FileSink {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("audit lock poisoned"))?;
        // One write(2) per record on an O_APPEND file: records never interleave.
        f.write_all(&buf)
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

/// Renders an event as one CloudTrail-shaped JSON object.
pub fn render(e: &Event<'_>) -> Value {
    let c = &e.ctx.caller;
    let identity = match &c.principal {
        Principal::AccountAdmin => json!({
            "type": "Root",
            "principalId": c.account,
            "arn": c.arn(),
            "accountId": c.account,
            "accessKeyId": c.access_key_id,
        }),
        Principal::Service(s) => json!({ "type": "AWSService", "invokedBy": s }),
        Principal::Iam(arn) => json!({
            "type": "IAMUser",
            "arn": arn,
            "accountId": c.account,
            "accessKeyId": c.access_key_id,
        }),
    };
    let now = time::OffsetDateTime::now_utc();
    let event_time = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut v = json!({
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": event_time,
        "eventSource": "kms.amazonaws.com",
        "eventName": e.operation,
        "awsRegion": e.ctx.region,
        "sourceIPAddress": e.ctx.source_ip,
        "userAgent": e.ctx.user_agent,
        "requestParameters": e.request.map(sanitize),
        "responseElements": e.response.map(sanitize),
        "requestID": e.ctx.request_id,
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": read_only(e.operation),
        "resources": e.resources.iter().map(|arn| json!({
            "accountId": arn.split(':').nth(4).unwrap_or_default(),
            "type": "AWS::KMS::Key",
            "ARN": arn,
        })).collect::<Vec<_>>(),
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": c.account,
        "eventCategory": "Management",
    });
    if let (Some((code, msg)), Value::Object(m)) = (e.error, &mut v) {
        m.insert("errorCode".into(), Value::String(code.to_owned()));
        m.insert("errorMessage".into(), Value::String(msg.to_owned()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::Caller;

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
}
