//! Builds the agent's [`TaskPlan`] from a task definition's spec and the
//! RunTask overrides.

use ferry_proto::plan::{StoragePlan, TaskPlan};

use crate::error::EcsError;
use crate::model::task_definition::TaskDefSpec;
use crate::validate;
use crate::wire::task::TaskOverride;

/// Names of the task being planned.
#[derive(Debug, Clone)]
pub struct PlannedTask {
    /// ARN.
    pub task_arn: String,
    /// 32-hex id.
    pub task_id: String,
    /// Cluster name.
    pub cluster_name: String,
    /// Account.
    pub account: String,
    /// Region.
    pub region: String,
}

/// Default ephemeral storage when the task definition sets none, GiB.
pub const DEFAULT_STORAGE_GIB: u32 = 20;

/// Checks the overrides against the spec and returns the effective
/// (cpu, memory, requested storage size).
pub fn effective_size(
    spec: &TaskDefSpec,
    ov: &TaskOverride,
) -> Result<(u32, u32, Option<u32>), EcsError> {
    for co in &ov.container_overrides {
        let name = co.name.as_deref().unwrap_or("");
        if !spec.containers.iter().any(|c| c.run.name == name) {
            return Err(EcsError::InvalidParameter(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
    }
    let cpu = match &ov.cpu {
        Some(s) => validate::parse_cpu(s)
            .ok_or_else(|| EcsError::InvalidParameter(format!("Invalid 'cpu' override: '{s}'.")))?,
        None => spec.cpu_units,
    };
    let memory = match &ov.memory {
        Some(s) => validate::parse_memory(s).ok_or_else(|| {
            EcsError::InvalidParameter(format!("Invalid 'memory' override: '{s}'."))
        })?,
        None => spec.memory_mib,
    };
    if ov.cpu.is_some() || ov.memory.is_some() {
        validate::check_fargate_size(cpu, memory)?;
    }
    for (what, role) in [
        ("taskRoleArn", &ov.task_role_arn),
        ("executionRoleArn", &ov.execution_role_arn),
    ] {
        if let Some(r) = role {
            validate::check_role(what, r).map_err(|e| EcsError::InvalidParameter(e.to_string()))?;
        }
    }
    let storage = match ov.ephemeral_storage {
        Some(e) => Some(
            validate::check_ephemeral_storage(e.size_in_gib)
                .map_err(|e| EcsError::InvalidParameter(e.to_string()))?,
        ),
        None => spec.ephemeral_storage_gib,
    };
    Ok((cpu, memory, storage))
}

/// The plan for one task. `overrides` must have passed [`effective_size`].
pub fn build(
    id: PlannedTask,
    spec: &TaskDefSpec,
    ov: &TaskOverride,
    storage: StoragePlan,
) -> Result<TaskPlan, EcsError> {
    let (cpu_units, memory_mib, size) = effective_size(spec, ov)?;
    // The container-level sizes travel with the plan, as limits for the
    // agent; the stored spec keeps them beside the plan's fields.
    let mib = |v: Option<i64>| v.and_then(|m| u32::try_from(m).ok()).filter(|m| *m > 0);
    let mut containers: Vec<_> = spec
        .containers
        .iter()
        .map(|c| ferry_proto::plan::ContainerPlan {
            memory_limit_mib: mib(c.memory),
            memory_reservation_mib: mib(c.memory_reservation),
            cpu_units: u32::try_from(c.cpu).ok().filter(|u| *u > 0),
            ..c.run.clone()
        })
        .collect();
    for co in &ov.container_overrides {
        let Some(c) = containers
            .iter_mut()
            .find(|c| Some(c.name.as_str()) == co.name.as_deref())
        else {
            continue;
        };
        if let Some(cmd) = &co.command {
            c.command = cmd.clone();
        }
        for kv in co.environment.iter().flatten() {
            let name = kv.name.clone().unwrap_or_default();
            let value = kv.value.clone().unwrap_or_default();
            match c.environment.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => c.environment.push((name, value)),
            }
        }
    }
    Ok(TaskPlan {
        task_arn: id.task_arn,
        task_id: id.task_id,
        cluster_name: id.cluster_name,
        account: id.account,
        region: id.region,
        cpu_units,
        memory_mib,
        ephemeral_storage_gib: size.unwrap_or(DEFAULT_STORAGE_GIB),
        storage,
        containers,
        volumes: spec.volumes.clone(),
        network: None,
    })
}

/// Gives every container of `plan` the task role's credentials path
/// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`), after the definition's and
/// the overrides' environment, so it wins, as the ECS agent sets it.
pub fn add_credentials_uri(plan: &mut TaskPlan, credentials_id: &str) {
    let uri = crate::identity::relative_uri(credentials_id);
    for c in &mut plan.containers {
        c.environment
            .retain(|(k, _)| k != crate::identity::CREDENTIALS_URI_ENV);
        c.environment
            .push((crate::identity::CREDENTIALS_URI_ENV.into(), uri.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::task_definition::TaskDefinitionInput;

    fn spec() -> TaskDefSpec {
        let input: TaskDefinitionInput = serde_json::from_value(serde_json::json!({
            "family": "f", "networkMode": "awsvpc", "cpu": "256", "memory": "512",
            "containerDefinitions": [{"name": "app", "image": "busybox",
                "command": ["sleep", "1"],
                "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]
        }))
        .unwrap();
        validate::task_definition(&input).unwrap()
    }

    fn id() -> PlannedTask {
        PlannedTask {
            task_arn: "arn".into(),
            task_id: "id".into(),
            cluster_name: "c".into(),
            account: "a".into(),
            region: "r".into(),
        }
    }

    #[test]
    fn overrides_are_honoured() {
        let ov: TaskOverride = serde_json::from_value(serde_json::json!({
            "containerOverrides": [{"name": "app", "command": ["echo", "hi"],
                "environment": [{"name": "B", "value": "x"}, {"name": "C", "value": "3"}]}],
            "ephemeralStorage": {"sizeInGiB": 50}
        }))
        .unwrap();
        let p = build(id(), &spec(), &ov, StoragePlan::Unencrypted).unwrap();
        assert_eq!(p.containers[0].command, vec!["echo", "hi"]);
        assert_eq!(
            p.containers[0].environment,
            vec![
                ("A".to_owned(), "1".to_owned()),
                ("B".to_owned(), "x".to_owned()),
                ("C".to_owned(), "3".to_owned())
            ]
        );
        assert_eq!(p.ephemeral_storage_gib, 50);
        let p = build(
            id(),
            &spec(),
            &TaskOverride::default(),
            StoragePlan::Unencrypted,
        )
        .unwrap();
        assert_eq!(p.ephemeral_storage_gib, DEFAULT_STORAGE_GIB);
        assert_eq!(p.containers[0].command, vec!["sleep", "1"]);
    }

    #[test]
    fn bad_overrides_are_refused() {
        let ov: TaskOverride = serde_json::from_value(serde_json::json!({
            "containerOverrides": [{"name": "nope"}]}))
        .unwrap();
        let e = effective_size(&spec(), &ov).unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException");
        let ov: TaskOverride = serde_json::from_value(serde_json::json!({
            "ephemeralStorage": {"sizeInGiB": 300}}))
        .unwrap();
        assert!(effective_size(&spec(), &ov).is_err());
        let ov: TaskOverride = serde_json::from_value(serde_json::json!({
            "cpu": "256", "memory": "4096"}))
        .unwrap();
        assert!(
            effective_size(&spec(), &ov)
                .unwrap_err()
                .to_string()
                .contains("No Fargate configuration")
        );
    }
}
