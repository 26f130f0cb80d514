//! Container health checks, as Docker runs them for ECS: the check runs
//! inside the container (`runc exec`) `interval` after the container
//! started and then `interval` after each check ended, each bounded by
//! `timeout`. The container starts UNKNOWN, is HEALTHY on the first
//! success and UNHEALTHY after `retries` consecutive failures; failures
//! during `startPeriod` do not count until a check has passed.
//!
//! The rules live in [`Tracker`] (pure), the schedule in [`monitor`]
//! (generic over a [`Probe`]), so both are tested without a runtime; the
//! supervisor runs one [`monitor`] thread per checked container with an
//! [`ExecProbe`].

use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use ferry_proto::plan::{HealthCheck, HealthStatus};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::runc::Runc;

/// How often a running check is polled for its end or a cancel.
const POLL: Duration = Duration::from_millis(50);
/// How long a killed check gets to be reaped by runc before runc itself
/// is killed.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// The health state machine of one container.
#[derive(Debug, Clone)]
pub struct Tracker {
    retries: u32,
    start_period: Duration,
    status: HealthStatus,
    failures: u32,
    /// A check has passed: the start period no longer shields failures.
    passed_once: bool,
}

impl Tracker {
    /// UNKNOWN, with the check's `retries` and `startPeriod`.
    pub fn new(retries: u32, start_period: Duration) -> Self {
        Self {
            retries: retries.max(1),
            start_period,
            status: HealthStatus::Unknown,
            failures: 0,
            passed_once: false,
        }
    }

    /// The current status.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Records one check's result, `since_start` after the container
    /// started. Returns the new status when it changed.
    pub fn record(&mut self, passed: bool, since_start: Duration) -> Option<HealthStatus> {
        let before = self.status;
        if passed {
            self.failures = 0;
            self.passed_once = true;
            self.status = HealthStatus::Healthy;
        } else if self.passed_once || since_start >= self.start_period {
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        (self.status != before).then_some(self.status)
    }
}

/// How one check run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0 within the timeout.
    Passed,
    /// Non-zero exit, timeout, or the check could not run.
    Failed,
    /// The monitor was cancelled while the check ran.
    Cancelled,
}

/// Runs the check once.
pub trait Probe {
    /// Runs the check, at most `timeout`; returns early with
    /// [`Outcome::Cancelled`] when `cancel` fires.
    fn run(&mut self, timeout: Duration, cancel: &Receiver<()>) -> Outcome;
}

/// The durations of a check (seconds in the plan; tests use milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Before the first check, and between the end of one and the next.
    pub interval: Duration,
    /// Bound of one check.
    pub timeout: Duration,
    /// Grace period after start.
    pub start_period: Duration,
}

impl Timing {
    /// The plan's durations.
    pub fn of(check: &HealthCheck) -> Self {
        Self {
            interval: Duration::from_secs(u64::from(check.interval_secs)),
            timeout: Duration::from_secs(u64::from(check.timeout_secs)),
            start_period: Duration::from_secs(u64::from(check.start_period_secs)),
        }
    }
}

