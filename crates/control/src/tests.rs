//! Service-level tests: the whole ECS service over a real store, with a
//! fake runtime and fake KMS checks (mocks are for unit tests only).

use std::sync::{Arc, Mutex};

use ferry_proto::plan::{StoragePlan, TaskEvent, TaskPlan};
use ferry_proto::{Caller, JsonService, RequestContext};
use ferry_store::Store;
use serde_json::{Value, json};

use crate::keys::{KeyCheckError, StorageKeys};
use crate::networks::{AwsVpc, NetworkRefusal, TaskNetworks};
use crate::runtime::{EventSink, Reattach, TaskRuntime};
use crate::{EcsConfig, EcsService};
use ferry_proto::net::InterfacePlan;

pub(crate) const PLATFORM_KEY: &str = "arn:aws:kms:us-east-1:000000000000:key/platform";
pub(crate) const CMK: &str =
    "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab";

#[derive(Default)]
pub(crate) struct FakeRuntime {
    pub(crate) started: Mutex<Vec<(TaskPlan, EventSink)>>,
    pub(crate) stopped: Mutex<Vec<String>>,
    pub(crate) adopt: bool,
    /// Refuses every task with this detail (a host without room).
    pub(crate) refuse: Mutex<Option<String>>,
}

impl TaskRuntime for FakeRuntime {
    fn start(&self, plan: TaskPlan, events: EventSink) {
        self.started.lock().unwrap().push((plan, events));
    }
    fn stop(&self, task_arn: &str, _stop_code: &str, _reason: &str) {
        self.stopped.lock().unwrap().push(task_arn.to_owned());
    }
    fn admit(&self, _plan: &TaskPlan) -> Result<(), String> {
        match self.refuse.lock().unwrap().clone() {
            Some(detail) => Err(detail),
            None => Ok(()),
        }
    }
    fn reattach(&self, plan: &TaskPlan, events: EventSink) -> Reattach {
        if self.adopt {
            self.started.lock().unwrap().push((plan.clone(), events));
            Reattach::Adopted
        } else {
            Reattach::Gone {
                reason: "the task's supervisor is gone".into(),
            }
        }
    }
}

/// A VPC with subnets `subnet-*` and groups `sg-*`, except those named
/// `*-missing`; subnet `subnet-full` has no free address. Records what was
/// attached and detached.
#[derive(Default)]
pub(crate) struct FakeNetworks {
    pub(crate) attached: Mutex<Vec<String>>,
    pub(crate) detached: Mutex<Vec<String>>,
    /// Every attach waits here (tests line up racing launches between
    /// their first placement and their transaction).
    pub(crate) gate: Mutex<Option<Arc<std::sync::Barrier>>>,
    /// Run once, at the next attach (tests act in the middle of a launch).
    #[allow(clippy::type_complexity)]
    pub(crate) on_attach: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl FakeNetworks {
    /// `subnet-10-N` is 10.N.0.0/16; every other subnet 198.18.0.0/16.
    pub(crate) fn cidr(subnet: &str) -> ferry_proto::net::Ipv4Cidr {
        match subnet.strip_prefix("subnet-10-") {
            Some(n) => format!("10.{n}.0.0/16").parse().unwrap(),
            None => "198.18.0.0/16".parse().unwrap(),
        }
    }
    fn missing(net: &AwsVpc) -> Option<NetworkRefusal> {
        let bad: Vec<_> = net
            .subnets
            .iter()
            .chain(&net.security_groups)
            .filter(|n| n.ends_with("-missing"))
            .cloned()
            .collect();
        (!bad.is_empty()).then(|| NetworkRefusal::Invalid(format!("does not exist: {bad:?}")))
    }
}

impl TaskNetworks for FakeNetworks {
    fn check(&self, net: &AwsVpc) -> Result<(), NetworkRefusal> {
        Self::missing(net).map_or(Ok(()), Err)
    }
    fn subnet_cidrs(
        &self,
        subnets: &[String],
    ) -> Result<Vec<(String, ferry_proto::net::Ipv4Cidr)>, NetworkRefusal> {
        Ok(subnets
            .iter()
            .map(|s| (s.clone(), FakeNetworks::cidr(s)))
            .collect())
    }
    fn attach(&self, net: &AwsVpc, _description: &str) -> Result<InterfacePlan, NetworkRefusal> {
        if let Some(e) = Self::missing(net) {
            return Err(e);
        }
        if net.subnets == ["subnet-full"] {
            return Err(NetworkRefusal::NoAddress("subnet-full is full".into()));
        }
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            g.wait();
        }
        let hook = self.on_attach.lock().unwrap().take();
        if let Some(f) = hook {
            f();
        }
        let mut attached = self.attached.lock().unwrap();
        let n = attached.len() as u8;
        let eni = format!("eni-{:017x}", attached.len());
        attached.push(eni.clone());
        Ok(InterfacePlan {
            eni_id: eni,
            vpc_id: "vpc-1".into(),
            subnet_id: net.subnets[0].clone(),
            subnet_cidr: FakeNetworks::cidr(&net.subnets[0]),
            ip: std::net::Ipv4Addr::new(198, 18, 0, 4 + n),
            gateway: std::net::Ipv4Addr::new(198, 18, 0, 1),
            mac: format!("0a:00:00:00:00:{n:02x}"),
            security_groups: net.security_groups.clone(),
            availability_zone: "us-east-1b".into(),
        })
    }
    fn detach(&self, eni_id: &str) {
        self.detached.lock().unwrap().push(eni_id.to_owned());
    }
    fn release_unless(&self, keep: &dyn Fn(&str) -> bool) {
        let attached = self.attached.lock().unwrap().clone();
        for eni in attached.iter().filter(|e| !keep(e)) {
            self.detach(eni);
        }
    }
}

pub(crate) struct FakeKeys;

impl StorageKeys for FakeKeys {
    fn check_cluster_key(&self, key_id: &str) -> Result<String, KeyCheckError> {
        match key_id {
            k if k.starts_with("alias/") => Err(KeyCheckError::Alias(k.into())),
            "disabled" => Err(KeyCheckError::NotEnabled {
                arn: "arn:disabled".into(),
                state: "Disabled".into(),
            }),
            k if k == CMK || k == "1234abcd-12ab-34cd-56ef-1234567890ab" => Ok(CMK.into()),
            k => Err(KeyCheckError::NotFound(k.into())),
        }
    }
    fn platform_key_arn(&self) -> Result<String, KeyCheckError> {
        Ok(PLATFORM_KEY.into())
    }
}

pub(crate) struct Env {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) store: Arc<Store>,
    pub(crate) rt: Arc<FakeRuntime>,
    pub(crate) nets: Arc<FakeNetworks>,
    pub(crate) svc: EcsService,
}

pub(crate) fn env_with(dir: tempfile::TempDir, rt: FakeRuntime) -> Env {
    env_with_identity(dir, rt, crate::identity::IdentityServices::unconfigured())
}

