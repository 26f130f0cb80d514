//! RunTask: records `count` tasks (PROVISIONING) in one transaction, then
//! hands each plan to the runtime.

use std::sync::Arc;

use ferry_proto::RequestContext;
use ferry_proto::plan::StoragePlan;
use serde::{Deserialize, Serialize};

use super::tags;
use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::model::task::{ContainerRecord, TaskRecord, TaskStatus};
use crate::plan::{self, DEFAULT_STORAGE_GIB, TaskIdentity};
use crate::service::Core;
use crate::validate::{self, Platform};
use crate::wire::task::{self as wire_task, Task, TaskOverride};
use crate::wire::{Failure, NetworkConfiguration, Tag};

/// `RunTaskRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTaskRequest {
    /// Cluster name or ARN (`default`).
    #[serde(default)]
    pub cluster: Option<String>,
    /// 1..=10.
    #[serde(default)]
    pub count: Option<i64>,
    /// `FARGATE` (the default in ferry).
    #[serde(default)]
    pub launch_type: Option<String>,
    /// `FARGATE`/`FARGATE_SPOT` providers are accepted as Fargate.
    #[serde(default)]
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    /// Required for awsvpc.
    #[serde(default)]
    pub network_configuration: Option<NetworkConfiguration>,
    /// Overrides.
    #[serde(default)]
    pub overrides: Option<TaskOverride>,
    /// `LATEST`, `1.4.0` or `1.3.0`.
    #[serde(default)]
    pub platform_version: Option<String>,
    /// `startedBy`.
    #[serde(default)]
    pub started_by: Option<String>,
    /// `group`.
    #[serde(default)]
    pub group: Option<String>,
    /// Tags for the tasks.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// `TASK_DEFINITION` copies the task definition's tags.
    #[serde(default)]
    pub propagate_tags: Option<String>,
    /// ECS Exec is not offered.
    #[serde(default)]
    pub enable_execute_command: Option<bool>,
    /// The task definition (`family`, `family:rev` or ARN).
    pub task_definition: String,
    /// In-process only (services): the customer-managed key a deployment
    /// pinned (`Some(None)`: the platform key), instead of the cluster's
    /// current one.
    #[serde(skip)]
    pub storage_key: Option<Option<String>>,
}

/// `CapacityProviderStrategyItem`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderStrategyItem {
    capacity_provider: String,
}

