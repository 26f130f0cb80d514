//! The `ferry agent` side of `FerryAgent_20261201`: a host that joins a
//! control plane over the API (see `docs/control-plane.md`, "Remote
//! agents", and [`ferry_control::agents`] for the replica's side).
//!
//! The agent registers, re-adopts the tasks the control plane still
//! counts as its own (what it cannot re-adopt is reported stopped; what
//! the control plane gave up on is released by the caller's
//! [`crate::recovery::release_leftovers`] and crypto-shredded), then polls:
//! each poll is the heartbeat and brings the tasks to start and stop, the
//! control plane's view of the host's tasks (served by the task metadata
//! endpoint) and the security groups' rules. The runtime's events go back
//! in order through an outbox that retries until the control plane has
//! them, so a replica that dies mid-call loses nothing.

mod client;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use ferry_agent::logs::{LogEvent, LogSink, OpenStreamError};
use ferry_agent::net::firewall::Firewall;
use ferry_control::agents::wire::*;
use ferry_control::model::task::stop_code;
use ferry_control::runtime::{EventSink, Reattach, TaskRuntime};
use ferry_proto::net::FirewallRules;
use ferry_proto::plan::TaskEvent;

pub use client::{AgentClient, CallError};

use crate::HostRuntime;

/// The control plane's view of this host's tasks, refreshed at every poll;
/// the task metadata endpoint reads it.
#[derive(Default)]
pub struct TaskViews(RwLock<HashMap<String, TaskView>>);

impl TaskViews {
    fn replace(&self, views: Vec<TaskView>) {
        let map = views.into_iter().map(|v| (v.task_arn.clone(), v)).collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = map;
    }
}

impl ferry_metadata::TaskState for TaskViews {
    fn task(&self, task_arn: &str) -> Option<ferry_metadata::ControlTask> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.get(task_arn).map(control_task)
    }
}

/// The metadata endpoint's view of a task from the control plane's.
pub fn control_task(v: &TaskView) -> ferry_metadata::ControlTask {
    ferry_metadata::ControlTask {
        family: v.family.clone(),
        revision: v.revision.clone(),
        desired_status: v.desired_status.clone(),
        known_status: v.known_status.clone(),
        pull_started_at: v.pull_started_at,
        pull_stopped_at: v.pull_stopped_at,
        availability_zone: v.availability_zone.clone(),
        containers: v
            .containers
            .iter()
            .map(|c| ferry_metadata::ControlContainer {
                name: c.name.clone(),
                arn: c.arn.clone(),
                known_status: c.known_status.clone(),
                cpu: c.cpu,
                memory: c.memory,
                exit_code: c.exit_code,
            })
            .collect(),
    }
}

/// Container output into the Logs service, through the control plane.
pub struct ApiLogs(pub Arc<AgentClient>);

impl LogSink for ApiLogs {
    fn open_stream(
        &self,
        group: &str,
        stream: &str,
        create_group: bool,
    ) -> Result<(), OpenStreamError> {
        let req = OpenLogStreamRequest {
            name: self.0.name().to_owned(),
            group: group.to_owned(),
            stream: stream.to_owned(),
            create_group,
        };
        match self.0.call::<_, serde_json::Value>("OpenLogStream", &req) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                Err(OpenStreamError::NoGroup(group.to_owned()))
            }
            Err(e) => Err(OpenStreamError::Refused(e.to_string())),
        }
    }

    fn put(&self, group: &str, stream: &str, events: &[LogEvent]) {
        let req = PutTaskLogsRequest {
            name: self.0.name().to_owned(),
            group: group.to_owned(),
            stream: stream.to_owned(),
            events: events
                .iter()
                .map(|e| LogLine {
                    timestamp: e.timestamp_ms,
                    message: e.message.clone(),
                })
                .collect(),
        };
        if let Err(e) = self.0.call::<_, serde_json::Value>("PutTaskLogs", &req) {
            // Never the lines themselves: they are task data.
            tracing::warn!(
                "dropping {} log events for {group}/{stream}: {e}",
                events.len()
            );
        }
    }
}

/// What this host says about itself when it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    /// CPU units the machine has.
    pub cpu_units: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// `--cpu-overcommit`.
    pub cpu_overcommit: f64,
    /// `--memory-overcommit`.
    pub memory_overcommit: f64,
    /// `--subnet`.
    pub subnet: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Held {
    /// The runtime was asked to stop it.
    stop_sent: bool,
    /// The runtime reported `Stopped`.
    done: bool,
}

