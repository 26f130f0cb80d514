//! A service record: what the user asked for (desired count, task
//! definition, platform version, deployment configuration) and what the
//! scheduler keeps (deployments, events, the tasks it launched, backoff).

use serde::{Deserialize, Serialize};

use crate::wire::{NetworkConfiguration, Tag};

/// At most this many events are kept per service (newest first), as ECS.
pub const MAX_EVENTS: usize = 100;

/// One deployment of a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `ecs-svc/NNNNNNNNNNNNNNNNNNN`; also the `startedBy` of its tasks.
    pub id: String,
    /// `PRIMARY` or `ACTIVE`.
    pub status: String,
    /// Task definition ARN.
    pub task_definition: String,
    /// Desired tasks of this deployment.
    pub desired_count: u32,
    /// The platform version as requested (`LATEST`, `1.4.0`, `1.3.0`).
    pub requested_platform: String,
    /// The customer-managed key pinned when the deployment was created
    /// (a cluster key change applies to new deployments only).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub rollout_state: String,
    /// Why it is in that state.
    pub rollout_state_reason: String,
    /// Tasks of this deployment that failed to start.
    #[serde(default)]
    pub failed_tasks: u32,
    /// `createdAt`.
    pub created_at: f64,
    /// `updatedAt`.
    pub updated_at: f64,
}

/// One service event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    /// Event id.
    pub id: String,
    /// When.
    pub created_at: f64,
    /// The message.
    pub message: String,
}

/// A service record (store key `CLUSTER/NAME`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// Cluster name.
    pub cluster_name: String,
    /// Cluster ARN.
    pub cluster_arn: String,
    /// `ACTIVE`, `DRAINING` (being deleted) or `INACTIVE` (deleted).
    pub status: String,
    /// desiredCount.
    pub desired_count: u32,
    /// The current task definition ARN.
    pub task_definition: String,
    /// The platform version as requested.
    pub platform_version: String,
    /// `networkConfiguration` as given (stored in the same JSON shape as
    /// when it was kept as raw JSON, so older records read unchanged).
    pub network_configuration: NetworkConfiguration,
    /// `deploymentConfiguration.maximumPercent`.
    pub maximum_percent: u32,
    /// `deploymentConfiguration.minimumHealthyPercent`.
    pub minimum_healthy_percent: u32,
    /// `deploymentCircuitBreaker.enable`.
    #[serde(default)]
    pub circuit_breaker: bool,
    /// Deployments, PRIMARY first.
    pub deployments: Vec<Deployment>,
    /// Events, newest first.
    #[serde(default)]
    pub events: Vec<ServiceEvent>,
    /// Ids of tasks launched and not yet seen STOPPED.
    #[serde(default)]
    pub tracked: Vec<String>,
    /// Tasks that failed to start in a row (backoff).
    #[serde(default)]
    pub consecutive_failures: u32,
    /// No launch before this time (epoch seconds; backoff).
    #[serde(default)]
    pub next_launch_at: f64,
    /// Whether the "steady state" event was sent for the current state.
    #[serde(default)]
    pub steady: bool,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// `propagateTags`.
    #[serde(default)]
    pub propagate_tags: Option<String>,
    /// `createdAt`.
    pub created_at: f64,
    /// `createdBy`.
    pub created_by: String,
    /// `capacityProviderStrategy` (empty: launch type FARGATE).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<crate::capacity::StrategyItem>,
    /// Grows with every write: a writer that read the record checks it in
    /// the transaction that writes it back, so an update made through
    /// another replica meanwhile is never overwritten.
    #[serde(default)]
    pub version: u64,
}

impl ServiceRecord {
    /// The PRIMARY deployment.
    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.status == "PRIMARY")
    }

    /// Adds an event (newest first, bounded).
    pub fn event(&mut self, now: f64, message: String) {
        self.events.insert(
            0,
            ServiceEvent {
                id: uuid::Uuid::new_v4().to_string(),
                created_at: now,
                message,
            },
        );
        self.events.truncate(MAX_EVENTS);
    }

    /// The task `group` of its tasks.
    pub fn group(&self) -> String {
        format!("service:{}", self.name)
    }
}

/// A new deployment id (`ecs-svc/` and 19 digits, as ECS).
pub fn deployment_id() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 10u128.pow(19);
    format!("ecs-svc/{n:019}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A service record as servers before the typed network configuration
    /// stored it.
    fn old_record() -> Value {
        json!({
            "name": "web", "arn": "arn:aws:ecs:r:a:service/default/web",
            "clusterName": "default", "clusterArn": "arn:aws:ecs:r:a:cluster/default",
            "status": "ACTIVE", "desiredCount": 2,
            "taskDefinition": "arn:aws:ecs:r:a:task-definition/f:1",
            "platformVersion": "LATEST",
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": ["subnet-1", "subnet-2"], "securityGroups": ["sg-1"],
                "assignPublicIp": "ENABLED"}},
            "maximumPercent": 200, "minimumHealthyPercent": 100,
            "deployments": [], "createdAt": 1.5, "createdBy": "arn:aws:iam::a:root"
        })
    }

    #[test]
    fn old_records_load_and_store_the_same_network_configuration() {
        let rec: ServiceRecord = serde_json::from_value(old_record()).unwrap();
        let a = rec
            .network_configuration
            .awsvpc_configuration
            .as_ref()
            .unwrap();
        assert_eq!(a.subnets, vec!["subnet-1", "subnet-2"]);
        assert_eq!(a.security_groups.as_deref(), Some(&["sg-1".to_owned()][..]));
        assert_eq!(a.assign_public_ip.as_deref(), Some("ENABLED"));
        let again = serde_json::to_value(&rec).unwrap();
        assert_eq!(
            again["networkConfiguration"],
            old_record()["networkConfiguration"]
        );
        // Byte for byte, for every shape a client could have sent.
        for raw in [
            json!({"awsvpcConfiguration": {"subnets": ["s"]}}),
            json!({"awsvpcConfiguration": {"subnets": ["s"], "securityGroups": []}}),
            json!({"awsvpcConfiguration": {"assignPublicIp": "DISABLED", "subnets": ["s", "t"],
                "securityGroups": ["sg-1", "sg-2"]}}),
        ] {
            let typed: NetworkConfiguration = serde_json::from_value(raw.clone()).unwrap();
            assert_eq!(
                serde_json::to_string(&typed).unwrap(),
                serde_json::to_string(&raw).unwrap()
            );
        }
    }

    #[test]
    fn malformed_recorded_only_fields_do_not_make_a_record_unreadable() {
        let mut v = old_record();
        v["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] = json!("sg-1");
        v["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] = json!(true);
        let rec: ServiceRecord = serde_json::from_value(v).unwrap();
        let a = rec.network_configuration.awsvpc_configuration.unwrap();
        assert_eq!(a.subnets, vec!["subnet-1", "subnet-2"]);
        assert_eq!((a.security_groups, a.assign_public_ip), (None, None));
    }
}
