//! [`EcsService`]: the ECS `JsonService`. Owns the shared state every
//! operation uses ([`Core`]), dispatches operations to [`crate::ops`],
//! creates the `default` cluster on first start and upgrades older
//! records, then has [`crate::tasks`] reconcile unfinished tasks with the
//! runtime and expire old stopped tasks.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ferry_proto::{AwsError, JsonService, RequestContext};
use ferry_store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::arn::{self, Scope};
use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::hosts::{self, HostConfig, Local, Timings, placement};
use crate::identity::IdentityServices;
use crate::keys::StorageKeys;
use crate::leader::Leader;
use crate::model::cluster::ClusterRecord;
use crate::model::task::TaskRecord;
use crate::model::task_definition::TaskDefRecord;
use crate::networks::TaskNetworks;
use crate::ops;
use crate::runtime::TaskRuntime;
use crate::task_cache::TaskCache;
use crate::tasks;

pub use crate::tasks::ReconcileReport;

/// Server-level settings of the ECS service.
#[derive(Debug, Clone)]
pub struct EcsConfig {
    /// The server's region (ARNs, availability zone).
    pub region: String,
    /// The server's account id (ARNs).
    pub account: String,
    /// How long STOPPED tasks stay describable, seconds (ECS: about an
    /// hour; ferry's default is 1 hour, never less).
    pub stopped_task_retention_secs: f64,
    /// Whether platform version 1.3.0 (unencrypted ephemeral storage) may
    /// be used. An operator can forbid it.
    pub allow_unencrypted_storage: bool,
    /// How often the service scheduler runs a pass (`None`: no background
    /// thread; tests call [`crate::scheduler::pass`] themselves).
    pub scheduler_interval: Option<Duration>,
    /// This process's host: the runtime it was given runs the tasks
    /// placed on it (`None`: `--no-agent`, an API replica only).
    pub host: Option<HostConfig>,
    /// Whether other processes share the store (replicas and hosts of a
    /// fleet): tasks belong to hosts by name, leases elect the singletons.
    /// Without, this process is the only host and replica.
    pub fleet: bool,
    /// Lease lengths and periods.
    pub timings: Timings,
}

impl EcsConfig {
    /// Defaults for `region` and `account`.
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            account: account.into(),
            stopped_task_retention_secs: 3600.0,
            allow_unencrypted_storage: true,
            scheduler_interval: Some(Duration::from_millis(250)),
            // A nominal host for embedding and tests; `ferry server`
            // measures its machine (HostConfig::detect).
            host: Some(HostConfig::new("local", 16 * 1024, 64 * 1024)),
            fleet: false,
            timings: Timings::default(),
        }
    }
}

/// The state every operation shares.
pub struct Core {
    /// Settings.
    pub cfg: EcsConfig,
    /// ARN scope.
    pub scope: Scope,
    /// The server's store.
    pub store: Arc<Store>,
    /// Where tasks run.
    pub runtime: Arc<dyn TaskRuntime>,
    /// KMS checks.
    pub keys: Arc<dyn StorageKeys>,
    /// The VPC service: tasks' ENIs.
    pub networks: Arc<dyn TaskNetworks>,
    /// Task and execution roles, secrets.
    pub identity: IdentityServices,
    /// Read cache of task records; refreshed after every task write.
    pub tasks: TaskCache,
    /// Epoch seconds of the last stopped-task sweep ([`tasks::maybe_sweep`]).
    pub(crate) last_sweep: AtomicU64,
    /// Serializes service API calls with scheduler passes.
    services: Mutex<()>,
    /// Wakes the scheduler early (a service changed).
    wake: (Mutex<bool>, Condvar),
    /// This process as a replica and a host: its lease term, the tasks its
    /// runtime holds.
    pub local: Local,
    /// Which host each EFS file system lives on (set once by the
    /// composition root; unset: placement ignores file systems).
    pub file_system_hosts: std::sync::OnceLock<Arc<dyn crate::hosts::FileSystemHosts>>,
}

/// The ECS service (`AmazonEC2ContainerServiceV20141113`).
pub struct EcsService {
    core: Arc<Core>,
    reconciled: ReconcileReport,
}

