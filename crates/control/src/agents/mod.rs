//! `FerryAgent_20261201`: how a remote `ferry agent` joins the control
//! plane as a host, over the API instead of the store (see
//! `docs/control-plane.md`, "Remote agents").
//!
//! A local agent (the runtime inside a `ferry server`) finds its work by
//! reading the store ([`crate::hosts::assign`]). A remote agent asks a
//! replica instead, which reads the store for it with the same rules:
//!
//! - `RegisterAgent` writes the host's record (`agent: remote`), takes its
//!   liveness lease, and answers with the host's unfinished tasks to
//!   re-adopt;
//! - `PollAgent` (every [`POLL`]) renews the lease (the poll is the
//!   heartbeat) and answers with the tasks to start, to stop and to forget,
//!   the host's tasks as the metadata endpoint shows them, and the
//!   security groups' rules;
//! - `ReportTaskEvents` applies the runtime's events, as the local sink
//!   does;
//! - `OpenLogStream` / `PutTaskLogs` carry awslogs output into the Logs
//!   service.
//!
//! Every operation is for one host, named in the request: the caller is
//! that host's agent key ([`AgentSupport::host_of_key`]) or the account
//! administrator. Nothing here holds state: any replica answers any call.

pub mod wire;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::net::FirewallRules;
use ferry_proto::plan::TaskEvent;
use ferry_proto::{AwsError, JsonService, Principal, RequestContext};

use crate::arn;
use crate::db;
use crate::error::EcsError;
use crate::hosts::assign::{code_of, reason_of};
use crate::hosts::{self, HostRecord, Reservation};
use crate::model::task::{TaskRecord, TaskStatus, stop_code};
use crate::service::{Core, encode};
use crate::tasks;
use wire::*;

/// The `X-Amz-Target` prefix (signing name `ecs`).
pub const TARGET_PREFIX: &str = "FerryAgent_20261201";

/// How often an agent polls; with the 30 s host lease, ten polls may fail
/// in a row before the host is lost.
pub const POLL: Duration = Duration::from_secs(1);

/// What the agent API needs beyond the control plane, wired in the
/// composition root.
pub trait AgentSupport: Send + Sync {
    /// The host whose agent key `access_key_id` is.
    fn host_of_key(&self, access_key_id: &str) -> Option<String>;
    /// The security groups' rules as every host's firewall enforces them.
    fn firewall_rules(&self) -> FirewallRules;
    /// Opens an awslogs stream (as the local agent's log sink does).
    fn open_log_stream(
        &self,
        group: &str,
        stream: &str,
        create_group: bool,
    ) -> Result<(), AwsError>;
    /// Appends lines to a stream.
    fn put_log_lines(&self, group: &str, stream: &str, lines: &[LogLine]) -> Result<(), AwsError>;
}

/// The agent API.
pub struct AgentApi {
    core: Arc<Core>,
    support: Arc<dyn AgentSupport>,
}

impl AgentApi {
    /// Over the ECS service's core.
    pub fn new(core: Arc<Core>, support: Arc<dyn AgentSupport>) -> Self {
        Self { core, support }
    }

    /// Refuses a caller that is neither host `name`'s agent nor the
    /// administrator.
    fn check_caller(&self, ctx: &RequestContext, name: &str) -> Result<(), AwsError> {
        if ctx.caller.principal == Principal::AccountAdmin {
            return Ok(());
        }
        let host = ctx
            .caller
            .access_key_id
            .as_deref()
            .and_then(|k| self.support.host_of_key(k));
        match host {
            Some(h) if h == name => Ok(()),
            Some(h) => Err(denied(format!(
                "the agent key of host {h} cannot act for host {name}"
            ))),
            None => Err(denied(format!(
                "{} is not an agent key: {TARGET_PREFIX} is for ferry agents (ferry agent-credentials)",
                ctx.caller.arn()
            ))),
        }
    }
}

