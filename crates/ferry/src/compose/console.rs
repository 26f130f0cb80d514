//! TEMPORARY development stand-in (replaced by the console-data branch before commit).
#![allow(dead_code)]
use std::sync::Arc;

use ferry_console::data::{AuditError, AuditPage, AuditQuery, ConsoleData, TaskStorage};

struct StandIn {
    tasks_dir: std::path::PathBuf,
    audit: std::path::PathBuf,
    require: bool,
}

pub(crate) fn console_data(
    shared: &super::Shared,
    _runtime: &ferry_host::HostRuntime,
) -> anyhow::Result<Arc<dyn ConsoleData>> {
    Ok(Arc::new(StandIn {
        tasks_dir: ferry_host::tasks_dir(&shared.data_dir),
        audit: shared.data_dir.join("kms-audit.jsonl"),
        require: shared.require_encrypted_storage,
    }))
}

impl ConsoleData for StandIn {
    fn task_storage(&self, task_id: &str) -> Option<TaskStorage> {
        let dir = self.tasks_dir.join(task_id);
        let luks = dir.join("volume.luks");
        let img = if luks.exists() {
            luks.clone()
        } else {
            dir.join("volume.img")
        };
        let size = std::fs::metadata(&img).ok()?.len();
        let st = nix::sys::statvfs::statvfs(&dir.join("root")).ok()?;
        let used = (st.blocks() - st.blocks_free()) * st.fragment_size();
        let encrypted = luks.exists();
        let grant = ferry_host::task_volumes::Grant::recorded(&dir);
        Some(TaskStorage {
            size_bytes: size,
            used_bytes: used,
            encrypted,
            cipher: encrypted.then(|| "aes-xts-plain64".into()),
            key_bits: encrypted.then_some(512),
            key_arn: grant.as_ref().map(|g| g.key_arn.clone()),
            grant_id: grant.map(|g| g.grant_id),
            token: if encrypted {
                ferry_volume::read_token(&luks).ok().flatten()
            } else {
                None
            },
        })
    }

    fn audit(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
        let mut recs: Vec<(u64, serde_json::Value)> = Vec::new();
        let mut off = 0u64;
        for line in text.split_inclusive('\n') {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                recs.push((off, v));
            }
            off += line.len() as u64;
        }
        let keep = |v: &serde_json::Value| {
            let s = v.to_string();
            q.event_name
                .as_ref()
                .is_none_or(|e| v["eventName"] == e.as_str())
                && (!q.errors_only || v.get("errorCode").is_some())
                && q.key.as_ref().is_none_or(|k| s.contains(k.as_str()))
                && q.principal
                    .as_ref()
                    .is_none_or(|p| v["userIdentity"].to_string().contains(p.as_str()))
                && q.task_arn.as_ref().is_none_or(|t| s.contains(t.as_str()))
        };
        let mut out = Vec::new();
        let mut next = None;
        for (o, v) in recs.iter().rev() {
            if q.before.is_some_and(|b| *o >= b) || q.after.is_some_and(|a| *o < a) {
                continue;
            }
            if keep(v) {
                if out.len() == q.limit {
                    break;
                }
                out.push(v.clone());
                next = Some(*o);
            }
        }
        Ok(AuditPage {
            records: out,
            next,
            head: off,
        })
    }

    fn require_encrypted_storage(&self) -> bool {
        self.require
    }
}
