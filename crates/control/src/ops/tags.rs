//! TagResource, UntagResource, ListTagsForResource. The tag rules live
//! in [`crate::validate`].

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
use crate::validate::{check_tags, merge_tags};
use crate::wire::Tag;

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
    check_tags(&req.tags)?;
    with_tags(core, &req.resource_arn, |tags| {
        let merged = merge_tags(tags, &req.tags);
        check_tags(&merged)?;
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
