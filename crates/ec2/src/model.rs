//! The stored records (JSON in the `ec2_*` tables; field names are part of
//! the store format).

use std::net::Ipv4Addr;

use ferry_proto::net::Ipv4Cidr;
use serde::{Deserialize, Serialize};

/// Table of [`Vpc`]s by id.
pub const VPCS: &str = "ec2_vpcs";
/// Table of [`Subnet`]s by id.
pub const SUBNETS: &str = "ec2_subnets";
/// Table of [`Group`]s by id.
pub const GROUPS: &str = "ec2_groups";
/// Table of [`GroupRule`]s by id.
pub const RULES: &str = "ec2_rules";
/// Table of [`Eni`]s by id.
pub const ENIS: &str = "ec2_enis";

/// One tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    pub value: String,
}

/// A VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vpc {
    /// `vpc-...`.
    pub id: String,
    /// Its CIDR block.
    pub cidr: Ipv4Cidr,
    /// `vpc-cidr-assoc-...`.
    pub cidr_association_id: String,
    /// The account's default VPC.
    pub is_default: bool,
    /// `default` or `dedicated` (recorded, no effect).
    pub instance_tenancy: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    /// `subnet-...`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its CIDR block, inside the VPC's.
    pub cidr: Ipv4Cidr,
    /// Its availability zone (`REGIONa`).
    pub availability_zone: String,
    /// A default VPC's subnet.
    pub default_for_az: bool,
    /// `MapPublicIpOnLaunch` (recorded, no effect).
    pub map_public_ip_on_launch: bool,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// `sg-...`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its name, unique in the VPC.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// One security group rule (EC2's `SecurityGroupRule`: one peer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRule {
    /// `sgr-...`.
    pub id: String,
    /// The group it belongs to.
    pub group_id: String,
    /// Egress (else ingress).
    pub is_egress: bool,
    /// `-1`, `tcp`, `udp`, `icmp` or a protocol number.
    pub protocol: String,
    /// First port or ICMP type; -1 when not applicable / any.
    pub from_port: i32,
    /// Last port or ICMP code; -1 when not applicable / any.
    pub to_port: i32,
    /// The other end.
    pub peer: RulePeer,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// The other end of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RulePeer {
    /// An IPv4 CIDR block.
    Cidr(Ipv4Cidr),
    /// A security group of the same VPC.
    Group(String),
}

impl GroupRule {
    /// Whether `other` allows the same thing (a duplicate).
    pub fn same_permission(&self, other: &GroupRule) -> bool {
        self.group_id == other.group_id
            && self.is_egress == other.is_egress
            && self.protocol == other.protocol
            && self.from_port == other.from_port
            && self.to_port == other.to_port
            && self.peer == other.peer
    }
}

/// A task's elastic network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eni {
    /// `eni-...`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its subnet.
    pub subnet_id: String,
    /// Its private address.
    pub ip: Ipv4Addr,
    /// Its MAC (`0a:..`).
    pub mac: String,
    /// Its security groups.
    pub groups: Vec<String>,
    /// What it is attached to.
    pub description: String,
    /// `eni-attach-...`.
    pub attachment_id: String,
    /// When it was attached (unix seconds).
    pub attached_at: i64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Which service the interface belongs to (older records: a task's).
    #[serde(default)]
    pub owner: EniOwner,
}

/// Which service made an ENI: it decides who releases it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EniOwner {
    /// A task's (ECS): released when the task stops, and after a restart
    /// when no task holds it.
    #[default]
    Task,
    /// An EFS mount target's: lives until DeleteMountTarget.
    MountTarget,
}

impl EniOwner {
    /// The `requesterId` DescribeNetworkInterfaces shows.
    pub fn requester(self) -> &'static str {
        match self {
            EniOwner::Task => "ecs.amazonaws.com",
            EniOwner::MountTarget => "elasticfilesystem.amazonaws.com",
        }
    }
}
