//! DescribeTasks.

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};

use super::stop_task::task_id_in;
use crate::db;
use crate::error::EcsError;
use crate::service::Core;
use crate::wire::Failure;
use crate::wire::task::{self as wire_task, Task};

/// `DescribeTasksRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeTasksRequest {
    #[serde(default)]
    cluster: Option<String>,
    tasks: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

/// `DescribeTasksResponse`.
#[derive(Debug, Serialize)]
pub struct DescribeTasksResponse {
    tasks: Vec<Task>,
    failures: Vec<Failure>,
}

/// DescribeTasks.
pub fn handle(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: DescribeTasksRequest,
) -> Result<DescribeTasksResponse, EcsError> {
    if req.tasks.is_empty() || req.tasks.len() > 100 {
        return Err(EcsError::InvalidParameter(
            "tasks must name 1 to 100 tasks.".into(),
        ));
    }
    let with_tags = match req.include.as_slice() {
        [] => false,
        [t] if t == "TAGS" => true,
        _ => {
            return Err(EcsError::InvalidParameter(
                "include may only contain TAGS.".into(),
            ));
        }
    };
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    let mut tasks = Vec::with_capacity(req.tasks.len());
    let mut failures = Vec::new();
    for want in &req.tasks {
        let found = match task_id_in(&cluster.name, want) {
            Some(id) => core
                .tasks
                .get(&core.store, &db::task_key(&cluster.name, &id))?,
            None => None,
        };
        match found {
            Some(t) => tasks.push(wire_task::render(&t, &core.cfg.region, with_tags)),
            None => failures.push(Failure::missing(if want.starts_with("arn:") {
                want.clone()
            } else {
                core.scope.task(&cluster.name, want)
            })),
        }
    }
    Ok(DescribeTasksResponse { tasks, failures })
}
