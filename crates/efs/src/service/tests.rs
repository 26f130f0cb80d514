use std::collections::HashSet;

use bytes::Bytes;
use ferry_proto::Caller;
use http::{HeaderMap, Method};

use super::*;
use crate::backend::CreatedVolume;

#[derive(Default)]
struct Fake {
    busy: Mutex<HashSet<String>>,
    destroyed: Mutex<Vec<String>>,
}

impl Backend for Fake {
    fn create(
        &self,
        _: &RequestContext,
        _: &str,
        encrypted: bool,
        key: Option<&str>,
    ) -> Result<CreatedVolume, AwsError> {
        if key == Some("disabled") {
            return Err(AwsError::client("DisabledException", "key is disabled"));
        }
        Ok(CreatedVolume {
            kms_key_arn: encrypted.then(|| format!("arn:key/{}", key.unwrap_or("platform"))),
        })
    }
    fn in_use(&self, id: &str) -> bool {
        self.busy.lock().map(|b| b.contains(id)).unwrap_or(false)
    }
    fn size(&self, _: &str) -> u64 {
        6144
    }
    fn destroy(&self, id: &str) -> Result<(), String> {
        if let Ok(mut d) = self.destroyed.lock() {
            d.push(id.to_owned());
        }
        Ok(())
    }
}

struct T {
    svc: EfsService,
    fake: Arc<Fake>,
    _dir: tempfile::TempDir,
}

fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let fake = Arc::new(Fake::default());
    let svc = EfsService::new(store, fake.clone(), "123456789012", "us-east-1");
    T {
        svc,
        fake,
        _dir: dir,
    }
}

fn call(t: &T, m: &str, path: &str, query: &str, body: Value) -> Result<RestResponse, AwsError> {
    let req = RestRequest {
        method: Method::from_bytes(m.as_bytes()).unwrap(),
        path: path.into(),
        query: query.into(),
        headers: HeaderMap::new(),
        body: if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(serde_json::to_vec(&body).unwrap())
        },
    };
    let ctx = RequestContext::internal(Caller::admin("123456789012"), "us-east-1");
    t.svc.call(&ctx, &req)
}

const FS: &str = "/2015-02-01/file-systems";
const AP: &str = "/2015-02-01/access-points";

#[test]
fn create_is_idempotent_by_token_and_encrypted_by_default() {
    let t = setup();
    let r = call(&t, "POST", FS, "", json!({"CreationToken": "a"})).unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.body["Encrypted"], true);
    assert_eq!(r.body["KmsKeyId"], "arn:key/platform");
    assert_eq!(r.body["LifeCycleState"], "available");
    let id = r.body["FileSystemId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("fs-") && id.len() == 20, "{id}");
    let e = call(&t, "POST", FS, "", json!({"CreationToken": "a"})).unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.status),
        ("FileSystemAlreadyExists", 409)
    );
    assert!(e.message.contains(&id));
    let r = call(
        &t,
        "POST",
        FS,
        "",
        json!({"CreationToken": "b", "Encrypted": false}),
    )
    .unwrap();
    assert_eq!(r.body["Encrypted"], false);
    assert!(r.body.get("KmsKeyId").is_none());
    let e = call(
        &t,
        "POST",
        FS,
        "",
        json!({"CreationToken": "c", "KmsKeyId": "disabled"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "BadRequest");
    assert!(e.message.contains("disabled"));
    let e = call(&t, "POST", FS, "", json!({})).unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("BadRequest", 400));
}

#[test]
fn describe_pages_and_filters() {
    let t = setup();
    for i in 0..3 {
        call(
            &t,
            "POST",
            FS,
            "",
            json!({"CreationToken": format!("t{i}")}),
        )
        .unwrap();
    }
    let r = call(&t, "GET", FS, "MaxItems=2", Value::Null).unwrap();
    assert_eq!(r.body["FileSystems"].as_array().unwrap().len(), 2);
    let m = r.body["NextMarker"].as_str().unwrap().to_owned();
    let r = call(
        &t,
        "GET",
        FS,
        &format!("MaxItems=2&Marker={m}"),
        Value::Null,
    )
    .unwrap();
    assert_eq!(r.body["FileSystems"].as_array().unwrap().len(), 1);
    assert!(r.body.get("NextMarker").is_none());
    let r = call(&t, "GET", FS, "CreationToken=t1", Value::Null).unwrap();
    assert_eq!(r.body["FileSystems"][0]["CreationToken"], "t1");
    let e = call(
        &t,
        "GET",
        FS,
        "FileSystemId=fs-00000000000000000",
        Value::Null,
    )
    .unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("FileSystemNotFound", 404));
}

#[test]
fn access_points_tags_and_delete() {
    let t = setup();
    let fs = call(&t, "POST", FS, "", json!({"CreationToken": "x"}))
        .unwrap()
        .body["FileSystemId"]
        .as_str()
        .unwrap()
        .to_owned();
    let ap = json!({"ClientToken": "c1", "FileSystemId": fs,
        "PosixUser": {"Uid": 1000, "Gid": 1000},
        "RootDirectory": {"Path": "/data", "CreationInfo": {"OwnerUid": 1000, "OwnerGid": 1000, "Permissions": "0750"}},
        "Tags": [{"Key": "Name", "Value": "app"}]});
    let r = call(&t, "POST", AP, "", ap.clone()).unwrap();
    let apid = r.body["AccessPointId"].as_str().unwrap().to_owned();
    assert_eq!(r.body["Name"], "app");
    assert_eq!(r.body["RootDirectory"]["Path"], "/data");
    let e = call(&t, "POST", AP, "", ap).unwrap_err();
    assert_eq!(e.code, "AccessPointAlreadyExists");
    let e = call(
        &t,
        "POST",
        AP,
        "",
        json!({"ClientToken": "c2", "FileSystemId": fs,
        "RootDirectory": {"Path": "/a/../b"}}),
    )
    .unwrap_err();
    assert_eq!(e.code, "BadRequest");
    let r = call(&t, "GET", AP, &format!("FileSystemId={fs}"), Value::Null).unwrap();
    assert_eq!(r.body["AccessPoints"][0]["AccessPointId"], apid.as_str());

    let tags = format!("/2015-02-01/resource-tags/{fs}");
    call(
        &t,
        "POST",
        &tags,
        "",
        json!({"Tags": [{"Key": "k", "Value": "v"}, {"Key": "j", "Value": "w"}]}),
    )
    .unwrap();
    call(&t, "DELETE", &tags, "tagKeys=j", Value::Null).unwrap();
    let r = call(&t, "GET", &tags, "", Value::Null).unwrap();
    assert_eq!(r.body["Tags"], json!([{"Key": "k", "Value": "v"}]));

    let del = format!("{FS}/{fs}");
    t.fake.busy.lock().unwrap().insert(fs.clone());
    let e = call(&t, "DELETE", &del, "", Value::Null).unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("FileSystemInUse", 409));
    assert!(t.fake.destroyed.lock().unwrap().is_empty());
    t.fake.busy.lock().unwrap().clear();
    assert_eq!(
        call(&t, "DELETE", &del, "", Value::Null).unwrap().status,
        204
    );
    assert_eq!(*t.fake.destroyed.lock().unwrap(), vec![fs.clone()]);
    let e = call(&t, "GET", AP, &format!("AccessPointId={apid}"), Value::Null).unwrap_err();
    assert_eq!(e.code, "AccessPointNotFound");
    let e = call(&t, "DELETE", &del, "", Value::Null).unwrap_err();
    assert_eq!(e.code, "FileSystemNotFound");
}
