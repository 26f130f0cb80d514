//! The JSON documents of the task metadata endpoint, with the field names
//! the AWS ECS developer guide documents for Fargate ("Task metadata v4
//! examples for tasks on Fargate"), and what they are built from.
//!
//! Inputs come in three kinds, so each is current where it must be:
//! [`TaskInfo`] is fixed when the task's network is up (plan, image
//! digests, addresses); [`ControlTask`] is asked of the control plane on
//! every request (statuses, pull times, revision); [`Observed`] is what the
//! host saw of each container (start and exit times).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// What the host knows about a task once its network is set up.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`.
    pub task_arn: String,
    /// The task id.
    pub task_id: String,
    /// `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`.
    pub cluster_arn: String,
    /// The region (for `PrivateDNSName`).
    pub region: String,
    /// Task CPU units (1024 = one vCPU).
    pub cpu_units: u32,
    /// Task memory, MiB.
    pub memory_mib: u32,
    /// The ephemeral volume's size, GiB (`EphemeralStorageMetrics.Reserved`).
    pub ephemeral_storage_gib: u32,
    /// The task's mounted ephemeral volume (statvfs'd per request).
    pub task_root: PathBuf,
    /// The task's cgroup relative to each hierarchy (`ferry/TASK_ID`).
    pub cgroup: String,
    /// Containers, in task-definition order.
    pub containers: Vec<ContainerInfo>,
    /// The task's one network interface.
    pub network: NetworkInfo,
}

/// One container as the host knows it.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    /// The container's name in the task definition.
    pub name: String,
    /// Its id (`DockerId`, the last path component of its metadata URI):
    /// the runtime's container id, `TASK_ID-NAME`.
    pub docker_id: String,
    /// Image as written in the task definition.
    pub image: String,
    /// The image's digest (`sha256:...`).
    pub image_id: String,
}

/// The task's `eth0` in its namespace.
#[derive(Debug, Clone, Default)]
pub struct NetworkInfo {
    /// The address.
    pub ipv4: String,
    /// `eth0`'s MAC address.
    pub mac: String,
    /// The subnet, `A.B.C.D/N`.
    pub subnet_cidr: String,
    /// The gateway with the subnet's prefix length, `A.B.C.D/N` (the form
    /// Fargate reports).
    pub gateway: String,
}

/// What the control plane knows of a task, read at request time.
#[derive(Debug, Clone, Default)]
pub struct ControlTask {
    /// Task definition family.
    pub family: String,
    /// Task definition revision.
    pub revision: String,
    /// `desiredStatus`.
    pub desired_status: String,
    /// `lastStatus`.
    pub known_status: String,
    /// `pullStartedAt`, epoch seconds.
    pub pull_started_at: Option<f64>,
    /// `pullStoppedAt`, epoch seconds.
    pub pull_stopped_at: Option<f64>,
    /// The task's availability zone.
    pub availability_zone: String,
    /// Containers.
    pub containers: Vec<ControlContainer>,
}

/// What the control plane knows of one container.
#[derive(Debug, Clone, Default)]
pub struct ControlContainer {
    /// Name.
    pub name: String,
    /// `containerArn`.
    pub arn: String,
    /// `lastStatus`.
    pub known_status: String,
    /// CPU units of the container definition.
    pub cpu: i64,
    /// Memory (MiB) of the container definition, if set.
    pub memory: Option<i64>,
    /// Exit code, once stopped.
    pub exit_code: Option<i32>,
}

/// Where the endpoint asks for the control plane's view of a task.
/// Implemented by the composition root over the control plane's task
/// records; called on every request, so it must be cheap (a cache read).
pub trait TaskState: Send + Sync {
    /// The task `task_arn`, if the control plane knows it.
    fn task(&self, task_arn: &str) -> Option<ControlTask>;
}

/// What the host saw of one container, epoch seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// When it was created (runc create) — the host reports start right
    /// after create, so this is the first time it was seen running.
    pub created_at: Option<f64>,
    /// When it started.
    pub started_at: Option<f64>,
    /// When it exited.
    pub finished_at: Option<f64>,
    /// Its exit code.
    pub exit_code: Option<i32>,
}

/// Which endpoint version answers (v3 has no network details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `ECS_CONTAINER_METADATA_URI`.
    V3,
    /// `ECS_CONTAINER_METADATA_URI_V4`.
    V4,
}

