//! Fargate's rules, applied where input enters: a wire task definition
//! either becomes a [`TaskDefSpec`] or is refused with the error ECS gives
//! (same exception, and ECS's message where known). Also the rules for
//! RunTask-style input (count, platform version, subnet) and for tags,
//! shared by the API handlers and the service scheduler.

use std::collections::HashSet;

use ferry_proto::plan::{
    AwsLogs, ContainerPlan, Dependency, HealthCheck, HealthCommand, MountPoint, PortMapping,
    VolumeKind, VolumePlan,
};

use crate::error::EcsError;
use crate::identity::SecretRef;
use crate::model::task_definition::{ContainerDef, SecretSpec, TaskDefSpec};
use crate::wire::Tag;
use crate::wire::task_definition::{
    ContainerDefinition, EfsVolumeConfiguration, HealthCheckInput, TaskDefinitionInput,
};

/// Valid Fargate task sizes: (cpu units, memory MiB from, to, step).
const FARGATE_SIZES: &[(u32, u32, u32, u32)] = &[
    (256, 512, 512, 1),
    (256, 1024, 2048, 1024),
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16384, 1024),
    (4096, 8192, 30720, 1024),
    (8192, 16384, 61440, 4096),
    (16384, 32768, 122880, 8192),
];

/// Whether `cpu`/`memory` is a task size Fargate offers.
pub fn fargate_size_ok(cpu: u32, memory: u32) -> bool {
    FARGATE_SIZES.iter().any(|&(c, from, to, step)| {
        c == cpu && (from..=to).contains(&memory) && (memory - from).is_multiple_of(step)
    })
}

fn size_error(cpu: u32, memory: u32) -> EcsError {
    EcsError::Client(format!(
        "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
    ))
}

/// Checks a task size against Fargate's table.
pub fn check_fargate_size(cpu: u32, memory: u32) -> Result<(), EcsError> {
    if fargate_size_ok(cpu, memory) {
        Ok(())
    } else {
        Err(size_error(cpu, memory))
    }
}

/// Parses task `cpu`: CPU units (`"256"`) or vCPUs (`"0.25 vCPU"`, `"1 vcpu"`).
pub fn parse_cpu(s: &str) -> Option<u32> {
    parse_unit(s, &["vcpu"], 1024)
}

/// Parses task `memory`: MiB (`"512"`) or GB (`"0.5 GB"`, `"2GB"`).
pub fn parse_memory(s: &str) -> Option<u32> {
    parse_unit(s, &["gb", "gib"], 1024)
}

fn parse_unit(s: &str, units: &[&str], factor: u32) -> Option<u32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        return Some(n);
    }
    let lower = t.to_ascii_lowercase();
    let num = units.iter().find_map(|u| lower.strip_suffix(u))?.trim();
    let x: f64 = num.parse().ok()?;
    let v = x * f64::from(factor);
    // Only whole units make sense; 0.25 vCPU = 256 exactly.
    (v.is_finite() && v > 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX)).then_some(v as u32)
}

/// Checks an ephemeral storage size (21..=200 GiB).
pub fn check_ephemeral_storage(size: i64) -> Result<u32, EcsError> {
    if (21..=200).contains(&size) {
        Ok(size as u32)
    } else {
        Err(EcsError::Client(format!(
            "The ephemeral storage size {size} GiB is invalid: ephemeralStorage.sizeInGiB must be between 21 and 200 GiB (omit it for the default 20 GiB)."
        )))
    }
}

/// Checks a family name.
pub fn check_family(family: &str) -> Result<(), EcsError> {
    let ok = !family.is_empty()
        && family.len() <= 255
        && family
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(EcsError::Client(format!(
            "Family '{family}' is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
        )))
    }
}

