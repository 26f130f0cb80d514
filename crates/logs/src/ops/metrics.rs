//! PutMetricFilter, DescribeMetricFilters, DeleteMetricFilter,
//! TestMetricFilter. Filters are stored and testable; ferry has no metrics
//! backend to publish to.

use ferry_proto::{AwsError, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use super::groups::page_limit;
use crate::filter::Pattern;
use crate::model::{GROUPS, Group, METRIC_FILTERS, MetricFilter, metric_filter_key};
use crate::names;
use crate::service::{
    LogsService, invalid, not_found, now_ms, set_next_token, store_error, token_start,
};

/// CloudWatch's limit of metric filters per log group.
const MAX_PER_GROUP: usize = 100;

fn filter_name(name: &str) -> Result<&str, AwsError> {
    if (1..=512).contains(&name.len()) && !name.contains([':', '*']) {
        Ok(name)
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'filterName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]* and have length between 1 and 512"
        )))
    }
}

fn pattern(src: &str) -> Result<Pattern, AwsError> {
    if src.len() > 1024 {
        return Err(invalid(
            "1 validation error detected: Value at 'filterPattern' failed to satisfy constraint: Member must have length less than or equal to 1024",
        ));
    }
    Pattern::parse(src)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Transformation {
    metric_name: String,
    metric_namespace: String,
    metric_value: String,
    default_value: Option<f64>,
    #[serde(default)]
    dimensions: std::collections::BTreeMap<String, String>,
    unit: Option<String>,
}

const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

impl Transformation {
    fn check(self) -> Result<Value, AwsError> {
        for (field, v) in [
            ("metricName", &self.metric_name),
            ("metricNamespace", &self.metric_namespace),
        ] {
            if v.len() > 255 || v.contains([':', '*', '$']) {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{v}' at 'metricTransformations.1.member.{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*$]* and have length less than or equal to 255"
                )));
            }
        }
        if self.metric_value.is_empty() || self.metric_value.len() > 100 {
            return Err(invalid(
                "1 validation error detected: Value at 'metricTransformations.1.member.metricValue' failed to satisfy constraint: Member must have length less than or equal to 100",
            ));
        }
        if self.dimensions.len() > 3 {
            return Err(invalid(
                "Invalid metric transformation: a metric filter can have at most 3 dimensions",
            ));
        }
        if !self.dimensions.is_empty() && self.default_value.is_some() {
            return Err(invalid(
                "Invalid metric transformation: a defaultValue cannot be set together with dimensions",
            ));
        }
        let mut v = json!({
            "metricName": self.metric_name,
            "metricNamespace": self.metric_namespace,
            "metricValue": self.metric_value,
        });
        if let Some(d) = self.default_value {
            v["defaultValue"] = json!(d);
        }
        if !self.dimensions.is_empty() {
            v["dimensions"] = json!(self.dimensions);
        }
        if let Some(u) = self.unit {
            if !UNITS.contains(&u.as_str()) {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{u}' at 'metricTransformations.1.member.unit' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                    UNITS.join(", ")
                )));
            }
            v["unit"] = json!(u);
        }
        Ok(v)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutReq {
    log_group_name: String,
    filter_name: String,
    filter_pattern: String,
    metric_transformations: Vec<Transformation>,
}

