//! UpdateTaskProtection and GetTaskProtection: task scale-in protection.
//!
//! As in ECS: only tasks of a service can be protected (others get the
//! `TASK_NOT_VALID` failure); protection lasts `expiresInMinutes` (1 to
//! 2,880, default 120) from the call, each call resets it, and it lapses by
//! itself. While a task is protected its service neither scales it in nor
//! stops it for a deployment (crate::scheduler).

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};

use super::stop_task::task_id_in;
use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::model::task::{TaskRecord, TaskStatus};
use crate::service::Core;
use crate::wire::Failure;

/// Default protection period, minutes.
const DEFAULT_MINUTES: i64 = 120;
/// Longest protection period, minutes (48 hours).
const MAX_MINUTES: i64 = 2880;

/// `UpdateTaskProtectionRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRequest {
    cluster: String,
    tasks: Vec<String>,
    protection_enabled: bool,
    #[serde(default)]
    expires_in_minutes: Option<i64>,
}

/// `GetTaskProtectionRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetRequest {
    cluster: String,
    #[serde(default)]
    tasks: Option<Vec<String>>,
}

/// `ProtectedTask`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedTask {
    task_arn: String,
    protection_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_date: Option<f64>,
}

/// `UpdateTaskProtectionResponse` / `GetTaskProtectionResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    protected_tasks: Vec<ProtectedTask>,
    failures: Vec<Failure>,
}

fn status(t: &TaskRecord, now: f64) -> ProtectedTask {
    let on = t.protected_at(now);
    ProtectedTask {
        task_arn: t.arn().to_owned(),
        protection_enabled: on,
        expiration_date: if on { t.protected_until } else { None },
    }
}

/// A named task of `cluster` that protection applies to, or the failure
/// ECS reports for it.
fn lookup(core: &Core, cluster: &str, task: &str) -> Result<Result<String, Failure>, EcsError> {
    let failure = |reason: &str| Failure {
        arn: Some(task.to_owned()),
        reason: reason.into(),
        detail: None,
    };
    let Some(id) = task_id_in(cluster, task) else {
        return Ok(Err(failure("TASK_NOT_FOUND")));
    };
    let key = db::task_key(cluster, &id);
    Ok(match core.store.get::<TaskRecord>(db::TASKS, &key)? {
        None => Err(failure("TASK_NOT_FOUND")),
        Some(t) if !t.group.starts_with("service:") || t.last_status == TaskStatus::Stopped => {
            Err(failure("TASK_NOT_VALID"))
        }
        Some(_) => Ok(key),
    })
}

fn check_tasks(tasks: &[String], max: usize) -> Result<(), EcsError> {
    if tasks.is_empty() || tasks.len() > max {
        return Err(EcsError::InvalidParameter(format!(
            "tasks must name between 1 and {max} tasks."
        )));
    }
    Ok(())
}

/// UpdateTaskProtection.
pub fn update(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: UpdateRequest,
) -> Result<Response, EcsError> {
    check_tasks(&req.tasks, 10)?;
    let minutes = req.expires_in_minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(EcsError::InvalidParameter(format!(
            "expiresInMinutes must be between 1 and {MAX_MINUTES} (got {minutes})."
        )));
    }
    let cluster = core.active_cluster(Some(&req.cluster))?.name;
    let now = clock::now();
    let until = req
        .protection_enabled
        .then_some(now + minutes as f64 * 60.0);
    let mut out = Response {
        protected_tasks: vec![],
        failures: vec![],
    };
    let mut keys = Vec::new();
    for task in &req.tasks {
        match lookup(core, &cluster, task)? {
            Ok(key) => keys.push(key),
            Err(f) => out.failures.push(f),
        }
    }
    let updated = core.store.write(|w| {
        let mut updated = Vec::new();
        for key in &keys {
            if let Some(mut t) = w.get::<TaskRecord>(db::TASKS, key)? {
                t.protected_until = until;
                t.version += 1;
                w.put(db::TASKS, key, &t)?;
                updated.push(t);
            }
        }
        Ok::<_, EcsError>(updated)
    })?;
    for key in &keys {
        core.tasks.refresh(&core.store, key)?;
    }
    out.protected_tasks = updated.iter().map(|t| status(t, now)).collect();
    // A service may now stop what it waited for.
    core.wake_scheduler();
    Ok(out)
}

/// GetTaskProtection. Without `tasks`: every live task of the cluster's
/// services.
pub fn get(core: &Arc<Core>, _ctx: &RequestContext, req: GetRequest) -> Result<Response, EcsError> {
    let cluster = core.active_cluster(Some(&req.cluster))?.name;
    let now = clock::now();
    let mut out = Response {
        protected_tasks: vec![],
        failures: vec![],
    };
    match &req.tasks {
        Some(tasks) => {
            check_tasks(tasks, 100)?;
            for task in tasks {
                match lookup(core, &cluster, task)? {
                    Ok(key) => {
                        if let Some(t) = core.store.get::<TaskRecord>(db::TASKS, &key)? {
                            out.protected_tasks.push(status(&t, now));
                        }
                    }
                    Err(f) => out.failures.push(f),
                }
            }
        }
        None => {
            let prefix = db::task_prefix(&cluster);
            for (_, t) in core.store.scan::<TaskRecord>(db::TASKS, &prefix)? {
                if t.group.starts_with("service:") && t.last_status != TaskStatus::Stopped {
                    out.protected_tasks.push(status(&t, now));
                }
            }
        }
    }
    Ok(out)
}
