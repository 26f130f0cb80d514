//! A task record and the ECS task state machine.
//!
//! `lastStatus` only moves forward through [`TaskStatus`]; `desiredStatus`
//! is RUNNING until a stop is requested or an essential container exits.
//! Runtime events ([`TaskEvent`]) and stop requests are applied by
//! [`TaskRecord::apply`] and [`TaskRecord::request_stop`], which are pure
//! (the caller stores the result), so the whole machine is unit-tested.

use ferry_proto::plan::{HealthStatus, StoragePlan, TaskEvent, TaskPlan};
use serde::{Deserialize, Serialize};

use crate::wire::Tag;

/// `lastStatus` values, in lifecycle order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Recorded; the runtime is setting up network and volume.
    Provisioning,
    /// Network and volume ready; pulling/starting containers.
    Pending,
    /// Containers starting.
    Activating,
    /// Every essential container runs.
    Running,
    /// Stop requested while running.
    Deactivating,
    /// Containers are being stopped.
    Stopping,
    /// Containers are gone; the volume and network are being released.
    Deprovisioning,
    /// Nothing of the task is left.
    Stopped,
}

impl TaskStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Pending => "PENDING",
            Self::Activating => "ACTIVATING",
            Self::Running => "RUNNING",
            Self::Deactivating => "DEACTIVATING",
            Self::Stopping => "STOPPING",
            Self::Deprovisioning => "DEPROVISIONING",
            Self::Stopped => "STOPPED",
        }
    }
}

/// `TaskStopCode` values ferry records.
pub mod stop_code {
    /// The task never reached RUNNING.
    pub const TASK_FAILED_TO_START: &str = "TaskFailedToStart";
    /// An essential container exited.
    pub const ESSENTIAL_CONTAINER_EXITED: &str = "EssentialContainerExited";
    /// StopTask.
    pub const USER_INITIATED: &str = "UserInitiated";
    /// A service stopped it.
    pub const SERVICE_SCHEDULER_INITIATED: &str = "ServiceSchedulerInitiated";
    /// A FARGATE_SPOT task was reclaimed (`ferry spot interrupt`).
    pub const SPOT_INTERRUPTION: &str = "SpotInterruption";
}

/// One container of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// Name.
    pub name: String,
    /// Image as in the task definition.
    pub image: String,
    /// ARN.
    pub arn: String,
    /// Whether the task stops when it exits.
    pub essential: bool,
    /// `PENDING`, `RUNNING` or `STOPPED`.
    pub last_status: String,
    /// Exit code once stopped.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it stopped, when not a plain exit.
    #[serde(default)]
    pub reason: Option<String>,
    /// Port mappings (containerPort, protocol).
    #[serde(default)]
    pub ports: Vec<(u16, String)>,
    /// CPU units of the container definition.
    #[serde(default)]
    pub cpu: i64,
    /// Memory limit of the container definition.
    #[serde(default)]
    pub memory: Option<i64>,
    /// Memory reservation of the container definition.
    #[serde(default)]
    pub memory_reservation: Option<i64>,
    /// The last health status its health check reported (UNKNOWN until
    /// then, and always for containers without a health check).
    #[serde(default)]
    pub health_status: HealthStatus,
}

