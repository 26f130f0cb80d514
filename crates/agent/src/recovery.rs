//! Crash recovery. While a task holds host resources, its record
//! `STATE/tasks/<task_id>.json` names them (task_root, containers, network
//! namespace, CNI result); the record is removed once everything is
//! released. After a server restart, a record whose task had all its
//! containers started and whose shim still answers is re-adopted
//! ([`crate::Agent::reattach_task`]); records without a live supervisor
//! after that are orphans: [`crate::Agent::orphaned_tasks`] lists them and
//! [`crate::Agent::cleanup_orphan`] releases what they name (shim included).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a task holds on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task id.
    pub task_id: String,
    /// Where its volume is (was) mounted.
    pub task_root: PathBuf,
    /// Its containers' names (runc ids are `<task_id>-<name>`).
    pub containers: Vec<String>,
    /// Its network namespace, once created.
    pub netns: Option<String>,
    /// Its address.
    pub ip: Option<String>,
    /// bridge's CNI ADD result (prevResult for DEL).
    pub cni_result: Option<serde_json::Value>,
    /// What made its network (none: a record of a server before the
    /// netlink driver, which had only CNI).
    #[serde(default)]
    pub network_driver: Option<crate::net::NetworkDriver>,
    /// First host uid/gid of its user namespace's range
    /// (`userns::IdRange`), while it holds one: a restarted server does
    /// not hand the range to another task.
    #[serde(default)]
    pub userns_base: Option<u32>,
    /// Whether every container had been started (or given up on): only
    /// such a task is re-adopted by a restarted server.
    #[serde(default)]
    pub started: bool,
    /// Each container's stop signal (from its image), for a re-adopted
    /// task's StopTask.
    #[serde(default)]
    pub stop_signals: std::collections::BTreeMap<String, String>,
}

fn dir(state: &Path) -> PathBuf {
    state.join("tasks")
}

impl TaskRecord {
    fn path(state: &Path, task_id: &str) -> PathBuf {
        dir(state).join(format!("{task_id}.json"))
    }

    /// Writes the record (atomically: temp file, then rename).
    pub fn save(&self, state: &Path) -> io::Result<()> {
        fs::create_dir_all(dir(state))?;
        let p = Self::path(state, &self.task_id);
        let tmp = p.with_extension("json.tmp");
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(io::Error::other)?,
        )?;
        fs::rename(tmp, p)
    }

    /// Reads a task's record.
    pub fn load(state: &Path, task_id: &str) -> io::Result<Self> {
        let b = fs::read(Self::path(state, task_id))?;
        serde_json::from_slice(&b).map_err(io::Error::other)
    }

    /// Removes a task's record (missing is fine).
    pub fn remove(state: &Path, task_id: &str) -> io::Result<()> {
        match fs::remove_file(Self::path(state, task_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Ids of every recorded task.
    pub fn list(state: &Path) -> Vec<String> {
        let Ok(rd) = fs::read_dir(dir(state)) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        ids
    }
}