pub(crate) fn env_with_identity(
    dir: tempfile::TempDir,
    rt: FakeRuntime,
    identity: crate::identity::IdentityServices,
) -> Env {
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
    let rt = Arc::new(rt);
    let mut cfg = EcsConfig::new("us-east-1", "000000000000");
    // Service tests run scheduler passes themselves.
    cfg.scheduler_interval = None;
    cfg.timings.assign_every = None;
    let nets = Arc::new(FakeNetworks::default());
    let svc = EcsService::with_identity(
        cfg,
        store.clone(),
        rt.clone(),
        Arc::new(FakeKeys),
        nets.clone(),
        identity,
    )
    .unwrap();
    Env {
        _dir: dir,
        store,
        rt,
        nets,
        svc,
    }
}

pub(crate) fn env() -> Env {
    env_with(tempfile::tempdir().unwrap(), FakeRuntime::default())
}

pub(crate) fn ctx() -> RequestContext {
    RequestContext::internal(Caller::admin("000000000000"), "us-east-1")
}

impl Env {
    pub(crate) fn call(&self, op: &str, body: Value) -> Result<Value, ferry_proto::AwsError> {
        self.svc
            .call(&ctx(), op, &serde_json::to_vec(&body).unwrap())
    }
    /// Runs one task of the registered definition; returns its ARN.
    pub(crate) fn run_one(&self) -> String {
        self.ok("RunTask", run_body())["tasks"][0]["taskArn"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    pub(crate) fn ok(&self, op: &str, body: Value) -> Value {
        self.call(op, body)
            .unwrap_or_else(|e| panic!("{op} failed: {e}"))
    }
    pub(crate) fn err(&self, op: &str, body: Value) -> ferry_proto::AwsError {
        self.call(op, body).expect_err("expected an error")
    }
    pub(crate) fn sink(&self, i: usize) -> EventSink {
        self.rt.started.lock().unwrap()[i].1.clone()
    }
    pub(crate) fn plan(&self, i: usize) -> TaskPlan {
        self.rt.started.lock().unwrap()[i].0.clone()
    }
    pub(crate) fn describe(&self, arn: &str) -> Value {
        self.ok("DescribeTasks", json!({"tasks": [arn]}))["tasks"][0].clone()
    }
}

pub(crate) fn source_doc() -> Value {
    json!({
        "containerDefinitions": [{
            "command": ["/bin/sh -c \"echo hi > /usr/local/apache2/htdocs/index.html && httpd-foreground\""],
            "entryPoint": ["sh", "-c"],
            "essential": true,
            "image": "httpd:2.4",
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/fargate-task-definition",
                "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "ecs"}},
            "name": "sample-fargate-app",
            "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
            "someFutureField": {"nested": [1, 2]}
        }],
        "cpu": "256",
        "executionRoleArn": "arn:aws:iam::012345678910:role/ecsTaskExecutionRole",
        "family": "fargate-task-definition",
        "memory": "512",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"}
    })
}

pub(crate) fn run_body() -> Value {
    json!({
        "taskDefinition": "fargate-task-definition",
        "launchType": "FARGATE",
        "platformVersion": "1.4.0",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"]}}
    })
}

/// Every key/value of `want` appears, equal, in `got` (recursively for objects).
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| contains(gv, v))),
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| contains(a, b))
        }
        _ => got == want,
    }
}

#[test]
fn default_cluster_exists_and_clusters_work() {
    let e = env();
    let l = e.ok("ListClusters", json!({}));
    assert_eq!(
        l["clusterArns"],
        json!(["arn:aws:ecs:us-east-1:000000000000:cluster/default"])
    );
    let c = e.ok(
        "CreateCluster",
        json!({"clusterName": "prod", "tags": [{"key": "team", "value": "a"}],
               "configuration": {"managedStorageConfiguration": {"fargateEphemeralStorageKmsKeyId": CMK}}}),
    );
    assert_eq!(c["cluster"]["status"], "ACTIVE");
    assert_eq!(c["cluster"]["tags"][0]["key"], "team");
    let d = e.ok("DescribeClusters", json!({"clusters": ["prod", "nope"]}));
    assert_eq!(d["clusters"][0]["clusterName"], "prod");
    assert!(d["clusters"][0].get("tags").is_none());
    assert!(d["clusters"][0].get("configuration").is_none());
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    assert_eq!(
        d["failures"][0]["arn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/nope"
    );
    let d = e.ok(
        "DescribeClusters",
        json!({"clusters": ["arn:aws:ecs:us-east-1:000000000000:cluster/prod"], "include": ["TAGS", "CONFIGURATIONS", "SETTINGS"]}),
    );
    assert_eq!(d["clusters"][0]["tags"][0]["value"], "a");
    assert_eq!(
        d["clusters"][0]["configuration"]["managedStorageConfiguration"]["fargateEphemeralStorageKmsKeyId"],
        CMK
    );
    // Default when no cluster is named.
    let d = e.ok("DescribeClusters", json!({}));
    assert_eq!(d["clusters"][0]["clusterName"], "default");
    assert_eq!(
        e.err("CreateCluster", json!({"clusterName": "bad name"}))
            .code,
        "InvalidParameterException"
    );
    e.ok("DeleteCluster", json!({"cluster": "prod"}));
    let d = e.ok("DescribeClusters", json!({"clusters": ["prod"]}));
    assert_eq!(d["clusters"][0]["status"], "INACTIVE");
    assert_eq!(
        e.ok("ListClusters", json!({}))["clusterArns"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        e.err("UpdateCluster", json!({"cluster": "prod"})).code,
        "ClusterNotFoundException"
    );
}

#[test]
fn cluster_keys_are_checked() {
    let e = env();
    for (key, needle) in [
        ("alias/mykey", "alias"),
        ("disabled", "Disabled"),
        ("unknown-key", "not found"),
    ] {
        let err = e.err(
            "CreateCluster",
            json!({"clusterName": "c", "configuration": {"managedStorageConfiguration": {"fargateEphemeralStorageKmsKeyId": key}}}),
        );
        assert_eq!(err.code, "InvalidParameterException");
        assert!(err.message.contains(needle), "{}", err.message);
    }
    e.ok("CreateCluster", json!({"clusterName": "c"}));
    let err = e.err(
        "UpdateCluster",
        json!({"cluster": "c", "configuration": {"managedStorageConfiguration": {"fargateEphemeralStorageKmsKeyId": "alias/x"}}}),
    );
    assert_eq!(err.code, "InvalidParameterException");
    let u = e.ok(
        "UpdateCluster",
        json!({"cluster": "c", "configuration": {"managedStorageConfiguration": {"fargateEphemeralStorageKmsKeyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}}}),
    );
    assert_eq!(
        u["cluster"]["configuration"]["managedStorageConfiguration"]["fargateEphemeralStorageKmsKeyId"],
        "1234abcd-12ab-34cd-56ef-1234567890ab"
    );
    // New tasks use the CMK and show it.
    e.ok("RegisterTaskDefinition", source_doc());
    let mut body = run_body();
    body["cluster"] = "c".into();
    let t = e.ok("RunTask", body)["tasks"][0].clone();
    assert_eq!(t["fargateEphemeralStorage"]["kmsKeyId"], CMK);
    assert_eq!(
        e.plan(0).storage,
        StoragePlan::Encrypted {
            kms_key_arn: CMK.into()
        }
    );
}

#[test]
fn task_definitions_round_trip_and_revise() {
    let e = env();
    let doc = source_doc();
    let r = e.ok("RegisterTaskDefinition", doc.clone());
    let td = &r["taskDefinition"];
    assert!(contains(td, &doc), "echo lost fields: {td}");
    assert_eq!(td["revision"], 1);
    assert_eq!(td["status"], "ACTIVE");
    assert_eq!(
        td["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/fargate-task-definition:1"
    );
    let mut doc2 = doc.clone();
    doc2["memory"] = "1024".into();
    let r2 = e.ok("RegisterTaskDefinition", doc2);
    assert_eq!(r2["taskDefinition"]["revision"], 2);
    let d = e.ok(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "fargate-task-definition"}),
    );
    assert_eq!(d["taskDefinition"]["revision"], 2);
    let d = e.ok(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "fargate-task-definition:1"}),
    );
    assert!(contains(&d["taskDefinition"], &doc));
    e.ok(
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "fargate-task-definition:2"}),
    );
    // family alone is now the latest ACTIVE revision: 1.
    let d = e.ok(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "fargate-task-definition"}),
    );
    assert_eq!(d["taskDefinition"]["revision"], 1);
    let d = e.ok(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "fargate-task-definition:2"}),
    );
    assert_eq!(d["taskDefinition"]["status"], "INACTIVE");
    assert!(d["taskDefinition"]["deregisteredAt"].is_number());
    let l = e.ok("ListTaskDefinitions", json!({}));
    assert_eq!(l["taskDefinitionArns"].as_array().unwrap().len(), 1);
    let l = e.ok("ListTaskDefinitions", json!({"status": "INACTIVE"}));
    assert_eq!(l["taskDefinitionArns"].as_array().unwrap().len(), 1);
    // Revisions are not reused.
    let r3 = e.ok("RegisterTaskDefinition", doc.clone());
    assert_eq!(r3["taskDefinition"]["revision"], 3);
    let l = e.ok(
        "ListTaskDefinitions",
        json!({"sort": "DESC", "maxResults": 1}),
    );
    assert!(l["taskDefinitionArns"][0].as_str().unwrap().ends_with(":3"));
    let l2 = e.ok(
        "ListTaskDefinitions",
        json!({"sort": "DESC", "maxResults": 1, "nextToken": l["nextToken"]}),
    );
    assert!(
        l2["taskDefinitionArns"][0]
            .as_str()
            .unwrap()
            .ends_with(":1")
    );
    assert!(l2.get("nextToken").is_none());
    let f = e.ok(
        "ListTaskDefinitionFamilies",
        json!({"familyPrefix": "fargate"}),
    );
    assert_eq!(f["families"], json!(["fargate-task-definition"]));
    assert_eq!(
        e.err("DescribeTaskDefinition", json!({"taskDefinition": "nope"}))
            .message,
        "Unable to describe task definition."
    );
    assert_eq!(
        e.err(
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "fargate-task-definition"})
        )
        .code,
        "ClientException"
    );
    // Bad JSON types are a SerializationException, not a panic.
    assert_eq!(
        e.err("RegisterTaskDefinition", json!({"family": 5})).code,
        "SerializationException"
    );
}

