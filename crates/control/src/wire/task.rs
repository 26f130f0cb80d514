//! The `Task` shape (rendered from a [`TaskRecord`]) and `TaskOverride`.

use serde::{Deserialize, Serialize};

use super::{EphemeralStorage, KeyValuePair, Tag};
use crate::model::task::{TaskRecord, TaskStatus};

/// `TaskOverride` (RunTask `overrides`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOverride {
    /// Per-container overrides.
    #[serde(default)]
    pub container_overrides: Vec<ContainerOverride>,
    /// Task CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Task memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Execution role (echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// Task role (echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// Ephemeral storage size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    /// Echoed as given.
    #[serde(default)]
    pub inference_accelerator_overrides: Vec<serde_json::Value>,
}

/// `ContainerOverride`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverride {
    /// The container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Replaces the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Added to (and overriding) the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<KeyValuePair>>,
    /// Container CPU (echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i64>,
    /// Container memory (echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Container memory reservation (echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
}

/// `Task`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    attachments: Vec<Attachment>,
    attributes: Vec<Attribute>,
    availability_zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity_provider_name: Option<String>,
    cluster_arn: String,
    connectivity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    connectivity_at: Option<f64>,
    containers: Vec<Container>,
    cpu: String,
    created_at: f64,
    desired_status: &'static str,
    enable_execute_command: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_stopped_at: Option<f64>,
    group: String,
    health_status: &'static str,
    last_status: &'static str,
    launch_type: &'static str,
    memory: String,
    overrides: serde_json::Value,
    platform_version: String,
    platform_family: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_started_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_stopped_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopping_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<Tag>>,
    task_arn: String,
    task_definition_arn: String,
    version: u64,
    ephemeral_storage: EphemeralStorage,
    fargate_ephemeral_storage: TaskEphemeralStorage,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Attachment {
    id: String,
    r#type: &'static str,
    status: &'static str,
    details: Vec<KeyValuePair>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Attribute {
    name: &'static str,
    value: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    container_arn: String,
    task_arn: String,
    name: String,
    image: String,
    last_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    network_bindings: Vec<NetworkBinding>,
    network_interfaces: Vec<NetworkInterface>,
    health_status: &'static str,
    cpu: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_reservation: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct NetworkBinding {
    #[serde(rename = "bindIP")]
    bind_ip: String,
    container_port: u16,
    host_port: u16,
    protocol: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct NetworkInterface {
    attachment_id: String,
    private_ipv4_address: String,
}

/// `TaskEphemeralStorage`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskEphemeralStorage {
    #[serde(rename = "sizeInGiB")]
    size_in_gib: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
}

fn attachment_status(t: &TaskRecord) -> &'static str {
    match (t.last_status, &t.private_ip) {
        (TaskStatus::Stopped, _) => "DELETED",
        (TaskStatus::Deprovisioning, _) => "DETACHING",
        (_, Some(_)) => "ATTACHED",
        (_, None) => "PRECREATED",
    }
}

/// Renders a task record in the wire shape; tags only when asked for.
pub fn render(t: &TaskRecord, region: &str, with_tags: bool) -> Task {
    // ECS's order: subnetId, networkInterfaceId, macAddress,
    // privateDnsName, privateIPv4Address (the last three once attached).
    let mut details = vec![
        KeyValuePair::new("subnetId", &t.subnet_id),
        KeyValuePair::new("networkInterfaceId", &t.eni_id),
    ];
    if let Some(ip) = &t.private_ip {
        if let Some(eni) = &t.plan.network {
            details.push(KeyValuePair::new("macAddress", &eni.mac));
        }
        details.push(KeyValuePair::new(
            "privateDnsName",
            ferry_proto::net::private_dns_name(ip, region),
        ));
        details.push(KeyValuePair::new("privateIPv4Address", ip));
    }
    let running = !matches!(t.last_status, TaskStatus::Stopped);
    let containers = t
        .containers
        .iter()
        .map(|c| {
            let bindings = match (&t.private_ip, c.last_status.as_str()) {
                (Some(ip), "RUNNING") => c
                    .ports
                    .iter()
                    .map(|(p, proto)| NetworkBinding {
                        bind_ip: ip.clone(),
                        container_port: *p,
                        host_port: *p,
                        protocol: proto.clone(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Container {
                container_arn: c.arn.clone(),
                task_arn: t.arn().to_owned(),
                name: c.name.clone(),
                image: c.image.clone(),
                last_status: c.last_status.clone(),
                exit_code: c.exit_code,
                reason: c.reason.clone(),
                network_bindings: bindings,
                network_interfaces: t
                    .private_ip
                    .iter()
                    .filter(|_| running)
                    .map(|ip| NetworkInterface {
                        attachment_id: t.attachment_id.clone(),
                        private_ipv4_address: ip.clone(),
                    })
                    .collect(),
                // Containers without a health check stay UNKNOWN, as in ECS.
                health_status: c.health_status.as_str(),
                cpu: c.cpu.to_string(),
                memory: c.memory.map(|m| m.to_string()),
                memory_reservation: c.memory_reservation.map(|m| m.to_string()),
            }
        })
        .collect();
    let size = t.plan.ephemeral_storage_gib;
    Task {
        attachments: vec![Attachment {
            id: t.attachment_id.clone(),
            r#type: "ElasticNetworkInterface",
            status: attachment_status(t),
            details,
        }],
        attributes: vec![Attribute {
            name: "ecs.cpu-architecture",
            value: "x86_64",
        }],
        availability_zone: t.availability_zone(region),
        cluster_arn: t.cluster_arn.clone(),
        connectivity: if t.connectivity_at.is_some() {
            "CONNECTED"
        } else {
            "DISCONNECTED"
        },
        connectivity_at: t.connectivity_at,
        capacity_provider_name: t.capacity_provider_name.clone(),
        containers,
        cpu: t.plan.cpu_units.to_string(),
        created_at: t.created_at,
        desired_status: t.desired_status.as_str(),
        enable_execute_command: false,
        execution_stopped_at: t.execution_stopped_at,
        group: t.group.clone(),
        health_status: t.health_status().as_str(),
        last_status: t.last_status.as_str(),
        launch_type: "FARGATE",
        memory: t.plan.memory_mib.to_string(),
        overrides: t.overrides.clone(),
        platform_version: t.platform_version.clone(),
        platform_family: "Linux",
        pull_started_at: t.pull_started_at,
        pull_stopped_at: t.pull_stopped_at,
        started_at: t.started_at,
        started_by: t.started_by.clone(),
        stop_code: t.stop_code.clone(),
        stopped_at: t.stopped_at,
        stopped_reason: t.stopped_reason.clone(),
        stopping_at: t.stopping_at,
        tags: with_tags.then(|| t.tags.clone()),
        task_arn: t.arn().to_owned(),
        task_definition_arn: t.task_definition_arn.clone(),
        version: t.version,
        ephemeral_storage: EphemeralStorage {
            size_in_gib: i64::from(size),
        },
        fargate_ephemeral_storage: TaskEphemeralStorage {
            size_in_gib: size,
            kms_key_id: t.cmk_arn.clone(),
        },
    }
}
