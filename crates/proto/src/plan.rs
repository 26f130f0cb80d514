//! The contract between the control plane (`ferry-control`, which decides)
//! and the agent (`ferry-agent`, which executes). The control plane turns a
//! task definition plus RunTask overrides into a [`TaskPlan`]; the agent runs
//! it and reports [`TaskEvent`]s back. Nothing here knows about HTTP, the ECS
//! wire shapes, images or keys, so the control plane compiles without the
//! agent and the agent without the control plane.
//!
//! A plan is persisted with its task record (serde field names are part of
//! the state store's format). The one exception is
//! [`ContainerPlan::secret_env`] and [`ContainerPlan::registry_auth`]:
//! resolved secret values and registry credentials travel in memory only,
//! never serialized.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// One task to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskPlan {
    /// `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/TASK_ID`.
    pub task_arn: String,
    /// The task id (last ARN component), used to name host resources.
    pub task_id: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// The account id.
    pub account: String,
    /// The region.
    pub region: String,
    /// Task-level CPU in CPU units (1024 = one vCPU).
    pub cpu_units: u32,
    /// Task-level memory in MiB.
    pub memory_mib: u32,
    /// Ephemeral storage size in GiB (20 default, 21..=200 when asked).
    pub ephemeral_storage_gib: u32,
    /// How the ephemeral storage is protected (by platform version).
    pub storage: StoragePlan,
    /// The task's containers, in task-definition order.
    pub containers: Vec<ContainerPlan>,
    /// Task volumes (`volumes[]` of the task definition).
    pub volumes: Vec<VolumePlan>,
    /// The task's network interface (awsvpc): allocated by the VPC service
    /// at launch. Absent in plans stored before VPCs existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::net::InterfacePlan>,
}

impl TaskPlan {
    /// The same plan without resolved secret values, for whatever keeps a
    /// plan beyond the creation of the containers (hooks, caches).
    #[must_use]
    pub fn without_secrets(&self) -> Self {
        let mut p = self.clone();
        for c in &mut p.containers {
            c.secret_env = SecretEnv::default();
            c.registry_auth = None;
        }
        p
    }
}

/// Ephemeral storage protection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoragePlan {
    /// Platform version 1.4.0 / LATEST: LUKS2, data key from this KMS key.
    Encrypted {
        /// ARN of the KMS key wrapping the task's data key (the platform
        /// key, or the cluster's customer-managed key).
        kms_key_arn: String,
    },
    /// Platform version 1.3.0: plain ext4 image of the same size.
    Unencrypted,
}

/// One container of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerPlan {
    /// Unique within the task.
    pub name: String,
    /// Image reference as written in the task definition (`httpd:2.4`).
    pub image: String,
    /// `entryPoint`; empty means the image's.
    pub entry_point: Vec<String>,
    /// `command`; empty means the image's.
    pub command: Vec<String>,
    /// `environment`, after overrides, in order.
    pub environment: Vec<(String, String)>,
    /// `workingDirectory`.
    pub working_directory: Option<String>,
    /// `user` (`uid`, `uid:gid`, or a name from the image's /etc/passwd).
    pub user: Option<String>,
    /// Whether the task stops when this container exits.
    pub essential: bool,
    /// `dependsOn`.
    pub depends_on: Vec<Dependency>,
    /// Seconds between SIGTERM and SIGKILL at stop (`stopTimeout`, default 30).
    pub stop_timeout_secs: u32,
    /// `linuxParameters.capabilities.add` (ECS names, e.g. `SYS_PTRACE`):
    /// added to Docker's default set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities_add: Vec<String>,
    /// `linuxParameters.capabilities.drop` (ECS names, or `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities_drop: Vec<String>,
    /// `startTimeout`: how long containers that depend on this one wait for
    /// it to reach their condition, from its start; then they give up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout_secs: Option<u32>,
    /// `readonlyRootFilesystem`.
    pub readonly_root_filesystem: bool,
    /// `portMappings` (containerPort == hostPort in awsvpc mode).
    pub port_mappings: Vec<PortMapping>,
    /// `mountPoints`.
    pub mount_points: Vec<MountPoint>,
    /// `logConfiguration` when the driver is `awslogs`.
    pub awslogs: Option<AwsLogs>,
    /// Container `memory`: the hard limit, MiB (the container is killed
    /// with `OutOfMemoryError` beyond it). Set at launch from the task
    /// definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<u32>,
    /// Container `memoryReservation`: the soft limit, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation_mib: Option<u32>,
    /// Container `cpu` units: the container's weight within the task's CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_units: Option<u32>,
    /// `healthCheck`, with ECS's defaults filled in. Absent in plans
    /// stored before health checks existed.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// `secrets`, resolved at task start: added to the environment after
    /// `environment` (a secret wins over a variable of the same name).
    /// Never serialized: a plan is stored with its task record, and the
    /// values must reach nothing but the container's spec on the task's
    /// encrypted volume.
    #[serde(skip)]
    pub secret_env: SecretEnv,
    /// Credentials for the registry of `image`: from
    /// `repositoryCredentials` (a Secrets Manager secret read as the
    /// execution role), or a login to ferry's own registry. Never
    /// serialized, for the same reason as `secret_env`.
    #[serde(skip)]
    pub registry_auth: Option<RegistryAuth>,
}

