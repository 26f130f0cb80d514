//! ferry's state store.
//!
//! Records are JSON documents keyed by strings, grouped in named tables.
//! JSON keeps the format inspectable and lets record types grow fields
//! (`#[serde(default)]`) without migrations. Secrets must not be stored here
//! in plaintext: the KMS stores key material wrapped under its root key.
//!
//! Two backends sit behind one concrete [`Store`] (docs/store.md):
//! - embedded ([`Store::open`], `redb.rs`): one redb file under the
//!   server's `--data-dir`, crash-safe and durable, one process;
//! - shared ([`Store::connect`], `postgres.rs`): PostgreSQL, written by
//!   every replica of a fleet; write transactions are serialized across
//!   all processes, so the semantics are the embedded store's.
//!
//! Both give the same answers: key order is byte order, a write
//! transaction's reads see its own writes, a closure's error rolls back,
//! table versions grow with each committing writer, leases carry fencing
//! epochs. `src/tests.rs` runs one set of behavioural tests over both.
//!
//! [`singleton`]: a background job that runs on one replica at a time,
//! by a lease (the logs' retention sweep, the registry's lifecycle sweep).

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

mod postgres;
mod redb;
pub mod singleton;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

/// An error from the store. Callers map it to a server fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("opening the state store: {0}")]
    Open(#[from] ::redb::DatabaseError),
    /// A transaction failed.
    #[error("state store transaction: {0}")]
    Transaction(#[from] ::redb::TransactionError),
    /// A table could not be opened.
    #[error("state store table: {0}")]
    Table(#[from] ::redb::TableError),
    /// Reading or writing a record failed.
    #[error("state store I/O: {0}")]
    Storage(#[from] ::redb::StorageError),
    /// Committing failed; nothing of the transaction was written.
    #[error("state store commit: {0}")]
    Commit(#[from] ::redb::CommitError),
    /// An I/O error (e.g. the disk is full); the database is reopened at
    /// the next call.
    #[error("{}", redb::io_message(*.disk_full, .detail))]
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
    /// The shared store's connection URL is not one ferry understands.
    /// Never echoes the URL (it may hold a password).
    #[error("state store URL: {0}")]
    BadUrl(String),
    /// The shared store's database refused or failed a statement (the
    /// server's message and SQLSTATE; never a record's value).
    #[error("state store database: {detail}")]
    Database {
        /// What the database said.
        detail: String,
    },
    /// The shared store's database has no space left on its disk (SQLSTATE
    /// 53100): writes fail until space is freed, reads keep working, and
    /// the connection stays usable. Like [`StoreError::Io`] with
    /// `disk_full`, it is [`StoreError::is_disk_full`].
    #[error(
        "the state store database {target} cannot write: its disk is full ({detail}); \
         writes succeed again once space is freed"
    )]
    DatabaseFull {
        /// The database, without its password.
        target: String,
        /// What the database said.
        detail: String,
    },
    /// The shared store's database cannot be reached (stopped, restarting,
    /// network): the call failed, and the next call connects again.
    #[error(
        "the state store database {target} is unreachable ({detail}); the next call connects again"
    )]
    Unavailable {
        /// The database, without its password.
        target: String,
        /// Why.
        detail: String,
    },
    /// The database's schema is newer than this binary knows: a newer ferry
    /// migrated it. Refused rather than guessed at.
    #[error(
        "the state store database {target} is at schema version {found}, newer than this ferry \
         knows ({known}): run the newer ferry (a database is never migrated down)"
    )]
    SchemaTooNew {
        /// The database, without its password.
        target: String,
        /// The database's version.
        found: i64,
        /// The newest version this binary has.
        known: i64,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// Whether the store's disk was full: the data directory's file system
    /// (embedded store), or the database's (shared store).
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            StoreError::Io {
                disk_full: true,
                ..
            } | StoreError::DatabaseFull { .. }
        )
    }

    /// Whether the shared store's database could not be reached (a retry
    /// may succeed once it is back).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// A store failure seen by an API caller is a server fault; the message names
