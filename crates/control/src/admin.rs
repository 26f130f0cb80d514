//! `FerryAdmin_20261201`: ferry's own operator operations, outside the ECS
//! namespace (JSON 1.1, SigV4 signing name `ecs`). Only the account
//! administrator may call them; the service checks that itself, so no IAM
//! policy can grant them.
//!
//! `InterruptSpotTasks` reclaims FARGATE_SPOT tasks as Fargate does when it
//! needs the capacity back: each task is stopped with stopCode
//! `SpotInterruption` and stoppedReason "Your Spot Task was interrupted.";
//! the runtime's stop path sends SIGTERM and waits each container's
//! `stopTimeout` (up to 120 s, Fargate's two-minute warning) before
//! SIGKILL. Services replace interrupted tasks like any stopped task.
//!
//! `CreateAgentCredentials {"name": HOST}` issues the service key a remote
//! `ferry agent` host signs with (`{"accessKeyId", "secretAccessKey",
//! "name"}`; one key per host, so issuing again revokes the host's previous
//! key), and `DeleteAgentCredentials {"name": HOST}` revokes it (`{}`;
//! `ResourceNotFoundException` if the host has none). The keys live in the
//! identity store, which this crate does not depend on: the composition
//! root hands an [`AgentKeys`] over it to [`FerryAdmin::with_agent_keys`].

use std::sync::Arc;

use ferry_proto::{AwsError, JsonService, Principal, RequestContext};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::capacity::FARGATE_SPOT;
use crate::db;
use crate::error::EcsError;
use crate::model::task::{TaskRecord, TaskStatus, stop_code};
use crate::service::Core;
use crate::tasks;
use crate::wire::Failure;

/// The `X-Amz-Target` prefix.
pub const TARGET_PREFIX: &str = "FerryAdmin_20261201";

/// stoppedReason of an interrupted spot task, in Fargate's words.
pub const SPOT_REASON: &str = "Your Spot Task was interrupted.";

/// `InterruptSpotTasks` request: `tasks` (ARNs or ids of `cluster`), or
/// `all` the cluster's running FARGATE_SPOT tasks.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterruptSpotTasksRequest {
    /// Cluster name or ARN (`default`).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Task ARNs or ids.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Every FARGATE_SPOT task of the cluster that is not stopping.
    #[serde(default)]
    pub all: bool,
}

/// `InterruptSpotTasks` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptSpotTasksResponse {
    /// The ARNs of the tasks now being interrupted.
    pub interrupted: Vec<String>,
    /// Tasks that were not interrupted (`MISSING`, `NOT_FARGATE_SPOT`,
    /// `ALREADY_STOPPING`).
    pub failures: Vec<Failure>,
}

/// Remote agents' service keys, one per host (implemented over the
/// identity store in the composition root).
pub trait AgentKeys: Send + Sync {
    /// Issues `host`'s key, replacing (and so revoking) one it had: its
    /// access key id and secret access key. `host` is the name the agent
    /// joins with (`[A-Za-z0-9._-]{1,64}`, checked before this is called).
    fn create(&self, host: &str) -> Result<(String, Zeroizing<String>), AwsError>;
    /// Revokes `host`'s key; `false` if it had none.
    fn delete(&self, host: &str) -> Result<bool, AwsError>;
}

/// `CreateAgentCredentials` and `DeleteAgentCredentials` request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentCredentialsRequest {
    /// The agent's host name (its `--name`).
    pub name: String,
}

/// The admin service.
pub struct FerryAdmin {
    core: Arc<Core>,
    agent_keys: Option<Arc<dyn AgentKeys>>,
}