/// A username and password for an image registry. The password is zeroized
/// when the last clone drops (clones share it), and `Debug` prints the
/// username only.
#[derive(Clone)]
pub struct RegistryAuth(Arc<(String, Zeroizing<String>)>);

impl RegistryAuth {
    /// Credentials of `username` with `password`.
    pub fn new(username: String, password: Zeroizing<String>) -> Self {
        Self(Arc::new((username, password)))
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.0.0
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.0.1
    }
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryAuth({}:<redacted>)", self.username())
    }
}

/// Resolved secret values of one container: `(name, value)` pairs. The
/// values are zeroized when the last clone is dropped (clones share them),
/// and `Debug` prints the names only.
#[derive(Clone, Default)]
pub struct SecretEnv(Arc<Vec<(String, Zeroizing<String>)>>);

impl SecretEnv {
    /// The pairs, in the task definition's order.
    pub fn new(pairs: Vec<(String, Zeroizing<String>)>) -> Self {
        Self(Arc::new(pairs))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The names, for messages and logs.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.names().map(|n| format!("{n}=<redacted>")))
            .finish()
    }
}

/// `healthCheck` of a container: run inside the container every
/// `interval_secs`; UNHEALTHY after `retries` consecutive failures,
/// HEALTHY on the first success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to run.
    pub command: HealthCommand,
    /// Seconds between the end of one check and the start of the next
    /// (5..=300, default 30); the first check runs this long after start.
    pub interval_secs: u32,
    /// Seconds one check may take before it counts as failed (2..=60,
    /// default 5).
    pub timeout_secs: u32,
    /// Consecutive failures that make the container UNHEALTHY (1..=10,
    /// default 3).
    pub retries: u32,
    /// Grace period after start in which failures do not count (0..=300,
    /// default 0 = none).
    pub start_period_secs: u32,
}

/// The health check's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthCommand {
    /// `["CMD", argv...]`: executed as given.
    Exec(Vec<String>),
    /// `["CMD-SHELL", "cmd"]`: run with `sh -c`.
    Shell(String),
}

impl HealthCommand {
    /// The argv to execute in the container.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Exec(a) => a.clone(),
            Self::Shell(c) => vec!["sh".into(), "-c".into(), c.clone()],
        }
    }
}

/// A container's (or task's) health, as ECS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthStatus {
    /// Its health check passed.
    Healthy,
    /// Its health check failed `retries` times in a row.
    Unhealthy,
    /// Not evaluated yet, or no health check.
    #[default]
    Unknown,
}

impl HealthStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "HEALTHY",
            Self::Unhealthy => "UNHEALTHY",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// `dependsOn[]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dependency {
    /// The container depended on.
    pub container_name: String,
    /// `START`, `COMPLETE`, `SUCCESS` or `HEALTHY`.
    pub condition: String,
}

/// `portMappings[]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortMapping {
    /// The port inside the task's network namespace.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// `mountPoints[]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountPoint {
    /// Name of a task volume.
    pub source_volume: String,
    /// Path inside the container.
    pub container_path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// `volumes[]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumePlan {
    /// The volume's name.
    pub name: String,
    /// Where it lives.
    pub kind: VolumeKind,
}

/// Kinds of task volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum VolumeKind {
    /// No host path: a directory on the task's ephemeral volume, shared by
    /// the task's containers.
    Ephemeral,
    /// An EFS-style persistent file system.
    Efs {
        /// `fs-...`.
        file_system_id: String,
        /// `rootDirectory` (default `/`).
        root_directory: String,
        /// `authorizationConfig.accessPointId`.
        access_point_id: Option<String>,
        /// `authorizationConfig.iam` ENABLED: the task mounts as its task
        /// role (else anonymously), for the file-system policy.
        #[serde(default)]
        iam: bool,
        /// `transitEncryption` ENABLED (`aws:SecureTransport` for the
        /// file-system policy).
        #[serde(default)]
        transit_encryption: bool,
    },
}

