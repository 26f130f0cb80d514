//! ListTasks.

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};

use crate::db;
use crate::error::EcsError;
use crate::model::task::{TaskRecord, TaskStatus};
use crate::paging;
use crate::service::Core;
use crate::tasks;

/// `ListTasksRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    container_instance: Option<String>,
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    started_by: Option<String>,
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    desired_status: Option<String>,
    #[serde(default)]
    launch_type: Option<String>,
}

/// `ListTasksResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksResponse {
    task_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// ListTasks: by default the tasks whose desiredStatus is RUNNING.
pub fn handle(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: ListTasksRequest,
) -> Result<ListTasksResponse, EcsError> {
    tasks::maybe_sweep(core);
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    let max = paging::max_results(req.max_results)?;
    let desired = match req.desired_status.as_deref() {
        None | Some("RUNNING") => TaskStatus::Running,
        Some("STOPPED") => TaskStatus::Stopped,
        // Fargate tasks are never desired PENDING.
        Some("PENDING") => TaskStatus::Pending,
        Some(o) => {
            return Err(EcsError::InvalidParameter(format!(
                "desiredStatus '{o}' is invalid: use RUNNING, PENDING or STOPPED."
            )));
        }
    };
    // Fargate only: other launch types and container instances list nothing.
    let none = req.container_instance.is_some()
        || req.launch_type.as_deref().is_some_and(|l| l != "FARGATE");
    let group = req.service_name.as_ref().map(|s| format!("service:{s}"));
    let all: Vec<(String, String)> = if none {
        Vec::new()
    } else {
        core.store
            .scan::<TaskRecord>(db::TASKS, &db::task_prefix(&cluster.name))?
            .into_iter()
            .filter(|(_, t)| t.desired_status == desired)
            .filter(|(_, t)| req.family.as_ref().is_none_or(|f| &t.family == f))
            .filter(|(_, t)| {
                req.started_by
                    .as_ref()
                    .is_none_or(|s| t.started_by.as_ref() == Some(s))
            })
            .filter(|(_, t)| group.as_ref().is_none_or(|g| &t.group == g))
            .map(|(k, t)| (k, t.plan.task_arn))
            .collect()
    };
    let (task_arns, next_token) = paging::page(all, req.next_token.as_deref(), max)?;
    Ok(ListTasksResponse {
        task_arns,
        next_token,
    })
}
