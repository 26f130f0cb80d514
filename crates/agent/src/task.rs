//! The agent's entry point: [`Agent::run_task`] runs a [`TaskPlan`] in a
//! supervisor thread on a directory the caller provides (the task's mounted,
//! encrypted volume) and reports [`TaskEvent`]s; [`TaskHandle::stop`] stops it.
//!
//! Layout under `task_root` (everything the task writes lives there):
//!
//! ```text
//! images/<manifest-hex16>/       the image, unpacked once per task
//! containers/<name>/config.json  OCI bundle; rootfs/ is the overlay mount,
//! containers/<name>/upper, work  its writable layer
//! volumes/<name>/                task volumes without a host path, and
//!                                EFS volumes (bound there by TaskStorage)
//! etc/{hosts,hostname,resolv.conf}
//! ```
//!
//! Host resources (named from the task id, all released before `Stopped`):
//! network namespace `ferry-<task_id>`, CNI veth/address/masquerade rules,
//! cgroup `<cgroup_parent>/<task_id>`, runc containers `<task_id>-<name>`,
//! overlay mounts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bundle::{self, BundleInput};
use crate::cgroup::TaskCgroup;
use crate::health::{self, ExecProbe, Timing};
use crate::image::pull::Access;
use crate::image::puller::Puller;
use crate::image::{Image, ImageError, ImageStore, Pin, Reference, unpack};
use crate::logs::{self, LogSink};
use crate::mounts;
use crate::net::firewall::{Firewall, Member};
use crate::net::{NetworkConfig, NetworkDriver, TaskNetwork};
use crate::recovery::TaskRecord;
use crate::runc::{self, Runc};
use crate::shim::{self, ShimClient};
use crate::userns::{self, IdRange, TaskView, UsernsMode};
use ferry_proto::plan::{ContainerPlan, HealthStatus, TaskEvent, TaskPlan, VolumeKind};
use ferry_proto::{FailureCode, TaskFailure};
use zeroize::Zeroize;

/// Host-side settings of the agent.
pub struct AgentConfig {
    /// The local image store (`DATA_DIR/images`).
    pub images: ImageStore,
    /// Host state: runc's `--root` and CNI address leases.
    pub state_dir: PathBuf,
    /// The OCI runtime binary (runc or crun: they take the same commands);
    /// [`runc::resolve`] picks one.
    pub runtime: PathBuf,
    /// Task network settings (driver, CNI plugin directory, name).
    pub network: NetworkConfig,
    /// Parent cgroup of all tasks (`ferry`).
    pub cgroup_parent: String,
    /// Most processes (and threads) one task may have: its cgroup's
    /// `pids.max`, so a fork bomb in a task cannot exhaust the host's.
    pub task_pids_max: u32,
    /// Where `awslogs` container output goes.
    pub log_sink: Arc<dyn LogSink>,
    /// ferry's own registry: images on its host are pulled from its
    /// listener.
    pub own_registry: Option<OwnRegistry>,
    /// Whether container root runs as an unprivileged host uid (a user
    /// namespace per task); `Auto` is decided once by [`Agent::new`].
    pub userns: UsernsMode,
    /// The binary run as each task's shim (`EXE shim ...`: the ferry binary).
    pub shim_exe: PathBuf,
    /// Where the shims' sockets are (`DATA_DIR/run/shims`).
    pub shim_dir: PathBuf,
}

/// ferry's own registry, as tasks name it and as the agent reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnRegistry {
    /// The registry host in image names: `ACCOUNT.dkr.ecr.REGION.amazonaws.com`.
    pub host: String,
    /// Where it is served: `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("images", &self.images)
            .field("state_dir", &self.state_dir)
            .field("runtime", &self.runtime)
            .field("network", &self.network)
            .field("cgroup_parent", &self.cgroup_parent)
            .field("own_registry", &self.own_registry)
            .field("userns", &self.userns)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// Defaults for a server data directory: `images` (the sealed store in
    /// `DATA_DIR/images`, see [`ImageStore::open`]),
    /// state in `DATA_DIR/agent`, `runc` (the server picks the runtime once
    /// with [`runc::resolve`]), task network `ferry0` made with netlink,
    /// cgroup parent `ferry`.
    pub fn new(
        data_dir: &Path,
        images: ImageStore,
        log_sink: Arc<dyn LogSink>,
    ) -> Result<Self, AgentError> {
        let state_dir = data_dir.join("agent");
        Ok(Self {
            images,
            network: NetworkConfig::new("ferry0"),
            state_dir,
            runtime: PathBuf::from("runc"),
            cgroup_parent: "ferry".into(),
            task_pids_max: DEFAULT_TASK_PIDS_MAX,
            log_sink,
            own_registry: None,
            userns: UsernsMode::Auto,
            shim_exe: std::env::current_exe()
                .map_err(|e| AgentError::Host(format!("locating the ferry binary: {e}")))?,
            shim_dir: data_dir.join("run").join("shims"),
        })
    }
}

/// Default `pids.max` of a task: far above what a service needs, far below
/// what would starve the host.
pub const DEFAULT_TASK_PIDS_MAX: u32 = 1024;

/// Errors creating the agent (task failures are reported as events).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The image store could not be opened.
    #[error(transparent)]
    Images(#[from] ImageError),
    /// The host is missing something the agent needs.
    #[error("{0}")]
    Host(String),
}

/// Runs tasks. Cheap to clone; share one per host.
#[derive(Clone, Debug)]
pub struct Agent {
    cfg: Arc<AgentConfig>,
    /// Ids of tasks with a live supervisor (host resources are named by
    /// task id, so a second run of the same id must not touch them).
    active: Arc<Mutex<HashSet<String>>>,
    /// Pulls in flight, shared by every task of this agent.
    pulls: Arc<Puller>,
    /// The task network's security-group firewall.
    firewall: Arc<Firewall>,
}

impl Agent {
    /// Checks the host (runtime binary, CNI plugins) and creates the state
    /// directory. Containers are the children of their task's shim (a
    /// child subreaper), not of this process: a container whose shim was
    /// killed goes to init, not to a server that would not reap it.
    pub fn new(mut config: AgentConfig) -> Result<Self, AgentError> {
        match config.network.driver {
            NetworkDriver::Cni => {
                let mut plugins = vec!["ptp", "static", "tuning", "loopback"];
                if config.network.firewall {
                    plugins.push("firewall");
                }
                for p in plugins {
                    let bin = config.network.cni_bin_dir.join(p);
                    if !bin.exists() {
                        return Err(AgentError::Host(format!(
                            "CNI plugin {} is missing (install containernetworking-plugins)",
                            bin.display()
                        )));
                    }
                }
            }
            NetworkDriver::Netlink if config.network.firewall => {
                crate::net::netlink::ensure_forward_accepts()
                    .map_err(|e| AgentError::Host(e.to_string()))?;
            }
            NetworkDriver::Netlink => {}
        }
        // The security-group firewall's tools (scripts/setup installs them).
        for (tool, package) in [("nft", "nftables"), ("conntrack", "conntrack")] {
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .map_err(|e| {
                    AgentError::Host(format!("{tool} cannot run: {e} (install {package})"))
                })?;
        }
        std::process::Command::new(&config.runtime)
            .arg("--version")
            .output()
            .map_err(|e| {
                AgentError::Host(format!(
                    "OCI runtime {} cannot run: {e}",
                    config.runtime.display()
                ))
            })?;
        let d = config.state_dir.join("runc");
        fs::create_dir_all(&d)
            .map_err(|e| AgentError::Host(format!("creating {}: {e}", d.display())))?;
        config.userns = match (config.userns, userns::probe()) {
            (UsernsMode::Off, _) => {
                tracing::info!("user namespaces off (--userns=off): container root is host root");
                UsernsMode::Off
            }
            (_, Ok(())) => {
                tracing::info!(
                    "user namespaces on: each task's container root is an unprivileged host uid"
                );
                UsernsMode::On
            }
            (UsernsMode::On, Err(why)) => {
                return Err(AgentError::Host(format!(
                    "user namespaces were asked for (--userns=on) but {why}"
                )));
            }
            (UsernsMode::Auto, Err(why)) => {
                tracing::warn!("user namespaces off: {why}; container root is host root");
                UsernsMode::Off
            }
        };
        Ok(Self {
            firewall: Arc::new(Firewall::new(&config.network.network_name)),
            cfg: Arc::new(config),
            active: Arc::default(),
            pulls: Arc::default(),
        })
    }

