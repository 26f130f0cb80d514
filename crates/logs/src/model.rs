//! Stored records. Keys use `:` as separator: it cannot occur in group or
//! stream names.

use serde::{Deserialize, Serialize};

pub(crate) const GROUPS: &str = "logs.groups";
pub(crate) const STREAMS: &str = "logs.streams";
pub(crate) const BATCHES: &str = "logs.batches";
pub(crate) const METRIC_FILTERS: &str = "logs.metric_filters";

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
    /// `nonce || ciphertext || tag` of the JSON array of events. Written
    /// as base64 (the store encodes JSON: a byte array as numbers took 3.5
    /// bytes a byte and dominated reads); older records hold the array form,
    /// which still reads.
    #[serde(with = "sealed_bytes")]
    pub sealed: Vec<u8>,
    /// Oldest and newest event timestamps in the batch, in the clear (the
    /// stream's first/last event times are already): readers skip batches
    /// outside their time range and the retention sweep drops expired
    /// batches without decrypting. `None` on batches written before.
    #[serde(default)]
    pub min_ts: Option<i64>,
    #[serde(default)]
    pub max_ts: Option<i64>,
    /// Message bytes in the batch (0 on older batches), subtracted from the
    /// stream's `storedBytes` when the sweep deletes the batch.
    #[serde(default)]
    pub bytes: u64,
}

/// A metric filter (stored and testable; ferry has no metrics backend).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetricFilter {
    pub filter_name: String,
    pub filter_pattern: String,
    pub metric_transformations: Vec<serde_json::Value>,
    pub creation_time: i64,
    pub log_group_name: String,
}

pub(crate) fn metric_filter_key(group: &str, name: &str) -> String {
    format!("{group}:{name}")
}

/// Base64 on write; base64 or a JSON array of numbers on read.
mod sealed_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("base64 or an array of bytes")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            STANDARD.decode(v).map_err(E::custom)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(V)
    }
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
