//! GetParametersByPath, DescribeParameters, GetParameterHistory, and the
//! tag operations (AddTagsToResource, RemoveTagsFromResource,
//! ListTagsForResource for `ResourceType: Parameter`).

use ferry_proto::{AwsError, RequestContext, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors;
use super::model::{
    HISTORY, PARAMETERS, ParameterRecord, ParameterType, Version, check_path, history_prefix, under,
};
use super::{ParameterValue, Ssm, parameter_json};
use crate::util::{Tag, check_range, check_tags, merge_tags, page, token};

/// A `ParameterStringFilter`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StringFilter {
    key: String,
    option: Option<String>,
    values: Option<Vec<String>>,
}

/// A `ParametersFilter` (DescribeParameters' older form).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OldFilter {
    key: String,
    values: Vec<String>,
}

/// Checks a filter's key and option against what the operation allows.
fn check_filter(f: &StringFilter, keys: &[&str]) -> Result<(), AwsError> {
    let key = if f.key.starts_with("tag:") && f.key.len() > 4 {
        "tag:"
    } else {
        f.key.as_str()
    };
    if !keys.contains(&key) {
        return Err(errors::filter_key(&f.key, &keys.join(", ")));
    }
    let options: &[&str] = match key {
        "Name" => &["Equals", "BeginsWith", "Contains"],
        "Path" => &["Recursive", "OneLevel"],
        _ => &["Equals"],
    };
    if let Some(o) = &f.option
        && !options.contains(&o.as_str())
    {
        return Err(errors::filter_option(&f.key, o, &options.join(", ")));
    }
    if let Some(v) = &f.values
        && (v.is_empty() || v.len() > 50)
    {
        return Err(errors::filter_value(
            "A filter must have between 1 and 50 values.",
        ));
    }
    if key != "tag:" && f.values.is_none() {
        return Err(errors::filter_value(format!(
            "The filter {} requires a value.",
            f.key
        )));
    }
    Ok(())
}