pub(crate) fn put(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: PutReq = parse_request(body)?;
    let group = names::group(&req.log_group_name)?;
    let name = filter_name(&req.filter_name)?;
    pattern(&req.filter_pattern)?;
    if req.metric_transformations.len() != 1 {
        return Err(invalid(
            "1 validation error detected: Value at 'metricTransformations' failed to satisfy constraint: Member must have length less than or equal to 1",
        ));
    }
    let transformations = req
        .metric_transformations
        .into_iter()
        .map(Transformation::check)
        .collect::<Result<Vec<_>, _>>()?;
    let rec = MetricFilter {
        filter_name: name.to_owned(),
        filter_pattern: req.filter_pattern.clone(),
        metric_transformations: transformations,
        creation_time: now_ms(),
        log_group_name: group.to_owned(),
    };
    svc.store.write(|w| {
        if w.get::<Group>(GROUPS, group)
            .map_err(store_error)?
            .is_none()
        {
            return Err(not_found("log group"));
        }
        let key = metric_filter_key(group, name);
        let existing = w
            .scan::<MetricFilter>(METRIC_FILTERS, &format!("{group}:"))
            .map_err(store_error)?;
        let replaces = existing.iter().any(|(k, _)| *k == key);
        if !replaces && existing.len() >= MAX_PER_GROUP {
            return Err(AwsError::client(
                "LimitExceededException",
                "Resource limit exceeded.",
            ));
        }
        w.put(METRIC_FILTERS, &key, &rec).map_err(store_error)
    })?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeReq {
    log_group_name: Option<String>,
    filter_name_prefix: Option<String>,
    metric_name: Option<String>,
    metric_namespace: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

pub(crate) fn describe(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: DescribeReq = parse_request(body)?;
    let limit = page_limit(req.limit)?;
    if req.filter_name_prefix.is_some() && req.log_group_name.is_none() {
        return Err(invalid(
            "Log group name is required when filter name prefix is specified.",
        ));
    }
    if req.metric_name.is_some() != req.metric_namespace.is_some() {
        return Err(invalid(
            "Metric name and metric namespace must be specified together.",
        ));
    }
    let prefix = match &req.log_group_name {
        Some(g) => {
            let g = names::group(g)?;
            if svc
                .store
                .get::<Group>(GROUPS, g)
                .map_err(store_error)?
                .is_none()
            {
                return Err(not_found("log group"));
            }
            format!("{g}:{}", req.filter_name_prefix.as_deref().unwrap_or(""))
        }
        None => String::new(),
    };
    let filters: Vec<MetricFilter> = svc
        .store
        .scan::<MetricFilter>(METRIC_FILTERS, &prefix)
        .map_err(store_error)?
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| match (&req.metric_name, &req.metric_namespace) {
            (Some(n), Some(ns)) => f.metric_transformations.iter().any(|t| {
                t["metricName"].as_str() == Some(n) && t["metricNamespace"].as_str() == Some(ns)
            }),
            _ => true,
        })
        .collect();
    let start = token_start(req.next_token.as_deref(), 'm')?;
    let page: Vec<Value> = filters
        .iter()
        .skip(start)
        .take(limit)
        .map(|f| json!(f))
        .collect();
    let mut out = json!({ "metricFilters": page });
    set_next_token(&mut out, 'm', start, limit, filters.len());
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteReq {
    log_group_name: String,
    filter_name: String,
}

pub(crate) fn delete(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: DeleteReq = parse_request(body)?;
    let group = names::group(&req.log_group_name)?;
    let name = filter_name(&req.filter_name)?;
    svc.store.write(|w| {
        if w.get::<Group>(GROUPS, group)
            .map_err(store_error)?
            .is_none()
        {
            return Err(not_found("log group"));
        }
        if !w
            .delete(METRIC_FILTERS, &metric_filter_key(group, name))
            .map_err(store_error)?
        {
            return Err(not_found("metric filter"));
        }
        Ok(json!({}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestReq {
    filter_pattern: String,
    log_event_messages: Vec<String>,
}

pub(crate) fn test(_svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: TestReq = parse_request(body)?;
    if req.log_event_messages.is_empty() || req.log_event_messages.len() > 50 {
        return Err(invalid(
            "1 validation error detected: Value at 'logEventMessages' failed to satisfy constraint: Member must have length between 1 and 50",
        ));
    }
    let p = pattern(&req.filter_pattern)?;
    let matches: Vec<Value> = req
        .log_event_messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            p.extract(m).map(|values| {
                json!({"eventNumber": i + 1, "eventMessage": m, "extractedValues": values})
            })
        })
        .collect();
    Ok(json!({ "matches": matches }))
}
