//! The control plane's `TaskRuntime` over the agent and task volumes.
//!
//! `start` hands the plan to the agent with [`TaskVolumes`] as the task's
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
//! whatever the previous server left ([`crate::recovery`]) and `reattach`
//! reports those tasks as gone, so the control plane marks them STOPPED.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_agent::{Agent, TaskHandle};
use ferry_control::runtime::{EventSink, Reattach, TaskRuntime};
use ferry_proto::plan::{TaskEvent, TaskPlan};

use crate::task_volumes::TaskVolumes;

/// Why a task that was running when the server stopped is gone.
const RESTART_REASON: &str =
    "the ferry server restarted while the task ran; its resources were released";

/// Runs tasks on this host.
pub struct HostRuntime {
    agent: Agent,
    storage: Arc<TaskVolumes>,
    running: Arc<Mutex<HashMap<String, Arc<TaskHandle>>>>,
}

impl HostRuntime {
    /// A runtime over `agent` and `storage`; release what a previous server
    /// left first ([`crate::recovery::release_leftovers`]).
    pub fn new(agent: Agent, storage: Arc<TaskVolumes>) -> Self {
        Self {
            agent,
            storage,
            running: Arc::new(Mutex::new(HashMap::new())),
        }
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
