//! An in-memory read cache of task records in front of the store, so
//! DescribeTasks (the hot read path: SDK waiters and dashboards poll it)
//! skips a store transaction and a JSON decode per task.
//!
//! The store stays the source of truth. Every write to a task commits to
//! the store first and then calls [`TaskCache::refresh`], which re-reads
//! the committed record; a record only replaces a cached one with a lower
//! `version`, so a slow reader can never put back an older state. Deletions
//! bump a generation counter under the same lock, so a reader that raced a
//! deletion does not resurrect the record.
//!
//! With a shared store (PostgreSQL, several API replicas:
//! [`Store::is_shared`]) the cache is bypassed: every read goes through to
//! the store, so DescribeTasks through one replica sees a write through
//! another at once. Validating the cache by the tasks table's version
//! ([`Store::versions`]) was the alternative, and it does not pay: callers
//! ask per task, so the check is one round trip per task, as the read
//! itself is; and the table changes with every state event of every task
//! (any replica's), so on a busy control plane the check mostly fails and
//! costs a second round trip. Reading through loses only the JSON decode
//! a hit saves, and keeps the store the only source of truth.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ferry_store::{Store, StoreError};

use crate::db;
use crate::model::task::TaskRecord;

/// The cache. One per [`crate::service::Core`].
#[derive(Default)]
pub struct TaskCache {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Arc<TaskRecord>>,
    deletions: u64,
}

impl TaskCache {
    fn deletions(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .deletions
    }

    fn offer(&self, key: &str, rec: Arc<TaskRecord>, seen_deletions: u64) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if g.deletions != seen_deletions {
            return;
        }
        match g.map.get(key) {
            Some(old) if old.version >= rec.version => {}
            _ => {
                g.map.insert(key.to_owned(), rec);
            }
        }
    }

    /// The task stored under `key` (`CLUSTER/TASK_ID`).
    pub fn get(&self, store: &Store, key: &str) -> Result<Option<Arc<TaskRecord>>, StoreError> {
        if store.is_shared() {
            return read_through(store, key);
        }
        let seen = {
            let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = g.map.get(key) {
                return Ok(Some(t.clone()));
            }
            g.deletions
        };
        let Some(t) = store.get::<TaskRecord>(db::TASKS, key)? else {
            return Ok(None);
        };
        let t = Arc::new(t);
        self.offer(key, t.clone(), seen);
        Ok(Some(t))
    }

    /// Re-reads `key` after a committed write; returns the fresh record.
    pub fn refresh(&self, store: &Store, key: &str) -> Result<Option<Arc<TaskRecord>>, StoreError> {
        if store.is_shared() {
            return read_through(store, key);
        }
        let seen = self.deletions();
        let Some(t) = store.get::<TaskRecord>(db::TASKS, key)? else {
            return Ok(None);
        };
        let t = Arc::new(t);
        self.offer(key, t.clone(), seen);
        Ok(Some(t))
    }

    /// Forgets `keys` after they were deleted from the store.
    pub fn remove(&self, keys: &[String]) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.deletions += 1;
        for k in keys {
            g.map.remove(k);
        }
    }
}

/// The store's record, nothing kept (a shared store).
fn read_through(store: &Store, key: &str) -> Result<Option<Arc<TaskRecord>>, StoreError> {
    Ok(store.get::<TaskRecord>(db::TASKS, key)?.map(Arc::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_versions_and_deleted_records_never_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut t = crate::model::task::tests::task();
        store.put(db::TASKS, "c/x", &t).unwrap();
        let cache = TaskCache::default();
        let seen = cache.deletions();
        assert_eq!(cache.get(&store, "c/x").unwrap().unwrap().version, 1);
        t.version = 2;
        store.put(db::TASKS, "c/x", &t).unwrap();
        assert_eq!(cache.refresh(&store, "c/x").unwrap().unwrap().version, 2);
        // A reader that read version 1 before the write cannot put it back.
        let mut old = t.clone();
        old.version = 1;
        cache.offer("c/x", Arc::new(old), seen);
        assert_eq!(cache.get(&store, "c/x").unwrap().unwrap().version, 2);
        store.delete(db::TASKS, "c/x").unwrap();
        cache.remove(&["c/x".to_owned()]);
        // A reader that raced the deletion cannot resurrect it.
        cache.offer("c/x", Arc::new(t), seen);
        assert!(cache.get(&store, "c/x").unwrap().is_none());
    }

    /// Two connections to one PostgreSQL database stand for two replicas:
    /// what one writes, the other's cache shows at once, even for a
    /// record it had already read.
    #[test]
    fn a_shared_store_is_read_through() {
        let pg = ferry_store::testing::TempPostgres::new();
        let a = Store::connect(&pg.url()).unwrap();
        let b = Store::connect(&pg.url()).unwrap();
        assert!(b.is_shared());
        let mut t = crate::model::task::tests::task();
        a.put(db::TASKS, "c/x", &t).unwrap();
        let cache = TaskCache::default();
        assert_eq!(cache.get(&b, "c/x").unwrap().unwrap().version, 1);
        t.version = 2;
        a.put(db::TASKS, "c/x", &t).unwrap();
        assert_eq!(cache.get(&b, "c/x").unwrap().unwrap().version, 2);
        assert_eq!(cache.refresh(&b, "c/x").unwrap().unwrap().version, 2);
        a.delete(db::TASKS, "c/x").unwrap();
        assert!(cache.get(&b, "c/x").unwrap().is_none());
        // Nothing was kept to go stale.
        assert!(cache.inner.read().unwrap().map.is_empty());
    }
}
