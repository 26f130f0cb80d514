//! PutLogEvents, GetLogEvents, FilterLogEvents, and the runtime's append.

use ferry_proto::{AwsError, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{groups, read, streams};
use crate::filter::Pattern;
use crate::model::{
    BATCHES, Batch, GROUPS, Group, STREAMS, StoredEvent, Stream, batch_key, stream_key,
};
use crate::names;
use crate::service::{
    LogEvent, LogsService, group_from, invalid, not_found, now_ms, parse_token, set_next_token,
    store_error, token_start,
};

/// CloudWatch refuses events older than 14 days or over 2 hours ahead.
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Events returned per Get/Filter call when no limit is given.
const DEFAULT_LIMIT: usize = 10_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InputEvent {
    timestamp: i64,
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutReq {
    log_group_name: String,
    log_stream_name: String,
    log_events: Vec<InputEvent>,
    /// Accepted and ignored, as CloudWatch does since 2023.
    #[serde(default)]
    #[allow(dead_code)]
    sequence_token: Option<String>,
}

/// Which indexes of a batch were refused and why.
#[derive(Debug, Default)]
pub(crate) struct Rejected {
    too_new_start: Option<usize>,
    too_old_end: Option<usize>,
    /// The stream's batch counter after the call.
    next_batch: u64,
}

/// The `nextSequenceToken` of a stream whose next batch is `n`: digits, as
/// CloudWatch's look; clients that still send it back have it ignored.
pub(crate) fn sequence_token(n: u64) -> String {
    format!("{n:056}")
}

pub(crate) fn put(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: PutReq = parse_request(body)?;
    if req.log_events.is_empty() || req.log_events.len() > 10_000 {
        return Err(invalid(
            "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length between 1 and 10000",
        ));
    }
    if req.log_events.iter().any(|e| e.message.is_empty()) {
        return Err(invalid("Log event messages must not be empty"));
    }
    if req
        .log_events
        .windows(2)
        .any(|w| w[1].timestamp < w[0].timestamp)
    {
        return Err(invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    let events: Vec<LogEvent> = req
        .log_events
        .into_iter()
        .map(|e| LogEvent {
            timestamp: e.timestamp,
            message: e.message,
        })
        .collect();
    let rejected = append(
        svc,
        &req.log_group_name,
        &req.log_stream_name,
        &events,
        false,
    )?;
    let mut out = json!({ "nextSequenceToken": sequence_token(rejected.next_batch) });
    if rejected.too_new_start.is_some() || rejected.too_old_end.is_some() {
        let mut info = json!({});
        if let Some(i) = rejected.too_new_start {
            info["tooNewLogEventStartIndex"] = json!(i);
        }
        if let Some(i) = rejected.too_old_end {
            info["tooOldLogEventEndIndex"] = json!(i);
        }
        out["rejectedLogEventsInfo"] = info;
    }
    Ok(out)
}

/// Seals and stores `events` as one batch. With `create`, a missing group
/// or stream is created first (the runtime's path); otherwise it is a
/// `ResourceNotFoundException` (the API's path).
/// See [`LogsService::open_stream`].
pub(crate) fn open_stream(
    svc: &LogsService,
    group: &str,
    stream: &str,
    create_group: bool,
) -> Result<(), AwsError> {
    let group = names::group(group)?;
    let stream = names::stream(stream)?;
    if create_group {
        let rec = Group {
            name: group.to_owned(),
            creation_time: now_ms(),
            kms_key_id: None,
            retention_in_days: None,
            tags: Default::default(),
        };
        groups::ensure(svc, rec, true)?;
    }
    streams::ensure(svc, group, stream, true)
}

pub(crate) fn append(
    svc: &LogsService,
    group: &str,
    stream: &str,
    events: &[LogEvent],
    create: bool,
) -> Result<Rejected, AwsError> {
    let group = names::group(group)?;
    let stream = names::stream(stream)?;
    if create {
        open_stream(svc, group, stream, true)?;
    }
    let now = now_ms();
    let mut rejected = Rejected::default();
    // Events already past the group's retention are refused as too old, as
    // CloudWatch does; the group is read again in the write below.
    let retention_cutoff = svc
        .store
        .get::<Group>(GROUPS, group)
        .map_err(store_error)?
        .and_then(|g| g.retention_in_days)
        .map(|d| now - d * DAY_MS);
    let oldest = retention_cutoff.map_or(now - MAX_AGE_MS, |c| c.max(now - MAX_AGE_MS));
    let accepted: Vec<StoredEvent> = events
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            if e.timestamp > now + MAX_AHEAD_MS {
                rejected.too_new_start.get_or_insert(*i);
                false
            } else if e.timestamp < oldest {
                rejected.too_old_end = Some(i + 1);
                false
            } else {
                true
            }
        })
        .map(|(_, e)| StoredEvent {
            timestamp: e.timestamp,
            message: e.message.clone(),
            ingestion_time: now,
        })
        .collect();
    svc.store.write(|w| {
        if w.get::<Group>(GROUPS, group)
            .map_err(store_error)?
            .is_none()
        {
            return Err(not_found("log group"));
        }
        let skey = stream_key(group, stream);
        let mut s: Stream = w
            .get(STREAMS, &skey)
            .map_err(store_error)?
            .ok_or_else(|| not_found("log stream"))?;
        if accepted.is_empty() {
            rejected.next_batch = s.next_batch;
            return Ok(());
        }
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&accepted).map_err(|e| {
            AwsError::server(
                "ServiceUnavailableException",
                format!("encoding log batch: {e}"),
            )
        })?);
        let key = batch_key(group, stream, s.next_batch);
        let sealed = svc.sealer.seal(key.as_bytes(), &plain).map_err(|e| {
            AwsError::server(
                "ServiceUnavailableException",
                format!("sealing log batch: {e}"),
            )
        })?;
        let count = accepted.len() as u64;
        let bytes = accepted.iter().map(|e| e.message.len() as u64).sum::<u64>();
        let first_ts = accepted.iter().map(|e| e.timestamp).min();
        let last_ts = accepted.iter().map(|e| e.timestamp).max();
        w.put(
            BATCHES,
            &key,
            &Batch {
                first: s.events,
                count,
                sealed,
                min_ts: first_ts,
                max_ts: last_ts,
                bytes,
            },
        )
        .map_err(store_error)?;
        s.first_event = s.first_event.or(first_ts);
        s.last_event = s.last_event.max(last_ts);
        s.last_ingestion = Some(now);
        s.stored_bytes += bytes;
        s.next_batch += 1;
        s.events += count;
        rejected.next_batch = s.next_batch;
        w.put(STREAMS, &skey, &s).map_err(store_error)
    })?;
    Ok(rejected)
}

