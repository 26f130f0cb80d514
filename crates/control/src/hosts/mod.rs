//! Hosts: the machines that run tasks, and what the control plane keeps
//! about them (see `docs/control-plane.md`, "Hosts and placement").
//!
//! Every `ferry server` is a replica of the API and, unless it runs with
//! `--no-agent`, also a host: its local agent (the `TaskRuntime` it was
//! built with) runs the tasks placed on it. A host
//!
//! - registers a [`HostRecord`] (capacity, overcommit ratios, subnet) in
//!   [`db::HOSTS`] when its process starts;
//! - keeps its liveness lease `host/NAME` ([`lease_name`]) renewed
//!   ([`heartbeat`], every [`Timings::heartbeat`], for [`Timings::host_ttl`]);
//! - runs the tasks assigned to it ([`assign`]).
//!
//! Placement ([`placement`]) picks a live host for each new task inside
//! the transaction that records the task, and writes the task's
//! reservation ([`Reservation`], table [`db::PLACEMENTS`]) in the same
//! transaction, so two launches racing for the last capacity cannot both
//! get it. The holder of the scheduler lease marks the tasks of hosts whose
//! liveness lease lapsed as STOPPED ([`check_lost`]).
//!
//! Without a fleet (`EcsConfig::fleet` false: the embedded store, one
//! process) the local host is the only one, every task is its own
//! (records from before hosts have an empty `host`), and no lease is
//! written periodically.

pub mod assign;
pub mod placement;

use std::time::Duration;

use ferry_proto::net::Ipv4Cidr;
use ferry_store::LeaseInfo;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::leader::Leader;
use crate::model::task::{TaskRecord, TaskStatus, stop_code};
use crate::service::Core;

/// Default `--cpu-overcommit`: CPU units promised per CPU unit the host
/// has. A 2-core machine (2048 units) holds 64 tasks of the source
/// document's size (256 units) at 8.0; Fargate sizes are reservations
/// most tasks leave idle, and the kernel shares CPU time fairly by each
/// task's weight when they do not.
pub const DEFAULT_CPU_OVERCOMMIT: f64 = 8.0;

/// Default `--memory-overcommit`: MiB promised per MiB of the host's
/// memory. A 24 GiB machine (about 24,100 MiB in /proc/meminfo) holds 70
/// tasks of 512 MiB at 1.5, comfortably over 50; memory is overcommitted
/// less than CPU because it cannot be time-shared: each task keeps its own
/// cgroup limit, so a task that uses its whole size is the one the kernel
/// reclaims from.
pub const DEFAULT_MEMORY_OVERCOMMIT: f64 = 1.5;

/// The prefix of hosts' liveness leases.
pub const HOST_LEASE_PREFIX: &str = "host/";

/// The liveness lease of host `name`.
pub fn lease_name(name: &str) -> String {
    format!("{HOST_LEASE_PREFIX}{name}")
}

/// [`HostRecord::agent`] of a host whose agent is a separate `ferry
/// agent` process ([`crate::agents`]).
pub const REMOTE_AGENT: &str = "remote";

/// The start of a `stoppedReason` for what a remote agent cannot do yet.
pub const REMOTE_UNSUPPORTED: &str = "ResourceInitializationError: not supported on a remote agent";

/// The start of the `stoppedReason` of a task whose host was lost (ECS
/// says "Host EC2 (instance i-...) stopped/terminated.").
pub const LOST_HOST_REASON: &str = "Host ferry-agent ";

/// The `stoppedReason` of a task whose host `name` stopped heartbeating.
pub fn lost_reason(name: &str, ttl: Duration) -> String {
    let silent = if ttl.subsec_millis() == 0 {
        format!("{} s", ttl.as_secs())
    } else {
        format!("{} ms", ttl.as_millis())
    };
    format!("{LOST_HOST_REASON}{name} stopped responding (no heartbeat for {silent})")
}

