//! The KMS in-process, as the ECS control plane uses it, plus the
//! properties that need a whole KMS: rotation, context binding, states,
//! audit failures, persistence.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_kms::audit::AuditSink;
use ferry_kms::model::Constraints;
use ferry_kms::ops::data::{Decrypt, GenerateDataKeyWithoutPlaintext, WrappedDataKey};
use ferry_kms::ops::grants::{CreateGrant, GrantCreated, RetireGrant};
use ferry_kms::ops::keys::DescribeKey;
use ferry_kms::{FARGATE_PRINCIPAL, Kms, PLATFORM_KEY_ALIAS, RootKey};
use ferry_proto::{AwsError, Caller, JsonService, RequestContext};
use ferry_store::Store;
use serde_json::{Value, json};
use zeroize::Zeroizing;

const ACCOUNT: &str = "111122223333";

// The typed in-process operations, as the platform calls them.
fn gdk(kms: &Kms, ctx: &RequestContext, key: &str, ec: &Ctx) -> Result<WrappedDataKey, AwsError> {
    let op = GenerateDataKeyWithoutPlaintext {
        key_id: key,
        encryption_context: ec,
        number_of_bytes: 64,
        dry_run: false,
    };
    kms.execute(ctx, &op)
}

fn decrypt(
    kms: &Kms,
    ctx: &RequestContext,
    blob: &[u8],
    ec: &Ctx,
) -> Result<Zeroizing<Vec<u8>>, AwsError> {
    let op = Decrypt {
        ciphertext_blob: blob,
        encryption_context: ec,
        key_id: None,
        dry_run: false,
    };
    kms.execute(ctx, &op).map(|d| d.plaintext)
}

fn grant(
    kms: &Kms,
    ctx: &RequestContext,
    key: &str,
    ops: &[&str],
    ec: &Ctx,
) -> Result<GrantCreated, AwsError> {
    let op = CreateGrant {
        key_id: key,
        grantee: FARGATE_PRINCIPAL,
        retiring: Some(FARGATE_PRINCIPAL),
        operations: ops.iter().map(|o| o.to_string()).collect(),
        name: None,
        constraints: Some(Constraints {
            subset: None,
            equals: Some(ec.clone()),
        }),
        dry_run: false,
    };
    kms.execute(ctx, &op)
}

fn retire(kms: &Kms, ctx: &RequestContext, token: &str) -> Result<(), AwsError> {
    let op = RetireGrant {
        grant_token: Some(token),
        ..RetireGrant::default()
    };
    kms.execute(ctx, &op)
}

fn key_arn(kms: &Kms, ctx: &RequestContext, key: &str) -> Result<String, AwsError> {
    kms.execute(ctx, &DescribeKey { key_id: key })
        .map(|m| m.arn)
}

type Ctx = BTreeMap<String, String>;

struct MemSink {
    lines: std::sync::Mutex<Vec<String>>,
    fail: AtomicBool,
}

struct SinkRef(Arc<MemSink>);

impl AuditSink for SinkRef {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        if self.0.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("disk full"));
        }
        self.0
            .lines
            .lock()
            .unwrap()
            .push(String::from_utf8(line.to_vec()).unwrap());
        Ok(())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    kms: Kms,
    sink: Arc<MemSink>,
}

fn open_at(dir: &std::path::Path, root: [u8; 32]) -> (Kms, Arc<MemSink>) {
    let store = Arc::new(Store::open(&dir.join("state.redb")).unwrap());
    let sink = Arc::new(MemSink {
        lines: Default::default(),
        fail: AtomicBool::new(false),
    });
    let kms = Kms::with_sink(
        store,
        RootKey::from_bytes(root),
        Box::new(SinkRef(sink.clone())),
        ACCOUNT,
        "us-east-1",
    )
    .unwrap();
    (kms, sink)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (kms, sink) = open_at(dir.path(), [7; 32]);
    Fixture {
        _dir: dir,
        kms,
        sink,
    }
}

fn admin() -> RequestContext {
    RequestContext::internal(Caller::admin(ACCOUNT), "us-east-1")
}

fn fargate() -> RequestContext {
    RequestContext::internal(Caller::service(ACCOUNT, FARGATE_PRINCIPAL), "us-east-1")
}