fn denied(message: String) -> AwsError {
    AwsError::client("AccessDeniedException", message)
}

impl JsonService for AgentApi {
    fn target_prefix(&self) -> &'static str {
        TARGET_PREFIX
    }

    // Agent keys and the administrator only, checked per request below.
    fn authorizes_itself(&self) -> bool {
        true
    }

    fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, AwsError> {
        let core = &self.core;
        match operation {
            "RegisterAgent" => {
                let req: RegisterAgentRequest = crate::service::parse(body)?;
                self.check_caller(ctx, &req.name)?;
                Ok(encode(register(core, &req)?)?)
            }
            "PollAgent" => {
                let req: PollAgentRequest = crate::service::parse(body)?;
                self.check_caller(ctx, &req.name)?;
                let mut out = poll(core, &req)?;
                out.firewall = self.support.firewall_rules();
                Ok(encode(out)?)
            }
            "ReportTaskEvents" => {
                let req: ReportTaskEventsRequest = crate::service::parse(body)?;
                self.check_caller(ctx, &req.name)?;
                report(core, &req)?;
                Ok(serde_json::json!({}))
            }
            "OpenLogStream" => {
                let req: OpenLogStreamRequest = crate::service::parse(body)?;
                self.check_caller(ctx, &req.name)?;
                self.support
                    .open_log_stream(&req.group, &req.stream, req.create_group)?;
                Ok(serde_json::json!({}))
            }
            "PutTaskLogs" => {
                let req: PutTaskLogsRequest = crate::service::parse(body)?;
                self.check_caller(ctx, &req.name)?;
                self.support
                    .put_log_lines(&req.group, &req.stream, &req.events)?;
                Ok(serde_json::json!({}))
            }
            other => Err(EcsError::UnknownOperation(other.to_owned()).into()),
        }
    }
}

fn no_fleet() -> EcsError {
    EcsError::InvalidParameter(
        "a remote agent joins a control plane on a shared store: start the servers with --store postgresql://..."
            .into(),
    )
}

/// Writes host `req.name`'s record and takes its lease; its unfinished
/// tasks, to re-adopt.
pub fn register(
    core: &Core,
    req: &RegisterAgentRequest,
) -> Result<RegisterAgentResponse, EcsError> {
    if !core.cfg.fleet {
        return Err(no_fleet());
    }
    hosts::check_name(&req.name).map_err(|e| EcsError::InvalidParameter(e.to_string()))?;
    let subnet = match &req.subnet {
        Some(s) => Some(s.parse().map_err(|_| {
            EcsError::InvalidParameter(format!("subnet {s:?} is not a CIDR block"))
        })?),
        None => None,
    };
    let ratio_ok = |r: f64| (0.1..=10000.0).contains(&r);
    if req.cpu_units == 0
        || req.memory_mib == 0
        || !ratio_ok(req.cpu_overcommit)
        || !ratio_ok(req.memory_overcommit)
    {
        return Err(EcsError::InvalidParameter(
            "cpuUnits and memoryMib must be positive and overcommit ratios between 0.1 and 10000"
                .into(),
        ));
    }
    let rec = HostRecord {
        name: req.name.clone(),
        cpu_units: req.cpu_units,
        memory_mib: req.memory_mib,
        cpu_overcommit: req.cpu_overcommit,
        memory_overcommit: req.memory_overcommit,
        subnet,
        started_at: crate::clock::now(),
        version: req.version.clone(),
        instance: req.instance.clone(),
        agent: hosts::REMOTE_AGENT.into(),
    };
    core.store.write(|w| {
        w.put(db::HOSTS, &req.name, &rec)?;
        Ok::<_, EcsError>(())
    })?;
    renew(core, &req.name)?;
    let tasks = host_tasks(core, &req.name)?
        .into_iter()
        .filter(|(_, t)| t.last_status != TaskStatus::Stopped)
        .map(|(_, t)| AdoptOrder {
            stop_code_if_gone: hosts::lost_stop_code(&t).to_owned(),
            plan: t.plan,
        })
        .collect();
    tracing::info!(host = %req.name, instance = %req.instance, "a remote agent registered");
    Ok(RegisterAgentResponse {
        account_id: core.cfg.account.clone(),
        tasks,
        poll_millis: POLL.as_millis() as u64,
        host_ttl_millis: core.cfg.timings.host_ttl.as_millis() as u64,
    })
}

