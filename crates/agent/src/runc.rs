//! Driving the OCI runtime (runc, or crun with the same CLI): `create` with
//! the container's stdout/stderr on our pipes, `start`, `state`, `kill`,
//! `delete`. The agent is a child subreaper (as containerd's shims are), so
//! a container's init process becomes its child once `runc create` has
//! exited, and its exit status is read with `waitpid`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// The runtime binary for `choice`: `auto` is `crun` if PATH has it and
/// it can manage this host's cgroups (it starts a container in a fraction
/// of runc's time: C, no re-exec of itself), else `runc`; anything else is
/// a name or path, taken as given.
pub fn resolve(choice: &str) -> PathBuf {
    if choice != "auto" {
        return PathBuf::from(choice);
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    if !on_path("crun") {
        return PathBuf::from("runc");
    }
    match crun_unusable(Path::new("/sys/fs/cgroup")) {
        None => PathBuf::from("crun"),
        Some(why) => {
            tracing::info!("not using crun: {why}; using runc");
            PathBuf::from("runc")
        }
    }
}

/// Why crun cannot run containers with this host's cgroups, if it cannot:
/// on a hybrid host (v1 controllers, a v2 hierarchy at `unified`) crun
/// refuses to start while any controller is left on the v2 side ("cgroups
/// in hybrid mode not supported"); runc does not mind.
pub fn crun_unusable(cgroup_root: &Path) -> Option<String> {
    let unified = cgroup_root.join("unified/cgroup.controllers");
    let controllers = std::fs::read_to_string(&unified).ok()?;
    let left = controllers.trim();
    (!left.is_empty()).then(|| {
        format!(
            "hybrid cgroups with controllers ({left}) on the v2 hierarchy {}",
            unified.display()
        )
    })
}

/// A failed runtime command.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    /// The runtime binary could not be run.
    #[error("running {bin}: {err}")]
    Exec {
        /// The binary.
        bin: String,
        /// OS error.
        err: std::io::Error,
    },
    /// The runtime reported an error.
    #[error("{bin} {op} {id}: {msg}")]
    Failed {
        /// The runtime (its file name: `runc`, `crun`).
        bin: String,
        /// Subcommand.
        op: &'static str,
        /// Container id.
        id: String,
        /// What it said.
        msg: String,
    },
}

/// The runtime, with its state directory (`--root`).
#[derive(Debug, Clone)]
pub struct Runc {
    /// The binary (`runc`).
    pub bin: PathBuf,
    /// `--root`: where it keeps container state.
    pub root: PathBuf,
}

