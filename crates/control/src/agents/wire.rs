//! The wire shapes of `FerryAgent_20261201` (JSON 1.1, camelCase), shared by
//! the replica that answers and the `ferry agent` that asks.

use ferry_proto::net::FirewallRules;
use ferry_proto::plan::{TaskEvent, TaskPlan};
use serde::{Deserialize, Serialize};

/// `RegisterAgent`: an agent (re)joins the control plane as a host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterAgentRequest {
    /// The host's name (`--name`).
    pub name: String,
    /// CPU units the machine has.
    pub cpu_units: u64,
    /// Memory the machine has, MiB.
    pub memory_mib: u64,
    /// `--cpu-overcommit`.
    pub cpu_overcommit: f64,
    /// `--memory-overcommit`.
    pub memory_overcommit: f64,
    /// `--subnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// This agent process (`NAME#RANDOM`).
    pub instance: String,
    /// The ferry version it runs.
    pub version: String,
}

/// `RegisterAgent` response: the host's unfinished tasks, to re-adopt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterAgentResponse {
    /// The account the control plane serves (keys' contexts name it).
    pub account_id: String,
    /// Every task placed on the host that is not STOPPED.
    pub tasks: Vec<AdoptOrder>,
    /// How often to poll (the poll is the heartbeat), ms.
    pub poll_millis: u64,
    /// A host silent this long is lost, ms.
    pub host_ttl_millis: u64,
}

/// A task to re-adopt after the agent's restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdoptOrder {
    /// Its plan as recorded (no secret values).
    pub plan: TaskPlan,
    /// Its stop code if the agent cannot re-adopt it
    /// ([`crate::hosts::lost_stop_code`]: it depends on whether it ran).
    pub stop_code_if_gone: String,
}

/// A task the agent holds, as it tells the control plane at each poll.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldTask {
    /// The task.
    pub task_arn: String,
    /// Its runtime reported `Stopped` (and the report was delivered).
    pub done: bool,
}

/// `PollAgent`: the agent's heartbeat and its question "what now?".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollAgentRequest {
    /// The host's name.
    pub name: String,
    /// This agent process, as registered.
    pub instance: String,
    /// Every task the agent holds or is starting.
    #[serde(default)]
    pub held: Vec<HeldTask>,
}

/// `PollAgent` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollAgentResponse {
    /// Tasks to start.
    pub start: Vec<TaskPlan>,
    /// Tasks to stop (held, and stopped by the control plane).
    pub stop: Vec<StopOrder>,
    /// Held tasks the control plane recorded STOPPED after their runtime
    /// finished: forget them.
    pub forget: Vec<String>,
    /// The control plane's view of the host's tasks (the task metadata
    /// endpoint serves it).
    pub tasks: Vec<TaskView>,
    /// The security groups' rules, for the host's firewall.
    pub firewall: FirewallRules,
    /// Another agent process registered this host's name since this one
    /// did.
    pub replaced: bool,
}

/// A task to stop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopOrder {
    /// The task.
    pub task_arn: String,
    /// Its recorded stop code.
    pub stop_code: String,
    /// Its recorded reason.
    pub reason: String,
}

/// What the control plane knows of one task (DescribeTasks' view, cut to
/// what the metadata endpoint shows).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    /// The task.
    pub task_arn: String,
    /// Its family.
    pub family: String,
    /// Its revision.
    pub revision: String,
    /// `desiredStatus`.
    pub desired_status: String,
    /// `lastStatus`.
    pub known_status: String,
    /// `pullStartedAt`, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<f64>,
    /// `pullStoppedAt`, epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<f64>,
    /// Its availability zone.
    pub availability_zone: String,
    /// Its containers.
    pub containers: Vec<ContainerView>,
}

/// One container of a [`TaskView`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    /// Name.
    pub name: String,
    /// `containerArn`.
    pub arn: String,
    /// `lastStatus`.
    pub known_status: String,
    /// CPU units.
    pub cpu: i64,
    /// Memory, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// `ReportTaskEvents`: what the host's runtime reported, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportTaskEventsRequest {
    /// The host's name.
    pub name: String,
    /// The events, oldest first.
    pub events: Vec<EventReport>,
}

/// One task event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventReport {
    /// The task.
    pub task_arn: String,
    /// The event.
    pub event: TaskEvent,
}

/// `OpenLogStream`: a container's awslogs stream, before it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenLogStreamRequest {
    /// The host's name.
    pub name: String,
    /// `awslogs-group`.
    pub group: String,
    /// The stream.
    pub stream: String,
    /// `awslogs-create-group`.
    #[serde(default)]
    pub create_group: bool,
}

/// `PutTaskLogs`: container output lines, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutTaskLogsRequest {
    /// The host's name.
    pub name: String,
    /// `awslogs-group`.
    pub group: String,
    /// The stream.
    pub stream: String,
    /// The lines.
    pub events: Vec<LogLine>,
}

/// One output line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Epoch milliseconds.
    pub timestamp: i64,
    /// The line.
    pub message: String,
}