/// Whether the parameter passes the filter.
fn passes(p: &ParameterRecord, f: &StringFilter) -> bool {
    let values = f.values.as_deref().unwrap_or(&[]);
    let any = |s: &str| values.iter().any(|v| v == s);
    let c = &p.current;
    if let Some(tag) = f.key.strip_prefix("tag:") {
        return p
            .tags
            .iter()
            .any(|t| t.key == tag && (values.is_empty() || any(&t.value)));
    }
    match f.key.as_str() {
        "Name" => {
            let opt = f.option.as_deref().unwrap_or("Equals");
            values.iter().any(|v| match opt {
                "BeginsWith" => p.name.starts_with(v.as_str()),
                "Contains" => p.name.contains(v.as_str()),
                _ => p.name == *v,
            })
        }
        "Path" => {
            let recursive = f.option.as_deref() == Some("Recursive");
            values.iter().any(|v| {
                let path = if v.len() > 1 {
                    v.trim_end_matches('/')
                } else {
                    v
                };
                under(&p.name, path, recursive)
            })
        }
        "Type" => any(c.kind.as_str()),
        "KeyId" => c.key_id.as_deref().is_some_and(any),
        "Tier" => any(&c.tier),
        "DataType" => any(&c.data_type),
        // ferry has no version labels.
        _ => false,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ByPathReq {
    path: String,
    recursive: Option<bool>,
    #[serde(default)]
    parameter_filters: Vec<StringFilter>,
    with_decryption: Option<bool>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(crate) fn by_path(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: ByPathReq = parse_request(body)?;
    let path = check_path(&r.path)?;
    if let Some(n) = r.max_results {
        check_range("maxResults", n, 1, 10)?;
    }
    for f in &r.parameter_filters {
        check_filter(f, &["Type", "KeyId", "Label", "tag:"])?;
    }
    // AWS authorizes the path, not each parameter under it.
    ssm.authorize(ctx, "ssm:GetParametersByPath", &ssm.arn(&path), &[])?;
    let recursive = r.recursive.unwrap_or(false);
    let scan_prefix = if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    };
    let all: Vec<(String, ParameterRecord)> = ssm
        .store
        .scan(PARAMETERS, &scan_prefix)
        .map_err(errors::store)?;
    let matching: Vec<ParameterRecord> = all
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| under(&p.name, &path, recursive))
        .filter(|p| r.parameter_filters.iter().all(|f| passes(p, f)))
        .collect();
    let start = token::parse(r.next_token.as_deref(), errors::bad_token)?;
    let limit = r.max_results.map_or(10, |n| n as usize);
    let (items, next) = page(matching, start, limit);
    let decrypt = r.with_decryption.unwrap_or(false);
    let mut out = Vec::with_capacity(items.len());
    for p in items {
        let value = ssm.value(ctx, &p.arn, &p.current, decrypt)?;
        let pv = ParameterValue {
            arn: p.arn.clone(),
            name: p.name.clone(),
            version: p.current.version,
            kind: p.current.kind,
            value,
        };
        out.push(parameter_json(&pv, &p.current, None));
    }
    let mut res = json!({"Parameters": out});
    if let Some(t) = next {
        res["NextToken"] = json!(t);
    }
    Ok(res)
}

/// `ParameterMetadata` (DescribeParameters) of a parameter.
fn metadata(p: &ParameterRecord) -> Value {
    let c = &p.current;
    let mut out = json!({
        "Name": p.name,
        "ARN": p.arn,
        "Type": c.kind.as_str(),
        "LastModifiedDate": c.last_modified,
        "LastModifiedUser": c.last_modified_user,
        "Version": c.version,
        "Tier": c.tier,
        "Policies": [],
        "DataType": c.data_type,
    });
    common(&mut out, c);
    out
}

/// The optional members metadata and history entries share.
fn common(out: &mut Value, v: &Version) {
    if let Some(k) = &v.key_id {
        out["KeyId"] = json!(k);
    }
    if let Some(d) = &v.description {
        out["Description"] = json!(d);
    }
    if let Some(a) = &v.allowed_pattern {
        out["AllowedPattern"] = json!(a);
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeReq {
    filters: Option<Vec<OldFilter>>,
    parameter_filters: Option<Vec<StringFilter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
    shared: Option<bool>,
}

pub(crate) fn describe(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: DescribeReq = parse_request(body)?;
    if r.filters.is_some() && r.parameter_filters.is_some() {
        return Err(AwsError::validation(
            "You can use either Filters or ParameterFilters in a single request.",
        ));
    }
    if let Some(n) = r.max_results {
        check_range("maxResults", n, 1, 50)?;
    }
    // The older form: Name matches by prefix; Type and KeyId by equality.
    let filters: Vec<StringFilter> = match (r.filters, r.parameter_filters) {
        (Some(old), _) => old
            .into_iter()
            .map(|f| {
                if !["Name", "Type", "KeyId"].contains(&f.key.as_str()) {
                    return Err(errors::filter_key(&f.key, "Name, Type, KeyId"));
                }
                Ok(StringFilter {
                    option: (f.key == "Name").then(|| "BeginsWith".to_owned()),
                    key: f.key,
                    values: Some(f.values),
                })
            })
            .collect::<Result<_, _>>()?,
        (None, Some(new)) => new,
        (None, None) => Vec::new(),
    };
    for f in &filters {
        check_filter(
            f,
            &[
                "Name", "Type", "KeyId", "Path", "Tier", "DataType", "Label", "tag:",
            ],
        )?;
        if f.key == "Type"
            && f.values
                .iter()
                .flatten()
                .any(|v| ParameterType::parse(v).is_none())
        {
            return Err(errors::filter_value(
                "The Type filter's values must be String, StringList or SecureString.",
            ));
        }
    }
    ssm.authorize(ctx, "ssm:DescribeParameters", "*", &[])?;
    if r.shared.unwrap_or(false) {
        // Nothing is shared with this account from another one.
        return Ok(json!({"Parameters": []}));
    }
    let all: Vec<(String, ParameterRecord)> =
        ssm.store.scan(PARAMETERS, "").map_err(errors::store)?;
    let matching: Vec<ParameterRecord> = all
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| filters.iter().all(|f| passes(p, f)))
        .collect();
    let start = token::parse(r.next_token.as_deref(), errors::bad_token)?;
    let limit = r.max_results.map_or(50, |n| n as usize);
    let (items, next) = page(matching, start, limit);
    let mut out = json!({"Parameters": items.iter().map(metadata).collect::<Vec<_>>()});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HistoryReq {
    name: String,
    with_decryption: Option<bool>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(crate) fn history(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: HistoryReq = parse_request(body)?;
    if let Some(n) = r.max_results {
        check_range("maxResults", n, 1, 50)?;
    }
    let reference = ssm.reference(&r.name);
    let shown = reference.names.first().cloned().unwrap_or_default();
    let Some(rec) = ssm.find(&reference)? else {
        ssm.authorize(ctx, "ssm:GetParameterHistory", &ssm.arn(&shown), &[])?;
        return Err(errors::not_found(&shown));
    };
    ssm.authorize(ctx, "ssm:GetParameterHistory", &rec.arn, &rec.tags)?;
    let versions: Vec<(String, Version)> = ssm
        .store
        .scan(HISTORY, &history_prefix(&rec.name))
        .map_err(errors::store)?;
    let start = token::parse(r.next_token.as_deref(), errors::bad_token)?;
    let limit = r.max_results.map_or(50, |n| n as usize);
    let (items, next) = page(versions, start, limit);
    let decrypt = r.with_decryption.unwrap_or(false);
    let mut out = Vec::with_capacity(items.len());
    for (_, v) in items {
        let value = ssm.value(ctx, &rec.arn, &v, decrypt)?;
        let mut e = json!({
            "Name": rec.name,
            "Type": v.kind.as_str(),
            "LastModifiedDate": v.last_modified,
            "LastModifiedUser": v.last_modified_user,
            "Value": value.as_str(),
            "Version": v.version,
            "Labels": [],
            "Tier": v.tier,
            "Policies": [],
            "DataType": v.data_type,
        });
        common(&mut e, &v);
        out.push(e);
    }
    let mut res = json!({"Parameters": out});
    if let Some(t) = next {
        res["NextToken"] = json!(t);
    }
    Ok(res)
}

/// The parameter a tag operation names (`ResourceType: Parameter`).
fn tagged(
    ssm: &Ssm,
    ctx: &RequestContext,
    action: &str,
    kind: &str,
    id: &str,
) -> Result<ParameterRecord, AwsError> {
    if kind != "Parameter" {
        return Err(AwsError::client(
            "InvalidResourceType",
            format!("The resource type {kind} is not valid: ferry's SSM has only parameters."),
        ));
    }
    let Some(rec) = ssm.find(&ssm.reference(id))? else {
        ssm.authorize(ctx, action, &ssm.arn(id), &[])?;
        return Err(AwsError::client(
            "InvalidResourceId",
            "The resource ID is not valid. Verify that you entered the correct ID and try again.",
        ));
    };
    ssm.authorize(ctx, action, &rec.arn, &rec.tags)?;
    Ok(rec)
}

/// Changes the tags of `rec` in one transaction.
fn retag(ssm: &Ssm, rec: &ParameterRecord, f: impl FnOnce(&mut Vec<Tag>)) -> Result<(), AwsError> {
    ssm.store.write(|w| {
        let mut cur: ParameterRecord = w
            .get(PARAMETERS, &rec.name)
            .map_err(errors::store)?
            .ok_or_else(|| errors::not_found(&rec.name))?;
        f(&mut cur.tags);
        check_tags(&cur.tags, "TooManyTagsError")?;
        w.put(PARAMETERS, &cur.name, &cur).map_err(errors::store)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddTagsReq {
    resource_type: String,
    resource_id: String,
    tags: Vec<Tag>,
}

pub(crate) fn add_tags(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: AddTagsReq = parse_request(body)?;
    check_tags(&r.tags, "ValidationException")?;
    let rec = tagged(
        ssm,
        ctx,
        "ssm:AddTagsToResource",
        &r.resource_type,
        &r.resource_id,
    )?;
    retag(ssm, &rec, |tags| merge_tags(tags, r.tags))?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoveTagsReq {
    resource_type: String,
    resource_id: String,
    tag_keys: Vec<String>,
}

pub(crate) fn remove_tags(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: RemoveTagsReq = parse_request(body)?;
    let rec = tagged(
        ssm,
        ctx,
        "ssm:RemoveTagsFromResource",
        &r.resource_type,
        &r.resource_id,
    )?;
    retag(ssm, &rec, |tags| {
        tags.retain(|t| !r.tag_keys.contains(&t.key))
    })?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsReq {
    resource_type: String,
    resource_id: String,
}

pub(crate) fn list_tags(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: ListTagsReq = parse_request(body)?;
    let rec = tagged(
        ssm,
        ctx,
        "ssm:ListTagsForResource",
        &r.resource_type,
        &r.resource_id,
    )?;
    Ok(json!({"TagList": rec.tags}))
}