/// Every unexpired event of a stream, in order, decrypted.
fn read_stream(svc: &LogsService, group: &str, stream: &str) -> Result<Vec<StoredEvent>, AwsError> {
    let skey = stream_key(group, stream);
    let rec: Stream = svc
        .store
        .get(STREAMS, &skey)
        .map_err(store_error)?
        .ok_or_else(|| not_found("log stream"))?;
    let cutoff = read::retention_cutoff(svc, group)?;
    let mut out = Vec::new();
    let _all_read = read::visit_stream(
        &svc.store,
        svc.sealer.as_ref(),
        group,
        &rec,
        read::Window::new(cutoff, None, None),
        |_, e| {
            out.push(e);
            std::ops::ControlFlow::Continue(())
        },
    )?;
    Ok(out)
}

fn event_limit(limit: Option<i64>) -> Result<usize, AwsError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=10_000) => Ok(usize::try_from(n).unwrap_or(DEFAULT_LIMIT)),
        Some(n) => Err(invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 10000"
        ))),
    }
}

fn in_window(ts: i64, start: Option<i64>, end: Option<i64>) -> bool {
    start.is_none_or(|s| ts >= s) && end.is_none_or(|e| ts <= e)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetReq {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name: String,
    start_time: Option<i64>,
    end_time: Option<i64>,
    next_token: Option<String>,
    limit: Option<i64>,
    start_from_head: Option<bool>,
}

pub(crate) fn get(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: GetReq = parse_request(body)?;
    let group = group_from(
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    let group = group.as_str();
    let stream = names::stream(&req.log_stream_name)?;
    let limit = event_limit(req.limit)?;
    let events: Vec<StoredEvent> = read_stream(svc, group, stream)?
        .into_iter()
        .filter(|e| in_window(e.timestamp, req.start_time, req.end_time))
        .collect();
    // Positions index the time-filtered list; paging calls repeat the filter.
    let (from, to) = match req.next_token.as_deref() {
        Some(t) if t.starts_with('f') => {
            let n = parse_token(t, 'f')?.min(events.len());
            (n, (n + limit).min(events.len()))
        }
        Some(t) => {
            let n = parse_token(t, 'b')?.min(events.len());
            (n.saturating_sub(limit), n)
        }
        None if req.start_from_head.unwrap_or(false) => (0, limit.min(events.len())),
        None => (events.len().saturating_sub(limit), events.len()),
    };
    let page: Vec<Value> = events[from..to]
        .iter()
        .map(|e| json!({"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time}))
        .collect();
    Ok(json!({
        "events": page,
        "nextForwardToken": format!("f/{to}"),
        "nextBackwardToken": format!("b/{from}"),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterReq {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_names: Option<Vec<String>>,
    log_stream_name_prefix: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    filter_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

pub(crate) fn filter(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: FilterReq = parse_request(body)?;
    let group = group_from(
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    let group = group.as_str();
    let limit = event_limit(req.limit)?;
    let pattern = Pattern::parse(req.filter_pattern.as_deref().unwrap_or(""))?;
    if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
        return Err(invalid(
            "You cannot specify both LogStreamNames and LogStreamNamePrefix.",
        ));
    }
    svc.require_group(group)?;
    let prefix = format!(
        "{group}:{}",
        req.log_stream_name_prefix.as_deref().unwrap_or("")
    );
    let mut names: Vec<String> = svc
        .store
        .scan::<Stream>(STREAMS, &prefix)
        .map_err(store_error)?
        .into_iter()
        .map(|(_, s)| s.name)
        .collect();
    if let Some(wanted) = &req.log_stream_names {
        for w in wanted {
            names::stream(w)?;
        }
        names.retain(|n| wanted.contains(n));
    }
    let cutoff = read::retention_cutoff(svc, group)?;
    let mut hits: Vec<(i64, String, u64, StoredEvent)> = Vec::new();
    for name in &names {
        let Some(rec) = svc
            .store
            .get::<Stream>(STREAMS, &stream_key(group, name))
            .map_err(store_error)?
        else {
            continue;
        };
        let _all_read = read::visit_stream(
            &svc.store,
            svc.sealer.as_ref(),
            group,
            &rec,
            read::Window::new(cutoff, req.start_time, req.end_time),
            |pos, e| {
                if pattern.matches(&e.message) {
                    hits.push((e.timestamp, name.clone(), pos, e));
                }
                std::ops::ControlFlow::Continue(())
            },
        )?;
    }
    // Interleaved by time, as CloudWatch returns them; ties keep stream order.
    hits.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    let start = token_start(req.next_token.as_deref(), 'o')?;
    let page: Vec<Value> = hits
        .iter()
        .skip(start)
        .take(limit)
        .map(|(ts, stream, pos, e)| {
            json!({
                "logStreamName": stream,
                "timestamp": ts,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
                "eventId": format!("{stream}/{pos}"),
            })
        })
        .collect();
    let searched: Vec<Value> = names
        .iter()
        .map(|n| json!({"logStreamName": n, "searchedCompletely": true}))
        .collect();
    let mut out = json!({ "events": page, "searchedLogStreams": searched });
    set_next_token(&mut out, 'o', start, limit, hits.len());
    Ok(out)
}