/// the table and key at most, never a record's contents. A full disk or an
/// unreachable database is a 503 (the caller may retry once it is back).
impl From<StoreError> for ferry_proto::AwsError {
    fn from(e: StoreError) -> Self {
        if e.is_disk_full() || e.is_unavailable() {
            ferry_proto::AwsError::server("ServiceUnavailableException", format!("{e}"))
                .with_status(503)
        } else {
            ferry_proto::AwsError::server("InternalFailure", format!("{e}"))
        }
    }
}

/// The state store: a concrete type over either backend, so callers do not
/// care which. Cheap to share behind an `Arc`; writers are serialized,
/// readers run concurrently and see committed data.
pub struct Store {
    backend: Backend,
}

enum Backend {
    Redb(redb::RedbStore),
    /// Boxed: the pool and runtime make it several times the size of
    /// the embedded store.
    Postgres(Box<postgres::PgStore>),
}

impl Store {
    /// Opens (or creates) the embedded store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            backend: Backend::Redb(redb::RedbStore::open(path)?),
        })
    }

    /// An embedded store over whatever `opener` opens (tests inject failing
    /// backends).
    #[cfg(test)]
    fn with_opener(opener: redb::Opener) -> Result<Self> {
        Ok(Self {
            backend: Backend::Redb(redb::RedbStore::with_opener(opener)?),
        })
    }

    /// Connects to a shared store: `postgresql://user[:password]@host[:port]/db`
    /// or `postgresql:///db?host=/socket/dir` (no TLS yet: docs/store.md).
    /// Applies the schema migrations this binary has, under a lock, and
    /// refuses a database migrated by a newer ferry.
    pub fn connect(url: &str) -> Result<Self> {
        Ok(Self {
            backend: Backend::Postgres(Box::new(postgres::PgStore::connect(url)?)),
        })
    }

    /// Whether other processes write to this store too (PostgreSQL): an
    /// in-process cache of its records cannot be trusted then.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The backend's name, for logs and `/health`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Redb(_) => "redb",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Reads one record.
    pub fn get<T: DeserializeOwned>(&self, table_name: &str, key: &str) -> Result<Option<T>> {
        match &self.backend {
            Backend::Redb(s) => s.get(table_name, key),
            Backend::Postgres(s) => s
                .get(table_name, key)?
                .map(|v| decode(table_name, key, &v))
                .transpose(),
        }
    }

    /// All records of a table whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        table_name: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        match &self.backend {
            Backend::Redb(s) => s.scan(table_name, prefix),
            Backend::Postgres(s) => decode_all(table_name, s.scan(table_name, prefix)?),
        }
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
        match &self.backend {
            Backend::Redb(s) => s.scan_page(table_name, prefix, after, limit, reverse),
            Backend::Postgres(s) => decode_all(
                table_name,
                s.scan_page(table_name, prefix, after, limit, reverse)?,
            ),
        }
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
    /// committed, or (if it returns an error) nothing is. Writers are
    /// serialized (across every process of a shared store), so a
    /// read-modify-write inside `f` never loses an update.
    ///
    /// The closure's error type only needs to absorb [`StoreError`], so
    /// callers can abort with their own domain errors.
    pub fn write<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        match &self.backend {
            Backend::Redb(s) => s.write(f),
            Backend::Postgres(s) => s.write(f),
        }
    }

    /// The version of each table in `tables`: a number that grows with every
    /// committed transaction that wrote the table (through any process of
    /// a shared store). A service that keeps records in memory compares
    /// them before answering and reloads the tables that changed; one
    /// round trip.
    pub fn versions(&self, tables: &[&str]) -> Result<Vec<u64>> {
        match &self.backend {
            Backend::Redb(s) => s.versions(tables),
            Backend::Postgres(s) => s.versions(tables),
        }
    }

    /// A round trip to the store (for `/health`).
    pub fn ping(&self) -> Result<()> {
        match &self.backend {
            Backend::Redb(s) => s.ping(),
            Backend::Postgres(s) => s.ping(),
        }
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`: `Some`
    /// while `holder` holds it, `None` while someone else does. Time is the
    /// store's clock (the database's, when shared).
    pub fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
        match &self.backend {
            Backend::Redb(s) => s.lease(name, holder, ttl),
            Backend::Postgres(s) => s.lease(name, holder, ttl),
        }
    }

    /// Gives the lease up at once if `holder` holds it (a clean shutdown).
    pub fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        match &self.backend {
            Backend::Redb(s) => s.release_lease(name, holder),
            Backend::Postgres(s) => s.release_lease(name, holder),
        }
    }

    /// Every lease whose name starts with `prefix`, in name order.
    pub fn leases(&self, prefix: &str) -> Result<Vec<LeaseInfo>> {
        match &self.backend {
            Backend::Redb(s) => s.leases(prefix),
            Backend::Postgres(s) => s.leases(prefix),
        }
    }

    /// Runs raw SQL on a shared store (tests set up odd databases with it).
    #[cfg(test)]
    fn sql_for_tests(&self, sql: &str) -> Result<()> {
        match &self.backend {
            Backend::Redb(_) => Err(StoreError::BadUrl("not a PostgreSQL store".into())),
            Backend::Postgres(s) => s.batch_for_tests(sql),
        }
    }
}

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

/// A write transaction handed to [`Store::write`]'s closure. Reads see the
/// transaction's own writes.
pub struct WriteTxn<'a> {
    inner: TxnInner<'a>,
}

enum TxnInner<'a> {
    Redb(redb::RedbTxn<'a>),
    Postgres(postgres::PgTxn<'a>),
}

impl WriteTxn<'_> {
    /// Reads one record.
    pub fn get<T: DeserializeOwned>(&self, table_name: &str, key: &str) -> Result<Option<T>> {
        match &self.inner {
            TxnInner::Redb(t) => t.get(table_name, key),
            TxnInner::Postgres(t) => t
                .get(table_name, key)?
                .map(|v| decode(table_name, key, &v))
                .transpose(),
        }
    }

    /// All records whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        table_name: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        match &self.inner {
            TxnInner::Redb(t) => t.scan(table_name, prefix),
            TxnInner::Postgres(t) => decode_all(table_name, t.scan(table_name, prefix)?),
        }
    }

    /// Inserts or replaces one record.
    pub fn put<T: Serialize>(&mut self, table_name: &str, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Codec {
            table: table_name.to_owned(),
            key: key.to_owned(),
            source,
        })?;
        match &mut self.inner {
            TxnInner::Redb(t) => t.put(table_name, key, &bytes),
            TxnInner::Postgres(t) => t.put(table_name, key, bytes),
        }
    }

    /// Deletes one record; returns whether it existed.
    pub fn delete(&mut self, table_name: &str, key: &str) -> Result<bool> {
        match &mut self.inner {
            TxnInner::Redb(t) => t.delete(table_name, key),
            TxnInner::Postgres(t) => t.delete(table_name, key),
        }
    }

    /// Whether `holder` still holds the lease `name` at `epoch`, unexpired:
    /// the fencing check of work done under a lease, inside the write
    /// transaction that records it.
    pub fn holds_lease(&self, name: &str, holder: &str, epoch: u64) -> Result<bool> {
        match &self.inner {
            TxnInner::Redb(t) => t.holds_lease(name, holder, epoch),
            TxnInner::Postgres(t) => t.holds_lease(name, holder, epoch),
        }
    }
}

fn decode<T: DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Codec {
        table: table.to_owned(),
        key: key.to_owned(),
        source,
    })
}

fn decode_all<T: DeserializeOwned>(
    table: &str,
    rows: Vec<(String, Vec<u8>)>,
) -> Result<Vec<(String, T)>> {
    rows.into_iter()
        .map(|(k, v)| {
            let t = decode(table, &k, &v)?;
            Ok((k, t))
        })
        .collect()
}