fn call(kms: &Kms, ctx: &RequestContext, op: &str, body: Value) -> Result<Value, (String, String)> {
    kms.call(ctx, op, body.to_string().as_bytes())
        .map_err(|e| (e.code, e.message))
}

fn ecs_context(cluster: &str) -> BTreeMap<String, String> {
    [
        ("aws:ecs:clusterAccount", ACCOUNT),
        ("aws:ecs:clusterName", cluster),
        (
            "ferry:taskArn",
            "arn:aws:ecs:us-east-1:111122223333:task/prod/abc",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Fargate's documented key policy for a customer managed key.
fn fargate_cmk_policy(cluster: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "gdk", "Effect": "Allow", "Principal": {"Service": "fargate.amazonaws.com"},
             "Action": ["kms:GenerateDataKeyWithoutPlaintext"], "Resource": "*",
             "Condition": {"StringEquals": {
                 "kms:EncryptionContext:aws:ecs:clusterAccount": [ACCOUNT],
                 "kms:EncryptionContext:aws:ecs:clusterName": [cluster]}}},
            {"Sid": "grant", "Effect": "Allow", "Principal": {"Service": "fargate.amazonaws.com"},
             "Action": ["kms:CreateGrant"], "Resource": "*",
             "Condition": {
                 "StringEquals": {
                     "kms:EncryptionContext:aws:ecs:clusterAccount": [ACCOUNT],
                     "kms:EncryptionContext:aws:ecs:clusterName": [cluster]},
                 "ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]}}},
            {"Sid": "retire", "Effect": "Allow", "Principal": {"Service": "fargate.amazonaws.com"},
             "Action": "kms:RetireGrant", "Resource": "*"}
        ]
    })
    .to_string()
}

#[test]
fn fargate_flow_on_a_customer_managed_key() {
    let f = fixture();
    let key = call(
        &f.kms,
        &admin(),
        "CreateKey",
        json!({"Policy": fargate_cmk_policy("prod")}),
    )
    .unwrap();
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let ctx = ecs_context("prod");
    let fg = fargate();

    let dk = gdk(&f.kms, &fg, &arn, &ctx).unwrap();
    assert_eq!(dk.key_arn, arn);
    // Without a grant, Fargate may not decrypt.
    let e = decrypt(&f.kms, &fg, &dk.ciphertext_blob, &ctx).unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    // A grant for more than Decrypt is refused by the policy.
    let e = grant(&f.kms, &fg, &arn, &["Decrypt", "Encrypt"], &ctx).unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    // DryRun of the real grant says it would succeed.
    let dry = call(
        &f.kms,
        &fg,
        "CreateGrant",
        json!({"KeyId": arn, "GranteePrincipal": FARGATE_PRINCIPAL, "Operations": ["Decrypt"],
               "Constraints": {"EncryptionContextEquals": ctx}, "DryRun": true}),
    )
    .unwrap_err();
    assert_eq!(dry.0, "DryRunOperationException");
    let grant = grant(&f.kms, &fg, &arn, &["Decrypt"], &ctx).unwrap();
    let pt = decrypt(&f.kms, &fg, &dk.ciphertext_blob, &ctx).unwrap();
    assert_eq!(pt.len(), 64);
    // The grant is bound to this task's context.
    let mut other = ctx.clone();
    other.insert("ferry:taskArn".into(), "another".into());
    assert_eq!(
        decrypt(&f.kms, &fg, &dk.ciphertext_blob, &other)
            .unwrap_err()
            .code,
        "AccessDeniedException"
    );
    // Another cluster: no data keys.
    let e = gdk(&f.kms, &fg, &arn, &ecs_context("dev")).unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    // Plaintext data keys are not in the policy.
    let e = call(
        &f.kms,
        &fg,
        "GenerateDataKey",
        json!({"KeyId": arn, "NumberOfBytes": 64, "EncryptionContext": ctx}),
    )
    .unwrap_err();
    assert_eq!(e.0, "AccessDeniedException");

    // Crypto-shredding: retire the grant; decrypting stops working.
    retire(&f.kms, &fg, &grant.grant_token).unwrap();
    assert_eq!(
        decrypt(&f.kms, &fg, &dk.ciphertext_blob, &ctx)
            .unwrap_err()
            .code,
        "AccessDeniedException"
    );

    // The audit trail saw the service principal and never the plaintext.
    let lines = f.sink.lines.lock().unwrap();
    let pt_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &*pt);
    assert!(lines.iter().all(|l| !l.contains(&pt_b64)));
    let denied: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["errorCode"] == "AccessDeniedException")
        .collect();
    assert!(denied.len() >= 4);
    assert_eq!(denied[0]["userIdentity"]["invokedBy"], FARGATE_PRINCIPAL);
}