#[test]
fn run_task_to_running_to_stopped() {
    let e = env();
    e.ok("RegisterTaskDefinition", source_doc());
    let mut body = run_body();
    body["count"] = 2.into();
    body["overrides"] = json!({"containerOverrides": [{"name": "sample-fargate-app",
        "command": ["echo", "hi"], "environment": [{"name": "X", "value": "1"}]}],
        "ephemeralStorage": {"sizeInGiB": 30}});
    let r = e.ok("RunTask", body);
    let tasks = r["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let t = &tasks[0];
    assert_eq!(t["lastStatus"], "PROVISIONING");
    assert_eq!(t["desiredStatus"], "RUNNING");
    assert_eq!(t["platformVersion"], "1.4.0");
    assert_eq!(t["launchType"], "FARGATE");
    assert_eq!(t["ephemeralStorage"]["sizeInGiB"], 30);
    assert_eq!(t["fargateEphemeralStorage"]["sizeInGiB"], 30);
    assert!(t["fargateEphemeralStorage"].get("kmsKeyId").is_none());
    let arn = t["taskArn"].as_str().unwrap().to_owned();
    let id = arn.rsplit('/').next().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(arn.starts_with("arn:aws:ecs:us-east-1:000000000000:task/default/"));

    let p = e.plan(0);
    assert_eq!(p.containers[0].command, vec!["echo", "hi"]);
    assert_eq!(p.containers[0].environment, vec![("X".into(), "1".into())]);
    assert_eq!(p.ephemeral_storage_gib, 30);
    assert_eq!(
        p.storage,
        StoragePlan::Encrypted {
            kms_key_arn: PLATFORM_KEY.into()
        }
    );
    assert_eq!(p.task_arn, arn);

    let sink = e.sink(0);
    sink(TaskEvent::Provisioned {
        private_ip: "198.18.0.7".into(),
    });
    sink(TaskEvent::PullStarted);
    sink(TaskEvent::PullStopped {
        failed: Default::default(),
    });
    sink(TaskEvent::ContainerRunning {
        name: "sample-fargate-app".into(),
    });
    sink(TaskEvent::Running);
    let d = e.describe(&arn);
    assert_eq!(d["lastStatus"], "RUNNING");
    assert!(
        d["startedAt"].is_number()
            && d["pullStartedAt"].is_number()
            && d["connectivityAt"].is_number()
    );
    assert!(
        d["pullStartedAt"].as_f64() <= d["pullStoppedAt"].as_f64(),
        "{d}"
    );
    assert_eq!(d["attachments"][0]["type"], "ElasticNetworkInterface");
    assert_eq!(d["attachments"][0]["status"], "ATTACHED");
    assert!(
        d["attachments"][0]["details"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "privateIPv4Address", "value": "198.18.0.7"}))
    );
    assert_eq!(d["containers"][0]["lastStatus"], "RUNNING");
    assert_eq!(
        d["containers"][0]["networkBindings"][0],
        json!({"bindIP": "198.18.0.7", "containerPort": 80, "hostPort": 80, "protocol": "tcp"})
    );
    let c = e.ok("DescribeClusters", json!({}));
    assert_eq!(c["clusters"][0]["runningTasksCount"], 1);
    assert_eq!(c["clusters"][0]["pendingTasksCount"], 1);
    assert_eq!(
        e.err("DeleteCluster", json!({"cluster": "default"})).code,
        "ClusterContainsTasksException"
    );

    let s = e.ok("StopTask", json!({"task": arn, "reason": "done here"}));
    assert_eq!(s["task"]["desiredStatus"], "STOPPED");
    assert_eq!(s["task"]["lastStatus"], "DEACTIVATING");
    assert_eq!(s["task"]["stopCode"], "UserInitiated");
    assert_eq!(*e.rt.stopped.lock().unwrap(), vec![arn.clone()]);
    sink(TaskEvent::ContainerExited {
        name: "sample-fargate-app".into(),
        exit_code: 0,
        reason: None,
    });
    sink(TaskEvent::Stopped {
        stop_code: "UserInitiated".into(),
        stopped_reason: "x".into(),
    });
    let d = e.describe(&arn);
    assert_eq!(d["lastStatus"], "STOPPED");
    assert_eq!(d["stoppedReason"], "done here");
    assert_eq!(d["containers"][0]["exitCode"], 0);
    for k in ["stoppingAt", "executionStoppedAt", "stoppedAt"] {
        assert!(d[k].is_number(), "{k} missing");
    }
    assert_eq!(d["attachments"][0]["status"], "DELETED");
    let running = e.ok("ListTasks", json!({}));
    assert_eq!(running["taskArns"].as_array().unwrap().len(), 1);
    let stopped = e.ok("ListTasks", json!({"desiredStatus": "STOPPED"}));
    assert_eq!(stopped["taskArns"], json!([arn]));
}

