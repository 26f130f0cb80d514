//! [`EcsService`]: the ECS `JsonService`. Owns the shared state every
//! operation uses ([`Core`]), dispatches operations to [`crate::ops`],
//! creates the `default` cluster on first start, reconciles unfinished tasks
//! with the runtime after a restart, and expires old stopped tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ferry_proto::plan::TaskEvent;
use ferry_proto::{AwsError, JsonService, RequestContext};
use ferry_store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::arn::{self, Scope};
use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::keys::StorageKeys;
use crate::model::cluster::ClusterRecord;
use crate::model::task::{TaskRecord, TaskStatus, stop_code};
use crate::model::task_definition::TaskDefRecord;
use crate::ops;
use crate::runtime::{EventSink, Reattach, TaskRuntime};
use crate::task_cache::TaskCache;

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
    /// Read cache of task records; refreshed after every task write.
    pub tasks: TaskCache,
    /// Epoch seconds of the last stopped-task sweep.
    last_sweep: AtomicU64,
    /// Serializes service API calls with scheduler passes.
    services: Mutex<()>,
    /// Wakes the scheduler early (a service changed).
    wake: (Mutex<bool>, Condvar),
    me: Weak<Core>,
}

/// What [`EcsService::new`] found and did about unfinished tasks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Tasks the runtime re-adopted.
    pub adopted: usize,
    /// Tasks the runtime no longer had, now recorded as STOPPED.
    pub lost: usize,
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
    ) -> Result<Self, EcsError> {
        let scope = Scope {
            region: cfg.region.clone(),
            account: cfg.account.clone(),
        };
        let core = Arc::new_cyclic(|me| Core {
            cfg,
            scope,
            store,
            runtime,
            keys,
            tasks: TaskCache::default(),
            last_sweep: AtomicU64::new(0),
            services: Mutex::new(()),
            wake: (Mutex::new(false), Condvar::new()),
            me: me.clone(),
        });
        core.first_start()?;
        core.upgrade_store()?;
        let reconciled = core.reconcile()?;
        core.sweep_stopped(clock::now())?;
        if let Some(every) = core.cfg.scheduler_interval {
            crate::scheduler::spawn(Arc::downgrade(&core), every);
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

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, EcsError> {
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
    let resp = f(core, ctx, req)?;
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
            "RegisterTaskDefinition" => run(c, ctx, body, task_definitions::register),
            "DescribeTaskDefinition" => run(c, ctx, body, task_definitions::describe),
            "ListTaskDefinitions" => run(c, ctx, body, task_definitions::list),
            "ListTaskDefinitionFamilies" => run(c, ctx, body, task_definitions::list_families),
            "DeregisterTaskDefinition" => run(c, ctx, body, task_definitions::deregister),
            "RunTask" => run(c, ctx, body, run_task::handle),
            "StopTask" => run(c, ctx, body, stop_task::handle),
            "DescribeTasks" => run(c, ctx, body, describe_tasks::handle),
            "ListTasks" => run(c, ctx, body, list_tasks::handle),
            "CreateService" => run(c, ctx, body, services::create),
            "UpdateService" => run(c, ctx, body, services::update),
            "DeleteService" => run(c, ctx, body, services::delete),
            "DescribeServices" => run(c, ctx, body, services::describe),
            "ListServices" => run(c, ctx, body, services::list),
            "TagResource" => run(c, ctx, body, tags::tag),
            "UntagResource" => run(c, ctx, body, tags::untag),
            "ListTagsForResource" => run(c, ctx, body, tags::list),
            other => Err(EcsError::UnknownOperation(other.to_owned())),
        };
        r.map_err(AwsError::from)
    }
}

impl Core {
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

    /// The sink for one task's events.
    pub fn sink(&self, cluster: &str, task_id: &str) -> EventSink {
        let me = self.me.clone();
        let key = db::task_key(cluster, task_id);
        Arc::new(move |event: TaskEvent| {
            // The service may be gone (server shutting down); then the
            // event is dropped and reconciled at the next start.
            if let Some(core) = me.upgrade()
                && let Err(e) = core.apply_event(&key, &event)
            {
                tracing::error!(task = %key, error = %e, "recording a task event failed");
            }
        })
    }

