//! The records kept in ferry-store (tables `efs_fs` and `efs_ap`, keyed by id).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Table of file systems.
pub const FS_TABLE: &str = "efs_fs";
/// Table of access points.
pub const AP_TABLE: &str = "efs_ap";
/// Table of mount targets.
pub const MT_TABLE: &str = "efs_mt";

/// A tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The key.
    #[serde(rename = "Key")]
    pub key: String,
    /// The value.
    #[serde(rename = "Value")]
    pub value: String,
}

/// A file system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileSystem {
    /// `fs-` and 17 hex digits.
    pub id: String,
    /// The ARN.
    pub arn: String,
    /// The owning account.
    pub owner: String,
    /// The idempotency token.
    pub creation_token: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// Whether it is a LUKS2 volume (else a plain image).
    pub encrypted: bool,
    /// The KMS key ARN wrapping the data key (encrypted only).
    pub kms_key_arn: Option<String>,
    /// `generalPurpose` or `maxIO` (recorded, not acted on).
    pub performance_mode: String,
    /// `bursting`, `provisioned` or `elastic` (recorded, not acted on).
    pub throughput_mode: String,
    /// Tags in the order given.
    pub tags: Vec<Tag>,
    /// `ProvisionedThroughputInMibps` (recorded, not acted on).
    #[serde(default)]
    pub provisioned_throughput: Option<f64>,
    /// `AvailabilityZoneName` of a One Zone file system: its mount target
    /// must be in that zone.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// The file-system policy (JSON text as given), enforced for task mounts.
    #[serde(default)]
    pub policy: Option<String>,
    /// `LifecyclePolicies` (recorded: there is one storage class).
    #[serde(default)]
    pub lifecycle_policies: Vec<Value>,
    /// The backup policy's `Status` (recorded: no backup service).
    #[serde(default = "disabled")]
    pub backup_status: String,
    /// `ReplicationOverwriteProtection` (recorded: no replication).
    #[serde(default = "enabled")]
    pub overwrite_protection: String,
    /// The host whose disk holds its data (`--name` of the replica that
    /// made it): tasks that mount it are placed there. `None` on records
    /// from before hosts (one host holds everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

fn disabled() -> String {
    "DISABLED".into()
}

fn enabled() -> String {
    "ENABLED".into()
}

/// An EFS mount target: an address in a subnet of the file system's VPC,
/// held by an ENI of the VPC service (docs/efs.md, "Mount targets").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountTarget {
    /// `fsmt-` and 17 hex digits.
    pub id: String,
    /// The file system.
    pub file_system_id: String,
    /// The owning account.
    pub owner: String,
    /// The subnet.
    pub subnet_id: String,
    /// The subnet's VPC.
    pub vpc_id: String,
    /// The subnet's zone name.
    pub availability_zone: String,
    /// The zone's id.
    pub availability_zone_id: String,
    /// The address.
    pub ip: String,
    /// The ENI holding the address.
    pub eni_id: String,
}

impl MountTarget {
    /// The `MountTargetDescription` shape.
    pub fn describe(&self) -> Value {
        json!({
            "OwnerId": self.owner,
            "MountTargetId": self.id,
            "FileSystemId": self.file_system_id,
            "SubnetId": self.subnet_id,
            "LifeCycleState": "available",
            "IpAddress": self.ip,
            "NetworkInterfaceId": self.eni_id,
            "AvailabilityZoneId": self.availability_zone_id,
            "AvailabilityZoneName": self.availability_zone,
            "VpcId": self.vpc_id,
        })
    }
}

impl FileSystem {
    /// The `FileSystemDescription` shape.
    pub fn describe(&self, size_in_bytes: u64, mount_targets: usize) -> Value {
        let mut v = json!({
            "OwnerId": self.owner,
            "CreationToken": self.creation_token,
            "FileSystemId": self.id,
            "FileSystemArn": self.arn,
            "CreationTime": self.created,
            "LifeCycleState": "available",
            "NumberOfMountTargets": mount_targets,
            "SizeInBytes": {"Value": size_in_bytes},
            "PerformanceMode": self.performance_mode,
            "Encrypted": self.encrypted,
            "ThroughputMode": self.throughput_mode,
            "Tags": self.tags,
            "FileSystemProtection": {"ReplicationOverwriteProtection": self.overwrite_protection},
        });
        if let Some(k) = &self.kms_key_arn {
            v["KmsKeyId"] = json!(k);
        }
        if let Some(t) = self.provisioned_throughput {
            v["ProvisionedThroughputInMibps"] = json!(t);
        }
        if let Some(z) = &self.availability_zone {
            v["AvailabilityZoneName"] = json!(z);
        }
        if let Some(t) = self.tags.iter().find(|t| t.key == "Name") {
            v["Name"] = json!(t.value);
        }
        v
    }
}

/// An access point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessPoint {
    /// `fsap-` and 17 hex digits.
    pub id: String,
    /// The ARN.
    pub arn: String,
    /// The owning account.
    pub owner: String,
    /// The idempotency token.
    pub client_token: String,
    /// The file system.
    pub file_system_id: String,
    /// `PosixUser` as given (Uid, Gid, SecondaryGids).
    pub posix_user: Option<Value>,
    /// `RootDirectory` (Path, CreationInfo); Path defaults to `/`.
    pub root_directory: Value,
    /// Tags in the order given.
    pub tags: Vec<Tag>,
}

/// `RootDirectory.CreationInfo`, parsed: how to create a missing root
/// directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreationInfo {
    /// Owner of the created directories.
    pub owner_uid: u32,
    /// Group of the created directories.
    pub owner_gid: u32,
    /// Their mode (the octal `Permissions` string, parsed).
    pub permissions: u32,
}

/// A JSON member as a `u32`.
fn id(v: &Value, k: &str) -> Option<u32> {
    v.get(k)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

impl AccessPoint {
    /// `PosixUser`'s `(Uid, Gid)`, which tasks act as on the file system.
    pub fn posix_ids(&self) -> Option<(u32, u32)> {
        let p = self.posix_user.as_ref()?;
        Some((id(p, "Uid")?, id(p, "Gid")?))
    }

    /// `RootDirectory.Path` (CreateAccessPoint defaults it to `/`).
    pub fn root_path(&self) -> &str {
        self.root_directory
            .get("Path")
            .and_then(Value::as_str)
            .unwrap_or("/")
    }

    /// `RootDirectory.CreationInfo`, if given (CreateAccessPoint checked
    /// its members; one that does not parse counts as absent).
    pub fn creation_info(&self) -> Option<CreationInfo> {
        let ci = self.root_directory.get("CreationInfo")?;
        Some(CreationInfo {
            owner_uid: id(ci, "OwnerUid")?,
            owner_gid: id(ci, "OwnerGid")?,
            permissions: ci
                .get("Permissions")
                .and_then(Value::as_str)
                .and_then(|p| u32::from_str_radix(p, 8).ok())?,
        })
    }

    /// The `AccessPointDescription` shape.
    pub fn describe(&self) -> Value {
        let mut v = json!({
            "ClientToken": self.client_token,
            "Tags": self.tags,
            "AccessPointId": self.id,
            "AccessPointArn": self.arn,
            "FileSystemId": self.file_system_id,
            "RootDirectory": self.root_directory,
            "OwnerId": self.owner,
            "LifeCycleState": "available",
        });
        if let Some(p) = &self.posix_user {
            v["PosixUser"] = p.clone();
        }
        if let Some(t) = self.tags.iter().find(|t| t.key == "Name") {
            v["Name"] = json!(t.value);
        }
        v
    }
}
