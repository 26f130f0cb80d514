//! The task credentials endpoint: `GET /v2/credentials/ID` (and the older
//! `GET /v1/credentials?id=ID`) on a task's own listener, answered as the
//! ECS agent answers it, in the shape the AWS SDKs' container credentials
//! providers read:
//!
//! ```json
//! {"RoleArn": "...", "AccessKeyId": "ASIA...", "SecretAccessKey": "...",
//!  "Token": "...", "Expiration": "2026-01-01T12:00:00Z"}
//! ```
//!
//! The credentials come from a [`CredentialsSource`], asked with the task
//! the listener belongs to: an id of another task is unknown here, as on
//! ECS, and gets the agent's 400 `InvalidIdInRequest`.

use std::time::SystemTime;

use serde::Serialize;
use zeroize::Zeroizing;

/// A task role's temporary credentials.
pub struct Credentials {
    /// The role.
    pub role_arn: String,
    /// `ASIA...`.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: Zeroizing<String>,
    /// The session token.
    pub token: Zeroizing<String>,
    /// When they expire.
    pub expiration: SystemTime,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("role_arn", &self.role_arn)
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// Where a task's credentials come from (the control plane's task role
/// sessions, wired in the composition root).
pub trait CredentialsSource: Send + Sync {
    /// The credentials with id `credentials_id` of the task `task_arn`, if
    /// that id is the task's (`None` for any other id, another task's
    /// included).
    fn credentials(&self, task_arn: &str, credentials_id: &str) -> Option<Credentials>;
}

/// The body of a successful answer (field names and order as the ECS
/// agent's `IAMRoleCredentials`).
#[derive(Serialize)]
pub(crate) struct Body<'a> {
    #[serde(rename = "RoleArn")]
    role_arn: &'a str,
    #[serde(rename = "AccessKeyId")]
    access_key_id: &'a str,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: &'a str,
    #[serde(rename = "Token")]
    token: &'a str,
    #[serde(rename = "Expiration")]
    expiration: String,
}

impl<'a> Body<'a> {
    pub(crate) fn of(c: &'a Credentials) -> Self {
        Self {
            role_arn: &c.role_arn,
            access_key_id: &c.access_key_id,
            secret_access_key: &c.secret_access_key,
            token: &c.token,
            expiration: expiration(c.expiration),
        }
    }
}

/// `2026-01-01T12:00:00Z`: whole seconds, UTC, as STS and ACS write it.
fn expiration(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// The agent's error body: `{"code", "message", "HTTPErrorCode"}` (Go
/// marshals the untagged status field under its own name).
#[derive(Serialize)]
pub(crate) struct ErrorBody {
    code: &'static str,
    message: String,
    #[serde(rename = "HTTPErrorCode")]
    http_error_code: u16,
}

impl ErrorBody {
    /// No id in the request (`/v2/credentials/`).
    pub(crate) fn no_id(version: u8) -> Self {
        Self {
            code: "NoIdInRequest",
            message: format!("CredentialsV{version}Request: No Credential ID in the request"),
            http_error_code: 400,
        }
    }

    /// An id this task does not have.
    pub(crate) fn not_found(version: u8) -> Self {
        Self {
            code: "InvalidIdInRequest",
            message: format!("CredentialsV{version}Request: Credentials not found"),
            http_error_code: 400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_is_whole_seconds_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_767_268_800_250);
        assert_eq!(expiration(t), "2026-01-01T12:00:00Z");
    }
}
