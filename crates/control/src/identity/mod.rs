//! Task identity, the control plane's side: what a task may be given
//! besides its containers (a task role's credentials, its execution role's
//! work, container `secrets`), behind traits that the composition root
//! wires to IAM/STS and to Secrets Manager/SSM. The control plane itself
//! depends on neither.
//!
//! - [`TaskIdentity`]: sessions of a task's roles. The task role's session
//!   is served to the task's containers by the metadata endpoint under an
//!   opaque credentials id ([`relative_uri`]); the execution role's session
//!   is the [`Caller`] that fetches the task's secrets and whose permissions
//!   the awslogs check asks about. [`TaskIdentity::release`] revokes every
//!   session of a task; the control plane calls it on every path by which
//!   a task ends up STOPPED.
//! - [`SecretSource`]: fetches one secret as a caller.
//! - [`RegistryLogins`]: logs in to ferry's own image registry as a caller
//!   (the execution role), for tasks whose images it serves.
//! - [`secret_ref`]: ECS's `valueFrom` grammar and JSON-key extraction.
//! - [`sessions`]: [`sessions::TaskSessions`], a [`TaskIdentity`] over any
//!   [`sessions::RoleSessions`] (STS), which also serves the metadata
//!   endpoint's credentials and re-issues them before they expire.
//! - [`Unconfigured`]: what a server without IAM uses: tasks that need an
//!   identity fail to start, saying so.

pub mod secret_ref;
pub mod sessions;

use std::sync::Arc;

use ferry_proto::plan::RegistryAuth;
use ferry_proto::{AwsError, Caller};
use zeroize::Zeroizing;

pub use secret_ref::SecretRef;

/// The service principal a task's roles must trust.
pub const ECS_TASKS_PRINCIPAL: &str = "ecs-tasks.amazonaws.com";

/// The variable through which the SDKs find a task role's credentials.
pub const CREDENTIALS_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";

/// The path, on the metadata endpoint (169.254.170.2), of the credentials
/// with id `credentials_id` (the ECS agent's v2 form).
pub fn relative_uri(credentials_id: &str) -> String {
    format!("/v2/credentials/{credentials_id}")
}

/// A fresh credentials id: random, so the path names nothing guessable
/// (the endpoint also answers only the task the id belongs to).
pub fn new_credentials_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A task, as its identity sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef<'a> {
    /// The task's ARN: the owner of its sessions.
    pub arn: &'a str,
    /// The task's id: the session name, as in AWS CloudTrail
    /// (`assumed-role/ROLE/TASK_ID`).
    pub id: &'a str,
}

/// Why a task's role could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// This server has no IAM wired in.
    NotConfigured,
    /// The role could not be assumed for `ecs-tasks.amazonaws.com`: it
    /// does not exist, or its trust policy does not allow the service.
    CannotAssume {
        /// The role.
        role_arn: String,
        /// What STS said.
        error: AwsError,
    },
}

/// ECS's words when it cannot assume a task's role.
const UNABLE_TO_ASSUME: &str = "ECS was unable to assume the role";

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConfigured => f.write_str("IAM roles are not configured in this ferry server"),
            // STS may already word it as ECS does; otherwise ECS's words,
            // then STS's.
            Self::CannotAssume { error, .. } if error.message.starts_with(UNABLE_TO_ASSUME) => {
                f.write_str(&error.message)
            }
            Self::CannotAssume { role_arn, error } => write!(
                f,
                "{UNABLE_TO_ASSUME} '{role_arn}' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role. ({}: {})",
                error.code, error.message
            ),
        }
    }
}

impl std::error::Error for IdentityError {}

/// Sessions of a task's roles. Implemented over IAM/STS in the composition
/// root ([`sessions::TaskSessions`]); [`Unconfigured`] otherwise.
pub trait TaskIdentity: Send + Sync {
    /// Starts the task role's sessions for `task`: checks that `role_arn`
    /// trusts `ecs-tasks.amazonaws.com`, issues the first session, and
    /// from now on serves it (renewed before it expires) to the task under
    /// `credentials_id`. Called again with the same id for a task
    /// re-adopted after a restart.
    fn task_role(
        &self,
        task: TaskRef<'_>,
        role_arn: &str,
        credentials_id: &str,
    ) -> Result<(), IdentityError>;