/// `${URI}/task`.
#[derive(Debug, Serialize)]
pub struct TaskDoc {
    #[serde(rename = "Cluster")]
    cluster: String,
    #[serde(rename = "TaskARN")]
    task_arn: String,
    #[serde(rename = "Family")]
    family: String,
    #[serde(rename = "Revision")]
    revision: String,
    #[serde(rename = "DesiredStatus")]
    desired_status: String,
    #[serde(rename = "KnownStatus")]
    known_status: String,
    #[serde(rename = "Limits")]
    limits: TaskLimits,
    #[serde(rename = "PullStartedAt", skip_serializing_if = "Option::is_none")]
    pull_started_at: Option<String>,
    #[serde(rename = "PullStoppedAt", skip_serializing_if = "Option::is_none")]
    pull_stopped_at: Option<String>,
    #[serde(rename = "AvailabilityZone")]
    availability_zone: String,
    #[serde(rename = "LaunchType")]
    launch_type: &'static str,
    #[serde(rename = "Containers")]
    containers: Vec<ContainerDoc>,
    #[serde(
        rename = "EphemeralStorageMetrics",
        skip_serializing_if = "Option::is_none"
    )]
    ephemeral_storage_metrics: Option<StorageMetrics>,
}

/// Task `Limits`: CPU in vCPUs, memory in MiB.
#[derive(Debug, Serialize)]
pub struct TaskLimits {
    #[serde(rename = "CPU")]
    cpu: f64,
    #[serde(rename = "Memory")]
    memory: u64,
}

/// `EphemeralStorageMetrics`, MiB.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct StorageMetrics {
    /// Used on the task's volume.
    #[serde(rename = "Utilized")]
    pub utilized: u64,
    /// The volume's size.
    #[serde(rename = "Reserved")]
    pub reserved: u64,
}

/// `${URI}` and each of `Containers[]`.
#[derive(Debug, Serialize)]
pub struct ContainerDoc {
    #[serde(rename = "DockerId")]
    docker_id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "DockerName")]
    docker_name: String,
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "ImageID")]
    image_id: String,
    #[serde(rename = "Labels")]
    labels: BTreeMap<&'static str, String>,
    #[serde(rename = "DesiredStatus")]
    desired_status: String,
    #[serde(rename = "KnownStatus")]
    known_status: String,
    #[serde(rename = "ExitCode", skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(rename = "Limits")]
    limits: ContainerLimits,
    #[serde(rename = "CreatedAt", skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(rename = "StartedAt", skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(rename = "FinishedAt", skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(rename = "Type")]
    kind: &'static str,
    #[serde(rename = "ContainerARN", skip_serializing_if = "String::is_empty")]
    container_arn: String,
    #[serde(rename = "Networks")]
    networks: Vec<NetworkDoc>,
}

/// Container `Limits`: CPU units and memory MiB of the definition.
#[derive(Debug, Serialize)]
pub struct ContainerLimits {
    #[serde(rename = "CPU")]
    cpu: i64,
    /// 0 when the container definition sets no memory (as ECS reports).
    #[serde(rename = "Memory")]
    memory: i64,
}

/// `Networks[]`; v3 carries only the first two fields.
#[derive(Debug, Serialize)]
pub struct NetworkDoc {
    #[serde(rename = "NetworkMode")]
    network_mode: &'static str,
    #[serde(rename = "IPv4Addresses")]
    ipv4_addresses: Vec<String>,
    #[serde(rename = "AttachmentIndex", skip_serializing_if = "Option::is_none")]
    attachment_index: Option<u32>,
    #[serde(rename = "MACAddress", skip_serializing_if = "Option::is_none")]
    mac_address: Option<String>,
    #[serde(
        rename = "IPv4SubnetCIDRBlock",
        skip_serializing_if = "Option::is_none"
    )]
    ipv4_subnet_cidr_block: Option<String>,
    #[serde(rename = "PrivateDNSName", skip_serializing_if = "Option::is_none")]
    private_dns_name: Option<String>,
    #[serde(
        rename = "SubnetGatewayIpv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    subnet_gateway_ipv4_address: Option<String>,
}

