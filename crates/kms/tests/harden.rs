//! Hostile input to the KMS: tampered ciphertext blobs, grants retired by
//! token, and requests sized to flood the audit trail.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_kms::audit::AuditSink;
use ferry_kms::ops::grants::RetireGrant;
use ferry_kms::{Kms, RootKey};
use ferry_proto::{Caller, JsonService, RequestContext};
use ferry_store::Store;
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";

#[derive(Default)]
struct MemSink(Mutex<Vec<String>>);

struct SinkRef(Arc<MemSink>);

impl AuditSink for SinkRef {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        self.0
            .0
            .lock()
            .unwrap()
            .push(String::from_utf8(line.to_vec()).unwrap());
        Ok(())
    }
}

impl MemSink {
    fn last(&self) -> Value {
        serde_json::from_str(self.0.lock().unwrap().last().unwrap()).unwrap()
    }
}

fn mem_kms(dir: &Path) -> (Kms, Arc<MemSink>) {
    let store = Arc::new(Store::open(&dir.join("state.redb")).unwrap());
    let sink = Arc::new(MemSink::default());
    let kms = Kms::with_sink(
        store,
        RootKey::from_bytes([7; 32]),
        Box::new(SinkRef(sink.clone())),
        ACCOUNT,
        "us-east-1",
    )
    .unwrap();
    (kms, sink)
}

/// A KMS writing its real audit file in `dir`.
fn file_kms(dir: &Path) -> Kms {
    let store = Arc::new(Store::open(&dir.join("state.redb")).unwrap());
    Kms::open(
        store,
        RootKey::from_bytes([7; 32]),
        dir,
        ACCOUNT,
        "us-east-1",
    )
    .unwrap()
}

fn admin() -> RequestContext {
    RequestContext::internal(Caller::admin(ACCOUNT), "us-east-1")
}

fn call(kms: &Kms, op: &str, body: &Value) -> Result<Value, (String, String)> {
    kms.call(&admin(), op, body.to_string().as_bytes())
        .map_err(|e| (e.code, e.message))
}