#[test]
fn platform_key_exists_and_serves_fargate() {
    let f = fixture();
    let fg = fargate();
    let ctx = ecs_context("default");
    let arn = key_arn(&f.kms, &admin(), PLATFORM_KEY_ALIAS).unwrap();
    let dk = gdk(&f.kms, &fg, PLATFORM_KEY_ALIAS, &ctx).unwrap();
    assert_eq!(dk.key_arn, arn);
    let g = grant(&f.kms, &fg, &arn, &["Decrypt"], &ctx).unwrap();
    assert_eq!(
        decrypt(&f.kms, &fg, &dk.ciphertext_blob, &ctx)
            .unwrap()
            .len(),
        64
    );
    retire(&f.kms, &fg, &g.grant_token).unwrap();
    // Another account's context is refused.
    let mut foreign = ctx.clone();
    foreign.insert("aws:ecs:clusterAccount".into(), "999999999999".into());
    assert_eq!(
        gdk(&f.kms, &fg, PLATFORM_KEY_ALIAS, &foreign)
            .unwrap_err()
            .code,
        "AccessDeniedException"
    );
    // The administrator cannot delete, disable or re-policy it.
    for (op, body) in [
        ("ScheduleKeyDeletion", json!({"KeyId": arn})),
        ("DisableKey", json!({"KeyId": arn})),
        ("PutKeyPolicy", json!({"KeyId": arn, "Policy": "{}"})),
        ("Encrypt", json!({"KeyId": arn, "Plaintext": "aGk="})),
    ] {
        let e = call(&f.kms, &admin(), op, body).unwrap_err();
        assert_eq!(e.0, "AccessDeniedException", "{op}");
    }
    let d = call(
        &f.kms,
        &admin(),
        "DescribeKey",
        json!({"KeyId": PLATFORM_KEY_ALIAS}),
    )
    .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyManager"], "AWS");
}