impl FerryAdmin {
    /// Over the ECS service's core; without agent keys
    /// ([`FerryAdmin::with_agent_keys`]) the agent credential operations
    /// are refused.
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            agent_keys: None,
        }
    }

    /// Serves `CreateAgentCredentials` and `DeleteAgentCredentials` over
    /// `keys`.
    #[must_use]
    pub fn with_agent_keys(mut self, keys: Arc<dyn AgentKeys>) -> Self {
        self.agent_keys = Some(keys);
        self
    }

    fn agent_keys(&self, body: &[u8]) -> Result<(&dyn AgentKeys, String), AwsError> {
        let keys = self.agent_keys.as_deref().ok_or_else(|| {
            EcsError::Client("This server does not issue agent credentials.".into())
        })?;
        let req: AgentCredentialsRequest = crate::service::parse(body)?;
        crate::hosts::check_name(&req.name)
            .map_err(|e| EcsError::InvalidParameter(e.to_string()))?;
        Ok((keys, req.name))
    }

    fn create_agent_credentials(&self, body: &[u8]) -> Result<serde_json::Value, AwsError> {
        let (keys, name) = self.agent_keys(body)?;
        let (access_key_id, secret) = keys.create(&name)?;
        // The answer is the one place the secret leaves the server (the
        // JSON value and the response body are not zeroized; nothing logs
        // them).
        Ok(serde_json::json!({
            "accessKeyId": access_key_id,
            "secretAccessKey": secret.as_str(),
            "name": name,
        }))
    }

    fn delete_agent_credentials(&self, body: &[u8]) -> Result<serde_json::Value, AwsError> {
        let (keys, name) = self.agent_keys(body)?;
        if !keys.delete(&name)? {
            return Err(EcsError::ResourceNotFound(format!(
                "The host {name} has no agent credentials."
            ))
            .into());
        }
        Ok(serde_json::json!({}))
    }
}

fn failure(arn: &str, reason: &str, detail: &str) -> Failure {
    Failure {
        arn: Some(arn.to_owned()),
        reason: reason.into(),
        detail: Some(detail.into()),
    }
}

/// Interrupts spot tasks (see the module documentation).
pub fn interrupt(
    core: &Arc<Core>,
    req: InterruptSpotTasksRequest,
) -> Result<InterruptSpotTasksResponse, EcsError> {
    if req.all != req.tasks.is_empty() {
        return Err(EcsError::InvalidParameter(
            "Give either tasks or all, not both and not neither.".into(),
        ));
    }
    let cluster = core.active_cluster(req.cluster.as_deref())?;
    let ids: Vec<String> = if req.all {
        core.store
            .scan::<TaskRecord>(db::TASKS, &db::task_prefix(&cluster.name))?
            .into_iter()
            .filter(|(_, t)| {
                t.desired_status == TaskStatus::Running
                    && t.capacity_provider_name.as_deref() == Some(FARGATE_SPOT)
            })
            .map(|(_, t)| t.plan.task_id)
            .collect()
    } else {
        req.tasks
            .iter()
            .map(|t| t.rsplit('/').next().unwrap_or(t).to_owned())
            .collect()
    };
    let mut out = InterruptSpotTasksResponse {
        interrupted: vec![],
        failures: vec![],
    };
    for id in ids {
        let arn = core.scope.task(&cluster.name, &id);
        let Some(t) = core
            .store
            .get::<TaskRecord>(db::TASKS, &db::task_key(&cluster.name, &id))?
        else {
            out.failures.push(Failure::missing(arn));
            continue;
        };
        if t.capacity_provider_name.as_deref() != Some(FARGATE_SPOT) {
            out.failures.push(failure(
                &arn,
                "NOT_FARGATE_SPOT",
                "Only tasks placed on the FARGATE_SPOT capacity provider can be interrupted.",
            ));
            continue;
        }
        if t.desired_status != TaskStatus::Running {
            out.failures.push(failure(
                &arn,
                "ALREADY_STOPPING",
                "The task is already stopping.",
            ));
            continue;
        }
        tasks::stop(
            core,
            &cluster.name,
            &id,
            stop_code::SPOT_INTERRUPTION,
            SPOT_REASON,
        )?;
        out.interrupted.push(arn);
    }
    Ok(out)
}

impl JsonService for FerryAdmin {
    fn target_prefix(&self) -> &'static str {
        TARGET_PREFIX
    }

    // Administrator only, checked below: no identity policy reaches it.
    fn authorizes_itself(&self) -> bool {
        true
    }

    fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, AwsError> {
        if ctx.caller.principal != Principal::AccountAdmin {
            return Err(AwsError::client(
                "AccessDeniedException",
                format!(
                    "{} is not the account administrator: {TARGET_PREFIX}.{operation} is for the operator only.",
                    ctx.caller.arn()
                ),
            ));
        }
        match operation {
            "InterruptSpotTasks" => crate::service::parse(body)
                .and_then(|req| crate::service::encode(interrupt(&self.core, req)?))
                .map_err(AwsError::from),
            "CreateAgentCredentials" => self.create_agent_credentials(body),
            "DeleteAgentCredentials" => self.delete_agent_credentials(body),
            other => Err(EcsError::UnknownOperation(other.to_owned()).into()),
        }
    }
}
