//! StartQuery, GetQueryResults, StopQuery, DescribeQueries.

use std::sync::Arc;

use ferry_proto::{AwsError, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::insights::{self, Job, Status, parse};
use crate::names;
use crate::service::{
    LogsService, identifier_group, invalid, not_found, set_next_token, token_start,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartReq {
    query_language: Option<String>,
    log_group_name: Option<String>,
    log_group_names: Option<Vec<String>>,
    log_group_identifiers: Option<Vec<String>>,
    start_time: i64,
    end_time: i64,
    query_string: String,
    limit: Option<i64>,
}

/// The error StartQuery answers for a query that does not parse, with the
/// place (line and column) in its message.
fn malformed(src: &str, e: &parse::QueryError) -> AwsError {
    let (line, col) = parse::line_col(src, e.pos);
    AwsError::client(
        "MalformedQueryException",
        format!("{} at line {line} and position {col}", e.message),
    )
}

pub(crate) fn start(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: StartReq = parse_request(body)?;
    match req.query_language.as_deref() {
        None | Some("CWLI") => {}
        Some(l @ ("SQL" | "PPL")) => {
            return Err(invalid(format!(
                "ferry supports the CWLI query language only, not {l}"
            )));
        }
        Some(l) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{l}' at 'queryLanguage' failed to satisfy constraint: Member must satisfy enum value set: [CWLI, SQL, PPL]"
            )));
        }
    }
    let given = [
        req.log_group_name.is_some(),
        req.log_group_names.is_some(),
        req.log_group_identifiers.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(invalid(
            "A StartQuery operation must include exactly one of the following parameters: logGroupName, logGroupNames or logGroupIdentifiers",
        ));
    }
    let mut groups = Vec::new();
    if let Some(g) = &req.log_group_name {
        groups.push(names::group(g)?.to_owned());
    }
    for g in req.log_group_names.iter().flatten() {
        groups.push(names::group(g)?.to_owned());
    }
    for id in req.log_group_identifiers.iter().flatten() {
        let g = identifier_group(id)?;
        groups.push(names::group(&g)?.to_owned());
    }
    if groups.is_empty() || groups.len() > 50 {
        return Err(invalid(
            "1 validation error detected: Value at 'logGroupNames' failed to satisfy constraint: Member must have length between 1 and 50",
        ));
    }
    groups.dedup();
    if req.query_string.len() > 10_000 {
        return Err(invalid(
            "1 validation error detected: Value at 'queryString' failed to satisfy constraint: Member must have length less than or equal to 10000",
        ));
    }
    if req.end_time < req.start_time {
        return Err(invalid("End time should not be before the start time"));
    }
    let max_rows = match req.limit {
        None => 1000,
        Some(n @ 1..=10_000) => usize::try_from(n).unwrap_or(1000),
        Some(n) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 10000"
            )));
        }
    };
    let cmds = parse::parse(&req.query_string).map_err(|e| malformed(&req.query_string, &e))?;
    for g in &groups {
        svc.require_group(g)?;
    }
    let q = svc
        .queries
        .add(req.query_string.clone(), groups, crate::service::now_ms())?;
    let job = Job {
        store: svc.store.clone(),
        sealer: svc.sealer.clone(),
        account: svc.account.clone(),
        cmds,
        // StartQuery's times are seconds; the end second is included whole.
        start_ms: req.start_time.saturating_mul(1000),
        end_ms: req.end_time.saturating_mul(1000).saturating_add(999),
        max_rows,
    };
    let runner = q.clone();
    let spawned = std::thread::Builder::new()
        .name("logs-query".into())
        .spawn(move || insights::run(&job, &runner));
    if spawned.is_err() {
        q.state().status = Status::Failed;
    }
    Ok(json!({ "queryId": q.id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdReq {
    query_id: String,
    next_token: Option<String>,
    max_items: Option<i64>,
}

fn query(svc: &LogsService, id: &str) -> Result<Arc<insights::Query>, AwsError> {
    if id.is_empty() || id.len() > 256 {
        return Err(invalid(
            "1 validation error detected: Value at 'queryId' failed to satisfy constraint: Member must have length between 1 and 256",
        ));
    }
    svc.queries.get(id).ok_or_else(|| not_found("query"))
}

pub(crate) fn get_results(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: IdReq = parse_request(body)?;
    let q = query(svc, &req.query_id)?;
    let st = q.state();
    let limit = match req.max_items {
        None => usize::MAX,
        Some(n @ 0..=10_000) => usize::try_from(n).unwrap_or(usize::MAX).max(1),
        Some(n) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{n}' at 'maxItems' failed to satisfy constraint: Member must have value between 0 and 10000"
            )));
        }
    };
    let start = token_start(req.next_token.as_deref(), 'q')?;
    let results: Vec<Value> = st
        .rows
        .iter()
        .skip(start)
        .take(limit)
        .map(|row| {
            Value::Array(
                row.iter()
                    .map(|(f, v)| json!({"field": f, "value": v}))
                    .collect(),
            )
        })
        .collect();
    let mut out = json!({
        "queryLanguage": "CWLI",
        "status": st.status.as_str(),
        "results": results,
        "statistics": {
            "recordsMatched": st.counters.matched as f64,
            "recordsScanned": st.counters.scanned as f64,
            "bytesScanned": st.counters.bytes as f64,
        },
    });
    if limit != usize::MAX {
        set_next_token(&mut out, 'q', start, limit, st.rows.len());
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopReq {
    query_id: String,
}

pub(crate) fn stop(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: StopReq = parse_request(body)?;
    let q = query(svc, &req.query_id)?;
    Ok(json!({ "success": q.stop() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeReq {
    log_group_name: Option<String>,
    status: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
    query_language: Option<String>,
}

pub(crate) fn describe(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: DescribeReq = parse_request(body)?;
    const STATUSES: [&str; 7] = [
        "Scheduled",
        "Running",
        "Complete",
        "Failed",
        "Cancelled",
        "Timeout",
        "Unknown",
    ];
    if let Some(s) = &req.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(invalid(format!(
            "1 validation error detected: Value '{s}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            STATUSES.join(", ")
        )));
    }
    let limit = match req.max_results {
        None => 1000,
        Some(n @ 1..=1000) => usize::try_from(n).unwrap_or(1000),
        Some(n) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 1000"
            )));
        }
    };
    if let Some(g) = &req.log_group_name {
        names::group(g)?;
        svc.require_group(g)?;
    }
    let wanted_language = req.query_language.as_deref().is_none_or(|l| l == "CWLI");
    let mut list: Vec<Value> = Vec::new();
    for q in svc.queries.all().iter().rev() {
        let status = q.state().status.as_str();
        if !wanted_language
            || req.status.as_deref().is_some_and(|s| s != status)
            || req
                .log_group_name
                .as_ref()
                .is_some_and(|g| !q.groups.contains(g))
        {
            continue;
        }
        list.push(json!({
            "queryLanguage": "CWLI",
            "queryId": q.id,
            "queryString": q.query_string,
            "status": status,
            "createTime": q.create_time,
            "logGroupName": q.groups.first(),
        }));
    }
    let start = token_start(req.next_token.as_deref(), 'd')?;
    let total = list.len();
    let page: Vec<Value> = list.into_iter().skip(start).take(limit).collect();
    let mut out = json!({ "queries": page });
    set_next_token(&mut out, 'd', start, limit, total);
    Ok(out)
}
