//! The embedded backend: one redb file under the server's `--data-dir`.
//!
//! redb gives crash-safe, atomic, durable transactions (copy-on-write
//! B-trees, fsync on commit), so a server restart or a power cut loses
//! nothing that was acknowledged and never leaves a half-written record.
//!
//! An I/O error (a full disk, most often) poisons a redb database: every
//! later transaction fails with "Previous I/O error occurred. Please close
//! and re-open the database". [`RedbStore`] therefore remembers that an
//! operation failed with an I/O error and reopens the database at the next
//! call, so the store recovers as soon as the disk does, without a restart.
//! Nothing acknowledged is lost: a commit that failed was never
//! acknowledged, and reopening runs redb's recovery to the last commit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ::redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;

use crate::{Lease, LeaseInfo, Result, StoreError, TxnInner, WriteTxn, decode};

pub(crate) fn io_message(disk_full: bool, detail: &str) -> String {
    if disk_full {
        format!(
            "the state store cannot write: the file system of ferry's data directory is full ({detail}); \
             writes succeed again once space is freed"
        )
    } else {
        format!("the state store had an I/O error ({detail}); it is reopened at the next call")
    }
}

/// The redb storage error inside `e`, if any.
fn storage(e: &StoreError) -> Option<&::redb::StorageError> {
    match e {
        StoreError::Storage(s)
        | StoreError::Transaction(::redb::TransactionError::Storage(s))
        | StoreError::Table(::redb::TableError::Storage(s))
        | StoreError::Commit(::redb::CommitError::Storage(s))
        | StoreError::Open(::redb::DatabaseError::Storage(s)) => Some(s),
        _ => None,
    }
}

/// Whether `e` is (or wraps) "no space left on device".
fn io_is_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// ENOSPC and EDQUOT on Linux (the store crate has no libc dependency).
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// Opens the database (again).
pub(crate) type Opener =
    Box<dyn Fn() -> std::result::Result<::redb::Database, ::redb::DatabaseError> + Send + Sync>;

/// Tracks whether the database must be reopened, and why it failed last.
#[derive(Default)]
pub(crate) struct Health {
    broken: AtomicBool,
    /// Whether the last I/O error was a full disk (a later "previous I/O
    /// error" is explained by it).
    last_full: AtomicBool,
}

impl Health {
    /// Turns an I/O-type error into [`StoreError::Io`] and marks the
    /// database for reopening; other errors pass through.
    fn note(&self, e: StoreError) -> StoreError {
        let (full, detail) = match storage(&e) {
            Some(::redb::StorageError::Io(io)) => (io_is_full(io), io.to_string()),
            Some(::redb::StorageError::PreviousIo) => (
                self.last_full.load(Ordering::SeqCst),
                "a previous write failed".to_owned(),
            ),
            _ => return e,
        };
        self.last_full.store(full, Ordering::SeqCst);
        self.broken.store(true, Ordering::SeqCst);
        StoreError::Io {
            disk_full: full,
            detail,
        }
    }
}

fn table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

/// The embedded store; redb serializes writers and lets readers run
/// concurrently against a snapshot.
pub(crate) struct RedbStore {
    opener: Opener,
    /// `None` between closing a failed database and reopening it.
    db: RwLock<Option<Arc<::redb::Database>>>,
    health: Health,
    /// Serializes reopening.
    reopening: Mutex<()>,
    /// Per table, how many committed transactions wrote it (this process's
    /// count; the embedded store has no other writer).
    versions: Mutex<std::collections::HashMap<String, u64>>,
}