#[test]
fn rotation_keeps_old_material_and_contexts_are_bound() {
    let f = fixture();
    let a = admin();
    let key = call(&f.kms, &a, "CreateKey", json!({})).unwrap();
    let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let enc = |ctx: Value| {
        call(
            &f.kms,
            &a,
            "Encrypt",
            json!({"KeyId": id, "Plaintext": "c2VjcmV0", "EncryptionContext": ctx}),
        )
        .unwrap()["CiphertextBlob"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let dec = |blob: &str, ctx: Value| {
        call(
            &f.kms,
            &a,
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": ctx}),
        )
    };
    let old = enc(json!({"ab": "c"}));
    assert_eq!(
        dec(&old, json!({"a": "bc"})).unwrap_err().0,
        "InvalidCiphertextException"
    );
    assert_eq!(
        dec(&old, json!({})).unwrap_err().0,
        "InvalidCiphertextException"
    );
    call(&f.kms, &a, "RotateKeyOnDemand", json!({"KeyId": id})).unwrap();
    let new = enc(json!({"ab": "c"}));
    assert_eq!(
        dec(&old, json!({"ab": "c"})).unwrap()["Plaintext"],
        "c2VjcmV0"
    );
    let r = dec(&new, json!({"ab": "c"})).unwrap();
    assert_eq!(r["Plaintext"], "c2VjcmV0");
    let rot = call(&f.kms, &a, "ListKeyRotations", json!({"KeyId": id})).unwrap();
    assert_eq!(rot["Rotations"].as_array().unwrap().len(), 1);
    assert_eq!(rot["Rotations"][0]["KeyMaterialId"], r["KeyMaterialId"]);

    // Tampering anywhere in the blob is InvalidCiphertextException.
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &new).unwrap();
    for i in [0, 5, 20, raw.len() - 30, raw.len() - 1] {
        let mut bad = raw.clone();
        bad[i] ^= 0x40;
        let b = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bad);
        let e = dec(&b, json!({"ab": "c"})).unwrap_err();
        assert!(
            e.0 == "InvalidCiphertextException" || e.0 == "NotFoundException",
            "byte {i}: {e:?}"
        );
    }

    // Disabled and pending deletion.
    call(&f.kms, &a, "DisableKey", json!({"KeyId": id})).unwrap();
    assert_eq!(
        dec(&new, json!({"ab": "c"})).unwrap_err().0,
        "DisabledException"
    );
    call(&f.kms, &a, "EnableKey", json!({"KeyId": id})).unwrap();
    call(
        &f.kms,
        &a,
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .unwrap();
    assert_eq!(
        dec(&new, json!({"ab": "c"})).unwrap_err().0,
        "KMSInvalidStateException"
    );
    call(&f.kms, &a, "CancelKeyDeletion", json!({"KeyId": id})).unwrap();
    let d = call(&f.kms, &a, "DescribeKey", json!({"KeyId": id})).unwrap();
    assert_eq!(d["KeyMetadata"]["KeyState"], "Disabled");
}

#[test]
fn audit_failure_fails_the_operation() {
    let f = fixture();
    let a = admin();
    let key = call(&f.kms, &a, "CreateKey", json!({})).unwrap();
    let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    f.sink.fail.store(true, Ordering::SeqCst);
    let e = call(
        &f.kms,
        &a,
        "GenerateDataKey",
        json!({"KeyId": id, "KeySpec": "AES_256"}),
    )
    .unwrap_err();
    assert_eq!(e.0, "KMSInternalException");
    f.sink.fail.store(false, Ordering::SeqCst);
    assert!(
        call(
            &f.kms,
            &a,
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256"})
        )
        .is_ok()
    );
}

#[test]
fn state_survives_reopen_and_needs_the_root_key() {
    let dir = tempfile::tempdir().unwrap();
    let (blob, id) = {
        let (kms, _) = open_at(dir.path(), [1; 32]);
        let key = call(&kms, &admin(), "CreateKey", json!({})).unwrap();
        let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
        call(
            &kms,
            &admin(),
            "CreateAlias",
            json!({"AliasName": "alias/keep", "TargetKeyId": id}),
        )
        .unwrap();
        let b = call(
            &kms,
            &admin(),
            "Encrypt",
            json!({"KeyId": "alias/keep", "Plaintext": "aGk="}),
        )
        .unwrap();
        (b["CiphertextBlob"].as_str().unwrap().to_string(), id)
    };
    {
        let (kms, _) = open_at(dir.path(), [1; 32]);
        let d = call(
            &kms,
            &admin(),
            "Decrypt",
            json!({"CiphertextBlob": blob, "KeyId": "alias/keep"}),
        )
        .unwrap();
        assert_eq!(d["Plaintext"], "aGk=");
        assert!(d["KeyId"].as_str().unwrap().ends_with(&id));
        // Exactly one platform key, even after a restart.
        let l = call(&kms, &admin(), "ListAliases", json!({})).unwrap();
        let n = l["Aliases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["AliasName"] == PLATFORM_KEY_ALIAS)
            .count();
        assert_eq!(n, 1);
    }
    // Another root key cannot unwrap the store.
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
    let sink = Arc::new(MemSink {
        lines: Default::default(),
        fail: AtomicBool::new(false),
    });
    assert!(
        Kms::with_sink(
            store,
            RootKey::from_bytes([2; 32]),
            Box::new(SinkRef(sink)),
            ACCOUNT,
            "us-east-1"
        )
        .is_err()
    );
    // And the key material is not in the store file in plaintext form: the
    // store holds only wrapped material (checked by the e2e test on disk).
}

#[test]
fn hostile_requests_never_panic() {
    let f = fixture();
    let a = admin();
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"KeyId\": 5}".to_vec(),
        b"{\"CiphertextBlob\": \"!!!!\"}".to_vec(),
        b"{\"CiphertextBlob\": \"RktNUwH//w==\"}".to_vec(),
        b"{\"KeyId\": \"arn:aws:kms:::\"}".to_vec(),
        b"{\"KeyId\": \"alias/\"}".to_vec(),
        vec![0xff; 100],
        format!("{{\"Plaintext\": \"{}\"}}", "A".repeat(100_000)).into_bytes(),
    ];
    let ops = [
        "CreateKey",
        "DescribeKey",
        "ListKeys",
        "CreateAlias",
        "UpdateAlias",
        "DeleteAlias",
        "ListAliases",
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateRandom",
        "ReEncrypt",
        "EnableKey",
        "DisableKey",
        "ScheduleKeyDeletion",
        "CancelKeyDeletion",
        "EnableKeyRotation",
        "DisableKeyRotation",
        "GetKeyRotationStatus",
        "RotateKeyOnDemand",
        "ListKeyRotations",
        "CreateGrant",
        "ListGrants",
        "RetireGrant",
        "RevokeGrant",
        "GetKeyPolicy",
        "PutKeyPolicy",
        "ListKeyPolicies",
        "TagResource",
        "UntagResource",
        "ListResourceTags",
        "NoSuchOperation",
    ];
    for op in ops {
        for b in &bodies {
            if let Err(e) = f.kms.call(&a, op, b) {
                assert!(
                    e.status < 500 || e.code == "KMSInternalException",
                    "{op}: {e:?}"
                );
                assert_ne!(
                    e.code,
                    "KMSInternalException",
                    "{op} {:?}: {e:?}",
                    String::from_utf8_lossy(&b[..b.len().min(40)])
                );
            }
        }
    }
}

/// Polls a future to completion on this thread (the tests have no async
/// runtime); the waker unparks the thread.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn open_file_audited(dir: &std::path::Path) -> Kms {
    let store = Arc::new(Store::open(&dir.join("state.redb")).unwrap());
    Kms::open(
        store,
        RootKey::from_bytes([9; 32]),
        dir,
        ACCOUNT,
        "us-east-1",
    )
    .unwrap()
}

