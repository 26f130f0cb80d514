//! A cluster.

use serde::{Deserialize, Serialize};

use crate::capacity::StrategyItem;
use crate::wire::Tag;
use crate::wire::cluster::{ClusterConfiguration, ClusterSetting, ServiceConnectDefaults};

/// A cluster record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    /// Name (the store key).
    pub name: String,
    /// ARN.
    pub arn: String,
    /// Whether the cluster is deleted.
    pub active: bool,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Settings as given.
    #[serde(default)]
    pub settings: Vec<ClusterSetting>,
    /// Configuration as given (echoed).
    #[serde(default)]
    pub configuration: Option<ClusterConfiguration>,
    /// The checked ARN of `fargateEphemeralStorageKmsKeyId`, used for new
    /// tasks' storage.
    #[serde(default)]
    pub storage_key_arn: Option<String>,
    /// When it was created (epoch seconds).
    pub created_at: f64,
    /// `capacityProviders`: which of FARGATE and FARGATE_SPOT tasks may use.
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    /// `defaultCapacityProviderStrategy`: used when RunTask or
    /// CreateService gives neither a strategy nor a launch type.
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<StrategyItem>,
    /// `serviceConnectDefaults` as given (kept and echoed: ferry has no
    /// Service Connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_defaults: Option<ServiceConnectDefaults>,
}

impl ClusterRecord {
    /// `ACTIVE` or `INACTIVE`.
    pub fn status(&self) -> &'static str {
        if self.active { "ACTIVE" } else { "INACTIVE" }
    }
}

/// Why a cluster name is invalid, if it is.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "Cluster name '{name}' is invalid: it must be 1 to 255 characters long."
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "Cluster name '{name}' is invalid: up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed."
        ));
    }
    Ok(())
}