/// Whether a request member carries nothing (absent in effect).
fn is_empty_value(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(false) => true,
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Refuses the members of a request that ferry would otherwise drop
/// silently: each member of `rest` (what the typed request did not take)
/// must be in `accepted` (kept or harmless, documented) or carry nothing.
pub fn refuse_unsupported(
    rest: &serde_json::Map<String, serde_json::Value>,
    accepted: &[&str],
    what: &str,
) -> Result<(), EcsError> {
    for (k, v) in rest {
        if accepted.contains(&k.as_str()) || is_empty_value(v) {
            continue;
        }
        let why = match k.as_str() {
            "placementConstraints" | "placementStrategy" => {
                "task placement constraints and strategies are not supported for tasks using the Fargate launch type"
            }
            "volumeConfigurations" => "Amazon EBS volumes are not offered by ferry",
            "loadBalancers"
            | "serviceRegistries"
            | "serviceConnectConfiguration"
            | "vpcLatticeConfigurations" => "ferry has no load balancers, Cloud Map or VPC Lattice",
            "enableECSManagedTags" => "ECS-managed tags are not added by ferry",
            "enableExecuteCommand" => "ECS Exec is not offered by ferry",
            _ => "ferry does not support it",
        };
        return Err(EcsError::InvalidParameter(format!(
            "{what}: '{k}' is not supported: {why}."
        )));
    }
    Ok(())
}

/// Turns a registered task definition into what ferry runs, applying
/// Fargate's rules. ferry runs every task on Fargate, so every task
/// definition must be Fargate-compatible.
pub fn task_definition(input: &TaskDefinitionInput) -> Result<TaskDefSpec, EcsError> {
    check_family(&input.family)?;
    if let Some(c) = input
        .requires_compatibilities
        .iter()
        .find(|c| c.as_str() != "FARGATE" && c.as_str() != "EC2")
    {
        return Err(EcsError::Client(format!(
            "requiresCompatibilities value '{c}' is not supported: ferry runs tasks on FARGATE."
        )));
    }
    // ECS's words, curly quotes included; an absent networkMode is
    // `bridge` to ECS, so it is refused too.
    if input.network_mode.as_deref() != Some("awsvpc") {
        return Err(EcsError::Client(
            "Fargate only supports network mode \u{2018}awsvpc\u{2019}.".into(),
        ));
    }
    let cpu_s = input.cpu.as_deref().ok_or_else(|| {
        EcsError::Client("Fargate requires that 'cpu' be defined at the task level.".into())
    })?;
    let mem_s = input.memory.as_deref().ok_or_else(|| {
        EcsError::Client("Fargate requires that 'memory' be defined at the task level.".into())
    })?;
    let cpu = parse_cpu(cpu_s).ok_or_else(|| {
        EcsError::Client(format!(
            "Invalid 'cpu' setting for task: '{cpu_s}' is neither CPU units (e.g. \"256\") nor vCPUs (e.g. \"0.25 vCPU\")."
        ))
    })?;
    let memory = parse_memory(mem_s).ok_or_else(|| {
        EcsError::Client(format!(
            "Invalid 'memory' setting for task: '{mem_s}' is neither MiB (e.g. \"512\") nor GB (e.g. \"0.5 GB\")."
        ))
    })?;
    check_fargate_size(cpu, memory)?;
    match input.pid_mode.as_deref() {
        None | Some("task") => {}
        Some(m) => {
            return Err(EcsError::Client(format!(
                "Tasks using the Fargate launch type do not support pidMode '{m}'. The supported value for pidMode is 'task'."
            )));
        }
    }
    if input.ipc_mode.is_some() {
        return Err(EcsError::Client(
            "Tasks using the Fargate launch type do not support ipcMode.".into(),
        ));
    }
    let ephemeral_storage_gib = input
        .ephemeral_storage
        .map(|e| check_ephemeral_storage(e.size_in_gib))
        .transpose()?;

    let volumes = volumes(input)?;
    let volume_names: HashSet<&str> = volumes.iter().map(|v| v.name.as_str()).collect();

    if input.container_definitions.is_empty() {
        return Err(EcsError::Client("Container list cannot be empty.".into()));
    }
    if input.container_definitions.len() > 10 {
        return Err(EcsError::Client(
            "Too many containers: a task definition may have at most 10 containers.".into(),
        ));
    }
    let mut names = HashSet::new();
    let mut containers = Vec::with_capacity(input.container_definitions.len());
    let mut cpu_sum: i64 = 0;
    for cd in &input.container_definitions {
        let c = container(cd, memory, &volume_names)?;
        if !names.insert(c.run.name.clone()) {
            return Err(EcsError::Client(format!(
                "Duplicate container name '{}': container names must be unique within a task definition.",
                c.run.name
            )));
        }
        cpu_sum += cd.cpu.unwrap_or(0);
        containers.push(c);
    }
    if cpu_sum > i64::from(cpu) {
        return Err(EcsError::Client(
            "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'."
                .into(),
        ));
    }
    for (what, role) in [
        ("taskRoleArn", &input.task_role_arn),
        ("executionRoleArn", &input.execution_role_arn),
    ] {
        if let Some(r) = role {
            check_role(what, r)?;
        }
    }
    if containers.iter().any(|c| !c.secrets.is_empty())
        && input
            .execution_role_arn
            .as_deref()
            .is_none_or(str::is_empty)
    {
        return Err(EcsError::Client(
            "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'."
                .into(),
        ));
    }
    if containers
        .iter()
        .any(|c| c.repository_credentials.is_some())
        && input
            .execution_role_arn
            .as_deref()
            .is_none_or(str::is_empty)
    {
        return Err(EcsError::Client(
            "When you are specifying repository credentials, you must also specify a value for 'executionRoleArn'."
                .into(),
        ));
    }
    if !containers.iter().any(|c| c.run.essential) {
        return Err(EcsError::Client(
            "Task definition has no essential container: at least one container must have \"essential\": true."
                .into(),
        ));
    }
    for c in containers.iter().map(|c| &c.run) {
        for d in &c.depends_on {
            if !names.contains(&d.container_name) {
                return Err(EcsError::Client(format!(
                    "Container '{}' depends on container '{}', which is not in the task definition.",
                    c.name, d.container_name
                )));
            }
            // ECS refuses HEALTHY on a container that cannot become healthy.
            if d.condition == "HEALTHY"
                && containers
                    .iter()
                    .any(|o| o.run.name == d.container_name && o.run.health_check.is_none())
            {
                return Err(EcsError::Client(format!(
                    "Container '{}' depends on container '{}' with condition HEALTHY, but '{}' has no healthCheck.",
                    c.name, d.container_name, d.container_name
                )));
            }
        }
    }
    Ok(TaskDefSpec {
        cpu_units: cpu,
        memory_mib: memory,
        ephemeral_storage_gib,
        containers,
        volumes,
    })
}

fn volumes(input: &TaskDefinitionInput) -> Result<Vec<VolumePlan>, EcsError> {
    let mut out: Vec<VolumePlan> = Vec::new();
    for v in &input.volumes {
        let name =
            v.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
                EcsError::Client("Volume name should not be null or empty.".into())
            })?;
        if out.iter().any(|o| o.name == name) {
            return Err(EcsError::Client(format!(
                "Duplicate volume name '{name}': volume names must be unique."
            )));
        }
        if name.len() > 255
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(EcsError::Client(format!(
                "Volume name '{name}' is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
            )));
        }
        if v.docker_volume_configuration.is_some()
            || v.fsx_windows_file_server_volume_configuration.is_some()
        {
            return Err(EcsError::Client(format!(
                "Volume '{name}': Fargate supports only ephemeral (bind mount) and EFS volumes."
            )));
        }
        if v.host
            .as_ref()
            .and_then(|h| h.get("sourcePath"))
            .is_some_and(|p| !p.is_null())
        {
            return Err(EcsError::Client(format!(
                "Volume '{name}': host.sourcePath is not supported on Fargate."
            )));
        }
        let kind = match &v.efs_volume_configuration {
            Some(efs) => {
                let (iam, transit_encryption) = efs_volume(&name, efs)?;
                VolumeKind::Efs {
                    file_system_id: efs.file_system_id.clone(),
                    root_directory: efs.root_directory.clone().unwrap_or_else(|| "/".into()),
                    access_point_id: efs
                        .authorization_config
                        .as_ref()
                        .and_then(|a| a.access_point_id.clone()),
                    iam,
                    transit_encryption,
                }
            }
            None => VolumeKind::Ephemeral,
        };
        out.push(VolumePlan { name, kind });
    }
    Ok(out)
}

