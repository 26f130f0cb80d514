//! The assignment loop: every host runs the tasks assigned to it.
//!
//! A task placed on this process's host by this process is started at
//! once by [`crate::tasks::launch`] (the fast path, as on a single host).
//! A task placed here by another replica is only a record (PROVISIONING,
//! `host` = this host's name, a reservation under it): this loop finds it
//! by its reservation and starts it. It also carries out what others
//! recorded: a stop requested through another replica (desired STOPPED)
//! is sent to the runtime here, and a task another replica gave up on
//! (recorded STOPPED while it still runs here: this host was lost and came
//! back) is stopped, its volume crypto-shredded by the runtime as usual.
//!
//! Nothing is started twice: every task this process's runtime holds or is
//! starting is in [`Held`], inserted under [`Held::decide`] by whoever
//! starts it (the launch that recorded it, reconciliation that re-adopted
//! it, or this loop); the loop decides under the same lock after reading
//! the records, so a launch's commit and its insertion are one step to it.
//! An entry leaves once the runtime reported `Stopped` and the record is
//! STOPPED (or gone).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ferry_proto::plan::TaskEvent;

use super::Reservation;
use crate::db;
use crate::error::EcsError;
use crate::model::task::{TaskRecord, TaskStatus, stop_code};
use crate::model::task_definition::TaskDefSpec;
use crate::service::Core;
use crate::tasks;

/// The tasks this process's runtime holds or is starting, by task key.
#[derive(Default)]
pub struct Held {
    tasks: Mutex<HashMap<String, HeldTask>>,
    /// Grows with every change of `tasks` (the loop skips a look when
    /// neither this nor the store changed).
    generation: AtomicU64,
    decide: Mutex<()>,
    /// Shared with the loop's thread, which waits on it without keeping
    /// the core alive.
    wake: Arc<(Mutex<bool>, Condvar)>,
}

#[derive(Debug, Clone)]
struct HeldTask {
    arn: String,
    /// The runtime was asked to stop it.
    stop_sent: bool,
    /// The runtime reported `Stopped`.
    done: bool,
}

impl Held {
    fn map(&self) -> MutexGuard<'_, HashMap<String, HeldTask>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a change (the loop looks again).
    fn touch(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Held while deciding what to start (see the module docs).
    pub(crate) fn decide(&self) -> MutexGuard<'_, ()> {
        self.decide.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The runtime has (or is about to have) the task under `key`.
    pub(crate) fn insert(&self, key: &str, arn: &str) {
        self.touch();
        self.map().insert(
            key.to_owned(),
            HeldTask {
                arn: arn.to_owned(),
                stop_sent: false,
                done: false,
            },
        );
    }

    /// Whether the runtime has the task under `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.map().contains_key(key)
    }

    /// Notes that the runtime is asked to stop the task; returns whether
    /// it should be (held, not asked yet, not finished).
    pub(crate) fn stop_once(&self, key: &str) -> bool {
        match self.map().get_mut(key) {
            Some(h) if !h.stop_sent && !h.done => {
                h.stop_sent = true;
                self.touch();
                true
            }
            _ => false,
        }
    }

    /// The runtime reported `Stopped` for the task under `key`.
    pub(crate) fn done(&self, key: &str) {
        if let Some(h) = self.map().get_mut(key) {
            h.done = true;
            self.touch();
        }
    }

    /// Forgets the task under `key` once its runtime is done and its
    /// record says STOPPED.
    pub(crate) fn forget_done(&self, key: &str) {
        let mut map = self.map();
        if map.get(key).is_some_and(|h| h.done) {
            map.remove(key);
            self.touch();
        }
    }

    fn keys(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// Makes the loop look soon.
    pub(crate) fn wake(&self) {
        let (m, cv) = &*self.wake;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }
}

/// Waits up to `timeout` for [`Held::wake`].
fn wait(wake: &(Mutex<bool>, Condvar), timeout: Duration) {
    let (m, cv) = wake;
    let g = m.lock().unwrap_or_else(|p| p.into_inner());
    let (mut g, _) = cv
        .wait_timeout_while(g, timeout, |woken| !*woken)
        .unwrap_or_else(|p| p.into_inner());
    *g = false;
}

/// What one pass did (tests look).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Work {
    /// Tasks started here.
    pub started: Vec<String>,
    /// Tasks the runtime was asked to stop.
    pub stopped: Vec<String>,
    /// Tasks recorded STOPPED here without ever running (stopped before
    /// this host started them).
    pub finished: Vec<String>,
}

