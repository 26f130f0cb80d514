//! The audit trail in a shared store: with several replicas (issue 19) the
//! trail is one append-only table all of them write, instead of a file per
//! process.
//!
//! A record is a row of [`AUDIT`] keyed by its sequence number, zero-padded
//! to 20 digits so keys sort in append order. The next number is a counter
//! row ([`AUDIT_META`] `next`) read and advanced in the same write
//! transaction that adds the records: write transactions are serialized
//! across processes, so numbers are unique, gapless and in commit order,
//! and a record is committed once, before its call answers. Records of
//! concurrent calls share one transaction ([`GroupCommit`]), as they share
//! one `write(2)` of the file.

use std::sync::Arc;

use ferry_store::{Store, StoreError};
use serde_json::Value;

use crate::audit::AuditSink;
use crate::audit_file::{BatchWrite, GroupCommit, Outcome, Ticket};

/// The records, by [`record_key`].
pub const AUDIT: &str = "kms_audit";
/// The counter row `next`: the sequence number of the next record (also
/// the trail's length).
pub const AUDIT_META: &str = "kms_audit_meta";
/// The counter row's key.
pub const NEXT: &str = "next";

/// The key of record `seq`: sorts as the numbers do.
pub fn record_key(seq: u64) -> String {
    format!("{seq:020}")
}

/// The sequence number of a record's key.
pub fn record_seq(key: &str) -> Option<u64> {
    key.parse().ok()
}

/// The trail's length: how many records it holds.
pub fn length(store: &Store) -> Result<u64, StoreError> {
    Ok(store.get::<u64>(AUDIT_META, NEXT)?.unwrap_or(0))
}

struct StoreOut {
    store: Arc<Store>,
}

impl BatchWrite for StoreOut {
    fn write_batch(&self, buf: &[u8]) -> Outcome {
        let mut records = Vec::new();
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).map_err(|e| {
                (
                    std::io::ErrorKind::InvalidData,
                    format!("an audit record is not JSON: {e}"),
                )
            })?;
            records.push(v);
        }
        self.store
            .write(|w| {
                let next = w.get::<u64>(AUDIT_META, NEXT)?.unwrap_or(0);
                for (seq, r) in (next..).zip(&records) {
                    w.put(AUDIT, &record_key(seq), r)?;
                }
                w.put(AUDIT_META, NEXT, &(next + records.len() as u64))
            })
            .map_err(|e| {
                let kind = if e.is_disk_full() {
                    std::io::ErrorKind::StorageFull
                } else {
                    std::io::ErrorKind::Other
                };
                (kind, e.to_string())
            })
    }
}

/// The audit trail as one table of a shared store, with group commit.
pub struct StoreSink {
    commit: GroupCommit,
}

impl StoreSink {
    /// A sink appending to `store`'s [`AUDIT`] table.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            commit: GroupCommit::new(Box::new(StoreOut { store })),
        }
    }
}

impl AuditSink for StoreSink {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        self.submit(line).wait()
    }

    fn submit(&self, line: &[u8]) -> Ticket {
        self.commit.submit(line)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    /// Threads appending at once through two sinks over one store (two
    /// replicas): every record lands once, numbered without gaps, each
    /// thread's in its order.
    #[test]
    fn concurrent_appends_through_two_sinks_are_numbered_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let sinks = [
            Arc::new(StoreSink::new(store.clone())),
            Arc::new(StoreSink::new(store.clone())),
        ];
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let sink = sinks[t % 2].clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        sink.append(format!("{{\"t\":{t},\"i\":{i}}}").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(length(&store).unwrap(), 300);
        let all: Vec<(String, Value)> = store.scan(AUDIT, "").unwrap();
        assert_eq!(all.len(), 300);
        for (n, (k, _)) in all.iter().enumerate() {
            assert_eq!(record_seq(k), Some(n as u64));
        }
        for t in 0..6 {
            let mine: Vec<&Value> = all.iter().map(|(_, v)| v).filter(|v| v["t"] == t).collect();
            let is: Vec<u64> = mine.iter().map(|v| v["i"].as_u64().unwrap()).collect();
            assert_eq!(is, (0..50).collect::<Vec<u64>>());
        }
    }

    #[test]
    fn a_record_that_is_not_json_fails_its_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let sink = StoreSink::new(store.clone());
        assert!(sink.append(b"{nope").is_err());
        assert_eq!(length(&store).unwrap(), 0);
    }
}
