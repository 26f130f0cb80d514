//! Reading sealed batches one at a time, hiding events past retention.

use std::ops::ControlFlow;

use ferry_proto::AwsError;
use ferry_store::Store;

use crate::model::{BATCHES, Batch, GROUPS, Group, StoredEvent, Stream, batch_key};
use crate::seal::Sealer;
use crate::service::{LogsService, not_found, now_ms, store_error};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The oldest timestamp still retained in `group` (`None`: kept forever).
/// Readers hide older events even before the sweep has deleted them.
pub(crate) fn retention_cutoff(svc: &LogsService, group: &str) -> Result<Option<i64>, AwsError> {
    retention_cutoff_in(&svc.store, group)
}

pub(crate) fn retention_cutoff_in(store: &Store, group: &str) -> Result<Option<i64>, AwsError> {
    let g: Group = store
        .get(GROUPS, group)
        .map_err(store_error)?
        .ok_or_else(|| not_found("log group"))?;
    Ok(cutoff_of(&g, now_ms()))
}

pub(crate) fn cutoff_of(g: &Group, now: i64) -> Option<i64> {
    g.retention_in_days
        .map(|d| now.saturating_sub(d.saturating_mul(DAY_MS)))
}

/// Decrypts one batch.
pub(crate) fn open_batch(
    sealer: &dyn Sealer,
    key: &str,
    batch: &Batch,
) -> Result<Vec<StoredEvent>, AwsError> {
    let plain = sealer.open(key.as_bytes(), &batch.sealed).map_err(|e| {
        AwsError::server(
            "ServiceUnavailableException",
            format!("log batch {key}: {e}"),
        )
    })?;
    serde_json::from_slice(&plain).map_err(|e| {
        AwsError::server(
            "ServiceUnavailableException",
            format!("log batch {key}: {e}"),
        )
    })
}

/// The timestamps a reader wants: at or after `lo` (the later of the
/// retention cutoff and the request's start), at or before `hi`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    lo: Option<i64>,
    hi: Option<i64>,
}

impl Window {
    pub(crate) fn new(cutoff: Option<i64>, start: Option<i64>, end: Option<i64>) -> Self {
        let lo = match (cutoff, start) {
            (Some(c), Some(s)) => Some(c.max(s)),
            (c, s) => c.or(s),
        };
        Self { lo, hi: end }
    }
}

/// Calls `f(position, event)` for every event of `stream` (in `group`)
/// within `window`, in order, loading and decrypting one batch at a time;
/// batches whose recorded time span lies outside the window are skipped
/// unopened. Stops when `f` breaks; returns whether it did.
pub(crate) fn visit_stream(
    store: &Store,
    sealer: &dyn Sealer,
    group: &str,
    stream: &Stream,
    window: Window,
    mut f: impl FnMut(u64, StoredEvent) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, AwsError> {
    let Window { lo, hi: end } = window;
    for seq in 0..stream.next_batch {
        let key = batch_key(group, &stream.name, seq);
        // Batches deleted by the retention sweep leave gaps.
        let Some(batch) = store.get::<Batch>(BATCHES, &key).map_err(store_error)? else {
            continue;
        };
        if lo.is_some_and(|lo| batch.max_ts.is_some_and(|m| m < lo))
            || end.is_some_and(|e| batch.min_ts.is_some_and(|m| m > e))
        {
            continue;
        }
        for (i, e) in open_batch(sealer, &key, &batch)?.into_iter().enumerate() {
            if lo.is_some_and(|lo| e.timestamp < lo) || end.is_some_and(|hi| e.timestamp > hi) {
                continue;
            }
            if f(batch.first + i as u64, e).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
    }
    Ok(ControlFlow::Continue(()))
}
