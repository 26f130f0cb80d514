//! CreateLogGroup, DeleteLogGroup, DescribeLogGroups.

use ferry_proto::{AwsError, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{BATCHES, GROUPS, Group, METRIC_FILTERS, MetricFilter, STREAMS, Stream};
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
    if !req.tags.is_empty() {
        super::tags::validate(&req.tags)?;
    }
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
        for (k, _) in w
            .scan::<Value>(METRIC_FILTERS, &prefix)
            .map_err(store_error)?
        {
            w.delete(METRIC_FILTERS, &k).map_err(store_error)?;
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
    let filters: Vec<(String, MetricFilter)> = svc
        .store
        .scan(METRIC_FILTERS, &prefix)
        .map_err(store_error)?;
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
                "metricFilterCount": filters.iter().filter(|(_, f)| f.log_group_name == g.name).count(),
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListReq {
    log_group_name_pattern: Option<String>,
    log_group_class: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

/// ListLogGroups: the newer listing, by a regular expression over names.
pub(crate) fn list(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: ListReq = parse_request(body)?;
    let limit = match req.limit {
        None => 50,
        Some(n @ 1..=1000) => usize::try_from(n).unwrap_or(50),
        Some(n) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"
            )));
        }
    };
    let pattern = match req.log_group_name_pattern.as_deref() {
        None => None,
        Some(p) => {
            // The model's constraint: up to five alternatives of 3..=24 name
            // characters, each a substring or (with ^) a prefix.
            const SHAPE: &str =
                r"^(\^?[\.\-_/#A-Za-z0-9]{3,24})(\|\^?[\.\-_/#A-Za-z0-9]{3,24}){0,4}$";
            let ok = (3..=129).contains(&p.len())
                && regex::Regex::new(SHAPE).is_ok_and(|r| r.is_match(p));
            if !ok {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{p}' at 'logGroupNamePattern' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\^?[\\.\\-_\\/#A-Za-z0-9]{{3,24}})(\\|\\^?[\\.\\-_\\/#A-Za-z0-9]{{3,24}}){{0,4}}"
                )));
            }
            let re = p
                .split('|')
                .map(|alt| match alt.strip_prefix('^') {
                    Some(rest) => format!("^{}", regex::escape(rest)),
                    None => regex::escape(alt),
                })
                .collect::<Vec<_>>()
                .join("|");
            Some(regex::Regex::new(&re).map_err(|_| invalid("Invalid logGroupNamePattern"))?)
        }
    };
    match req.log_group_class.as_deref() {
        None | Some("STANDARD") | Some("INFREQUENT_ACCESS") | Some("DELIVERY") => {}
        Some(c) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{c}' at 'logGroupClass' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, INFREQUENT_ACCESS, DELIVERY]"
            )));
        }
    }
    // Every ferry group is STANDARD.
    let class_ok = req
        .log_group_class
        .as_deref()
        .is_none_or(|c| c == "STANDARD");
    let groups: Vec<Group> = svc
        .store
        .scan::<Group>(GROUPS, "")
        .map_err(store_error)?
        .into_iter()
        .map(|(_, g)| g)
        .filter(|g| class_ok && pattern.as_ref().is_none_or(|re| re.is_match(&g.name)))
        .collect();
    let start = token_start(req.next_token.as_deref(), 'l')?;
    let page: Vec<Value> = groups
        .iter()
        .skip(start)
        .take(limit)
        .map(|g| {
            json!({
                "logGroupName": g.name,
                "logGroupArn": svc.group_arn(&g.name),
                "logGroupClass": "STANDARD",
            })
        })
        .collect();
    let mut out = json!({ "logGroups": page });
    set_next_token(&mut out, 'l', start, limit, groups.len());
    Ok(out)
}