impl RedbStore {
    /// Opens (or creates) the store at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        Self::with_opener(Box::new(move || ::redb::Database::create(&path)))
    }

    /// A store over whatever `opener` opens (tests inject failing backends).
    pub(crate) fn with_opener(opener: Opener) -> Result<Self> {
        let db = opener()?;
        Ok(Self {
            opener,
            db: RwLock::new(Some(Arc::new(db))),
            health: Health::default(),
            reopening: Mutex::new(()),
            versions: Mutex::default(),
        })
    }

    /// The open database, reopened first if an I/O error broke it.
    fn db(&self) -> Result<Arc<::redb::Database>> {
        if self.health.broken.load(Ordering::SeqCst) {
            self.reopen()?;
        }
        let slot = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.clone().ok_or_else(|| StoreError::Io {
            disk_full: self.health.last_full.load(Ordering::SeqCst),
            detail: "the database is being reopened".into(),
        })
    }

    /// Closes the broken database and opens it again (redb's recovery
    /// rolls back to the last durable commit). Fails, and is tried again
    /// at the next call, while the disk is still full or an operation on
    /// the old database is still running.
    fn reopen(&self) -> Result<()> {
        let _one = self
            .reopening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.health.broken.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Drop our reference; in-flight operations hold theirs until done.
        let old = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(old);
        let db = (self.opener)().map_err(|e| self.health.note(StoreError::Open(e)))?;
        *self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(db));
        self.health.broken.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Reads one record.
    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        table_name: &str,
        key: &str,
    ) -> Result<Option<T>> {
        let db = self.db()?;
        let r = (|| {
            let txn = db.begin_read()?;
            match txn.open_table(table(table_name)) {
                Ok(t) => get_in(&t, table_name, key),
                Err(::redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })();
        r.map_err(|e| self.health.note(e))
    }

    /// All records of a table whose key starts with `prefix`, in key order.
    pub(crate) fn scan<T: DeserializeOwned>(
        &self,
        table_name: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        let db = self.db()?;
        let r = (|| {
            let txn = db.begin_read()?;
            match txn.open_table(table(table_name)) {
                Ok(t) => scan_in(&t, table_name, prefix),
                Err(::redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
                Err(e) => Err(e.into()),
            }
        })();
        r.map_err(|e| self.health.note(e))
    }

    /// Runs `f` in one write transaction: either everything it wrote is
    /// committed, or (if it returns an error) nothing is.
    pub(crate) fn write<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let db = self.db()?;
        let txn = db
            .begin_write()
            .map_err(|e| self.health.note(StoreError::from(e)))?;
        let mut w = WriteTxn {
            inner: TxnInner::Redb(RedbTxn {
                txn: &txn,
                health: &self.health,
                touched: std::collections::BTreeSet::new(),
            }),
        };
        let r = f(&mut w)?;
        let touched = match &mut w.inner {
            TxnInner::Redb(t) => std::mem::take(&mut t.touched),
            TxnInner::Postgres(_) => std::collections::BTreeSet::new(),
        };
        txn.commit()
            .map_err(|e| self.health.note(StoreError::from(e)))?;
        let mut v = self
            .versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for t in touched {
            *v.entry(t).or_insert(0) += 1;
        }
        Ok(r)
    }
}

/// The table of leases in the embedded store (PostgreSQL keeps its own
/// `ferry_leases` table).
const LEASES: &str = "ferry-leases";

#[derive(serde::Serialize, serde::Deserialize)]
struct LeaseRecord {
    holder: String,
    epoch: u64,
    /// Milliseconds since the Unix epoch (this host's clock: the embedded
    /// store has one process).
    expires_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RedbStore {
    /// See [`crate::Store::versions`]: this process's counts.
    pub(crate) fn versions(&self, tables: &[&str]) -> Result<Vec<u64>> {
        let v = self
            .versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(tables
            .iter()
            .map(|t| v.get(*t).copied().unwrap_or(0))
            .collect())
    }

    /// A round trip to the store (for `/health`).
    pub(crate) fn ping(&self) -> Result<()> {
        self.get::<serde_json::Value>(LEASES, "").map(|_| ())
    }

    /// Up to `limit` records whose key starts with `prefix`, in key order
    /// (descending with `reverse`), starting after the key `after`.
    pub(crate) fn scan_page<T: DeserializeOwned>(
        &self,
        table_name: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(String, T)>> {
        let db = self.db()?;
        let r = (|| {
            let txn = db.begin_read()?;
            let t = match txn.open_table(table(table_name)) {
                Ok(t) => t,
                Err(::redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            let mut push = |k: &str, v: &[u8]| -> Result<bool> {
                if !k.starts_with(prefix) {
                    return Ok(false);
                }
                if out.len() >= limit {
                    return Ok(false);
                }
                out.push((k.to_owned(), decode(table_name, k, v)?));
                Ok(true)
            };
            if reverse {
                let range = match after {
                    Some(a) => t.range(prefix..a)?,
                    None => t.range(prefix..)?,
                };
                for item in range.rev() {
                    let (k, v) = item?;
                    // Keys past the prefix's range come first backwards.
                    if !k.value().starts_with(prefix) && k.value() > prefix {
                        continue;
                    }
                    if !push(k.value(), v.value())? {
                        break;
                    }
                }
            } else {
                let start = after.map_or(prefix, |a| a.max(prefix));
                for item in t.range(start..)? {
                    let (k, v) = item?;
                    if after == Some(k.value()) {
                        continue;
                    }
                    if !push(k.value(), v.value())? {
                        break;
                    }
                }
            }
            Ok(out)
        })();
        r.map_err(|e| self.health.note(e))
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`: `Some`
    /// while `holder` holds it, `None` while someone else does.
    pub(crate) fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.write(|w| {
            let now = now_ms();
            let cur: Option<LeaseRecord> = w.get(LEASES, name)?;
            let epoch = match cur {
                Some(c) if c.holder == holder => c.epoch,
                Some(c) if c.expires_ms > now => return Ok(None),
                Some(c) => c.epoch + 1,
                None => 1,
            };
            w.put(
                LEASES,
                name,
                &LeaseRecord {
                    holder: holder.to_owned(),
                    epoch,
                    expires_ms: now.saturating_add(ttl_ms),
                },
            )?;
            Ok(Some(Lease { epoch }))
        })
    }

    /// Gives the lease up at once if `holder` holds it (a clean shutdown).
    pub(crate) fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.write(|w| {
            let cur: Option<LeaseRecord> = w.get(LEASES, name)?;
            if let Some(mut c) = cur.filter(|c| c.holder == holder) {
                c.expires_ms = 0;
                w.put(LEASES, name, &c)?;
            }
            Ok(())
        })
    }

    /// Every lease whose name starts with `prefix`.
    pub(crate) fn leases(&self, prefix: &str) -> Result<Vec<LeaseInfo>> {
        let now = now_ms();
        Ok(self
            .scan::<LeaseRecord>(LEASES, prefix)?
            .into_iter()
            .map(|(name, r)| LeaseInfo {
                name,
                live: r.expires_ms > now,
                holder: r.holder,
                epoch: r.epoch,
            })
            .collect())
    }
}

/// The embedded store's side of a [`WriteTxn`].
pub(crate) struct RedbTxn<'a> {
    txn: &'a ::redb::WriteTransaction,
    health: &'a Health,
    /// The tables this transaction wrote (their versions grow at commit).
    touched: std::collections::BTreeSet<String>,
}

impl RedbTxn<'_> {
    /// Reads one record.
    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        table_name: &str,
        key: &str,
    ) -> Result<Option<T>> {
        self.noted(|| get_in(&self.txn.open_table(table(table_name))?, table_name, key))
    }

    /// Runs `f`, marking the database for reopening on an I/O error (the
    /// caller may turn the error into its own type, which
    /// [`RedbStore::write`] cannot look into).
    fn noted<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        f().map_err(|e| self.health.note(e))
    }

    /// All records whose key starts with `prefix`, in key order.
    pub(crate) fn scan<T: DeserializeOwned>(
        &self,
        table_name: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        self.noted(|| scan_in(&self.txn.open_table(table(table_name))?, table_name, prefix))
    }

    /// Inserts or replaces one record (already encoded).
    pub(crate) fn put(&mut self, table_name: &str, key: &str, bytes: &[u8]) -> Result<()> {
        self.touched.insert(table_name.to_owned());
        self.noted(|| {
            let mut t = self.txn.open_table(table(table_name))?;
            t.insert(key, bytes)?;
            Ok(())
        })
    }

    /// Whether `holder` still holds the lease `name` at `epoch`, unexpired.
    pub(crate) fn holds_lease(&self, name: &str, holder: &str, epoch: u64) -> Result<bool> {
        let cur: Option<LeaseRecord> = self.get(LEASES, name)?;
        Ok(cur.is_some_and(|c| c.holder == holder && c.epoch == epoch && c.expires_ms > now_ms()))
    }

    /// Deletes one record; returns whether it existed.
    pub(crate) fn delete(&mut self, table_name: &str, key: &str) -> Result<bool> {
        self.touched.insert(table_name.to_owned());
        self.noted(|| {
            let mut t = self.txn.open_table(table(table_name))?;
            let existed = t.remove(key)?.is_some();
            Ok(existed)
        })
    }
}

/// One record of an open table (read-only or in a write transaction).
fn get_in<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    table_name: &str,
    key: &str,
) -> Result<Option<T>> {
    match t.get(key)? {
        Some(v) => decode(table_name, key, v.value()).map(Some),
        None => Ok(None),
    }
}

/// The records of an open table whose key starts with `prefix`.
fn scan_in<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    table_name: &str,
    prefix: &str,
) -> Result<Vec<(String, T)>> {
    let mut out = Vec::new();
    for item in t.range(prefix..)? {
        let (k, v) = item?;
        let k = k.value();
        if !k.starts_with(prefix) {
            break;
        }
        out.push((k.to_owned(), decode(table_name, k, v.value())?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Rec {
        n: u32,
    }

    #[test]
    fn put_get_scan_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.get::<Rec>("t", "a").unwrap(), None);
            s.put("t", "a/1", &Rec { n: 1 }).unwrap();
            s.put("t", "a/2", &Rec { n: 2 }).unwrap();
            s.put("t", "b/1", &Rec { n: 3 }).unwrap();
            let a: Vec<(String, Rec)> = s.scan("t", "a/").unwrap();
            assert_eq!(a.len(), 2);
            assert_eq!(a[1], ("a/2".into(), Rec { n: 2 }));
            assert!(s.delete("t", "a/1").unwrap());
            assert!(!s.delete("t", "a/1").unwrap());
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get::<Rec>("t", "b/1").unwrap(), Some(Rec { n: 3 }));
        assert_eq!(s.get::<Rec>("t", "a/1").unwrap(), None);
    }

    #[derive(Debug)]
    enum E {
        Store,
        Abort,
    }
    impl From<StoreError> for E {
        fn from(_: StoreError) -> Self {
            E::Store
        }
    }

    #[test]
    fn pages_forward_and_backward_within_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        for (k, n) in [("a", 0), ("b/1", 1), ("b/2", 2), ("b/3", 3), ("c", 4)] {
            s.put("t", k, &Rec { n }).unwrap();
        }
        let keys = |v: Vec<(String, Rec)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(s.scan_page("t", "b/", None, 2, false).unwrap()),
            ["b/1", "b/2"]
        );
        assert_eq!(
            keys(s.scan_page("t", "b/", Some("b/2"), 2, false).unwrap()),
            ["b/3"]
        );
        assert_eq!(
            keys(s.scan_page("t", "b/", None, 2, true).unwrap()),
            ["b/3", "b/2"]
        );
        assert_eq!(
            keys(s.scan_page("t", "b/", Some("b/2"), 5, true).unwrap()),
            ["b/1"]
        );
        assert!(
            s.scan_page::<Rec>("nope", "", None, 5, true)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_lease_has_one_holder_until_it_expires_or_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let long = Duration::from_secs(60);
        let a = s.lease("scheduler", "a", long).unwrap().unwrap();
        assert_eq!(s.lease("scheduler", "b", long).unwrap(), None);
        assert_eq!(s.lease("scheduler", "a", long).unwrap(), Some(a));
        assert!(
            s.write(|w| w.holds_lease("scheduler", "a", a.epoch))
                .unwrap()
        );
        assert!(
            !s.write(|w| w.holds_lease("scheduler", "b", a.epoch))
                .unwrap()
        );
        s.release_lease("scheduler", "a").unwrap();
        let b = s
            .lease("scheduler", "b", Duration::from_millis(1))
            .unwrap()
            .unwrap();
        assert_eq!(b.epoch, a.epoch + 1);
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !s.write(|w| w.holds_lease("scheduler", "b", b.epoch))
                .unwrap()
        );
        let info = s.leases("sched").unwrap();
        assert_eq!((info.len(), info[0].live), (1, false));
        assert_eq!(
            s.lease("scheduler", "a", long).unwrap().unwrap().epoch,
            b.epoch + 1
        );
    }

    #[test]
    fn a_table_version_grows_with_each_commit_that_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(s.versions(&["a", "b"]).unwrap(), [0, 0]);
        s.put("a", "k", &Rec { n: 1 }).unwrap();
        s.write(|w| {
            w.put("a", "k", &Rec { n: 2 })?;
            w.delete("b", "x")
        })
        .unwrap();
        let _: std::result::Result<(), E> = s.write(|w| {
            w.put("b", "k", &Rec { n: 3 })?;
            Err(E::Abort)
        });
        assert_eq!(s.versions(&["a", "b"]).unwrap(), [2, 1]);
    }

    #[test]
    fn failed_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        s.put("t", "k", &Rec { n: 1 }).unwrap();
        let r: std::result::Result<(), E> = s.write(|w| {
            w.put("t", "k", &Rec { n: 2 })?;
            w.put("t", "k2", &Rec { n: 3 })?;
            Err(E::Abort)
        });
        assert!(matches!(r, Err(E::Abort)));
        assert_eq!(s.get::<Rec>("t", "k").unwrap(), Some(Rec { n: 1 }));
        assert_eq!(s.get::<Rec>("t", "k2").unwrap(), None);
    }

    /// A file backend whose writes fail with ENOSPC while `full` is set.
    #[derive(Debug)]
    struct Flaky {
        inner: redb::backends::FileBackend,
        full: Arc<AtomicBool>,
    }

    impl Flaky {
        fn check(&self) -> std::io::Result<()> {
            if self.full.load(Ordering::SeqCst) {
                Err(std::io::Error::from_raw_os_error(ENOSPC))
            } else {
                Ok(())
            }
        }
    }

    impl redb::StorageBackend for Flaky {
        fn len(&self) -> std::io::Result<u64> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.check()?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.inner.write(offset, data)
        }
        fn close(&self) -> std::io::Result<()> {
            self.inner.close()
        }
    }

    #[test]
    fn a_full_disk_fails_writes_then_the_store_recovers_without_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let full = Arc::new(AtomicBool::new(false));
        let (p, f) = (path.clone(), full.clone());
        let s = Store::with_opener(Box::new(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))?;
            let inner = redb::backends::FileBackend::new(file)?;
            redb::Database::builder().create_with_backend(Flaky {
                inner,
                full: f.clone(),
            })
        }))
        .unwrap();
        s.put("t", "kept", &Rec { n: 1 }).unwrap();

        full.store(true, Ordering::SeqCst);
        // A large record so the commit must write (and grow) the file.
        let big: Vec<u32> = (0..100_000).collect();
        let e = s.put("t", "lost", &big).unwrap_err();
        assert!(e.is_disk_full(), "{e}");
        assert!(
            e.to_string()
                .contains("file system of ferry's data directory is full"),
            "{e}"
        );
        // Still full: writes keep failing with the same clear error.
        let e = s.put("t", "also-lost", &Rec { n: 2 }).unwrap_err();
        assert!(e.is_disk_full(), "{e}");
        let aws: ferry_proto::AwsError = e.into();
        assert_eq!(
            (aws.code.as_str(), aws.status),
            ("ServiceUnavailableException", 503)
        );

        // Space is back: the next call reopens the database; what was
        // acknowledged is there, what failed is not.
        full.store(false, Ordering::SeqCst);
        s.put("t", "after", &Rec { n: 3 }).unwrap();
        assert_eq!(s.get::<Rec>("t", "kept").unwrap(), Some(Rec { n: 1 }));
        assert_eq!(s.get::<Rec>("t", "after").unwrap(), Some(Rec { n: 3 }));
        assert_eq!(s.get::<Vec<u32>>("t", "lost").unwrap(), None);
        assert_eq!(s.get::<Rec>("t", "also-lost").unwrap(), None);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get::<Rec>("t", "after").unwrap(), Some(Rec { n: 3 }));
    }
}