impl EcsService {
    /// Opens the ECS service over the server's `store`: creates the
    /// `default` cluster on first start, then reconciles tasks that were
    /// not STOPPED when the previous server went away (see
    /// `docs/control-plane.md`).
    pub fn new(
        cfg: EcsConfig,
        store: Arc<Store>,
        runtime: Arc<dyn TaskRuntime>,
        keys: Arc<dyn StorageKeys>,
        networks: Arc<dyn TaskNetworks>,
    ) -> Result<Self, EcsError> {
        Self::with_identity(
            cfg,
            store,
            runtime,
            keys,
            networks,
            IdentityServices::unconfigured(),
        )
    }

    /// [`EcsService::new`] with the services that give tasks their roles'
    /// sessions and their secrets (without them, tasks naming a task role
    /// or secrets fail to start).
    pub fn with_identity(
        cfg: EcsConfig,
        store: Arc<Store>,
        runtime: Arc<dyn TaskRuntime>,
        keys: Arc<dyn StorageKeys>,
        networks: Arc<dyn TaskNetworks>,
        identity: IdentityServices,
    ) -> Result<Self, EcsError> {
        let scope = Scope {
            region: cfg.region.clone(),
            account: cfg.account.clone(),
        };
        let host_name = cfg.host.as_ref().map(|h| h.name.clone());
        let core = Arc::new(Core {
            cfg,
            scope,
            store,
            runtime,
            keys,
            networks,
            identity,
            tasks: TaskCache::default(),
            last_sweep: AtomicU64::new(0),
            services: Mutex::new(()),
            wake: (Mutex::new(false), Condvar::new()),
            local: Local::new(host_name.as_deref()),
            file_system_hosts: std::sync::OnceLock::new(),
        });
        let weak = Arc::downgrade(&core);
        core.runtime
            .set_host_stop(Arc::new(move |arn, code, reason| {
                let (Some(core), Some(crate::arn::Resource::Task { cluster, id })) =
                    (weak.upgrade(), crate::arn::parse(arn))
                else {
                    return;
                };
                if let Err(e) = tasks::stop(&core, &cluster, &id, code, reason) {
                    tracing::error!(task = arn, error = %e, "recording the host's stop failed");
                    // The runtime still stops it; its events finish the record.
                    core.runtime.stop(arn, code, reason);
                }
            }));
        core.first_start()?;
        core.upgrade_store()?;
        // This host's record and lease before anything is placed or
        // reconciled (its own tasks must not look lost).
        hosts::register(&core)?;
        if !core.cfg.fleet {
            // Records from before hosts hold no reservation yet.
            placement::rebuild(&core, &Leader(None))?;
        }
        let reconciled = tasks::reconcile(&core)?;
        if !core.cfg.fleet {
            // In a fleet the scheduler lease's holder sweeps.
            tasks::sweep_stopped(&core, clock::now())?;
        }
        let weak = Arc::downgrade(&core);
        if let Some(every) = core.cfg.scheduler_interval {
            crate::scheduler::spawn(weak.clone(), every);
        }
        if core.cfg.host.is_some() {
            if let (true, Some(every)) = (core.cfg.fleet, core.cfg.timings.heartbeat) {
                hosts::spawn_heartbeat(weak.clone(), every);
            }
            if let Some(every) = core.cfg.timings.assign_every {
                hosts::assign::spawn(weak, every);
            }
        }
        Ok(Self { core, reconciled })
    }

    /// What startup reconciliation did.
    pub fn reconciled(&self) -> &ReconcileReport {
        &self.reconciled
    }

    /// The shared core (for in-process callers such as a service scheduler).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, EcsError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| EcsError::Serialization(format!("request body: {e}")))
}

fn run<Req: DeserializeOwned, Resp: Serialize>(
    core: &Arc<Core>,
    ctx: &RequestContext,
    body: &[u8],
    f: fn(&Arc<Core>, &RequestContext, Req) -> Result<Resp, EcsError>,
) -> Result<serde_json::Value, EcsError> {
    let req = parse(body)?;
    encode(f(core, ctx, req)?)
}

/// A response as JSON (every JSON service of this crate answers so).
pub(crate) fn encode<T: Serialize>(resp: T) -> Result<serde_json::Value, EcsError> {
    serde_json::to_value(resp).map_err(|e| EcsError::Server(format!("encoding the response: {e}")))
}