/// Whether a task stopped because its host was lost (services do not
/// count it as a failure of their deployment).
pub fn lost_with_host(t: &TaskRecord) -> bool {
    t.stopped_reason
        .as_deref()
        .is_some_and(|r| r.starts_with(LOST_HOST_REASON))
}

/// Where EFS file systems live: each on the disk of the host that made
/// it, so a task that mounts one runs on that host.
pub trait FileSystemHosts: Send + Sync {
    /// The host file system `file_system_id` lives on (`None`: unknown,
    /// or a record from before hosts).
    fn host_of(&self, file_system_id: &str) -> Option<String>;
}

/// The host every file system `spec` mounts lives on: `Ok(None)` if it
/// mounts none (or their hosts are unknown); an error if they live on
/// different hosts (no host can mount them all).
pub fn file_systems_host(
    core: &Core,
    spec: &crate::model::task_definition::TaskDefSpec,
) -> Result<Option<String>, EcsError> {
    let Some(fsh) = core.file_system_hosts.get() else {
        return Ok(None);
    };
    let mut found: Option<(String, String)> = None;
    for v in &spec.volumes {
        let ferry_proto::plan::VolumeKind::Efs { file_system_id, .. } = &v.kind else {
            continue;
        };
        let Some(host) = fsh.host_of(file_system_id) else {
            continue;
        };
        match &found {
            Some((other_fs, h)) if *h != host => {
                return Err(EcsError::InvalidParameter(format!(
                    "The task mounts EFS file systems on different hosts ({other_fs} on {h}, {file_system_id} on {host}): a file system lives on the host that made it, and a task runs on one host."
                )));
            }
            Some(_) => {}
            None => found = Some((file_system_id.clone(), host)),
        }
    }
    Ok(found.map(|(_, h)| h))
}

/// Why a host cannot be configured.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The name breaks the rule.
    #[error(
        "host name {0:?} is invalid: use 1 to 64 letters, digits, '.', '_' or '-' (--name NAME)"
    )]
    Name(String),
    /// The machine's size could not be read.
    #[error("cannot read this machine's {what}: {detail}")]
    Detect {
        /// What was read.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
}

/// Checks a host name: `[A-Za-z0-9._-]{1,64}`.
pub fn check_name(name: &str) -> Result<(), HostError> {
    if ferry_proto::is_host_name(name) {
        Ok(())
    } else {
        Err(HostError::Name(name.chars().take(80).collect()))
    }
}

/// The machine's host name (the default `--name`).
pub fn default_name() -> Result<String, HostError> {
    let raw =
        std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| HostError::Detect {
            what: "host name",
            detail: e.to_string(),
        })?;
    let name = raw.trim().to_owned();
    check_name(&name)?;
    Ok(name)
}

/// What this process offers as a host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Unique among the hosts of a fleet: `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// CPU units the machine has (1024 per core).
    pub cpu_units: u64,
    /// Memory the machine has, MiB.
    pub memory_mib: u64,
    /// CPU units promised per unit it has.
    pub cpu_overcommit: f64,
    /// MiB promised per MiB it has.
    pub memory_overcommit: f64,
    /// With `--subnet`: the host runs only tasks whose ENI is in a VPC
    /// subnet inside this block.
    pub subnet: Option<Ipv4Cidr>,
}

impl HostConfig {
    /// A host of the given size with the default ratios and no subnet.
    pub fn new(name: impl Into<String>, cpu_units: u64, memory_mib: u64) -> Self {
        Self {
            name: name.into(),
            cpu_units,
            memory_mib,
            cpu_overcommit: DEFAULT_CPU_OVERCOMMIT,
            memory_overcommit: DEFAULT_MEMORY_OVERCOMMIT,
            subnet: None,
        }
    }

