//! `ApiKeys` against a real KMS served over HTTP by ferry-api's listener,
//! with an access key that authenticates as `fargate.amazonaws.com`: the
//! keys it gives open, and every call leaves the audit record the same
//! call through the in-process `Platform` leaves.

#![allow(clippy::unwrap_used, reason = "test")]

use std::sync::{Arc, Mutex};

use ferry_api::client::kms::KmsClient;
use ferry_api::sigv4::SigningCredentials;
use ferry_api::{Router, StaticKeys};
use ferry_blob::{BlobKeys, BlobStore, DataKey, KeyError};
use ferry_host::VolumeKeys;
use ferry_host::keys::remote::ApiKeys;
use ferry_kms::audit::AuditSink;
use ferry_kms::platform::{self, Platform, PlatformError, context};
use ferry_kms::{FARGATE_PRINCIPAL, Kms, PLATFORM_KEY_ALIAS, RootKey};
use ferry_proto::{Caller, JsonService};
use ferry_store::Store;
use serde_json::Value;
use zeroize::Zeroizing;

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";
const TASK: &str = "arn:aws:ecs:us-east-1:111122223333:task/prod/abc";

/// The audit trail, in memory.
#[derive(Default)]
struct Trail(Mutex<Vec<String>>);

struct TrailRef(Arc<Trail>);

impl AuditSink for TrailRef {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        self.0
            .0
            .lock()
            .unwrap()
            .push(String::from_utf8(line.to_vec()).unwrap());
        Ok(())
    }
}

impl Trail {
    /// The records written since the last call, parsed.
    fn drain(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .drain(..)
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    /// Serves the listener; dropped (and the listener with it) at the end.
    _rt: tokio::runtime::Runtime,
    trail: Arc<Trail>,
    platform: Platform,
    remote: ApiKeys,
}

/// A KMS, the listener serving it with one access key (Fargate's), the
/// in-process platform over the same KMS, and `ApiKeys` over the listener.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
    let trail = Arc::new(Trail::default());
    let kms = Kms::with_sink(
        store,
        RootKey::from_bytes([7; 32]),
        Box::new(TrailRef(trail.clone())),
        ACCOUNT,
        REGION,
    )
    .unwrap();
    let kms = Arc::new(kms);

    let mut keys = StaticKeys::new();
    keys.insert(
        "AKIAHOSTKEY",
        Zeroizing::new("host-secret".into()),
        Caller::service(ACCOUNT, FARGATE_PRINCIPAL),
    );
    // As the server does: a service principal's key reaches the KMS only.
    let router = Router::new(Arc::new(keys), REGION)
        .json_service("kms", kms.clone() as Arc<dyn JsonService>)
        .service_targets(&[ferry_kms::TARGET_PREFIX]);
    // The listener runs on the runtime's workers; the test thread makes
    // the client's blocking calls.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(ferry_api::serve(listener, router, std::future::pending()));

    let creds = SigningCredentials {
        access_key_id: "AKIAHOSTKEY".into(),
        secret_access_key: Zeroizing::new("host-secret".into()),
    };
    let client = KmsClient::new(&format!("http://{addr}"), REGION, creds).unwrap();
    trail.drain();
    Fixture {
        _dir: dir,
        _rt: rt,
        trail,
        platform: Platform::new(kms),
        remote: ApiKeys::new(client, ACCOUNT),
    }
}

/// A record without what differs per call or per transport: ids, times,
/// the client's address and agent, the access key, grant ids.
fn strip(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    for k in [
        "eventID",
        "eventTime",
        "requestID",
        "sourceIPAddress",
        "userAgent",
        // A grant's id, which the NotFoundException message names.
        "errorMessage",
    ] {
        o.remove(k);
    }
    if let Some(u) = o.get_mut("userIdentity").and_then(Value::as_object_mut) {
        u.remove("accessKeyId");
    }
    for k in ["requestParameters", "responseElements"] {
        if let Some(r) = o.get_mut(k).and_then(Value::as_object_mut) {
            r.remove("grantId");
        }
    }
    v
}

fn names(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect()
}