impl JsonService for EcsService {
    fn target_prefix(&self) -> &'static str {
        "AmazonEC2ContainerServiceV20141113"
    }

    fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, AwsError> {
        use ops::*;
        let c = &self.core;
        let r = match operation {
            "CreateCluster" => run(c, ctx, body, clusters::create),
            "DescribeClusters" => run(c, ctx, body, clusters::describe),
            "ListClusters" => run(c, ctx, body, clusters::list),
            "UpdateCluster" => run(c, ctx, body, clusters::update),
            "DeleteCluster" => run(c, ctx, body, clusters::delete),
            "DescribeCapacityProviders" => run(c, ctx, body, capacity_providers::describe),
            "PutClusterCapacityProviders" => run(c, ctx, body, capacity_providers::put_cluster),
            "CreateCapacityProvider" => run(c, ctx, body, capacity_providers::create),
            "RegisterTaskDefinition" => run(c, ctx, body, task_definitions::register),
            "DescribeTaskDefinition" => run(c, ctx, body, task_definitions::describe),
            "ListTaskDefinitions" => run(c, ctx, body, task_definitions::list),
            "ListTaskDefinitionFamilies" => run(c, ctx, body, task_definitions::list_families),
            "DeregisterTaskDefinition" => run(c, ctx, body, task_definitions::deregister),
            "DeleteTaskDefinitions" => run(c, ctx, body, task_definitions::delete),
            "RunTask" => run(c, ctx, body, run_task::handle),
            "StopTask" => run(c, ctx, body, stop_task::handle),
            "DescribeTasks" => run(c, ctx, body, describe_tasks::handle),
            "ListTasks" => run(c, ctx, body, list_tasks::handle),
            "CreateService" => run(c, ctx, body, services::create),
            "UpdateService" => run(c, ctx, body, services::update),
            "DeleteService" => run(c, ctx, body, services::delete),
            "DescribeServices" => run(c, ctx, body, services::describe),
            "ListServices" => run(c, ctx, body, services::list),
            "UpdateTaskProtection" => run(c, ctx, body, task_protection::update),
            "GetTaskProtection" => run(c, ctx, body, task_protection::get),
            "ListAccountSettings" => run(c, ctx, body, account_settings::list),
            "PutAccountSetting" => run(c, ctx, body, account_settings::put_setting),
            "PutAccountSettingDefault" => run(c, ctx, body, account_settings::put_default),
            "DeleteAccountSetting" => run(c, ctx, body, account_settings::delete),
            "TagResource" => run(c, ctx, body, tags::tag),
            "UntagResource" => run(c, ctx, body, tags::untag),
            "ListTagsForResource" => run(c, ctx, body, tags::list),
            other => Err(EcsError::UnknownOperation(other.to_owned())),
        };
        r.map_err(AwsError::from)
    }
}

impl Core {
    /// This process's host name, if it is a host.
    pub fn host_name(&self) -> Option<&str> {
        self.cfg.host.as_ref().map(|h| h.name.as_str())
    }

    /// The host `t` belongs to: its recorded host, or on a single-host
    /// store this host (whatever it was called when the task started;
    /// records from before hosts name none).
    pub fn host_of<'a>(&'a self, t: &'a TaskRecord) -> &'a str {
        if self.cfg.fleet {
            &t.host
        } else {
            self.host_name().unwrap_or("")
        }
    }

    /// Whether this process's runtime runs (or is to run) `t`.
    pub fn runs_here(&self, t: &TaskRecord) -> bool {
        self.host_name().is_some_and(|me| self.host_of(t) == me)
            || (!self.cfg.fleet && self.cfg.host.is_none())
    }

