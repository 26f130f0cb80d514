//! The control plane's `TaskRuntime` over the agent and task volumes.
//!
//! `start` hands the plan to the agent with [`VolumeStorage`] as the task's
//! storage: the agent resolves images, then attaches the volume (KMS data
//! key, LUKS2 format, mount), runs the containers, and after everything else
//! is released detaches it (unmount, crypto-shred, retire the grant) before
//! it reports `Stopped`.
//!
//! Shutdown and restart: tasks are not re-adopted across restarts yet (their
//! log pipes and supervisor threads live in the server process). So a clean
//! shutdown stops every task first ([`HostRuntime::drain`]: stop code
//! `TerminationNotice`, volumes crypto-shredded) rather than leave volumes
//! unlocked with no control plane; after a crash, the next start releases
//! whatever the previous server left (containers, network, mounts, volumes)
//! and `reattach` reports those tasks as gone, so the control plane marks
//! them STOPPED.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_proto::plan::{TaskEvent, TaskPlan};
use ferry_agent::{Agent, TaskHandle};
use ferry_control::runtime::{EventSink, Reattach, TaskRuntime};

use super::is_mount_point;
use super::storage::VolumeStorage;

/// Why a task that was running when the server stopped is gone.
const RESTART_REASON: &str =
    "the ferry server restarted while the task ran; its resources were released";

/// Runs tasks on this host.
pub struct HostRuntime {
    agent: Agent,
    storage: Arc<VolumeStorage>,
    running: Arc<Mutex<HashMap<String, Arc<TaskHandle>>>>,
}

impl HostRuntime {
    /// A runtime over `agent` and `storage`. Releases what a previous server
    /// left behind under `tasks_dir`; returns what could not be released.
    pub fn new(agent: Agent, storage: Arc<VolumeStorage>, tasks_dir: &Path) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        for id in agent.orphaned_tasks() {
            if let Err(e) = agent.cleanup_orphan(&id) {
                problems.extend(e);
            }
        }
        if let Ok(entries) = std::fs::read_dir(tasks_dir) {
            for e in entries.flatten() {
                if let Err(e) = release_leftover_volume(&e.path()) {
                    problems.push(e);
                }
            }
        }
        let rt = Self {
            agent,
            storage,
            running: Arc::new(Mutex::new(HashMap::new())),
        };
        (rt, problems)
    }
}

impl HostRuntime {
    /// Stops every running task and waits (up to `timeout`) until all are
    /// released. Returns how many were still running at the deadline.
    pub fn drain(&self, timeout: std::time::Duration) -> usize {
        let handles: Vec<Arc<TaskHandle>> = self
            .running
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for h in &handles {
            h.stop("TerminationNotice", "the ferry server is shutting down");
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = self.running.lock().map(|m| m.len()).unwrap_or(0);
            if left == 0 || std::time::Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Unmounts and destroys a volume a previous server left in `dir`.
fn release_leftover_volume(dir: &Path) -> Result<(), String> {
    let root = dir.join("root");
    // EFS volumes are bind mounts under the task's volume: those first.
    for m in mounts_under(&root) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    // Never delete through a mount that is still there: it may be a
    // persistent file system.
    if let Some(m) = mounts_under(&root).first() {
        return Err(format!("{} is still mounted", m.display()));
    }
    if is_mount_point(&root) {
        ferry_volume::unmount(&root).map_err(|e| format!("unmounting {}: {e}", root.display()))?;
    }
    let luks = dir.join("volume.luks");
    if luks.exists() {
        ferry_volume::shred(&luks).map_err(|e| format!("shredding {}: {e}", luks.display()))?;
    }
    let _ = std::fs::remove_file(dir.join("volume.img"));
    std::fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
}

/// Mount points strictly below `p`, deepest first.
fn mounts_under(p: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m != p && m.starts_with(p))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    v
}

impl TaskRuntime for HostRuntime {
    fn start(&self, plan: TaskPlan, events: EventSink) {
        let arn = plan.task_arn.clone();
        let handle = Arc::new(self.agent.run_task_with_storage(
            plan,
            self.storage.clone(),
            move |ev: TaskEvent| events(ev),
        ));
        if let Ok(mut m) = self.running.lock() {
            m.insert(arn.clone(), handle.clone());
        }
        // Forget the handle once the task's supervisor is done.
        let running = self.running.clone();
        std::thread::spawn(move || {
            if let Some(o) = handle.wait() {
                log_outcome(&arn, &o);
            }
            if let Ok(mut m) = running.lock() {
                m.remove(&arn);
            }
        });
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

    fn reattach(&self, _plan: &TaskPlan, _events: EventSink) -> Reattach {
        Reattach::Gone {
            reason: RESTART_REASON.into(),
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

/// `DATA/tasks`: where task volumes live.
pub fn tasks_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tasks")
}
