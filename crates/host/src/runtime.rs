//! The control plane's `TaskRuntime` over the agent and task volumes.
//!
//! `start` hands the plan to the agent with [`TaskVolumes`] as the task's
//! storage: the agent resolves images, then attaches the volume (KMS data
//! key, LUKS2 format, mount), runs the containers, and after everything else
//! is released detaches it (unmount, crypto-shred, retire the grant) before
//! it reports `Stopped`.
//!
//! Shutdown and restart: each task's containers belong to its shim (a
//! process of its own, see `ferry_agent::shim`) and its volume to its
//! `ferry volume serve`, so both outlive the server. A server that exits
//! leaves its tasks running ([`HostRuntime::leave_running`]: volumes and
//! EFS mounts stay mounted) unless told to stop them
//! (`--stop-tasks-on-exit`: [`HostRuntime::drain`], stop code
//! `TerminationNotice`, volumes crypto-shredded). At the next start
//! `reattach` re-adopts each task whose containers had all started and
//! whose shim answers: the agent rebuilds its supervisor, [`TaskVolumes`]
//! its volume entry (from disk), the metadata endpoint is opened again.
//! Everything else is `Gone` and released by [`crate::recovery`], which
//! runs after reconciliation and skips what was adopted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ferry_agent::{Agent, TaskHandle};
use ferry_control::runtime::{EventSink, HostStop, Reattach, TaskRuntime};
use ferry_metadata::{ContainerInfo, Endpoints, NetworkInfo, OpenTask, TaskInfo};
use ferry_proto::plan::{TaskEvent, TaskPlan};

use crate::task_volumes::TaskVolumes;

/// Why a task that was running when the server stopped is gone.
const RESTART_REASON: &str = "the ferry server restarted while the task ran and could not re-adopt it; its resources were released";

/// Runs tasks on this host.
pub struct HostRuntime {
    agent: Agent,
    storage: Arc<TaskVolumes>,
    running: Arc<Mutex<HashMap<String, Arc<TaskHandle>>>>,
    metadata: Option<Arc<Endpoints>>,
    host_stop: Arc<std::sync::OnceLock<HostStop>>,
    /// Set by [`HostRuntime::drain`]: a start that comes after it (a
    /// launch that raced the shutdown) is refused before anything of the
    /// task exists, so nothing can outlive the server's drain.
    draining: AtomicBool,
    /// Starts past that check and not yet tracked: the drain waits for
    /// them (either a start sees `draining`, or the drain sees it here).
    starting: AtomicUsize,
}

/// The stop code and reason of tasks stopped by the server's shutdown.
const SHUTDOWN_CODE: &str = "TerminationNotice";
const SHUTDOWN_REASON: &str = "the ferry server is shutting down";

/// The stop code of a task whose storage failed under it: ECS's code for
/// a task the platform's infrastructure took away (docs/volume-engine.md).
const STORAGE_FAILED_CODE: &str = "TerminationNotice";

impl HostRuntime {
    /// A runtime over `agent` and `storage`; release what a previous server
    /// left first ([`crate::recovery::release_leftovers`]).
    pub fn new(agent: Agent, storage: Arc<TaskVolumes>) -> Self {
        let host_stop: Arc<std::sync::OnceLock<HostStop>> = Arc::default();
        let hs = host_stop.clone();
        storage.on_storage_failure(Arc::new(move |arn: &str, reason: &str| {
            if let Some(stop) = hs.get() {
                stop(arn, STORAGE_FAILED_CODE, reason);
            }
        }));
        Self {
            agent,
            storage,
            running: Arc::new(Mutex::new(HashMap::new())),
            metadata: None,
            host_stop,
            draining: AtomicBool::new(false),
            starting: AtomicUsize::new(0),
        }
    }

    /// Serves the task metadata endpoint to every task started from now
    /// on (see `docs/runtime.md`, "Task metadata endpoint").
    pub fn with_metadata(mut self, endpoints: Arc<Endpoints>) -> Self {
        self.metadata = Some(endpoints);
        self
    }
}