/// A task record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// The plan the runtime got (kept for reattaching after a restart; it
    /// holds no secrets).
    pub plan: TaskPlan,
    /// Cluster ARN.
    pub cluster_arn: String,
    /// Task definition ARN.
    pub task_definition_arn: String,
    /// Task definition family.
    pub family: String,
    /// lastStatus.
    pub last_status: TaskStatus,
    /// desiredStatus (RUNNING or STOPPED).
    pub desired_status: TaskStatus,
    /// Resolved platform version (`1.4.0` or `1.3.0`).
    pub platform_version: String,
    /// `ephemeralStorage.sizeInGiB` as requested (task definition or
    /// override), if any.
    #[serde(default)]
    pub requested_storage_gib: Option<u32>,
    /// The customer-managed key, when one protects the storage.
    #[serde(default)]
    pub cmk_arn: Option<String>,
    /// Containers.
    pub containers: Vec<ContainerRecord>,
    /// ENI attachment id.
    pub attachment_id: String,
    /// `eni-...`.
    pub eni_id: String,
    /// Subnet from the network configuration.
    pub subnet_id: String,
    /// The task's address once provisioned.
    #[serde(default)]
    pub private_ip: Option<String>,
    /// `createdAt`.
    pub created_at: f64,
    /// `connectivityAt`.
    #[serde(default)]
    pub connectivity_at: Option<f64>,
    /// `pullStartedAt`.
    #[serde(default)]
    pub pull_started_at: Option<f64>,
    /// `pullStoppedAt`.
    #[serde(default)]
    pub pull_stopped_at: Option<f64>,
    /// `startedAt`.
    #[serde(default)]
    pub started_at: Option<f64>,
    /// `stoppingAt`.
    #[serde(default)]
    pub stopping_at: Option<f64>,
    /// `executionStoppedAt`.
    #[serde(default)]
    pub execution_stopped_at: Option<f64>,
    /// `stoppedAt`.
    #[serde(default)]
    pub stopped_at: Option<f64>,
    /// `stopCode`.
    #[serde(default)]
    pub stop_code: Option<String>,
    /// `stoppedReason`.
    #[serde(default)]
    pub stopped_reason: Option<String>,
    /// `startedBy`.
    #[serde(default)]
    pub started_by: Option<String>,
    /// `group` (`family:NAME` by default).
    pub group: String,
    /// `overrides` as given to RunTask (echoed).
    #[serde(default)]
    pub overrides: serde_json::Value,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Scale-in protection: until when (epoch seconds), if set
    /// (UpdateTaskProtection). Services skip a protected task when they
    /// scale in or replace tasks.
    #[serde(default)]
    pub protected_until: Option<f64>,
    /// The roles the task runs with (names only: no credentials, no
    /// secret values are ever recorded).
    #[serde(default, skip_serializing_if = "TaskRoles::is_empty")]
    pub roles: TaskRoles,
    /// `capacityProviderName` (FARGATE or FARGATE_SPOT) when the task was
    /// placed by a capacity provider strategy; `None` with a launch type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    /// The host that runs it (its ferry server's `--name`), chosen at
    /// launch. Empty in records from before hosts: on a single-host store
    /// they are the local host's.
    #[serde(default)]
    pub host: String,
    /// Bumped on every change (`version`).
    pub version: u64,
}

/// A task's roles, as resolved at RunTask (definition, then overrides).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRoles {
    /// The task role's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// The execution role's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// The id under which the task role's credentials are served
    /// (`/v2/credentials/ID`); set with `task_role_arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_id: Option<String>,
}

impl TaskRoles {
    /// Whether the task has no role.
    pub fn is_empty(&self) -> bool {
        self.task_role_arn.is_none() && self.execution_role_arn.is_none()
    }
}

impl TaskRecord {
    /// The task's availability zone: its subnet's (`REGIONa` for tasks
    /// recorded before ENIs carried one).
    pub fn availability_zone(&self, region: &str) -> String {
        self.plan
            .network
            .as_ref()
            .map(|n| n.availability_zone.clone())
            .filter(|z| !z.is_empty())
            .unwrap_or_else(|| format!("{region}a"))
    }

    /// Whether scale-in protection is on at `now`.
    pub fn protected_at(&self, now: f64) -> bool {
        self.protected_until.is_some_and(|until| until > now)
    }

    /// The task's ARN.
    pub fn arn(&self) -> &str {
        &self.plan.task_arn
    }

    /// Whether the storage is encrypted.
    pub fn encrypted(&self) -> bool {
        matches!(self.plan.storage, StoragePlan::Encrypted { .. })
    }

    fn advance(&mut self, to: TaskStatus) {
        if to > self.last_status {
            self.last_status = to;
        }
    }

    fn set_stop(&mut self, code: &str, reason: &str, now: f64) {
        self.desired_status = TaskStatus::Stopped;
        if self.stop_code.is_none() {
            self.stop_code = Some(code.into());
        }
        if self.stopped_reason.is_none() {
            self.stopped_reason = Some(reason.into());
        }
        self.stopping_at.get_or_insert(now);
    }

    /// Records a stop request (StopTask, or a service). Returns whether
    /// anything changed; a stopped task is left alone.
    pub fn request_stop(&mut self, code: &str, reason: &str, now: f64) -> bool {
        if self.last_status == TaskStatus::Stopped || self.desired_status == TaskStatus::Stopped {
            return false;
        }
        self.set_stop(code, reason, now);
        if self.last_status == TaskStatus::Running {
            self.last_status = TaskStatus::Deactivating;
        }
        self.version += 1;
        true
    }

