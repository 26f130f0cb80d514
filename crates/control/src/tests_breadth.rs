//! Service-level tests of capacity providers, spot interruption, task
//! definition deletion, account settings and refused members.

use ferry_proto::plan::TaskEvent;
use ferry_proto::{Caller, JsonService, Principal, RequestContext};
use serde_json::{Value, json};

use crate::admin::{self, FerryAdmin, InterruptSpotTasksRequest};
use crate::tests::{Env, ctx, env, run_body, source_doc};

fn both_cluster(e: &Env, name: &str, strategy: Value) -> Value {
    e.ok(
        "CreateCluster",
        json!({"clusterName": name, "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
               "defaultCapacityProviderStrategy": strategy}),
    )["cluster"]
        .clone()
}

fn providers(e: &Env, resp: &Value) -> (usize, usize) {
    let arns: Vec<String> = resp["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_owned())
        .collect();
    let mut n = (0, 0);
    for a in &arns {
        let cluster = a.split('/').nth(1).unwrap();
        let t = &e.ok("DescribeTasks", json!({"cluster": cluster, "tasks": [a]}))["tasks"][0];
        assert_eq!(t["launchType"], "FARGATE");
        match t["capacityProviderName"].as_str() {
            Some("FARGATE") => n.0 += 1,
            Some("FARGATE_SPOT") => n.1 += 1,
            other => panic!("capacityProviderName {other:?}"),
        }
    }
    n
}

#[test]
fn create_cluster_keeps_every_field_and_describe_shows_them() {
    let e = env();
    let c = e.ok(
        "CreateCluster",
        json!({"clusterName": "all", "tags": [{"key": "k", "value": "v"}],
               "settings": [{"name": "containerInsights", "value": "enhanced"}],
               "configuration": {"executeCommandConfiguration": {"logging": "DEFAULT"}},
               "capacityProviders": ["FARGATE_SPOT", "FARGATE"],
               "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "base": 1, "weight": 1},
                                                   {"capacityProvider": "FARGATE_SPOT", "weight": 4}],
               "serviceConnectDefaults": {"namespace": "svc.local"}}),
    )["cluster"]
        .clone();
    let d = e.ok(
        "DescribeClusters",
        json!({"clusters": ["all"], "include": ["TAGS", "SETTINGS", "CONFIGURATIONS"]}),
    )["clusters"][0]
        .clone();
    for got in [&c, &d] {
        assert_eq!(got["capacityProviders"], json!(["FARGATE_SPOT", "FARGATE"]));
        assert_eq!(
            got["defaultCapacityProviderStrategy"],
            json!([{"capacityProvider": "FARGATE", "base": 1, "weight": 1},
                   {"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 4}])
        );
        assert_eq!(
            got["serviceConnectDefaults"],
            json!({"namespace": "svc.local"})
        );
        assert_eq!(got["settings"][0]["value"], "enhanced");
        assert_eq!(got["tags"][0]["key"], "k");
        assert_eq!(
            got["configuration"]["executeCommandConfiguration"]["logging"],
            "DEFAULT"
        );
    }
    // Strategy rules at creation.
    for (body, needle) in [
        (
            json!({"clusterName": "x", "capacityProviders": ["EC2ASG"]}),
            "does not exist",
        ),
        (
            json!({"clusterName": "x", "capacityProviders": ["FARGATE"],
                "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}),
            "not associated with the cluster",
        ),
        (
            json!({"clusterName": "x", "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
                "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1, "base": 1},
                                                    {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 2}]}),
            "more than one",
        ),
    ] {
        let err = e.err("CreateCluster", body);
        assert_eq!(err.code, "InvalidParameterException");
        assert!(err.message.contains(needle), "{}", err.message);
    }
}

#[test]
fn capacity_providers_are_described_and_put_on_clusters() {
    let e = env();
    let d = e.ok("DescribeCapacityProviders", json!({}));
    let names: Vec<&str> = d["capacityProviders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["FARGATE", "FARGATE_SPOT"]);
    assert_eq!(
        d["capacityProviders"][1]["capacityProviderArn"],
        "arn:aws:ecs:us-east-1:000000000000:capacity-provider/FARGATE_SPOT"
    );
    assert_eq!(d["capacityProviders"][0]["status"], "ACTIVE");
    let d = e.ok(
        "DescribeCapacityProviders",
        json!({"capacityProviders": ["FARGATE_SPOT", "nope"], "include": ["TAGS"]}),
    );
    assert_eq!(d["capacityProviders"].as_array().unwrap().len(), 1);
    assert_eq!(d["capacityProviders"][0]["tags"], json!([]));
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    let paged = e.ok("DescribeCapacityProviders", json!({"maxResults": 1}));
    assert_eq!(paged["capacityProviders"][0]["name"], "FARGATE");
    let next = e.ok(
        "DescribeCapacityProviders",
        json!({"maxResults": 1, "nextToken": paged["nextToken"]}),
    );
    assert_eq!(next["capacityProviders"][0]["name"], "FARGATE_SPOT");
    assert!(next.get("nextToken").is_none());

    let c = e.ok(
        "PutClusterCapacityProviders",
        json!({"cluster": "default", "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
               "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}),
    );
    assert_eq!(
        c["cluster"]["capacityProviders"],
        json!(["FARGATE", "FARGATE_SPOT"])
    );
    // A provider with live tasks cannot be removed.
    e.ok("RegisterTaskDefinition", source_doc());
    let mut b = run_body();
    b.as_object_mut().unwrap().remove("launchType");
    let r = e.ok("RunTask", b);
    assert_eq!(providers(&e, &r), (0, 1));
    let err = e.err(
        "PutClusterCapacityProviders",
        json!({"cluster": "default", "capacityProviders": ["FARGATE"],
               "defaultCapacityProviderStrategy": []}),
    );
    assert_eq!(err.code, "ResourceInUseException");
    // Fargate-only accounts cannot create providers.
    let err = e.err(
        "CreateCapacityProvider",
        json!({"name": "asg", "autoScalingGroupProvider": {"autoScalingGroupArn": "arn:x"}}),
    );
    assert_eq!(err.code, "ClientException");
    assert!(err.message.contains("Fargate only"), "{}", err.message);
}

#[test]
fn run_task_places_by_base_then_weight() {
    let e = env();
    e.ok("RegisterTaskDefinition", source_doc());
    both_cluster(&e, "c", json!([]));
    let mut b = run_body();
    b["cluster"] = "c".into();
    b.as_object_mut().unwrap().remove("launchType");
    b["count"] = 10.into();
    b["capacityProviderStrategy"] = json!([
        {"capacityProvider": "FARGATE", "base": 2, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 3}]);
    assert_eq!(providers(&e, &e.ok("RunTask", b.clone())), (4, 6));
    // Not both a launch type and a strategy.
    let mut both = b.clone();
    both["launchType"] = "FARGATE".into();
    let err = e.err("RunTask", both);
    assert_eq!(err.code, "InvalidParameterException");
    assert!(
        err.message
            .starts_with("Specifying both a launch type and capacity provider strategy")
    );
    // A provider the cluster does not have.
    let mut other = run_body();
    other.as_object_mut().unwrap().remove("launchType");
    other["capacityProviderStrategy"] = json!([{"capacityProvider": "FARGATE_SPOT", "weight": 1}]);
    let err = e.err("RunTask", other);
    assert!(
        err.message.contains("not associated with the cluster"),
        "{}",
        err.message
    );
    // A launch type: no provider named.
    let r = e.ok("RunTask", run_body());
    assert!(r["tasks"][0].get("capacityProviderName").is_none());
}

fn admin_call(e: &Env, caller: Caller, body: Value) -> Result<Value, ferry_proto::AwsError> {
    let svc = FerryAdmin::new(e.svc.core().clone());
    let ctx = RequestContext::internal(caller, "us-east-1");
    svc.call(
        &ctx,
        "InterruptSpotTasks",
        &serde_json::to_vec(&body).unwrap(),
    )
}

#[test]
fn spot_tasks_are_interrupted_and_services_replace_them() {
    let e = env();
    e.ok("RegisterTaskDefinition", source_doc());
    e.ok(
        "PutClusterCapacityProviders",
        json!({"cluster": "default", "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
               "defaultCapacityProviderStrategy": []}),
    );
    e.ok(
        "CreateService",
        json!({"serviceName": "s", "taskDefinition": "fargate-task-definition", "desiredCount": 1,
               "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}}),
    );
    crate::scheduler::pass(e.svc.core()).unwrap();
    let spot = e.plan(0).task_arn;
    let sink = e.sink(0);
    sink(TaskEvent::Provisioned {
        private_ip: "198.18.0.9".into(),
    });
    sink(TaskEvent::ContainerRunning {
        name: "sample-fargate-app".into(),
    });
    sink(TaskEvent::Running);
    let s = &e.ok("DescribeServices", json!({"services": ["s"]}))["services"][0];
    assert_eq!(
        s["capacityProviderStrategy"][0]["capacityProvider"],
        "FARGATE_SPOT"
    );
    assert!(s.get("launchType").is_none());
    // An on-demand task is not interrupted.
    let on_demand = e.run_one();
    // Only the administrator may call it.
    let user = Caller {
        account: "000000000000".into(),
        principal: Principal::Iam("arn:aws:iam::000000000000:user/bob".into()),
        access_key_id: None,
        policies: None,
    };
    let err = admin_call(&e, user, json!({"tasks": [spot]})).unwrap_err();
    assert_eq!(err.code, "AccessDeniedException");
    let r = admin_call(
        &e,
        Caller::admin("000000000000"),
        json!({"tasks": [spot, on_demand]}),
    )
    .unwrap();
    assert_eq!(r["interrupted"], json!([spot]));
    assert_eq!(r["failures"][0]["reason"], "NOT_FARGATE_SPOT");
    assert_eq!(*e.rt.stopped.lock().unwrap(), vec![spot.clone()]);
    let t = e.describe(&spot);
    assert_eq!(t["stopCode"], "SpotInterruption");
    assert_eq!(t["stoppedReason"], admin::SPOT_REASON);
    assert_eq!(t["desiredStatus"], "STOPPED");
    // Again: already stopping.
    let r = admin::interrupt(
        e.svc.core(),
        InterruptSpotTasksRequest {
            tasks: vec![spot.clone()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.failures[0].reason, "ALREADY_STOPPING");
    // The service replaces it, on FARGATE_SPOT again.
    crate::scheduler::pass(e.svc.core()).unwrap();
    let replacement = e.plan(2).task_arn;
    assert_eq!(
        e.describe(&replacement)["capacityProviderName"],
        "FARGATE_SPOT"
    );
    // `all` finds the replacement; neither or both is refused.
    let r = admin::interrupt(
        e.svc.core(),
        InterruptSpotTasksRequest {
            all: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.interrupted, vec![replacement]);
    assert!(admin::interrupt(e.svc.core(), InterruptSpotTasksRequest::default()).is_err());
    let _ = ctx();
}

#[test]
fn inactive_task_definitions_can_be_deleted() {
    let e = env();
    e.ok("RegisterTaskDefinition", source_doc());
    e.ok("RegisterTaskDefinition", source_doc());
    let r = e.ok(
        "DeleteTaskDefinitions",
        json!({"taskDefinitions": ["fargate-task-definition:1", "nope:3", "x"]}),
    );
    assert_eq!(r["taskDefinitions"], json!([]));
    let reasons: Vec<&str> = r["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("still in ACTIVE status"), "{reasons:?}");
    assert_eq!(reasons[1], "TASK_DEFINITION_NOT_FOUND");
    assert!(reasons[2].contains("identifier is invalid"));
    // Revision 2 runs a task: deleted only once it stops.
    let t = e.ok("RunTask", run_body())["tasks"][0]["taskArn"]
        .as_str()
        .unwrap()
        .to_owned();
    for rev in ["1", "2"] {
        e.ok(
            "DeregisterTaskDefinition",
            json!({"taskDefinition": format!("fargate-task-definition:{rev}")}),
        );
    }
    let r = e.ok(
        "DeleteTaskDefinitions",
        json!({"taskDefinitions": ["fargate-task-definition:1", "fargate-task-definition:2"]}),
    );
    for td in r["taskDefinitions"].as_array().unwrap() {
        assert_eq!(td["status"], "DELETE_IN_PROGRESS");
    }
    assert_eq!(
        e.err(
            "DescribeTaskDefinition",
            json!({"taskDefinition": "fargate-task-definition:1"})
        )
        .code,
        "ClientException"
    );
    let d = e.ok(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "fargate-task-definition:2"}),
    );
    assert_eq!(d["taskDefinition"]["status"], "DELETE_IN_PROGRESS");
    let l = e.ok(
        "ListTaskDefinitions",
        json!({"status": "DELETE_IN_PROGRESS"}),
    );
    assert_eq!(l["taskDefinitionArns"].as_array().unwrap().len(), 1);
    (e.sink(0))(TaskEvent::Stopped {
        stop_code: "EssentialContainerExited".into(),
        stopped_reason: "x".into(),
    });
    assert_eq!(e.describe(&t)["lastStatus"], "STOPPED");
    assert_eq!(
        crate::ops::task_definitions::sweep_deleted(e.svc.core()).unwrap(),
        1
    );
    assert_eq!(
        e.err(
            "DescribeTaskDefinition",
            json!({"taskDefinition": "fargate-task-definition:2"})
        )
        .code,
        "ClientException"
    );
    // The family stays, INACTIVE.
    let f = e.ok("ListTaskDefinitionFamilies", json!({"status": "INACTIVE"}));
    assert_eq!(f["families"], json!(["fargate-task-definition"]));
}

#[test]
fn account_settings_defaults_and_principal_overrides() {
    let e = env();
    let bob = "arn:aws:iam::000000000000:user/bob";
    let s = e.ok(
        "ListAccountSettings",
        json!({"effectiveSettings": true, "name": "containerInsights"}),
    );
    assert_eq!(
        s["settings"],
        json!([{"name": "containerInsights", "value": "disabled",
        "principalArn": "arn:aws:iam::000000000000:root", "type": "aws_managed"}])
    );
    e.ok(
        "PutAccountSettingDefault",
        json!({"name": "containerInsights", "value": "enabled"}),
    );
    e.ok(
        "PutAccountSetting",
        json!({"name": "containerInsights", "value": "disabled", "principalArn": bob}),
    );
    let eff = |p: &str| {
        e.ok(
            "ListAccountSettings",
            json!({"effectiveSettings": true, "name": "containerInsights", "principalArn": p}),
        )["settings"][0]
            .clone()
    };
    assert_eq!(
        (eff(bob)["value"].clone(), eff(bob)["principalArn"].clone()),
        (json!("disabled"), json!(bob))
    );
    let alice = "arn:aws:iam::000000000000:user/alice";
    assert_eq!(eff(alice)["value"], "enabled");
    assert_eq!(eff(alice)["type"], "user");
    // Bob's own list: only what is set for him.
    let mine = e.ok("ListAccountSettings", json!({"principalArn": bob}));
    assert_eq!(mine["settings"].as_array().unwrap().len(), 1);
    let all = e.ok(
        "ListAccountSettings",
        json!({"effectiveSettings": true, "maxResults": 10}),
    );
    assert_eq!(all["settings"].as_array().unwrap().len(), 10);
    assert!(all["nextToken"].is_string());
    e.ok(
        "DeleteAccountSetting",
        json!({"name": "containerInsights", "principalArn": bob}),
    );
    assert_eq!(eff(bob)["value"], "enabled");
    // New clusters take the creator's setting.
    let c = e.ok("CreateCluster", json!({"clusterName": "ci"}))["cluster"].clone();
    assert_eq!(
        c["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );
    for (op, body, needle) in [
        (
            "PutAccountSetting",
            json!({"name": "nope", "value": "x"}),
            "setting name 'nope' is invalid",
        ),
        (
            "PutAccountSetting",
            json!({"name": "taskLongArnFormat", "value": "maybe"}),
            "Valid values: enabled, disabled",
        ),
        (
            "PutAccountSetting",
            json!({"name": "fargateFIPSMode", "value": "enabled", "principalArn": bob}),
            "PutAccountSettingDefault",
        ),
        (
            "PutAccountSetting",
            json!({"name": "guardDutyActivate", "value": "on", "principalArn": "arn:aws:iam::999999999999:user/x"}),
            "principalArn",
        ),
        (
            "DeleteAccountSetting",
            json!({"name": "awsvpcTrunking"}),
            "is not set",
        ),
    ] {
        let err = e.err(op, body);
        assert_eq!(err.code, "InvalidParameterException");
        assert!(err.message.contains(needle), "{}", err.message);
    }
    let d = e.ok(
        "PutAccountSettingDefault",
        json!({"name": "fargateTaskRetirementWaitPeriod", "value": "14"}),
    );
    assert_eq!(
        d["setting"]["principalArn"],
        "arn:aws:iam::000000000000:root"
    );
}

#[test]
fn members_ferry_cannot_honour_are_refused_not_dropped() {
    let e = env();
    e.ok("RegisterTaskDefinition", source_doc());
    let mut b = run_body();
    b["placementConstraints"] = json!([{"type": "distinctInstance"}]);
    let err = e.err("RunTask", b);
    assert_eq!(err.code, "InvalidParameterException");
    assert!(
        err.message
            .contains("'placementConstraints' is not supported"),
        "{}",
        err.message
    );
    // What the SDKs fill in, and empty members, pass.
    let mut b = run_body();
    b["clientToken"] = "tok".into();
    b["placementStrategy"] = json!([]);
    b["enableECSManagedTags"] = false.into();
    e.ok("RunTask", b);
    let mut s = json!({"serviceName": "s", "taskDefinition": "fargate-task-definition", "desiredCount": 0,
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
        "loadBalancers": [{"targetGroupArn": "arn:tg", "containerName": "a", "containerPort": 80}]});
    assert!(
        e.err("CreateService", s.clone())
            .message
            .contains("'loadBalancers'")
    );
    s["loadBalancers"] = json!([]);
    s["deploymentController"] = json!({"type": "CODE_DEPLOY"});
    assert!(
        e.err("CreateService", s.clone())
            .message
            .contains("CODE_DEPLOY")
    );
    s["deploymentController"] = json!({"type": "ECS"});
    s["healthCheckGracePeriodSeconds"] = 30.into();
    e.ok("CreateService", s);
    let err = e.err(
        "UpdateService",
        json!({"service": "s", "serviceRegistries": [{"registryArn": "arn:r"}]}),
    );
    assert!(
        err.message.contains("'serviceRegistries'"),
        "{}",
        err.message
    );
    // Fargate's refusals, in ECS's words.
    for (k, v, msg) in [
        (
            "networkMode",
            json!("bridge"),
            "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
        ),
        (
            "pidMode",
            json!("host"),
            "Tasks using the Fargate launch type do not support pidMode 'host'. The supported value for pidMode is 'task'.",
        ),
        (
            "ipcMode",
            json!("task"),
            "Tasks using the Fargate launch type do not support ipcMode.",
        ),
    ] {
        let mut d = source_doc();
        d[k] = v;
        let err = e.err("RegisterTaskDefinition", d);
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("ClientException", msg)
        );
    }
    let mut d = source_doc();
    d.as_object_mut().unwrap().remove("networkMode");
    assert_eq!(e.err("RegisterTaskDefinition", d).code, "ClientException");
}

#[test]
fn update_service_changes_the_strategy_and_redeploys() {
    let e = env();
    e.ok("RegisterTaskDefinition", source_doc());
    e.ok(
        "PutClusterCapacityProviders",
        json!({"cluster": "default", "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
               "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}]}),
    );
    // Neither launch type nor strategy: the cluster's default.
    let s = e.ok(
        "CreateService",
        json!({"serviceName": "u", "taskDefinition": "fargate-task-definition", "desiredCount": 4,
               "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}}),
    )["service"]
        .clone();
    assert_eq!(
        s["capacityProviderStrategy"][0]["capacityProvider"],
        "FARGATE"
    );
    let s = e.ok(
        "UpdateService",
        json!({"service": "u", "capacityProviderStrategy": [
            {"capacityProvider": "FARGATE", "weight": 1, "base": 1},
            {"capacityProvider": "FARGATE_SPOT", "weight": 1}]}),
    )["service"]
        .clone();
    assert_eq!(s["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(
        s["deployments"][0]["capacityProviderStrategy"][1]["capacityProvider"],
        "FARGATE_SPOT"
    );
    crate::scheduler::pass(e.svc.core()).unwrap();
    let arns: Vec<String> = (0..4).map(|i| e.plan(i).task_arn).collect();
    let mut names: Vec<String> = arns
        .iter()
        .map(|a| {
            e.describe(a)["capacityProviderName"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    // One for the base, then 3 split 1:1 (ties go to the first listed).
    assert_eq!(
        names,
        ["FARGATE", "FARGATE", "FARGATE", "FARGATE_SPOT"].map(String::from)
    );
    let err = e.err(
        "UpdateService",
        json!({"service": "u", "capacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 0}]}),
    );
    assert!(
        err.message.contains("weight greater than 0"),
        "{}",
        err.message
    );
}

#[test]
fn a_role_sessions_settings_are_its_roles() {
    let e = env();
    let session = Caller {
        account: "000000000000".into(),
        principal: Principal::AssumedRole {
            role_arn: "arn:aws:iam::000000000000:role/app".into(),
            session_name: "s1".into(),
        },
        access_key_id: None,
        policies: None,
    };
    let ctx = RequestContext::internal(session, "us-east-1");
    let body =
        serde_json::to_vec(&json!({"name": "containerInsights", "value": "enhanced"})).unwrap();
    let r = e.svc.call(&ctx, "PutAccountSetting", &body).unwrap();
    assert_eq!(
        r["setting"]["principalArn"],
        "arn:aws:iam::000000000000:role/app"
    );
    let c = e
        .svc
        .call(
            &ctx,
            "CreateCluster",
            &serde_json::to_vec(&json!({"clusterName": "r"})).unwrap(),
        )
        .unwrap();
    assert_eq!(c["cluster"]["settings"][0]["value"], "enhanced");
    // The account default is untouched.
    let d = e.ok(
        "ListAccountSettings",
        json!({"effectiveSettings": true, "name": "containerInsights"}),
    );
    assert_eq!(d["settings"][0]["type"], "aws_managed");
}

/// Agent keys in memory: host -> key id, ids issued in order.
#[derive(Default)]
struct MemAgentKeys {
    keys: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl admin::AgentKeys for MemAgentKeys {
    fn create(
        &self,
        host: &str,
    ) -> Result<(String, zeroize::Zeroizing<String>), ferry_proto::AwsError> {
        let mut keys = self.keys.lock().unwrap();
        let id = format!("AKIAAGENT{:011}", keys.len() + 1);
        keys.insert(host.to_owned(), id.clone());
        Ok((id, zeroize::Zeroizing::new(format!("secret-of-{host}"))))
    }

    fn delete(&self, host: &str) -> Result<bool, ferry_proto::AwsError> {
        Ok(self.keys.lock().unwrap().remove(host).is_some())
    }
}

#[test]
fn agent_credentials_are_issued_and_revoked_by_the_administrator_only() {
    let e = env();
    let keys = std::sync::Arc::new(MemAgentKeys::default());
    let svc = FerryAdmin::new(e.svc.core().clone()).with_agent_keys(keys.clone());
    let call = |caller: Caller, op: &str, body: Value| {
        let ctx = RequestContext::internal(caller, "us-east-1");
        svc.call(&ctx, op, &serde_json::to_vec(&body).unwrap())
    };
    let admin = || Caller::admin("000000000000");

    let r = call(admin(), "CreateAgentCredentials", json!({"name": "node-1"})).unwrap();
    assert_eq!(
        r,
        json!({"accessKeyId": "AKIAAGENT00000000001", "secretAccessKey": "secret-of-node-1",
               "name": "node-1"})
    );
    assert_eq!(keys.keys.lock().unwrap()["node-1"], "AKIAAGENT00000000001");

    // Nobody else: not an IAM user, nor an agent (the service principal)
    // minting keys for other hosts.
    let user = Caller {
        account: "000000000000".into(),
        principal: Principal::Iam("arn:aws:iam::000000000000:user/bob".into()),
        access_key_id: None,
        policies: None,
    };
    let mut agent = Caller::service("000000000000", "fargate.amazonaws.com");
    agent.access_key_id = Some("AKIAAGENT00000000001".into());
    for who in [user, agent] {
        for op in ["CreateAgentCredentials", "DeleteAgentCredentials"] {
            let err = call(who.clone(), op, json!({"name": "node-2"})).unwrap_err();
            assert_eq!(err.code, "AccessDeniedException", "{op}");
        }
    }
    assert_eq!(keys.keys.lock().unwrap().len(), 1);

    // The host rule, and the request's shape.
    for bad in ["", "a/b", "x y", &"h".repeat(65)] {
        let err = call(admin(), "CreateAgentCredentials", json!({"name": bad})).unwrap_err();
        assert_eq!(err.code, "InvalidParameterException", "{bad}");
    }
    for body in [
        json!({}),
        json!({"name": "n", "extra": 1}),
        json!({"name": 7}),
    ] {
        let err = call(admin(), "CreateAgentCredentials", body).unwrap_err();
        assert_eq!(err.code, "SerializationException");
    }

    // Revoked once; then the host has none.
    let r = call(admin(), "DeleteAgentCredentials", json!({"name": "node-1"})).unwrap();
    assert_eq!(r, json!({}));
    assert!(keys.keys.lock().unwrap().is_empty());
    let err = call(admin(), "DeleteAgentCredentials", json!({"name": "node-1"})).unwrap_err();
    assert_eq!(err.code, "ResourceNotFoundException");
    assert!(err.message.contains("node-1"), "{}", err.message);

    // A server without agent keys refuses both.
    let bare = FerryAdmin::new(e.svc.core().clone());
    let ctx = RequestContext::internal(admin(), "us-east-1");
    let err = bare
        .call(&ctx, "CreateAgentCredentials", br#"{"name":"node-1"}"#)
        .unwrap_err();
    assert_eq!(err.code, "ClientException");
}
