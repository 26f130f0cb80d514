//! A task definition revision: the document as registered (echoed back
//! verbatim) plus the parsed spec the control plane plans tasks from.

use ferry_proto::plan::{ContainerPlan, VolumePlan};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    pub containers: Vec<ContainerDef>,
    /// Task volumes.
    pub volumes: Vec<VolumePlan>,
}

/// One container of a task definition, as control keeps it: what the
/// agent runs plus the container-level sizes tasks report (`cpu`,
/// `memory`, `memoryReservation`), which the agent does not need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerDef {
    /// What the agent runs, before RunTask overrides. Flattened: records
    /// stored before this type held the plan's fields alone, and still load.
    #[serde(flatten)]
    pub run: ContainerPlan,
    /// Container CPU units (0 when not set).
    #[serde(default)]
    pub cpu: i64,
    /// Hard memory limit, MiB.
    #[serde(default)]
    pub memory: Option<i64>,
    /// Soft memory limit, MiB.
    #[serde(default)]
    pub memory_reservation: Option<i64>,
    /// `secrets`: names and where the values come from; the values are
    /// fetched at each task's start and never stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretSpec>,
    /// `repositoryCredentials.credentialsParameter`: the Secrets Manager
    /// secret (ARN or name) with the image registry's username and
    /// password, read at each task's start as the execution role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_credentials: Option<String>,
}

/// One container secret as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// The environment variable.
    pub name: String,
    /// `valueFrom`, as registered (see [`crate::identity::secret_ref`]).
    pub value_from: String,
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
    /// DeleteTaskDefinitions asked for it while tasks or services still
    /// used it: DELETE_IN_PROGRESS until they are gone, then removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

impl TaskDefRecord {
    /// `ACTIVE`, `INACTIVE` or `DELETE_IN_PROGRESS`.
    pub fn status(&self) -> &'static str {
        match (self.active, self.deleting) {
            (true, _) => "ACTIVE",
            (false, false) => "INACTIVE",
            (false, true) => "DELETE_IN_PROGRESS",
        }
    }

    fn document_str(&self, key: &str) -> Option<&str> {
        self.document
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `taskRoleArn` as registered (a role ARN or name).
    pub fn task_role(&self) -> Option<&str> {
        self.document_str("taskRoleArn")
    }

    /// `executionRoleArn` as registered (a role ARN or name).
    pub fn execution_role(&self) -> Option<&str> {
        self.document_str("executionRoleArn")
    }

    /// Sets each container's `secrets` from the registered document, for
    /// records stored before secrets were served (the document kept them;
    /// the spec did not). Entries are taken as written: a malformed one
    /// fails the task at start instead. Returns whether anything changed.
    pub fn fill_secrets(&mut self) -> bool {
        let docs = self
            .document
            .get("containerDefinitions")
            .and_then(Value::as_array);
        let mut changed = false;
        for c in &mut self.spec.containers {
            let doc = docs.and_then(|a| {
                a.iter()
                    .find(|d| d.get("name").and_then(Value::as_str) == Some(c.run.name.as_str()))
            });
            let secrets: Vec<SecretSpec> = doc
                .and_then(|d| d.get("secrets"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|s| {
                    let field = |k: &str| {
                        s.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    SecretSpec {
                        name: field("name"),
                        value_from: field("valueFrom"),
                    }
                })
                .collect();
            if secrets != c.secrets {
                c.secrets = secrets;
                changed = true;
            }
        }
        changed
    }

    /// Sets each container's sizes from the registered document. Records
    /// stored before [`ContainerDef`] carried the sizes read as 0/none;
    /// the store upgrade fills them in once, exactly as tasks were given
    /// them then (read from the document at launch). Returns whether
    /// anything changed.
    pub fn fill_container_sizes(&mut self) -> bool {
        let docs = self
            .document
            .get("containerDefinitions")
            .and_then(Value::as_array);
        let mut changed = false;
        for c in &mut self.spec.containers {
            let doc = docs.and_then(|a| {
                a.iter()
                    .find(|d| d.get("name").and_then(Value::as_str) == Some(c.run.name.as_str()))
            });
            let int = |k: &str| doc.and_then(|d| d.get(k)).and_then(Value::as_i64);
            let sizes = (
                int("cpu").unwrap_or(0),
                int("memory"),
                int("memoryReservation"),
            );
            if sizes != (c.cpu, c.memory, c.memory_reservation) {
                (c.cpu, c.memory, c.memory_reservation) = sizes;
                changed = true;
            }
        }
        changed
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