/// Keeps a task's metadata endpoint in step with its events: opened when
/// the network is up (before any container starts), closed at `Stopped`.
struct MetadataHook {
    endpoints: Arc<Endpoints>,
    storage: Arc<TaskVolumes>,
    agent: Agent,
    plan: TaskPlan,
    /// Whether this run opened the endpoint: a refused duplicate run of a
    /// task id reports `Stopped` too and must not close the running one's.
    opened: AtomicBool,
}

impl MetadataHook {
    fn on(&self, ev: &TaskEvent) {
        let (md, plan) = (&self.endpoints, &self.plan);
        match ev {
            TaskEvent::Provisioned { private_ip } => {
                let netns_name = ferry_agent::net::netns_name(&plan.task_id);
                let open = OpenTask {
                    info: self.info(private_ip),
                    netns_path: PathBuf::from("/run/netns").join(&netns_name),
                    netns_name,
                };
                match md.open(open) {
                    Ok(()) => self.opened.store(true, Ordering::SeqCst),
                    // The task runs without it, as a task whose endpoint
                    // is unreachable would on ECS.
                    Err(e) => tracing::warn!(task = %plan.task_arn, "task metadata endpoint: {e}"),
                }
            }
            TaskEvent::ContainerRunning { name } => md.container_started(&plan.task_id, name),
            TaskEvent::ContainerExited {
                name, exit_code, ..
            } => md.container_exited(&plan.task_id, name, *exit_code),
            TaskEvent::Stopped { .. } => {
                if self.opened.swap(false, Ordering::SeqCst) {
                    md.close(&plan.task_id);
                }
            }
            // The metadata endpoint reports no pull times (yet).
            TaskEvent::Running
            | TaskEvent::ContainerHealth { .. }
            | TaskEvent::PullStarted
            | TaskEvent::PullStopped { .. } => {}
        }
    }

    /// The endpoint's facts about the task that the host knows (the
    /// interface plan gives MAC, subnet and gateway).
    fn info(&self, private_ip: &str) -> TaskInfo {
        let plan = &self.plan;
        TaskInfo {
            task_arn: plan.task_arn.clone(),
            task_id: plan.task_id.clone(),
            cluster_arn: format!(
                "arn:aws:ecs:{}:{}:cluster/{}",
                plan.region, plan.account, plan.cluster_name
            ),
            region: plan.region.clone(),
            cpu_units: plan.cpu_units,
            memory_mib: plan.memory_mib,
            ephemeral_storage_gib: plan.ephemeral_storage_gib,
            task_root: self.storage.mount_point(plan),
            cgroup: format!("{}/{}", self.agent.cgroup_parent(), plan.task_id),
            containers: plan
                .containers
                .iter()
                .map(|c| ContainerInfo {
                    name: c.name.clone(),
                    docker_id: docker_id(plan, &c.name),
                    image: c.image.clone(),
                    // The agent resolved every image before Provisioned.
                    image_id: self
                        .agent
                        .images()
                        .resolve(&c.image)
                        .map(|i| i.manifest_digest)
                        .unwrap_or_default(),
                })
                .collect(),
            // The subnet, gateway and MAC are the task's interface plan's
            // (the VPC's view, as on Fargate), not derived from the address.
            network: match &plan.network {
                Some(n) => NetworkInfo {
                    ipv4: private_ip.to_owned(),
                    mac: n.mac.clone(),
                    subnet_cidr: n.subnet_cidr.to_string(),
                    gateway: format!("{}/{}", n.gateway, n.subnet_cidr.prefix()),
                },
                None => NetworkInfo {
                    ipv4: private_ip.to_owned(),
                    ..NetworkInfo::default()
                },
            },
        }
    }
}

/// A container's id on this host (runc's id, the metadata URI's last
/// component, `DockerId`).
fn docker_id(plan: &TaskPlan, name: &str) -> String {
    format!("{}-{}", plan.task_id, name)
}