    /// The task network's security-group firewall: the VPC service sets
    /// its rules ([`Firewall::set_rules`]); tasks join and leave it.
    pub fn firewall(&self) -> &Arc<Firewall> {
        &self.firewall
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.cfg.images
    }

    /// The parent cgroup of all tasks (a task's is `PARENT/TASK_ID`).
    pub fn cgroup_parent(&self) -> &str {
        &self.cfg.cgroup_parent
    }

    /// Tasks that hold host resources but have no supervisor in this
    /// process (left by a crash or restart of the server).
    pub fn orphaned_tasks(&self) -> Vec<String> {
        let active = self.active.lock().map(|a| a.clone()).unwrap_or_default();
        TaskRecord::list(&self.cfg.state_dir)
            .into_iter()
            .filter(|id| !active.contains(id))
            .collect()
    }

    /// Releases everything an orphaned task holds on the host: kills and
    /// deletes its containers, unmounts its overlays, tears down its
    /// network and removes its cgroup and record. Its storage (volume) is
    /// the caller's to release afterwards. Returns what could not be done.
    pub fn cleanup_orphan(&self, task_id: &str) -> Result<(), Vec<String>> {
        if self
            .active
            .lock()
            .map(|a| a.contains(task_id))
            .unwrap_or(true)
        {
            return Err(vec![format!("task {task_id} is running in this agent")]);
        }
        let rec = TaskRecord::load(&self.cfg.state_dir, task_id)
            .map_err(|e| vec![format!("task {task_id}: no record: {e}")])?;
        let runc = Runc {
            bin: self.cfg.runtime.clone(),
            root: self.cfg.state_dir.join("runc"),
        };
        let mut errs = Vec::new();
        for name in &rec.containers {
            let id = format!("{task_id}-{name}");
            if let Ok((_, pid)) = runc.state_pid(&id) {
                if let Err(e) = runc.delete(&id) {
                    errs.push(e.to_string());
                }
                // Its init may have been reparented to us (subreaper).
                runc::reap(pid);
            }
        }
        // Its shim, with nothing left to supervise, exits when asked.
        let socket = shim::socket_path(&self.cfg.shim_dir, task_id);
        if socket.exists() {
            if let Err(e) = shim::shutdown_at(&socket) {
                tracing::warn!(task = task_id, "stopping the task's shim: {e}");
            }
            let _ = fs::remove_file(&socket);
        }
        // The crash may have come before or after any of the overlays was
        // mounted; unmount is idempotent, so just try each. A record saved
        // before the storage was attached has an empty task_root (and no
        // overlays): its relative paths would resolve against this
        // process's working directory, so skip them.
        if let Err(e) = TaskView::release(task_id) {
            errs.push(e);
        }
        if rec.task_root.is_absolute() {
            for name in &rec.containers {
                let m = rec.task_root.join("containers").join(name).join("rootfs");
                if let Err(e) = mounts::unmount(&m) {
                    errs.push(e.to_string());
                }
            }
        }
        if let Err(e) = self.firewall.remove_member(task_id) {
            errs.push(e.to_string());
        }
        if let Some(ns) = &rec.netns {
            let net = TaskNetwork::restore(
                &self.cfg.network,
                rec.network_driver.unwrap_or(NetworkDriver::Cni),
                ns,
                task_id,
                rec.ip.clone(),
                rec.cni_result.clone(),
            );
            if let Err(e) = net.teardown() {
                errs.push(e.to_string());
            }
        }
        if let Err(e) = TaskCgroup::create_handle(&self.cfg.cgroup_parent, task_id).remove() {
            errs.push(e.to_string());
        }
        if errs.is_empty() {
            TaskRecord::remove(&self.cfg.state_dir, task_id).map_err(|e| vec![e.to_string()])?;
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// Starts `plan` on `task_root` (the task's mounted volume, an empty
    /// directory the caller owns and removes after `Stopped`). Returns at
    /// once; `events` gets `Provisioned`, `ContainerRunning`, `Running`,
    /// `ContainerExited` and finally exactly one `Stopped`, from the task's
    /// supervisor thread.
    pub fn run_task<F>(&self, plan: TaskPlan, task_root: &Path, events: F) -> TaskHandle
    where
        F: Fn(TaskEvent) + Send + 'static,
    {
        self.spawn(plan, Root::Given(task_root.to_path_buf()), events)
    }

    /// Like [`Agent::run_task`], but the agent attaches the task's storage
    /// itself ([`TaskStorage::attach`], after the plan is validated and
    /// before the network) and detaches it after every other resource of
    /// the task is released, just before `Stopped`. An attach error (KMS key
    /// disabled, no disk space, ...) ends the task with `TaskFailedToStart`
    /// and that error as the reason.
    pub fn run_task_with_storage<F>(
        &self,
        plan: TaskPlan,
        storage: Arc<dyn TaskStorage>,
        events: F,
    ) -> TaskHandle
    where
        F: Fn(TaskEvent) + Send + 'static,
    {
        self.spawn(plan, Root::Storage(storage), events)
    }

    /// The host record of a task a previous server ran, if it may be
    /// re-adopted: every container had started (the record says so). The
    /// caller re-adopts the task's storage at `task_root` before
    /// [`Agent::reattach_task`].
    pub fn adoptable(&self, task_id: &str) -> Result<TaskRecord, String> {
        let rec = TaskRecord::load(&self.cfg.state_dir, task_id)
            .map_err(|e| format!("no host record of the task: {e}"))?;
        if !rec.started {
            return Err("the task was still starting".into());
        }
        if !shim::socket_path(&self.cfg.shim_dir, task_id).exists() {
            return Err("the task's shim is gone".into());
        }
        Ok(rec)
    }

    /// Re-adopts a task a previous server started (see
    /// [`Agent::adoptable`]): connects to its shim, rebuilds its supervisor
    /// from the record and the shim's view (running containers stay
    /// running; an exit the shim kept is reported now), restarts health
    /// checks. `storage` must already hold the task's volume again; it is
    /// detached at the end as for any task. Returns the handle and, per
    /// container, its exit code if it had exited and been recorded before.
    #[allow(clippy::type_complexity)]
    pub fn reattach_task<F>(
        &self,
        plan: TaskPlan,
        storage: Arc<dyn TaskStorage>,
        events: F,
    ) -> Result<(TaskHandle, Vec<(String, Option<i32>)>), String>
    where
        F: Fn(TaskEvent) + Send + 'static,
    {
        let rec = self.adoptable(&plan.task_id)?;
        // A task an older server started is on the old bridge, outside
        // the firewall: it is not re-adopted (docs/runtime.md).
        if plan.network.is_none() {
            return Err(
                "the task has no network interface plan (started by an older server)".into(),
            );
        }
        let fresh = self
            .active
            .lock()
            .map(|mut a| a.insert(plan.task_id.clone()))
            .unwrap_or(false);
        if !fresh {
            return Err(format!(
                "task {} is already running on this agent",
                plan.task_id
            ));
        }
        let (active, id) = (self.active.clone(), plan.task_id.clone());
        let forget = move || {
            if let Ok(mut a) = active.lock() {
                a.remove(&id);
            }
        };
        let (tx, rx) = mpsc::channel();
        let socket = shim::socket_path(&self.cfg.shim_dir, &plan.task_id);
        let (client, states) = match ShimClient::connect(
            &socket,
            log_routes(&plan),
            self.cfg.log_sink.clone(),
            exit_forwarder(&plan, tx.clone()),
        ) {
            Ok(c) => c,
            Err(e) => {
                forget();
                return Err(format!("the task's shim does not answer: {e}"));
            }
        };
        let runc = Runc {
            bin: self.cfg.runtime.clone(),
            root: self.cfg.state_dir.join("runc"),
        };
        let mut exit_codes = BTreeMap::new();
        let mut seen = Vec::new();
        let ctrs: Vec<Ctr> = plan
            .containers
            .iter()
            .map(|c| {
                let st = states.iter().find(|s| s.name == c.name);
                let state = match st {
                    None => State::Skipped,
                    Some(s) => match (s.exit, s.acked) {
                        (Some(code), true) => {
                            exit_codes.insert(c.name.clone(), code);
                            State::Exited(code)
                        }
                        // An exit not yet recorded arrives as an event.
                        _ => State::Running,
                    },
                };
                seen.push((
                    c.name.clone(),
                    match state {
                        State::Exited(code) => Some(code),
                        _ => None,
                    },
                ));
                Ctr {
                    stop_signal: rec
                        .stop_signals
                        .get(&c.name)
                        .cloned()
                        .unwrap_or_else(|| "SIGTERM".into()),
                    plan: c.clone(),
                    id: format!("{}-{}", plan.task_id, c.name),
                    bundle: rec.task_root.join("containers").join(&c.name),
                    state,
                    created: st.is_some(),
                    deadline: None,
                    killed_at: None,
                    started_at: Some(Instant::now()),
                    health: HealthStatus::Unknown,
                    health_cancel: None,
                    health_thread: None,
                }
            })
            .collect();
        let net = rec.netns.as_ref().map(|ns| {
            TaskNetwork::restore(
                &self.cfg.network,
                rec.network_driver.unwrap_or(NetworkDriver::Cni),
                ns,
                &plan.task_id,
                rec.ip.clone(),
                rec.cni_result.clone(),
            )
        });
        // The task rejoins the firewall (rendered once the VPC service
        // sets the rules after re-adoption).
        if let (Some(n), Some(ifp)) = (&net, &plan.network)
            && let Some(m) = member(&plan.task_id, n, ifp)
            && let Err(e) = self.firewall.add_member(m)
        {
            tracing::warn!(task = %plan.task_id, "re-adding the task to the firewall: {e}");
        }
        // The images the task runs are pinned again, as at its start, so
        // the image store's limit never collects one under a running task
        // (an image already gone is not needed: the task runs from its own
        // unpacked copy).
        let pins: Vec<Pin> = plan
            .containers
            .iter()
            .filter_map(|c| self.cfg.images.resolve_pinned(&c.image).ok())
            .map(|(_, pin)| pin)
            .collect();
        let sup = Supervisor {
            active: self.active.clone(),
            pulls: self.pulls.clone(),
            firewall: self.firewall.clone(),
            duplicate: false,
            cfg: self.cfg.clone(),
            runc,
            root: rec.task_root.clone(),
            source: Root::Storage(storage),
            attached: true,
            events: Box::new(events),
            tx: tx.clone(),
            rx,
            cgroup: Some(TaskCgroup::create_handle(
                &self.cfg.cgroup_parent,
                &plan.task_id,
            )),
            oom_kills_seen: 0,
            net,
            overlays: plan
                .containers
                .iter()
                .map(|c| {
                    rec.task_root
                        .join("containers")
                        .join(&c.name)
                        .join("rootfs")
                })
                .collect(),
            ctrs,
            stop: None,
            exit_codes,
            timings: StartTimings::default(),
            started_at: Instant::now(),
            pins,
            shim: Arc::new(Mutex::new(Some(Arc::new(client)))),
            running_sent: true,
            record: Some(rec),
            plan,
        };
        let task_id = sup.plan.task_id.clone();
        let shim = sup.shim.clone();
        let join = std::thread::Builder::new()
            .name(format!("task-{}", task_id.get(..8).unwrap_or(&task_id)))
            .spawn(move || sup.run_adopted())
            .map_err(|e| {
                forget();
                format!("spawning the task supervisor: {e}")
            })?;
        Ok((
            TaskHandle {
                task_id,
                tx,
                join: Mutex::new(Some(join)),
                shim,
            },
            seen,
        ))
    }

    fn spawn<F>(&self, plan: TaskPlan, source: Root, events: F) -> TaskHandle
    where
        F: Fn(TaskEvent) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let duplicate = !self
            .active
            .lock()
            .map(|mut a| a.insert(plan.task_id.clone()))
            .unwrap_or(false);
        let sup = Supervisor {
            active: self.active.clone(),
            pulls: self.pulls.clone(),
            firewall: self.firewall.clone(),
            duplicate,
            cfg: self.cfg.clone(),
            runc: Runc {
                bin: self.cfg.runtime.clone(),
                root: self.cfg.state_dir.join("runc"),
            },
            root: match &source {
                Root::Given(p) => p.clone(),
                Root::Storage(_) => PathBuf::new(),
            },
            source,
            record: None,
            attached: false,
            events: Box::new(events),
            tx: tx.clone(),
            rx,
            cgroup: None,
            oom_kills_seen: 0,
            net: None,
            ctrs: Vec::new(),
            overlays: Vec::new(),
            stop: None,
            exit_codes: BTreeMap::new(),
            timings: StartTimings::default(),
            started_at: Instant::now(),
            pins: Vec::new(),
            shim: ShimSlot::default(),
            running_sent: false,
            plan,
        };
        let task_id = sup.plan.task_id.clone();
        let shim = sup.shim.clone();
        let join = std::thread::Builder::new()
            .name(format!("task-{}", task_id.get(..8).unwrap_or(&task_id)))
            .spawn(move || sup.run());
        let join = match join {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::error!("spawning the task supervisor: {e}");
                None
            }
        };
        TaskHandle {
            task_id,
            tx,
            join: Mutex::new(join),
            shim,
        }
    }
}

