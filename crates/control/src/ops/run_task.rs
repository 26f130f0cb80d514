//! RunTask: checks the wire request (in ECS's order, with ECS's errors),
//! resolves it into a [`crate::tasks::LaunchSpec`], and launches through
//! [`crate::tasks::launch`].

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};

use crate::capacity::{self, Placement, StrategyItem};
use crate::error::EcsError;
use crate::networks::AwsVpc;
use crate::plan;
use crate::service::Core;
use crate::tasks::{self, LaunchSpec, StorageKeyChoice};
use crate::validate;
use crate::wire::task::{self as wire_task, Task, TaskOverride};
use crate::wire::{Failure, NetworkConfiguration, Tag};

/// `RunTaskRequest`.
#[derive(Debug, Deserialize)]
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
    /// FARGATE/FARGATE_SPOT with base and weight (not with `launchType`).
    #[serde(default)]
    pub capacity_provider_strategy: Vec<StrategyItem>,
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
    /// Every other member: refused unless empty or in [`ACCEPTED`].
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// Members taken and not used: `clientToken` (the SDKs fill it in; ferry
/// does not de-duplicate) and `referenceId` (only for ECS events).
const ACCEPTED: &[&str] = &["clientToken", "referenceId"];

/// `RunTaskResponse`.
#[derive(Debug, Serialize)]
pub struct RunTaskResponse {
    tasks: Vec<Task>,
    failures: Vec<Failure>,
}

/// RunTask.
pub fn handle(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: RunTaskRequest,
) -> Result<RunTaskResponse, EcsError> {
    // A busy path: expire old stopped tasks here, even if the request fails.
    tasks::maybe_sweep(core);
    let spec = launch_spec(core, req)?;
    let launched = tasks::launch(core, spec)?;
    let tasks = launched
        .tasks
        .iter()
        .map(|t| wire_task::render(t, &core.cfg.region, false))
        .collect();
    // Tasks the host has no room for are `failures`, as ECS reports
    // capacity it cannot place (the call itself succeeds).
    Ok(RunTaskResponse {
        tasks,
        failures: launched.failures,
    })
}

/// Checks `req` and resolves it into what [`tasks::launch`] takes.
fn launch_spec(core: &Core, req: RunTaskRequest) -> Result<LaunchSpec, EcsError> {
    validate::refuse_unsupported(&req.rest, ACCEPTED, "RunTask")?;
    if req.enable_execute_command == Some(true) {
        return Err(EcsError::InvalidParameter(
            "enableExecuteCommand is not supported by ferry.".into(),
        ));
    }
    let count = validate::check_count(req.count)?;
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    let strategy = capacity::resolve(
        req.launch_type.as_deref(),
        &req.capacity_provider_strategy,
        &cluster.capacity_providers,
        &cluster.default_capacity_provider_strategy,
    )?;
    let td = tasks::runnable_task_definition(core, &req.task_definition)?;
    let network = AwsVpc::parse(req.network_configuration.as_ref())?;
    let platform = validate::platform(req.platform_version.as_deref())?;
    let overrides = req.overrides.unwrap_or_default();
    plan::effective_size(&td.spec, &overrides)?;
    let tags = validate::task_tags(&req.tags, req.propagate_tags.as_deref(), &td.tags)?;
    let group = req.group.unwrap_or_else(|| format!("family:{}", td.family));
    Ok(LaunchSpec {
        cluster,
        task_definition: td,
        count,
        overrides,
        platform,
        network,
        storage_key: StorageKeyChoice::Cluster,
        started_by: req.started_by,
        group,
        tags,
        placement: Placement {
            strategy,
            placed: Default::default(),
        },
        leader: crate::leader::Leader(None),
    })
}