/// Adds the metadata URIs to every container's environment (after the
/// task definition's, as ECS does, so they win).
fn add_metadata_env(plan: &mut TaskPlan) {
    let ids: Vec<String> = plan
        .containers
        .iter()
        .map(|c| docker_id(plan, &c.name))
        .collect();
    for (c, id) in plan.containers.iter_mut().zip(ids) {
        c.environment.retain(|(k, _)| {
            k != "ECS_CONTAINER_METADATA_URI_V4" && k != "ECS_CONTAINER_METADATA_URI"
        });
        c.environment.push((
            "ECS_CONTAINER_METADATA_URI_V4".into(),
            ferry_metadata::uri_v4(&id),
        ));
        c.environment.push((
            "ECS_CONTAINER_METADATA_URI".into(),
            ferry_metadata::uri_v3(&id),
        ));
    }
}

impl HostRuntime {
    /// Stops every running task and waits (up to `timeout`) until all are
    /// released. Returns how many were still running at the deadline.
    /// From its first call no task starts ([`TaskRuntime::start`] reports
    /// it stopped at once), and each look stops the tasks it has not asked
    /// yet: a start that was already past that check when the drain began
    /// is stopped too, instead of outliving the server with its address
    /// and volume.
    pub fn drain(&self, timeout: std::time::Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + timeout;
        let mut asked = std::collections::HashSet::new();
        loop {
            let running = self
                .running
                .lock()
                .map(|m| {
                    m.iter()
                        .map(|(arn, h)| (arn.clone(), h.clone()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let starting = self.starting.load(Ordering::SeqCst);
            if (running.is_empty() && starting == 0) || std::time::Instant::now() >= deadline {
                return running.len() + starting;
            }
            for (arn, h) in running {
                if asked.insert(arn) {
                    h.stop(SHUTDOWN_CODE, SHUTDOWN_REASON);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl HostRuntime {
    /// The running tasks' handles, outside the map's lock.
    fn handles(&self) -> Vec<Arc<TaskHandle>> {
        self.running
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Leaves every task running at server exit: volumes and EFS mounts
    /// stay mounted (their handles are forgotten, not dropped), shims keep
    /// the containers and buffer their logs until the next server.
    pub fn leave_running(&self) -> usize {
        self.storage.leave_mounted();
        let handles = self.handles();
        // Every line a shim already sent reaches the log store before this
        // process exits; later ones wait in the shim.
        for h in &handles {
            h.detach();
        }
        handles.len()
    }

    /// The task volumes this runtime attaches (what the web console asks
    /// about a task's storage).
    pub fn volumes(&self) -> &Arc<TaskVolumes> {
        &self.storage
    }

    /// Whether this server holds task `task_id`'s volume (re-adopted
    /// tasks' volumes are skipped by recovery).
    pub fn holds_volume(&self, task_id: &str) -> bool {
        self.storage.holds(task_id)
    }

    /// The metadata hook of a task, if the endpoint is served.
    fn hook(&self, plan: &TaskPlan) -> Option<Arc<MetadataHook>> {
        self.metadata.as_ref().map(|md| {
            Arc::new(MetadataHook {
                endpoints: md.clone(),
                storage: self.storage.clone(),
                agent: self.agent.clone(),
                // The hook lives as long as the task: it keeps no
                // secret values.
                plan: plan.without_secrets(),
                opened: AtomicBool::new(false),
            })
        })
    }

    /// Keeps the task's handle until its supervisor is done.
    fn track(&self, arn: String, handle: TaskHandle) {
        let task_id = handle.task_id().to_owned();
        let handle = Arc::new(handle);
        if let Ok(mut m) = self.running.lock() {
            m.insert(arn.clone(), handle.clone());
        }
        // Forget the handle once the task's supervisor is done.
        let running = self.running.clone();
        let storage = self.storage.clone();
        std::thread::spawn(move || {
            if let Some(o) = handle.wait() {
                log_outcome(&arn, &o);
            }
            storage.release(&task_id);
            if let Ok(mut m) = running.lock() {
                m.remove(&arn);
            }
        });
    }
}

/// `events` behind the metadata hook, if any.
fn hooked(hook: Option<Arc<MetadataHook>>, events: EventSink) -> Box<dyn Fn(TaskEvent) + Send> {
    match hook {
        Some(hook) => Box::new(move |ev: TaskEvent| {
            hook.on(&ev);
            events(ev)
        }),
        None => Box::new(move |ev: TaskEvent| events(ev)),
    }
}

impl TaskRuntime for HostRuntime {
    fn start(&self, mut plan: TaskPlan, events: EventSink) {
        self.starting.fetch_add(1, Ordering::SeqCst);
        if self.draining.load(Ordering::SeqCst) {
            self.starting.fetch_sub(1, Ordering::SeqCst);
            events(TaskEvent::Stopped {
                stop_code: SHUTDOWN_CODE.into(),
                stopped_reason: SHUTDOWN_REASON.into(),
            });
            return;
        }
        let arn = plan.task_arn.clone();
        if self.metadata.is_some() {
            add_metadata_env(&mut plan);
        }
        let events = hooked(self.hook(&plan), events);
        let handle = self
            .agent
            .run_task_with_storage(plan, self.storage.clone(), events);
        self.track(arn, handle);
        self.starting.fetch_sub(1, Ordering::SeqCst);
    }

    fn stop(&self, task_arn: &str, stop_code: &str, reason: &str) {
        let handle = self
            .running
            .lock()
            .ok()
            .and_then(|m| m.get(task_arn).cloned());
        if let Some(h) = handle {
            h.stop(stop_code, reason);
        }
    }

    fn admit(&self, plan: &TaskPlan) -> Result<(), String> {
        self.storage.admit(plan)
    }

    fn set_host_stop(&self, stop: HostStop) {
        let _ = self.host_stop.set(stop);
    }

    fn reattach(&self, plan: &TaskPlan, events: EventSink) -> Reattach {
        let gone = |why: String| {
            tracing::info!(task = %plan.task_arn, "not re-adopted: {why}");
            Reattach::Gone {
                reason: RESTART_REASON.into(),
            }
        };
        let rec = match self.agent.adoptable(&plan.task_id) {
            Ok(r) => r,
            Err(e) => return gone(e),
        };
        if let Err(e) = self.storage.adopt(plan) {
            return gone(e);
        }
        // The endpoint again, before any event of the adopted task.
        let hook = self.hook(plan);
        if let Some(h) = &hook {
            h.on(&TaskEvent::Provisioned {
                private_ip: rec.ip.clone().unwrap_or_default(),
            });
            for c in &plan.containers {
                h.on(&TaskEvent::ContainerRunning {
                    name: c.name.clone(),
                });
            }
        }
        let wrapped = hooked(hook.clone(), events);
        match self
            .agent
            .reattach_task(plan.clone(), self.storage.clone(), wrapped)
        {
            Ok((handle, seen)) => {
                for (name, code) in seen {
                    if let (Some(h), Some(exit_code)) = (&hook, code) {
                        h.on(&TaskEvent::ContainerExited {
                            name,
                            exit_code,
                            reason: None,
                        });
                    }
                }
                self.track(plan.task_arn.clone(), handle);
                tracing::info!(task = %plan.task_arn, "re-adopted");
                Reattach::Adopted
            }
            Err(e) => {
                if let Some(h) = &hook {
                    h.on(&TaskEvent::Stopped {
                        stop_code: String::new(),
                        stopped_reason: String::new(),
                    });
                }
                self.storage.forget(plan);
                gone(e)
            }
        }
    }
}

/// One line per finished task: how it ended and what each start-up phase
/// cost (bench/task.sh reads these).
fn log_outcome(arn: &str, o: &ferry_agent::TaskOutcome) {
    let t = &o.timings;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    tracing::info!(
        task = arn,
        stop_code = %o.stop_code,
        resolve_ms = ms(t.resolve),
        volume_ms = ms(t.volume),
        cgroup_ms = ms(t.cgroup),
        network_ms = ms(t.network),
        unpack_ms = ms(t.unpack),
        bundles_ms = ms(t.bundles),
        to_running_ms = ms(t.to_running),
        cleanup_ms = ms(t.cleanup),
        "task ended"
    );
}