/// The task's storage, attached and detached by the agent (see
/// [`Agent::run_task_with_storage`]). The server implements it over the
/// volume engine and the KMS.
pub trait TaskStorage: Send + Sync {
    /// Creates and mounts the task's volume; returns the mount point (an
    /// empty directory but for `volumes/NAME` of the plan's EFS volumes,
    /// which the storage mounts there). The error ends the task with
    /// `TaskFailedToStart`; its `Display` (code, if any, then detail) is
    /// the task's `stoppedReason` as is, so give it the Fargate code that
    /// fits (usually [`FailureCode::ResourceInitialization`]).
    fn attach(&self, plan: &TaskPlan) -> Result<PathBuf, TaskFailure>;

    /// Unmounts and destroys the volume (crypto-shred). Called once after
    /// a successful attach, when nothing of the task uses it any more. The
    /// error does not change how the task stopped: it is reported in
    /// [`TaskOutcome::cleanup_errors`] as
    /// `detaching the task's storage: <error>`.
    fn detach(&self, plan: &TaskPlan, task_root: &Path) -> Result<(), TaskFailure>;
}

enum Root {
    Given(PathBuf),
    Storage(Arc<dyn TaskStorage>),
}

/// How a task ended.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// `TaskFailedToStart`, `EssentialContainerExited`, `UserInitiated`, ...
    pub stop_code: String,
    /// Why.
    pub stopped_reason: String,
    /// The task's address, if it got one.
    pub private_ip: Option<String>,
    /// Exit codes of the containers that ran.
    pub exit_codes: BTreeMap<String, i32>,
    /// Anything that could not be released (empty when all went well).
    pub cleanup_errors: Vec<String>,
    /// How long each start-up phase took.
    pub timings: StartTimings,
}

/// Start-up phase durations of a task (for benchmarks and diagnostics).
#[derive(Debug, Clone, Default)]
pub struct StartTimings {
    /// Resolving images and validating the plan.
    pub resolve: Duration,
    /// Attaching the task's storage (with `run_task_with_storage`); runs
    /// at the same time as `network`.
    pub volume: Duration,
    /// Creating the task cgroup.
    pub cgroup: Duration,
    /// Network namespace and CNI ADD (concurrent with `volume`).
    pub network: Duration,
    /// Finding the images in the store, pulling those that are not.
    pub pull: Duration,
    /// Unpacking images onto task_root.
    pub unpack: Duration,
    /// Overlay mounts and bundles.
    pub bundles: Duration,
    /// From run_task to `Running` (zero if the task never ran).
    pub to_running: Duration,
    /// Cleanup after the last container exited.
    pub cleanup: Duration,
}

/// A running task.
#[derive(Debug)]
pub struct TaskHandle {
    task_id: String,
    tx: Sender<Msg>,
    join: Mutex<Option<JoinHandle<TaskOutcome>>>,
    shim: ShimSlot,
}

/// A task's shim once started, shared by its supervisor and its handle
/// (which detaches from it when the server leaves the task running).
type ShimSlot = Arc<Mutex<Option<Arc<ShimClient>>>>;

fn shim_of(slot: &ShimSlot) -> Option<Arc<ShimClient>> {
    slot.lock().ok().and_then(|g| g.clone())
}