/// RFC 3339 with nanoseconds in UTC, as the agent prints times
/// (`2020-10-08T20:47:16.053330955Z`).
pub fn timestamp(epoch_secs: f64) -> Option<String> {
    let nanos = (epoch_secs * 1e9) as i128;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

pub use ferry_proto::net::private_dns_name;

impl TaskInfo {
    /// The container whose metadata URI ends in `docker_id`.
    pub fn container(&self, docker_id: &str) -> Option<&ContainerInfo> {
        self.containers.iter().find(|c| c.docker_id == docker_id)
    }

    /// The document of container `c`.
    pub fn container_doc(
        &self,
        c: &ContainerInfo,
        control: &ControlTask,
        seen: &Observed,
        version: Version,
    ) -> ContainerDoc {
        let cc = control.containers.iter().find(|x| x.name == c.name);
        let labels = BTreeMap::from([
            ("com.amazonaws.ecs.cluster", self.cluster_arn.clone()),
            ("com.amazonaws.ecs.container-name", c.name.clone()),
            ("com.amazonaws.ecs.task-arn", self.task_arn.clone()),
            (
                "com.amazonaws.ecs.task-definition-family",
                control.family.clone(),
            ),
            (
                "com.amazonaws.ecs.task-definition-version",
                control.revision.clone(),
            ),
        ]);
        let n = &self.network;
        let network = match version {
            Version::V3 => NetworkDoc {
                network_mode: "awsvpc",
                ipv4_addresses: vec![n.ipv4.clone()],
                attachment_index: None,
                mac_address: None,
                ipv4_subnet_cidr_block: None,
                private_dns_name: None,
                subnet_gateway_ipv4_address: None,
            },
            Version::V4 => NetworkDoc {
                network_mode: "awsvpc",
                ipv4_addresses: vec![n.ipv4.clone()],
                attachment_index: Some(0),
                mac_address: Some(n.mac.clone()),
                ipv4_subnet_cidr_block: Some(n.subnet_cidr.clone()),
                private_dns_name: Some(private_dns_name(&n.ipv4, &self.region)),
                subnet_gateway_ipv4_address: Some(n.gateway.clone()),
            },
        };
        // The control plane's status is the one DescribeTasks shows; before
        // it has a record (it always should), fall back to what the host saw.
        let known_status = cc.map(|x| x.known_status.clone()).unwrap_or_else(|| {
            match (seen.started_at, seen.finished_at) {
                (_, Some(_)) => "STOPPED",
                (Some(_), None) => "RUNNING",
                _ => "PENDING",
            }
            .into()
        });
        let desired_status = if control.desired_status.is_empty() {
            "RUNNING".into()
        } else {
            control.desired_status.clone()
        };
        ContainerDoc {
            docker_id: c.docker_id.clone(),
            name: c.name.clone(),
            docker_name: c.name.clone(),
            image: c.image.clone(),
            image_id: c.image_id.clone(),
            labels,
            desired_status,
            known_status,
            exit_code: cc.and_then(|x| x.exit_code).or(seen.exit_code),
            limits: ContainerLimits {
                cpu: cc.map(|x| x.cpu).unwrap_or(0),
                memory: cc.and_then(|x| x.memory).unwrap_or(0),
            },
            created_at: seen.created_at.and_then(timestamp),
            started_at: seen.started_at.and_then(timestamp),
            finished_at: seen.finished_at.and_then(timestamp),
            kind: "NORMAL",
            container_arn: cc.map(|x| x.arn.clone()).unwrap_or_default(),
            networks: vec![network],
        }
    }

    /// The task document; `seen` is per container, in `containers` order.
    pub fn task_doc(
        &self,
        control: &ControlTask,
        seen: &[Observed],
        storage: Option<StorageMetrics>,
        version: Version,
    ) -> TaskDoc {
        let containers = self
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let s = seen.get(i).copied().unwrap_or_default();
                self.container_doc(c, control, &s, version)
            })
            .collect();
        TaskDoc {
            cluster: self.cluster_arn.clone(),
            task_arn: self.task_arn.clone(),
            family: control.family.clone(),
            revision: control.revision.clone(),
            desired_status: control.desired_status.clone(),
            known_status: control.known_status.clone(),
            limits: TaskLimits {
                cpu: f64::from(self.cpu_units) / 1024.0,
                memory: u64::from(self.memory_mib),
            },
            pull_started_at: control.pull_started_at.and_then(timestamp),
            pull_stopped_at: control.pull_stopped_at.and_then(timestamp),
            availability_zone: control.availability_zone.clone(),
            launch_type: "FARGATE",
            containers,
            ephemeral_storage_metrics: match version {
                Version::V4 => storage,
                Version::V3 => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn info() -> TaskInfo {
        TaskInfo {
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/abc".into(),
            task_id: "abc".into(),
            cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
            region: "us-east-1".into(),
            cpu_units: 256,
            memory_mib: 512,
            ephemeral_storage_gib: 20,
            task_root: PathBuf::from("/nonexistent"),
            cgroup: "ferry/abc".into(),
            containers: vec![ContainerInfo {
                name: "web".into(),
                docker_id: "abc-web".into(),
                image: "httpd:2.4".into(),
                image_id: "sha256:00ff".into(),
            }],
            network: NetworkInfo {
                ipv4: "198.18.0.5".into(),
                mac: "0a:58:c6:12:00:05".into(),
                subnet_cidr: "198.18.0.0/16".into(),
                gateway: "198.18.0.1/16".into(),
            },
        }
    }

    fn control() -> ControlTask {
        ControlTask {
            family: "meta".into(),
            revision: "3".into(),
            desired_status: "RUNNING".into(),
            known_status: "RUNNING".into(),
            pull_started_at: Some(1_600_000_000.5),
            pull_stopped_at: Some(1_600_000_001.0),
            availability_zone: "us-east-1a".into(),
            containers: vec![ControlContainer {
                name: "web".into(),
                arn: "arn:aws:ecs:us-east-1:000000000000:container/default/abc/x".into(),
                known_status: "RUNNING".into(),
                cpu: 128,
                memory: Some(256),
                exit_code: None,
            }],
        }
    }

    fn seen() -> Observed {
        Observed {
            created_at: Some(1_600_000_002.0),
            started_at: Some(1_600_000_002.25),
            ..Observed::default()
        }
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        k.sort_unstable();
        k
    }

    #[test]
    fn task_v4_has_the_documented_fields() {
        let metrics = StorageMetrics {
            utilized: 40,
            reserved: 20480,
        };
        let doc = info().task_doc(&control(), &[seen()], Some(metrics), Version::V4);
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            keys(&v),
            [
                "AvailabilityZone",
                "Cluster",
                "Containers",
                "DesiredStatus",
                "EphemeralStorageMetrics",
                "Family",
                "KnownStatus",
                "LaunchType",
                "Limits",
                "PullStartedAt",
                "PullStoppedAt",
                "Revision",
                "TaskARN",
            ]
        );
        assert_eq!(v["Limits"], json!({"CPU": 0.25, "Memory": 512}));
        assert_eq!(v["LaunchType"], "FARGATE");
        assert_eq!(v["Revision"], "3");
        assert_eq!(v["PullStartedAt"], "2020-09-13T12:26:40.5Z");
        assert_eq!(
            v["EphemeralStorageMetrics"],
            json!({"Utilized": 40, "Reserved": 20480})
        );
        let c = &v["Containers"][0];
        assert_eq!(
            keys(c),
            [
                "ContainerARN",
                "CreatedAt",
                "DesiredStatus",
                "DockerId",
                "DockerName",
                "Image",
                "ImageID",
                "KnownStatus",
                "Labels",
                "Limits",
                "Name",
                "Networks",
                "StartedAt",
                "Type",
            ]
        );
        assert_eq!(c["DockerId"], "abc-web");
        assert_eq!(c["Type"], "NORMAL");
        assert_eq!(c["Limits"], json!({"CPU": 128, "Memory": 256}));
        assert_eq!(
            c["Labels"],
            json!({
                "com.amazonaws.ecs.cluster": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
                "com.amazonaws.ecs.container-name": "web",
                "com.amazonaws.ecs.task-arn": "arn:aws:ecs:us-east-1:000000000000:task/default/abc",
                "com.amazonaws.ecs.task-definition-family": "meta",
                "com.amazonaws.ecs.task-definition-version": "3",
            })
        );
        assert_eq!(
            c["Networks"][0],
            json!({
                "NetworkMode": "awsvpc",
                "IPv4Addresses": ["198.18.0.5"],
                "AttachmentIndex": 0,
                "MACAddress": "0a:58:c6:12:00:05",
                "IPv4SubnetCIDRBlock": "198.18.0.0/16",
                "PrivateDNSName": "ip-198-18-0-5.ec2.internal",
                "SubnetGatewayIpv4Address": "198.18.0.1/16",
            })
        );
    }

    #[test]
    fn v3_has_no_v4_network_details_or_storage() {
        let metrics = StorageMetrics {
            utilized: 1,
            reserved: 2,
        };
        let doc = info().task_doc(&control(), &[seen()], Some(metrics), Version::V3);
        let v = serde_json::to_value(&doc).unwrap();
        assert!(v.get("EphemeralStorageMetrics").is_none());
        assert_eq!(
            v["Containers"][0]["Networks"][0],
            json!({"NetworkMode": "awsvpc", "IPv4Addresses": ["198.18.0.5"]})
        );
    }

    #[test]
    fn stopped_container_reports_exit() {
        let mut ctl = control();
        ctl.containers[0].known_status = "STOPPED".into();
        ctl.containers[0].exit_code = Some(3);
        let i = info();
        let doc = i.container_doc(&i.containers[0], &ctl, &seen(), Version::V4);
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["KnownStatus"], "STOPPED");
        assert_eq!(v["ExitCode"], 3);
    }

    #[test]
    fn unknown_to_the_control_plane_falls_back_to_what_was_seen() {
        let i = info();
        let doc = i.container_doc(
            &i.containers[0],
            &ControlTask::default(),
            &seen(),
            Version::V4,
        );
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["KnownStatus"], "RUNNING");
        assert_eq!(v["DesiredStatus"], "RUNNING");
        assert!(v.get("ContainerARN").is_none());
    }
}
