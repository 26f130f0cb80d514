//! CreateLogStream, DeleteLogStream, DescribeLogStreams.

use ferry_proto::{AwsError, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use super::groups::page_limit;
use crate::model::{BATCHES, GROUPS, Group, STREAMS, Stream, stream_key};
use crate::names;
use crate::service::{
    LogsService, group_from, invalid, not_found, now_ms, set_next_token, store_error, token_start,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameReq {
    log_group_name: String,
    log_stream_name: String,
}

pub(crate) fn create(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: NameReq = parse_request(body)?;
    let group = names::group(&req.log_group_name)?;
    let stream = names::stream(&req.log_stream_name)?;
    ensure(svc, group, stream, false)?;
    Ok(json!({}))
}

/// Creates the stream; when it exists, fails unless `exist_ok`. The group
/// must exist.
pub(crate) fn ensure(
    svc: &LogsService,
    group: &str,
    stream: &str,
    exist_ok: bool,
) -> Result<(), AwsError> {
    svc.store.write(|w| {
        if w.get::<Group>(GROUPS, group)
            .map_err(store_error)?
            .is_none()
        {
            return Err(not_found("log group"));
        }
        let key = stream_key(group, stream);
        if w.get::<Stream>(STREAMS, &key)
            .map_err(store_error)?
            .is_some()
        {
            return if exist_ok {
                Ok(())
            } else {
                Err(AwsError::client(
                    "ResourceAlreadyExistsException",
                    "The specified log stream already exists",
                ))
            };
        }
        let rec = Stream {
            name: stream.to_owned(),
            creation_time: now_ms(),
            first_event: None,
            last_event: None,
            last_ingestion: None,
            stored_bytes: 0,
            next_batch: 0,
            events: 0,
        };
        w.put(STREAMS, &key, &rec).map_err(store_error)
    })
}

pub(crate) fn delete(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: NameReq = parse_request(body)?;
    let group = names::group(&req.log_group_name)?;
    let stream = names::stream(&req.log_stream_name)?;
    svc.store.write(|w| {
        let key = stream_key(group, stream);
        if !w.delete(STREAMS, &key).map_err(store_error)? {
            return Err(not_found("log stream"));
        }
        for (k, _) in w
            .scan::<Value>(BATCHES, &format!("{key}:"))
            .map_err(store_error)?
        {
            w.delete(BATCHES, &k).map_err(store_error)?;
        }
        Ok(json!({}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeReq {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name_prefix: Option<String>,
    order_by: Option<String>,
    #[serde(default)]
    descending: bool,
    next_token: Option<String>,
    limit: Option<i64>,
}

pub(crate) fn describe(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: DescribeReq = parse_request(body)?;
    let group = group_from(
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    let group = group.as_str();
    let limit = page_limit(req.limit)?;
    let by_time = match req.order_by.as_deref() {
        None | Some("LogStreamName") => false,
        Some("LastEventTime") => true,
        Some(o) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{o}' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
            )));
        }
    };
    if by_time && req.log_stream_name_prefix.is_some() {
        return Err(invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    svc.require_group(group)?;
    let prefix = format!("{group}:{}", req.log_stream_name_prefix.unwrap_or_default());
    let mut streams: Vec<Stream> = svc
        .store
        .scan::<Stream>(STREAMS, &prefix)
        .map_err(store_error)?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    if by_time {
        streams.sort_by_key(|s| s.last_event.unwrap_or(0));
    }
    if req.descending {
        streams.reverse();
    }
    let start = token_start(req.next_token.as_deref(), 's')?;
    let page: Vec<Value> = streams
        .iter()
        .skip(start)
        .take(limit)
        .map(|s| {
            let mut v = json!({
                "logStreamName": s.name,
                "creationTime": s.creation_time,
                "arn": svc.stream_arn(group, &s.name),
                "storedBytes": s.stored_bytes,
            });
            if let Some(t) = s.first_event {
                v["firstEventTimestamp"] = json!(t);
            }
            if let Some(t) = s.last_event {
                v["lastEventTimestamp"] = json!(t);
            }
            if let Some(t) = s.last_ingestion {
                v["lastIngestionTime"] = json!(t);
            }
            v
        })
        .collect();
    let mut out = json!({ "logStreams": page });
    set_next_token(&mut out, 's', start, limit, streams.len());
    Ok(out)
}