#[test]
fn group_committed_audit_has_one_record_per_call_from_threads_and_async_callers() {
    let dir = tempfile::tempdir().unwrap();
    let kms = Arc::new(open_file_audited(dir.path()));
    let a = admin();
    let key = call(&kms, &a, "CreateKey", json!({})).unwrap();
    let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let body = json!({"KeyId": id, "KeySpec": "AES_256"}).to_string();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (kms, body) = (kms.clone(), body.clone());
            std::thread::spawn(move || {
                let ctx = admin();
                for _ in 0..50 {
                    let out = if t % 2 == 0 {
                        // Many futures in flight at once, as on an async
                        // worker: their records share writes.
                        let pending: Vec<_> = (0..4)
                            .map(|_| kms.call_inline(&ctx, "GenerateDataKey", body.as_bytes()))
                            .collect();
                        pending.into_iter().map(block_on).collect::<Vec<_>>()
                    } else {
                        vec![kms.call(&ctx, "GenerateDataKey", body.as_bytes())]
                    };
                    for o in out {
                        assert!(o.unwrap()["CiphertextBlob"].is_string());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join("kms-audit.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let gdk = records
        .iter()
        .filter(|r| r["eventName"] == "GenerateDataKey")
        .count();
    // 2 async threads x 50 x 4 + 2 sync threads x 50.
    assert_eq!(gdk, 2 * 50 * 4 + 2 * 50);
    let mut ids: Vec<_> = records.iter().map(|r| r["eventID"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), records.len(), "event ids are unique");
}

#[test]
fn unwritable_audit_file_fails_inline_and_blocking_calls() {
    let dir = tempfile::tempdir().unwrap();
    // Every write to /dev/full fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", dir.path().join("kms-audit.jsonl")).unwrap();
    let kms = open_file_audited(dir.path());
    let a = admin();
    let body = json!({"NumberOfBytes": 32}).to_string();
    let e = block_on(kms.call_inline(&a, "GenerateRandom", body.as_bytes())).unwrap_err();
    assert_eq!(e.code, "KMSInternalException");
    let e = kms.call(&a, "GenerateRandom", body.as_bytes()).unwrap_err();
    assert_eq!(e.code, "KMSInternalException");
}

/// The platform's typed path leaves the same audit records as the same
/// calls made as JSON, and a task's key costs four calls, no DescribeKey.
#[test]
fn platform_path_audits_like_json_calls() {
    use ferry_kms::platform::{self, Platform, PlatformError};

    let dir = tempfile::tempdir().unwrap();
    let (kms, sink) = open_at(dir.path(), [9; 32]);
    let kms = Arc::new(kms);
    let p = Platform::new(kms.clone());
    assert_eq!(
        p.platform_key_arn(),
        key_arn(&kms, &admin(), PLATFORM_KEY_ALIAS).unwrap()
    );
    let task = "arn:aws:ecs:us-east-1:111122223333:task/prod/abc";
    let ec = platform::context::task_volume(ACCOUNT, "prod", task);
    assert_eq!(ec, ecs_context("prod"));
    sink.lines.lock().unwrap().clear();
    // The audit records written since the last call, parsed.
    let drain = || -> Vec<Value> {
        sink.lines
            .lock()
            .unwrap()
            .drain(..)
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    };

    let issued = p.issue(p.platform_key_arn(), ec.clone()).unwrap();
    assert_eq!(issued.plaintext.len(), platform::VOLUME_KEY_BYTES);
    assert_eq!(issued.wrapped.key_arn, p.platform_key_arn());
    p.retire(&issued.wrapped.key_arn, &issued.grant_id).unwrap();
    let typed = drain();
    let names: Vec<&str> = typed
        .iter()
        .map(|e| e["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "GenerateDataKeyWithoutPlaintext",
            "CreateGrant",
            "Decrypt",
            "RetireGrant"
        ]
    );
    // The wrapped key opens with a plain JSON Decrypt too.
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
    let admin_pt = call(
        &kms,
        &admin(),
        "Decrypt",
        json!({"CiphertextBlob": b64(&issued.wrapped.ciphertext_blob), "EncryptionContext": ec}),
    )
    .unwrap();
    assert_eq!(admin_pt["Plaintext"], b64(&issued.plaintext));
    sink.lines.lock().unwrap().clear();

    // The same four calls as JSON, as the platform used to make them.
    let fg = fargate();
    let arn = p.platform_key_arn().to_owned();
    let dk = call(
        &kms,
        &fg,
        "GenerateDataKeyWithoutPlaintext",
        json!({"KeyId": arn, "EncryptionContext": ec, "NumberOfBytes": 64}),
    )
    .unwrap();
    let g = call(
        &kms,
        &fg,
        "CreateGrant",
        json!({"KeyId": arn, "GranteePrincipal": FARGATE_PRINCIPAL,
        "RetiringPrincipal": FARGATE_PRINCIPAL, "Operations": ["Decrypt"],
        "Constraints": {"EncryptionContextEquals": ec}}),
    )
    .unwrap();
    call(
        &kms,
        &fg,
        "Decrypt",
        json!({"CiphertextBlob": dk["CiphertextBlob"], "EncryptionContext": ec}),
    )
    .unwrap();
    call(
        &kms,
        &fg,
        "RetireGrant",
        json!({"KeyId": arn, "GrantId": g["GrantId"]}),
    )
    .unwrap();
    let json_calls = drain();
    // Equal but for what differs per call: ids, times, the grant's id.
    let strip = |mut v: Value| {
        for k in ["eventID", "eventTime", "requestID"] {
            v.as_object_mut().unwrap().remove(k);
        }
        if let Some(r) = v["responseElements"].as_object_mut() {
            r.remove("grantId");
        }
        if let Some(r) = v["requestParameters"].as_object_mut() {
            r.remove("grantId");
        }
        v
    };
    assert_eq!(typed.len(), json_calls.len());
    for (a, b) in typed.into_iter().zip(json_calls) {
        assert_eq!(strip(a), strip(b));
    }

    // CreateCluster's dry run: the platform key passes; a key whose policy
    // leaves Fargate out fails with the KMS's reason.
    p.dry_run_for_cluster(&arn, "prod").unwrap();
    let cmk = call(&kms, &admin(), "CreateKey", json!({})).unwrap();
    let cmk = cmk["KeyMetadata"]["Arn"].as_str().unwrap();
    let e = p.dry_run_for_cluster(cmk, "prod").unwrap_err();
    assert!(
        matches!(&e, PlatformError::Kms { operation: "GenerateDataKeyWithoutPlaintext", error }
            if error.code == "AccessDeniedException"),
        "{e}"
    );
    let dry: Vec<Value> = sink
        .lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["requestParameters"]["dryRun"] == true)
        .collect();
    assert_eq!(dry.len(), 3, "{dry:?}");
    assert_eq!(dry[0]["errorCode"], "DryRunOperationException");
}

#[test]
fn a_remote_agents_key_is_judged_as_the_platform_and_named_in_the_trail() {
    use ferry_kms::platform::context;

    let f = fixture();
    // What `ferry_iam::Iam::authenticate` makes of an agent key: the
    // platform's service principal, with the key's id.
    let mut agent = Caller::service(ACCOUNT, FARGATE_PRINCIPAL);
    agent.access_key_id = Some("AKIAAGENTHOST0000001".into());
    let ag = RequestContext::internal(agent, "us-east-1");
    let arn = key_arn(&f.kms, &admin(), PLATFORM_KEY_ALIAS).unwrap();
    let ec = ecs_context("prod");
    f.sink.lines.lock().unwrap().clear();

    // The task-volume flow over JSON, as the agent makes it over HTTP:
    // the grant token carries Decrypt before the grant is visible.
    let dk = call(
        &f.kms,
        &ag,
        "GenerateDataKeyWithoutPlaintext",
        json!({"KeyId": arn, "EncryptionContext": ec, "NumberOfBytes": 64}),
    )
    .unwrap();
    let g = call(
        &f.kms,
        &ag,
        "CreateGrant",
        json!({"KeyId": arn, "GranteePrincipal": FARGATE_PRINCIPAL,
        "RetiringPrincipal": FARGATE_PRINCIPAL, "Operations": ["Decrypt"],
        "Constraints": {"EncryptionContextEquals": ec}}),
    )
    .unwrap();
    let pt = call(
        &f.kms,
        &ag,
        "Decrypt",
        json!({"CiphertextBlob": dk["CiphertextBlob"], "EncryptionContext": ec,
        "GrantTokens": [g["GrantToken"]]}),
    )
    .unwrap();
    assert!(pt["Plaintext"].as_str().is_some_and(|p| !p.is_empty()));
    call(
        &f.kms,
        &ag,
        "RetireGrant",
        json!({"GrantToken": g["GrantToken"]}),
    )
    .unwrap();
    // The image store's data keys, only under its context.
    let store_ec = context::image_store(ACCOUNT);
    let blob = call(
        &f.kms,
        &ag,
        "GenerateDataKey",
        json!({"KeyId": arn, "EncryptionContext": store_ec, "NumberOfBytes": 32}),
    )
    .unwrap();
    call(
        &f.kms,
        &ag,
        "Decrypt",
        json!({"CiphertextBlob": blob["CiphertextBlob"], "EncryptionContext": store_ec}),
    )
    .unwrap();
    // Nothing more than the platform may: plaintext volume keys, or
    // Decrypt without the grant (retired).
    let e = call(
        &f.kms,
        &ag,
        "GenerateDataKey",
        json!({"KeyId": arn, "EncryptionContext": ec, "NumberOfBytes": 64}),
    )
    .unwrap_err();
    assert_eq!(e.0, "AccessDeniedException");
    let e = decrypt(
        &f.kms,
        &ag,
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            dk["CiphertextBlob"].as_str().unwrap(),
        )
        .unwrap(),
        &ec,
    )
    .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    // The in-process platform's calls are refused alike.
    let e = call(
        &f.kms,
        &fargate(),
        "GenerateDataKey",
        json!({"KeyId": arn, "EncryptionContext": ec, "NumberOfBytes": 64}),
    )
    .unwrap_err();
    assert_eq!(e.0, "AccessDeniedException");

    // Every record names the service and the agent's key; the platform's
    // own (no key) names none.
    let lines: Vec<Value> = f
        .sink
        .lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 9);
    for (i, r) in lines.iter().enumerate() {
        let who = &r["userIdentity"];
        assert_eq!(who["type"], "AWSService");
        assert_eq!(who["invokedBy"], FARGATE_PRINCIPAL);
        if i < 8 {
            assert_eq!(who["accessKeyId"], "AKIAAGENTHOST0000001", "{r}");
        } else {
            assert!(who.get("accessKeyId").is_none(), "{r}");
        }
    }
    // The plaintext keys never reach the trail.
    let text = f.sink.lines.lock().unwrap().join("\n");
    assert!(!text.contains(pt["Plaintext"].as_str().unwrap()));
    assert!(!text.contains(blob["Plaintext"].as_str().unwrap()));
}