#[test]
fn run_task_validation() {
    let e = env();
    e.ok("RegisterTaskDefinition", source_doc());
    let cases = [
        (json!({"count": 11}), "InvalidParameterException"),
        (json!({"count": 0}), "InvalidParameterException"),
        (json!({"cluster": "nope"}), "ClusterNotFoundException"),
        (json!({"taskDefinition": "nope:1"}), "ClientException"),
        (
            json!({"networkConfiguration": null}),
            "InvalidParameterException",
        ),
        (
            json!({"platformVersion": "1.2.0"}),
            "PlatformUnknownException",
        ),
        (json!({"launchType": "EC2"}), "InvalidParameterException"),
        (
            json!({"overrides": {"ephemeralStorage": {"sizeInGiB": 201}}}),
            "InvalidParameterException",
        ),
        (
            json!({"overrides": {"containerOverrides": [{"name": "ghost"}]}}),
            "InvalidParameterException",
        ),
        (
            json!({"platformVersion": "1.3.0", "overrides": {"ephemeralStorage": {"sizeInGiB": 30}}}),
            "ClientException",
        ),
    ];
    for (patch, code) in cases {
        let mut body = run_body();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let err = e.err("RunTask", body.clone());
        assert_eq!(err.code, code, "{body}: {}", err.message);
        assert!(!err.message.is_empty());
    }
    assert!(e.rt.started.lock().unwrap().is_empty());
    // 1.3.0 runs unencrypted.
    let mut body = run_body();
    body["platformVersion"] = "1.3.0".into();
    let t = e.ok("RunTask", body)["tasks"][0].clone();
    assert_eq!(t["platformVersion"], "1.3.0");
    assert_eq!(e.plan(0).storage, StoragePlan::Unencrypted);
    // LATEST resolves to 1.4.0.
    let mut body = run_body();
    body["platformVersion"] = "LATEST".into();
    assert_eq!(
        e.ok("RunTask", body)["tasks"][0]["platformVersion"],
        "1.4.0"
    );
}

#[test]
fn essential_exit_and_failure_to_start() {
    let e = env();
    e.ok("RegisterTaskDefinition", source_doc());
    let a = e.run_one();
    let b = e.run_one();
    let sa = e.sink(0);
    sa(TaskEvent::Provisioned {
        private_ip: "198.18.0.2".into(),
    });
    sa(TaskEvent::Running);
    sa(TaskEvent::ContainerExited {
        name: "sample-fargate-app".into(),
        exit_code: 3,
        reason: None,
    });
    let d = e.describe(&a);
    assert_eq!(d["stopCode"], "EssentialContainerExited");
    assert_eq!(d["desiredStatus"], "STOPPED");
    let sb = e.sink(1);
    sb(TaskEvent::Stopped {
        stop_code: "TaskFailedToStart".into(),
        stopped_reason: "CannotPullContainerError: image httpd:2.4 not found".into(),
    });
    let d = e.describe(&b);
    assert_eq!(d["lastStatus"], "STOPPED");
    assert_eq!(d["stopCode"], "TaskFailedToStart");
    assert!(d["stoppedReason"].as_str().unwrap().contains("httpd:2.4"));
    assert!(d.get("startedAt").is_none());
}