fn assert_fargate(records: &[Value]) {
    for r in records {
        assert_eq!(r["userIdentity"]["type"], "AWSService", "{r}");
        assert_eq!(r["userIdentity"]["invokedBy"], FARGATE_PRINCIPAL, "{r}");
    }
}

/// A task volume's life and a file system's mount, through `keys`: the
/// plaintexts it saw.
fn volume_flow(keys: &dyn VolumeKeys, key_arn: &str) -> Vec<Zeroizing<Vec<u8>>> {
    let issued = keys
        .issue(key_arn, context::task_volume(ACCOUNT, "prod", TASK))
        .unwrap();
    assert_eq!(issued.plaintext.len(), platform::VOLUME_KEY_BYTES);
    assert_eq!(issued.wrapped.key_arn, key_arn);
    let again = keys.unwrap_volume_key(&issued.wrapped).unwrap();
    assert_eq!(*again, *issued.plaintext);
    keys.retire(&issued.wrapped.key_arn, &issued.grant_id)
        .unwrap();
    // Retired already: what recovery tolerates, by its code.
    let e = keys
        .retire(&issued.wrapped.key_arn, &issued.grant_id)
        .unwrap_err();
    assert_eq!(e.kms_error().unwrap().code, "NotFoundException", "{e}");

    // An EFS-style file system: sealed under the alias, unwrapped at mount.
    let fs = keys
        .new_wrapped_key(PLATFORM_KEY_ALIAS, context::file_system(ACCOUNT, "fs-1"))
        .unwrap();
    assert_eq!(fs.key_arn, key_arn);
    let fs_key = keys.unwrap_volume_key(&fs).unwrap();
    assert_eq!(fs_key.len(), platform::VOLUME_KEY_BYTES);
    vec![issued.plaintext, fs_key]
}

#[test]
fn volume_keys_over_the_api_audit_like_the_platform() {
    let f = fixture();
    let arn = f.platform.platform_key_arn().to_owned();
    assert_eq!(f.remote.account(), ACCOUNT);

    let remote_keys = volume_flow(&f.remote, &arn);
    let remote = f.trail.drain();
    let local_keys = volume_flow(&f.platform, &arn);
    let local = f.trail.drain();

    assert_eq!(
        names(&remote),
        [
            "GenerateDataKeyWithoutPlaintext",
            "CreateGrant",
            "Decrypt",
            "CreateGrant",
            "Decrypt",
            "RetireGrant",
            "RetireGrant",
            "RetireGrant",
            "GenerateDataKeyWithoutPlaintext",
            "CreateGrant",
            "Decrypt",
            "RetireGrant",
        ]
    );
    assert_fargate(&remote);
    assert_eq!(remote[7]["errorCode"], "NotFoundException");
    // The contexts and grant constraints the audit trail shows.
    assert_eq!(
        remote[0]["requestParameters"]["encryptionContext"]["ferry:taskArn"],
        TASK
    );
    let grant = &remote[1]["requestParameters"];
    assert_eq!(grant["granteePrincipal"], FARGATE_PRINCIPAL);
    assert_eq!(grant["retiringPrincipal"], FARGATE_PRINCIPAL);
    assert_eq!(grant["operations"], serde_json::json!(["Decrypt"]));
    assert_eq!(
        grant["constraints"]["EncryptionContextEquals"]["aws:ecs:clusterName"],
        "prod"
    );
    assert_eq!(
        remote[8]["requestParameters"]["numberOfBytes"],
        platform::VOLUME_KEY_BYTES
    );

    // Record for record what the in-process platform leaves.
    assert_eq!(remote.len(), local.len());
    for (r, l) in remote.into_iter().zip(local) {
        assert_eq!(strip(r), strip(l));
    }

    // The keys are the KMS's: what one path sealed, the other opens.
    assert_eq!(remote_keys.len(), local_keys.len());
    let w = f
        .remote
        .new_wrapped_key(&arn, context::file_system(ACCOUNT, "fs-2"), 64)
        .unwrap();
    assert_eq!(
        *f.remote.unwrap_volume_key(&w).unwrap(),
        *f.platform.unwrap_volume_key(&w).unwrap()
    );
}