/// Renews host `name`'s liveness lease (the holder is the host's name, as
/// for a local agent).
fn renew(core: &Core, name: &str) -> Result<(), EcsError> {
    core.store
        .lease(&hosts::lease_name(name), name, core.cfg.timings.host_ttl)?;
    Ok(())
}

/// The records of the tasks reserved on host `name`, by key.
fn host_tasks(core: &Core, name: &str) -> Result<Vec<(String, TaskRecord)>, EcsError> {
    let keys: Vec<String> = core
        .store
        .scan::<Reservation>(db::PLACEMENTS, &db::placement_prefix(name))?
        .into_iter()
        .map(|(k, _)| k[name.len() + 1..].to_owned())
        .collect();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(t) = core.store.get::<TaskRecord>(db::TASKS, &key)? {
            out.push((key, t));
        }
    }
    Ok(out)
}

/// The store key of task `task_arn`.
fn key_of(task_arn: &str) -> Option<String> {
    match arn::parse(task_arn)? {
        arn::Resource::Task { cluster, id } => Some(db::task_key(&cluster, &id)),
        _ => None,
    }
}

/// The heartbeat and the host's work: the same decisions the local
/// assignment loop makes ([`crate::hosts::assign::pass`]), for the tasks
/// the agent says it holds.
pub fn poll(core: &Arc<Core>, req: &PollAgentRequest) -> Result<PollAgentResponse, EcsError> {
    if !core.cfg.fleet {
        return Err(no_fleet());
    }
    let name = req.name.as_str();
    renew(core, name)?;
    let mut out = PollAgentResponse {
        replaced: core
            .store
            .get::<HostRecord>(db::HOSTS, name)?
            .is_some_and(|r| r.instance != req.instance),
        ..PollAgentResponse::default()
    };
    let held: std::collections::HashMap<String, &HeldTask> = req
        .held
        .iter()
        .filter_map(|h| Some((key_of(&h.task_arn)?, h)))
        .collect();
    let mut keys: BTreeSet<String> = core
        .store
        .scan::<Reservation>(db::PLACEMENTS, &db::placement_prefix(name))?
        .into_iter()
        .map(|(k, _)| k[name.len() + 1..].to_owned())
        .collect();
    keys.extend(held.keys().cloned());
    for key in keys {
        let rec: Option<TaskRecord> = core.store.get(db::TASKS, &key)?;
        let live = rec
            .as_ref()
            .filter(|t| t.last_status != TaskStatus::Stopped && t.host == name);
        match (live, held.get(&key)) {
            (None, Some(h)) if h.done => out.forget.push(h.task_arn.clone()),
            (None, Some(h)) => {
                let (code, reason) = rec.as_ref().map_or(
                    (
                        stop_code::USER_INITIATED.to_owned(),
                        "the task's record is gone".to_owned(),
                    ),
                    |t| (code_of(t), reason_of(t)),
                );
                out.stop.push(StopOrder {
                    task_arn: h.task_arn.clone(),
                    stop_code: code,
                    reason,
                });
            }
            (None, None) => {}
            (Some(t), Some(h)) => {
                out.tasks.push(TaskView::of(t, &core.cfg.region));
                if t.desired_status == TaskStatus::Stopped && !h.done {
                    out.stop.push(StopOrder {
                        task_arn: h.task_arn.clone(),
                        stop_code: code_of(t),
                        reason: reason_of(t),
                    });
                }
            }
            (Some(t), None) => {
                if t.desired_status == TaskStatus::Stopped {
                    // Nothing of it ran there: recording the stop finishes it.
                    tasks::finish_unstarted(core, &key, &code_of(t), &reason_of(t))?;
                } else if let Some(plan) = plan_for(core, t)? {
                    out.tasks.push(TaskView::of(t, &core.cfg.region));
                    out.start.push(plan);
                }
            }
        }
    }
    Ok(out)
}

