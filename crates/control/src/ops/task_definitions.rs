//! RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition.
//!
//! The registered document is kept as the client sent it (minus `tags`)
//! and echoed back with ECS's defaults and metadata added, so fields ferry
//! does not interpret round-trip too.

use std::sync::Arc;

use ferry_proto::RequestContext;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::clock;
use crate::db;
use crate::error::EcsError;
use crate::model::service::ServiceRecord;
use crate::model::task::{TaskRecord, TaskStatus};
use crate::model::task_definition::{FamilyRecord, TaskDefRecord};
use crate::paging;
use crate::service::Core;
use crate::validate;
use crate::wire::task_definition::TaskDefinitionInput;
use crate::wire::{Failure, Tag};

/// `DescribeTaskDefinitionRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeTaskDefinitionRequest {
    task_definition: String,
    #[serde(default)]
    include: Vec<String>,
}

/// `DeleteTaskDefinitionsRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteTaskDefinitionsRequest {
    task_definitions: Vec<String>,
}

/// `DeleteTaskDefinitionsResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteTaskDefinitionsResponse {
    task_definitions: Vec<Value>,
    failures: Vec<Failure>,
}

/// `DeregisterTaskDefinitionRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeregisterTaskDefinitionRequest {
    task_definition: String,
}

/// `ListTaskDefinitionsRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionsRequest {
    #[serde(default)]
    family_prefix: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
}

/// `ListTaskDefinitionFamiliesRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionFamiliesRequest {
    #[serde(default)]
    family_prefix: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
}

/// `RegisterTaskDefinitionResponse` / `DescribeTaskDefinitionResponse` /
/// `DeregisterTaskDefinitionResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionResponse {
    task_definition: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<Tag>>,
}

/// `ListTaskDefinitionsResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionsResponse {
    task_definition_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// `ListTaskDefinitionFamiliesResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionFamiliesResponse {
    families: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// The `TaskDefinition` shape: the document plus ECS's defaults and
/// metadata.
pub fn render(td: &TaskDefRecord) -> Value {
    let mut d = td.document.clone();
    if let Some(Value::Array(cds)) = d.get_mut("containerDefinitions") {
        for cd in cds.iter_mut().filter_map(Value::as_object_mut) {
            for (k, v) in [
                ("cpu", json!(0)),
                ("essential", json!(true)),
                ("portMappings", json!([])),
                ("environment", json!([])),
                ("mountPoints", json!([])),
                ("volumesFrom", json!([])),
                ("systemControls", json!([])),
            ] {
                cd.entry(k).or_insert(v);
            }
            // ECS echoes a health check with its defaults filled in
            // (startPeriod stays absent when not given).
            if let Some(Value::Object(hc)) = cd.get_mut("healthCheck") {
                hc.entry("interval")
                    .or_insert(json!(validate::HEALTH_INTERVAL_DEFAULT));
                hc.entry("timeout")
                    .or_insert(json!(validate::HEALTH_TIMEOUT_DEFAULT));
                hc.entry("retries")
                    .or_insert(json!(validate::HEALTH_RETRIES_DEFAULT));
            }
            if let Some(Value::Array(pms)) = cd.get_mut("portMappings") {
                for pm in pms.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(cp) = pm.get("containerPort").cloned() {
                        pm.entry("hostPort").or_insert(cp);
                    }
                    pm.entry("protocol").or_insert(json!("tcp"));
                }
            }
        }
    }
    d.insert("cpu".into(), json!(td.spec.cpu_units.to_string()));
    d.insert("memory".into(), json!(td.spec.memory_mib.to_string()));
    d.entry("volumes").or_insert(json!([]));
    d.entry("placementConstraints").or_insert(json!([]));
    d.insert("taskDefinitionArn".into(), json!(td.arn));
    d.insert("revision".into(), json!(td.revision));
    d.insert("status".into(), json!(td.status()));
    d.insert("compatibilities".into(), json!(["EC2", "FARGATE"]));
    d.insert("requiresAttributes".into(), json!(requires_attributes(td)));
    d.insert("registeredAt".into(), json!(td.registered_at));
    d.insert("registeredBy".into(), json!(td.registered_by));
    if let Some(t) = td.deregistered_at {
        d.insert("deregisteredAt".into(), json!(t));
    }
    Value::Object(d)
}

