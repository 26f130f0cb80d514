//! The `Service` shape (rendered from a [`ServiceRecord`] and its live
//! tasks) and its parts: `Deployment`, `ServiceEvent`,
//! `DeploymentConfiguration`.

use serde::Serialize;

use super::{NetworkConfiguration, Tag};
use crate::model::service::{self as model, ServiceRecord};
use crate::model::task::{TaskRecord, TaskStatus};
use crate::validate;

/// `Service`, as CreateService, UpdateService, DeleteService and
/// DescribeServices return it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    service_arn: String,
    service_name: String,
    cluster_arn: String,
    load_balancers: Vec<serde_json::Value>,
    service_registries: Vec<serde_json::Value>,
    status: String,
    desired_count: u32,
    running_count: usize,
    pending_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    launch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    capacity_provider_strategy: Vec<crate::capacity::StrategyItem>,
    platform_version: String,
    platform_family: &'static str,
    task_definition: String,
    deployment_configuration: DeploymentConfiguration,
    deployments: Vec<Deployment>,
    events: Vec<ServiceEvent>,
    created_at: f64,
    placement_constraints: Vec<serde_json::Value>,
    placement_strategy: Vec<serde_json::Value>,
    network_configuration: NetworkConfiguration,
    scheduling_strategy: &'static str,
    deployment_controller: DeploymentController,
    created_by: String,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    propagate_tags: String,
    enable_execute_command: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<Tag>>,
}

/// `DeploymentConfiguration` (the parts ferry honours).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentConfiguration {
    deployment_circuit_breaker: DeploymentCircuitBreaker,
    maximum_percent: u32,
    minimum_healthy_percent: u32,
}

/// `DeploymentCircuitBreaker`: ferry never rolls back.
#[derive(Debug, Clone, Serialize)]
struct DeploymentCircuitBreaker {
    enable: bool,
    rollback: bool,
}

/// `DeploymentController`: always `ECS`.
#[derive(Debug, Clone, Serialize)]
struct DeploymentController {
    r#type: &'static str,
}

/// `Deployment`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Deployment {
    id: String,
    status: String,
    task_definition: String,
    desired_count: u32,
    pending_count: usize,
    running_count: usize,
    failed_tasks: u32,
    created_at: f64,
    updated_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    launch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    capacity_provider_strategy: Vec<crate::capacity::StrategyItem>,
    platform_version: &'static str,
    platform_family: &'static str,
    network_configuration: NetworkConfiguration,
    rollout_state: String,
    rollout_state_reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fargate_ephemeral_storage: Option<DeploymentEphemeralStorage>,
}

/// `DeploymentEphemeralStorage`: the customer-managed key a deployment
/// pinned.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentEphemeralStorage {
    kms_key_id: String,
}

/// `ServiceEvent`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceEvent {
    id: String,
    created_at: f64,
    message: String,
}

/// (running, pending) among `live` tasks that are desired RUNNING, of the
/// deployment `dep` or of any.
fn counts(live: &[TaskRecord], dep: Option<&str>) -> (usize, usize) {
    let mine = |t: &&TaskRecord| {
        t.desired_status == TaskStatus::Running
            && dep.is_none_or(|d| t.started_by.as_deref() == Some(d))
    };
    let running = live
        .iter()
        .filter(mine)
        .filter(|t| t.last_status == TaskStatus::Running)
        .count();
    let pending = live.iter().filter(mine).filter(|t| t.is_pending()).count();
    (running, pending)
}

fn deployment(rec: &ServiceRecord, d: &model::Deployment, live: &[TaskRecord]) -> Deployment {
    let (running, pending) = counts(live, Some(&d.id));
    Deployment {
        id: d.id.clone(),
        status: d.status.clone(),
        task_definition: d.task_definition.clone(),
        desired_count: d.desired_count,
        pending_count: pending,
        running_count: running,
        failed_tasks: d.failed_tasks,
        created_at: d.created_at,
        updated_at: d.updated_at,
        launch_type: rec
            .capacity_provider_strategy
            .is_empty()
            .then_some("FARGATE"),
        capacity_provider_strategy: rec.capacity_provider_strategy.clone(),
        // The requested version was checked when the deployment was made.
        platform_version: validate::platform(Some(&d.requested_platform))
            .map(|p| p.as_str())
            .unwrap_or("1.4.0"),
        platform_family: "Linux",
        network_configuration: rec.network_configuration.clone(),
        rollout_state: d.rollout_state.clone(),
        rollout_state_reason: d.rollout_state_reason.clone(),
        fargate_ephemeral_storage: d
            .kms_key_id
            .clone()
            .map(|kms_key_id| DeploymentEphemeralStorage { kms_key_id }),
    }
}

