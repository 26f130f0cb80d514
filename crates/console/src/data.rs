//! What the console shows that no AWS API answers, behind one trait the
//! composition root implements over the host's task volumes and the KMS
//! audit trail. Everything here is already authorized by the console
//! before it asks (see the console's access rules); nothing here is
//! secret: the LUKS2 token holds the *wrapped* data key only.

use serde::Serialize;

pub use ferry_proto::audit_trail::{AuditError, AuditPage, AuditQuery, Cursor, MAX_AUDIT_PAGE};
pub use ferry_proto::storage::VolumeFacts;

/// The console's view of the host and the KMS beyond the AWS APIs.
pub trait ConsoleData: Send + Sync {
    /// The storage of task `task_id` (the id, last part of the ARN) if
    /// this server's agent holds its volume now; `None` for a task not
    /// (yet, or any longer) attached here.
    fn task_storage(&self, task_id: &str) -> Option<VolumeFacts>;

    /// One page of the KMS audit trail. Must not read more of the trail
    /// than the page needs when it can avoid it (100,000 records and more
    /// are normal), and must answer a `task_arn` query without scanning
    /// the whole trail.
    fn audit(&self, query: &AuditQuery) -> Result<AuditPage, AuditError>;

    /// Whether the server refuses platform version 1.3.0
    /// (`--require-encrypted-storage`).
    fn require_encrypted_storage(&self) -> bool;
}

/// A subnet the run-task form may offer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubnetChoice {
    /// `subnet-...`.
    pub subnet_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its CIDR block.
    pub cidr_block: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// Whether it is its zone's default subnet.
    pub default_for_az: bool,
}

/// A security group the run-task form may offer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupChoice {
    /// `sg-...`.
    pub group_id: String,
    /// Its name.
    pub group_name: String,
    /// Its VPC.
    pub vpc_id: String,
}

/// The VPC service's subnets and groups, for the run-task form (EC2 speaks
/// the query protocol, whose XML the console would otherwise have to parse
/// back). The console authorizes `ec2:DescribeSubnets` /
/// `ec2:DescribeSecurityGroups` before it asks.
pub trait NetworkChoices: Send + Sync {
    /// Every subnet.
    fn subnets(&self) -> Vec<SubnetChoice>;
    /// Every security group.
    fn security_groups(&self) -> Vec<GroupChoice>;
}