/// ECS's rules for `efsVolumeConfiguration`; returns whether IAM
/// authorization and transit encryption are enabled.
fn efs_volume(name: &str, efs: &EfsVolumeConfiguration) -> Result<(bool, bool), EcsError> {
    let err = |m: &str| Err(EcsError::Client(format!("Volume '{name}': {m}")));
    let fs = &efs.file_system_id;
    if !fs.starts_with("fs-") || fs.len() > 128 {
        return err("efsVolumeConfiguration.fileSystemId must be a file system id (fs-...).");
    }
    let enabled = |v: &Option<String>, what: &str| match v.as_deref() {
        None | Some("DISABLED") => Ok(false),
        Some("ENABLED") => Ok(true),
        Some(_) => Err(EcsError::Client(format!(
            "Volume '{name}': {what} must be ENABLED or DISABLED."
        ))),
    };
    let transit = enabled(&efs.transit_encryption, "transitEncryption")?;
    let auth = efs.authorization_config.as_ref();
    let iam = enabled(&auth.and_then(|a| a.iam.clone()), "authorizationConfig.iam")?;
    let ap = auth.and_then(|a| a.access_point_id.as_deref());
    if let Some(r) = efs.root_directory.as_deref()
        && (!r.starts_with('/') || r.len() > 4096 || r.split('/').any(|c| c == ".." || c == "."))
    {
        return err("rootDirectory must be an absolute path without . or .. components.");
    }
    if ap.is_some_and(|a| !a.starts_with("fsap-")) {
        return err("authorizationConfig.accessPointId must be an access point id (fsap-...).");
    }
    if ap.is_some() && efs.root_directory.as_deref().is_some_and(|r| r != "/") {
        return err(
            "when an access point is specified, rootDirectory must be omitted or set to '/'.",
        );
    }
    if (ap.is_some() || iam) && !transit {
        return err(
            "transitEncryption must be ENABLED when an access point or IAM authorization is used.",
        );
    }
    Ok((iam, transit))
}