#[test]
fn tags_on_every_resource() {
    let e = env();
    let td = e.ok("RegisterTaskDefinition", {
        let mut d = source_doc();
        d["tags"] = json!([{"key": "k", "value": "v"}]);
        d
    });
    let td_arn = td["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(td["taskDefinition"].get("tags").is_none());
    assert_eq!(td["tags"][0]["key"], "k");
    let mut body = run_body();
    body["propagateTags"] = "TASK_DEFINITION".into();
    body["tags"] = json!([{"key": "t", "value": "1"}]);
    let task_arn = e.ok("RunTask", body)["tasks"][0]["taskArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let cl = "arn:aws:ecs:us-east-1:000000000000:cluster/default";
    for arn in [cl, td_arn.as_str(), task_arn.as_str()] {
        e.ok(
            "TagResource",
            json!({"resourceArn": arn, "tags": [{"key": "env", "value": "test"}]}),
        );
        let l = e.ok("ListTagsForResource", json!({"resourceArn": arn}));
        assert!(
            l["tags"]
                .as_array()
                .unwrap()
                .contains(&json!({"key": "env", "value": "test"})),
            "{arn}: {l}"
        );
        e.ok(
            "UntagResource",
            json!({"resourceArn": arn, "tagKeys": ["env"]}),
        );
        let l = e.ok("ListTagsForResource", json!({"resourceArn": arn}));
        assert!(
            !l["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "env")
        );
    }
    let l = e.ok("ListTagsForResource", json!({"resourceArn": task_arn}));
    assert_eq!(
        l["tags"],
        json!([{"key": "k", "value": "v"}, {"key": "t", "value": "1"}])
    );
    let d = e.ok(
        "DescribeTasks",
        json!({"tasks": [task_arn], "include": ["TAGS"]}),
    );
    assert_eq!(d["tasks"][0]["tags"].as_array().unwrap().len(), 2);
    assert_eq!(
        e.err(
            "TagResource",
            json!({"resourceArn": cl, "tags": [{"key": "aws:x", "value": ""}]})
        )
        .code,
        "InvalidParameterException"
    );
    assert_eq!(
        e.err(
            "ListTagsForResource",
            json!({"resourceArn": "arn:aws:ecs:us-east-1:000000000000:cluster/ghost"})
        )
        .code,
        "ClusterNotFoundException"
    );
    assert_eq!(
        e.err(
            "TagResource",
            json!({"resourceArn": "nonsense", "tags": []})
        )
        .code,
        "InvalidParameterException"
    );
}

#[test]
fn restart_keeps_everything_and_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let (running, adopted_arn);
    {
        let e = env_with(dir, FakeRuntime::default());
        e.ok("CreateCluster", json!({"clusterName": "keep"}));
        e.ok("RegisterTaskDefinition", source_doc());
        running = e.run_one();
        adopted_arn = e.run_one();
        let s = e.sink(0);
        s(TaskEvent::Provisioned {
            private_ip: "198.18.0.9".into(),
        });
        s(TaskEvent::Running);
        drop(e.svc);
        // Keep the directory alive for the second server.
        std::mem::forget(e._dir);
    }
    // Second server: runtime lost every task.
    {
        let store = Arc::new(Store::open(&path.join("state.redb")).unwrap());
        let rt = Arc::new(FakeRuntime::default());
        let svc = EcsService::new(
            EcsConfig::new("us-east-1", "000000000000"),
            store,
            rt,
            Arc::new(FakeKeys),
            Arc::new(FakeNetworks::default()),
        )
        .unwrap();
        assert_eq!(svc.reconciled().lost, 2);
        let d = svc
            .call(
                &ctx(),
                "DescribeTasks",
                &serde_json::to_vec(&json!({"tasks": [running, adopted_arn]})).unwrap(),
            )
            .unwrap();
        assert_eq!(d["tasks"][0]["lastStatus"], "STOPPED");
        assert_eq!(d["tasks"][0]["stopCode"], "EssentialContainerExited");
        assert_eq!(
            d["tasks"][0]["stoppedReason"],
            "the task's supervisor is gone"
        );
        assert_eq!(d["tasks"][1]["stopCode"], "TaskFailedToStart");
        let c = svc.call(&ctx(), "ListClusters", b"{}").unwrap();
        assert_eq!(c["clusterArns"].as_array().unwrap().len(), 2);
        let t = svc
            .call(
                &ctx(),
                "DescribeTaskDefinition",
                br#"{"taskDefinition":"fargate-task-definition"}"#,
            )
            .unwrap();
        assert_eq!(t["taskDefinition"]["revision"], 1);
        // Default is not re-created after it was deleted.
        svc.call(&ctx(), "DeleteCluster", br#"{"cluster":"default"}"#)
            .unwrap();
    }
    let e = env_with(
        tempfile::TempDir::new_in(&path).unwrap(),
        FakeRuntime {
            adopt: true,
            ..Default::default()
        },
    );
    // A fresh dir: default exists; and adoption path.
    e.ok("RegisterTaskDefinition", source_doc());
    let arn = e.run_one();
    let store = e.store.clone();
    drop(e.svc);
    let rt = Arc::new(FakeRuntime {
        adopt: true,
        ..Default::default()
    });
    let mut cfg = EcsConfig::new("us-east-1", "000000000000");
    // Service tests run scheduler passes themselves.
    cfg.scheduler_interval = None;
    cfg.timings.assign_every = None;
    let svc = EcsService::new(
        cfg,
        store,
        rt.clone(),
        Arc::new(FakeKeys),
        Arc::new(FakeNetworks::default()),
    )
    .unwrap();
    assert_eq!(svc.reconciled().adopted, 1);
    let sink = rt.started.lock().unwrap()[0].1.clone();
    sink(TaskEvent::Provisioned {
        private_ip: "198.18.0.3".into(),
    });
    sink(TaskEvent::Running);
    let d = svc
        .call(
            &ctx(),
            "DescribeTasks",
            &serde_json::to_vec(&json!({"tasks": [arn]})).unwrap(),
        )
        .unwrap();
    assert_eq!(d["tasks"][0]["lastStatus"], "RUNNING");
    let _ = std::fs::remove_dir_all(&path);
}

#[test]
fn stopped_tasks_expire_after_the_retention_only() {
    let e = env();
    e.ok("RegisterTaskDefinition", source_doc());
    let arn = e.run_one();
    e.sink(0)(TaskEvent::Stopped {
        stop_code: "TaskFailedToStart".into(),
        stopped_reason: "x".into(),
    });
    let now = crate::clock::now();
    assert_eq!(
        crate::tasks::sweep_stopped(e.svc.core(), now + 3000.0).unwrap(),
        0
    );
    assert_eq!(e.describe(&arn)["lastStatus"], "STOPPED");
    assert_eq!(
        crate::tasks::sweep_stopped(e.svc.core(), now + 3700.0).unwrap(),
        1
    );
    let d = e.ok("DescribeTasks", json!({"tasks": [arn]}));
    assert_eq!(d["failures"][0]["reason"], "MISSING");
}

#[test]
fn unknown_operation_and_garbage_bodies() {
    let e = env();
    let err = e.svc.call(&ctx(), "CreateService2", b"{}").unwrap_err();
    assert_eq!(err.code, "UnknownOperationException");
    for body in [&b"not json"[..], b"[1,2]", b"{\"cluster\": 5}", b"\xff\xfe"] {
        let err = e.svc.call(&ctx(), "ListTasks", body).unwrap_err();
        assert_eq!(err.code, "SerializationException");
    }
    // An empty body is an empty request.
    assert!(e.svc.call(&ctx(), "ListClusters", b"").is_ok());
}

// -- services ------------------------------------------------------------

fn svc_body(name: &str, count: u32) -> Value {
    json!({
        "serviceName": name, "taskDefinition": "fargate-task-definition",
        "desiredCount": count, "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}
    })
}

impl Env {
    fn pass(&self) {
        crate::scheduler::pass(self.svc.core()).unwrap();
    }
    fn started(&self) -> usize {
        self.rt.started.lock().unwrap().len()
    }
    fn run_to_running(&self, i: usize) {
        let s = self.sink(i);
        s(TaskEvent::Provisioned {
            private_ip: "198.18.0.9".into(),
        });
        s(TaskEvent::ContainerRunning {
            name: "sample-fargate-app".into(),
        });
        s(TaskEvent::Running);
    }
    fn stopped(&self, i: usize, code: &str, reason: &str) {
        (self.sink(i))(TaskEvent::Stopped {
            stop_code: code.into(),
            stopped_reason: reason.into(),
        });
    }
    fn service(&self, name: &str) -> Value {
        self.ok("DescribeServices", json!({"services": [name]}))["services"][0].clone()
    }
}

fn register(e: &Env) {
    e.ok("RegisterTaskDefinition", source_doc());
}

#[test]
fn a_service_of_more_than_ten_tasks_starts_them_ten_per_pass() {
    let e = env();
    register(&e);
    e.ok("CreateService", svc_body("big", 23));
    e.pass();
    assert_eq!(e.started(), 10);
    e.pass();
    assert_eq!(e.started(), 20);
    e.pass();
    assert_eq!(e.started(), 23);
    e.pass();
    assert_eq!(e.started(), 23);
    let s = e.service("big");
    assert_eq!(s["pendingCount"], 23);
    assert!(
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| !v["message"].as_str().unwrap().contains("failed to start"))
    );
}

#[test]
fn service_keeps_desired_count_and_rolls_within_min_healthy() {
    let e = env();
    register(&e);
    let s = e.ok("CreateService", svc_body("web", 3))["service"].clone();
    assert_eq!(s["deploymentConfiguration"]["maximumPercent"], 200);
    assert_eq!(s["deployments"][0]["rolloutState"], "IN_PROGRESS");
    e.pass();
    assert_eq!(e.started(), 3);
    let dep1 = e.service("web")["deployments"][0]["id"].clone();
    for i in 0..3 {
        let p = e.plan(i);
        let t = e.describe(&p.task_arn);
        assert_eq!(t["group"], "service:web");
        assert_eq!(t["startedBy"], dep1);
        e.run_to_running(i);
    }
    e.pass();
    let s = e.service("web");
    assert_eq!(s["runningCount"], 3);
    assert_eq!(s["deployments"][0]["rolloutState"], "COMPLETED");
    assert_eq!(
        s["events"][0]["message"],
        "(service web) has reached a steady state."
    );
    assert!(
        s["events"][1]["message"]
            .as_str()
            .unwrap()
            .starts_with("(service web) has started 3 tasks: (task ")
    );

    // Force a new deployment: 3 new tasks start (max 200%), no old one
    // stops until the new ones run (min 100%).
    let u = e.ok(
        "UpdateService",
        json!({"service": "web", "forceNewDeployment": true}),
    )["service"]
        .clone();
    assert_eq!(u["deployments"][0]["status"], "PRIMARY");
    assert_eq!(u["deployments"][1]["status"], "ACTIVE");
    e.pass();
    assert_eq!(e.started(), 6);
    assert!(e.rt.stopped.lock().unwrap().is_empty());
    e.run_to_running(3);
    e.pass();
    // One new task runs: one old one may go.
    assert_eq!(e.rt.stopped.lock().unwrap().len(), 1);
    e.run_to_running(4);
    e.run_to_running(5);
    e.pass();
    let stopped = e.rt.stopped.lock().unwrap().clone();
    assert_eq!(stopped.len(), 3);
    for arn in &stopped {
        let t = e.describe(arn);
        assert_eq!(t["stopCode"], "ServiceSchedulerInitiated");
    }
    for i in 0..3 {
        e.stopped(i, "ServiceSchedulerInitiated", "stopped");
    }
    e.pass();
    let s = e.service("web");
    assert_eq!(s["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(s["deployments"][0]["rolloutState"], "COMPLETED");
    assert_eq!(s["runningCount"], 3);

    // A task that stops is replaced.
    e.stopped(3, "EssentialContainerExited", "exited");
    e.pass();
    assert_eq!(e.started(), 7);
}

#[test]
fn failing_tasks_back_off_and_report_the_reason() {
    let e = env();
    register(&e);
    e.ok("CreateService", svc_body("bad", 1));
    e.pass();
    assert_eq!(e.started(), 1);
    e.stopped(0, "TaskFailedToStart", "KMS key arn:k is disabled.");
    e.pass();
    let s = e.service("bad");
    assert!(
        s["events"][0]["message"]
            .as_str()
            .unwrap()
            .contains("failed to start a task: (task ")
    );
    assert!(
        s["events"][0]["message"]
            .as_str()
            .unwrap()
            .contains("arn:k is disabled")
    );
    assert_eq!(s["deployments"][0]["failedTasks"], 1);
    // Backing off: no new task at once.
    e.pass();
    assert_eq!(e.started(), 1);
}

#[test]
fn delete_service_needs_zero_or_force_and_drains() {
    let e = env();
    register(&e);
    e.ok("CreateService", svc_body("d", 1));
    e.pass();
    e.run_to_running(0);
    let err = e.err("DeleteService", json!({"service": "d"}));
    assert_eq!(err.code, "InvalidParameterException");
    let dup = e.err("CreateService", svc_body("d", 1));
    assert_eq!(dup.code, "InvalidParameterException");
    assert_eq!(
        e.ok("DescribeClusters", json!({}))["clusters"][0]["activeServicesCount"],
        1
    );
    let busy = e.err("DeleteCluster", json!({"cluster": "default"}));
    assert_eq!(busy.code, "ClusterContainsServicesException");
    let s = e.ok("DeleteService", json!({"service": "d", "force": true}))["service"].clone();
    assert_eq!(s["status"], "DRAINING");
    e.pass();
    assert_eq!(e.rt.stopped.lock().unwrap().len(), 1);
    e.stopped(0, "ServiceSchedulerInitiated", "x");
    e.pass();
    assert_eq!(e.service("d")["status"], "INACTIVE");
    assert_eq!(e.ok("ListServices", json!({}))["serviceArns"], json!([]));
    let nf = e.err("UpdateService", json!({"service": "nope"}));
    assert_eq!(nf.code, "ServiceNotFoundException");
}

#[test]
fn service_platform_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
    let mut cfg = EcsConfig::new("us-east-1", "000000000000");
    cfg.scheduler_interval = None;
    cfg.allow_unencrypted_storage = false;
    let svc = EcsService::new(
        cfg,
        store,
        Arc::new(FakeRuntime::default()),
        Arc::new(FakeKeys),
        Arc::new(FakeNetworks::default()),
    )
    .unwrap();
    let call = |op: &str, b: Value| svc.call(&ctx(), op, &serde_json::to_vec(&b).unwrap());
    call("RegisterTaskDefinition", source_doc()).unwrap();
    let mut b = svc_body("old", 1);
    b["platformVersion"] = json!("1.3.0");
    let err = call("CreateService", b).unwrap_err();
    assert_eq!(err.code, "ClientException");
    assert!(err.message.contains("unencrypted"));
    let mut b = svc_body("x", 1);
    b["platformVersion"] = json!("9.9.9");
    assert_eq!(
        call("CreateService", b).unwrap_err().code,
        "PlatformUnknownException"
    );
}

#[test]
fn container_sizes_come_from_the_task_definition_also_for_old_records() {
    let e = env();
    let mut doc = source_doc();
    doc["containerDefinitions"][0]["cpu"] = 128.into();
    doc["containerDefinitions"][0]["memory"] = 256.into();
    doc["containerDefinitions"][0]["memoryReservation"] = 128.into();
    e.ok("RegisterTaskDefinition", doc);
    let sizes = |t: &Value| {
        let c = &t["containers"][0];
        (
            c["cpu"].clone(),
            c["memory"].clone(),
            c["memoryReservation"].clone(),
        )
    };
    let want = (json!("128"), json!("256"), json!("128"));
    let t = e.ok("RunTask", run_body())["tasks"][0].clone();
    assert_eq!(sizes(&t), want);

    // A record as servers before ContainerDef stored it: the spec's
    // containers without sizes, and no upgrade marker.
    let key = crate::db::taskdef_key("fargate-task-definition", 1);
    let mut raw: Value = e.store.get(crate::db::TASKDEFS, &key).unwrap().unwrap();
    for c in raw["spec"]["containers"].as_array_mut().unwrap() {
        let c = c.as_object_mut().unwrap();
        for k in ["cpu", "memory", "memory_reservation"] {
            assert!(c.remove(k).is_some(), "{k} not stored");
        }
    }
    e.store.put(crate::db::TASKDEFS, &key, &raw).unwrap();
    e.store
        .delete(crate::db::META, crate::db::CONTAINER_SIZES)
        .unwrap();
    let old: crate::model::task_definition::TaskDefRecord =
        e.store.get(crate::db::TASKDEFS, &key).unwrap().unwrap();
    assert_eq!(old.spec.containers[0].cpu, 0);

    let mut cfg = EcsConfig::new("us-east-1", "000000000000");
    cfg.scheduler_interval = None;
    let svc = EcsService::new(
        cfg,
        e.store.clone(),
        Arc::new(FakeRuntime::default()),
        Arc::new(FakeKeys),
        Arc::new(FakeNetworks::default()),
    )
    .unwrap();
    let r = svc
        .call(&ctx(), "RunTask", &serde_json::to_vec(&run_body()).unwrap())
        .unwrap();
    assert_eq!(sizes(&r["tasks"][0]), want);
    let upgraded: crate::model::task_definition::TaskDefRecord =
        e.store.get(crate::db::TASKDEFS, &key).unwrap().unwrap();
    let c = &upgraded.spec.containers[0];
    assert_eq!(
        (c.cpu, c.memory, c.memory_reservation),
        (128, Some(256), Some(128))
    );
}

#[test]
fn service_launches_fail_with_runtask_errors_and_back_off() {
    let e = env();
    register(&e);
    e.ok("CreateService", svc_body("web", 1));
    e.ok(
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "fargate-task-definition:1"}),
    );
    e.pass();
    assert_eq!(e.started(), 0);
    let s = e.service("web");
    assert_eq!(
        s["events"][0]["message"],
        "(service web) was unable to start tasks: TaskDefinition is inactive: arn:aws:ecs:us-east-1:000000000000:task-definition/fargate-task-definition:1 was deregistered."
    );
    assert_eq!(s["deployments"][0]["failedTasks"], 1);
    // Backing off: the next pass does not try again at once.
    e.pass();
    assert_eq!(e.service("web")["deployments"][0]["failedTasks"], 1);
}

#[test]
fn service_tasks_use_the_pinned_key_and_propagated_tags() {
    let e = env();
    e.ok("RegisterTaskDefinition", {
        let mut d = source_doc();
        d["tags"] = json!([{"key": "td", "value": "1"}, {"key": "both", "value": "td"}]);
        d
    });
    let mut b = svc_body("prop", 1);
    b["tags"] = json!([{"key": "svc", "value": "1"}, {"key": "both", "value": "svc"}]);
    b["propagateTags"] = "TASK_DEFINITION".into();
    e.ok("CreateService", b);
    let mut b = svc_body("own", 1);
    b["tags"] = json!([{"key": "svc", "value": "1"}]);
    b["propagateTags"] = "SERVICE".into();
    e.ok("CreateService", b);
    // The deployments pinned "no CMK"; a key the cluster gets later is for
    // RunTask and new deployments only.
    e.ok(
        "UpdateCluster",
        json!({"cluster": "default", "configuration": {"managedStorageConfiguration": {"fargateEphemeralStorageKmsKeyId": CMK}}}),
    );
    e.pass();
    assert_eq!(e.started(), 2);
    let mut tags = Vec::new();
    for i in 0..2 {
        let p = e.plan(i);
        assert_eq!(
            p.storage,
            StoragePlan::Encrypted {
                kms_key_arn: PLATFORM_KEY.into()
            }
        );
        let d = e.ok(
            "DescribeTasks",
            json!({"tasks": [p.task_arn], "include": ["TAGS"]}),
        );
        tags.push((
            d["tasks"][0]["group"].clone(),
            d["tasks"][0]["tags"].clone(),
        ));
    }
    tags.sort_by_key(|(g, _)| g.to_string());
    assert_eq!(
        tags,
        vec![
            (json!("service:own"), json!([{"key": "svc", "value": "1"}])),
            (
                json!("service:prop"),
                json!([{"key": "td", "value": "1"}, {"key": "both", "value": "svc"},
                    {"key": "svc", "value": "1"}])
            ),
        ]
    );
    let t = e.ok("RunTask", run_body())["tasks"][0].clone();
    assert_eq!(t["fargateEphemeralStorage"]["kmsKeyId"], CMK);
}

#[test]
fn protected_tasks_survive_scale_in_until_protection_is_lifted() {
    let e = env();
    register(&e);
    e.ok("CreateService", svc_body("guarded", 3));
    e.pass();
    for i in 0..3 {
        e.run_to_running(i);
    }
    let keep = e.plan(0).task_arn;
    let r = e.ok(
        "UpdateTaskProtection",
        json!({"cluster": "default", "tasks": [keep], "protectionEnabled": true, "expiresInMinutes": 60}),
    );
    assert_eq!(r["failures"], json!([]));
    let p = &r["protectedTasks"][0];
    assert_eq!(p["taskArn"], keep.as_str());
    assert_eq!(p["protectionEnabled"], true);
    let exp = p["expirationDate"].as_f64().unwrap();
    let now = crate::clock::now();
    assert!((exp - now - 3600.0).abs() < 5.0, "{exp} vs {now}");

    // Scale in to 0: the two unprotected tasks go, the protected one stays.
    e.ok(
        "UpdateService",
        json!({"service": "guarded", "desiredCount": 0}),
    );
    e.pass();
    let stopped = e.rt.stopped.lock().unwrap().clone();
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    assert!(!stopped.contains(&keep));
    e.pass();
    assert_eq!(e.rt.stopped.lock().unwrap().len(), 2);
    let g = e.ok(
        "GetTaskProtection",
        json!({"cluster": "default", "tasks": [keep]}),
    );
    assert_eq!(g["protectedTasks"][0]["protectionEnabled"], true);

    // Lifting the protection lets the service finish scaling in.
    let r = e.ok(
        "UpdateTaskProtection",
        json!({"cluster": "default", "tasks": [keep], "protectionEnabled": false}),
    );
    assert_eq!(r["protectedTasks"][0]["protectionEnabled"], false);
    assert!(r["protectedTasks"][0].get("expirationDate").is_none());
    e.pass();
    assert!(e.rt.stopped.lock().unwrap().contains(&keep));
}

#[test]
fn task_protection_is_for_service_tasks_with_ecs_limits() {
    let e = env();
    register(&e);
    let standalone = e.run_one();
    let r = e.ok(
        "UpdateTaskProtection",
        json!({"cluster": "default", "tasks": [standalone, "0123456789abcdef0123456789abcdef"],
               "protectionEnabled": true}),
    );
    assert_eq!(r["protectedTasks"], json!([]));
    assert_eq!(r["failures"][0]["reason"], "TASK_NOT_VALID");
    assert_eq!(r["failures"][0]["arn"], standalone.as_str());
    assert_eq!(r["failures"][1]["reason"], "TASK_NOT_FOUND");
    for minutes in [0, 2881] {
        let err = e.err(
            "UpdateTaskProtection",
            json!({"cluster": "default", "tasks": [standalone], "protectionEnabled": true,
                   "expiresInMinutes": minutes}),
        );
        assert_eq!(err.code, "InvalidParameterException");
    }
    let err = e.err(
        "UpdateTaskProtection",
        json!({"cluster": "default", "tasks": [], "protectionEnabled": true}),
    );
    assert_eq!(err.code, "InvalidParameterException");
    let err = e.err(
        "GetTaskProtection",
        json!({"cluster": "nope", "tasks": [standalone]}),
    );
    assert_eq!(err.code, "ClusterNotFoundException");
}

// -- health checks -------------------------------------------------------

/// The source document with a health check on the essential app and a
/// non-essential sidecar that waits for it.
fn health_doc() -> Value {
    let mut d = source_doc();
    d["containerDefinitions"][0]["healthCheck"] =
        json!({"command": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 5, "retries": 2});
    d["containerDefinitions"].as_array_mut().unwrap().push(
        json!({"name": "sidecar", "image": "busybox", "essential": false,
            "dependsOn": [{"containerName": "sample-fargate-app", "condition": "HEALTHY"}]}),
    );
    d
}

fn health(e: &Env, i: usize, status: ferry_proto::plan::HealthStatus) {
    (e.sink(i))(TaskEvent::ContainerHealth {
        name: "sample-fargate-app".into(),
        status,
    });
}

#[test]
fn health_check_is_echoed_with_defaults_planned_and_rendered() {
    use ferry_proto::plan::{HealthCommand, HealthStatus};
    let e = env();
    let td = e.ok("RegisterTaskDefinition", health_doc())["taskDefinition"].clone();
    assert_eq!(
        td["containerDefinitions"][0]["healthCheck"],
        json!({"command": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 5, "timeout": 5, "retries": 2})
    );
    assert!(
        td["requiresAttributes"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "ecs.capability.container-health-check"}))
    );
    // Without the health check the HEALTHY dependency is refused.
    let mut bad = health_doc();
    bad["containerDefinitions"][0]
        .as_object_mut()
        .unwrap()
        .remove("healthCheck");
    assert_eq!(e.err("RegisterTaskDefinition", bad).code, "ClientException");

    let arn = e.run_one();
    let plan = e.plan(0);
    let hc = plan.containers[0].health_check.clone().unwrap();
    assert_eq!(hc.command, HealthCommand::Shell("test -f /tmp/ok".into()));
    assert_eq!((hc.interval_secs, hc.timeout_secs, hc.retries), (5, 5, 2));
    assert!(plan.containers[1].health_check.is_none());

    e.run_to_running(0);
    let t = e.describe(&arn);
    assert_eq!(t["healthStatus"], "UNKNOWN");
    assert_eq!(t["containers"][0]["healthStatus"], "UNKNOWN");
    assert_eq!(t["containers"][1]["healthStatus"], "UNKNOWN");
    health(&e, 0, HealthStatus::Healthy);
    let t = e.describe(&arn);
    assert_eq!(t["healthStatus"], "HEALTHY");
    assert_eq!(t["containers"][0]["healthStatus"], "HEALTHY");
    // The unchecked sidecar stays UNKNOWN and does not count.
    assert_eq!(t["containers"][1]["healthStatus"], "UNKNOWN");
    health(&e, 0, HealthStatus::Unhealthy);
    let t = e.describe(&arn);
    assert_eq!(t["healthStatus"], "UNHEALTHY");
    assert_eq!(t["containers"][0]["healthStatus"], "UNHEALTHY");
    // A standalone task keeps running when unhealthy, as in ECS.
    assert_eq!(t["desiredStatus"], "RUNNING");

    // Without any health check the task is UNKNOWN.
    e.ok("RegisterTaskDefinition", source_doc());
    let arn = e.run_one();
    e.run_to_running(1);
    assert_eq!(e.describe(&arn)["healthStatus"], "UNKNOWN");
}