/// `logConfiguration` with `logDriver: awslogs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsLogs {
    /// `awslogs-group`.
    pub group: String,
    /// `awslogs-stream-prefix`; the stream is `PREFIX/CONTAINER/TASK_ID`.
    pub stream_prefix: Option<String>,
    /// `awslogs-create-group: "true"`: create the group if it is missing.
    /// Otherwise a missing group fails the task, as on Fargate.
    #[serde(default)]
    pub create_group: bool,
}

/// What the agent reports about a task, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TaskEvent {
    /// Network and volume are ready (`PENDING` from here on).
    Provisioned {
        /// The task's address (the ENI's `privateIPv4Address`).
        private_ip: String,
    },
    /// The images are being resolved and, when not in the local store,
    /// pulled (`pullStartedAt`). Always follows `Provisioned`.
    PullStarted,
    /// Every image is in the local store, or a pull failed
    /// (`pullStoppedAt`). `failed` maps each container whose image could not
    /// be pulled to its `reason` (`CannotPullContainerError: ...`); the task
    /// then stops with `TaskFailedToStart`.
    PullStopped {
        /// Container name -> reason, for the containers that cannot start.
        #[serde(default)]
        failed: std::collections::BTreeMap<String, String>,
    },
    /// A container started.
    ContainerRunning {
        /// Its name.
        name: String,
    },
    /// Every essential container is running: the task is `RUNNING`.
    Running,
    /// A container exited.
    ContainerExited {
        /// Its name.
        name: String,
        /// Its exit code.
        exit_code: i32,
        /// Why, when not a plain exit.
        reason: Option<String>,
    },
    /// A container's health check status changed (it starts UNKNOWN).
    ContainerHealth {
        /// Its name.
        name: String,
        /// The new status.
        status: HealthStatus,
    },
    /// The task is gone and everything of it is released.
    Stopped {
        /// `TaskFailedToStart`, `EssentialContainerExited`, `UserInitiated`
        /// or `ServiceSchedulerInitiated`.
        stop_code: String,
        /// Human-readable reason.
        stopped_reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> ContainerPlan {
        serde_json::from_value(serde_json::json!({
            "name": "app", "image": "busybox", "entry_point": [], "command": [],
            "environment": [["A", "1"]], "working_directory": null, "user": null,
            "essential": true, "depends_on": [], "stop_timeout_secs": 30,
            "readonly_root_filesystem": false, "port_mappings": [], "mount_points": [],
            "awslogs": null
        }))
        .unwrap()
    }

    #[test]
    fn secret_values_are_neither_serialized_nor_printed() {
        let mut c = container();
        assert!(c.secret_env.is_empty());
        c.secret_env = SecretEnv::new(vec![(
            "DB_PASSWORD".into(),
            "hunter2-xyz".to_owned().into(),
        )]);
        c.registry_auth = Some(RegistryAuth::new(
            "puller".into(),
            "reg-pw-xyz".to_owned().into(),
        ));
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            !json.contains("hunter2-xyz") && !json.contains("DB_PASSWORD"),
            "{json}"
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2-xyz"), "{dbg}");
        assert!(
            !json.contains("reg-pw-xyz") && !json.contains("puller"),
            "{json}"
        );
        assert!(!dbg.contains("reg-pw-xyz"), "{dbg}");
        assert!(dbg.contains("DB_PASSWORD=<redacted>"), "{dbg}");
        // A stored plan comes back without values.
        let back: ContainerPlan = serde_json::from_str(&json).unwrap();
        assert!(back.secret_env.is_empty() && back.registry_auth.is_none());
        let plan = TaskPlan {
            task_arn: "a".into(),
            task_id: "t".into(),
            cluster_name: "c".into(),
            account: "1".into(),
            region: "r".into(),
            cpu_units: 256,
            memory_mib: 512,
            ephemeral_storage_gib: 20,
            storage: StoragePlan::Unencrypted,
            containers: vec![c],
            volumes: vec![],
            network: None,
        };
        assert_eq!(
            plan.containers[0].secret_env.iter().collect::<Vec<_>>(),
            vec![("DB_PASSWORD", "hunter2-xyz")]
        );
        assert!(plan.without_secrets().containers[0].secret_env.is_empty());
        assert!(plan.without_secrets().containers[0].registry_auth.is_none());
        assert!(plan.containers[0].registry_auth.is_some());
    }
}
