//! PutRetentionPolicy, DeleteRetentionPolicy, and the sweep that deletes
//! expired events.
//!
//! Readers hide events older than the retention at once; the sweep
//! reclaims the space. A sealed batch is deleted whole when its newest
//! event has expired; a batch that still holds an unexpired event is kept
//! (re-sealing it would rewrite data the stream's AAD binds to its
//! position) and its expired events stay hidden until the rest expire too.

use ferry_proto::{AwsError, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use super::read;
use crate::model::{BATCHES, Batch, GROUPS, Group, STREAMS, Stream, batch_key};
use crate::names;
use crate::service::{LogsService, invalid, not_found, now_ms, store_error};
use ferry_store::singleton::Held;

/// The values CloudWatch accepts for `retentionInDays`.
pub(crate) const ALLOWED_DAYS: [i64; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutReq {
    log_group_name: String,
    retention_in_days: i64,
}

pub(crate) fn put(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: PutReq = parse_request(body)?;
    let name = names::group(&req.log_group_name)?;
    if !ALLOWED_DAYS.contains(&req.retention_in_days) {
        let set: Vec<String> = ALLOWED_DAYS.iter().map(|d| d.to_string()).collect();
        return Err(invalid(format!(
            "1 validation error detected: Value '{}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            req.retention_in_days,
            set.join(", ")
        )));
    }
    set(svc, name, Some(req.retention_in_days))?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteReq {
    log_group_name: String,
}

pub(crate) fn delete(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: DeleteReq = parse_request(body)?;
    let name = names::group(&req.log_group_name)?;
    set(svc, name, None)?;
    Ok(json!({}))
}

fn set(svc: &LogsService, name: &str, days: Option<i64>) -> Result<(), AwsError> {
    svc.store.write(|w| {
        let mut g: Group = w
            .get(GROUPS, name)
            .map_err(store_error)?
            .ok_or_else(|| not_found("log group"))?;
        g.retention_in_days = days;
        w.put(GROUPS, name, &g).map_err(store_error)
    })
}

/// Deletes every sealed batch whose events have all expired, in every
/// group with a retention policy. Returns how many batches went. With a
/// lease (replicas), each deletion is made only while it is held, and the
/// pass stops once it is lost.
pub(crate) fn sweep(svc: &LogsService, lease: Option<&Held>) -> Result<usize, AwsError> {
    let now = now_ms();
    let mut deleted = 0;
    for (_, g) in svc.store.scan::<Group>(GROUPS, "").map_err(store_error)? {
        let Some(cutoff) = read::cutoff_of(&g, now) else {
            continue;
        };
        let prefix = format!("{}:", g.name);
        for (skey, s) in svc
            .store
            .scan::<Stream>(STREAMS, &prefix)
            .map_err(store_error)?
        {
            if lease.is_some_and(|l| !l.renew()) {
                return Err(lost());
            }
            deleted += sweep_stream(svc, &g.name, &skey, &s, cutoff, lease)?;
        }
    }
    Ok(deleted)
}

/// The sweep lost its lease: another replica sweeps now.
fn lost() -> AwsError {
    AwsError::server(
        "ServiceUnavailableException",
        "the retention sweep's lease was lost; another replica sweeps now",
    )
}

fn sweep_stream(
    svc: &LogsService,
    group: &str,
    skey: &str,
    s: &Stream,
    cutoff: i64,
    lease: Option<&Held>,
) -> Result<usize, AwsError> {
    let mut expired = Vec::new();
    for seq in 0..s.next_batch {
        let key = batch_key(group, &s.name, seq);
        let Some(batch) = svc.store.get::<Batch>(BATCHES, &key).map_err(store_error)? else {
            continue;
        };
        // Batches written before the time span was recorded are opened once.
        let newest = match batch.max_ts {
            Some(m) => m,
            None => read::open_batch(svc.sealer.as_ref(), &key, &batch)?
                .iter()
                .map(|e| e.timestamp)
                .max()
                .unwrap_or(i64::MIN),
        };
        if newest < cutoff {
            expired.push(key);
        }
    }
    if expired.is_empty() {
        return Ok(0);
    }
    svc.store.write(|w| {
        if let Some(l) = lease
            && !l.holds(w).map_err(store_error)?
        {
            return Err(lost());
        }
        // Only what is still there counts (a batch deleted meanwhile, by
        // a stream's deletion, is not freed twice).
        let mut freed = 0u64;
        let mut gone = 0;
        for key in &expired {
            if let Some(b) = w.get::<Batch>(BATCHES, key).map_err(store_error)? {
                w.delete(BATCHES, key).map_err(store_error)?;
                freed += b.bytes;
                gone += 1;
            }
        }
        // The stream may have been deleted meanwhile: then so were its batches.
        if let Some(mut cur) = w.get::<Stream>(STREAMS, skey).map_err(store_error)? {
            cur.stored_bytes = cur.stored_bytes.saturating_sub(freed);
            w.put(STREAMS, skey, &cur).map_err(store_error)?;
        }
        Ok::<_, AwsError>(gone)
    })
}