    /// This machine: its usable cores (the process's CPU affinity and
    /// cgroup quota count) and `MemTotal`.
    pub fn detect(name: impl Into<String>) -> Result<Self, HostError> {
        let cores = std::thread::available_parallelism()
            .map_err(|e| HostError::Detect {
                what: "number of CPUs",
                detail: e.to_string(),
            })?
            .get() as u64;
        let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| HostError::Detect {
            what: "memory size",
            detail: e.to_string(),
        })?;
        let kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| HostError::Detect {
                what: "memory size",
                detail: "/proc/meminfo has no MemTotal line".into(),
            })?;
        Ok(Self::new(name, cores * 1024, kib / 1024))
    }
}

/// Periods and lease lengths. The defaults are the documented ones;
/// tests shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    /// How long a host's liveness lease lasts: a host silent this long is
    /// lost.
    pub host_ttl: Duration,
    /// How often a host renews it (`None`: no thread; tests call
    /// [`heartbeat`]).
    pub heartbeat: Option<Duration>,
    /// How long the scheduler lease lasts: a new holder takes over within
    /// this time (plus [`Timings::scheduler_try`]) after the old one stops
    /// renewing.
    pub scheduler_ttl: Duration,
    /// How often its holder renews it.
    pub scheduler_renew: Duration,
    /// How often the other replicas try to take it.
    pub scheduler_try: Duration,
    /// How often a host's assignment loop looks for work (`None`: no
    /// thread; tests call [`assign::pass`]).
    pub assign_every: Option<Duration>,
    /// How often the scheduler lease's holder looks for lost hosts.
    pub lost_check_every: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            host_ttl: Duration::from_secs(30),
            heartbeat: Some(Duration::from_secs(3)),
            // 8 s, not 10: a replica that dies is replaced as the holder
            // within 8.5 s, and a task stopped after its death is relaunched
            // by the new holder within 10 s.
            scheduler_ttl: Duration::from_secs(8),
            scheduler_renew: Duration::from_secs(1),
            scheduler_try: Duration::from_millis(500),
            assign_every: Some(Duration::from_millis(300)),
            lost_check_every: Duration::from_secs(2),
        }
    }
}

/// A host's registration (table [`db::HOSTS`], key: its name). Written by
/// the host's own process when it starts; whether it is alive is its
/// lease, not this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    /// The host's name.
    pub name: String,
    /// CPU units it has (1024 per core).
    pub cpu_units: u64,
    /// Memory it has, MiB.
    pub memory_mib: u64,
    /// `--cpu-overcommit`.
    pub cpu_overcommit: f64,
    /// `--memory-overcommit`.
    pub memory_overcommit: f64,
    /// `--subnet`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Cidr>,
    /// When its process started (epoch seconds).
    pub started_at: f64,
    /// The ferry version it runs.
    pub version: String,
    /// The process that registered it last (a restart registers again; an
    /// older process that sees another instance here knows it was
    /// replaced).
    pub instance: String,
    /// How the control plane reaches its agent: `local` (in the replica's
    /// own process) or [`REMOTE_AGENT`] (a `ferry agent` that polls).
    pub agent: String,
}

impl HostRecord {
    /// CPU units that may be promised to tasks.
    pub fn cpu_capacity(&self) -> u64 {
        scaled(self.cpu_units, self.cpu_overcommit)
    }

    /// MiB that may be promised to tasks.
    pub fn memory_capacity(&self) -> u64 {
        scaled(self.memory_mib, self.memory_overcommit)
    }

    /// The record of `cfg`, started now by `instance`.
    pub fn of(cfg: &HostConfig, instance: &str) -> Self {
        Self {
            name: cfg.name.clone(),
            cpu_units: cfg.cpu_units,
            memory_mib: cfg.memory_mib,
            cpu_overcommit: cfg.cpu_overcommit,
            memory_overcommit: cfg.memory_overcommit,
            subnet: cfg.subnet,
            started_at: clock::now(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            instance: instance.to_owned(),
            agent: "local".into(),
        }
    }
}

fn scaled(n: u64, ratio: f64) -> u64 {
    // Ratios are checked at the command line (0.1 to 10000); floor so a
    // host never promises more than it said.
    (n as f64 * ratio).floor() as u64
}

/// What one unfinished task holds on its host (table
/// [`db::PLACEMENTS`]): its task-level CPU units and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// CPU units.
    pub cpu: u64,
    /// Memory, MiB.
    pub memory: u64,
}