impl Runc {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        c
    }

    /// The runtime's file name, for messages.
    fn name(&self) -> String {
        self.bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.bin.display().to_string())
    }

    fn exec_err(&self) -> impl FnOnce(std::io::Error) -> RuncError + '_ {
        |err| RuncError::Exec {
            bin: self.bin.display().to_string(),
            err,
        }
    }

    fn simple(&self, op: &'static str, id: &str, args: &[&str]) -> Result<String, RuncError> {
        let out = self
            .cmd()
            .arg(op)
            .args(args)
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .map_err(self.exec_err())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(RuncError::Failed {
                bin: self.name(),
                op,
                id: id.to_string(),
                msg: last_error(&String::from_utf8_lossy(&out.stderr)),
            })
        }
    }

    /// `runc create`: the container's init gets `stdout`/`stderr` (pipes)
    /// and waits for `start`. Returns its host pid. Runtime errors are
    /// written to `log` (JSON lines), not to the container's stderr.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        log: &Path,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<i32, RuncError> {
        let pid_file = bundle.join("init.pid");
        let mut cmd = self.cmd();
        cmd.arg("--log")
            .arg(log)
            .arg("--log-format")
            .arg("json")
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let status = cmd
            .spawn()
            .map_err(self.exec_err())?
            .wait()
            .map_err(self.exec_err())?;
        // Our copies of the pipes' write ends must close, or readers never see EOF.
        drop(cmd);
        if !status.success() {
            let msg = std::fs::read_to_string(log)
                .map(|l| last_error(&l))
                .unwrap_or_else(|_| format!("exited with {status}"));
            return Err(RuncError::Failed {
                bin: self.name(),
                op: "create",
                id: id.to_string(),
                msg,
            });
        }
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .ok_or_else(|| RuncError::Failed {
                bin: self.name(),
                op: "create",
                id: id.to_string(),
                msg: "no pid file".into(),
            })?;
        Ok(pid)
    }

    /// `runc start`: runs the user process.
    pub fn start(&self, id: &str) -> Result<(), RuncError> {
        self.simple("start", id, &[]).map(|_| ())
    }

    /// `runc state`: the container's status (`created`, `running`, `stopped`).
    pub fn state(&self, id: &str) -> Result<String, RuncError> {
        Ok(self.state_pid(id)?.0)
    }

    /// `runc state`: status and init pid.
    pub fn state_pid(&self, id: &str) -> Result<(String, i32), RuncError> {
        let out = self.simple("state", id, &[])?;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let status = v
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown")
            .to_string();
        let pid = v.get("pid").and_then(|p| p.as_i64()).unwrap_or(0) as i32;
        Ok((status, pid))
    }

    /// `runc kill ID SIGNAL` (the container's init only, as `docker stop`).
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), RuncError> {
        let out = self
            .cmd()
            .arg("kill")
            .arg(id)
            .arg(signal)
            .stdin(Stdio::null())
            .output()
            .map_err(self.exec_err())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RuncError::Failed {
                bin: self.name(),
                op: "kill",
                id: id.to_string(),
                msg: last_error(&String::from_utf8_lossy(&out.stderr)),
            })
        }
    }

    /// `runc exec --pid-file PID_FILE ID ARGV...` (a health check): the
    /// container's process settings (user, env, cwd) with `argv`; no stdio.
    /// Returns the running `runc exec`, which exits with the check's
    /// status once the check ends.
    pub fn exec(&self, id: &str, argv: &[String], pid_file: &Path) -> Result<Child, RuncError> {
        self.cmd()
            .arg("exec")
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(self.exec_err())
    }

    /// `runc delete --force`: kills what is left and removes the
    /// container's state and cgroups.
    pub fn delete(&self, id: &str) -> Result<(), RuncError> {
        self.simple("delete", id, &["--force"]).map(|_| ())
    }
}

/// The last meaningful line of runc's output (plain or JSON log lines).
fn last_error(out: &str) -> String {
    out.lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| l.trim().to_string())
        })
        .next()
        .unwrap_or_else(|| "failed".to_string())
}

/// Makes this process a child subreaper, so container init processes are
/// reparented to it and their exit status can be collected.
pub fn become_subreaper() -> Result<(), nix::Error> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Waits for `pid` (a child, possibly by reparenting) and returns its exit
/// code, `128 + signal` when killed by a signal (as Docker reports it).
pub fn wait_exit(pid: i32) -> Result<i32, nix::Error> {
    loop {
        match waitpid(Pid::from_raw(pid), None)? {
            WaitStatus::Exited(_, code) => return Ok(code),
            WaitStatus::Signaled(_, sig, _) => return Ok(128 + sig as i32),
            _ => continue,
        }
    }
}

/// Reaps `pid` if it is (or becomes within a second) an exited child of
/// ours; returns at once if it is not our child.
pub fn reap(pid: i32) {
    use nix::sys::wait::WaitPidFlag;
    if pid <= 0 {
        return;
    }
    for _ in 0..100 {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(10)),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crun_is_refused_only_on_hybrid_hosts_with_v2_controllers() {
        let d = tempfile::tempdir().unwrap();
        // Pure v1 or pure v2: no `unified/cgroup.controllers`.
        assert_eq!(crun_unusable(d.path()), None);
        std::fs::create_dir(d.path().join("unified")).unwrap();
        let f = d.path().join("unified/cgroup.controllers");
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(crun_unusable(d.path()), None);
        std::fs::write(&f, "hugetlb\n").unwrap();
        let why = crun_unusable(d.path()).unwrap();
        assert!(why.contains("hugetlb"), "{why}");
    }

    #[test]
    fn last_error_reads_json_and_plain() {
        let log = "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": not found\"}\n";
        assert_eq!(last_error(log), "exec: \"nope\": not found");
        assert_eq!(last_error("plain error\n\n"), "plain error");
        assert_eq!(last_error(""), "failed");
    }
}
