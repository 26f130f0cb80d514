//! StopTask.

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};

use crate::arn::{self, Resource};
use crate::error::EcsError;
use crate::model::task::stop_code;
use crate::service::Core;
use crate::tasks;
use crate::wire::task::{self as wire_task, Task};

/// `StopTaskRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopTaskRequest {
    #[serde(default)]
    cluster: Option<String>,
    task: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `StopTaskResponse`.
#[derive(Debug, Serialize)]
pub struct StopTaskResponse {
    task: Task,
}

/// Resolves a task id or ARN within the cluster `cluster`: returns the
/// task id, or `None` if `task` cannot name a task of that cluster.
pub fn task_id_in(cluster: &str, task: &str) -> Option<String> {
    if task.starts_with("arn:") {
        return match arn::parse(task) {
            Some(Resource::Task { cluster: c, id }) if c == cluster => Some(id),
            _ => None,
        };
    }
    (!task.is_empty() && !task.contains('/')).then(|| task.to_owned())
}

/// StopTask.
pub fn handle(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: StopTaskRequest,
) -> Result<StopTaskResponse, EcsError> {
    // A task ARN names its cluster; use it when `cluster` is not given.
    let cluster = req.cluster.clone().or_else(|| match arn::parse(&req.task) {
        Some(Resource::Task { cluster, .. }) => Some(cluster),
        _ => None,
    });
    let not_found = || EcsError::InvalidParameter("The referenced task was not found.".into());
    let cluster = core.active_cluster(cluster.as_deref())?.name;
    let id = task_id_in(&cluster, &req.task).ok_or_else(not_found)?;
    let reason = match req.reason.as_deref() {
        None | Some("") => "Task stopped by user".to_owned(),
        Some(r) => r.chars().take(255).collect(),
    };
    let t = tasks::stop(core, &cluster, &id, stop_code::USER_INITIATED, &reason)?
        .ok_or_else(not_found)?;
    Ok(StopTaskResponse {
        task: wire_task::render(&t, &core.cfg.region, false),
    })
}