    /// A session of the execution role `role_arn` for `task`: the caller
    /// that fetches the task's secrets and whose permissions the awslogs
    /// check asks about. Revoked with the task's other sessions.
    fn execution_caller(&self, task: TaskRef<'_>, role_arn: &str) -> Result<Caller, IdentityError>;

    /// Revokes every session issued for the task `task_arn` and stops
    /// serving its credentials. Idempotent; unknown tasks are fine.
    fn release(&self, task_arn: &str);
}

/// Fetches secrets. Implemented over Secrets Manager and SSM in the
/// composition root.
pub trait SecretSource: Send + Sync {
    /// The value `secret` names, fetched as `caller` (with its
    /// permissions, audited as it): a Secrets Manager secret's
    /// `SecretString` at the version asked for (the JSON key, if any, is
    /// extracted by the caller of this method), or a parameter's value,
    /// decrypted. Errors are the services' own (code and message).
    fn fetch(&self, caller: &Caller, secret: &SecretRef) -> Result<Zeroizing<String>, AwsError>;
}

/// Logins to ferry's own image registry (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`
/// in image names). Implemented over the registry in the composition root.
pub trait RegistryLogins: Send + Sync {
    /// Credentials with which `caller` (a task's execution role session)
    /// may pull from `registry_host`, as `ecr:GetAuthorizationToken` gives
    /// them (user `AWS`, the token as password); the caller's permissions
    /// decide, and a refusal is the registry's error (code and message).
    /// `Ok(None)` when this server serves no registry at that host.
    fn login(&self, caller: &Caller, registry_host: &str)
    -> Result<Option<RegistryAuth>, AwsError>;
}

/// The identity services of a server without IAM: no role can be used.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unconfigured;

impl TaskIdentity for Unconfigured {
    fn task_role(&self, _: TaskRef<'_>, _: &str, _: &str) -> Result<(), IdentityError> {
        Err(IdentityError::NotConfigured)
    }

    fn execution_caller(&self, _: TaskRef<'_>, _: &str) -> Result<Caller, IdentityError> {
        Err(IdentityError::NotConfigured)
    }

    fn release(&self, _: &str) {}
}

impl SecretSource for Unconfigured {
    fn fetch(&self, _: &Caller, _: &SecretRef) -> Result<Zeroizing<String>, AwsError> {
        Err(AwsError::server(
            "ServiceUnavailableException",
            "Secrets Manager and SSM Parameter Store are not configured in this ferry server",
        ))
    }
}

impl RegistryLogins for Unconfigured {
    fn login(&self, _: &Caller, _: &str) -> Result<Option<RegistryAuth>, AwsError> {
        Ok(None)
    }
}

/// The identity services the control plane uses.
#[derive(Clone)]
pub struct IdentityServices {
    /// Sessions of the tasks' roles.
    pub roles: Arc<dyn TaskIdentity>,
    /// Where secrets come from.
    pub secrets: Arc<dyn SecretSource>,
    /// Logins to ferry's own image registry.
    pub registry: Arc<dyn RegistryLogins>,
}

impl IdentityServices {
    /// A server without IAM: tasks naming a task role or secrets fail to
    /// start, saying that IAM is not configured.
    pub fn unconfigured() -> Self {
        Self {
            roles: Arc::new(Unconfigured),
            secrets: Arc::new(Unconfigured),
            registry: Arc::new(Unconfigured),
        }
    }
}

impl std::fmt::Debug for IdentityServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityServices").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cannot_assume_is_worded_as_ecs_words_it_once() {
        let role = "arn:aws:iam::1:role/r";
        let ecs = format!(
            "ECS was unable to assume the role '{role}' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role."
        );
        let e = IdentityError::CannotAssume {
            role_arn: role.into(),
            error: AwsError::client("AccessDenied", ecs.clone()),
        };
        assert_eq!(e.to_string(), ecs);
        let e = IdentityError::CannotAssume {
            role_arn: role.into(),
            error: AwsError::client("NoSuchEntity", "The role cannot be found."),
        };
        assert_eq!(
            e.to_string(),
            format!("{ecs} (NoSuchEntity: The role cannot be found.)")
        );
    }
}