    /// Applies a runtime event. Returns whether anything changed; events
    /// after STOPPED are ignored and statuses never move backwards.
    pub fn apply(&mut self, event: &TaskEvent, now: f64) -> bool {
        if self.last_status == TaskStatus::Stopped {
            return false;
        }
        match event {
            TaskEvent::Provisioned { private_ip } => {
                self.private_ip = Some(private_ip.clone());
                self.connectivity_at.get_or_insert(now);
                self.advance(TaskStatus::Pending);
            }
            TaskEvent::PullStarted => {
                self.pull_started_at.get_or_insert(now);
            }
            TaskEvent::PullStopped { failed } => {
                self.pull_stopped_at.get_or_insert(now);
                // The container shows why it never started, as on ECS;
                // the task's stoppedReason comes with `Stopped`.
                for c in &mut self.containers {
                    if let Some(reason) = failed.get(&c.name) {
                        c.reason = Some(reason.clone());
                    }
                }
            }
            TaskEvent::ContainerRunning { name } => {
                let Some(c) = self.containers.iter_mut().find(|c| &c.name == name) else {
                    return false;
                };
                if c.last_status == "STOPPED" {
                    return false;
                }
                c.last_status = "RUNNING".into();
                self.advance(TaskStatus::Activating);
            }
            TaskEvent::Running => {
                if self.desired_status == TaskStatus::Stopped {
                    // A stop raced the start; the task is on its way down.
                    self.started_at.get_or_insert(now);
                    return true;
                }
                self.started_at.get_or_insert(now);
                self.advance(TaskStatus::Running);
            }
            TaskEvent::ContainerExited {
                name,
                exit_code,
                reason,
            } => {
                let Some(c) = self.containers.iter_mut().find(|c| &c.name == name) else {
                    return false;
                };
                c.last_status = "STOPPED".into();
                c.exit_code = Some(*exit_code);
                c.reason = reason.clone();
                let essential = c.essential;
                if essential && self.desired_status == TaskStatus::Running {
                    self.set_stop(
                        stop_code::ESSENTIAL_CONTAINER_EXITED,
                        "Essential container in task exited",
                        now,
                    );
                }
                if self.desired_status == TaskStatus::Stopped {
                    self.advance(TaskStatus::Stopping);
                }
                if self.containers.iter().all(|c| c.last_status == "STOPPED") {
                    self.execution_stopped_at.get_or_insert(now);
                    self.advance(TaskStatus::Deprovisioning);
                }
            }
            TaskEvent::ContainerHealth { name, status } => {
                let Some(c) = self.containers.iter_mut().find(|c| &c.name == name) else {
                    return false;
                };
                if c.health_status == *status {
                    return false;
                }
                c.health_status = *status;
            }
            TaskEvent::Stopped {
                stop_code,
                stopped_reason,
            } => {
                self.set_stop(stop_code, stopped_reason, now);
                self.execution_stopped_at.get_or_insert(now);
                self.stopped_at = Some(now);
                for c in &mut self.containers {
                    if c.last_status != "STOPPED" {
                        c.last_status = "STOPPED".into();
                    }
                }
                self.last_status = TaskStatus::Stopped;
            }
        }
        self.version += 1;
        true
    }

    /// The task's `healthStatus`, from its essential containers that have a
    /// health check (ECS ignores the others): UNHEALTHY if one is, else
    /// UNKNOWN if one is, else HEALTHY; UNKNOWN when there are none.
    pub fn health_status(&self) -> HealthStatus {
        let all: Vec<HealthStatus> = self
            .containers
            .iter()
            .filter(|c| c.essential && self.has_health_check(&c.name))
            .map(|c| c.health_status)
            .collect();
        if all.is_empty() {
            HealthStatus::Unknown
        } else if all.contains(&HealthStatus::Unhealthy) {
            HealthStatus::Unhealthy
        } else if all.contains(&HealthStatus::Unknown) {
            HealthStatus::Unknown
        } else {
            HealthStatus::Healthy
        }
    }

    /// Whether container `name` has a health check in the plan.
    pub fn has_health_check(&self, name: &str) -> bool {
        self.plan
            .containers
            .iter()
            .any(|p| p.name == name && p.health_check.is_some())
    }

    /// Whether the task's health matters to a service: an essential
    /// container has a health check.
    pub fn is_health_checked(&self) -> bool {
        self.plan
            .containers
            .iter()
            .any(|p| p.essential && p.health_check.is_some())
    }

