//! Stored records (JSON in the state store). Secrets appear only sealed
//! (base64 of the root key's AES-GCM output) and session tokens only as
//! their SHA-256 digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The store tables.
pub const ROLES: &str = "iam_roles";
/// Users, by lowercase name.
pub const USERS: &str = "iam_users";
/// Long-term access keys, by key id.
pub const ACCESS_KEYS: &str = "iam_access_keys";
/// AssumeRole sessions, by key id (service sessions too with a shared store;
/// with the embedded one they stay in memory).
pub const SESSIONS: &str = "iam_sessions";
/// Remote agents' service keys, by host name (one key per host).
pub const AGENT_KEYS: &str = "iam_agent_keys";

/// A tag (`Key`, `Value`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// A role, keyed by its lowercase name (IAM names are unique without
/// regard to case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    /// The name as created.
    pub name: String,
    /// `AROA...`.
    pub id: String,
    /// The path (`/` or `/a/b/`).
    pub path: String,
    /// `arn:aws:iam::ACCOUNT:role{path}{name}`.
    pub arn: String,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// The trust policy as given.
    pub trust: String,
    /// The description.
    #[serde(default)]
    pub description: Option<String>,
    /// The longest session, seconds (3600..=43200).
    pub max_session: u32,
    /// Tags, in the order given.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Inline policies by name, as given.
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    /// Attached managed policy ARNs.
    #[serde(default)]
    pub attached: Vec<String>,
}

/// A user, keyed by its lowercase name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The name as created.
    pub name: String,
    /// `AIDA...`.
    pub id: String,
    /// The path.
    pub path: String,
    /// `arn:aws:iam::ACCOUNT:user{path}{name}`.
    pub arn: String,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Inline policies by name.
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    /// Attached managed policy ARNs.
    #[serde(default)]
    pub attached: Vec<String>,
}

/// A user's long-term access key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    /// `AKIA...`.
    pub key_id: String,
    /// The owner's lowercase name (the users table key).
    pub user: String,
    /// `Active` or `Inactive`.
    pub status: String,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// The secret, sealed under the root key (label
    /// `iam/access-key/KEYID`), base64.
    pub sealed_secret: String,
}

/// An AssumeRole session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// `ASIA...`.
    pub key_id: String,
    /// The secret, sealed (label `iam/session/KEYID`), base64.
    pub sealed_secret: String,
    /// SHA-256 of the session token, hex.
    pub token_sha256: String,
    /// The role's lowercase name.
    pub role: String,
    /// The role's id when the session was issued: a role deleted and
    /// created again under the same name does not revive the session.
    pub role_id: String,
    /// The session name.
    pub session_name: String,
    /// Expiry, Unix seconds.
    pub expires: i64,
    /// The resource a service session was issued for (a task ARN). Such
    /// sessions are stored only in a shared store, where every replica
    /// must know them; with the embedded store they live in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A remote agent's service key (`ferry agent`): it authenticates as the
/// platform's service principal, never as a user, so it is kept apart from
/// [`AccessKeyRecord`] (no user owns it, no IAM API lists or changes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKeyRecord {
    /// The host's name as given (the table key; `[A-Za-z0-9._-]{1,64}`).
    pub host: String,
    /// `AKIA...`.
    pub key_id: String,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// The secret, sealed under the root key (label
    /// `iam/agent-key/KEYID`), base64.
    pub sealed_secret: String,
}
