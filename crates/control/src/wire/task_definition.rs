//! The task definition as RegisterTaskDefinition takes it: typed where
//! ferry uses a field, with the whole document kept so every field (known
//! to ferry or not) is echoed back by DescribeTaskDefinition.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{EphemeralStorage, KeyValuePair, Tag};

/// `RegisterTaskDefinitionRequest`: the fields ferry interprets.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionInput {
    /// Family name.
    pub family: String,
    /// `awsvpc` for Fargate.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// `pidMode` (Fargate: `task` only).
    #[serde(default)]
    pub pid_mode: Option<String>,
    /// `ipcMode` (not supported on Fargate).
    #[serde(default)]
    pub ipc_mode: Option<String>,
    /// Containers.
    #[serde(default)]
    pub container_definitions: Vec<ContainerDefinition>,
    /// Task volumes.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// `FARGATE` etc.
    #[serde(default)]
    pub requires_compatibilities: Vec<String>,
    /// Task CPU: units (`"256"`) or vCPUs (`"0.25 vCPU"`).
    #[serde(default)]
    pub cpu: Option<String>,
    /// Task memory: MiB (`"512"`) or GB (`"0.5 GB"`).
    #[serde(default)]
    pub memory: Option<String>,
    /// Ephemeral storage size.
    #[serde(default)]
    pub ephemeral_storage: Option<EphemeralStorage>,
    /// `taskRoleArn`: the role whose credentials the containers get.
    #[serde(default)]
    pub task_role_arn: Option<String>,
    /// `executionRoleArn`: the role that fetches secrets and checks logs
    /// permissions at start.
    #[serde(default)]
    pub execution_role_arn: Option<String>,
    /// Tags for the revision (not part of the definition itself).
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// `ContainerDefinition`: the fields ferry interprets.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    /// Name, unique within the task.
    #[serde(default)]
    pub name: Option<String>,
    /// Image reference.
    #[serde(default)]
    pub image: Option<String>,
    /// Defaults to true.
    #[serde(default)]
    pub essential: Option<bool>,
    /// `entryPoint`.
    #[serde(default)]
    pub entry_point: Vec<String>,
    /// `command`.
    #[serde(default)]
    pub command: Vec<String>,
    /// `environment`.
    #[serde(default)]
    pub environment: Vec<KeyValuePair>,
    /// `secrets`: environment variables whose values are fetched at start.
    #[serde(default)]
    pub secrets: Vec<SecretInput>,
    /// `repositoryCredentials`: the image's registry credentials.
    #[serde(default)]
    pub repository_credentials: Option<RepositoryCredentialsInput>,
    /// `workingDirectory`.
    #[serde(default)]
    pub working_directory: Option<String>,
    /// `user`.
    #[serde(default)]
    pub user: Option<String>,
    /// `dependsOn`.
    #[serde(default)]
    pub depends_on: Vec<ContainerDependency>,
    /// `stopTimeout` in seconds.
    #[serde(default)]
    pub stop_timeout: Option<i64>,
    /// `startTimeout` in seconds.
    #[serde(default)]
    pub start_timeout: Option<i64>,
    /// `readonlyRootFilesystem`.
    #[serde(default)]
    pub readonly_root_filesystem: Option<bool>,
    /// `privileged` (not supported on Fargate).
    #[serde(default)]
    pub privileged: Option<bool>,
    /// `linuxParameters`.
    #[serde(default)]
    pub linux_parameters: Option<LinuxParameters>,
    /// `portMappings`.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// `mountPoints`.
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    /// `logConfiguration`.
    #[serde(default)]
    pub log_configuration: Option<LogConfiguration>,
    /// Container CPU units.
    #[serde(default)]
    pub cpu: Option<i64>,
    /// Hard memory limit, MiB.
    #[serde(default)]
    pub memory: Option<i64>,
    /// Soft memory limit, MiB.
    #[serde(default)]
    pub memory_reservation: Option<i64>,
    /// `healthCheck`.
    #[serde(default)]
    pub health_check: Option<HealthCheckInput>,
}

/// `RepositoryCredentials`: a Secrets Manager secret (ARN or name) whose
/// `SecretString` is `{"username": ..., "password": ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryCredentialsInput {
    /// The secret.
    #[serde(default)]
    pub credentials_parameter: Option<String>,
}