fn container(
    cd: &ContainerDefinition,
    task_memory: u32,
    volumes: &HashSet<&str>,
) -> Result<ContainerDef, EcsError> {
    let name =
        cd.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
            EcsError::Client("Container.name should not be null or empty.".into())
        })?;
    if name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(EcsError::Client(format!(
            "Container name '{name}' is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
        )));
    }
    let (capabilities_add, capabilities_drop) = fargate_only(cd, &name)?;
    let image = cd.image.clone().filter(|i| !i.is_empty()).ok_or_else(|| {
        EcsError::Client(format!(
            "Container.image should not be null or empty (container '{name}')."
        ))
    })?;
    for (what, v) in [
        ("memory", cd.memory),
        ("memoryReservation", cd.memory_reservation),
    ] {
        if let Some(m) = v {
            if m < 6 {
                return Err(EcsError::Client(format!(
                    "Invalid '{what}' setting for container '{name}': the minimum is 6 MiB."
                )));
            }
            if m > i64::from(task_memory) {
                return Err(EcsError::Client(format!(
                    "The '{what}' setting for container '{name}' is greater than for the task."
                )));
            }
        }
    }
    let mut port_mappings = Vec::with_capacity(cd.port_mappings.len());
    for pm in &cd.port_mappings {
        let cp = pm.container_port.ok_or_else(|| {
            EcsError::Client(format!(
                "Invalid 'containerPort' setting for container '{name}': a port mapping needs a containerPort."
            ))
        })?;
        let container_port = u16::try_from(cp).ok().filter(|p| *p > 0).ok_or_else(|| {
            EcsError::Client(format!(
                "Invalid 'containerPort' setting for container '{name}': {cp} is not a port number (1-65535)."
            ))
        })?;
        if let Some(hp) = pm.host_port
            && hp != cp
            && hp != 0
        {
            return Err(EcsError::Client(format!(
                "When networkMode=awsvpc, the host ports and container ports in port mappings must match. (container '{name}': hostPort {hp}, containerPort {cp})"
            )));
        }
        let protocol = pm.protocol.clone().unwrap_or_else(|| "tcp".into());
        if protocol != "tcp" && protocol != "udp" {
            return Err(EcsError::Client(format!(
                "Invalid 'protocol' setting for container '{name}': '{protocol}' (tcp or udp)."
            )));
        }
        port_mappings.push(PortMapping {
            container_port,
            protocol,
        });
    }
    let mut mount_points = Vec::with_capacity(cd.mount_points.len());
    for mp in &cd.mount_points {
        let source = mp.source_volume.clone().unwrap_or_default();
        if !volumes.contains(source.as_str()) {
            return Err(EcsError::Client(format!(
                "Invalid 'mountPoints' setting for container '{name}': sourceVolume '{source}' is not a volume of the task definition."
            )));
        }
        let path = mp.container_path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            return Err(EcsError::Client(format!(
                "Invalid 'mountPoints' setting for container '{name}': containerPath must be an absolute path."
            )));
        }
        mount_points.push(MountPoint {
            source_volume: source,
            container_path: path,
            read_only: mp.read_only.unwrap_or(false),
        });
    }
    let awslogs = match &cd.log_configuration {
        Some(lc) if lc.log_driver == "awslogs" => {
            let group = lc.options.get("awslogs-group").cloned();
            match (group, lc.options.get("awslogs-region")) {
                (Some(group), Some(_)) => Some(AwsLogs {
                    group,
                    stream_prefix: lc.options.get("awslogs-stream-prefix").cloned(),
                    // The awslogs driver reads the option as a boolean string.
                    create_group: lc
                        .options
                        .get("awslogs-create-group")
                        .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                }),
                _ => {
                    return Err(EcsError::Client(
                        "Log driver awslogs requires options: awslogs-region, awslogs-group".into(),
                    ));
                }
            }
        }
        Some(lc) if lc.log_driver == "awsfirelens" || lc.log_driver == "splunk" => {
            // Accepted and echoed; ferry ships no such log router.
            let _ = lc;
            None
        }
        Some(lc) => {
            return Err(EcsError::Client(format!(
                "Log driver '{}' is not supported on Fargate (use awslogs, splunk or awsfirelens).",
                lc.log_driver
            )));
        }
        None => None,
    };
    let stop_timeout_secs = match cd.stop_timeout {
        None => 30,
        Some(t) if (0..=120).contains(&t) => t as u32,
        Some(t) => {
            return Err(EcsError::Client(format!(
                "Invalid 'stopTimeout' setting for container '{name}': {t} (Fargate allows 0 to 120 seconds)."
            )));
        }
    };
    // How long dependents wait for this container to reach their
    // condition (Fargate: 2 to 120 seconds).
    let start_timeout_secs = match cd.start_timeout {
        None => None,
        Some(t) if (2..=120).contains(&t) => Some(t as u32),
        Some(t) => {
            return Err(EcsError::Client(format!(
                "Invalid 'startTimeout' setting for container '{name}': {t} (Fargate allows 2 to 120 seconds)."
            )));
        }
    };
    let secrets = secrets(cd, &name)?;
    let name_for_health = name.clone();
    let name_for_error = name.clone();
    let run = ContainerPlan {
        name,
        image,
        entry_point: cd.entry_point.clone(),
        command: cd.command.clone(),
        environment: cd
            .environment
            .iter()
            .map(|kv| {
                (
                    kv.name.clone().unwrap_or_default(),
                    kv.value.clone().unwrap_or_default(),
                )
            })
            .collect(),
        working_directory: cd.working_directory.clone(),
        user: cd.user.clone(),
        essential: cd.essential.unwrap_or(true),
        depends_on: cd
            .depends_on
            .iter()
            .map(|d| Dependency {
                container_name: d.container_name.clone(),
                condition: d.condition.clone(),
            })
            .collect(),
        stop_timeout_secs,
        start_timeout_secs,
        capabilities_add,
        capabilities_drop,
        readonly_root_filesystem: cd.readonly_root_filesystem.unwrap_or(false),
        port_mappings,
        mount_points,
        awslogs,
        // The sizes stay in the ContainerDef; plan::build sets these.
        memory_limit_mib: None,
        memory_reservation_mib: None,
        cpu_units: None,
        health_check: cd
            .health_check
            .as_ref()
            .map(|h| health_check(&name_for_health, h))
            .transpose()?,
        secret_env: Default::default(),
        registry_auth: None,
    };
    Ok(ContainerDef {
        run,
        cpu: cd.cpu.unwrap_or(0),
        memory: cd.memory,
        memory_reservation: cd.memory_reservation,
        secrets,
        repository_credentials: repository_credentials(cd, &name_for_error)?,
    })
}

/// A container's `secrets`: each needs a variable name and a `valueFrom`
/// of ECS's grammar ([`SecretRef::parse`]).
fn secrets(cd: &ContainerDefinition, container: &str) -> Result<Vec<SecretSpec>, EcsError> {
    let mut out: Vec<SecretSpec> = Vec::with_capacity(cd.secrets.len());
    for s in &cd.secrets {
        let (Some(name), Some(value_from)) = (
            s.name.as_deref().filter(|n| !n.is_empty()),
            s.value_from.as_deref().filter(|v| !v.is_empty()),
        ) else {
            return Err(EcsError::Client(format!(
                "Invalid 'secrets' setting for container '{container}': each secret needs a name and a valueFrom."
            )));
        };
        if out.iter().any(|o| o.name == name) {
            return Err(EcsError::Client(format!(
                "Invalid 'secrets' setting for container '{container}': secret name '{name}' is used more than once."
            )));
        }
        SecretRef::parse(name, value_from).map_err(|e| EcsError::Client(e.0))?;
        out.push(SecretSpec {
            name: name.to_owned(),
            value_from: value_from.to_owned(),
        });
    }
    Ok(out)
}