#[test]
fn service_counts_healthy_tasks_and_replaces_unhealthy_ones() {
    use ferry_proto::plan::HealthStatus;
    let e = env();
    e.ok("RegisterTaskDefinition", health_doc());
    e.ok("CreateService", svc_body("hc", 1));
    e.pass();
    assert_eq!(e.started(), 1);
    e.run_to_running(0);
    e.pass();
    // RUNNING but not yet HEALTHY: no steady state.
    let s = e.service("hc");
    assert_eq!(s["deployments"][0]["rolloutState"], "IN_PROGRESS");
    assert!(
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| !v["message"].as_str().unwrap().contains("steady state"))
    );
    health(&e, 0, HealthStatus::Healthy);
    e.pass();
    let s = e.service("hc");
    assert_eq!(s["deployments"][0]["rolloutState"], "COMPLETED");
    assert_eq!(
        s["events"][0]["message"],
        "(service hc) has reached a steady state."
    );

    health(&e, 0, HealthStatus::Unhealthy);
    e.pass();
    let p = e.plan(0);
    let t = e.describe(&p.task_arn);
    assert_eq!(t["desiredStatus"], "STOPPED");
    assert_eq!(t["stopCode"], "ServiceSchedulerInitiated");
    assert_eq!(t["stoppedReason"], "Task failed container health checks");
    assert_eq!(*e.rt.stopped.lock().unwrap(), vec![p.task_arn.clone()]);
    let s = e.service("hc");
    let msgs: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["message"].as_str().unwrap())
        .collect();
    assert!(
        msgs.contains(
            &format!(
                "(service hc) (task {}) failed container health checks.",
                p.task_id
            )
            .as_str()
        ),
        "{msgs:?}"
    );
    // Replaced in the same pass (maximumPercent 200 leaves room).
    assert_eq!(e.started(), 2);
    e.stopped(0, "ServiceSchedulerInitiated", "x");
    e.run_to_running(1);
    health(&e, 1, HealthStatus::Healthy);
    e.pass();
    assert_eq!(e.started(), 2);
    assert_eq!(e.service("hc")["runningCount"], 1);
}

