//! Two KMS replicas over one PostgreSQL database (issue 19): what one does
//! the other sees at once; the audit trail is one table holding every call
//! once, in order; the lazy jobs (rotation) happen once.
//!
//! Needs root and PostgreSQL's server binaries (`scripts/setup`): the
//! cluster is made by `ferry_store::testing::TempPostgres`, which fails the
//! test with the reason when either is missing.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use ferry_kms::audit_read::{AuditReader, Query};
use ferry_kms::model::{KEYS, KeyRecord};
use ferry_kms::{Kms, RootKey};
use ferry_proto::{AwsError, Caller, JsonService, RequestContext};
use ferry_store::Store;
use ferry_store::testing::TempPostgres;
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";
const ROOT: [u8; 32] = [7; 32];

/// A replica: its own connection to the database, its own data directory,
/// the same root key.
struct Replica {
    store: Arc<Store>,
    kms: Arc<Kms>,
    _dir: tempfile::TempDir,
}

fn replica(pg: &TempPostgres) -> Replica {
    let store = Arc::new(Store::connect(&pg.url()).unwrap());
    assert!(store.is_shared());
    let dir = tempfile::tempdir().unwrap();
    let kms = Kms::open(
        store.clone(),
        RootKey::from_bytes(ROOT),
        dir.path(),
        ACCOUNT,
        "us-east-1",
    )
    .unwrap();
    Replica {
        store,
        kms: Arc::new(kms),
        _dir: dir,
    }
}

fn admin() -> RequestContext {
    RequestContext::internal(Caller::admin(ACCOUNT), "us-east-1")
}

fn call(kms: &Kms, op: &str, body: Value) -> Result<Value, AwsError> {
    kms.call(&admin(), op, body.to_string().as_bytes())
}

#[test]
fn a_write_through_one_replica_is_read_through_the_other_at_once() {
    let pg = TempPostgres::new();
    let (a, b) = (replica(&pg), replica(&pg));
    // Both found (or made) the same platform key.
    assert_eq!(a.kms.platform_key_arn(), b.kms.platform_key_arn());

    let key =
        call(&a.kms, "CreateKey", json!({"Description": "shared"})).unwrap()["KeyMetadata"]["Arn"]
            .as_str()
            .unwrap()
            .to_owned();
    let blob = call(
        &b.kms,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGVsbG8="}),
    )
    .unwrap()["CiphertextBlob"]
        .clone();
    let plain = call(&a.kms, "Decrypt", json!({"CiphertextBlob": blob})).unwrap();
    assert_eq!(plain["Plaintext"], "aGVsbG8=");

    // An alias made through B names the key through A.
    call(
        &b.kms,
        "CreateAlias",
        json!({"AliasName": "alias/shared", "TargetKeyId": key}),
    )
    .unwrap();
    let d = call(&a.kms, "DescribeKey", json!({"KeyId": "alias/shared"})).unwrap();
    assert_eq!(d["KeyMetadata"]["Arn"], key.as_str());
    // The name is taken for both.
    let e = call(
        &a.kms,
        "CreateAlias",
        json!({"AliasName": "alias/shared", "TargetKeyId": key}),
    )
    .unwrap_err();
    assert_eq!(e.code, "AlreadyExistsException");

    // Disabled through A: B refuses at once, and takes it back when enabled.
    call(&a.kms, "DisableKey", json!({"KeyId": key})).unwrap();
    let e = call(
        &b.kms,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGVsbG8="}),
    )
    .unwrap_err();
    assert_eq!(e.code, "DisabledException");
    call(&b.kms, "EnableKey", json!({"KeyId": key})).unwrap();
    call(
        &a.kms,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGVsbG8="}),
    )
    .unwrap();

    // A grant made through A is listed and retired through B; A sees it gone.
    let g = call(
        &a.kms,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "arn:aws:iam::111122223333:role/r",
               "Operations": ["Decrypt"], "Name": "g1"}),
    )
    .unwrap();
    let grant_id = g["GrantId"].as_str().unwrap().to_owned();
    let listed = call(&b.kms, "ListGrants", json!({"KeyId": key})).unwrap();
    assert_eq!(listed["Grants"][0]["GrantId"], grant_id.as_str());
    // The same named grant made again through B is the same grant.
    let again = call(
        &b.kms,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "arn:aws:iam::111122223333:role/r",
               "Operations": ["Decrypt"], "Name": "g1"}),
    )
    .unwrap();
    assert_eq!(again["GrantId"], grant_id.as_str());
    call(
        &b.kms,
        "RetireGrant",
        json!({"KeyId": key, "GrantId": grant_id}),
    )
    .unwrap();
    let listed = call(&a.kms, "ListGrants", json!({"KeyId": key})).unwrap();
    assert_eq!(listed["Grants"], json!([]));

    // Two changes of one key through both replicas: neither is lost.
    call(
        &a.kms,
        "TagResource",
        json!({"KeyId": key, "Tags": [{"TagKey": "a", "TagValue": "1"}]}),
    )
    .unwrap();
    call(
        &b.kms,
        "TagResource",
        json!({"KeyId": key, "Tags": [{"TagKey": "b", "TagValue": "2"}]}),
    )
    .unwrap();
    let tags = call(&a.kms, "ListResourceTags", json!({"KeyId": key})).unwrap();
    assert_eq!(tags["Tags"].as_array().unwrap().len(), 2, "{tags}");
}

