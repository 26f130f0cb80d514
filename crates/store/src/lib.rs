//! ferry's embedded state store.
//!
//! All control-plane and key-service state lives in one redb database under
//! the server's `--data-dir`. redb gives crash-safe, atomic, durable
//! transactions (copy-on-write B-trees, fsync on commit), so a server restart
//! or a power cut loses nothing that was acknowledged and never leaves a
//! half-written record.
//!
//! Records are JSON documents keyed by strings, grouped in named tables.
//! JSON keeps the format inspectable and lets record types grow fields
//! (`#[serde(default)]`) without migrations. Secrets must not be stored here
//! in plaintext: the KMS stores key material wrapped under its root key.
//!
//! An I/O error (a full disk, most often) poisons a redb database: every
//! later transaction fails with "Previous I/O error occurred. Please close
//! and re-open the database". [`Store`] therefore remembers that an
//! operation failed with an I/O error and reopens the database at the next
//! call, so the store recovers as soon as the disk does, without a restart.
//! Nothing acknowledged is lost: a commit that failed was never
//! acknowledged, and reopening runs redb's recovery to the last commit.

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

/// An error from the store. Callers map it to a server fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("opening the state store: {0}")]
    Open(#[from] redb::DatabaseError),
    /// A transaction failed.
    #[error("state store transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error("state store table: {0}")]
    Table(#[from] redb::TableError),
    /// Reading or writing a record failed.
    #[error("state store I/O: {0}")]
    Storage(#[from] redb::StorageError),
    /// Committing failed; nothing of the transaction was written.
    #[error("state store commit: {0}")]
    Commit(#[from] redb::CommitError),
    /// An I/O error (e.g. the disk is full); the database is reopened at
    /// the next call.
    #[error("{}", io_message(*.disk_full, .detail))]
    Io {
        /// The data directory's file system had no space left.
        disk_full: bool,
        /// The underlying error.
        detail: String,
    },
    /// A record did not (de)serialize; names the table and key.
    #[error("state store record {table}/{key}: {source}")]
    Codec {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// What went wrong.
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_message(disk_full: bool, detail: &str) -> String {
    if disk_full {
        format!(
            "the state store cannot write: the file system of ferry's data directory is full ({detail}); \
             writes succeed again once space is freed"
        )
    } else {
        format!("the state store had an I/O error ({detail}); it is reopened at the next call")
    }
}

impl StoreError {
    /// Whether the data directory's file system was full.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            StoreError::Io {
                disk_full: true,
                ..
            }
        )
    }

    /// The redb storage error inside, if any.
    fn storage(&self) -> Option<&redb::StorageError> {
        match self {
            StoreError::Storage(s)
            | StoreError::Transaction(redb::TransactionError::Storage(s))
            | StoreError::Table(redb::TableError::Storage(s))
            | StoreError::Commit(redb::CommitError::Storage(s))
            | StoreError::Open(redb::DatabaseError::Storage(s)) => Some(s),
            _ => None,
        }
    }
}

/// A store failure seen by an API caller is a server fault; the message names
/// the table and key at most, never a record's contents. A full disk is a
/// 503 (the caller may retry once the operator frees space).
impl From<StoreError> for ferry_proto::AwsError {
    fn from(e: StoreError) -> Self {
        if e.is_disk_full() {
            ferry_proto::AwsError::server("ServiceUnavailableException", format!("{e}"))
                .with_status(503)
        } else {
            ferry_proto::AwsError::server("InternalFailure", format!("{e}"))
        }
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
type Opener =
    Box<dyn Fn() -> std::result::Result<redb::Database, redb::DatabaseError> + Send + Sync>;

/// Tracks whether the database must be reopened, and why it failed last.
#[derive(Default)]
struct Health {
    broken: AtomicBool,
    /// Whether the last I/O error was a full disk (a later "previous I/O
    /// error" is explained by it).
    last_full: AtomicBool,
}

impl Health {
    /// Turns an I/O-type error into [`StoreError::Io`] and marks the
    /// database for reopening; other errors pass through.
    fn note(&self, e: StoreError) -> StoreError {
        let (full, detail) = match e.storage() {
            Some(redb::StorageError::Io(io)) => (io_is_full(io), io.to_string()),
            Some(redb::StorageError::PreviousIo) => (
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

/// The state store. Cheap to share behind an `Arc`; redb serializes writers
/// and lets readers run concurrently against a snapshot.
pub struct Store {
    opener: Opener,
    /// `None` between closing a failed database and reopening it.
    db: RwLock<Option<Arc<redb::Database>>>,
    health: Health,
    /// Serializes reopening.
    reopening: Mutex<()>,
    /// Per table, how many committed transactions wrote it (this process's
    /// count; the embedded store has no other writer).
    versions: Mutex<std::collections::HashMap<String, u64>>,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        Self::with_opener(Box::new(move || redb::Database::create(&path)))
    }

    /// A store over whatever `opener` opens (tests inject failing backends).
    fn with_opener(opener: Opener) -> Result<Self> {
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
    fn db(&self) -> Result<Arc<redb::Database>> {
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
    pub fn get<T: DeserializeOwned>(&self, table_name: &str, key: &str) -> Result<Option<T>> {
        let db = self.db()?;
        let r = (|| {
            let txn = db.begin_read()?;
            match txn.open_table(table(table_name)) {
                Ok(t) => get_in(&t, table_name, key),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })();
        r.map_err(|e| self.health.note(e))
    }

    /// All records of a table whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        table_name: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        let db = self.db()?;
        let r = (|| {
            let txn = db.begin_read()?;
            match txn.open_table(table(table_name)) {
                Ok(t) => scan_in(&t, table_name, prefix),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
                Err(e) => Err(e.into()),
            }
        })();
        r.map_err(|e| self.health.note(e))
    }

    /// Writes one record (insert or replace), durably.
    pub fn put<T: Serialize>(&self, table_name: &str, key: &str, value: &T) -> Result<()> {
        self.write(|w| w.put(table_name, key, value))
    }

    /// Deletes one record; returns whether it existed.
    pub fn delete(&self, table_name: &str, key: &str) -> Result<bool> {
        self.write(|w| w.delete(table_name, key))
    }

    /// Runs `f` in one write transaction: either everything it wrote is
    /// committed, or (if it returns an error) nothing is.
    ///
    /// The closure's error type only needs to absorb [`StoreError`], so
    /// callers can abort with their own domain errors.
    pub fn write<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let db = self.db()?;
        let txn = db
            .begin_write()
            .map_err(|e| self.health.note(StoreError::from(e)))?;
        let mut w = WriteTxn {
            txn: &txn,
            health: &self.health,
            touched: std::collections::BTreeSet::new(),
        };
        let r = f(&mut w)?;
        let touched = std::mem::take(&mut w.touched);
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

/// A lease held: who holds it and its fencing epoch, which grows each time
/// the lease changes hands. Work done under a lease re-checks it inside the
/// write transaction that records the work ([`WriteTxn::holds_lease`]), so
/// a holder that lost the lease while paused cannot act twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Grows by one at every change of holder.
    pub epoch: u64,
}

/// A lease as anyone can see it ([`Store::leases`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease's name.
    pub name: String,
    /// Who holds (or last held) it.
    pub holder: String,
    /// Its fencing epoch.
    pub epoch: u64,
    /// Whether it is unexpired now.
    pub live: bool,
}

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

impl Store {
    /// Connects to a shared store (`postgresql://...`).
    pub fn connect(url: &str) -> Result<Self> {
        Err(StoreError::Io {
            disk_full: false,
            detail: format!(
                "shared stores are not built yet; cannot connect to {}",
                url.split('@').next_back().unwrap_or("")
            ),
        })
    }

    /// Whether other processes write to this store too (PostgreSQL): an
    /// in-process cache of its records cannot be trusted then.
    pub fn is_shared(&self) -> bool {
        false
    }

    /// The backend's name, for logs and `/health`.
    pub fn backend(&self) -> &'static str {
        "redb"
    }

    /// The version of each table in `tables`: a number that grows with every
    /// committed transaction that wrote the table (through any process of
    /// a shared store). A service that keeps records in memory compares
    /// them before answering and reloads the tables that changed; one
    /// round trip.
    pub fn versions(&self, tables: &[&str]) -> Result<Vec<u64>> {
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
    pub fn ping(&self) -> Result<()> {
        self.get::<serde_json::Value>(LEASES, "").map(|_| ())
    }

    /// Up to `limit` records whose key starts with `prefix`, in key order
    /// (descending with `reverse`), starting after the key `after`.
    pub fn scan_page<T: DeserializeOwned>(
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
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
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
    pub fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
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
    pub fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
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
    pub fn leases(&self, prefix: &str) -> Result<Vec<LeaseInfo>> {
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

/// A write transaction handed to [`Store::write`]'s closure. Reads see the
/// transaction's own writes.
pub struct WriteTxn<'a> {
    txn: &'a redb::WriteTransaction,
    health: &'a Health,
    /// The tables this transaction wrote (their versions grow at commit).
    touched: std::collections::BTreeSet<String>,
}

impl WriteTxn<'_> {
    /// Reads one record.
    pub fn get<T: DeserializeOwned>(&self, table_name: &str, key: &str) -> Result<Option<T>> {
        self.noted(|| get_in(&self.txn.open_table(table(table_name))?, table_name, key))
    }

    /// Runs `f`, marking the database for reopening on an I/O error (the
    /// caller may turn the error into its own type, which [`Store::write`]
    /// cannot look into).
    fn noted<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        f().map_err(|e| self.health.note(e))
    }

    /// All records whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        table_name: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        self.noted(|| scan_in(&self.txn.open_table(table(table_name))?, table_name, prefix))
    }

    /// Inserts or replaces one record.
    pub fn put<T: Serialize>(&mut self, table_name: &str, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Codec {
            table: table_name.to_owned(),
            key: key.to_owned(),
            source,
        })?;
        self.touched.insert(table_name.to_owned());
        self.noted(|| {
            let mut t = self.txn.open_table(table(table_name))?;
            t.insert(key, bytes.as_slice())?;
            Ok(())
        })
    }

    /// Whether `holder` still holds the lease `name` at `epoch`, unexpired:
    /// the fencing check of work done under a lease, inside the write
    /// transaction that records it.
    pub fn holds_lease(&self, name: &str, holder: &str, epoch: u64) -> Result<bool> {
        let cur: Option<LeaseRecord> = self.get(LEASES, name)?;
        Ok(cur.is_some_and(|c| c.holder == holder && c.epoch == epoch && c.expires_ms > now_ms()))
    }

    /// Deletes one record; returns whether it existed.
    pub fn delete(&mut self, table_name: &str, key: &str) -> Result<bool> {
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

fn decode<T: DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Codec {
        table: table.to_owned(),
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
