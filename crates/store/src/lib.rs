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

#![forbid(unsafe_code)]

use std::path::Path;

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

/// A store failure seen by an API caller is a server fault; the message names
/// the table and key at most, never a record's contents.
impl From<StoreError> for ferry_proto::AwsError {
    fn from(e: StoreError) -> Self {
        ferry_proto::AwsError::server("InternalFailure", format!("{e}"))
    }
}

fn table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

/// The state store. Cheap to share behind an `Arc`; redb serializes writers
/// and lets readers run concurrently against a snapshot.
pub struct Store {
    db: redb::Database,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            db: redb::Database::create(path)?,
        })
    }

    /// Reads one record.
    pub fn get<T: DeserializeOwned>(&self, table_name: &str, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read()?;
        match txn.open_table(table(table_name)) {
            Ok(t) => get_in(&t, table_name, key),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// All records of a table whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        table_name: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        let txn = self.db.begin_read()?;
        match txn.open_table(table(table_name)) {
            Ok(t) => scan_in(&t, table_name, prefix),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
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
    /// committed, or (if it returns an error) nothing is.
    ///
    /// The closure's error type only needs to absorb [`StoreError`], so
    /// callers can abort with their own domain errors.
    pub fn write<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        let mut w = WriteTxn { txn: &txn };
        let r = f(&mut w)?;
        txn.commit().map_err(StoreError::from)?;
        Ok(r)
    }
}

/// A write transaction handed to [`Store::write`]'s closure. Reads see the
/// transaction's own writes.
pub struct WriteTxn<'a> {
    txn: &'a redb::WriteTransaction,
}

impl WriteTxn<'_> {
    /// Reads one record.
    pub fn get<T: DeserializeOwned>(&self, table_name: &str, key: &str) -> Result<Option<T>> {
        get_in(&self.txn.open_table(table(table_name))?, table_name, key)
    }

    /// All records whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        table_name: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>> {
        scan_in(&self.txn.open_table(table(table_name))?, table_name, prefix)
    }

    /// Inserts or replaces one record.
    pub fn put<T: Serialize>(&mut self, table_name: &str, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Codec {
            table: table_name.to_owned(),
            key: key.to_owned(),
            source,
        })?;
        let mut t = self.txn.open_table(table(table_name))?;
        t.insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// Deletes one record; returns whether it existed.
    pub fn delete(&mut self, table_name: &str, key: &str) -> Result<bool> {
        let mut t = self.txn.open_table(table(table_name))?;
        let existed = t.remove(key)?.is_some();
        Ok(existed)
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
}