fn requires_attributes(td: &TaskDefRecord) -> Vec<Value> {
    let mut names = vec![
        "com.amazonaws.ecs.capability.docker-remote-api.1.18",
        "ecs.capability.task-eni",
    ];
    if td.spec.containers.iter().any(|c| c.run.awslogs.is_some()) {
        names.push("com.amazonaws.ecs.capability.logging-driver.awslogs");
        names.push("com.amazonaws.ecs.capability.docker-remote-api.1.19");
        if td.document.contains_key("executionRoleArn") {
            names.push("ecs.capability.execution-role-awslogs");
        }
    }
    if td
        .spec
        .containers
        .iter()
        .any(|c| c.run.health_check.is_some())
    {
        names.push("com.amazonaws.ecs.capability.docker-remote-api.1.24");
        names.push("ecs.capability.container-health-check");
    }
    if td.spec.ephemeral_storage_gib.is_some() {
        names.push("ecs.capability.ephemeral-storage");
    }
    if td.task_role().is_some() {
        names.push("com.amazonaws.ecs.capability.task-iam-role");
    }
    let refs = td
        .spec
        .containers
        .iter()
        .flat_map(|c| &c.secrets)
        .filter_map(|s| crate::identity::SecretRef::parse(&s.name, &s.value_from).ok());
    let (mut asm, mut ssm) = (false, false);
    for r in refs {
        match r {
            crate::identity::SecretRef::SecretsManager { .. } => asm = true,
            crate::identity::SecretRef::Parameter { .. } => ssm = true,
        }
    }
    if asm {
        names.push("ecs.capability.secrets.asm.environment-variables");
    }
    if ssm {
        names.push("ecs.capability.secrets.ssm.environment-variables");
    }
    names.into_iter().map(|n| json!({ "name": n })).collect()
}

/// RegisterTaskDefinition: the body is taken whole so every field is kept.
pub fn register(
    core: &Arc<Core>,
    ctx: &RequestContext,
    mut body: Map<String, Value>,
) -> Result<TaskDefinitionResponse, EcsError> {
    let input: TaskDefinitionInput = serde_json::from_value(Value::Object(body.clone()))
        .map_err(|e| EcsError::Serialization(format!("request body: {e}")))?;
    let spec = validate::task_definition(&input)?;
    validate::check_tags(&input.tags)?;
    body.remove("tags");
    let family = input.family.clone();
    let now = clock::now();
    let registered_by = ctx.caller.arn();
    let td = core.store.write(|w| {
        let mut fam: FamilyRecord = w.get(db::FAMILIES, &family)?.unwrap_or_default();
        fam.last_revision += 1;
        fam.active_revisions += 1;
        let td = TaskDefRecord {
            arn: core.scope.task_definition(&family, fam.last_revision),
            family: family.clone(),
            revision: fam.last_revision,
            active: true,
            document: body,
            spec,
            tags: input.tags.clone(),
            registered_at: now,
            deregistered_at: None,
            registered_by,
            deleting: false,
        };
        w.put(db::TASKDEFS, &db::taskdef_key(&family, td.revision), &td)?;
        w.put(db::FAMILIES, &family, &fam)?;
        Ok::<_, EcsError>(td)
    })?;
    Ok(TaskDefinitionResponse {
        task_definition: render(&td),
        tags: (!td.tags.is_empty()).then(|| td.tags.clone()),
    })
}

fn unable() -> EcsError {
    EcsError::Client("Unable to describe task definition.".into())
}

/// DescribeTaskDefinition.
pub fn describe(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: DescribeTaskDefinitionRequest,
) -> Result<TaskDefinitionResponse, EcsError> {
    let with_tags = match req.include.as_slice() {
        [] => false,
        [t] if t == "TAGS" => true,
        _ => {
            return Err(EcsError::InvalidParameter(
                "include may only contain TAGS.".into(),
            ));
        }
    };
    let td = core
        .find_task_definition(&req.task_definition)?
        .ok_or_else(unable)?;
    Ok(TaskDefinitionResponse {
        task_definition: render(&td),
        tags: with_tags.then(|| td.tags.clone()),
    })
}

