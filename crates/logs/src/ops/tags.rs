//! TagResource, UntagResource, ListTagsForResource (log group ARNs) and the
//! older TagLogGroup, UntagLogGroup, ListTagsLogGroup (log group names).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use ferry_proto::{AwsError, parse_request};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{GROUPS, Group};
use crate::names;
use crate::service::{LogsService, invalid, not_found, store_error};

/// CloudWatch's limit of tags per log group.
const MAX_TAGS: usize = 50;

// The model's patterns for keys (1..=128) and values (0..=256).
static TAG_KEY: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$").ok());
static TAG_VALUE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").ok());

fn matches(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

/// Validates tags as the model constrains them.
pub(crate) fn validate(tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
    if tags.is_empty() || tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length between 1 and {MAX_TAGS}"
        )));
    }
    for (k, v) in tags {
        // Counted repetition of Unicode classes outgrows the regex size
        // limit: lengths are checked apart.
        if k.chars().count() > 128 || !matches(&TAG_KEY, k) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{k}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]+)$]"
            )));
        }
        if v.chars().count() > 256 || !matches(&TAG_VALUE, v) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{v}' at 'tags' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 256, Member must satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$]"
            )));
        }
    }
    Ok(())
}

/// The group a resource ARN names. Only log groups are taggable here;
/// the `:*` form DescribeLogGroups shows as `arn` is refused, as AWS does.
fn group_of_arn(svc: &LogsService, arn: &str) -> Result<String, AwsError> {
    let bad = || AwsError::client("ValidationException", "Invalid resourceArn");
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let [p0, p1, p2, region, account, kind, name] = parts.as_slice() else {
        return Err(bad());
    };
    if *p0 != "arn" || !p1.starts_with("aws") || *p2 != "logs" || name.ends_with(":*") {
        return Err(bad());
    }
    if *kind != "log-group" {
        return Err(bad());
    }
    if *region != svc.region || *account != svc.account {
        return Err(not_found("resource"));
    }
    names::group(name).map_err(|_| bad())?;
    Ok((*name).to_owned())
}

fn update(
    svc: &LogsService,
    group: &str,
    too_many_code: &str,
    f: impl FnOnce(&mut BTreeMap<String, String>),
) -> Result<(), AwsError> {
    svc.store.write(|w| {
        let mut g: Group = w
            .get(GROUPS, group)
            .map_err(store_error)?
            .ok_or_else(|| not_found("log group"))?;
        f(&mut g.tags);
        if g.tags.len() > MAX_TAGS {
            return Err(AwsError::client(
                too_many_code,
                format!("A resource can have no more than {MAX_TAGS} tags."),
            ));
        }
        w.put(GROUPS, group, &g).map_err(store_error)
    })
}

fn tags_of(svc: &LogsService, group: &str) -> Result<Value, AwsError> {
    let g: Group = svc
        .store
        .get(GROUPS, group)
        .map_err(store_error)?
        .ok_or_else(|| not_found("log group"))?;
    Ok(json!({ "tags": g.tags }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceReq {
    resource_arn: String,
    tags: BTreeMap<String, String>,
}

pub(crate) fn tag_resource(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: TagResourceReq = parse_request(body)?;
    let group = group_of_arn(svc, &req.resource_arn)?;
    validate(&req.tags)?;
    update(svc, &group, "TooManyTagsException", |t| t.extend(req.tags))?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagResourceReq {
    resource_arn: String,
    tag_keys: Vec<String>,
}

pub(crate) fn untag_resource(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: UntagResourceReq = parse_request(body)?;
    let group = group_of_arn(svc, &req.resource_arn)?;
    if req.tag_keys.len() > MAX_TAGS {
        return Err(invalid(format!(
            "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: Member must have length less than or equal to {MAX_TAGS}"
        )));
    }
    update(svc, &group, "TooManyTagsException", |t| {
        for k in &req.tag_keys {
            t.remove(k);
        }
    })?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArnReq {
    resource_arn: String,
}

pub(crate) fn list_for_resource(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: ArnReq = parse_request(body)?;
    let group = group_of_arn(svc, &req.resource_arn)?;
    tags_of(svc, &group)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagGroupReq {
    log_group_name: String,
    tags: BTreeMap<String, String>,
}

pub(crate) fn tag_log_group(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: TagGroupReq = parse_request(body)?;
    let group = names::group(&req.log_group_name)?;
    validate(&req.tags)?;
    // The older API has no TooManyTagsException.
    update(svc, group, "InvalidParameterException", |t| {
        t.extend(req.tags)
    })?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagGroupReq {
    log_group_name: String,
    tags: Vec<String>,
}

pub(crate) fn untag_log_group(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: UntagGroupReq = parse_request(body)?;
    let group = names::group(&req.log_group_name)?;
    update(svc, group, "InvalidParameterException", |t| {
        for k in &req.tags {
            t.remove(k);
        }
    })?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameReq {
    log_group_name: String,
}

pub(crate) fn list_log_group(svc: &LogsService, body: &[u8]) -> Result<Value, AwsError> {
    let req: NameReq = parse_request(body)?;
    let group = names::group(&req.log_group_name)?;
    tags_of(svc, group)
}