/// Events waiting for the control plane, oldest first.
#[derive(Default)]
struct Outbox {
    queue: Mutex<VecDeque<EventReport>>,
    ready: Condvar,
}

impl Outbox {
    fn push(&self, r: EventReport) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(r);
        self.ready.notify_all();
    }

    /// Up to `max` events, waiting up to `wait` for the first.
    fn peek(&self, max: usize, wait: Duration) -> Vec<EventReport> {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let (q, _) = self
            .ready
            .wait_timeout_while(q, wait, |q| q.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        q.iter().take(max).cloned().collect()
    }

    fn drop_front(&self, n: usize) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let n = n.min(q.len());
        q.drain(..n);
    }

    fn is_empty(&self) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// A registration the control plane accepted.
pub struct Registered {
    /// This agent process (`NAME#RANDOM`).
    pub instance: String,
    /// The control plane's answer.
    pub response: RegisterAgentResponse,
}

/// A host joined to a control plane over the API.
pub struct RemoteAgent {
    client: Arc<AgentClient>,
    runtime: Arc<HostRuntime>,
    firewall: Arc<Firewall>,
    views: Arc<TaskViews>,
    instance: String,
    held: Arc<Mutex<HashMap<String, Held>>>,
    outbox: Arc<Outbox>,
    poll_every: Duration,
    /// Epoch ms of the last poll the control plane answered.
    last_answer: AtomicI64,
    closing: AtomicBool,
    rules: Mutex<Option<FirewallRules>>,
}