impl TaskHandle {
    /// The task id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Asks the task to stop (SIGTERM, SIGKILL after each container's
    /// stopTimeout). `stop_code` is reported in `Stopped` (e.g.
    /// `UserInitiated`). Returns at once; no-op if already stopping.
    pub fn stop(&self, stop_code: &str, reason: &str) {
        let _ = self.tx.send(Msg::Stop {
            code: stop_code.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Detaches from the task's shim as this server leaves it running:
    /// returns once every log line the shim sent is in the sink (later
    /// ones wait in the shim for the next server).
    pub fn detach(&self) {
        if let Some(s) = shim_of(&self.shim)
            && let Err(e) = s.detach()
        {
            tracing::warn!(task = %self.task_id, "detaching from the task's shim: {e}");
        }
    }

    /// Waits until the task has stopped and been cleaned up. `None` if the
    /// supervisor could not be started or has already been waited for.
    pub fn wait(&self) -> Option<TaskOutcome> {
        let j = self.join.lock().ok()?.take()?;
        j.join().ok()
    }
}

enum Msg {
    Stop { code: String, reason: String },
    Exited { idx: usize, code: i32 },
    Health { idx: usize, status: HealthStatus },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Exited(i32),
    /// Never started (dependency unsatisfiable, or the task stopped first).
    Skipped,
}

struct Ctr {
    plan: ContainerPlan,
    /// The image's StopSignal (`SIGTERM` if it names none).
    stop_signal: String,
    id: String,
    bundle: PathBuf,
    state: State,
    created: bool,
    deadline: Option<Instant>,
    killed_at: Option<Instant>,
    /// When it started (its dependents' `startTimeout` counts from here).
    started_at: Option<Instant>,
    /// Last health check status (UNKNOWN without a check).
    health: HealthStatus,
    /// Dropping it ends the container's health check thread.
    health_cancel: Option<Sender<()>>,
    health_thread: Option<JoinHandle<()>>,
}

type Events = Box<dyn Fn(TaskEvent) + Send>;

struct Supervisor {
    record: Option<TaskRecord>,
    source: Root,
    attached: bool,
    active: Arc<Mutex<HashSet<String>>>,
    pulls: Arc<Puller>,
    firewall: Arc<Firewall>,
    duplicate: bool,
    cfg: Arc<AgentConfig>,
    runc: Runc,
    plan: TaskPlan,
    root: PathBuf,
    events: Events,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    cgroup: Option<TaskCgroup>,
    /// The task cgroup's OOM kills already attributed to a container.
    oom_kills_seen: u64,
    net: Option<TaskNetwork>,
    ctrs: Vec<Ctr>,
    overlays: Vec<PathBuf>,
    stop: Option<(String, String)>,
    exit_codes: BTreeMap<String, i32>,
    timings: StartTimings,
    started_at: Instant,
    /// The task's images, pinned until it stops (the store's size limit
    /// does not collect them meanwhile).
    pins: Vec<Pin>,
    /// The task's shim (started with its first container): parent of the
    /// containers, holder of their pipes and exit statuses.
    shim: ShimSlot,
    /// Whether `Running` was reported (a re-adopted task had it already).
    running_sent: bool,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Supervisor {
    fn emit(&self, e: TaskEvent) {
        (self.events)(e);
    }

    fn run(mut self) -> TaskOutcome {
        match self.start() {
            Ok(()) => self.run_loop(),
            Err(failure) => {
                // A stop request taken during start-up keeps its own code
                // and reason.
                if self.stop.is_none() {
                    self.stop = Some(("TaskFailedToStart".into(), failure.to_string()));
                }
            }
        }
        self.finish()
    }

    /// A re-adopted task: health checks again, then the usual loop and end.
    fn run_adopted(mut self) -> TaskOutcome {
        for idx in 0..self.ctrs.len() {
            if self.ctrs[idx].state == State::Running {
                self.start_health(idx);
            }
        }
        self.run_loop();
        self.finish()
    }

    /// Releases everything and reports `Stopped`.
    fn finish(mut self) -> TaskOutcome {
        let t = Instant::now();
        let mut cleanup_errors = self.cleanup();
        if self.attached
            && let Root::Storage(st) = &self.source
            && let Err(e) = st.detach(&self.plan, &self.root)
        {
            cleanup_errors.push(format!("detaching the task's storage: {e}"));
        }
        // The record stays while something could not be released, so
        // cleanup_orphan can retry.
        if cleanup_errors.is_empty()
            && self.record.is_some()
            && let Err(e) = TaskRecord::remove(&self.cfg.state_dir, &self.plan.task_id)
        {
            cleanup_errors.push(format!("removing the task record: {e}"));
        }
        self.timings.cleanup = t.elapsed();
        for e in &cleanup_errors {
            tracing::warn!(task = %self.plan.task_id, "cleanup: {e}");
        }
        let (stop_code, stopped_reason) = self
            .stop
            .take()
            .unwrap_or_else(|| ("EssentialContainerExited".into(), "Task ended".into()));
        if !self.duplicate
            && let Ok(mut a) = self.active.lock()
        {
            a.remove(&self.plan.task_id);
        }
        self.emit(TaskEvent::Stopped {
            stop_code: stop_code.clone(),
            stopped_reason: stopped_reason.clone(),
        });
        TaskOutcome {
            stop_code,
            stopped_reason,
            private_ip: self.net.as_ref().map(|n| n.ip.clone()),
            exit_codes: self.exit_codes.clone(),
            cleanup_errors,
            timings: self.timings.clone(),
        }
    }

    /// Everything up to (not including) starting containers. The error's
    /// `Display` is the task's `stoppedReason`.
    fn start(&mut self) -> Result<(), TaskFailure> {
        let plan = self.plan.clone();
        if self.duplicate {
            return Err(TaskFailure::plain(format!(
                "task {} is already running on this agent",
                plan.task_id
            )));
        }
        if !valid_name(&plan.task_id) || plan.task_id.len() > 64 {
            return Err(TaskFailure::plain(format!(
                "invalid task id {:?}",
                plan.task_id
            )));
        }
        if plan.containers.is_empty() {
            return Err(TaskFailure::plain("task has no containers"));
        }
        // Validate everything before touching the host; images are
        // resolved (and pulled) once the task is provisioned, as Fargate
        // pulls in PENDING.
        for c in &plan.containers {
            if !valid_name(&c.name) {
                return Err(TaskFailure::plain(format!(
                    "invalid container name {:?}",
                    c.name
                )));
            }
            Reference::parse(&c.image)
                .map_err(|e| TaskFailure::new(FailureCode::CannotPullContainer, e.to_string()))?;
            for d in &c.depends_on {
                if !plan.containers.iter().any(|o| o.name == d.container_name) {
                    return Err(TaskFailure::plain(format!(
                        "container {} depends on unknown container {}",
                        c.name, d.container_name
                    )));
                }
            }
        }
        // The awslogs driver's check, before anything is made on the host:
        // a missing group fails the task unless awslogs-create-group is
        // true, and each stream exists before its container starts.
        for c in &plan.containers {
            if let Some(a) = &c.awslogs {
                let stream = logs::stream_name(a.stream_prefix.as_deref(), &c.name, &plan.task_id);
                self.cfg
                    .log_sink
                    .open_stream(&a.group, &stream, a.create_group)
                    .map_err(|e| {
                        TaskFailure::new(FailureCode::ResourceInitialization, e.to_string())
                    })?;
            }
        }
        let mut volumes: HashMap<String, PathBuf> = HashMap::new();
        for v in &plan.volumes {
            match &v.kind {
                VolumeKind::Ephemeral if valid_name(&v.name) => {
                    volumes.insert(v.name.clone(), self.root.join("volumes").join(&v.name));
                }
                VolumeKind::Ephemeral => {
                    return Err(TaskFailure::plain(format!(
                        "invalid volume name {:?}",
                        v.name
                    )));
                }
                // The task's storage binds EFS volumes at the same place
                // as ephemeral ones (TaskStorage::attach).
                VolumeKind::Efs { .. }
                    if valid_name(&v.name) && matches!(self.source, Root::Storage(_)) =>
                {
                    volumes.insert(v.name.clone(), self.root.join("volumes").join(&v.name));
                }
                VolumeKind::Efs { .. } => {
                    return Err(TaskFailure::plain(format!(
                        "volume {}: EFS volumes need task storage that provides them",
                        v.name
                    )));
                }
            }
        }
        for c in &plan.containers {
            for m in &c.mount_points {
                if !volumes.contains_key(&m.source_volume) {
                    return Err(TaskFailure::plain(format!(
                        "container {} mounts volume {} which the task does not define",
                        c.name, m.source_volume
                    )));
                }
            }
        }

        self.timings.resolve = self.started_at.elapsed();
        self.check_stop()?;

        // Storage and network do not depend on each other: attach the
        // volume (KMS calls, LUKS2, FUSE, mkfs) on this thread while CNI
        // sets up the namespace on another; together they are most of
        // the start-up time. The namespace is recorded before it exists
        // so a crash in between still gets it removed.
        let Some(ifplan) = plan.network.clone() else {
            return Err(TaskFailure::new(
                FailureCode::ResourceInitialization,
                "the task has no network interface (awsvpc) in its plan",
            ));
        };
        let netns_name = format!("ferry-{}", plan.task_id);
        self.record = Some(TaskRecord {
            task_id: plan.task_id.clone(),
            task_root: self.root.clone(),
            containers: plan.containers.iter().map(|c| c.name.clone()).collect(),
            netns: Some(netns_name.clone()),
            ip: None,
            cni_result: None,
            network_driver: Some(self.cfg.network.driver),
            userns_base: None,
            started: false,
            stop_signals: BTreeMap::new(),
        });
        // EFS volumes keep the container's uids in a file system shared
        // with other tasks: such tasks stay in the host's user namespace
        // (docs/runtime.md, "User namespaces").
        let ids = match &mut self.record {
            Some(r)
                if self.cfg.userns == UsernsMode::On
                    && !plan
                        .volumes
                        .iter()
                        .any(|v| matches!(v.kind, VolumeKind::Efs { .. })) =>
            {
                Some(userns::allocate(&self.cfg.state_dir, r).map_err(|e| {
                    TaskFailure::new(FailureCode::ResourceInitialization, e.to_string())
                })?)
            }
            _ => {
                self.save_record()?;
                None
            }
        };
        let network_cfg = &self.cfg.network;
        let source = &self.source;
        let (attached, net) = std::thread::scope(|s| {
            let net = s.spawn(|| {
                let t = Instant::now();
                let net = match ids {
                    // The task's user namespace owns its network namespace.
                    Some(r) => userns::create_namespaces(&plan.task_id, r, &netns_name)
                        .map_err(|e| e.to_string())
                        .and_then(|()| {
                            let ns = crate::net::netns::Netns {
                                name: netns_name.clone(),
                            };
                            TaskNetwork::setup_in(network_cfg, ns, &plan.task_id, &ifplan)
                                .map_err(|e| e.to_string())
                        }),
                    None => TaskNetwork::setup(network_cfg, &netns_name, &plan.task_id, &ifplan)
                        .map_err(|e| e.to_string()),
                };
                (net, t.elapsed())
            });
            let t = Instant::now();
            let attached = match source {
                Root::Storage(st) => Some(st.attach(&plan)),
                Root::Given(_) => None,
            };
            (attached.map(|a| (a, t.elapsed())), net.join())
        });
        // Keep whatever was made before reporting a failure, so cleanup
        // releases it.
        let net = match net {
            Ok((Ok(net), took)) => {
                self.timings.network = took;
                if let Some(r) = &mut self.record {
                    r.ip = Some(net.ip.clone());
                    r.cni_result = net.cni_result().cloned();
                }
                // The record holds the host interface (in the CNI result)
                // before the task joins the firewall.
                let joined = self.save_record().and_then(|()| {
                    let m = member(&plan.task_id, &net, &ifplan).ok_or_else(|| {
                        TaskFailure::new(
                            FailureCode::ResourceInitialization,
                            "network setup left no host interface",
                        )
                    })?;
                    self.firewall.add_member(m).map_err(|e| {
                        TaskFailure::new(
                            FailureCode::ResourceInitialization,
                            format!("joining the task network's firewall: {e}"),
                        )
                    })
                });
                self.net = Some(net);
                joined
            }
            Ok((Err(e), _)) => Err(TaskFailure::new(
                FailureCode::ResourceInitialization,
                format!("network setup failed: {e}"),
            )),
            Err(_) => Err(TaskFailure::new(
                FailureCode::ResourceInitialization,
                "network setup panicked",
            )),
        };
        if let Some((attached, took)) = attached {
            self.timings.volume = took;
            self.root = attached?;
            self.attached = true;
            for (name, dir) in volumes.iter_mut() {
                *dir = self.root.join("volumes").join(name);
            }
        }
        net?;
        if let Some(r) = &mut self.record {
            r.task_root = self.root.clone();
        }
        self.save_record()?;
        let mark = Instant::now();
        self.check_stop()?;
        let cg = TaskCgroup::create(
            &self.cfg.cgroup_parent,
            &plan.task_id,
            plan.cpu_units,
            plan.memory_mib,
            self.cfg.task_pids_max,
        );
        // Record it before checking, so a half-made cgroup is removed.
        self.cgroup = Some(TaskCgroup::create_handle(
            &self.cfg.cgroup_parent,
            &plan.task_id,
        ));
        cg.map_err(|e| TaskFailure::new(FailureCode::ResourceInitialization, e.to_string()))?;
        if ids.is_some() {
            let names: Vec<&str> = plan.containers.iter().map(|c| c.name.as_str()).collect();
            userns::open_cgroups(&self.cfg.cgroup_parent, &plan.task_id, &names).map_err(|e| {
                TaskFailure::new(FailureCode::ResourceInitialization, e.to_string())
            })?;
        }
        self.timings.cgroup = mark.elapsed();
        let ip = self.net.as_ref().map(|n| n.ip.clone()).unwrap_or_default();
        let netns_path = self.net.as_ref().map(|n| n.netns.path()).ok_or_else(|| {
            TaskFailure::new(
                FailureCode::ResourceInitialization,
                "network setup left no namespace",
            )
        })?;
        self.emit(TaskEvent::Provisioned {
            private_ip: ip.clone(),
        });
        let mut mark = Instant::now();
        let images = self.pull_images(&plan)?;
        self.timings.pull = mark.elapsed();
        mark = Instant::now();

        let mut unpacked: HashMap<String, PathBuf> = HashMap::new();
        for img in images.values() {
            if unpacked.contains_key(&img.manifest_digest) {
                continue;
            }
            self.check_stop()?;
            let hex = img.manifest_digest.trim_start_matches("sha256:");
            let dir = self.root.join("images").join(hex.get(..16).unwrap_or(hex));
            unpack::unpack_image_as(&self.cfg.images, img, &dir, ids).map_err(|e| {
                TaskFailure::new(
                    FailureCode::CannotPullContainer,
                    format!("unpacking {}: {e}", img.reference.familiar()),
                )
            })?;
            unpacked.insert(img.manifest_digest.clone(), dir);
        }
        self.timings.unpack = mark.elapsed();
        mark = Instant::now();

        let hostname = format!("ip-{}", ip.replace('.', "-"));
        let etc = self.root.join("etc");
        let io = |what: &str, e: std::io::Error| {
            TaskFailure::new(FailureCode::ResourceInitialization, format!("{what}: {e}"))
        };
        fs::create_dir_all(&etc).map_err(|e| io("creating etc", e))?;
        fs::write(
            etc.join("hosts"),
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"),
        )
        .map_err(|e| io("writing hosts", e))?;
        fs::write(etc.join("hostname"), format!("{hostname}\n"))
            .map_err(|e| io("writing hostname", e))?;
        fs::write(etc.join("resolv.conf"), host_resolv_conf())
            .map_err(|e| io("writing resolv.conf", e))?;
        for dir in volumes.values() {
            fs::create_dir_all(dir).map_err(|e| io("creating a task volume", e))?;
        }
        // What the agent made for the containers belongs to their root.
        let view = ids.map(|r| (r, TaskView::new(&plan.task_id, &self.root)));
        let shift = |r: IdRange, p: &Path| {
            userns::give(r, p, 0, 0)
                .map_err(|e| TaskFailure::new(FailureCode::ResourceInitialization, e.to_string()))
        };
        for f in ["hosts", "hostname", "resolv.conf"] {
            // Readable by every user of the container (not the server's
            // umask), as Docker makes them.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(etc.join(f), fs::Permissions::from_mode(0o644))
                .map_err(|e| io("writing /etc files", e))?;
        }
        if let Some((r, _)) = view {
            for f in ["hosts", "hostname", "resolv.conf"] {
                shift(r, &etc.join(f))?;
            }
            for dir in volumes.values() {
                shift(r, dir)?;
            }
        }

        for c in &plan.containers {
            self.check_stop()?;
            let img = images
                .get(&c.image)
                .ok_or_else(|| TaskFailure::plain(format!("image {} vanished", c.image)))?;
            let lower = unpacked
                .get(&img.manifest_digest)
                .ok_or_else(|| TaskFailure::plain(format!("image {} not unpacked", c.image)))?;
            let bundle = self.root.join("containers").join(&c.name);
            let (upper, work, rootfs) = (
                bundle.join("upper"),
                bundle.join("work"),
                bundle.join("rootfs"),
            );
            for d in [&upper, &work, &rootfs] {
                fs::create_dir_all(d).map_err(|e| io("creating container dirs", e))?;
            }
            // The overlay's root is the upper dir's: the container's `/`,
            // with the image's mode (not the server's umask), owned by its
            // root.
            if let Ok(m) = fs::metadata(lower) {
                fs::set_permissions(&upper, m.permissions())
                    .map_err(|e| io("creating container dirs", e))?;
            }
            if let Some((r, _)) = view {
                shift(r, &upper)?;
            }
            mounts::overlay(lower, &upper, &work, &rootfs).map_err(|e| {
                TaskFailure::new(FailureCode::ResourceInitialization, e.to_string())
            })?;
            self.overlays.push(rootfs.clone());
            let cgroups_path = self
                .cgroup
                .as_ref()
                .map(|g| g.container_path(&c.name))
                .unwrap_or_default();
            // In a user namespace runc reaches the task's files through
            // the task's view (userns::TaskView).
            let seen = |p: &Path| match &view {
                Some((_, v)) => v.path(p),
                None => p.to_path_buf(),
            };
            let mut spec = bundle::spec(&BundleInput {
                container: c,
                image: &img.config,
                image_rootfs: lower,
                netns: &netns_path,
                cgroups_path,
                hostname: hostname.clone(),
                etc_dir: &seen(&etc),
                volumes: c
                    .mount_points
                    .iter()
                    .filter_map(|m| {
                        volumes
                            .get(&m.source_volume)
                            .map(|d| (seen(d), m.container_path.clone(), m.read_only))
                    })
                    .collect(),
                userns: view.as_ref().map(|(r, v)| bundle::BundleUserns {
                    ids: *r,
                    path: v.userns(),
                    rootfs: seen(&rootfs),
                }),
            })
            .map_err(|e| TaskFailure::new(FailureCode::CannotCreateContainer, e.to_string()))?;
            let saved = spec.save(bundle.join("config.json"));
            // The environment (secrets among it) is in config.json on the
            // task's volume now: wipe the copy in memory.
            if let Some(env) = spec.process_mut().as_mut().and_then(|p| p.env_mut().take()) {
                for mut e in env {
                    e.zeroize();
                }
            }
            saved.map_err(|e| {
                TaskFailure::new(
                    FailureCode::CannotCreateContainer,
                    format!("writing config.json: {e}"),
                )
            })?;
            let stop_signal = img
                .config
                .config()
                .as_ref()
                .and_then(|c| c.stop_signal().clone())
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
                .unwrap_or_else(|| "SIGTERM".to_string());
            if let Some(r) = &mut self.record {
                r.stop_signals.insert(c.name.clone(), stop_signal.clone());
            }
            self.ctrs.push(Ctr {
                stop_signal,
                // The secrets' values are in the bundle; none stay here.
                plan: ContainerPlan {
                    secret_env: Default::default(),
                    registry_auth: None,
                    ..c.clone()
                },
                id: format!("{}-{}", plan.task_id, c.name),
                bundle,
                state: State::Pending,
                created: false,
                deadline: None,
                killed_at: None,
                started_at: None,
                health: HealthStatus::Unknown,
                health_cancel: None,
                health_thread: None,
            });
        }
        if let Some((r, v)) = &view {
            v.mount(*r).map_err(|e| {
                TaskFailure::new(FailureCode::ResourceInitialization, e.to_string())
            })?;
        }
        self.timings.bundles = mark.elapsed();
        self.save_record()?;
        // Nothing needs the secrets' values any more.
        self.plan = self.plan.without_secrets();
        Ok(())
    }

    /// Each distinct image of the plan, from the store or pulled into it
    /// (between `PullStarted` and `PullStopped`, which a cached image gets
    /// too). A failed pull names the containers that cannot start.
    fn pull_images(&mut self, plan: &TaskPlan) -> Result<HashMap<String, Image>, TaskFailure> {
        self.emit(TaskEvent::PullStarted);
        let mut images: HashMap<String, Image> = HashMap::new();
        let mut failure: Option<(String, TaskFailure)> = None;
        for c in &plan.containers {
            if images.contains_key(&c.image) {
                continue;
            }
            if let Err(f) = self.check_stop() {
                failure = Some((String::new(), f));
                break;
            }
            let access = self.access(c);
            match self.pulls.ensure(&self.cfg.images, &c.image, &access) {
                Ok((img, pin, source)) => {
                    tracing::debug!(task = %plan.task_id, image = %c.image, ?source, "image ready");
                    self.pins.push(pin);
                    images.insert(c.image.clone(), img);
                }
                Err(e) => {
                    failure = Some((
                        c.image.clone(),
                        TaskFailure::new(FailureCode::CannotPullContainer, e.to_string()),
                    ));
                    break;
                }
            }
        }
        let failed = match &failure {
            Some((image, f)) if !image.is_empty() => plan
                .containers
                .iter()
                .filter(|c| &c.image == image)
                .map(|c| (c.name.clone(), f.to_string()))
                .collect(),
            _ => BTreeMap::new(),
        };
        self.emit(TaskEvent::PullStopped { failed });
        match failure {
            Some((_, f)) => Err(f),
            None => Ok(images),
        }
    }

    /// How to reach container `c`'s registry: its credentials, and ferry's
    /// own listener for images named after ferry's registry host.
    fn access(&self, c: &ContainerPlan) -> Access {
        let endpoint = self.cfg.own_registry.as_ref().and_then(|o| {
            let r = Reference::parse(&c.image).ok()?;
            (r.registry == o.host).then(|| o.endpoint.clone())
        });
        Access {
            auth: c.registry_auth.clone(),
            endpoint,
        }
    }

    fn save_record(&self) -> Result<(), TaskFailure> {
        match &self.record {
            Some(r) => r.save(&self.cfg.state_dir).map_err(|e| {
                TaskFailure::new(
                    FailureCode::ResourceInitialization,
                    format!("writing the task record: {e}"),
                )
            }),
            None => Ok(()),
        }
    }

    /// Takes a stop request that arrived during start-up. The error only
    /// ends start-up: the request's own code and reason are recorded in
    /// `self.stop` and win over it.
    fn check_stop(&mut self) -> Result<(), TaskFailure> {
        while let Ok(m) = self.rx.try_recv() {
            if let Msg::Stop { code, reason } = m {
                self.stop = Some((code, reason.clone()));
                return Err(TaskFailure::plain(reason));
            }
        }
        Ok(())
    }

    fn run_loop(&mut self) {
        loop {
            if self.stop.is_none() {
                self.start_ready();
                self.mark_started();
            }
            if self.stop.is_none()
                && !self.running_sent
                && self
                    .ctrs
                    .iter()
                    .filter(|c| c.plan.essential)
                    .all(|c| c.state == State::Running)
            {
                self.running_sent = true;
                self.timings.to_running = self.started_at.elapsed();
                self.emit(TaskEvent::Running);
            }
            let any_running = self.ctrs.iter().any(|c| c.state == State::Running);
            if !any_running {
                if self.stop.is_none() {
                    let pending = self.ctrs.iter().any(|c| c.state == State::Pending);
                    self.stop = Some(if pending {
                        (
                            "TaskFailedToStart".into(),
                            "container dependencies can never be satisfied (dependency cycle)"
                                .into(),
                        )
                    } else {
                        (
                            "EssentialContainerExited".into(),
                            "All containers exited".into(),
                        )
                    });
                }
                break;
            }
            if self.stop.is_some() {
                self.signal_stoppable();
            }
            let next = self
                .ctrs
                .iter()
                .filter(|c| c.state == State::Running)
                .filter_map(|c| match c.killed_at {
                    Some(k) => Some(k + Duration::from_secs(10)),
                    None => c.deadline,
                })
                .chain(self.start_timeouts())
                .min();
            let msg = match next {
                Some(t) => match self
                    .rx
                    .recv_timeout(t.saturating_duration_since(Instant::now()))
                {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            };
            match msg {
                Some(Msg::Stop { code, reason }) => {
                    if self.stop.is_none() {
                        self.stop = Some((code, reason));
                    }
                }
                Some(Msg::Exited { idx, code }) => self.exited(idx, code),
                Some(Msg::Health { idx, status }) => self.health_changed(idx, status),
                None => {
                    let now = Instant::now();
                    for idx in 0..self.ctrs.len() {
                        let c = &mut self.ctrs[idx];
                        if c.state != State::Running {
                            continue;
                        }
                        if let Some(k) = c.killed_at {
                            if now >= k + Duration::from_secs(10) {
                                // SIGKILL did not take; delete --force at cleanup.
                                self.exited(idx, 137);
                            }
                        } else if c.deadline.is_some_and(|d| now >= d) {
                            let _ = self.runc.kill(&c.id, "KILL");
                            c.killed_at = Some(now);
                        }
                    }
                }
            }
        }
    }

    /// When dependents waiting on a running container give up on it (its
    /// `startTimeout` from its start), for those still ahead: the run loop
    /// wakes then to mark them.
    fn start_timeouts(&self) -> impl Iterator<Item = Instant> + '_ {
        let now = Instant::now();
        self.ctrs
            .iter()
            .filter(|c| c.state == State::Running)
            .filter(|c| {
                self.ctrs.iter().any(|o| {
                    o.state == State::Pending
                        && o.plan
                            .depends_on
                            .iter()
                            .any(|d| d.container_name == c.plan.name)
                })
            })
            .filter_map(|c| {
                let t = c.plan.start_timeout_secs?;
                Some(c.started_at? + Duration::from_secs(u64::from(t)))
            })
            .filter(move |at| *at > now)
    }

    /// At stop, sends each running container its stop signal once no
    /// running container depends on it: containers stop in reverse
    /// dependency order, as on Fargate (a sidecar outlives the app that
    /// needs it). Each gets its `stopTimeout` from its own signal. If the
    /// remaining containers only wait on each other (a cycle), all get it.
    fn signal_stoppable(&mut self) {
        let running = |c: &Ctr| c.state == State::Running;
        let needed = |i: usize| {
            let name = &self.ctrs[i].plan.name;
            self.ctrs
                .iter()
                .any(|o| running(o) && o.plan.depends_on.iter().any(|d| &d.container_name == name))
        };
        let unsignaled: Vec<usize> = (0..self.ctrs.len())
            .filter(|&i| running(&self.ctrs[i]) && self.ctrs[i].deadline.is_none())
            .collect();
        let mut now_due: Vec<usize> = unsignaled.iter().copied().filter(|&i| !needed(i)).collect();
        let in_flight = self.ctrs.iter().any(|c| running(c) && c.deadline.is_some());
        if now_due.is_empty() && !in_flight {
            now_due = unsignaled;
        }
        let now = Instant::now();
        for i in now_due {
            let c = &mut self.ctrs[i];
            let _ = self.runc.kill(&c.id, &c.stop_signal);
            c.deadline = Some(now + Duration::from_secs(u64::from(c.plan.stop_timeout_secs)));
        }
    }

    fn exited(&mut self, idx: usize, code: i32) {
        let Some(c) = self.ctrs.get_mut(idx) else {
            return;
        };
        if c.state != State::Running {
            return;
        }
        c.state = State::Exited(code);
        // Its health check ends with it.
        c.health_cancel = None;
        let name = c.plan.name.clone();
        let essential = c.plan.essential;
        let mut reason = c.killed_at.map(|_| {
            format!(
                "killed: did not stop within stopTimeout ({} s) of {}",
                c.plan.stop_timeout_secs, c.stop_signal
            )
        });
        // SIGKILL that we did not send: the OOM killer's, if the container's
        // cgroup or the task's counted one (Fargate's reason).
        if code == 137 && reason.is_none() {
            let task_kills = self.cgroup.as_ref().map_or(0, |g| g.oom_kills(None));
            let own_kills = self.cgroup.as_ref().map_or(0, |g| g.oom_kills(Some(&name)));
            if own_kills > 0 || task_kills > self.oom_kills_seen {
                reason = Some("OutOfMemoryError: Container killed due to memory usage".into());
            }
            self.oom_kills_seen = task_kills;
        }
        self.exit_codes.insert(name.clone(), code);
        self.emit(TaskEvent::ContainerExited {
            name: name.clone(),
            exit_code: code,
            reason,
        });
        // Recorded: the shim may forget it.
        if let Some(s) = shim_of(&self.shim) {
            s.ack(&name);
        }
        if essential && self.stop.is_none() {
            self.stop = Some((
                "EssentialContainerExited".into(),
                "Essential container in task exited".into(),
            ));
        }
    }

    /// A health check reported a new status for a running container.
    fn health_changed(&mut self, idx: usize, status: HealthStatus) {
        let Some(c) = self.ctrs.get_mut(idx) else {
            return;
        };
        if c.state != State::Running || c.health == status {
            return;
        }
        c.health = status;
        let name = c.plan.name.clone();
        self.emit(TaskEvent::ContainerHealth { name, status });
    }

    /// Starts the health check thread of container `idx`, if it has a
    /// check. It reports to the supervisor's channel, so the event loop is
    /// never blocked by a check.
    fn start_health(&mut self, idx: usize) {
        let Some(c) = self.ctrs.get_mut(idx) else {
            return;
        };
        let Some(check) = c.plan.health_check.clone() else {
            return;
        };
        let (cancel_tx, cancel_rx) = mpsc::channel::<()>();
        let probe = ExecProbe::new(
            self.runc.clone(),
            c.id.clone(),
            check.command.argv(),
            c.bundle.join("health.pid"),
        );
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("task-health".into())
            .spawn(move || {
                health::monitor(
                    check.retries,
                    Timing::of(&check),
                    probe,
                    &cancel_rx,
                    |status| {
                        let _ = tx.send(Msg::Health { idx, status });
                    },
                );
            });
        match spawned {
            Ok(h) => {
                c.health_cancel = Some(cancel_tx);
                c.health_thread = Some(h);
            }
            // The container runs on, UNKNOWN (as with a check that never
            // answers).
            Err(e) => tracing::warn!(task = %self.plan.task_id, "spawning a health check: {e}"),
        }
    }

    /// Starts every pending container whose dependencies are met; marks
    /// those whose dependencies can no longer be met as skipped.
    fn start_ready(&mut self) {
        loop {
            let mut changed = false;
            for idx in 0..self.ctrs.len() {
                if self.ctrs[idx].state != State::Pending || self.stop.is_some() {
                    continue;
                }
                match self.deps(idx) {
                    Deps::Wait => {}
                    Deps::Never(why) => {
                        changed = true;
                        self.ctrs[idx].state = State::Skipped;
                        if self.ctrs[idx].plan.essential {
                            self.stop = Some(("TaskFailedToStart".into(), why));
                        }
                    }
                    Deps::Ready => {
                        changed = true;
                        if let Err(failure) = self.start_container(idx) {
                            self.ctrs[idx].state = State::Skipped;
                            self.stop = Some(("TaskFailedToStart".into(), failure.to_string()));
                        }
                    }
                }
            }
            if !changed {
                return;
            }
        }
    }

    fn deps(&self, idx: usize) -> Deps {
        let c = &self.ctrs[idx];
        let mut wait = false;
        for d in &c.plan.depends_on {
            let Some(dep) = self.ctrs.iter().find(|o| o.plan.name == d.container_name) else {
                return Deps::Never(format!("unknown dependency {}", d.container_name));
            };
            let never = |what: &str| {
                Deps::Never(format!(
                    "container {} not started: dependency {} {what} (condition {})",
                    c.plan.name, d.container_name, d.condition
                ))
            };
            let health = dep.plan.health_check.as_ref().map(|_| dep.health);
            match condition(&d.condition, dep.state, health) {
                Cond::Met => {}
                Cond::Wait => match (dep.plan.start_timeout_secs, dep.started_at) {
                    // The dependency had its startTimeout to get there.
                    (Some(t), Some(at)) if at.elapsed() >= Duration::from_secs(u64::from(t)) => {
                        return never(&format!(
                            "did not get there within its startTimeout ({t} s)"
                        ));
                    }
                    _ => wait = true,
                },
                Cond::Never(what) => return never(&what),
                Cond::Unknown => {
                    return Deps::Never(format!("unknown dependency condition {}", d.condition));
                }
            }
        }
        if wait { Deps::Wait } else { Deps::Ready }
    }

    /// Creates and starts container `idx`. Every failure here is Fargate's
    /// `CannotStartContainerError`. `runc create` runs in the task's shim,
    /// which holds the container's pipes and reports its exit.
    fn start_container(&mut self, idx: usize) -> Result<(), TaskFailure> {
        let failed = |detail: String| TaskFailure::new(FailureCode::CannotStartContainer, detail);
        let shim = self.ensure_shim().map_err(|e| failed(e.to_string()))?;
        let c = &mut self.ctrs[idx];
        let log = c.bundle.join("runc.log");
        shim.create(&c.plan.name, &c.id, &c.bundle, &log)
            .map_err(|e| failed(e.to_string()))?;
        c.created = true;
        if let Err(e) = self.runc.start(&c.id) {
            let _ = self.runc.delete(&c.id);
            return Err(failed(e.to_string()));
        }
        c.state = State::Running;
        c.started_at = Some(Instant::now());
        let name = c.plan.name.clone();
        self.emit(TaskEvent::ContainerRunning { name });
        self.start_health(idx);
        Ok(())
    }

    /// The task's shim, started on first use.
    fn ensure_shim(&mut self) -> Result<Arc<ShimClient>, shim::ShimError> {
        if let Some(s) = shim_of(&self.shim) {
            return Ok(s);
        }
        let (client, _) = ShimClient::spawn(
            &self.cfg.shim_exe,
            &self.cfg.shim_dir,
            &self.runc,
            &self.plan.task_id,
            log_routes(&self.plan),
            self.cfg.log_sink.clone(),
            exit_forwarder(&self.plan, self.tx.clone()),
        )?;
        let client = Arc::new(client);
        if let Ok(mut g) = self.shim.lock() {
            *g = Some(client.clone());
        }
        Ok(client)
    }

    /// Records that no container is waiting to start any more: from then on
    /// a restarted server re-adopts the task.
    fn mark_started(&mut self) {
        if self.ctrs.iter().any(|c| c.state == State::Pending) {
            return;
        }
        if let Some(r) = &mut self.record
            && !r.started
        {
            r.started = true;
            if let Err(e) = self.save_record() {
                tracing::warn!(task = %self.plan.task_id, "{e}");
            }
        }
    }

    /// Releases everything of the task on the host. Returns what failed.
    fn cleanup(&mut self) -> Vec<String> {
        let mut errs = Vec::new();
        // Health checks first: cancelled, each kills its running exec.
        for c in &mut self.ctrs {
            c.health_cancel = None;
        }
        for c in &mut self.ctrs {
            if let Some(h) = c.health_thread.take() {
                let _ = h.join();
            }
        }
        for c in &mut self.ctrs {
            if c.created
                && let Err(e) = self.runc.delete(&c.id)
            {
                // Already gone is fine.
                if self.runc.state(&c.id).is_ok() {
                    errs.push(e.to_string());
                }
            }
        }
        // Every container is deleted: its shim may go.
        let shim = self.shim.lock().ok().and_then(|mut g| g.take());
        if let Some(s) = shim {
            if let Err(e) = s.shutdown() {
                errs.push(format!("stopping the task's shim: {e}"));
            }
            let _ = fs::remove_file(shim::socket_path(&self.cfg.shim_dir, &self.plan.task_id));
            let _ = fs::remove_file(self.cfg.shim_dir.join(format!("{}.log", self.plan.task_id)));
        }
        // The view holds the task's volume and overlays: it goes first.
        if self
            .record
            .as_ref()
            .is_some_and(|r| r.userns_base.is_some())
            && let Err(e) = TaskView::release(&self.plan.task_id)
        {
            errs.push(e);
        }
        for m in self.overlays.drain(..).rev() {
            if let Err(e) = mounts::unmount(&m) {
                errs.push(e.to_string());
            }
        }
        if self.net.is_some()
            && let Err(e) = self.firewall.remove_member(&self.plan.task_id)
        {
            errs.push(e.to_string());
        }
        if let Some(n) = &self.net
            && let Err(e) = n.teardown()
        {
            errs.push(e.to_string());
        }
        if let Some(g) = &self.cgroup
            && let Err(e) = g.remove()
        {
            errs.push(e.to_string());
        }
        errs
    }
}

/// The firewall member of a task's network, if its host interface is
/// known.
fn member(
    task_id: &str,
    net: &TaskNetwork,
    plan: &ferry_proto::net::InterfacePlan,
) -> Option<Member> {
    Some(Member {
        task_id: task_id.to_string(),
        host_iface: net.host_iface()?,
        ip: plan.ip,
        mac: plan.mac.to_lowercase(),
        vpc_id: plan.vpc_id.clone(),
        groups: plan.security_groups.clone(),
    })
}

/// Where each container's lines go (its awslogs group and stream).
fn log_routes(plan: &TaskPlan) -> shim::Routes {
    plan.containers
        .iter()
        .map(|c| {
            let route = c.awslogs.as_ref().map(|a| {
                (
                    a.group.clone(),
                    logs::stream_name(a.stream_prefix.as_deref(), &c.name, &plan.task_id),
                )
            });
            (c.name.clone(), route)
        })
        .collect()
}

/// Turns a shim's exit reports into the supervisor's messages (containers
/// are indexed in plan order).
fn exit_forwarder(plan: &TaskPlan, tx: Sender<Msg>) -> impl Fn(&str, i32) + Send + 'static {
    let names: Vec<String> = plan.containers.iter().map(|c| c.name.clone()).collect();
    let tx = Mutex::new(tx);
    move |name: &str, code: i32| {
        if let Some(idx) = names.iter().position(|n| n == name)
            && let Ok(tx) = tx.lock()
        {
            let _ = tx.send(Msg::Exited { idx, code });
        }
    }
}

enum Deps {
    Ready,
    Wait,
    Never(String),
}

/// Where one `dependsOn` condition stands.
#[derive(Debug, PartialEq, Eq)]
enum Cond {
    Met,
    Wait,
    /// Can never be met: what happened to the dependency.
    Never(String),
    /// Not a condition ECS knows.
    Unknown,
}

/// Whether `condition` on a dependency in `state` is met. `health` is the
/// dependency's health status, `None` when it has no health check (then
/// HEALTHY can never be met; registration refuses that too).
fn condition(condition: &str, state: State, health: Option<HealthStatus>) -> Cond {
    match (condition, state) {
        (_, State::Skipped) => Cond::Never("never started".into()),
        ("HEALTHY", _) if health.is_none() => Cond::Never("has no health check".into()),
        (_, State::Pending) => Cond::Wait,
        ("START", _) => Cond::Met,
        ("HEALTHY", State::Running) => match health {
            Some(HealthStatus::Healthy) => Cond::Met,
            Some(HealthStatus::Unhealthy) => Cond::Never("is UNHEALTHY".into()),
            _ => Cond::Wait,
        },
        ("HEALTHY", State::Exited(code)) => {
            Cond::Never(format!("exited with code {code} before it was HEALTHY"))
        }
        ("COMPLETE", State::Running) | ("SUCCESS", State::Running) => Cond::Wait,
        ("COMPLETE", State::Exited(_)) | ("SUCCESS", State::Exited(0)) => Cond::Met,
        ("SUCCESS", State::Exited(code)) => Cond::Never(format!("exited with code {code}")),
        _ => Cond::Unknown,
    }
}

/// The host's resolver configuration for the task (a systemd-resolved stub
/// on 127.0.0.53 is useless inside the task's namespace: use its upstream
/// list instead).
fn host_resolv_conf() -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if host.contains("nameserver 127.")
        && let Ok(up) = fs::read_to_string("/run/systemd/resolve/resolv.conf")
    {
        return up;
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_conditions() {
        use HealthStatus::{Healthy, Unhealthy, Unknown};
        let checked = |h| Some(h);
        assert_eq!(condition("START", State::Pending, None), Cond::Wait);
        assert_eq!(condition("START", State::Running, None), Cond::Met);
        assert_eq!(condition("SUCCESS", State::Exited(0), None), Cond::Met);
        assert!(matches!(
            condition("SUCCESS", State::Exited(3), None),
            Cond::Never(w) if w.contains("code 3")
        ));
        assert_eq!(condition("COMPLETE", State::Running, None), Cond::Wait);
        assert_eq!(condition("COMPLETE", State::Exited(1), None), Cond::Met);
        // HEALTHY waits while UNKNOWN, is met when HEALTHY, and fails the
        // dependent when UNHEALTHY, exited, or never checked.
        assert_eq!(
            condition("HEALTHY", State::Pending, checked(Unknown)),
            Cond::Wait
        );
        assert_eq!(
            condition("HEALTHY", State::Running, checked(Unknown)),
            Cond::Wait
        );
        assert_eq!(
            condition("HEALTHY", State::Running, checked(Healthy)),
            Cond::Met
        );
        assert!(matches!(
            condition("HEALTHY", State::Running, checked(Unhealthy)),
            Cond::Never(w) if w.contains("UNHEALTHY")
        ));
        assert!(matches!(
            condition("HEALTHY", State::Exited(0), checked(Unknown)),
            Cond::Never(_)
        ));
        assert!(matches!(
            condition("HEALTHY", State::Running, None),
            Cond::Never(w) if w.contains("no health check")
        ));
        assert!(matches!(
            condition("HEALTHY", State::Pending, None),
            Cond::Never(_)
        ));
        assert!(matches!(
            condition("X", State::Skipped, None),
            Cond::Never(_)
        ));
        assert_eq!(condition("WHENEVER", State::Running, None), Cond::Unknown);
    }
}