/// DeregisterTaskDefinition: the revision becomes INACTIVE (still
/// describable; no new tasks). A revision must be named.
pub fn deregister(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: DeregisterTaskDefinitionRequest,
) -> Result<TaskDefinitionResponse, EcsError> {
    let id = &req.task_definition;
    let names_revision = id.starts_with("arn:")
        || id
            .rsplit_once(':')
            .is_some_and(|(_, r)| r.parse::<u32>().is_ok());
    if !names_revision {
        return Err(EcsError::Client(format!(
            "The specified task definition identifier '{id}' is invalid: deregistering needs family:revision or the full ARN."
        )));
    }
    let found = core.find_task_definition(id)?.ok_or_else(|| {
        EcsError::Client(format!(
            "The specified task definition '{id}' does not exist."
        ))
    })?;
    let now = clock::now();
    let td = core.store.write(|w| {
        let key = db::taskdef_key(&found.family, found.revision);
        let mut td: TaskDefRecord = w.get(db::TASKDEFS, &key)?.ok_or_else(unable)?;
        if td.active {
            td.active = false;
            td.deregistered_at = Some(now);
            w.put(db::TASKDEFS, &key, &td)?;
            let mut fam: FamilyRecord = w.get(db::FAMILIES, &td.family)?.unwrap_or_default();
            fam.active_revisions = fam.active_revisions.saturating_sub(1);
            w.put(db::FAMILIES, &td.family, &fam)?;
        }
        Ok::<_, EcsError>(td)
    })?;
    Ok(TaskDefinitionResponse {
        task_definition: render(&td),
        tags: None,
    })
}

fn status_filter(s: Option<&str>, allowed: &[&str]) -> Result<String, EcsError> {
    let s = s.unwrap_or("ACTIVE");
    if allowed.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(EcsError::InvalidParameter(format!(
            "status '{s}' is invalid: use one of {}.",
            allowed.join(", ")
        )))
    }
}

/// ListTaskDefinitions: `familyPrefix` is the whole family name, as in ECS.
pub fn list(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: ListTaskDefinitionsRequest,
) -> Result<ListTaskDefinitionsResponse, EcsError> {
    let status = status_filter(
        req.status.as_deref(),
        &["ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"],
    )?;
    let desc = match req.sort.as_deref() {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(o) => {
            return Err(EcsError::InvalidParameter(format!(
                "sort '{o}' is invalid: use ASC or DESC."
            )));
        }
    };
    let max = paging::max_results(req.max_results)?;
    let prefix = req
        .family_prefix
        .as_deref()
        .map(db::taskdef_prefix)
        .unwrap_or_default();
    let mut all: Vec<(String, String)> = core
        .store
        .scan::<TaskDefRecord>(db::TASKDEFS, &prefix)?
        .into_iter()
        .filter(|(_, t)| t.status() == status)
        .map(|(k, t)| (k, t.arn))
        .collect();
    if desc {
        // Page keys must ascend: invert each byte so the order reverses.
        all.reverse();
        for (k, _) in &mut all {
            *k = k.chars().map(|c| char::from(255 - (c as u8))).collect();
        }
    }
    let (task_definition_arns, next_token) = paging::page(all, req.next_token.as_deref(), max)?;
    Ok(ListTaskDefinitionsResponse {
        task_definition_arns,
        next_token,
    })
}

/// ListTaskDefinitionFamilies: `familyPrefix` is a prefix here.
pub fn list_families(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: ListTaskDefinitionFamiliesRequest,
) -> Result<ListTaskDefinitionFamiliesResponse, EcsError> {
    let status = status_filter(req.status.as_deref(), &["ACTIVE", "INACTIVE", "ALL"])?;
    let max = paging::max_results(req.max_results)?;
    let all: Vec<(String, String)> = core
        .store
        .scan::<FamilyRecord>(db::FAMILIES, req.family_prefix.as_deref().unwrap_or(""))?
        .into_iter()
        .filter(|(_, f)| match status.as_str() {
            "ACTIVE" => f.active_revisions > 0,
            "INACTIVE" => f.active_revisions == 0,
            _ => true,
        })
        .map(|(k, _)| (k.clone(), k))
        .collect();
    let (families, next_token) = paging::page(all, req.next_token.as_deref(), max)?;
    Ok(ListTaskDefinitionFamiliesResponse {
        families,
        next_token,
    })
}