/// `Secret`: a variable name and where its value comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretInput {
    /// The environment variable.
    #[serde(default)]
    pub name: Option<String>,
    /// A Secrets Manager secret ARN (optionally with
    /// `:json-key:version-stage:version-id`), or an SSM parameter's ARN or
    /// name.
    #[serde(default)]
    pub value_from: Option<String>,
}

/// `HealthCheck` as registered (seconds; defaults applied in validation).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckInput {
    /// `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Default 30.
    #[serde(default)]
    pub interval: Option<i64>,
    /// Default 5.
    #[serde(default)]
    pub timeout: Option<i64>,
    /// Default 3.
    #[serde(default)]
    pub retries: Option<i64>,
    /// Default 0 (none).
    #[serde(default)]
    pub start_period: Option<i64>,
}

/// `ContainerDependency`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDependency {
    /// The container depended on.
    pub container_name: String,
    /// `START`, `COMPLETE`, `SUCCESS`, `HEALTHY`.
    pub condition: String,
}

/// `PortMapping`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Container port.
    #[serde(default)]
    pub container_port: Option<i64>,
    /// Host port (must equal containerPort in awsvpc).
    #[serde(default)]
    pub host_port: Option<i64>,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// `MountPoint`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    /// Volume name.
    #[serde(default)]
    pub source_volume: Option<String>,
    /// Path in the container.
    #[serde(default)]
    pub container_path: Option<String>,
    /// Read-only.
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// `LogConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    /// `awslogs`, ...
    pub log_driver: String,
    /// Driver options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `Volume`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// `host` (Fargate allows it only without `sourcePath`).
    #[serde(default)]
    pub host: Option<serde_json::Value>,
    /// `efsVolumeConfiguration`.
    #[serde(default)]
    pub efs_volume_configuration: Option<EfsVolumeConfiguration>,
    /// `dockerVolumeConfiguration` (not on Fargate).
    #[serde(default)]
    pub docker_volume_configuration: Option<serde_json::Value>,
    /// `fsxWindowsFileServerVolumeConfiguration` (not on Fargate Linux).
    #[serde(default)]
    pub fsx_windows_file_server_volume_configuration: Option<serde_json::Value>,
}

/// `EFSVolumeConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EfsVolumeConfiguration {
    /// `fs-...`.
    pub file_system_id: String,
    /// Root directory.
    #[serde(default)]
    pub root_directory: Option<String>,
    /// `ENABLED` or `DISABLED` (default). Recorded and validated; the file
    /// system is local to the host, so there is no transit to encrypt.
    #[serde(default)]
    pub transit_encryption: Option<String>,
    /// Port for transit encryption (recorded only).
    #[serde(default)]
    pub transit_encryption_port: Option<i64>,
    /// Access point.
    #[serde(default)]
    pub authorization_config: Option<EfsAuthorizationConfig>,
}

/// `EFSAuthorizationConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EfsAuthorizationConfig {
    /// `fsap-...`.
    #[serde(default)]
    pub access_point_id: Option<String>,
    /// `ENABLED` or `DISABLED`: EFS IAM authorization (requires transit
    /// encryption, as on AWS).
    #[serde(default)]
    pub iam: Option<String>,
}

/// `LinuxParameters`: what Fargate accepts of it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParameters {
    /// `capabilities` (`add`: only `SYS_PTRACE` on Fargate; `drop`).
    #[serde(default)]
    pub capabilities: Option<KernelCapabilities>,
    /// `devices` (not supported on Fargate).
    #[serde(default)]
    pub devices: Option<Vec<serde_json::Value>>,
    /// `sharedMemorySize` (not supported on Fargate).
    #[serde(default)]
    pub shared_memory_size: Option<i64>,
    /// `tmpfs` (not supported on Fargate).
    #[serde(default)]
    pub tmpfs: Option<Vec<serde_json::Value>>,
}

/// `KernelCapabilities`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelCapabilities {
    /// Capabilities to add.
    #[serde(default)]
    pub add: Vec<String>,
    /// Capabilities to drop.
    #[serde(default)]
    pub drop: Vec<String>,
}