/// Renders a service record with its `live` (not STOPPED) tasks; tags
/// only when asked for.
pub fn render(rec: &ServiceRecord, live: &[TaskRecord], with_tags: bool) -> Service {
    let (running, pending) = counts(live, None);
    Service {
        service_arn: rec.arn.clone(),
        service_name: rec.name.clone(),
        cluster_arn: rec.cluster_arn.clone(),
        load_balancers: vec![],
        service_registries: vec![],
        status: rec.status.clone(),
        desired_count: rec.desired_count,
        running_count: running,
        pending_count: pending,
        // ECS names either the launch type or the strategy.
        launch_type: rec
            .capacity_provider_strategy
            .is_empty()
            .then_some("FARGATE"),
        capacity_provider_strategy: rec.capacity_provider_strategy.clone(),
        platform_version: rec.platform_version.clone(),
        platform_family: "Linux",
        task_definition: rec.task_definition.clone(),
        deployment_configuration: DeploymentConfiguration {
            deployment_circuit_breaker: DeploymentCircuitBreaker {
                enable: rec.circuit_breaker,
                rollback: false,
            },
            maximum_percent: rec.maximum_percent,
            minimum_healthy_percent: rec.minimum_healthy_percent,
        },
        deployments: rec
            .deployments
            .iter()
            .map(|d| deployment(rec, d, live))
            .collect(),
        events: rec
            .events
            .iter()
            .map(|e| ServiceEvent {
                id: e.id.clone(),
                created_at: e.created_at,
                message: e.message.clone(),
            })
            .collect(),
        created_at: rec.created_at,
        placement_constraints: vec![],
        placement_strategy: vec![],
        network_configuration: rec.network_configuration.clone(),
        scheduling_strategy: "REPLICA",
        deployment_controller: DeploymentController { r#type: "ECS" },
        created_by: rec.created_by.clone(),
        enable_ecs_managed_tags: false,
        propagate_tags: rec.propagate_tags.clone().unwrap_or_else(|| "NONE".into()),
        enable_execute_command: false,
        tags: with_tags.then(|| rec.tags.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::service::ServiceEvent as EventRecord;

    /// The `json!` rendering services had before these structs: the
    /// reference the typed rendering must match member for member.
    fn reference(rec: &ServiceRecord, tasks: &[TaskRecord], with_tags: bool) -> Value {
        let counts = |dep: Option<&str>| {
            let mine = |t: &&TaskRecord| {
                t.desired_status == TaskStatus::Running
                    && dep.is_none_or(|d| t.started_by.as_deref() == Some(d))
            };
            let running = tasks
                .iter()
                .filter(mine)
                .filter(|t| t.last_status == TaskStatus::Running)
                .count();
            let pending = tasks.iter().filter(mine).filter(|t| t.is_pending()).count();
            (running, pending)
        };
        let deployments: Vec<Value> = rec
            .deployments
            .iter()
            .map(|d| {
                let (running, pending) = counts(Some(&d.id));
                let resolved = validate::platform(Some(&d.requested_platform))
                    .map(|p| p.as_str())
                    .unwrap_or("1.4.0");
                let mut v = json!({
                    "id": d.id, "status": d.status, "taskDefinition": d.task_definition,
                    "desiredCount": d.desired_count, "pendingCount": pending,
                    "runningCount": running, "failedTasks": d.failed_tasks,
                    "createdAt": d.created_at, "updatedAt": d.updated_at,
                    "launchType": "FARGATE", "platformVersion": resolved,
                    "platformFamily": "Linux",
                    "networkConfiguration": rec.network_configuration,
                    "rolloutState": d.rollout_state,
                    "rolloutStateReason": d.rollout_state_reason,
                });
                if let Some(k) = &d.kms_key_id {
                    v["fargateEphemeralStorage"] = json!({ "kmsKeyId": k });
                }
                v
            })
            .collect();
        let (running, pending) = counts(None);
        let events: Vec<Value> = rec
            .events
            .iter()
            .map(|e| json!({"id": e.id, "createdAt": e.created_at, "message": e.message}))
            .collect();
        let mut v = json!({
            "serviceArn": rec.arn, "serviceName": rec.name, "clusterArn": rec.cluster_arn,
            "loadBalancers": [], "serviceRegistries": [], "status": rec.status,
            "desiredCount": rec.desired_count, "runningCount": running, "pendingCount": pending,
            "launchType": "FARGATE", "platformVersion": rec.platform_version,
            "platformFamily": "Linux", "taskDefinition": rec.task_definition,
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": rec.circuit_breaker, "rollback": false},
                "maximumPercent": rec.maximum_percent,
                "minimumHealthyPercent": rec.minimum_healthy_percent,
            },
            "deployments": deployments, "events": events, "createdAt": rec.created_at,
            "placementConstraints": [], "placementStrategy": [],
            "networkConfiguration": rec.network_configuration,
            "schedulingStrategy": "REPLICA", "deploymentController": {"type": "ECS"},
            "createdBy": rec.created_by, "enableECSManagedTags": false,
            "propagateTags": rec.propagate_tags.as_deref().unwrap_or("NONE"),
            "enableExecuteCommand": false,
        });
        if with_tags {
            v["tags"] = serde_json::to_value(&rec.tags).unwrap();
        }
        v
    }

    fn deployment(id: &str, status: &str, platform: &str, key: Option<&str>) -> model::Deployment {
        model::Deployment {
            id: id.into(),
            status: status.into(),
            task_definition: "arn:aws:ecs:r:a:task-definition/f:2".into(),
            desired_count: 3,
            requested_platform: platform.into(),
            kms_key_id: key.map(Into::into),
            rollout_state: "IN_PROGRESS".into(),
            rollout_state_reason: "ECS deployment in progress.".into(),
            failed_tasks: 2,
            created_at: 1700000000.25,
            updated_at: 1700000001.0,
        }
    }

    fn service() -> ServiceRecord {
        let net: NetworkConfiguration = serde_json::from_value(json!({"awsvpcConfiguration": {
            "subnets": ["subnet-1"], "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED"}}))
        .unwrap();
        ServiceRecord {
            name: "web".into(),
            arn: "arn:aws:ecs:r:a:service/default/web".into(),
            cluster_name: "default".into(),
            cluster_arn: "arn:aws:ecs:r:a:cluster/default".into(),
            status: "ACTIVE".into(),
            desired_count: 3,
            task_definition: "arn:aws:ecs:r:a:task-definition/f:2".into(),
            platform_version: "LATEST".into(),
            network_configuration: net,
            maximum_percent: 200,
            minimum_healthy_percent: 50,
            circuit_breaker: true,
            capacity_provider_strategy: vec![],
            version: 1,
            deployments: vec![
                deployment(
                    "ecs-svc/1",
                    "PRIMARY",
                    "LATEST",
                    Some("arn:aws:kms:r:a:key/k"),
                ),
                deployment("ecs-svc/0", "ACTIVE", "1.3.0", None),
            ],
            events: vec![
                EventRecord {
                    id: "e2".into(),
                    created_at: 1700000002.5,
                    message: "(service web) has started 2 tasks: (task a) (task b).".into(),
                },
                EventRecord {
                    id: "e1".into(),
                    created_at: 1700000000.0,
                    message: "(service web) was created.".into(),
                },
            ],
            tracked: vec!["a".into()],
            consecutive_failures: 1,
            next_launch_at: 0.0,
            steady: false,
            tags: vec![Tag {
                key: "team".into(),
                value: "a".into(),
            }],
            propagate_tags: None,
            created_at: 1700000000.0,
            created_by: "arn:aws:iam::a:root".into(),
        }
    }

    fn tasks() -> Vec<TaskRecord> {
        let base = crate::model::task::tests::task();
        let t = |dep: &str, last: TaskStatus, desired: TaskStatus| {
            let mut t = base.clone();
            t.started_by = Some(dep.into());
            t.last_status = last;
            t.desired_status = desired;
            t
        };
        vec![
            t("ecs-svc/1", TaskStatus::Running, TaskStatus::Running),
            t("ecs-svc/1", TaskStatus::Pending, TaskStatus::Running),
            t("ecs-svc/1", TaskStatus::Provisioning, TaskStatus::Running),
            t("ecs-svc/0", TaskStatus::Running, TaskStatus::Running),
            t("ecs-svc/0", TaskStatus::Deactivating, TaskStatus::Stopped),
        ]
    }

    #[test]
    fn typed_rendering_matches_the_json_rendering() {
        let mut rec = service();
        let live = tasks();
        for with_tags in [false, true] {
            let got = serde_json::to_value(render(&rec, &live, with_tags)).unwrap();
            assert_eq!(got, reference(&rec, &live, with_tags));
        }
        let got = serde_json::to_value(render(&rec, &live, false)).unwrap();
        assert_eq!(got["enableECSManagedTags"], false);
        assert_eq!(
            got["deployments"][0]["fargateEphemeralStorage"]["kmsKeyId"],
            "arn:aws:kms:r:a:key/k"
        );
        assert!(
            got["deployments"][1]
                .get("fargateEphemeralStorage")
                .is_none()
        );
        assert_eq!(got["deployments"][1]["platformVersion"], "1.3.0");
        assert_eq!(
            (got["runningCount"].clone(), got["pendingCount"].clone()),
            (json!(2), json!(2))
        );
        assert!(got.get("tags").is_none());
        // Other states: propagateTags set, no deployments, events or tasks.
        rec.propagate_tags = Some("SERVICE".into());
        rec.deployments.clear();
        rec.events.clear();
        rec.tags.clear();
        rec.status = "INACTIVE".into();
        for with_tags in [false, true] {
            let got = serde_json::to_value(render(&rec, &[], with_tags)).unwrap();
            assert_eq!(got, reference(&rec, &[], with_tags));
        }
    }
}
