//! TagResource, UntagResource, ListTagsForResource, and the tag rules
//! shared with the create operations.

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};

use crate::arn::{self, Resource};
use crate::db;
use crate::error::EcsError;
use crate::model::cluster::ClusterRecord;
use crate::model::task::TaskRecord;
use crate::model::task_definition::TaskDefRecord;
use crate::service::Core;
use crate::wire::Tag;

/// At most this many tags per resource.
pub const MAX_TAGS: usize = 50;

/// Checks tags as ECS does: key 1..=128, value <= 256, `aws:` reserved.
pub fn check(tags: &[Tag]) -> Result<(), EcsError> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(EcsError::InvalidParameter(format!(
                "Tag key '{}' is invalid: keys must be 1 to 128 characters long.",
                t.key
            )));
        }
        if t.value.chars().count() > 256 {
            return Err(EcsError::InvalidParameter(format!(
                "The value of tag '{}' is longer than 256 characters.",
                t.key
            )));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(EcsError::InvalidParameter(format!(
                "Tag key '{}' is invalid: the aws: prefix is reserved for AWS use.",
                t.key
            )));
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(EcsError::InvalidParameter(format!(
            "Too many tags: a resource may have at most {MAX_TAGS} tags."
        )));
    }
    Ok(())
}

/// `existing` with `new` merged in (same key: new value wins).
pub fn merge(existing: &[Tag], new: &[Tag]) -> Vec<Tag> {
    let mut out = existing.to_vec();
    for t in new {
        match out.iter_mut().find(|o| o.key == t.key) {
            Some(o) => o.value = t.value.clone(),
            None => out.push(t.clone()),
        }
    }
    out
}

/// `TagResourceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagResourceRequest {
    resource_arn: String,
    tags: Vec<Tag>,
}

/// `UntagResourceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UntagResourceRequest {
    resource_arn: String,
    tag_keys: Vec<String>,
}

/// `ListTagsForResourceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTagsForResourceRequest {
    resource_arn: String,
}

/// `TagResourceResponse` / `UntagResourceResponse`: empty.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// `ListTagsForResourceResponse`.
#[derive(Debug, Serialize)]
pub struct ListTagsForResourceResponse {
    tags: Vec<Tag>,
}

fn not_found(arn: &str) -> EcsError {
    EcsError::ResourceNotFound(format!("The specified resource was not found: {arn}"))
}

/// Runs `f` on the tags of the resource `arn` names, in one transaction.
fn with_tags<R>(
    core: &Core,
    resource_arn: &str,
    f: impl FnOnce(&mut Vec<Tag>) -> Result<R, EcsError>,
) -> Result<R, EcsError> {
    let res = arn::parse(resource_arn).ok_or_else(|| {
        EcsError::InvalidParameter(format!(
            "'{resource_arn}' is not the ARN of an ECS cluster, task definition or task."
        ))
    })?;
    let task_key = match &res {
        Resource::Task { cluster, id } => Some(db::task_key(cluster, id)),
        _ => None,
    };
    let r = core.store.write(|w| -> Result<R, EcsError> {
        match res {
            Resource::Cluster(name) => {
                let mut c: ClusterRecord = w
                    .get(db::CLUSTERS, &name)?
                    .filter(|c: &ClusterRecord| c.active)
                    .ok_or_else(EcsError::cluster_not_found)?;
                let r = f(&mut c.tags)?;
                w.put(db::CLUSTERS, &name, &c)?;
                Ok(r)
            }
            Resource::TaskDefinition { family, revision } => {
                let key = db::taskdef_key(&family, revision);
                let mut t: TaskDefRecord = w
                    .get(db::TASKDEFS, &key)?
                    .ok_or_else(|| not_found(resource_arn))?;
                let r = f(&mut t.tags)?;
                w.put(db::TASKDEFS, &key, &t)?;
                Ok(r)
            }
            Resource::Task { cluster, id } => {
                let key = db::task_key(&cluster, &id);
                let mut t: TaskRecord = w
                    .get(db::TASKS, &key)?
                    .ok_or_else(|| not_found(resource_arn))?;
                let r = f(&mut t.tags)?;
                t.version += 1;
                w.put(db::TASKS, &key, &t)?;
                Ok(r)
            }
        }
    })?;
    if let Some(k) = task_key {
        core.tasks.refresh(&core.store, &k)?;
    }
    Ok(r)
}

/// TagResource.
pub fn tag(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: TagResourceRequest,
) -> Result<Empty, EcsError> {
    check(&req.tags)?;
    with_tags(core, &req.resource_arn, |tags| {
        let merged = merge(tags, &req.tags);
        check(&merged)?;
        *tags = merged;
        Ok(Empty {})
    })
}

/// UntagResource.
pub fn untag(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: UntagResourceRequest,
) -> Result<Empty, EcsError> {
    with_tags(core, &req.resource_arn, |tags| {
        tags.retain(|t| !req.tag_keys.contains(&t.key));
        Ok(Empty {})
    })
}

/// ListTagsForResource.
pub fn list(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: ListTagsForResourceRequest,
) -> Result<ListTagsForResourceResponse, EcsError> {
    let res = arn::parse(&req.resource_arn).ok_or_else(|| {
        EcsError::InvalidParameter(format!(
            "'{}' is not the ARN of an ECS cluster, task definition or task.",
            req.resource_arn
        ))
    })?;
    let tags = match res {
        Resource::Cluster(name) => {
            core.store
                .get::<ClusterRecord>(db::CLUSTERS, &name)?
                .filter(|c| c.active)
                .ok_or_else(EcsError::cluster_not_found)?
                .tags
        }
        Resource::TaskDefinition { family, revision } => {
            core.store
                .get::<TaskDefRecord>(db::TASKDEFS, &db::taskdef_key(&family, revision))?
                .ok_or_else(|| not_found(&req.resource_arn))?
                .tags
        }
        Resource::Task { cluster, id } => {
            core.store
                .get::<TaskRecord>(db::TASKS, &db::task_key(&cluster, &id))?
                .ok_or_else(|| not_found(&req.resource_arn))?
                .tags
        }
    };
    Ok(ListTagsForResourceResponse { tags })
}