/// The in-process image keys (as the composition root builds them).
struct LocalImageKeys(Platform);

impl BlobKeys for LocalImageKeys {
    fn generate(&self, context: &ferry_blob::Context) -> Result<(DataKey, Vec<u8>), KeyError> {
        let (plain, wrapped) = self.0.new_image_blob_key(context).unwrap();
        Ok((DataKey::from_slice(&plain).unwrap(), wrapped))
    }

    fn unwrap(&self, wrapped: &[u8], context: &ferry_blob::Context) -> Result<DataKey, KeyError> {
        let plain = self.0.open_image_blob_key(wrapped, context).unwrap();
        Ok(DataKey::from_slice(&plain).unwrap())
    }
}

#[test]
fn image_store_keys_over_the_api_audit_like_the_platform() {
    let f = fixture();
    let ec = context::image_store(ACCOUNT);

    // The first key asks for the platform key's ARN, once.
    let (plain, blob) = f.remote.new_image_blob_key(&ec).unwrap();
    assert_eq!(plain.len(), platform::BLOB_KEY_BYTES);
    assert_eq!(*f.remote.open_image_blob_key(&blob, &ec).unwrap(), *plain);
    assert_eq!(
        f.remote.platform_key_arn().unwrap(),
        f.platform.platform_key_arn()
    );
    let remote = f.trail.drain();
    assert_eq!(
        names(&remote),
        ["DescribeKey", "GenerateDataKey", "Decrypt"]
    );
    assert_fargate(&remote);
    assert_eq!(remote[0]["requestParameters"]["keyId"], PLATFORM_KEY_ALIAS);

    let (plain2, blob2) = f.platform.new_image_blob_key(&ec).unwrap();
    assert_eq!(
        *f.platform.open_image_blob_key(&blob2, &ec).unwrap(),
        *plain2
    );
    let local = f.trail.drain();
    assert_eq!(names(&local), ["GenerateDataKey", "Decrypt"]);
    for (r, l) in remote.into_iter().skip(1).zip(local) {
        assert_eq!(strip(r), strip(l));
    }
    // Each path opens what the other sealed.
    assert_eq!(*f.platform.open_image_blob_key(&blob, &ec).unwrap(), *plain);
    assert_eq!(*f.remote.open_image_blob_key(&blob2, &ec).unwrap(), *plain2);

    // Whole blobs through the image store's trait, either way round.
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let local_keys = LocalImageKeys(f.platform.clone());
    let data = b"a layer's bytes".repeat(1000);
    let a = store.put(&f.remote, &ec, &data[..], None, None).unwrap();
    assert_eq!(
        store.read_all(&a.digest, &f.remote, &ec, 1 << 20).unwrap(),
        data
    );
    assert_eq!(
        store
            .read_all(&a.digest, &local_keys, &ec, 1 << 20)
            .unwrap(),
        data
    );
    store.remove(&a.digest).unwrap();
    let b = store.put(&local_keys, &ec, &data[..], None, None).unwrap();
    assert_eq!(
        store.read_all(&b.digest, &f.remote, &ec, 1 << 20).unwrap(),
        data
    );
    f.trail.drain();

    // A context the key policy does not allow: the KMS's refusal, as is.
    let e = f
        .remote
        .new_image_blob_key(&context::container_logs(ACCOUNT))
        .unwrap_err();
    assert!(
        matches!(&e, PlatformError::Kms { operation: "GenerateDataKey", error }
            if error.code == "AccessDeniedException" && error.status == 400),
        "{e}"
    );
    let e = BlobKeys::unwrap(&f.remote, &blob, &context::container_logs(ACCOUNT))
        .err()
        .unwrap();
    assert_eq!(
        (e.operation, e.error.code.as_str()),
        ("Decrypt", "AccessDeniedException")
    );
    let refused = f.trail.drain();
    assert_eq!(names(&refused), ["GenerateDataKey", "Decrypt"]);
    assert_fargate(&refused);
}