#[test]
fn a_reload_unwraps_only_new_material() {
    let pg = TempPostgres::new();
    let a = replica(&pg);
    for _ in 0..5 {
        call(&a.kms, "CreateKey", json!({})).unwrap();
    }
    let b = replica(&pg);
    let loaded = b.kms.unwrapped_count();
    // The platform key and five more.
    assert_eq!(loaded, 6);
    // Another key through A: B's next call reloads the keys table and
    // unwraps that one only.
    let key = call(&a.kms, "CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    call(&b.kms, "DescribeKey", json!({"KeyId": key})).unwrap();
    assert_eq!(b.kms.unwrapped_count(), loaded + 1);
    // A change that brings no material (a description) unwraps nothing.
    call(
        &a.kms,
        "UpdateKeyDescription",
        json!({"KeyId": key, "Description": "x"}),
    )
    .unwrap();
    let d = call(&b.kms, "DescribeKey", json!({"KeyId": key})).unwrap();
    assert_eq!(d["KeyMetadata"]["Description"], "x");
    assert_eq!(b.kms.unwrapped_count(), loaded + 1);
}

#[test]
fn a_due_rotation_happens_once_whichever_replicas_use_the_key() {
    let pg = TempPostgres::new();
    let (a, b) = (replica(&pg), replica(&pg));
    let key = call(&a.kms, "CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    call(&a.kms, "EnableKeyRotation", json!({"KeyId": key})).unwrap();
    // Make the rotation due (as if a year had passed).
    a.store
        .write(|w| {
            let mut r: KeyRecord = w.get(KEYS, &key)?.unwrap();
            r.next_rotation = Some(1.0);
            w.put(KEYS, &key, &r)
        })
        .unwrap();
    let threads: Vec<_> = [a.kms.clone(), b.kms.clone(), a.kms.clone(), b.kms.clone()]
        .into_iter()
        .map(|kms| {
            let key = key.clone();
            std::thread::spawn(move || {
                call(
                    &kms,
                    "Encrypt",
                    json!({"KeyId": key, "Plaintext": "aGVsbG8="}),
                )
                .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let rec: KeyRecord = a.store.get(KEYS, &key).unwrap().unwrap();
    assert_eq!(rec.materials.len(), 2, "rotated more than once");
    assert!(rec.next_rotation.unwrap() > 1.0);
}

#[test]
fn the_audit_trail_holds_every_call_of_both_replicas_once_in_order() {
    let pg = TempPostgres::new();
    let (a, b) = (replica(&pg), replica(&pg));
    let before = ferry_kms::audit_store::length(&a.store).unwrap();
    // Four threads per replica, 25 calls each, at once.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let kms = if t % 2 == 0 {
                a.kms.clone()
            } else {
                b.kms.clone()
            };
            std::thread::spawn(move || {
                for i in 0..25 {
                    let mut ctx = admin();
                    ctx.request_id = format!("t{t}-{i}");
                    kms.call(&ctx, "GenerateRandom", br#"{"NumberOfBytes": 8}"#)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = ferry_kms::audit_store::length(&a.store).unwrap();
    assert_eq!(after - before, 200);
    // Read back through B's reader: newest first, every call once, each
    // thread's calls in their order.
    let reader = AuditReader::for_kms(&b.store, std::path::Path::new("/nonexistent"));
    let mut ids = Vec::new();
    let mut q = Query {
        limit: 37,
        event_name: Some("GenerateRandom".into()),
        ..Query::default()
    };
    loop {
        let page = reader.page(&q).unwrap();
        assert_eq!(page.head, after);
        ids.extend(
            page.records
                .iter()
                .map(|r| r["requestID"].as_str().unwrap().to_owned()),
        );
        match page.next {
            Some(n) => q.before = Some(n),
            None => break,
        }
    }
    assert_eq!(ids.len(), 200);
    ids.reverse();
    for t in 0..8 {
        let mine: Vec<&String> = ids
            .iter()
            .filter(|i| i.starts_with(&format!("t{t}-")))
            .collect();
        let want: Vec<String> = (0..25).map(|i| format!("t{t}-{i}")).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>());
    }
    // A filter nothing matches: an empty page.
    let none = reader
        .page(&Query {
            limit: 10,
            event_name: Some("Sign".into()),
            ..Query::default()
        })
        .unwrap();
    assert!(none.records.is_empty());
    // No file trail was written in either data directory.
    assert!(!a._dir.path().join(ferry_kms::service::AUDIT_FILE).exists());
}

#[test]
fn replicas_starting_together_make_one_platform_key_and_one_logs_key() {
    let pg = TempPostgres::new();
    let url = pg.url();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let store = Arc::new(Store::connect(&url).unwrap());
                let dir = tempfile::tempdir().unwrap();
                let kms = Arc::new(
                    Kms::open(
                        store.clone(),
                        RootKey::from_bytes(ROOT),
                        dir.path(),
                        ACCOUNT,
                        "us-east-1",
                    )
                    .unwrap(),
                );
                // The logs sealing key, made on first use: one for all.
                let logs = ferry_kms::Platform::new(kms.clone())
                    .logs_key(&store)
                    .unwrap();
                (kms.platform_key_arn().to_owned(), *logs)
            })
        })
        .collect();
    let made: Vec<(String, [u8; 32])> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(made.iter().all(|m| *m == made[0]), "replicas disagree");
}
