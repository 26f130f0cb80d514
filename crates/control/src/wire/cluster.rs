//! The `Cluster` shape and its parts.

use serde::{Deserialize, Serialize};

use super::{KeyValuePair, Tag};
use crate::capacity::StrategyItem;

/// `ClusterServiceConnectDefaults(Request)`: the default Cloud Map
/// namespace, kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConnectDefaults {
    /// Namespace name or ARN.
    pub namespace: String,
}

/// `ClusterSetting`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSetting {
    /// `containerInsights`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `enabled`, `disabled` or `enhanced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `ClusterConfiguration`. `executeCommandConfiguration` is kept as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfiguration {
    /// Kept and echoed, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_command_configuration: Option<serde_json::Value>,
    /// Keys for managed storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_storage_configuration: Option<ManagedStorageConfiguration>,
}

/// `ManagedStorageConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStorageConfiguration {
    /// Key for managed (EBS) storage; kept and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Customer-managed key for Fargate ephemeral storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fargate_ephemeral_storage_kms_key_id: Option<String>,
}

/// `Cluster`, as DescribeClusters and friends return it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// ARN.
    pub cluster_arn: String,
    /// Name.
    pub cluster_name: String,
    /// Configuration (with `include: CONFIGURATIONS`, and on writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ClusterConfiguration>,
    /// `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// Always 0: Fargate only.
    pub registered_container_instances_count: u32,
    /// Tasks whose lastStatus is RUNNING.
    pub running_tasks_count: u32,
    /// Tasks on their way to RUNNING.
    pub pending_tasks_count: u32,
    /// Services (none until services exist).
    pub active_services_count: u32,
    /// With `include: STATISTICS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Vec<KeyValuePair>>,
    /// With `include: TAGS`, and on CreateCluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// With `include: SETTINGS`, and on writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<Vec<ClusterSetting>>,
    /// The cluster's capacity providers (of FARGATE, FARGATE_SPOT).
    pub capacity_providers: Vec<String>,
    /// The cluster's default strategy.
    pub default_capacity_provider_strategy: Vec<StrategyItem>,
    /// As given to CreateCluster/UpdateCluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_connect_defaults: Option<ServiceConnectDefaults>,
    /// With `include: ATTACHMENTS`: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<serde_json::Value>>,
}