/// Whether a task that is not STOPPED or a service that is not INACTIVE
/// still uses the revision `arn`.
fn in_use(w: &ferry_store::WriteTxn<'_>, arn: &str) -> Result<bool, EcsError> {
    let tasks: Vec<(String, TaskRecord)> = w.scan(db::TASKS, "")?;
    if tasks
        .iter()
        .any(|(_, t)| t.last_status != TaskStatus::Stopped && t.task_definition_arn == arn)
    {
        return Ok(true);
    }
    let services: Vec<(String, ServiceRecord)> = w.scan(db::SERVICES, "")?;
    Ok(services.iter().any(|(_, s)| {
        s.status != "INACTIVE"
            && (s.task_definition == arn || s.deployments.iter().any(|d| d.task_definition == arn))
    }))
}

/// DeleteTaskDefinitions: up to 10 INACTIVE revisions (family:revision or
/// ARN). Each is answered DELETE_IN_PROGRESS, as ECS does; it is removed at
/// once when nothing uses it, else when the last task or service using it
/// is gone ([`sweep_deleted`]). An ACTIVE revision is a failure.
pub fn delete(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: DeleteTaskDefinitionsRequest,
) -> Result<DeleteTaskDefinitionsResponse, EcsError> {
    if req.task_definitions.is_empty() || req.task_definitions.len() > 10 {
        return Err(EcsError::InvalidParameter(
            "taskDefinitions must contain 1 to 10 task definitions.".into(),
        ));
    }
    let mut out = DeleteTaskDefinitionsResponse {
        task_definitions: vec![],
        failures: vec![],
    };
    for id in &req.task_definitions {
        let names_revision = id.starts_with("arn:")
            || id
                .rsplit_once(':')
                .is_some_and(|(_, r)| r.parse::<u32>().is_ok());
        let fail = |reason: &str| Failure {
            arn: Some(id.clone()),
            reason: reason.into(),
            detail: None,
        };
        if !names_revision {
            out.failures.push(fail(
                "The specified task definition identifier is invalid. Specify a family and revision (family:revision) or the full ARN.",
            ));
            continue;
        }
        let Some(found) = core.find_task_definition(id)? else {
            out.failures.push(fail("TASK_DEFINITION_NOT_FOUND"));
            continue;
        };
        if found.active {
            out.failures.push(Failure {
                arn: Some(found.arn.clone()),
                reason: "The specified task definition is still in ACTIVE status. Please deregister the target and try again.".into(),
                detail: None,
            });
            continue;
        }
        let td = core.store.write(|w| {
            let key = db::taskdef_key(&found.family, found.revision);
            let Some(mut td) = w.get::<TaskDefRecord>(db::TASKDEFS, &key)? else {
                return Ok::<_, EcsError>(None);
            };
            td.deleting = true;
            if in_use(w, &td.arn)? {
                w.put(db::TASKDEFS, &key, &td)?;
            } else {
                w.delete(db::TASKDEFS, &key)?;
            }
            Ok(Some(td))
        })?;
        match td {
            Some(td) => out.task_definitions.push(render(&td)),
            None => out.failures.push(fail("TASK_DEFINITION_NOT_FOUND")),
        }
    }
    Ok(out)
}

/// Removes DELETE_IN_PROGRESS revisions nothing uses any more. Returns how
/// many.
pub fn sweep_deleted(core: &Core) -> Result<usize, EcsError> {
    core.store.write(|w| {
        let mut n = 0;
        for (key, td) in w.scan::<TaskDefRecord>(db::TASKDEFS, "")? {
            if td.deleting && !in_use(w, &td.arn)? {
                w.delete(db::TASKDEFS, &key)?;
                n += 1;
            }
        }
        Ok(n)
    })
}
