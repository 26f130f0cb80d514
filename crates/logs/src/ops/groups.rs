//! CreateLogGroup, DeleteLogGroup, DescribeLogGroups.

use ferry_proto::{AwsError, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{BATCHES, GROUPS, Group, STREAMS, Stream};
use crate::names;
use crate::service::{
    LogsService, invalid, not_found, now_ms, set_next_token, store_error, token_start,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateReq {
    log_group_name: String,
    kms_key_id: Option<String>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

pub(crate) fn create(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: CreateReq = parse_request(body)?;
    let name = names::group(&req.log_group_name)?;
    let rec = Group {
        name: name.to_owned(),
        creation_time: now_ms(),
        kms_key_id: req.kms_key_id,
        retention_in_days: None,
        tags: req.tags,
    };
    ensure(svc, rec, false)?;
    Ok(json!({}))
}

/// Creates the group; when it exists, fails unless `exist_ok`.
pub(crate) fn ensure(svc: &LogsService, rec: Group, exist_ok: bool) -> Result<(), AwsError> {
    svc.store.write(|w| {
        if w.get::<Group>(GROUPS, &rec.name)
            .map_err(store_error)?
            .is_some()
        {
            return if exist_ok {
                Ok(())
            } else {
                Err(AwsError::client(
                    "ResourceAlreadyExistsException",
                    "The specified log group already exists",
                ))
            };
        }
        w.put(GROUPS, &rec.name, &rec).map_err(store_error)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteReq {
    log_group_name: String,
}

pub(crate) fn delete(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: DeleteReq = parse_request(body)?;
    let name = names::group(&req.log_group_name)?;
    svc.store.write(|w| {
        if !w.delete(GROUPS, name).map_err(store_error)? {
            return Err(not_found("log group"));
        }
        let prefix = format!("{name}:");
        for (k, _) in w.scan::<Stream>(STREAMS, &prefix).map_err(store_error)? {
            w.delete(STREAMS, &k).map_err(store_error)?;
        }
        for (k, _) in w.scan::<Value>(BATCHES, &prefix).map_err(store_error)? {
            w.delete(BATCHES, &k).map_err(store_error)?;
        }
        Ok(json!({}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeReq {
    log_group_name_prefix: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

pub(crate) fn describe(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: DescribeReq = parse_request(body)?;
    let limit = page_limit(req.limit)?;
    let prefix = req.log_group_name_prefix.unwrap_or_default();
    let start = token_start(req.next_token.as_deref(), 'g')?;
    let groups: Vec<(String, Group)> = svc.store.scan(GROUPS, &prefix).map_err(store_error)?;
    let streams: Vec<(String, Stream)> = svc.store.scan(STREAMS, &prefix).map_err(store_error)?;
    let page: Vec<Value> = groups
        .iter()
        .skip(start)
        .take(limit)
        .map(|(_, g)| {
            let stored: u64 = streams
                .iter()
                .filter(|(k, _)| {
                    k.strip_prefix(g.name.as_str())
                        .is_some_and(|r| r.starts_with(':'))
                })
                .map(|(_, s)| s.stored_bytes)
                .sum();
            let mut v = json!({
                "logGroupName": g.name,
                "creationTime": g.creation_time,
                "metricFilterCount": 0,
                "arn": format!("{}:*", svc.group_arn(&g.name)),
                "logGroupArn": svc.group_arn(&g.name),
                "storedBytes": stored,
                "logGroupClass": "STANDARD",
            });
            if let Some(k) = &g.kms_key_id {
                v["kmsKeyId"] = json!(k);
            }
            if let Some(r) = g.retention_in_days {
                v["retentionInDays"] = json!(r);
            }
            v
        })
        .collect();
    let mut out = json!({ "logGroups": page });
    set_next_token(&mut out, 'g', start, limit, groups.len());
    Ok(out)
}

/// `limit` of the Describe operations: 1..=50, default 50.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<usize, AwsError> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=50) => Ok(usize::try_from(n).unwrap_or(50)),
        Some(n) => Err(invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 50"
        ))),
    }
}