/// One look at the tasks assigned to this host (see the module docs).
pub fn pass(core: &Arc<Core>) -> Result<Work, EcsError> {
    let Some(me) = core.host_name() else {
        return Ok(Work::default());
    };
    let mut keys: BTreeSet<String> = core
        .store
        .scan::<Reservation>(db::PLACEMENTS, &db::placement_prefix(me))?
        .into_iter()
        .map(|(k, _)| k[me.len() + 1..].to_owned())
        .collect();
    keys.extend(core.local.held.keys());
    let held = &core.local.held;
    let mut start = Vec::new();
    let mut stop = Vec::new();
    let mut finish = Vec::new();
    {
        let _deciding = held.decide();
        if core.closing() {
            return Ok(Work::default());
        }
        for key in keys {
            let rec: Option<TaskRecord> = core.store.get(db::TASKS, &key)?;
            let mut map = held.map();
            let live = rec
                .as_ref()
                .filter(|t| t.last_status != TaskStatus::Stopped);
            match (live, map.get_mut(&key)) {
                // Gone or STOPPED: stop what still runs here; forget what
                // the runtime finished.
                (None, Some(h)) => {
                    if h.done {
                        map.remove(&key);
                        held.touch();
                    } else if !h.stop_sent {
                        h.stop_sent = true;
                        held.touch();
                        let (code, reason) = rec.as_ref().map_or(
                            (stop_code::USER_INITIATED, "the task's record is gone"),
                            |t| {
                                (
                                    t.stop_code.as_deref().unwrap_or(stop_code::USER_INITIATED),
                                    t.stopped_reason.as_deref().unwrap_or_default(),
                                )
                            },
                        );
                        stop.push((h.arn.clone(), code.to_owned(), reason.to_owned()));
                    }
                }
                (None, None) => {}
                (Some(t), _) if core.host_of(t) != me => {}
                (Some(t), Some(h)) => {
                    if t.desired_status == TaskStatus::Stopped && !h.stop_sent && !h.done {
                        h.stop_sent = true;
                        held.touch();
                        stop.push((h.arn.clone(), code_of(t), reason_of(t)));
                    }
                }
                (Some(t), None) => {
                    if t.desired_status == TaskStatus::Stopped {
                        finish.push((key.clone(), code_of(t), reason_of(t)));
                    } else {
                        held.touch();
                        map.insert(
                            key.clone(),
                            HeldTask {
                                arn: t.arn().to_owned(),
                                stop_sent: false,
                                done: false,
                            },
                        );
                        start.push(t.clone());
                    }
                }
            }
        }
    }
    let mut work = Work::default();
    for t in start {
        let td = core.find_task_definition(&t.task_definition_arn)?;
        work.started.push(t.arn().to_owned());
        match td {
            Some(td) => start_here(core, &t, &td.spec, false),
            None => tasks::sink(core, &t.plan.cluster_name, &t.plan.task_id)(TaskEvent::Stopped {
                stop_code: stop_code::TASK_FAILED_TO_START.into(),
                stopped_reason: format!("the task definition {} is gone", t.task_definition_arn),
            }),
        }
    }
    for (arn, code, reason) in stop {
        core.runtime.stop(&arn, &code, &reason);
        work.stopped.push(arn);
    }
    for (key, code, reason) in finish {
        // Nothing of it ran here: recording the stop finishes it.
        tasks::finish_unstarted(core, &key, &code, &reason)?;
        work.finished.push(key);
    }
    Ok(work)
}

/// `t`'s recorded stop code (`UserInitiated` if none).
pub(crate) fn code_of(t: &TaskRecord) -> String {
    t.stop_code
        .clone()
        .unwrap_or_else(|| stop_code::USER_INITIATED.into())
}

/// `t`'s recorded stop reason.
pub(crate) fn reason_of(t: &TaskRecord) -> String {
    t.stopped_reason.clone().unwrap_or_default()
}

/// Starts a task on this host: storage admission (unless the launch
/// already admitted it), the task's identity (role sessions, secrets:
/// they live on the host that runs it), then the runtime. A failure stops
/// it as the runtime would.
pub(crate) fn start_here(core: &Arc<Core>, t: &TaskRecord, spec: &TaskDefSpec, admitted: bool) {
    let events = tasks::sink(core, &t.plan.cluster_name, &t.plan.task_id);
    if !admitted && let Err(detail) = core.runtime.admit(&t.plan) {
        events(TaskEvent::Stopped {
            stop_code: stop_code::TASK_FAILED_TO_START.into(),
            stopped_reason: format!("{}: {detail}", tasks::NO_STORAGE),
        });
        return;
    }
    match tasks::prepare_identity(core, t, spec) {
        Ok(plan) => core.runtime.start(plan, events),
        Err(reason) => events(TaskEvent::Stopped {
            stop_code: stop_code::TASK_FAILED_TO_START.into(),
            stopped_reason: reason,
        }),
    }
}

/// A look even when nothing seems to have changed, this often.
const LOOK_ANYWAY: Duration = Duration::from_secs(5);

/// Runs passes every `every` (or when woken) until `core` is dropped; a
/// pass is skipped while neither the tasks' and reservations' table
/// versions nor the held tasks changed (one cheap read instead of a scan).
pub(crate) fn spawn(core: Weak<Core>, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("ecs-assign".into())
        .spawn(move || {
            let mut last: Option<(Vec<u64>, u64, std::time::Instant)> = None;
            loop {
                let Some(c) = core.upgrade() else { return };
                if c.closing() {
                    return;
                }
                // Read before the pass: a change during it makes another.
                let versions = c.store.versions(&[db::TASKS, db::PLACEMENTS]).ok();
                let generation = c.local.held.generation();
                let unchanged = matches!((&last, &versions),
                    (Some((v, g, at)), Some(now))
                        if v == now && *g == generation && at.elapsed() < LOOK_ANYWAY);
                if !unchanged {
                    match pass(&c) {
                        Ok(_) => {
                            last = versions.map(|v| (v, generation, std::time::Instant::now()));
                        }
                        Err(e) => {
                            last = None;
                            tracing::warn!(error = %e, "looking for this host's tasks failed");
                        }
                    }
                }
                let wake = c.local.held.wake.clone();
                drop(c);
                wait(&wake, every);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the host's assignment loop");
    }
}
