//! Task identity over IAM/STS (`ferry-iam`) and Secrets Manager/SSM
//! (`ferry-secrets`): the adapters between those crates and the control
//! plane's identity traits, and the metadata endpoint's credentials
//! source. The logic (sessions per task, renewal before expiry,
//! revocation, `valueFrom`, JSON keys, Fargate's failure words) lives in
//! `ferry_control::identity` and `ferry_control::tasks`; this file only
//! translates types.
//!

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_control::identity::sessions::{RoleSession, RoleSessions, TaskSessions};
use ferry_control::identity::{SecretRef, SecretSource};
use ferry_proto::{AwsError, Caller, RequestContext};
use zeroize::Zeroizing;

/// STS for the tasks' sessions: `assume_role_for_service` checks the
/// role's trust policy for the service principal
/// (`ecs-tasks.amazonaws.com`) and ties each session to its owner (the
/// task's ARN), which `revoke_owner` revokes at once.
pub struct TaskSts(pub Arc<ferry_iam::Iam>);

impl RoleSessions for TaskSts {
    fn assume(
        &self,
        role_arn: &str,
        principal: &str,
        session_name: &str,
        owner: &str,
        duration: Duration,
    ) -> Result<RoleSession, AwsError> {
        let s =
            self.0
                .assume_role_for_service(role_arn, principal, session_name, owner, duration)?;
        Ok(RoleSession {
            access_key_id: s.access_key_id,
            secret_access_key: s.secret_access_key,
            session_token: s.session_token,
            expiration: SystemTime::from(s.expiration),
            role_arn: s.role_arn,
            caller: s.caller,
        })
    }

    fn revoke_owner(&self, owner: &str) {
        self.0.revoke_owner(owner);
    }
}

/// Secrets Manager and SSM, asked in process as the task's execution role
/// (its permissions; audited as it).
pub struct TaskSecrets {
    /// Secrets Manager.
    pub secrets_manager: Arc<ferry_secrets::SecretsManager>,
    /// Parameter Store.
    pub ssm: Arc<ferry_secrets::Ssm>,
    /// The server's region (the requests' region).
    pub region: String,
}

impl SecretSource for TaskSecrets {
    fn fetch(&self, caller: &Caller, secret: &SecretRef) -> Result<Zeroizing<String>, AwsError> {
        let ctx = RequestContext::internal(caller.clone(), self.region.clone());
        match secret {
            SecretRef::SecretsManager {
                secret_id,
                version_stage,
                version_id,
                // Extracted by the control plane from the whole value.
                json_key: _,
            } => {
                let v = self.secrets_manager.get_secret_value(
                    &ctx,
                    secret_id,
                    version_id.as_deref(),
                    version_stage.as_deref(),
                )?;
                // An environment variable is text: ECS injects
                // SecretString only.
                let arn = v.arn.clone();
                v.string.ok_or_else(|| {
                    AwsError::client(
                        "InvalidRequestException",
                        format!(
                            "the secret {arn} has no SecretString: a binary secret cannot be passed as an environment variable"
                        ),
                    )
                })
            }
            SecretRef::Parameter { name_or_arn } => {
                Ok(self.ssm.get_parameter(&ctx, name_or_arn, true)?.value)
            }
        }
    }
}

/// The metadata endpoint's credentials: the task role sessions the
/// control plane registered, re-issued before they expire.
pub struct TaskCredentials(pub Arc<TaskSessions>);

impl ferry_metadata::CredentialsSource for TaskCredentials {
    fn credentials(
        &self,
        task_arn: &str,
        credentials_id: &str,
    ) -> Option<ferry_metadata::Credentials> {
        let s = self.0.credentials(task_arn, credentials_id)?;
        Some(ferry_metadata::Credentials {
            role_arn: s.role_arn.clone(),
            access_key_id: s.access_key_id.clone(),
            secret_access_key: s.secret_access_key.clone(),
            token: s.session_token.clone(),
            expiration: s.expiration,
        })
    }
}

/// Logins to ferry's own registry for a task's execution role, as the ECS
/// agent makes them: `ecr:GetAuthorizationToken` as that role (its policies
/// decide), then the registry's token for it.
pub(crate) struct TaskRegistryLogins {
    pub registry: Arc<ferry_registry::Registry>,
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com`.
    pub host: String,
    pub region: String,
}

impl ferry_control::identity::RegistryLogins for TaskRegistryLogins {
    fn login(
        &self,
        caller: &Caller,
        registry_host: &str,
    ) -> Result<Option<ferry_proto::plan::RegistryAuth>, AwsError> {
        if registry_host != self.host {
            return Ok(None);
        }
        self.registry
            .authorize(caller, "GetAuthorizationToken", "*")?;
        let ctx = RequestContext::internal(caller.clone(), self.region.clone());
        let login = self.registry.login(&ctx)?;
        Ok(Some(ferry_proto::plan::RegistryAuth::new(
            login.username,
            login.password,
        )))
    }
}