/// The plan a remote agent starts `t` with, or `None` if the task cannot
/// start (then it is recorded STOPPED here).
fn plan_for(
    core: &Arc<Core>,
    t: &TaskRecord,
) -> Result<Option<ferry_proto::plan::TaskPlan>, EcsError> {
    let events = tasks::sink(core, &t.plan.cluster_name, &t.plan.task_id);
    let fail = |reason: String| {
        events(TaskEvent::Stopped {
            stop_code: stop_code::TASK_FAILED_TO_START.into(),
            stopped_reason: reason,
        })
    };
    let Some(td) = core.find_task_definition(&t.task_definition_arn)? else {
        fail(format!(
            "the task definition {} is gone",
            t.task_definition_arn
        ));
        return Ok(None);
    };
    let plan = match tasks::prepare_identity(core, t, &td.spec) {
        Ok(plan) => plan,
        Err(reason) => {
            fail(reason);
            return Ok(None);
        }
    };
    // Secret values and registry logins never leave a replica yet
    // (placement keeps tasks that need them on a replica's own host); a
    // plan that has some anyway is refused rather than started without.
    if plan
        .containers
        .iter()
        .any(|c| !c.secret_env.is_empty() || c.registry_auth.is_some())
    {
        fail(format!(
            "{}: the task needs secrets or registry credentials, which a remote agent cannot receive yet",
            hosts::REMOTE_UNSUPPORTED
        ));
        return Ok(None);
    }
    Ok(Some(plan))
}

/// Applies the events an agent reports, each to its task if the task is
/// the host's; an event for another host's task (or no task) is skipped
/// with a warning, so one bad event does not hold back the rest.
pub fn report(core: &Arc<Core>, req: &ReportTaskEventsRequest) -> Result<(), EcsError> {
    for r in &req.events {
        let Some(key) = key_of(&r.task_arn) else {
            tracing::warn!(host = %req.name, "an agent reported an event for {:?}, not a task ARN", r.task_arn);
            continue;
        };
        let Some(t) = core.store.get::<TaskRecord>(db::TASKS, &key)? else {
            // Expired meanwhile: nothing to record.
            continue;
        };
        if t.host != req.name {
            tracing::warn!(host = %req.name, task = %r.task_arn, placed_on = %t.host,
                "an agent reported an event for a task placed on another host; skipped");
            continue;
        }
        tasks::sink(core, &t.plan.cluster_name, &t.plan.task_id)(r.event.clone());
    }
    Ok(())
}

impl TaskView {
    /// The view of `t`.
    pub fn of(t: &TaskRecord, region: &str) -> Self {
        Self {
            task_arn: t.arn().to_owned(),
            family: t.family.clone(),
            revision: t
                .task_definition_arn
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .to_owned(),
            desired_status: t.desired_status.as_str().to_owned(),
            known_status: t.last_status.as_str().to_owned(),
            pull_started_at: t.pull_started_at,
            pull_stopped_at: t.pull_stopped_at,
            availability_zone: t.availability_zone(region),
            containers: t
                .containers
                .iter()
                .map(|c| ContainerView {
                    name: c.name.clone(),
                    arn: c.arn.clone(),
                    known_status: c.last_status.clone(),
                    cpu: c.cpu,
                    memory: c.memory,
                    exit_code: c.exit_code,
                })
                .collect(),
        }
    }
}