fn new_key(kms: &Kms) -> String {
    call(kms, "CreateKey", &json!({})).unwrap()["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn every_single_bit_flip_is_invalid_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let (kms, sink) = mem_kms(dir.path());
    let arn = new_key(&kms);
    let other = new_key(&kms);
    let ec = json!({"purpose": "bit-flips"});
    let out = call(
        &kms,
        "Encrypt",
        &json!({"KeyId": arn, "Plaintext": STANDARD.encode(b"secret"), "EncryptionContext": ec}),
    )
    .unwrap();
    let blob = STANDARD
        .decode(out["CiphertextBlob"].as_str().unwrap())
        .unwrap();
    // The untouched blob decrypts, so each failure below is the flip's.
    let ok = call(
        &kms,
        "Decrypt",
        &json!({"CiphertextBlob": STANDARD.encode(&blob), "EncryptionContext": ec}),
    )
    .unwrap();
    assert_eq!(ok["Plaintext"], STANDARD.encode(b"secret"));
    // Where the key ARN sits in the blob ("FKMS" | version | u16 length).
    let arn_at = 7..7 + arn.len();
    assert_eq!(&blob[arn_at.clone()], arn.as_bytes());

    for bit in 0..blob.len() * 8 {
        let mut bad = blob.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let b64 = STANDARD.encode(&bad);
        let requests = [
            (
                "Decrypt",
                json!({"CiphertextBlob": b64, "EncryptionContext": ec}),
            ),
            (
                "Decrypt",
                json!({"CiphertextBlob": b64, "EncryptionContext": ec, "KeyId": arn}),
            ),
            (
                "ReEncrypt",
                json!({"CiphertextBlob": b64, "SourceEncryptionContext": ec, "DestinationKeyId": other}),
            ),
        ];
        for (op, body) in requests {
            let e = call(&kms, op, &body).unwrap_err();
            assert_eq!(e.0, "InvalidCiphertextException", "{op}, bit {bit}: {e:?}");
            assert!(!e.1.contains("key/"), "{op}, bit {bit}: {e:?}");
            let rec = sink.last();
            assert_eq!(rec["errorCode"], "InvalidCiphertextException");
            // A key id altered into one that names no key is never
            // recorded; an intact one names the real key the call used.
            if op == "Decrypt" {
                let named: Vec<&str> = rec["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["ARN"].as_str().unwrap())
                    .collect();
                // Up to the end of the ARN, a flip garbles the key reference.
                let expect: &[&str] = if bit / 8 < arn_at.end {
                    &[]
                } else {
                    &[arn.as_str()]
                };
                assert_eq!(named, expect, "{op}, bit {bit}: {rec}");
            }
            assert!(!rec.to_string().contains(&b64), "the blob is never audited");
        }
    }
    // The key the caller names and the blob's key differ: IncorrectKeyException.
    let e = call(
        &kms,
        "Decrypt",
        &json!({"CiphertextBlob": STANDARD.encode(&blob), "EncryptionContext": ec, "KeyId": other}),
    )
    .unwrap_err();
    assert_eq!(e.0, "IncorrectKeyException");
}

#[test]
fn retire_grant_records_name_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let (kms, sink) = mem_kms(dir.path());
    let arn = new_key(&kms);
    let grant = |name: &str| {
        call(
            &kms,
            "CreateGrant",
            &json!({"KeyId": arn, "GranteePrincipal": format!("arn:aws:iam::{ACCOUNT}:role/r"),
                    "Operations": ["Decrypt"], "Name": name}),
        )
        .unwrap()
    };

    // By token, over JSON.
    let g = grant("one");
    call(&kms, "RetireGrant", &json!({"GrantToken": g["GrantToken"]})).unwrap();
    let rec = sink.last();
    assert_eq!(rec["eventName"], "RetireGrant");
    assert_eq!(rec["requestParameters"]["grantId"], g["GrantId"]);
    assert_eq!(rec["requestParameters"]["keyId"], arn.as_str());
    assert_eq!(rec["resources"][0]["ARN"], arn.as_str());
    assert!(!rec.to_string().contains(g["GrantToken"].as_str().unwrap()));

    // By token, in-process (the platform's path).
    let g = grant("two");
    let op = RetireGrant {
        grant_token: g["GrantToken"].as_str(),
        ..RetireGrant::default()
    };
    kms.execute(&admin(), &op).unwrap();
    let rec = sink.last();
    assert_eq!(rec["requestParameters"]["grantId"], g["GrantId"]);
    assert_eq!(rec["requestParameters"]["keyId"], arn.as_str());
    assert!(!rec.to_string().contains(g["GrantToken"].as_str().unwrap()));

    // By key id and grant id: the caller's own KeyId is kept as sent.
    let g = grant("three");
    let key_id = arn.rsplit('/').next().unwrap();
    call(
        &kms,
        "RetireGrant",
        &json!({"KeyId": key_id, "GrantId": g["GrantId"]}),
    )
    .unwrap();
    let rec = sink.last();
    assert_eq!(rec["requestParameters"]["grantId"], g["GrantId"]);
    assert_eq!(rec["requestParameters"]["keyId"], key_id);

    // An unknown token names no grant.
    let e = call(&kms, "RetireGrant", &json!({"GrantToken": "FGT1nope"})).unwrap_err();
    assert_eq!(e.0, "InvalidGrantTokenException");
    assert!(sink.last()["requestParameters"].get("grantId").is_none());
}

fn audit_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(ferry_kms::service::AUDIT_FILE))
        .unwrap()
        .len()
}