/// How many events go in one report.
const BATCH: usize = 100;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl RemoteAgent {
    /// Registers host `client.name()` (retrying until a replica answers,
    /// or failing at once on a refusal).
    pub fn register(client: &AgentClient, me: &Registration) -> Result<Registered, CallError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let instance = format!("{}#{}", client.name(), &id[..12]);
        let req = RegisterAgentRequest {
            name: client.name().to_owned(),
            cpu_units: me.cpu_units,
            memory_mib: me.memory_mib,
            cpu_overcommit: me.cpu_overcommit,
            memory_overcommit: me.memory_overcommit,
            subnet: me.subnet.clone(),
            instance: instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        loop {
            match client.call("RegisterAgent", &req) {
                Ok(response) => return Ok(Registered { instance, response }),
                Err(e @ CallError::Transport { .. }) => {
                    tracing::warn!("registering with the control plane: {e}; retrying");
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Re-adopts the registered host's tasks through `runtime` (what it
    /// holds afterwards, `HostRuntime::holds_volume`, is kept; everything
    /// else of the host's leftovers is to be released).
    pub fn adopt(
        client: Arc<AgentClient>,
        registered: Registered,
        runtime: Arc<HostRuntime>,
        firewall: Arc<Firewall>,
        views: Arc<TaskViews>,
    ) -> Arc<Self> {
        let Registered {
            instance,
            response: resp,
        } = registered;
        let agent = Arc::new(Self {
            client,
            runtime,
            firewall,
            views,
            instance,
            held: Arc::default(),
            outbox: Arc::default(),
            poll_every: Duration::from_millis(resp.poll_millis.clamp(100, 10_000)),
            last_answer: AtomicI64::new(now_ms()),
            closing: AtomicBool::new(false),
            rules: Mutex::new(None),
        });
        let mut adopted = 0;
        for order in resp.tasks {
            let arn = order.plan.task_arn.clone();
            agent.hold(&arn);
            match agent.runtime.reattach(&order.plan, agent.sink(&arn)) {
                Reattach::Adopted => adopted += 1,
                Reattach::Gone { reason } => agent.sink(&arn)(TaskEvent::Stopped {
                    stop_code: order.stop_code_if_gone,
                    stopped_reason: reason,
                }),
            }
        }
        tracing::info!(
            host = %agent.client.name(),
            adopted,
            "registered with the control plane"
        );
        agent
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hold(&self, arn: &str) {
        self.held().entry(arn.to_owned()).or_default();
    }

    /// Where the runtime reports task `arn`'s events: the outbox.
    fn sink(&self, arn: &str) -> EventSink {
        let (held, outbox, arn) = (self.held.clone(), self.outbox.clone(), arn.to_owned());
        Arc::new(move |event: TaskEvent| {
            if matches!(event, TaskEvent::Stopped { .. })
                && let Some(h) = held.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&arn)
            {
                h.done = true;
            }
            outbox.push(EventReport {
                task_arn: arn.clone(),
                event,
            });
        })
    }

    /// Whether the control plane answered a poll within `within`.
    pub fn in_touch(&self, within: Duration) -> bool {
        now_ms() - self.last_answer.load(Ordering::Relaxed) <= within.as_millis() as i64
    }

    /// Runs the poll loop and the event sender on their own threads until
    /// [`RemoteAgent::close`].
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("agent-poll".into())
            .spawn(move || me.poll_loop())?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("agent-events".into())
            .spawn(move || me.send_loop())?;
        Ok(())
    }

    /// Stops polling (no new task starts); events are still sent.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Waits up to `timeout` for every event to reach the control plane;
    /// whether they all did.
    pub fn flush(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        while !self.outbox.is_empty() {
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    fn poll_loop(&self) {
        let mut failing = false;
        while !self.closing.load(Ordering::SeqCst) {
            let held: Vec<HeldTask> = self
                .held()
                .iter()
                .map(|(arn, h)| HeldTask {
                    task_arn: arn.clone(),
                    done: h.done,
                })
                .collect();
            let req = PollAgentRequest {
                name: self.client.name().to_owned(),
                instance: self.instance.clone(),
                held,
            };
            match self.client.call::<_, PollAgentResponse>("PollAgent", &req) {
                Ok(resp) => {
                    if failing {
                        tracing::info!("the control plane answers again");
                        failing = false;
                    }
                    self.last_answer.store(now_ms(), Ordering::Relaxed);
                    self.apply(resp);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("polling the control plane: {e}");
                        failing = true;
                    }
                }
            }
            std::thread::sleep(self.poll_every);
        }
    }

    fn apply(&self, resp: PollAgentResponse) {
        if resp.replaced {
            tracing::error!(
                "another ferry agent registered this host's --name since this one started: two processes may be running tasks as one host"
            );
        }
        self.views.replace(resp.tasks);
        {
            let mut last = self.rules.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref() != Some(&resp.firewall) {
                match self.firewall.set_rules(&resp.firewall) {
                    Ok(()) => *last = Some(resp.firewall),
                    Err(e) => tracing::error!("applying the security-group rules failed: {e}"),
                }
            }
        }
        for arn in resp.forget {
            let mut held = self.held();
            if held.get(&arn).is_some_and(|h| h.done) {
                held.remove(&arn);
            }
        }
        for s in resp.stop {
            let send = match self.held().get_mut(&s.task_arn) {
                Some(h) if !h.stop_sent && !h.done => {
                    h.stop_sent = true;
                    true
                }
                _ => false,
            };
            if send {
                self.runtime.stop(&s.task_arn, &s.stop_code, &s.reason);
            }
        }
        for plan in resp.start {
            let arn = plan.task_arn.clone();
            {
                let mut held = self.held();
                if held.contains_key(&arn) {
                    continue;
                }
                held.insert(arn.clone(), Held::default());
            }
            let events = self.sink(&arn);
            match self.runtime.admit(&plan) {
                Ok(()) => self.runtime.start(plan, events),
                Err(detail) => events(TaskEvent::Stopped {
                    stop_code: stop_code::TASK_FAILED_TO_START.into(),
                    stopped_reason: format!("{}: {detail}", ferry_control::tasks::NO_STORAGE),
                }),
            }
        }
    }

    fn send_loop(&self) {
        let mut failing = false;
        loop {
            let batch = self.outbox.peek(BATCH, Duration::from_secs(1));
            if batch.is_empty() {
                if self.closing.load(Ordering::SeqCst) && self.outbox.is_empty() {
                    // Keep serving a flush after close: a drain's events
                    // come after it.
                    std::thread::sleep(Duration::from_millis(200));
                }
                continue;
            }
            let n = batch.len();
            let req = ReportTaskEventsRequest {
                name: self.client.name().to_owned(),
                events: batch,
            };
            match self
                .client
                .call::<_, serde_json::Value>("ReportTaskEvents", &req)
            {
                Ok(_) => {
                    self.outbox.drop_front(n);
                    failing = false;
                }
                Err(e @ CallError::Refused { .. }) if e.code() != Some("ServerException") => {
                    // Refused for good (the replica checks each event and
                    // skips what is not this host's): retrying would block
                    // every later event.
                    tracing::error!("the control plane refused {n} task events: {e}");
                    self.outbox.drop_front(n);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("reporting task events: {e}; retrying");
                        failing = true;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}
