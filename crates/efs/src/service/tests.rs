use std::collections::HashSet;

use bytes::Bytes;
use ferry_proto::Caller;
use http::{HeaderMap, Method};

use super::*;
use crate::backend::CreatedVolume;
use crate::network::Network;

#[derive(Default)]
struct Fake {
    busy: Mutex<HashSet<String>>,
    destroyed: Mutex<Vec<String>>,
    created: Mutex<usize>,
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
        if let Ok(mut n) = self.created.lock() {
            *n += 1;
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

/// Subnets `subnet-a` (zone a, vpc-1), `subnet-b` (zone b, vpc-1),
/// `subnet-c` (zone a, vpc-2); addresses 10.0.0.4 upwards.
#[derive(Default)]
struct FakeNet {
    enis: Mutex<Vec<(String, String, Vec<String>)>>,
}

impl Network for FakeNet {
    fn subnet(&self, subnet_id: &str) -> Result<(String, String), EfsError> {
        match subnet_id {
            "subnet-a" => Ok(("us-east-1a".into(), "vpc-1".into())),
            "subnet-b" => Ok(("us-east-1b".into(), "vpc-1".into())),
            "subnet-c" => Ok(("us-east-1a".into(), "vpc-2".into())),
            _ => Err(EfsError::SubnetNotFound(format!("no {subnet_id}"))),
        }
    }
    fn create(
        &self,
        subnet_id: &str,
        ip: Option<std::net::Ipv4Addr>,
        groups: &[String],
        _: &str,
    ) -> Result<crate::network::Interface, EfsError> {
        let mut enis = self.enis.lock().unwrap();
        let ip = ip.map_or_else(|| format!("10.0.0.{}", 4 + enis.len()), |i| i.to_string());
        if enis.iter().any(|(_, i, _)| *i == ip) {
            return Err(EfsError::IpAddressInUse(ip));
        }
        let (zone, vpc) = self.subnet(subnet_id)?;
        let id = format!("eni-{}", enis.len());
        let groups = if groups.is_empty() {
            vec!["sg-default".to_owned()]
        } else {
            groups.to_vec()
        };
        enis.push((id.clone(), ip.clone(), groups.clone()));
        Ok(crate::network::Interface {
            eni_id: id,
            ip,
            vpc_id: vpc,
            availability_zone: zone,
            availability_zone_id: "use1-az1".into(),
            security_groups: groups,
        })
    }
    fn groups(&self, eni_id: &str) -> Option<Vec<String>> {
        let enis = self.enis.lock().unwrap();
        enis.iter().find(|e| e.0 == eni_id).map(|e| e.2.clone())
    }
    fn set_groups(&self, eni_id: &str, groups: &[String]) -> Result<Vec<String>, EfsError> {
        let mut enis = self.enis.lock().unwrap();
        let e = enis
            .iter_mut()
            .find(|e| e.0 == eni_id)
            .ok_or_else(|| EfsError::Internal("gone".into()))?;
        e.2 = groups.to_vec();
        Ok(e.2.clone())
    }
    fn delete(&self, eni_id: &str) -> Result<(), EfsError> {
        self.enis.lock().unwrap().retain(|e| e.0 != eni_id);
        Ok(())
    }
}

fn setup_net() -> (T, Arc<FakeNet>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let fake = Arc::new(Fake::default());
    let net = Arc::new(FakeNet::default());
    let svc =
        EfsService::new(store, fake.clone(), "123456789012", "us-east-1").with_network(net.clone());
    (
        T {
            svc,
            fake,
            _dir: dir,
        },
        net,
    )
}

const MT: &str = "/2015-02-01/mount-targets";

fn new_fs(t: &T, token: &str) -> String {
    let r = call(t, "POST", FS, "", json!({"CreationToken": token})).unwrap();
    r.body["FileSystemId"].as_str().unwrap().to_owned()
}

#[test]
fn mount_targets_one_per_zone_one_vpc_and_block_deletion() {
    let (t, net) = setup_net();
    let fs = new_fs(&t, "a");
    let r = call(
        &t,
        "POST",
        MT,
        "",
        json!({"FileSystemId": fs, "SubnetId": "subnet-a"}),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let mt = r.body["MountTargetId"].as_str().unwrap().to_owned();
    assert!(mt.starts_with("fsmt-"), "{mt}");
    assert_eq!(r.body["IpAddress"], "10.0.0.4");
    assert_eq!(r.body["VpcId"], "vpc-1");
    assert_eq!(r.body["LifeCycleState"], "available");
    // Same zone again, other VPC, unknown subnet, address taken.
    for (body, code) in [
        (
            json!({"FileSystemId": fs, "SubnetId": "subnet-a"}),
            "MountTargetConflict",
        ),
        (
            json!({"FileSystemId": fs, "SubnetId": "subnet-x"}),
            "SubnetNotFound",
        ),
        (
            json!({"FileSystemId": fs, "SubnetId": "subnet-b", "IpAddress": "10.0.0.4"}),
            "IpAddressInUse",
        ),
        (
            json!({"FileSystemId": fs, "SubnetId": "subnet-b", "IpAddress": "ten"}),
            "BadRequest",
        ),
        (
            json!({"FileSystemId": "fs-none", "SubnetId": "subnet-b"}),
            "FileSystemNotFound",
        ),
        (
            json!({"FileSystemId": fs, "SubnetId": "subnet-b",
                   "SecurityGroups": ["sg-1", "sg-2", "sg-3", "sg-4", "sg-5", "sg-6"]}),
            "SecurityGroupLimitExceeded",
        ),
    ] {
        let e = call(&t, "POST", MT, "", body.clone()).unwrap_err();
        assert_eq!(e.code, code, "{body}: {}", e.message);
    }
    let fs2 = new_fs(&t, "b");
    call(
        &t,
        "POST",
        MT,
        "",
        json!({"FileSystemId": fs2, "SubnetId": "subnet-a"}),
    )
    .unwrap();
    // A subnet of another VPC (vpc-2) is refused before any address is
    // taken.
    let before = net.enis.lock().unwrap().len();
    let e = call(
        &t,
        "POST",
        MT,
        "",
        json!({"FileSystemId": fs, "SubnetId": "subnet-c"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "MountTargetConflict", "{}", e.message);
    assert_eq!(net.enis.lock().unwrap().len(), before);
    let r = call(
        &t,
        "POST",
        MT,
        "",
        json!({"FileSystemId": fs, "SubnetId": "subnet-b", "SecurityGroups": ["sg-1"]}),
    )
    .unwrap();
    let mt_b = r.body["MountTargetId"].as_str().unwrap().to_owned();
    // Counted in the file system's description.
    let r = call(&t, "GET", FS, &format!("FileSystemId={fs}"), Value::Null).unwrap();
    assert_eq!(r.body["FileSystems"][0]["NumberOfMountTargets"], 2);
    // Describe: by file system (paged), by id, exactly one selector.
    let r = call(
        &t,
        "GET",
        MT,
        &format!("FileSystemId={fs}&MaxItems=1"),
        Value::Null,
    )
    .unwrap();
    assert_eq!(r.body["MountTargets"].as_array().unwrap().len(), 1);
    assert!(r.body["NextMarker"].is_string());
    let r = call(&t, "GET", MT, &format!("MountTargetId={mt_b}"), Value::Null).unwrap();
    assert_eq!(r.body["MountTargets"][0]["SubnetId"], "subnet-b");
    let e = call(&t, "GET", MT, "", Value::Null).unwrap_err();
    assert_eq!(e.code, "BadRequest");
    // Security groups.
    let sg = format!("{MT}/{mt_b}/security-groups");
    let r = call(&t, "GET", &sg, "", Value::Null).unwrap();
    assert_eq!(r.body["SecurityGroups"], json!(["sg-1"]));
    let r = call(
        &t,
        "PUT",
        &sg,
        "",
        json!({"SecurityGroups": ["sg-2", "sg-3"]}),
    )
    .unwrap();
    assert_eq!(r.status, 204);
    let r = call(&t, "GET", &sg, "", Value::Null).unwrap();
    assert_eq!(r.body["SecurityGroups"], json!(["sg-2", "sg-3"]));
    // The file system cannot go while it has mount targets.
    let e = call(&t, "DELETE", &format!("{FS}/{fs}"), "", Value::Null).unwrap_err();
    assert_eq!(e.code, "FileSystemInUse");
    for m in [&mt, &mt_b] {
        let r = call(&t, "DELETE", &format!("{MT}/{m}"), "", Value::Null).unwrap();
        assert_eq!(r.status, 204);
    }
    let e = call(&t, "DELETE", &format!("{MT}/{mt}"), "", Value::Null).unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("MountTargetNotFound", 404));
    assert_eq!(net.enis.lock().unwrap().len(), 1, "fs2's ENI only");
    call(&t, "DELETE", &format!("{FS}/{fs}"), "", Value::Null).unwrap();
    assert!(t.fake.destroyed.lock().unwrap().contains(&fs));
}

#[test]
fn one_zone_file_system_takes_a_mount_target_only_in_its_zone() {
    let (t, _) = setup_net();
    let r = call(
        &t,
        "POST",
        FS,
        "",
        json!({"CreationToken": "oz", "AvailabilityZoneName": "us-east-1b"}),
    )
    .unwrap();
    assert_eq!(r.body["AvailabilityZoneName"], "us-east-1b");
    let fs = r.body["FileSystemId"].as_str().unwrap().to_owned();
    // One Zone file systems are backed up by default.
    let r = call(
        &t,
        "GET",
        &format!("{FS}/{fs}/backup-policy"),
        "",
        Value::Null,
    )
    .unwrap();
    assert_eq!(r.body["BackupPolicy"]["Status"], "ENABLED");
    let e = call(
        &t,
        "POST",
        MT,
        "",
        json!({"FileSystemId": fs, "SubnetId": "subnet-a"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "AvailabilityZonesMismatch");
    call(
        &t,
        "POST",
        MT,
        "",
        json!({"FileSystemId": fs, "SubnetId": "subnet-b"}),
    )
    .unwrap();
}

#[test]
fn settings_round_trip_and_refuse_bad_values() {
    let t = setup();
    let fs = new_fs(&t, "s");
    let p = |s: &str| format!("{FS}/{fs}/{s}");
    // Policy: none, put, describe, lockout check, delete.
    let e = call(&t, "GET", &p("policy"), "", Value::Null).unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("PolicyNotFound", 404));
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "*"}, "Action": "elasticfilesystem:ClientMount", "Resource": "*"}]})
    .to_string();
    let r = call(&t, "PUT", &p("policy"), "", json!({"Policy": doc})).unwrap();
    assert_eq!(r.body["Policy"], doc.as_str());
    let r = call(&t, "GET", &p("policy"), "", Value::Null).unwrap();
    assert_eq!(r.body["FileSystemId"], fs.as_str());
    let e = call(&t, "PUT", &p("policy"), "", json!({"Policy": "{not json"})).unwrap_err();
    assert_eq!(e.code, "InvalidPolicyException");
    let lockout = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
        "Principal": {"AWS": "*"}, "Action": "elasticfilesystem:*", "Resource": "*"}]})
    .to_string();
    let e = call(&t, "PUT", &p("policy"), "", json!({"Policy": lockout})).unwrap_err();
    assert_eq!(e.code, "InvalidPolicyException");
    assert!(e.message.contains("BypassPolicyLockoutSafetyCheck"));
    call(
        &t,
        "PUT",
        &p("policy"),
        "",
        json!({"Policy": lockout, "BypassPolicyLockoutSafetyCheck": true}),
    )
    .unwrap();
    call(&t, "DELETE", &p("policy"), "", Value::Null).unwrap();
    assert_eq!(
        call(&t, "GET", &p("policy"), "", Value::Null)
            .unwrap_err()
            .code,
        "PolicyNotFound"
    );
    // Lifecycle.
    let r = call(&t, "GET", &p("lifecycle-configuration"), "", Value::Null).unwrap();
    assert_eq!(r.body["LifecyclePolicies"], json!([]));
    let lc = json!([{"TransitionToIA": "AFTER_30_DAYS"}, {"TransitionToPrimaryStorageClass": "AFTER_1_ACCESS"}]);
    call(
        &t,
        "PUT",
        &p("lifecycle-configuration"),
        "",
        json!({"LifecyclePolicies": lc}),
    )
    .unwrap();
    let r = call(&t, "GET", &p("lifecycle-configuration"), "", Value::Null).unwrap();
    assert_eq!(r.body["LifecyclePolicies"], lc);
    for bad in [
        json!([{"TransitionToIA": "AFTER_2_DAYS"}]),
        json!([{"TransitionToIA": "AFTER_1_DAY", "TransitionToArchive": "AFTER_7_DAYS"}]),
        json!([{"TransitionToIA": "AFTER_1_DAY"}, {"TransitionToIA": "AFTER_7_DAYS"}]),
    ] {
        let e = call(
            &t,
            "PUT",
            &p("lifecycle-configuration"),
            "",
            json!({"LifecyclePolicies": bad}),
        )
        .unwrap_err();
        assert_eq!(e.code, "BadRequest", "{bad}");
    }
    // Backup policy.
    let r = call(&t, "GET", &p("backup-policy"), "", Value::Null).unwrap();
    assert_eq!(r.body["BackupPolicy"]["Status"], "DISABLED");
    call(
        &t,
        "PUT",
        &p("backup-policy"),
        "",
        json!({"BackupPolicy": {"Status": "ENABLED"}}),
    )
    .unwrap();
    let r = call(&t, "GET", &p("backup-policy"), "", Value::Null).unwrap();
    assert_eq!(r.body["BackupPolicy"]["Status"], "ENABLED");
    let e = call(
        &t,
        "PUT",
        &p("backup-policy"),
        "",
        json!({"BackupPolicy": {"Status": "ENABLING"}}),
    )
    .unwrap_err();
    assert_eq!(e.code, "ValidationException");
    // Throughput.
    let e = call(
        &t,
        "PUT",
        &format!("{FS}/{fs}"),
        "",
        json!({"ThroughputMode": "provisioned"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "BadRequest");
    let r = call(
        &t,
        "PUT",
        &format!("{FS}/{fs}"),
        "",
        json!({"ThroughputMode": "provisioned", "ProvisionedThroughputInMibps": 128.0}),
    )
    .unwrap();
    assert_eq!(r.status, 202);
    assert_eq!(r.body["ProvisionedThroughputInMibps"], 128.0);
    let r = call(
        &t,
        "PUT",
        &format!("{FS}/{fs}"),
        "",
        json!({"ThroughputMode": "elastic"}),
    )
    .unwrap();
    assert_eq!(r.body["ThroughputMode"], "elastic");
    assert!(r.body.get("ProvisionedThroughputInMibps").is_none());
    // Protection.
    let r = call(
        &t,
        "PUT",
        &p("protection"),
        "",
        json!({"ReplicationOverwriteProtection": "DISABLED"}),
    )
    .unwrap();
    assert_eq!(r.body["ReplicationOverwriteProtection"], "DISABLED");
    let r = call(&t, "GET", FS, &format!("FileSystemId={fs}"), Value::Null).unwrap();
    assert_eq!(
        r.body["FileSystems"][0]["FileSystemProtection"]["ReplicationOverwriteProtection"],
        "DISABLED"
    );
    let e = call(
        &t,
        "PUT",
        &p("protection"),
        "",
        json!({"ReplicationOverwriteProtection": "REPLICATING"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "BadRequest");
    // Unknown file system.
    let e = call(
        &t,
        "GET",
        "/2015-02-01/file-systems/fs-none/policy",
        "",
        Value::Null,
    )
    .unwrap_err();
    assert_eq!(e.code, "FileSystemNotFound");
}

#[test]
fn older_tag_api_on_file_systems() {
    let t = setup();
    let fs = new_fs(&t, "t");
    let r = call(
        &t,
        "POST",
        &format!("/2015-02-01/create-tags/{fs}"),
        "",
        json!({"Tags": [{"Key": "Name", "Value": "data"}, {"Key": "team", "Value": "pay"}]}),
    )
    .unwrap();
    assert_eq!(r.status, 204);
    let r = call(
        &t,
        "GET",
        &format!("/2015-02-01/tags/{fs}/"),
        "",
        Value::Null,
    )
    .unwrap();
    assert_eq!(r.body["Tags"].as_array().unwrap().len(), 2);
    let r = call(&t, "GET", FS, &format!("FileSystemId={fs}"), Value::Null).unwrap();
    assert_eq!(r.body["FileSystems"][0]["Name"], "data");
    call(
        &t,
        "POST",
        &format!("/2015-02-01/delete-tags/{fs}"),
        "",
        json!({"TagKeys": ["team"]}),
    )
    .unwrap();
    let r = call(
        &t,
        "GET",
        &format!("/2015-02-01/tags/{fs}/"),
        "MaxItems=1",
        Value::Null,
    )
    .unwrap();
    assert_eq!(r.body["Tags"], json!([{"Key": "Name", "Value": "data"}]));
    let e = call(
        &t,
        "POST",
        &format!("/2015-02-01/delete-tags/{fs}"),
        "",
        json!({}),
    )
    .unwrap_err();
    assert_eq!(e.code, "BadRequest");
    let e = call(&t, "GET", "/2015-02-01/tags/fs-none/", "", Value::Null).unwrap_err();
    assert_eq!(e.code, "FileSystemNotFound");
}

/// Two services (replicas) over one PostgreSQL database: the same creation
/// token through both at once makes one file system (the other's volume
/// is destroyed), and tag changes through both are all kept. Needs root and
/// PostgreSQL's binaries (`ferry_store::testing::TempPostgres` says so).
#[test]
fn replicas_over_one_database_keep_tokens_unique_and_lose_no_change() {
    let pg = ferry_store::testing::TempPostgres::new();
    let replica = || {
        let store = Arc::new(Store::connect(&pg.url()).unwrap());
        let fake = Arc::new(Fake::default());
        T {
            svc: EfsService::new(store, fake.clone(), "123456789012", "us-east-1")
                .with_host(Some("host-1".into())),
            fake,
            _dir: tempfile::tempdir().unwrap(),
        }
    };
    // A replica that is no host (--no-agent) cannot hold a file system.
    let no_host = T {
        svc: EfsService::new(
            Arc::new(Store::connect(&pg.url()).unwrap()),
            Arc::new(Fake::default()),
            "123456789012",
            "us-east-1",
        ),
        fake: Arc::new(Fake::default()),
        _dir: tempfile::tempdir().unwrap(),
    };
    let e = call(&no_host, "POST", FS, "", json!({"CreationToken": "x"})).unwrap_err();
    assert_eq!(e.code, "BadRequest");
    assert!(e.message.contains("--no-agent"), "{}", e.message);
    let ts = [Arc::new(replica()), Arc::new(replica())];
    let made: Vec<Result<RestResponse, AwsError>> = (0..4)
        .map(|i| {
            let t = ts[i % 2].clone();
            std::thread::spawn(move || call(&t, "POST", FS, "", json!({"CreationToken": "one"})))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let ok: Vec<&RestResponse> = made.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "{made:?}");
    // It lives on the host of the replica that made it.
    let id = ok[0].body["FileSystemId"].as_str().unwrap();
    assert_eq!(
        ts[0].svc.file_system(id).unwrap().unwrap().host.as_deref(),
        Some("host-1")
    );
    for e in made.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(e.code, "FileSystemAlreadyExists");
    }
    // Every volume made for a refused creation was destroyed (a creation
    // refused before making one, by the check outside the transaction,
    // made none).
    let count = |f: &dyn Fn(&Fake) -> usize| ts.iter().map(|t| f(&t.fake)).sum::<usize>();
    let created = count(&|f| *f.created.lock().unwrap());
    let destroyed = count(&|f| f.destroyed.lock().unwrap().len());
    assert!(created >= 1);
    assert_eq!(destroyed, created - 1);
    let id = ok[0].body["FileSystemId"].as_str().unwrap().to_owned();
    // Tags added through both replicas at once: none lost.
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (t, id) = (ts[i % 2].clone(), id.clone());
            std::thread::spawn(move || {
                call(
                    &t,
                    "POST",
                    &format!("/2015-02-01/create-tags/{id}"),
                    "",
                    json!({"Tags": [{"Key": format!("k{i}"), "Value": "v"}]}),
                )
                .unwrap();
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    let fs = call(
        &ts[0],
        "GET",
        FS,
        &format!("FileSystemId={id}"),
        Value::Null,
    )
    .unwrap();
    assert_eq!(
        fs.body["FileSystems"][0]["Tags"].as_array().unwrap().len(),
        6,
        "{}",
        fs.body
    );
}