impl Reservation {
    /// What `t` holds.
    pub fn of(t: &TaskRecord) -> Self {
        Self {
            cpu: u64::from(t.plan.cpu_units),
            memory: u64::from(t.plan.memory_mib),
        }
    }
}

/// Registers this process's host (if it is one) and takes its liveness
/// lease; on a single-host store, also rebuilds the reservations of every
/// unfinished task (records from before hosts had none).
pub(crate) fn register(core: &Core) -> Result<(), EcsError> {
    let Some(cfg) = &core.cfg.host else {
        return Ok(());
    };
    let rec = HostRecord::of(cfg, &core.local.instance);
    core.store.write(|w| {
        w.put(db::HOSTS, &cfg.name, &rec)?;
        Ok::<_, EcsError>(())
    })?;
    if core.cfg.fleet {
        heartbeat(core)?;
    }
    tracing::info!(
        host = %cfg.name,
        cpu_units = cfg.cpu_units,
        memory_mib = cfg.memory_mib,
        cpu_overcommit = cfg.cpu_overcommit,
        memory_overcommit = cfg.memory_overcommit,
        subnet = cfg.subnet.map(|s| s.to_string()).unwrap_or_default(),
        "registered as a host"
    );
    Ok(())
}

/// Renews this host's liveness lease. Returns whether this process is
/// still the host's registered instance (a later process with the same
/// `--name` replaces it; then this one logs it and keeps renewing, since
/// both are the same host's agent by name).
pub fn heartbeat(core: &Core) -> Result<bool, EcsError> {
    let Some(cfg) = &core.cfg.host else {
        return Ok(true);
    };
    // The holder is the host's name: a restarted process resumes its
    // host's lease at once instead of waiting for the old one to lapse.
    core.store
        .lease(&lease_name(&cfg.name), &cfg.name, core.cfg.timings.host_ttl)?;
    let current = core
        .store
        .get::<HostRecord>(db::HOSTS, &cfg.name)?
        .is_none_or(|r| r.instance == core.local.instance);
    Ok(current)
}