/// `repositoryCredentials.credentialsParameter`: a Secrets Manager secret's
/// ARN or name.
fn repository_credentials(
    cd: &ContainerDefinition,
    container: &str,
) -> Result<Option<String>, EcsError> {
    let Some(rc) = &cd.repository_credentials else {
        return Ok(None);
    };
    let bad = || {
        EcsError::Client(format!(
            "Invalid 'repositoryCredentials' setting for container '{container}': credentialsParameter must be the ARN or name of a Secrets Manager secret."
        ))
    };
    let p = rc.credentials_parameter.as_deref().unwrap_or_default();
    let ok = if p.starts_with("arn:") {
        SecretRef::parse(container, p)
            .is_ok_and(|r| matches!(r, SecretRef::SecretsManager { json_key: None, .. }))
    } else {
        // Secrets Manager's name rule: 1-512 of letters, digits and /_+=.@-.
        !p.is_empty()
            && p.len() <= 512
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
    };
    if ok {
        Ok(Some(p.to_owned()))
    } else {
        Err(bad())
    }
}

/// `taskRoleArn` / `executionRoleArn` (RegisterTaskDefinition, RunTask
/// overrides): an IAM role's ARN or its short name, as ECS takes them.
pub fn check_role(what: &str, role: &str) -> Result<(), EcsError> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    };
    let ok = match role.strip_prefix("arn:") {
        None => name_ok(role),
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            parts.len() == 5
                && parts[0].starts_with("aws")
                && parts[1] == "iam"
                && parts[2].is_empty()
                && parts[3].len() == 12
                && parts[3].bytes().all(|b| b.is_ascii_digit())
                && parts[4]
                    .strip_prefix("role/")
                    .and_then(|p| p.rsplit('/').next())
                    .is_some_and(name_ok)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(EcsError::Client(format!(
            "Role is not valid: {what} '{role}' is neither an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME) nor a role name."
        )))
    }
}

/// The ARN of a role given as ECS takes it (ARN or short name), in
/// `account`.
pub fn role_arn(role: &str, account: &str) -> String {
    if role.starts_with("arn:") {
        role.to_owned()
    } else {
        format!("arn:aws:iam::{account}:role/{role}")
    }
}

/// Default `healthCheck.interval`, seconds.
pub const HEALTH_INTERVAL_DEFAULT: u32 = 30;
/// Default `healthCheck.timeout`, seconds.
pub const HEALTH_TIMEOUT_DEFAULT: u32 = 5;
/// Default `healthCheck.retries`.
pub const HEALTH_RETRIES_DEFAULT: u32 = 3;

/// ECS's rules for `healthCheck`: `CMD`/`CMD-SHELL`, interval 5..=300 s,
/// timeout 2..=60 s, retries 1..=10, startPeriod 0..=300 s.
fn health_check(name: &str, h: &HealthCheckInput) -> Result<HealthCheck, EcsError> {
    let command = match h.command.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => {
            HealthCommand::Exec(rest.to_vec())
        }
        // Docker joins the rest with spaces; ECS documents one string.
        Some((kind, rest)) if kind == "CMD-SHELL" && rest.iter().any(|r| !r.is_empty()) => {
            HealthCommand::Shell(rest.join(" "))
        }
        Some((kind, _)) if kind == "CMD" || kind == "CMD-SHELL" => {
            return Err(EcsError::Client(format!(
                "Invalid 'healthCheck' setting for container '{name}': the command after {kind} cannot be empty."
            )));
        }
        _ => {
            return Err(EcsError::Client(format!(
                "Invalid 'healthCheck' setting for container '{name}': the command must start with CMD or CMD-SHELL."
            )));
        }
    };
    let range = |what: &str, v: Option<i64>, default: u32, lo: i64, hi: i64, unit: &str| match v {
        None => Ok(default),
        Some(v) if (lo..=hi).contains(&v) => Ok(v as u32),
        Some(v) => Err(EcsError::Client(format!(
            "Invalid 'healthCheck' setting for container '{name}': {what} must be between {lo} and {hi}{unit} ({v} given)."
        ))),
    };
    Ok(HealthCheck {
        command,
        interval_secs: range(
            "interval",
            h.interval,
            HEALTH_INTERVAL_DEFAULT,
            5,
            300,
            " seconds",
        )?,
        timeout_secs: range(
            "timeout",
            h.timeout,
            HEALTH_TIMEOUT_DEFAULT,
            2,
            60,
            " seconds",
        )?,
        retries: range("retries", h.retries, HEALTH_RETRIES_DEFAULT, 1, 10, "")?,
        start_period_secs: range("startPeriod", h.start_period, 0, 0, 300, " seconds")?,
    })
}

/// RunTask `count`: 1..=10.
pub fn check_count(count: Option<i64>) -> Result<u32, EcsError> {
    match count {
        None => Ok(1),
        Some(c) if (1..=10).contains(&c) => Ok(c as u32),
        Some(c) => Err(EcsError::InvalidParameter(format!(
            "count must be between 1 and 10 (got {c})."
        ))),
    }
}

/// A resolved platform version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// 1.4.0 (and LATEST): encrypted ephemeral storage.
    V1_4_0,
    /// 1.3.0: legacy, unencrypted ephemeral storage.
    V1_3_0,
}

impl Platform {
    /// The version string tasks report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_4_0 => "1.4.0",
            Self::V1_3_0 => "1.3.0",
        }
    }
}

/// At most this many tags per resource.
pub const MAX_TAGS: usize = 50;