    fn apply_event(&self, key: &str, event: &TaskEvent) -> Result<(), EcsError> {
        let now = clock::now();
        let changed = self.store.write(|w| {
            let Some(mut t) = w.get::<TaskRecord>(db::TASKS, key)? else {
                return Ok::<_, EcsError>(false);
            };
            let changed = t.apply(event, now);
            if changed {
                w.put(db::TASKS, key, &t)?;
                if t.group.starts_with("service:") {
                    self.wake_scheduler();
                }
            }
            Ok(changed)
        })?;
        if changed {
            self.tasks.refresh(&self.store, key)?;
        }
        Ok(())
    }

    /// Records a stop request for a task and tells the runtime. Used by
    /// StopTask (`UserInitiated`) and by schedulers
    /// (`ServiceSchedulerInitiated`). Returns the updated record, or
    /// `None` if there is no such task.
    pub fn stop_task(
        &self,
        cluster: &str,
        task_id: &str,
        code: &str,
        reason: &str,
    ) -> Result<Option<TaskRecord>, EcsError> {
        let key = db::task_key(cluster, task_id);
        let now = clock::now();
        let r = self.store.write(|w| {
            let Some(mut t) = w.get::<TaskRecord>(db::TASKS, &key)? else {
                return Ok::<_, EcsError>(None);
            };
            let changed = t.request_stop(code, reason, now);
            if changed {
                w.put(db::TASKS, &key, &t)?;
            }
            Ok(Some((t, changed)))
        })?;
        let Some((t, changed)) = r else {
            return Ok(None);
        };
        if changed {
            self.tasks.refresh(&self.store, &key)?;
            self.runtime.stop(t.arn(), code, reason);
            // The runtime may have answered synchronously.
            return Ok(self.store.get(db::TASKS, &key)?.or(Some(t)));
        }
        Ok(Some(t))
    }

    fn reconcile(&self) -> Result<ReconcileReport, EcsError> {
        let mut report = ReconcileReport::default();
        let open: Vec<(String, TaskRecord)> = self
            .store
            .scan::<TaskRecord>(db::TASKS, "")?
            .into_iter()
            .filter(|(_, t)| t.last_status != TaskStatus::Stopped)
            .collect();
        for (key, t) in open {
            let sink = self.sink(&t.plan.cluster_name, &t.plan.task_id);
            match self.runtime.reattach(&t.plan, sink) {
                Reattach::Adopted => {
                    report.adopted += 1;
                    if t.desired_status == TaskStatus::Stopped {
                        // The stop may not have reached the old runtime.
                        let code = t.stop_code.as_deref().unwrap_or(stop_code::USER_INITIATED);
                        let reason = t.stopped_reason.as_deref().unwrap_or_default();
                        self.runtime.stop(t.arn(), code, reason);
                    }
                }
                Reattach::Gone { reason } => {
                    report.lost += 1;
                    let code = if t.started_at.is_none() {
                        stop_code::TASK_FAILED_TO_START
                    } else {
                        stop_code::ESSENTIAL_CONTAINER_EXITED
                    };
                    self.apply_event(
                        &key,
                        &TaskEvent::Stopped {
                            stop_code: code.into(),
                            stopped_reason: reason,
                        },
                    )?;
                }
            }
        }
        if report != ReconcileReport::default() {
            tracing::info!(
                adopted = report.adopted,
                lost = report.lost,
                "reconciled tasks"
            );
        }
        Ok(report)
    }

    /// Deletes STOPPED tasks older than the retention. Returns how many.
    pub fn sweep_stopped(&self, now: f64) -> Result<usize, EcsError> {
        self.last_sweep.store(now as u64, Ordering::Relaxed);
        let horizon = now - self.cfg.stopped_task_retention_secs.max(3600.0);
        let old: Vec<String> = self
            .store
            .scan::<TaskRecord>(db::TASKS, "")?
            .into_iter()
            .filter(|(_, t)| {
                t.last_status == TaskStatus::Stopped && t.stopped_at.is_some_and(|s| s < horizon)
            })
            .map(|(k, _)| k)
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        self.store.write(|w| {
            for k in &old {
                w.delete(db::TASKS, k)?;
            }
            Ok::<_, EcsError>(())
        })?;
        self.tasks.remove(&old);
        Ok(old.len())
    }

    /// Sweeps at most once a minute; called from busy paths.
    pub fn maybe_sweep(&self) {
        let now = clock::now();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if (now as u64).saturating_sub(last) >= 60
            && let Err(e) = self.sweep_stopped(now)
        {
            tracing::warn!(error = %e, "expiring stopped tasks failed");
        }
    }
}