/// `RunTaskResponse`.
#[derive(Debug, Serialize)]
pub struct RunTaskResponse {
    tasks: Vec<Task>,
    failures: Vec<Failure>,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// RunTask.
pub fn handle(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: RunTaskRequest,
) -> Result<RunTaskResponse, EcsError> {
    let records = launch(core, req)?;
    let tasks = records
        .iter()
        .map(|t| wire_task::render(t, &core.cfg.region, false))
        .collect();
    Ok(RunTaskResponse {
        tasks,
        failures: vec![],
    })
}

/// Records and starts the tasks of `req`; returns their records as they
/// stand after the runtime was called. Shared with in-process schedulers.
pub fn launch(core: &Arc<Core>, req: RunTaskRequest) -> Result<Vec<TaskRecord>, EcsError> {
    core.maybe_sweep();
    match req.launch_type.as_deref() {
        None | Some("FARGATE") => {}
        Some(other) => {
            return Err(EcsError::InvalidParameter(format!(
                "launchType {other} is not supported: ferry runs tasks on FARGATE only."
            )));
        }
    }
    if let Some(cp) = req
        .capacity_provider_strategy
        .iter()
        .find(|c| c.capacity_provider != "FARGATE" && c.capacity_provider != "FARGATE_SPOT")
    {
        return Err(EcsError::InvalidParameter(format!(
            "Capacity provider '{}' does not exist: ferry offers FARGATE only.",
            cp.capacity_provider
        )));
    }
    if req.enable_execute_command == Some(true) {
        return Err(EcsError::InvalidParameter(
            "enableExecuteCommand is not supported by ferry.".into(),
        ));
    }
    let count = validate::check_count(req.count)?;
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    let td = core
        .find_task_definition(&req.task_definition)?
        .ok_or_else(|| {
            EcsError::Client(format!(
                "TaskDefinition not found: '{}' names no registered task definition.",
                req.task_definition
            ))
        })?;
    if !td.active {
        return Err(EcsError::Client(format!(
            "TaskDefinition is inactive: {} was deregistered.",
            td.arn
        )));
    }
    let subnet = req
        .network_configuration
        .as_ref()
        .and_then(|n| n.awsvpc_configuration.as_ref())
        .ok_or_else(|| {
            EcsError::InvalidParameter(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified."
                    .into(),
            )
        })?
        .subnets
        .first()
        .cloned()
        .ok_or_else(|| EcsError::InvalidParameter("subnets can not be empty.".into()))?;
    let platform = validate::platform(req.platform_version.as_deref())?;
    let overrides = req.overrides.clone().unwrap_or_default();
    let (_, _, size) = plan::effective_size(&td.spec, &overrides)?;
    tags::check(&req.tags)?;
    let mut task_tags = req.tags.clone();
    match req.propagate_tags.as_deref() {
        None | Some("NONE") => {}
        Some("TASK_DEFINITION") => task_tags = tags::merge(&td.tags, &task_tags),
        Some(o) => {
            return Err(EcsError::InvalidParameter(format!(
                "propagateTags {o} is invalid for RunTask: use TASK_DEFINITION or NONE."
            )));
        }
    }
    tags::check(&task_tags)?;

    let (storage, cmk_arn) = match platform {
        Platform::V1_3_0 => {
            check_platform(core, platform, size)?;
            (StoragePlan::Unencrypted, None)
        }
        Platform::V1_4_0 => match req.storage_key.as_ref().unwrap_or(&cluster.storage_key_arn) {
            Some(cmk) => (
                StoragePlan::Encrypted {
                    kms_key_arn: cmk.clone(),
                },
                Some(cmk.clone()),
            ),
            None => {
                let key = core.keys.platform_key_arn().map_err(|e| {
                    EcsError::Server(format!(
                        "the platform-managed storage key is unavailable: {e}"
                    ))
                })?;
                (StoragePlan::Encrypted { kms_key_arn: key }, None)
            }
        },
    };

    let now = clock::now();
    let overrides_echo = serde_json::to_value(echo_overrides(&overrides, &td.spec))
        .map_err(|e| EcsError::Server(format!("encoding overrides: {e}")))?;
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let task_id = new_id();
        let task_arn = core.scope.task(&cluster.name, &task_id);
        let p = plan::build(
            TaskIdentity {
                task_arn,
                task_id: task_id.clone(),
                cluster_name: cluster.name.clone(),
                account: core.cfg.account.clone(),
                region: core.cfg.region.clone(),
            },
            &td.spec,
            &overrides,
            storage.clone(),
        )?;
        let containers = p
            .containers
            .iter()
            .zip(td.spec.containers.iter())
            .map(|(c, def)| ContainerRecord {
                name: c.name.clone(),
                image: c.image.clone(),
                arn: core.scope.container(&cluster.name, &task_id, &new_id()),
                essential: c.essential,
                last_status: "PENDING".into(),
                exit_code: None,
                reason: None,
                ports: c
                    .port_mappings
                    .iter()
                    .map(|m| (m.container_port, m.protocol.clone()))
                    .collect(),
                cpu: def.cpu,
                memory: def.memory,
                memory_reservation: def.memory_reservation,
            })
            .collect();
        records.push(TaskRecord {
            plan: p,
            cluster_arn: cluster.arn.clone(),
            task_definition_arn: td.arn.clone(),
            family: td.family.clone(),
            last_status: TaskStatus::Provisioning,
            desired_status: TaskStatus::Running,
            platform_version: platform.as_str().into(),
            requested_storage_gib: size,
            cmk_arn: cmk_arn.clone(),
            containers,
            attachment_id: uuid::Uuid::new_v4().to_string(),
            eni_id: format!("eni-{}", &new_id()[..17]),
            subnet_id: subnet.clone(),
            private_ip: None,
            created_at: now,
            connectivity_at: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            stopping_at: None,
            execution_stopped_at: None,
            stopped_at: None,
            stop_code: None,
            stopped_reason: None,
            started_by: req.started_by.clone(),
            group: req
                .group
                .clone()
                .unwrap_or_else(|| format!("family:{}", td.family)),
            overrides: overrides_echo.clone(),
            tags: task_tags.clone(),
            version: 1,
        });
    }
    core.store.write(|w| {
        // The cluster may have been deleted meanwhile.
        if !w
            .get::<crate::model::cluster::ClusterRecord>(db::CLUSTERS, &cluster.name)?
            .is_some_and(|c| c.active)
        {
            return Err(EcsError::cluster_not_found());
        }
        for t in &records {
            w.put(db::TASKS, &db::task_key(&cluster.name, &t.plan.task_id), t)?;
        }
        Ok(())
    })?;
    for t in &records {
        core.tasks
            .refresh(&core.store, &db::task_key(&cluster.name, &t.plan.task_id))?;
    }
    let mut out = Vec::with_capacity(records.len());
    for t in records {
        let sink = core.sink(&cluster.name, &t.plan.task_id);
        core.runtime.start(t.plan.clone(), sink);
        // The runtime may already have reported (e.g. a failure to start).
        let key = db::task_key(&cluster.name, &t.plan.task_id);
        out.push(core.store.get(db::TASKS, &key)?.unwrap_or(t));
    }
    Ok(out)
}

/// The platform-version rules: 1.3.0 (unencrypted storage) may be
/// forbidden by the operator, and cannot hold more than 20 GiB.
pub fn check_platform(core: &Core, platform: Platform, size: Option<u32>) -> Result<(), EcsError> {
    if platform != Platform::V1_3_0 {
        return Ok(());
    }
    if !core.cfg.allow_unencrypted_storage {
        return Err(EcsError::Client(
            "Platform version 1.3.0 runs tasks on unencrypted ephemeral storage, which this server forbids (ferry server --require-encrypted-storage). Use platform version 1.4.0 (or LATEST).".into(),
        ));
    }
    if size.unwrap_or(DEFAULT_STORAGE_GIB) > DEFAULT_STORAGE_GIB {
        return Err(EcsError::Client(
            "Ephemeral storage larger than 20 GiB requires platform version 1.4.0 or later.".into(),
        ));
    }
    Ok(())
}

/// ECS echoes `overrides` with one entry per container.
fn echo_overrides(
    ov: &TaskOverride,
    spec: &crate::model::task_definition::TaskDefSpec,
) -> TaskOverride {
    let mut out = ov.clone();
    for c in spec.containers.iter().map(|c| &c.run) {
        if !out
            .container_overrides
            .iter()
            .any(|o| o.name.as_deref() == Some(&c.name))
        {
            out.container_overrides
                .push(crate::wire::task::ContainerOverride {
                    name: Some(c.name.clone()),
                    ..Default::default()
                });
        }
    }
    out
}