#[test]
fn oversized_requests_are_refused_and_cannot_flood_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let kms = file_kms(dir.path());
    let arn = new_key(&kms);
    let big = "x".repeat(20 * 1024);
    let pt = STANDARD.encode(b"p");
    let ctx_over = json!({"k": "v".repeat(8192)});
    let policy_over = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*",
        "Resource": "*", "Sid": "s".repeat(33 * 1024)}]})
    .to_string();
    let tags: Vec<Value> = (0..51)
        .map(|i| json!({"TagKey": format!("k{i}"), "TagValue": "v"}))
        .collect();
    let pairs: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": pt, "EncryptionContext": {"big": big}}),
            "ValidationException",
        ),
        // 8,193 bytes: one past the limit.
        (
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": pt, "EncryptionContext": ctx_over}),
            "ValidationException",
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": arn, "NumberOfBytes": 32, "EncryptionContext": {"big": big}}),
            "ValidationException",
        ),
        (
            "Decrypt",
            json!({"CiphertextBlob": pt, "EncryptionContext": {"big": big}}),
            "ValidationException",
        ),
        (
            "ReEncrypt",
            json!({"CiphertextBlob": pt, "DestinationKeyId": arn,
                   "DestinationEncryptionContext": {"big": big}}),
            "ValidationException",
        ),
        // Validation stops at the bad KeyId; the big context is unchecked
        // yet must still stay out of the record.
        (
            "Encrypt",
            json!({"KeyId": "", "Plaintext": pt, "EncryptionContext": {"big": big}}),
            "ValidationException",
        ),
        (
            "CreateGrant",
            json!({"KeyId": arn, "GranteePrincipal": "fargate.amazonaws.com", "Operations": ["Decrypt"],
                   "Constraints": {"EncryptionContextEquals": {"big": big}}}),
            "ValidationException",
        ),
        (
            "CreateGrant",
            json!({"KeyId": arn, "GranteePrincipal": "fargate.amazonaws.com", "Operations": ["Decrypt"],
                   "Constraints": {"EncryptionContextSubset": {"k": "v".repeat(385)}}}),
            "ValidationException",
        ),
        (
            "CreateGrant",
            json!({"KeyId": arn, "GranteePrincipal": "fargate.amazonaws.com", "Operations": ["Decrypt"],
                   "Constraints": {"EncryptionContextSubset": pairs}}),
            "ValidationException",
        ),
        (
            "CreateGrant",
            json!({"KeyId": arn, "GranteePrincipal": "fargate.amazonaws.com", "Operations": ["Decrypt"],
                   "Name": big}),
            "ValidationException",
        ),
        (
            "CreateKey",
            json!({"Description": big}),
            "ValidationException",
        ),
        ("CreateKey", json!({"Tags": tags}), "LimitExceededException"),
        (
            "PutKeyPolicy",
            json!({"KeyId": arn, "Policy": policy_over}),
            "LimitExceededException",
        ),
        (
            "UntagResource",
            json!({"KeyId": arn, "TagKeys": [big]}),
            "ValidationException",
        ),
        (
            "CreateKey",
            json!({"Policy": policy_over}),
            "LimitExceededException",
        ),
    ];
    for (op, body, code) in cases {
        let before = audit_size(dir.path());
        let e = call(&kms, op, &body).unwrap_err();
        assert_eq!(e.0, code, "{op}: {e:?}");
        let grew = audit_size(dir.path()) - before;
        assert!(grew > 0, "{op}: the refusal is still recorded");
        assert!(grew < 2048, "{op}: audit grew {grew} bytes");
    }

    // Members the model does not define are ignored by the call and left
    // out of its record, even when the call succeeds.
    let before = audit_size(dir.path());
    call(
        &kms,
        "Encrypt",
        &json!({"KeyId": arn, "Plaintext": pt, "Junk": "j".repeat(500 * 1024),
                "Constraints": big, "EncryptionContext": {"a": "b"}}),
    )
    .unwrap();
    let grew = audit_size(dir.path()) - before;
    assert!(grew < 2048, "audit grew {grew} bytes");

    // The limit itself is allowed: 8,192 bytes of context.
    let at_limit = json!({"k": "v".repeat(8191)});
    let out = call(
        &kms,
        "Encrypt",
        &json!({"KeyId": arn, "Plaintext": pt, "EncryptionContext": at_limit}),
    )
    .unwrap();
    call(
        &kms,
        "Decrypt",
        &json!({"CiphertextBlob": out["CiphertextBlob"], "EncryptionContext": at_limit}),
    )
    .unwrap();
    // And a grant constraint at AWS's limits.
    let eight: serde_json::Map<String, Value> = (0..8)
        .map(|i| (format!("k{i}"), json!("v".repeat(384))))
        .collect();
    call(
        &kms,
        "CreateGrant",
        &json!({"KeyId": arn, "GranteePrincipal": "fargate.amazonaws.com", "Operations": ["Decrypt"],
               "Constraints": {"EncryptionContextEquals": eight}}),
    )
    .unwrap();
}
