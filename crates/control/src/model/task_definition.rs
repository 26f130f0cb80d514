//! A task definition revision: the document as registered (echoed back
//! verbatim) plus the parsed spec the control plane plans tasks from.

use ferry_proto::plan::{ContainerPlan, VolumePlan};
use serde::{Deserialize, Serialize};

use crate::wire::Tag;

/// What ferry runs, parsed from a valid Fargate task definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefSpec {
    /// Task CPU units.
    pub cpu_units: u32,
    /// Task memory, MiB.
    pub memory_mib: u32,
    /// `ephemeralStorage.sizeInGiB` when given (21..=200).
    pub ephemeral_storage_gib: Option<u32>,
    /// Containers, in order.
    pub containers: Vec<ContainerPlan>,
    /// Task volumes.
    pub volumes: Vec<VolumePlan>,
}

/// One revision of a family.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefRecord {
    /// Family.
    pub family: String,
    /// Revision (1, 2, ...).
    pub revision: u32,
    /// ARN.
    pub arn: String,
    /// ACTIVE until deregistered.
    pub active: bool,
    /// The registered document (without `tags`), as the client sent it.
    pub document: serde_json::Map<String, serde_json::Value>,
    /// The parsed spec.
    pub spec: TaskDefSpec,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Registration time.
    pub registered_at: f64,
    /// Deregistration time.
    #[serde(default)]
    pub deregistered_at: Option<f64>,
    /// Who registered it (principal ARN).
    pub registered_by: String,
}

impl TaskDefRecord {
    /// `ACTIVE` or `INACTIVE`.
    pub fn status(&self) -> &'static str {
        if self.active { "ACTIVE" } else { "INACTIVE" }
    }
}

/// A family's bookkeeping: revisions are never reused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyRecord {
    /// The highest revision ever registered.
    pub last_revision: u32,
    /// How many revisions are ACTIVE.
    pub active_revisions: u32,
}
