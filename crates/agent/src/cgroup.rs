//! The task's cgroup: a parent cgroup `PARENT/TASK_ID` holding the task-level
//! cpu and memory limits (Fargate's limits are per task, shared by its
//! containers); runc puts each container in a child `PARENT/TASK_ID/NAME`.
//! Works with cgroup v1 (including the hybrid layout of this host) and v2.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";
const CFS_PERIOD_US: u64 = 100_000;

/// Errors creating a task cgroup.
#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {err}")]
pub struct CgroupError {
    path: String,
    err: io::Error,
}

/// A task's parent cgroup.
#[derive(Debug, Clone)]
pub struct TaskCgroup {
    /// `PARENT/TASK_ID`, relative to each hierarchy's root.
    rel: PathBuf,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|err| CgroupError {
        path: path.display().to_string(),
        err,
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(path).map_err(|err| CgroupError {
        path: path.display().to_string(),
        err,
    })
}

fn is_v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

impl TaskCgroup {
    /// The handle for `PARENT/TASK_ID`, without touching the host (to
    /// remove whatever part of it exists).
    pub fn create_handle(parent: &str, task_id: &str) -> Self {
        Self {
            rel: PathBuf::from(parent).join(task_id),
        }
    }

    /// Creates `PARENT/TASK_ID` with the task's limits: `cpu_units` (1024 =
    /// one CPU, as a CFS quota and as a weight) and `memory_mib` (0 = none).
    pub fn create(
        parent: &str,
        task_id: &str,
        cpu_units: u32,
        memory_mib: u32,
        pids_max: u32,
    ) -> Result<Self, CgroupError> {
        let cg = Self::create_handle(parent, task_id);
        let quota = (u64::from(cpu_units) * CFS_PERIOD_US / 1024).max(1000);
        let mem = u64::from(memory_mib) * 1024 * 1024;
        if is_v2() {
            // Enable the controllers down the path, then set the limits.
            let mut dir = PathBuf::from(ROOT);
            for c in cg.rel.components() {
                let _ = fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids");
                dir.push(c);
                mkdir(&dir)?;
            }
            if cpu_units > 0 {
                write(&dir.join("cpu.max"), &format!("{quota} {CFS_PERIOD_US}"))?;
            }
            if mem > 0 {
                write(&dir.join("memory.max"), &mem.to_string())?;
            }
            write(&dir.join("pids.max"), &pids_max.to_string())?;
            let _ = fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids");
        } else {
            let cpu = Path::new(ROOT).join("cpu").join(&cg.rel);
            let memory = Path::new(ROOT).join("memory").join(&cg.rel);
            mkdir(&cpu)?;
            mkdir(&memory)?;
            if cpu_units > 0 {
                write(&cpu.join("cpu.shares"), &cpu_units.max(2).to_string())?;
                write(&cpu.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
            if mem > 0 {
                write(&memory.join("memory.limit_in_bytes"), &mem.to_string())?;
            }
            let pids = Path::new(ROOT).join("pids").join(&cg.rel);
            mkdir(&pids)?;
            write(&pids.join("pids.max"), &pids_max.to_string())?;
        }
        Ok(cg)
    }

    /// runc's `cgroupsPath` for a container of this task.
    pub fn container_path(&self, name: &str) -> String {
        format!("/{}/{name}", self.rel.display())
    }

    /// How many processes the kernel's OOM killer has killed in the task's
    /// memory cgroup (`sub` = a container's child cgroup, or the task's
    /// own). cgroup v1 counts in `memory.oom_control`, v2 in
    /// `memory.events`; 0 when the file is missing.
    pub fn oom_kills(&self, sub: Option<&str>) -> u64 {
        let rel = match sub {
            Some(name) => self.rel.join(name),
            None => self.rel.clone(),
        };
        let (dir, file) = if is_v2() {
            (Path::new(ROOT).join(&rel), "memory.events")
        } else {
            (
                Path::new(ROOT).join("memory").join(&rel),
                "memory.oom_control",
            )
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Every directory of this task's cgroup, in every hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if is_v2() {
            out.push(Path::new(ROOT).join(&self.rel));
        } else if let Ok(rd) = fs::read_dir(ROOT) {
            for e in rd.flatten() {
                let p = e.path().join(&self.rel);
                if p.exists() {
                    out.push(p);
                }
            }
        }
        out.retain(|p| p.exists());
        out
    }

    /// Removes the task's cgroups (children first) in every hierarchy,
    /// retrying for a moment while exiting processes leave them.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in self.dirs() {
            loop {
                let r = remove_tree(&dir);
                match r {
                    Ok(()) => break,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(err) => {
                        return Err(CgroupError {
                            path: dir.display().to_string(),
                            err,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// rmdir a cgroup and its child cgroups (cgroup files cannot be unlinked;
/// rmdir of an empty cgroup removes them).
fn remove_tree(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for e in fs::read_dir(dir)?.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&e.path())?;
        }
    }
    fs::remove_dir(dir)
}