    /// RUNNING and, when health-checked, HEALTHY: what a service counts
    /// towards its steady state and minimumHealthyPercent.
    pub fn is_healthy_running(&self) -> bool {
        self.last_status == TaskStatus::Running
            && (!self.is_health_checked() || self.health_status() == HealthStatus::Healthy)
    }

    /// Whether the task counts as pending for the cluster.
    pub fn is_pending(&self) -> bool {
        self.last_status < TaskStatus::Running
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ferry_proto::plan::ContainerPlan;

    fn container(name: &str, essential: bool) -> (ContainerPlan, ContainerRecord) {
        (
            ContainerPlan {
                name: name.into(),
                image: "busybox".into(),
                entry_point: vec![],
                command: vec![],
                environment: vec![],
                working_directory: None,
                user: None,
                essential,
                depends_on: vec![],
                stop_timeout_secs: 30,
                start_timeout_secs: None,
                capabilities_add: vec![],
                capabilities_drop: vec![],
                readonly_root_filesystem: false,
                port_mappings: vec![],
                mount_points: vec![],
                awslogs: None,
                memory_limit_mib: None,
                memory_reservation_mib: None,
                cpu_units: None,
                health_check: None,
                secret_env: Default::default(),
                registry_auth: None,
            },
            ContainerRecord {
                name: name.into(),
                image: "busybox".into(),
                arn: format!("arn:c/{name}"),
                essential,
                last_status: "PENDING".into(),
                exit_code: None,
                reason: None,
                ports: vec![],
                cpu: 0,
                memory: None,
                memory_reservation: None,
                health_status: HealthStatus::Unknown,
            },
        )
    }

    pub(crate) fn task() -> TaskRecord {
        let (p1, c1) = container("app", true);
        let (p2, c2) = container("sidecar", false);
        TaskRecord {
            plan: TaskPlan {
                task_arn: "arn:aws:ecs:r:a:task/default/x".into(),
                task_id: "x".into(),
                cluster_name: "default".into(),
                account: "a".into(),
                region: "r".into(),
                cpu_units: 256,
                memory_mib: 512,
                ephemeral_storage_gib: 20,
                storage: StoragePlan::Unencrypted,
                containers: vec![p1, p2],
                volumes: vec![],
                network: None,
            },
            cluster_arn: "c".into(),
            task_definition_arn: "td".into(),
            family: "f".into(),
            last_status: TaskStatus::Provisioning,
            desired_status: TaskStatus::Running,
            platform_version: "1.4.0".into(),
            requested_storage_gib: None,
            cmk_arn: None,
            containers: vec![c1, c2],
            attachment_id: "att".into(),
            eni_id: "eni".into(),
            subnet_id: "subnet".into(),
            private_ip: None,
            created_at: 1.0,
            connectivity_at: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            stopping_at: None,
            execution_stopped_at: None,
            stopped_at: None,
            stop_code: None,
            stopped_reason: None,
            started_by: None,
            group: "family:f".into(),
            overrides: serde_json::Value::Null,
            tags: vec![],
            protected_until: None,
            roles: TaskRoles::default(),
            capacity_provider_name: None,
            host: String::new(),
            version: 1,
        }
    }

    fn run_up(t: &mut TaskRecord) {
        assert!(t.apply(
            &TaskEvent::Provisioned {
                private_ip: "198.18.0.2".into()
            },
            2.0
        ));
        assert_eq!(t.last_status, TaskStatus::Pending);
        assert_eq!(t.private_ip.as_deref(), Some("198.18.0.2"));
        t.apply(&TaskEvent::PullStarted, 2.5);
        t.apply(
            &TaskEvent::PullStopped {
                failed: Default::default(),
            },
            2.75,
        );
        assert_eq!(t.last_status, TaskStatus::Pending);
        t.apply(&TaskEvent::ContainerRunning { name: "app".into() }, 3.0);
        assert_eq!(t.last_status, TaskStatus::Activating);
        t.apply(
            &TaskEvent::ContainerRunning {
                name: "sidecar".into(),
            },
            3.5,
        );
        t.apply(&TaskEvent::Running, 4.0);
        assert_eq!(t.last_status, TaskStatus::Running);
        assert_eq!(t.started_at, Some(4.0));
        assert_eq!(t.pull_started_at, Some(2.5));
        assert_eq!(t.pull_stopped_at, Some(2.75));
        assert_eq!(t.connectivity_at, Some(2.0));
    }

    #[test]
    fn user_stop_walks_the_whole_lifecycle() {
        let mut t = task();
        run_up(&mut t);
        assert!(t.request_stop(stop_code::USER_INITIATED, "Task stopped by user", 5.0));
        assert_eq!(t.last_status, TaskStatus::Deactivating);
        assert_eq!(t.desired_status, TaskStatus::Stopped);
        assert_eq!(t.stopping_at, Some(5.0));
        // A second stop changes nothing.
        assert!(!t.request_stop(stop_code::USER_INITIATED, "again", 5.5));
        t.apply(
            &TaskEvent::ContainerExited {
                name: "app".into(),
                exit_code: 143,
                reason: None,
            },
            6.0,
        );
        assert_eq!(t.last_status, TaskStatus::Stopping);
        t.apply(
            &TaskEvent::ContainerExited {
                name: "sidecar".into(),
                exit_code: 0,
                reason: None,
            },
            6.5,
        );
        assert_eq!(t.last_status, TaskStatus::Deprovisioning);
        assert_eq!(t.execution_stopped_at, Some(6.5));
        t.apply(
            &TaskEvent::Stopped {
                stop_code: stop_code::USER_INITIATED.into(),
                stopped_reason: "ignored: already recorded".into(),
            },
            7.0,
        );
        assert_eq!(t.last_status, TaskStatus::Stopped);
        assert_eq!(t.stopped_at, Some(7.0));
        assert_eq!(t.stop_code.as_deref(), Some("UserInitiated"));
        assert_eq!(t.stopped_reason.as_deref(), Some("Task stopped by user"));
        assert_eq!(t.containers[0].exit_code, Some(143));
        // Nothing moves a stopped task.
        assert!(!t.apply(&TaskEvent::Running, 8.0));
        assert_eq!(t.last_status, TaskStatus::Stopped);
    }

    #[test]
    fn essential_exit_stops_the_task_but_sidecar_exit_does_not() {
        let mut t = task();
        run_up(&mut t);
        t.apply(
            &TaskEvent::ContainerExited {
                name: "sidecar".into(),
                exit_code: 1,
                reason: None,
            },
            5.0,
        );
        assert_eq!(t.last_status, TaskStatus::Running);
        assert_eq!(t.desired_status, TaskStatus::Running);
        assert_eq!(t.stop_code, None);
        t.apply(
            &TaskEvent::ContainerExited {
                name: "app".into(),
                exit_code: 2,
                reason: None,
            },
            6.0,
        );
        assert_eq!(t.desired_status, TaskStatus::Stopped);
        assert_eq!(t.stop_code.as_deref(), Some("EssentialContainerExited"));
        assert_eq!(
            t.stopped_reason.as_deref(),
            Some("Essential container in task exited")
        );
        assert_eq!(t.last_status, TaskStatus::Deprovisioning);
    }

    #[test]
    fn failure_to_start_is_recorded_with_the_runtime_reason() {
        let mut t = task();
        t.apply(
            &TaskEvent::Stopped {
                stop_code: stop_code::TASK_FAILED_TO_START.into(),
                stopped_reason: "image busybox not found".into(),
            },
            2.0,
        );
        assert_eq!(t.last_status, TaskStatus::Stopped);
        assert_eq!(t.desired_status, TaskStatus::Stopped);
        assert_eq!(t.stop_code.as_deref(), Some("TaskFailedToStart"));
        assert_eq!(t.stopped_reason.as_deref(), Some("image busybox not found"));
        assert!(t.containers.iter().all(|c| c.last_status == "STOPPED"));
        assert_eq!(t.started_at, None);
    }

    #[test]
    fn a_failed_pull_records_the_window_and_the_containers_reason() {
        let mut t = task();
        t.apply(
            &TaskEvent::Provisioned {
                private_ip: "198.18.0.2".into(),
            },
            2.0,
        );
        t.apply(&TaskEvent::PullStarted, 2.1);
        let why = "CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref docker.io/library/nope:1: docker.io/library/nope:1: not found";
        t.apply(
            &TaskEvent::PullStopped {
                failed: [("app".to_string(), why.to_string())].into(),
            },
            2.4,
        );
        t.apply(
            &TaskEvent::Stopped {
                stop_code: stop_code::TASK_FAILED_TO_START.into(),
                stopped_reason: why.into(),
            },
            2.5,
        );
        assert_eq!(
            (t.pull_started_at, t.pull_stopped_at),
            (Some(2.1), Some(2.4))
        );
        let app = t.containers.iter().find(|c| c.name == "app").unwrap();
        assert_eq!(app.reason.as_deref(), Some(why));
        assert_eq!(app.exit_code, None);
        let other = t.containers.iter().find(|c| c.name != "app").unwrap();
        assert_eq!(other.reason, None);
        assert_eq!(t.stopped_reason.as_deref(), Some(why));
    }

    #[test]
    fn statuses_never_move_backwards_and_unknown_containers_are_ignored() {
        let mut t = task();
        run_up(&mut t);
        let v = t.version;
        t.apply(
            &TaskEvent::Provisioned {
                private_ip: "198.18.0.2".into(),
            },
            9.0,
        );
        assert_eq!(t.last_status, TaskStatus::Running);
        assert!(!t.apply(
            &TaskEvent::ContainerRunning {
                name: "nope".into()
            },
            9.0
        ));
        assert!(t.version > v);
    }

    #[test]
    fn stop_while_provisioning_keeps_the_user_code() {
        let mut t = task();
        assert!(t.request_stop(stop_code::USER_INITIATED, "bye", 1.5));
        assert_eq!(t.last_status, TaskStatus::Provisioning);
        // The runtime started anyway; Running must not resurrect the task.
        t.apply(&TaskEvent::Running, 2.0);
        assert_ne!(t.last_status, TaskStatus::Running);
        t.apply(
            &TaskEvent::Stopped {
                stop_code: stop_code::TASK_FAILED_TO_START.into(),
                stopped_reason: "x".into(),
            },
            3.0,
        );
        assert_eq!(t.stop_code.as_deref(), Some("UserInitiated"));
        assert_eq!(t.stopped_reason.as_deref(), Some("bye"));
    }

    fn with_checks(essential_app: bool, sidecar: bool) -> TaskRecord {
        let mut t = task();
        let hc = ferry_proto::plan::HealthCheck {
            command: ferry_proto::plan::HealthCommand::Exec(vec!["true".into()]),
            interval_secs: 5,
            timeout_secs: 2,
            retries: 1,
            start_period_secs: 0,
        };
        if essential_app {
            t.plan.containers[0].health_check = Some(hc.clone());
        }
        if sidecar {
            t.plan.containers[1].health_check = Some(hc);
        }
        t
    }

    fn health(t: &mut TaskRecord, name: &str, status: HealthStatus) -> bool {
        t.apply(
            &TaskEvent::ContainerHealth {
                name: name.into(),
                status,
            },
            5.0,
        )
    }

    #[test]
    fn task_health_follows_essential_checked_containers() {
        // No health check anywhere: UNKNOWN, and RUNNING is enough.
        let mut t = task();
        run_up(&mut t);
        assert_eq!(t.health_status(), HealthStatus::Unknown);
        assert!(!t.is_health_checked());
        assert!(t.is_healthy_running());

        // Only the non-essential sidecar is checked: it does not count.
        let mut t = with_checks(false, true);
        run_up(&mut t);
        assert!(health(&mut t, "sidecar", HealthStatus::Unhealthy));
        assert_eq!(t.health_status(), HealthStatus::Unknown);
        assert!(t.is_healthy_running());

        let mut t = with_checks(true, true);
        run_up(&mut t);
        assert_eq!(t.health_status(), HealthStatus::Unknown);
        assert!(!t.is_healthy_running());
        let v = t.version;
        assert!(health(&mut t, "app", HealthStatus::Healthy));
        assert!(t.version > v);
        // The same status again changes nothing.
        assert!(!health(&mut t, "app", HealthStatus::Healthy));
        assert!(!health(&mut t, "nope", HealthStatus::Healthy));
        assert_eq!(t.containers[0].health_status, HealthStatus::Healthy);
        assert_eq!(t.health_status(), HealthStatus::Healthy);
        assert!(t.is_healthy_running());
        assert!(health(&mut t, "app", HealthStatus::Unhealthy));
        assert_eq!(t.health_status(), HealthStatus::Unhealthy);
        assert!(!t.is_healthy_running());
        // Health does not stop a task by itself (a service does).
        assert_eq!(t.desired_status, TaskStatus::Running);
    }

    #[test]
    fn old_records_without_health_load() {
        let t = task();
        let mut v = serde_json::to_value(&t).unwrap();
        v["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("healthStatus");
        v["plan"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("health_check");
        let back: TaskRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back.containers[0].health_status, HealthStatus::Unknown);
        assert!(back.plan.containers[0].health_check.is_none());
    }
}