#[test]
fn a_host_without_room_refuses_run_task_in_failures_and_records_nothing() {
    let e = env();
    register(&e);
    *e.rt.refuse.lock().unwrap() = Some("needs 20 GiB, 1 GiB free".into());
    let mut body = run_body();
    body["count"] = 2.into();
    let r = e.ok("RunTask", body);
    assert_eq!(r["tasks"].as_array().unwrap().len(), 0);
    let f = r["failures"].as_array().unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0]["reason"], crate::tasks::NO_STORAGE);
    assert_eq!(f[0]["detail"], "needs 20 GiB, 1 GiB free");
    assert!(f[0]["arn"].as_str().unwrap().contains(":cluster/default"));
    assert_eq!(e.started(), 0);
    let l = e.ok("ListTasks", json!({}));
    assert_eq!(l["taskArns"].as_array().unwrap().len(), 0);
    // Room again: the next call starts it.
    *e.rt.refuse.lock().unwrap() = None;
    let r = e.ok("RunTask", run_body());
    assert_eq!(r["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(r["failures"].as_array().unwrap().len(), 0);
}

#[test]
fn a_service_on_a_host_without_room_records_an_event_and_waits() {
    let e = env();
    register(&e);
    *e.rt.refuse.lock().unwrap() = Some("needs 20 GiB, 1 GiB free".into());
    e.ok("CreateService", svc_body("full", 1));
    e.pass();
    e.pass();
    assert_eq!(e.started(), 0);
    let s = e.service("full");
    let events: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["message"].as_str().unwrap())
        .collect();
    // One attempt: the second pass is within the wait.
    let placed: Vec<&&str> = events
        .iter()
        .filter(|m| m.contains("was unable to place a task. Reason: needs 20 GiB, 1 GiB free"))
        .collect();
    assert_eq!(placed.len(), 1, "{events:?}");
    // Not a failed deployment.
    assert_eq!(s["deployments"][0]["failedTasks"], 0);
}