/// Checks tags as ECS does: key 1..=128, value <= 256, `aws:` reserved.
pub fn check_tags(tags: &[Tag]) -> Result<(), EcsError> {
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
pub fn merge_tags(existing: &[Tag], new: &[Tag]) -> Vec<Tag> {
    let mut out = existing.to_vec();
    for t in new {
        match out.iter_mut().find(|o| o.key == t.key) {
            Some(o) => o.value = t.value.clone(),
            None => out.push(t.clone()),
        }
    }
    out
}

/// The tags of the tasks RunTask starts: `requested`, merged over the task
/// definition's `definition` tags when `propagate` is `TASK_DEFINITION`.
pub fn task_tags(
    requested: &[Tag],
    propagate: Option<&str>,
    definition: &[Tag],
) -> Result<Vec<Tag>, EcsError> {
    check_tags(requested)?;
    let tags = match propagate {
        None | Some("NONE") => requested.to_vec(),
        Some("TASK_DEFINITION") => merge_tags(definition, requested),
        Some(o) => {
            return Err(EcsError::InvalidParameter(format!(
                "propagateTags {o} is invalid for RunTask: use TASK_DEFINITION or NONE."
            )));
        }
    };
    check_tags(&tags)?;
    Ok(tags)
}

/// Resolves `platformVersion` (`LATEST` when absent).
pub fn platform(v: Option<&str>) -> Result<Platform, EcsError> {
    match v.unwrap_or("LATEST") {
        "LATEST" | "1.4.0" => Ok(Platform::V1_4_0),
        "1.3.0" => Ok(Platform::V1_3_0),
        other => Err(EcsError::PlatformUnknown(format!(
            "The specified platform version '{other}' does not exist. ferry offers 1.4.0 (LATEST) and 1.3.0."
        ))),
    }
}

/// The Linux kernel capabilities ECS knows by name (`KernelCapabilities`).
const CAPABILITIES: &[&str] = &[
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// What `linuxParameters.capabilities.add` may name.
const ADDABLE_CAPABILITIES: &[&str] = &["SYS_PTRACE", "NET_RAW", "NET_ADMIN"];

/// What Fargate refuses in a container definition (privileged, devices,
/// shared memory, tmpfs, added capabilities but SYS_PTRACE, NET_RAW and
/// NET_ADMIN, negative cpu);
/// returns the capabilities to add and to drop.
fn fargate_only(
    cd: &ContainerDefinition,
    name: &str,
) -> Result<(Vec<String>, Vec<String>), EcsError> {
    let refuse = |what: &str| {
        Err(EcsError::Client(format!(
            "{what} is not supported for tasks using the Fargate launch type (container '{name}')."
        )))
    };
    if cd.privileged == Some(true) {
        return refuse("Privileged mode");
    }
    if let Some(c) = cd.cpu
        && c < 0
    {
        return Err(EcsError::Client(format!(
            "Invalid 'cpu' setting for container '{name}': {c} (must be 0 or more)."
        )));
    }
    let Some(lp) = &cd.linux_parameters else {
        return Ok((vec![], vec![]));
    };
    if lp.devices.as_ref().is_some_and(|d| !d.is_empty()) {
        return refuse("linuxParameters.devices");
    }
    if lp.shared_memory_size.is_some() {
        return refuse("linuxParameters.sharedMemorySize");
    }
    if lp.tmpfs.as_ref().is_some_and(|t| !t.is_empty()) {
        return refuse("linuxParameters.tmpfs");
    }
    let caps = lp.capabilities.clone().unwrap_or_default();
    // NET_RAW is not in ferry's default set (docs/runtime.md, "Task
    // networking"); NET_ADMIN reaches only the task's own namespace and
    // anti-spoofing makes a changed address useless.
    if let Some(c) = caps
        .add
        .iter()
        .find(|c| !ADDABLE_CAPABILITIES.contains(&c.as_str()))
    {
        return Err(EcsError::Client(format!(
            "Fargate only supports adding the SYS_PTRACE, NET_RAW and NET_ADMIN kernel capabilities (container '{name}' adds '{c}')."
        )));
    }
    if let Some(c) = caps
        .drop
        .iter()
        .find(|c| !CAPABILITIES.contains(&c.as_str()))
    {
        return Err(EcsError::Client(format!(
            "Invalid kernel capability '{c}' in linuxParameters.capabilities.drop of container '{name}'."
        )));
    }
    Ok((caps.add, caps.drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: serde_json::Value) -> TaskDefinitionInput {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "family": "web",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [{
                "name": "app", "image": "httpd:2.4", "essential": true,
                "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}]
            }]
        })
    }

    fn err(v: serde_json::Value) -> EcsError {
        task_definition(&input(v)).unwrap_err()
    }

    fn with_efs(cfg: serde_json::Value) -> serde_json::Value {
        let mut v = base();
        v["volumes"] = serde_json::json!([{"name": "data", "efsVolumeConfiguration": cfg}]);
        v["containerDefinitions"][0]["mountPoints"] = serde_json::json!([{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}]);
        v
    }

    #[test]
    fn net_raw_and_net_admin_may_be_added_but_not_sys_admin() {
        let mut v = base();
        v["containerDefinitions"][0]["linuxParameters"] =
            serde_json::json!({"capabilities": {"add": ["NET_RAW", "NET_ADMIN", "SYS_PTRACE"]}});
        let spec = task_definition(&input(v.clone())).unwrap();
        assert_eq!(
            spec.containers[0].run.capabilities_add,
            ["NET_RAW", "NET_ADMIN", "SYS_PTRACE"]
        );
        v["containerDefinitions"][0]["linuxParameters"] =
            serde_json::json!({"capabilities": {"add": ["SYS_ADMIN"]}});
        assert!(err(v).to_string().contains("adds 'SYS_ADMIN'"));
    }

    #[test]
    fn efs_volume_rules() {
        let spec = task_definition(&input(with_efs(serde_json::json!({
            "fileSystemId": "fs-0123456789abcdef0",
            "transitEncryption": "ENABLED",
            "authorizationConfig": {"accessPointId": "fsap-0123456789abcdef0", "iam": "DISABLED"}
        }))))
        .unwrap();
        match &spec.volumes[0].kind {
            VolumeKind::Efs {
                file_system_id,
                root_directory,
                access_point_id,
                iam,
                transit_encryption,
            } => {
                assert_eq!(file_system_id, "fs-0123456789abcdef0");
                assert_eq!(root_directory, "/");
                assert_eq!(access_point_id.as_deref(), Some("fsap-0123456789abcdef0"));
                assert_eq!((*iam, *transit_encryption), (false, true));
            }
            k => panic!("not EFS: {k:?}"),
        }
        assert!(spec.containers[0].run.mount_points[0].read_only);
        for (cfg, says) in [
            (serde_json::json!({"fileSystemId": "vol-1"}), "fileSystemId"),
            (
                serde_json::json!({"fileSystemId": "fs-1", "rootDirectory": "/a/../b"}),
                "rootDirectory",
            ),
            (
                serde_json::json!({"fileSystemId": "fs-1", "transitEncryption": "YES"}),
                "transitEncryption",
            ),
            (
                serde_json::json!({"fileSystemId": "fs-1",
                    "authorizationConfig": {"accessPointId": "fsap-1"}}),
                "transitEncryption must be ENABLED",
            ),
            (
                serde_json::json!({"fileSystemId": "fs-1", "transitEncryption": "ENABLED",
                    "rootDirectory": "/x", "authorizationConfig": {"accessPointId": "fsap-1"}}),
                "rootDirectory must be omitted",
            ),
            (
                serde_json::json!({"fileSystemId": "fs-1",
                    "authorizationConfig": {"iam": "ENABLED"}}),
                "transitEncryption must be ENABLED",
            ),
        ] {
            let e = err(with_efs(cfg.clone())).to_string();
            assert!(e.contains(says), "{cfg}: {e}");
        }
    }

    #[test]
    fn fargate_size_table() {
        let ok = [
            (256, 512),
            (256, 1024),
            (256, 2048),
            (512, 1024),
            (512, 4096),
            (1024, 2048),
            (1024, 8192),
            (2048, 16384),
            (4096, 8192),
            (4096, 30720),
            (8192, 16384),
            (8192, 20480),
            (8192, 61440),
            (16384, 32768),
            (16384, 40960),
            (16384, 122880),
        ];
        for (c, m) in ok {
            assert!(fargate_size_ok(c, m), "{c}/{m} should be valid");
        }
        let bad = [
            (256, 256),
            (256, 1536),
            (256, 3072),
            (512, 512),
            (512, 5120),
            (1024, 1024),
            (2048, 17408),
            (4096, 31744),
            (8192, 17408),
            (8192, 65536),
            (16384, 36864),
            (16384, 131072),
            (128, 512),
            (3072, 8192),
        ];
        for (c, m) in bad {
            assert!(!fargate_size_ok(c, m), "{c}/{m} should be invalid");
        }
    }

    #[test]
    fn cpu_and_memory_units() {
        assert_eq!(parse_cpu("256"), Some(256));
        assert_eq!(parse_cpu("0.25 vCPU"), Some(256));
        assert_eq!(parse_cpu("1 vcpu"), Some(1024));
        assert_eq!(parse_cpu("lots"), None);
        assert_eq!(parse_memory("0.5 GB"), Some(512));
        assert_eq!(parse_memory("2GB"), Some(2048));
        assert_eq!(parse_memory("512"), Some(512));
        assert_eq!(parse_memory("-1 GB"), None);
    }

    #[test]
    fn source_document_definition_is_valid() {
        let s = task_definition(&input(base())).unwrap();
        assert_eq!((s.cpu_units, s.memory_mib), (256, 512));
        assert_eq!(s.containers[0].run.port_mappings[0].container_port, 80);
        assert!(s.containers[0].run.essential);
        assert_eq!(s.ephemeral_storage_gib, None);
    }

    #[test]
    fn each_rule_gives_a_clear_client_exception() {
        let mut v = base();
        v["memory"] = "4096".into();
        let e = err(v);
        assert_eq!(e.code(), "ClientException");
        assert!(e.to_string().contains("256 CPU, 4096 memory"), "{e}");

        let mut v = base();
        v["networkMode"] = "bridge".into();
        assert!(err(v).to_string().contains("awsvpc"));

        let mut v = base();
        v.as_object_mut().unwrap().remove("cpu");
        assert!(err(v).to_string().contains("'cpu'"));

        for size in [20, 201] {
            let mut v = base();
            v["ephemeralStorage"] = serde_json::json!({"sizeInGiB": size});
            let e = err(v);
            assert!(e.to_string().contains("between 21 and 200"), "{e}");
        }
        let mut v = base();
        v["ephemeralStorage"] = serde_json::json!({"sizeInGiB": 21});
        assert_eq!(
            task_definition(&input(v)).unwrap().ephemeral_storage_gib,
            Some(21)
        );

        let mut v = base();
        let c = v["containerDefinitions"][0].clone();
        v["containerDefinitions"] = serde_json::json!([c.clone(), c]);
        assert!(
            err(v)
                .to_string()
                .contains("Duplicate container name 'app'")
        );

        let mut v = base();
        v["containerDefinitions"][0]["essential"] = false.into();
        assert!(err(v).to_string().contains("essential"));

        let mut v = base();
        v["containerDefinitions"][0]["portMappings"][0]["hostPort"] = 8080.into();
        let e = err(v);
        assert!(e.to_string().starts_with("When networkMode=awsvpc, the host ports and container ports in port mappings must match."), "{e}");

        let mut v = base();
        v["containerDefinitions"] = serde_json::json!([]);
        assert!(err(v).to_string().contains("cannot be empty"));

        let mut v = base();
        v["containerDefinitions"][0]["memory"] = 1024.into();
        assert!(err(v).to_string().contains("greater than for the task"));

        let mut v = base();
        v["family"] = "bad name".into();
        assert!(err(v).to_string().contains("Family"));
    }

    #[test]
    fn essential_defaults_to_true_and_omitted_host_port_is_fine() {
        let mut v = base();
        let c = v["containerDefinitions"][0].as_object_mut().unwrap();
        c.remove("essential");
        c["portMappings"] = serde_json::json!([{"containerPort": 8080}]);
        let s = task_definition(&input(v)).unwrap();
        assert!(s.containers[0].run.essential);
        assert_eq!(s.containers[0].run.port_mappings[0].protocol, "tcp");
    }

    #[test]
    fn health_check_defaults_ranges_and_commands() {
        let mut v = base();
        v["containerDefinitions"][0]["healthCheck"] =
            serde_json::json!({"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]});
        let s = task_definition(&input(v)).unwrap();
        assert_eq!(
            s.containers[0].run.health_check,
            Some(HealthCheck {
                command: HealthCommand::Shell("curl -f http://localhost/ || exit 1".into()),
                interval_secs: 30,
                timeout_secs: 5,
                retries: 3,
                start_period_secs: 0,
            })
        );
        let mut v = base();
        v["containerDefinitions"][0]["healthCheck"] = serde_json::json!({
            "command": ["CMD", "test", "-f", "/ok"], "interval": 5, "timeout": 60,
            "retries": 10, "startPeriod": 300});
        let h = task_definition(&input(v)).unwrap().containers[0]
            .run
            .health_check
            .clone()
            .unwrap();
        assert_eq!(h.command.argv(), vec!["test", "-f", "/ok"]);
        assert_eq!(
            (
                h.interval_secs,
                h.timeout_secs,
                h.retries,
                h.start_period_secs
            ),
            (5, 60, 10, 300)
        );
        assert_eq!(
            HealthCommand::Shell("a b".into()).argv(),
            vec!["sh", "-c", "a b"]
        );
        assert!(
            base()["containerDefinitions"][0]
                .get("healthCheck")
                .is_none()
        );
        assert!(
            task_definition(&input(base())).unwrap().containers[0]
                .run
                .health_check
                .is_none()
        );

        for (hc, says) in [
            (serde_json::json!({"command": ["NONE"]}), "CMD or CMD-SHELL"),
            (
                serde_json::json!({"command": ["curl", "x"]}),
                "CMD or CMD-SHELL",
            ),
            (serde_json::json!({"command": []}), "CMD or CMD-SHELL"),
            (serde_json::json!({"command": ["CMD"]}), "cannot be empty"),
            (
                serde_json::json!({"command": ["CMD-SHELL", ""]}),
                "cannot be empty",
            ),
            (
                serde_json::json!({"command": ["CMD", "x"], "interval": 4}),
                "interval must be between 5 and 300 seconds (4 given)",
            ),
            (
                serde_json::json!({"command": ["CMD", "x"], "interval": 301}),
                "interval",
            ),
            (
                serde_json::json!({"command": ["CMD", "x"], "timeout": 1}),
                "timeout must be between 2 and 60 seconds",
            ),
            (
                serde_json::json!({"command": ["CMD", "x"], "timeout": 61}),
                "timeout",
            ),
            (
                serde_json::json!({"command": ["CMD", "x"], "retries": 0}),
                "retries must be between 1 and 10 (0 given)",
            ),
            (
                serde_json::json!({"command": ["CMD", "x"], "retries": 11}),
                "retries",
            ),
            (
                serde_json::json!({"command": ["CMD", "x"], "startPeriod": -1}),
                "startPeriod",
            ),
            (
                serde_json::json!({"command": ["CMD", "x"], "startPeriod": 301}),
                "startPeriod must be between 0 and 300 seconds",
            ),
        ] {
            let mut v = base();
            v["containerDefinitions"][0]["healthCheck"] = hc.clone();
            let e = err(v);
            assert_eq!(e.code(), "ClientException");
            assert!(e.to_string().contains(says), "{hc}: {e}");
            assert!(e.to_string().contains("container 'app'"), "{e}");
        }
    }

    #[test]
    fn depending_on_healthy_needs_a_health_check() {
        let mut v = base();
        v["containerDefinitions"][0]["essential"] = true.into();
        v["containerDefinitions"] = serde_json::json!([
            v["containerDefinitions"][0].clone(),
            {"name": "side", "image": "busybox", "essential": false,
             "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}]}
        ]);
        let e = err(v.clone());
        assert_eq!(e.code(), "ClientException");
        assert!(e.to_string().contains("has no healthCheck"), "{e}");
        v["containerDefinitions"][0]["healthCheck"] =
            serde_json::json!({"command": ["CMD", "true"]});
        let s = task_definition(&input(v)).unwrap();
        assert_eq!(s.containers[1].run.depends_on[0].condition, "HEALTHY");
    }

    #[test]
    fn count_and_platform() {
        assert_eq!(check_count(None).unwrap(), 1);
        assert_eq!(check_count(Some(10)).unwrap(), 10);
        for c in [0, 11, -1] {
            assert_eq!(
                check_count(Some(c)).unwrap_err().code(),
                "InvalidParameterException"
            );
        }
        assert_eq!(platform(None).unwrap(), Platform::V1_4_0);
        assert_eq!(platform(Some("LATEST")).unwrap().as_str(), "1.4.0");
        assert_eq!(platform(Some("1.3.0")).unwrap(), Platform::V1_3_0);
        assert_eq!(
            platform(Some("1.2.0")).unwrap_err().code(),
            "PlatformUnknownException"
        );
    }
}
