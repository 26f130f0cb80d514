//! Stored records. Keys use `:` as separator: it cannot occur in group or
//! stream names.

use serde::{Deserialize, Serialize};

pub(crate) const GROUPS: &str = "logs.groups";
pub(crate) const STREAMS: &str = "logs.streams";
pub(crate) const BATCHES: &str = "logs.batches";

/// A log group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Group {
    pub name: String,
    pub creation_time: i64,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub retention_in_days: Option<i64>,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

/// A log stream and its counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stream {
    pub name: String,
    pub creation_time: i64,
    pub first_event: Option<i64>,
    pub last_event: Option<i64>,
    pub last_ingestion: Option<i64>,
    pub stored_bytes: u64,
    /// Sequence number of the next batch.
    pub next_batch: u64,
    /// Events stored so far (their positions are 0..events).
    pub events: u64,
}

/// One sealed batch of events, as appended by one PutLogEvents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Batch {
    /// Position of the batch's first event in the stream.
    pub first: u64,
    /// Number of events.
    pub count: u64,
    /// `nonce || ciphertext || tag` of the JSON array of events.
    pub sealed: Vec<u8>,
}

/// One event as sealed inside a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
}

pub(crate) fn stream_key(group: &str, stream: &str) -> String {
    format!("{group}:{stream}")
}

pub(crate) fn batch_key(group: &str, stream: &str, seq: u64) -> String {
    format!("{group}:{stream}:{seq:020}")
}
