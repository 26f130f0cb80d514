//! What the console shows that no AWS API answers, behind one trait the
//! composition root implements over the host's task volumes and the KMS
//! audit trail. Everything here is already authorized by the console
//! before it asks (see the console's access rules); nothing here is
//! secret: the LUKS2 token holds the *wrapped* data key only.

use serde::Serialize;

/// A position in the audit trail: the byte offset of a record boundary in
/// `DIR/kms-audit.jsonl`. Opaque to the browser (sent back as given).
pub type Cursor = u64;

/// The most records one audit page may carry.
pub const MAX_AUDIT_PAGE: usize = 500;

/// A task's ephemeral storage as its host holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStorage {
    /// What admission promised the task (the volume's size), bytes.
    pub size_bytes: u64,
    /// Bytes in use on the mounted file system (statvfs of its root).
    pub used_bytes: u64,
    /// Whether the volume is LUKS2 (platform version 1.4.0) rather than
    /// plain ext4 (1.3.0).
    pub encrypted: bool,
    /// The data segment's cipher as `cryptsetup luksDump` names it
    /// (`aes-xts-plain64`), `None` when not encrypted.
    pub cipher: Option<String>,
    /// The volume key's size in bits (512 for AES-256-XTS).
    pub key_bits: Option<u32>,
    /// The KMS key that wraps the data key.
    pub key_arn: Option<String>,
    /// The grant that let the platform unwrap the data key.
    pub grant_id: Option<String>,
    /// LUKS2 token 0 (`ferry-kms`) exactly as it is in the header: key
    /// ARN, wrapped data key, encryption context.
    pub token: Option<serde_json::Value>,
}

/// Which audit records to return, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Only records older than this cursor (the previous page's `next`).
    pub before: Option<Cursor>,
    /// Only records newer than this cursor (a previous page's `head`): how
    /// a live view asks for what arrived since.
    pub after: Option<Cursor>,
    /// At most this many records (1..=[`MAX_AUDIT_PAGE`]).
    pub limit: usize,
    /// Records about this key: a key id, key ARN or alias, matched against
    /// `resources[].ARN` and `requestParameters.keyId`.
    pub key: Option<String>,
    /// Records by this principal: a substring of `userIdentity`'s `arn`,
    /// `accessKeyId`, `invokedBy` or `principalId`.
    pub principal: Option<String>,
    /// Records of this operation (`eventName`, exact).
    pub event_name: Option<String>,
    /// Records at or after this time (seconds since the epoch).
    pub from: Option<f64>,
    /// Records at or before this time (seconds since the epoch).
    pub to: Option<f64>,
    /// Only records with an `errorCode`.
    pub errors_only: bool,
    /// Records whose encryption context (`requestParameters.encryptionContext`
    /// or a grant's constraints) names this task ARN: the calls that created
    /// and used the task's data key.
    pub task_arn: Option<String>,
}

/// One page of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The records, newest first, as written (CloudTrail-shaped JSON).
    pub records: Vec<serde_json::Value>,
    /// Pass as `before` for the next (older) page; `None` at the start of
    /// the trail.
    pub next: Option<Cursor>,
    /// The end of the trail when this page was read: pass as `after` to
    /// get only newer records.
    pub head: Cursor,
}

/// Why the audit trail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A cursor that is no record boundary of this trail.
    #[error("invalid audit cursor: {0}")]
    BadCursor(String),
    /// The query itself is malformed (limit out of range, bad time).
    #[error("invalid audit query: {0}")]
    BadQuery(String),
    /// The file could not be read.
    #[error("the audit trail could not be read: {0}")]
    Io(String),
}

/// The console's view of the host and the KMS beyond the AWS APIs.
pub trait ConsoleData: Send + Sync {
    /// The storage of task `task_id` (the id, last part of the ARN) if
    /// this server's agent holds its volume now; `None` for a task not
    /// (yet, or any longer) attached here.
    fn task_storage(&self, task_id: &str) -> Option<TaskStorage>;

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