/// True when `cancel` fired (a message, or its sender was dropped) within
/// `wait`.
fn cancelled_within(cancel: &Receiver<()>, wait: Duration) -> bool {
    !matches!(cancel.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
}

/// Runs checks until `cancel` fires (the supervisor drops its sender when
/// the container exits or the task is cleaned up), calling `report` with
/// every status change.
pub fn monitor<P: Probe>(
    retries: u32,
    timing: Timing,
    mut probe: P,
    cancel: &Receiver<()>,
    mut report: impl FnMut(HealthStatus),
) {
    let started = Instant::now();
    let mut tracker = Tracker::new(retries, timing.start_period);
    loop {
        if cancelled_within(cancel, timing.interval) {
            return;
        }
        let passed = match probe.run(timing.timeout, cancel) {
            Outcome::Cancelled => return,
            Outcome::Passed => true,
            Outcome::Failed => false,
        };
        if let Some(s) = tracker.record(passed, started.elapsed()) {
            report(s);
        }
    }
}

/// The check run in the container with `runc exec` (the container's
/// process settings: user, env, cwd; the check's argv).
#[derive(Debug)]
pub struct ExecProbe {
    runc: Runc,
    id: String,
    argv: Vec<String>,
    /// Where runc writes the check process's pid, so a timed-out check
    /// can be killed inside the container (killing runc alone would leave
    /// it running there).
    pid_file: PathBuf,
}

impl ExecProbe {
    /// A probe of container `id` running `argv`.
    pub fn new(runc: Runc, id: String, argv: Vec<String>, pid_file: PathBuf) -> Self {
        Self {
            runc,
            id,
            argv,
            pid_file,
        }
    }

    /// Kills the check process (by its pid file) with its descendants
    /// (a shell's `curl` would otherwise outlive it in the container), then
    /// runc exec.
    fn kill(&self, child: &mut Child) {
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 0);
        // runc exec is still running, so it has not reaped the check
        // process: its pid cannot have been reused. The tree is read
        // before any kill, since killed parents' children are reparented.
        if let Some(pid) = pid {
            for p in std::iter::once(pid).chain(descendants(pid)) {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        let until = Instant::now() + KILL_GRACE;
        while Instant::now() < until {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The pids below `root` in the process tree, from /proc (host view).
fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(stat_ppid)
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, _) in parent_of.iter().filter(|(_, pp)| *pp == p) {
            if c != root && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// The parent pid in a /proc/PID/stat line (`pid (comm) state ppid ...`;
/// comm may hold spaces and parentheses, so read after the last `)`).
fn stat_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

impl Probe for ExecProbe {
    fn run(&mut self, timeout: Duration, cancel: &Receiver<()>) -> Outcome {
        let _ = std::fs::remove_file(&self.pid_file);
        let mut child = match self.runc.exec(&self.id, &self.argv, &self.pid_file) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(container = %self.id, "health check: {e}");
                return Outcome::Failed;
            }
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => return Outcome::Passed,
                Ok(Some(_)) => return Outcome::Failed,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(container = %self.id, "health check wait: {e}");
                    self.kill(&mut child);
                    return Outcome::Failed;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                self.kill(&mut child);
                return Outcome::Failed;
            }
            if cancelled_within(cancel, POLL.min(deadline - now)) {
                self.kill(&mut child);
                return Outcome::Cancelled;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::mpsc;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn retries_consecutive_failures_make_it_unhealthy_one_success_healthy() {
        let mut t = Tracker::new(3, Duration::ZERO);
        assert_eq!(t.status(), HealthStatus::Unknown);
        assert_eq!(t.record(false, S), None);
        assert_eq!(t.record(false, 2 * S), None);
        assert_eq!(t.record(false, 3 * S), Some(HealthStatus::Unhealthy));
        assert_eq!(t.record(false, 4 * S), None);
        assert_eq!(t.record(true, 5 * S), Some(HealthStatus::Healthy));
        // A success resets the count.
        assert_eq!(t.record(false, 6 * S), None);
        assert_eq!(t.record(false, 7 * S), None);
        assert_eq!(t.record(true, 8 * S), None);
        assert_eq!(t.record(false, 9 * S), None);
        assert_eq!(t.record(false, 10 * S), None);
        assert_eq!(t.record(false, 11 * S), Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn one_retry_and_first_success() {
        let mut t = Tracker::new(1, Duration::ZERO);
        assert_eq!(t.record(true, S), Some(HealthStatus::Healthy));
        assert_eq!(t.record(false, 2 * S), Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn start_period_shields_failures_until_a_success() {
        let mut t = Tracker::new(1, 10 * S);
        assert_eq!(t.record(false, S), None);
        assert_eq!(t.record(false, 9 * S), None);
        assert_eq!(t.status(), HealthStatus::Unknown);
        // After the period, failures count.
        assert_eq!(t.record(false, 10 * S), Some(HealthStatus::Unhealthy));

        // A success inside the period ends it: the next failure counts.
        let mut t = Tracker::new(1, 10 * S);
        assert_eq!(t.record(true, 2 * S), Some(HealthStatus::Healthy));
        assert_eq!(t.record(false, 3 * S), Some(HealthStatus::Unhealthy));
    }

    /// Answers from a script; sleeps `took` per run; records when it ran.
    struct Scripted {
        answers: VecDeque<Outcome>,
        ran_at: Vec<Instant>,
        took: Duration,
    }

    impl Probe for &mut Scripted {
        fn run(&mut self, timeout: Duration, _cancel: &Receiver<()>) -> Outcome {
            self.ran_at.push(Instant::now());
            std::thread::sleep(self.took.min(timeout));
            if self.took > timeout {
                return Outcome::Failed;
            }
            self.answers.pop_front().unwrap_or(Outcome::Passed)
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn monitor_runs_every_interval_and_reports_changes() {
        let mut p = Scripted {
            answers: [
                Outcome::Failed,
                Outcome::Passed,
                Outcome::Failed,
                Outcome::Failed,
            ]
            .into(),
            ran_at: Vec::new(),
            took: Duration::ZERO,
        };
        let (cancel_tx, cancel) = mpsc::channel::<()>();
        let mut seen = Vec::new();
        let start = Instant::now();
        let timing = Timing {
            interval: ms(40),
            timeout: ms(20),
            start_period: Duration::ZERO,
        };
        // Stop after the fifth report would be needed: end by dropping the
        // sender from the report callback once UNHEALTHY is seen.
        let mut cancel_tx = Some(cancel_tx);
        monitor(2, timing, &mut p, &cancel, |s| {
            seen.push(s);
            if s == HealthStatus::Unhealthy {
                cancel_tx.take();
            }
        });
        assert_eq!(seen, vec![HealthStatus::Healthy, HealthStatus::Unhealthy]);
        assert_eq!(p.ran_at.len(), 4);
        // The first check waits one interval; the others follow at least
        // one interval apart.
        assert!(p.ran_at[0] - start >= ms(40));
        for w in p.ran_at.windows(2) {
            assert!(w[1] - w[0] >= ms(40));
        }
    }

    #[test]
    fn a_check_over_its_timeout_fails_and_start_period_shields_it() {
        let mut p = Scripted {
            answers: VecDeque::new(),
            ran_at: Vec::new(),
            took: ms(30),
        };
        let (cancel_tx, cancel) = mpsc::channel::<()>();
        let timing = Timing {
            interval: ms(10),
            timeout: ms(5),
            start_period: ms(150),
        };
        let mut seen = Vec::new();
        let mut cancel_tx = Some(cancel_tx);
        let start = Instant::now();
        monitor(1, timing, &mut p, &cancel, |s| {
            seen.push((s, start.elapsed()));
            cancel_tx.take();
        });
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, HealthStatus::Unhealthy);
        assert!(seen[0].1 >= ms(150), "{:?}", seen[0].1);
        assert!(p.ran_at.len() >= 2);
    }

    #[test]
    fn process_tree_from_proc() {
        assert_eq!(stat_ppid("42 (a b) c) S 7 42 42 0"), Some(7));
        assert_eq!(stat_ppid("garbage"), None);
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .spawn()
            .unwrap();
        let me = i32::try_from(child.id()).unwrap();
        let deadline = Instant::now() + S * 5;
        let mut found = Vec::new();
        while Instant::now() < deadline && found.len() < 2 {
            found = descendants(me);
            std::thread::sleep(ms(20));
        }
        assert_eq!(found.len(), 2, "{found:?}");
        for p in std::iter::once(me).chain(found) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        child.wait().unwrap();
    }

    #[test]
    fn monitor_ends_when_cancelled() {
        let mut p = Scripted {
            answers: VecDeque::new(),
            ran_at: Vec::new(),
            took: Duration::ZERO,
        };
        let (cancel_tx, cancel) = mpsc::channel::<()>();
        drop(cancel_tx);
        let timing = Timing {
            interval: Duration::from_secs(300),
            timeout: S,
            start_period: Duration::ZERO,
        };
        let start = Instant::now();
        monitor(3, timing, &mut p, &cancel, |_| {});
        assert!(start.elapsed() < S);
        assert!(p.ran_at.is_empty());
    }
}