/// Renews the host's lease every `every` until `core` is dropped.
pub(crate) fn spawn_heartbeat(core: std::sync::Weak<Core>, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("ecs-heartbeat".into())
        .spawn(move || {
            let mut replaced = false;
            loop {
                std::thread::sleep(every);
                let Some(c) = core.upgrade() else { return };
                match heartbeat(&c) {
                    Ok(true) => replaced = false,
                    Ok(false) if !replaced => {
                        replaced = true;
                        tracing::error!(
                            "another ferry server registered this host's --name since this one started: two processes may be running tasks as one host"
                        );
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "renewing the host's lease failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the host heartbeat thread");
    }
}

/// The hosts that hold unfinished tasks, from their reservations.
fn hosts_with_tasks(core: &Core) -> Result<std::collections::BTreeSet<String>, EcsError> {
    Ok(core
        .store
        .scan::<Reservation>(db::PLACEMENTS, "")?
        .into_iter()
        .filter_map(|(k, _)| k.split_once('/').map(|(h, _)| h.to_owned()))
        .collect())
}

/// The lease holder's look for lost hosts: every unfinished task of a
/// host whose liveness lease is not live (no heartbeat for
/// [`Timings::host_ttl`]) is recorded STOPPED, with a reason naming the
/// host, and released (ENI, role sessions) like any stopped task; services
/// then replace them on the hosts that are live. Returns how many tasks.
pub fn check_lost(core: &Core, leader: &Leader) -> Result<usize, EcsError> {
    if !core.cfg.fleet {
        return Ok(0);
    }
    let leases: std::collections::HashMap<String, LeaseInfo> = core
        .store
        .leases(HOST_LEASE_PREFIX)?
        .into_iter()
        .filter_map(|l| {
            let name = l.name.strip_prefix(HOST_LEASE_PREFIX)?.to_owned();
            Some((name, l))
        })
        .collect();
    let mut marked = 0;
    for host in hosts_with_tasks(core)? {
        let lease = leases.get(&host);
        if lease.is_some_and(|l| l.live) {
            continue;
        }
        let reason = lost_reason(&host, core.cfg.timings.host_ttl);
        let keys: Vec<String> = core
            .store
            .scan::<Reservation>(db::PLACEMENTS, &db::placement_prefix(&host))?
            .into_iter()
            .map(|(k, _)| k[host.len() + 1..].to_owned())
            .collect();
        let mut here = 0;
        for key in keys {
            if crate::tasks::apply_lost(core, &key, &host, lease, leader, &reason)? {
                here += 1;
            }
        }
        if here > 0 {
            tracing::warn!(host = %host, tasks = here, "host lost: {reason}");
        }
        marked += here;
    }
    Ok(marked)
}

/// The stop code of a task lost with its host: as a task gone across a
/// restart, `TaskFailedToStart` if it never ran, else
/// `EssentialContainerExited` (its essential containers are gone).
pub fn lost_stop_code(t: &TaskRecord) -> &'static str {
    if t.started_at.is_none() {
        stop_code::TASK_FAILED_TO_START
    } else {
        stop_code::ESSENTIAL_CONTAINER_EXITED
    }
}

/// Whether `t` still holds capacity (is not STOPPED).
pub(crate) fn holds_capacity(t: &TaskRecord) -> bool {
    t.last_status != TaskStatus::Stopped
}

/// What this process keeps about itself as a replica and a host.
pub struct Local {
    /// This process: the scheduler lease's holder and its host record's
    /// `instance` (`NAME#RANDOM`: a restart is a new instance, so its
    /// fencing epoch is new).
    pub instance: String,
    /// Its term as the scheduler lease's holder.
    pub(crate) term: crate::leader::Term,
    /// The tasks its runtime holds or is starting.
    pub held: assign::Held,
    /// When it last looked for lost hosts.
    last_lost_check: std::sync::Mutex<Option<std::time::Instant>>,
    /// Set at a clean shutdown ([`crate::service::Core::resign`]).
    pub(crate) closing: std::sync::atomic::AtomicBool,
}

impl Local {
    /// The state of a process whose host (if any) is `name`.
    pub(crate) fn new(name: Option<&str>) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            instance: format!("{}#{}", name.unwrap_or("replica"), &id[..12]),
            term: crate::leader::Term::default(),
            held: assign::Held::default(),
            last_lost_check: std::sync::Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the lost-host check is due (and notes that it runs now).
    pub(crate) fn lost_check_due(&self, every: Duration) -> bool {
        let mut last = self
            .last_lost_check
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= every);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["a", "host-1.example_2", &"x".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65), "a:b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_defaults_run_fifty_source_tasks_on_a_two_core_24_gib_machine() {
        // 24 GiB as /proc/meminfo reports it on such a machine.
        let h = HostRecord::of(&HostConfig::new("dev", 2 * 1024, 24_105), "i");
        assert!(h.cpu_capacity() / 256 >= 50, "{}", h.cpu_capacity());
        assert!(h.memory_capacity() / 512 >= 50, "{}", h.memory_capacity());
        // And not without overcommit.
        assert!(h.cpu_units / 256 < 50 && h.memory_mib / 512 < 50);
    }

    #[test]
    fn this_machine_is_detected() {
        let h = HostConfig::detect("me").unwrap();
        assert!(h.cpu_units >= 1024 && h.cpu_units.is_multiple_of(1024));
        assert!(h.memory_mib > 0);
    }
}