    /// At a clean shutdown, before the runtime is drained or left: no
    /// scheduler pass and no assignment-loop look runs from now on (a
    /// pass in progress finishes first), so nothing is launched or
    /// started behind the drain's back (a service would otherwise replace
    /// the tasks the drain stops), and the scheduler lease is given up so
    /// another replica takes over at once. The host's own lease is kept:
    /// its tasks keep running and are re-adopted at the next start.
    pub fn resign(&self) {
        {
            let _pass = self.services_lock();
            self.local
                .closing
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        // A look of the assignment loop in progress finishes too.
        drop(self.local.held.decide());
        crate::leader::resign(self);
    }

    /// Whether [`Core::resign`] was called.
    pub fn closing(&self) -> bool {
        self.local.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Held by service API calls and scheduler passes, one at a time.
    pub fn services_lock(&self) -> MutexGuard<'_, ()> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the scheduler run a pass soon.
    pub fn wake_scheduler(&self) {
        let (m, cv) = &self.wake;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }

    /// Waits up to `timeout` for [`Core::wake_scheduler`].
    pub fn wait_for_wake(&self, timeout: Duration) {
        let (m, cv) = &self.wake;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let (mut g, _) = cv
            .wait_timeout_while(g, timeout, |woken| !*woken)
            .unwrap_or_else(|p| p.into_inner());
        *g = false;
    }

    fn first_start(&self) -> Result<(), EcsError> {
        let now = clock::now();
        self.store.write(|w| {
            if w.get::<bool>(db::META, "initialized")?.is_some() {
                return Ok::<_, EcsError>(());
            }
            if w.get::<ClusterRecord>(db::CLUSTERS, "default")?.is_none() {
                w.put(
                    db::CLUSTERS,
                    "default",
                    &ClusterRecord {
                        name: "default".into(),
                        arn: self.scope.cluster("default"),
                        active: true,
                        tags: vec![],
                        settings: vec![],
                        configuration: None,
                        storage_key_arn: None,
                        created_at: now,
                        capacity_providers: vec![],
                        default_capacity_provider_strategy: vec![],
                        service_connect_defaults: None,
                    },
                )?;
            }
            w.put(db::META, "initialized", &true)?;
            Ok(())
        })
    }

    /// Brings records written by earlier servers up to date, once each.
    fn upgrade_store(&self) -> Result<(), EcsError> {
        self.store.write(|w| {
            if w.get::<bool>(db::META, db::CONTAINER_SIZES)?.is_none() {
                for (key, mut td) in w.scan::<TaskDefRecord>(db::TASKDEFS, "")? {
                    if td.fill_container_sizes() {
                        w.put(db::TASKDEFS, &key, &td)?;
                    }
                }
                w.put(db::META, db::CONTAINER_SIZES, &true)?;
            }
            if w.get::<bool>(db::META, db::CONTAINER_SECRETS)?.is_none() {
                for (key, mut td) in w.scan::<TaskDefRecord>(db::TASKDEFS, "")? {
                    if td.fill_secrets() {
                        w.put(db::TASKDEFS, &key, &td)?;
                    }
                }
                w.put(db::META, db::CONTAINER_SECRETS, &true)?;
            }
            Ok::<_, EcsError>(())
        })
    }

    /// An ACTIVE cluster by name or ARN (`default` when absent).
    pub fn active_cluster(&self, name_or_arn: Option<&str>) -> Result<ClusterRecord, EcsError> {
        let name = match name_or_arn {
            None | Some("") => "default".to_owned(),
            Some(s) => arn::cluster_name(s).ok_or_else(EcsError::cluster_not_found)?,
        };
        match self.store.get::<ClusterRecord>(db::CLUSTERS, &name)? {
            Some(c) if c.active => Ok(c),
            _ => Err(EcsError::cluster_not_found()),
        }
    }

    /// A task definition by `family`, `family:revision` or ARN; `family`
    /// alone means the latest ACTIVE revision.
    pub fn find_task_definition(&self, id: &str) -> Result<Option<TaskDefRecord>, EcsError> {
        let (family, revision) = if id.starts_with("arn:") {
            match arn::parse(id) {
                Some(arn::Resource::TaskDefinition { family, revision }) => {
                    (family, Some(revision))
                }
                _ => return Ok(None),
            }
        } else {
            match id.rsplit_once(':') {
                Some((f, r)) => match r.parse::<u32>() {
                    Ok(r) => (f.to_owned(), Some(r)),
                    Err(_) => return Ok(None),
                },
                None => (id.to_owned(), None),
            }
        };
        match revision {
            Some(r) => Ok(self.store.get(db::TASKDEFS, &db::taskdef_key(&family, r))?),
            None => Ok(self
                .store
                .scan::<TaskDefRecord>(db::TASKDEFS, &db::taskdef_prefix(&family))?
                .into_iter()
                .map(|(_, t)| t)
                .rfind(|t| t.active && t.family == family)),
        }
    }
}
