//! What a task's identity needs before its containers start, after its
//! record is written and before the runtime gets its plan:
//!
//! 1. the task role: its first session is issued (the trust policy must
//!    allow `ecs-tasks.amazonaws.com`) and registered under the task's
//!    credentials id;
//! 2. the execution role, when the task has secrets or awslogs: a session
//!    of it is the caller of everything below;
//! 3. awslogs: the execution role must be allowed `logs:CreateLogStream`
//!    and `logs:PutLogEvents` on each container's stream;
//! 4. secrets: each is fetched as the execution role and put into the
//!    plan the runtime gets (never into the task record);
//! 5. registry credentials, likewise: for an image in ferry's own registry
//!    (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/...`) a login as the
//!    execution role ([`RegistryLogins`](crate::identity::RegistryLogins)),
//!    otherwise `repositoryCredentials`' secret
//!    (`{"username": ..., "password": ...}`).
//!
//! Any failure fails the task with `TaskFailedToStart` and the reason
//! Fargate gives, in its words.

use ferry_proto::Caller;
use ferry_proto::authz::{self, Check};
use ferry_proto::plan::{RegistryAuth, SecretEnv, TaskPlan};
use zeroize::Zeroizing;

use crate::identity::secret_ref::{self, SecretRef};
use crate::identity::{IdentityError, TaskRef};
use crate::model::task::TaskRecord;
use crate::model::task_definition::TaskDefSpec;
use crate::service::Core;

/// The head of every secrets failure, as Fargate words it.
const SECRETS_FAILED: &str = "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed";

/// The plan the runtime gets for `task` (its recorded plan with the
/// secrets' values), or why the task cannot start (its `stoppedReason`).
pub(super) fn prepare(
    core: &Core,
    task: &TaskRecord,
    spec: &TaskDefSpec,
) -> Result<TaskPlan, String> {
    let me = TaskRef {
        arn: &task.plan.task_arn,
        id: &task.plan.task_id,
    };
    let roles = &task.roles;
    if let (Some(role), Some(id)) = (&roles.task_role_arn, &roles.credentials_id) {
        core.identity
            .roles
            .task_role(me, role, id)
            .map_err(|e| match e {
                IdentityError::NotConfigured => {
                    format!("ResourceInitializationError: the task role {role} cannot be used: {e}")
                }
                other => other.to_string(),
            })?;
    }
    let has_secrets = spec.containers.iter().any(|c| !c.secrets.is_empty());
    let has_awslogs = task.plan.containers.iter().any(|c| c.awslogs.is_some());
    let own = own_registry(core);
    let pull_auth: Vec<Option<PullAuth>> = task
        .plan
        .containers
        .iter()
        .zip(&spec.containers)
        .map(|(c, d)| pull_auth(&own, &c.image, d.repository_credentials.as_deref()))
        .collect();
    let has_pull_auth = pull_auth.iter().any(Option::is_some);
    if !has_secrets && !has_awslogs && !has_pull_auth {
        return Ok(task.plan.clone());
    }
    // What cannot be done without the execution role.
    let needs_role = has_secrets || has_pull_auth;
    let caller = match &roles.execution_role_arn {
        None if has_secrets => {
            return Err(format!(
                "{SECRETS_FAILED}: the task has secrets but no execution role (executionRoleArn) to fetch them with"
            ));
        }
        None if has_pull_auth => {
            return Err(format!(
                "{SECRETS_FAILED}: unable to retrieve ecr registry auth: the task has no execution role (executionRoleArn) to pull its image with"
            ));
        }
        // Without an execution role, awslogs keeps working as before:
        // the platform writes the logs (ferry's choice; Fargate requires
        // the role).
        None => return Ok(task.plan.clone()),
        Some(role) => match core.identity.roles.execution_caller(me, role) {
            Ok(c) => c,
            // A server without IAM cannot check logs permissions; secrets
            // it cannot fetch at all.
            Err(IdentityError::NotConfigured) if !needs_role => return Ok(task.plan.clone()),
            Err(e @ IdentityError::NotConfigured) => {
                return Err(format!(
                    "{SECRETS_FAILED}: the execution role {role} cannot be used: {e}"
                ));
            }
            Err(e) => return Err(e.to_string()),
        },
    };
    if has_awslogs {
        check_logs(core, &caller, &task.plan)?;
    }
    let mut plan = task.plan.clone();
    for (c, def) in plan.containers.iter_mut().zip(&spec.containers) {
        if def.secrets.is_empty() {
            continue;
        }
        let mut values = Vec::with_capacity(def.secrets.len());
        for s in &def.secrets {
            values.push((
                s.name.clone(),
                fetch(core, &caller, &s.name, &s.value_from)?,
            ));
        }
        c.secret_env = SecretEnv::new(values);
    }
    for (c, auth) in plan.containers.iter_mut().zip(pull_auth) {
        c.registry_auth = match auth {
            None => None,
            Some(PullAuth::Own) => registry_login(core, &caller, &own)?,
            Some(PullAuth::Secret(id)) => Some(registry_secret(core, &caller, &id)?),
        };
    }
    Ok(plan)
}

/// How a container's image registry is authenticated.
enum PullAuth {
    /// ferry's own registry: a login as the execution role.
    Own,
    /// `repositoryCredentials`: this secret's username and password.
    Secret(String),
}

/// ferry's own registry's host, as images name it.
fn own_registry(core: &Core) -> String {
    format!(
        "{}.dkr.ecr.{}.amazonaws.com",
        core.cfg.account, core.cfg.region
    )
}

/// Whether `image` needs credentials, and which. `repositoryCredentials`
/// does not apply to images in ECR (as ECS documents it).
fn pull_auth(own: &str, image: &str, credentials: Option<&str>) -> Option<PullAuth> {
    match image.split_once('/') {
        Some((host, _)) if host == own => Some(PullAuth::Own),
        _ => credentials.map(|c| PullAuth::Secret(c.to_owned())),
    }
}

/// A login to ferry's own registry as the execution role.
fn registry_login(
    core: &Core,
    caller: &Caller,
    host: &str,
) -> Result<Option<RegistryAuth>, String> {
    core.identity.registry.login(caller, host).map_err(|e| {
        format!(
            "{SECRETS_FAILED}: unable to retrieve ecr registry auth: service call has been retried 1 time(s): {}: {}",
            e.code, e.message
        )
    })
}

/// `repositoryCredentials`: the secret's `username` and `password`, read as
/// the execution role.
fn registry_secret(core: &Core, caller: &Caller, secret_id: &str) -> Result<RegistryAuth, String> {
    let fail = |detail: &dyn std::fmt::Display| {
        format!(
            "{SECRETS_FAILED}: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {secret_id} from secrets manager: {detail}"
        )
    };
    let r = SecretRef::SecretsManager {
        secret_id: secret_id.to_owned(),
        json_key: None,
        version_stage: None,
        version_id: None,
    };
    let value = core
        .identity
        .secrets
        .fetch(caller, &r)
        .map_err(|e| fail(&e))?;
    let username = secret_ref::json_key(&value, "username").map_err(|e| fail(&e))?;
    let password = secret_ref::json_key(&value, "password").map_err(|e| fail(&e))?;
    Ok(RegistryAuth::new(username.to_string(), password))
}

/// The execution role may create each awslogs container's stream and put
/// events in it (as the awslogs driver does with the role's credentials
/// before the container starts on Fargate).
fn check_logs(core: &Core, caller: &Caller, plan: &TaskPlan) -> Result<(), String> {
    for c in &plan.containers {
        let Some(a) = &c.awslogs else { continue };
        let stream = match a.stream_prefix.as_deref() {
            Some(p) if !p.is_empty() => format!("{p}/{}/{}", c.name, plan.task_id),
            _ => format!("{}/{}", c.name, plan.task_id),
        };
        let arn = format!(
            "arn:aws:logs:{}:{}:log-group:{}:log-stream:{stream}",
            core.cfg.region, core.cfg.account, a.group
        );
        for (action, what) in [
            (
                "logs:CreateLogStream",
                "create stream has been retried 1 times: failed to create Cloudwatch log stream",
            ),
            (
                "logs:PutLogEvents",
                "put log events has been retried 1 times: failed to put log events",
            ),
        ] {
            authz::authorize(caller, &Check::new(action, &arn), None).map_err(|d| {
                format!(
                    "ResourceInitializationError: failed to validate logger args: {what}: AccessDeniedException: {}",
                    d.message()
                )
            })?;
        }
    }
    Ok(())
}

/// One secret's value, fetched as the execution role.
fn fetch(
    core: &Core,
    caller: &Caller,
    name: &str,
    value_from: &str,
) -> Result<Zeroizing<String>, String> {
    // Registration parsed it already; a record upgraded from an older
    // server may still hold a malformed one.
    let r = SecretRef::parse(name, value_from).map_err(|e| format!("{SECRETS_FAILED}: {e}"))?;
    let secrets = &core.identity.secrets;
    match &r {
        SecretRef::SecretsManager {
            secret_id,
            json_key,
            ..
        } => {
            let asm = |detail: &dyn std::fmt::Display| {
                format!(
                    "{SECRETS_FAILED}: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {secret_id} from secrets manager: {detail}"
                )
            };
            let value = secrets.fetch(caller, &r).map_err(|e| asm(&e))?;
            match json_key {
                None => Ok(value),
                Some(k) => secret_ref::json_key(&value, k).map_err(|e| asm(&e)),
            }
        }
        SecretRef::Parameter { name_or_arn } => secrets.fetch(caller, &r).map_err(|e| {
            let detail = if e.code == "ParameterNotFound" {
                format!("invalid ssm parameters: {name_or_arn}")
            } else {
                e.to_string()
            };
            format!(
                "{SECRETS_FAILED}: unable to retrieve secrets from ssm: service call has been retried 1 time(s): {detail}"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use ferry_proto::plan::TaskEvent;
    use ferry_proto::{AwsError, Caller, IdentityPolicies, Principal};
    use serde_json::{Value, json};
    use zeroize::Zeroizing;

    use super::SECRETS_FAILED;
    use crate::db;
    use crate::identity::sessions::{RoleSession, RoleSessions, TaskSessions};
    use crate::identity::{IdentityServices, RegistryLogins, SecretRef, SecretSource};
    use crate::model::task::{TaskRecord, TaskStatus};
    use crate::tests::{Env, FakeRuntime, env_with_identity, run_body, source_doc};
    use ferry_proto::plan::RegistryAuth;

    const ACCOUNT: &str = "000000000000";
    const TASK_ROLE: &str = "arn:aws:iam::000000000000:role/app";
    const EXEC_ROLE: &str = "arn:aws:iam::000000000000:role/exec";
    const UNTRUSTED: &str = "arn:aws:iam::000000000000:role/untrusted";
    const WHOLE: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:whole-AbCdEf";
    const JSONS: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:json-AbCdEf";
    const PARAM: &str = "/prod/db/password";
    const V_WHOLE: &str = "whole-s3cr3t-4bd1";
    const V_JSON: &str = "json-s3cr3t-9c2e";
    const V_PARAM: &str = "param-s3cr3t-77fa";

    /// STS: roles trust ecs-tasks but `untrusted`; each role's policies
    /// come with its sessions; revocations are recorded.
    #[derive(Default)]
    struct Sts {
        policies: HashMap<String, Vec<String>>,
        revoked: Mutex<Vec<String>>,
        issued: Mutex<usize>,
    }

    impl RoleSessions for Sts {
        fn assume(
            &self,
            role_arn: &str,
            principal: &str,
            session_name: &str,
            _owner: &str,
            duration: Duration,
        ) -> Result<RoleSession, AwsError> {
            assert_eq!(principal, "ecs-tasks.amazonaws.com");
            if role_arn == UNTRUSTED {
                return Err(AwsError::client(
                    "AccessDenied",
                    format!(
                        "User: ecs-tasks.amazonaws.com is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
                    ),
                ));
            }
            let mut n = self.issued.lock().unwrap();
            *n += 1;
            let policies = self
                .policies
                .get(role_arn)
                .into_iter()
                .flatten()
                .map(|p| ferry_policy::Policy::parse_identity(p).unwrap())
                .collect();
            Ok(RoleSession {
                access_key_id: format!("ASIA{:016}", *n),
                secret_access_key: Zeroizing::new(format!("sk-{n}")),
                session_token: Zeroizing::new(format!("tok-{n}")),
                expiration: SystemTime::now() + duration,
                role_arn: role_arn.into(),
                caller: Caller {
                    account: ACCOUNT.into(),
                    principal: Principal::AssumedRole {
                        role_arn: role_arn.into(),
                        session_name: session_name.into(),
                    },
                    access_key_id: Some(format!("ASIA{:016}", *n)),
                    policies: Some(Arc::new(IdentityPolicies { policies })),
                },
            })
        }

        fn revoke_owner(&self, owner: &str) {
            self.revoked.lock().unwrap().push(owner.into());
        }
    }

    /// Secrets Manager and SSM: three values; whoever asks is recorded.
    #[derive(Default)]
    struct Secrets {
        asked_by: Mutex<Vec<String>>,
    }

    impl SecretSource for Secrets {
        fn fetch(&self, caller: &Caller, s: &SecretRef) -> Result<Zeroizing<String>, AwsError> {
            self.asked_by.lock().unwrap().push(caller.arn());
            let v = match s.target() {
                WHOLE => V_WHOLE.to_owned(),
                JSONS => json!({"user": "admin", "password": V_JSON}).to_string(),
                PARAM => V_PARAM.to_owned(),
                REGCREDS => json!({"username": "puller", "password": V_REGPW}).to_string(),
                "not-json" => "plain".to_owned(),
                t if t.contains(":secret:") || t == "missing" => {
                    return Err(AwsError::client(
                        "ResourceNotFoundException",
                        "Secrets Manager can't find the specified secret.",
                    ));
                }
                _ => return Err(AwsError::client("ParameterNotFound", "")),
            };
            Ok(Zeroizing::new(v))
        }
    }

    const REGCREDS: &str = "registry/creds";
    const V_REGPW: &str = "reg-pw-5e1d";
    const OWN_HOST: &str = "000000000000.dkr.ecr.us-east-1.amazonaws.com";

    /// ferry's registry: logs in whoever may (the exec role with
    /// ecr:GetAuthorizationToken in its policies, as the registry decides).
    #[derive(Default)]
    struct Registry {
        asked: Mutex<Vec<(String, String)>>,
        refuse: bool,
    }

    impl RegistryLogins for Registry {
        fn login(&self, caller: &Caller, host: &str) -> Result<Option<RegistryAuth>, AwsError> {
            self.asked.lock().unwrap().push((caller.arn(), host.into()));
            if self.refuse {
                return Err(AwsError::client(
                    "AccessDeniedException",
                    format!(
                        "User: {} is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based policy allows the ecr:GetAuthorizationToken action",
                        caller.arn()
                    ),
                ));
            }
            Ok(Some(RegistryAuth::new(
                "AWS".into(),
                Zeroizing::new("ecr-token-1".into()),
            )))
        }
    }

    const LOGS: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#;

    struct World {
        e: Env,
        sts: Arc<Sts>,
        sessions: Arc<TaskSessions>,
        secrets: Arc<Secrets>,
        registry: Arc<Registry>,
    }

    fn world_with(exec_policies: &[&str], dir: tempfile::TempDir, rt: FakeRuntime) -> World {
        world_full(exec_policies, dir, rt, Registry::default())
    }

    fn world_full(
        exec_policies: &[&str],
        dir: tempfile::TempDir,
        rt: FakeRuntime,
        registry: Registry,
    ) -> World {
        let mut sts = Sts::default();
        sts.policies.insert(
            EXEC_ROLE.into(),
            exec_policies.iter().map(|p| p.to_string()).collect(),
        );
        let sts = Arc::new(sts);
        let sessions = Arc::new(TaskSessions::new(sts.clone()));
        let secrets = Arc::new(Secrets::default());
        let registry = Arc::new(registry);
        let e = env_with_identity(
            dir,
            rt,
            IdentityServices {
                roles: sessions.clone(),
                secrets: secrets.clone(),
                registry: registry.clone(),
            },
        );
        World {
            e,
            sts,
            sessions,
            secrets,
            registry,
        }
    }

    fn world(exec_policies: &[&str]) -> World {
        world_with(
            exec_policies,
            tempfile::tempdir().unwrap(),
            FakeRuntime::default(),
        )
    }

    /// The source document with a task role and the three secrets.
    fn doc(task_role: Option<&str>, secrets: Value) -> Value {
        let mut d = source_doc();
        d["executionRoleArn"] = EXEC_ROLE.into();
        if let Some(r) = task_role {
            d["taskRoleArn"] = r.into();
        }
        d["containerDefinitions"][0]["secrets"] = secrets;
        d
    }

    fn three() -> Value {
        json!([
            {"name": "WHOLE", "valueFrom": WHOLE},
            {"name": "JSON_KEY", "valueFrom": format!("{JSONS}:password::")},
            {"name": "PARAM", "valueFrom": PARAM}
        ])
    }

    fn run(w: &World) -> (String, Value) {
        let arn = w.e.run_one();
        (arn.clone(), w.e.describe(&arn))
    }

    fn record(w: &World, arn: &str) -> TaskRecord {
        let id = arn.rsplit('/').next().unwrap();
        w.e.store
            .get(db::TASKS, &db::task_key("default", id))
            .unwrap()
            .unwrap()
    }

    fn env_of(plan: &ferry_proto::plan::TaskPlan) -> HashMap<String, String> {
        plan.containers[0].environment.iter().cloned().collect()
    }

    #[test]
    fn a_task_role_gives_every_container_its_credentials_path_and_nothing_else_does() {
        let w = world(&[LOGS]);
        w.e.ok("RegisterTaskDefinition", doc(Some("app"), json!([])));
        let (arn, t) = run(&w);
        assert_eq!(t["lastStatus"], "PROVISIONING", "{t}");
        let rec = record(&w, &arn);
        assert_eq!(
            rec.roles.task_role_arn.as_deref(),
            Some(TASK_ROLE),
            "names become ARNs"
        );
        assert_eq!(rec.roles.execution_role_arn.as_deref(), Some(EXEC_ROLE));
        let id = rec.roles.credentials_id.clone().unwrap();
        let env = env_of(&w.e.plan(0));
        assert_eq!(
            env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
            format!("/v2/credentials/{id}")
        );
        // The session is served for that task and id only.
        let c = w.sessions.credentials(&arn, &id).unwrap();
        assert_eq!(c.role_arn, TASK_ROLE);
        let task_id = arn.rsplit('/').next().unwrap();
        assert_eq!(
            c.caller.arn(),
            format!("arn:aws:sts::{ACCOUNT}:assumed-role/app/{task_id}")
        );
        assert!(w.sessions.credentials(&arn, "other").is_none());

        // A second task has its own id; neither answers the other's.
        let arn2 = w.e.run_one();
        let id2 = record(&w, &arn2).roles.credentials_id.unwrap();
        assert_ne!(id, id2);
        assert!(w.sessions.credentials(&arn2, &id).is_none());
        assert!(w.sessions.credentials(&arn, &id2).is_none());

        // Without a task role: no variable, no session.
        w.e.ok("RegisterTaskDefinition", doc(None, json!([])));
        let arn3 = w.e.run_one();
        assert!(record(&w, &arn3).roles.credentials_id.is_none());
        assert!(!env_of(&w.e.plan(2)).contains_key("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"));
        assert_eq!(w.sessions.len(), 2);

        // RunTask's override wins over the definition's role.
        let mut body = run_body();
        body["overrides"] = json!({"taskRoleArn": TASK_ROLE});
        let arn4 = w.e.ok("RunTask", body)["tasks"][0]["taskArn"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            record(&w, &arn4).roles.task_role_arn.as_deref(),
            Some(TASK_ROLE)
        );
        let mut body = run_body();
        body["overrides"] = json!({"taskRoleArn": "not a role!"});
        assert_eq!(w.e.err("RunTask", body).code, "InvalidParameterException");
    }

    #[test]
    fn an_untrusted_task_role_fails_the_task_and_releases_it() {
        let w = world(&[LOGS]);
        w.e.ok("RegisterTaskDefinition", doc(Some(UNTRUSTED), json!([])));
        let (arn, t) = run(&w);
        assert_eq!(t["lastStatus"], "STOPPED");
        assert_eq!(t["stopCode"], "TaskFailedToStart");
        let reason = t["stoppedReason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!(
                "ECS was unable to assume the role '{UNTRUSTED}' that was provided for this task."
            )),
            "{reason}"
        );
        assert!(w.e.rt.started.lock().unwrap().is_empty());
        assert_eq!(*w.sts.revoked.lock().unwrap(), vec![arn]);
    }

    #[test]
    fn secrets_are_fetched_as_the_execution_role_and_reach_only_the_plan() {
        let w = world(&[LOGS]);
        w.e.ok("RegisterTaskDefinition", doc(Some("app"), three()));
        let (arn, t) = run(&w);
        assert_eq!(t["lastStatus"], "PROVISIONING", "{t}");
        let task_id = arn.rsplit('/').next().unwrap();
        let exec = format!("arn:aws:sts::{ACCOUNT}:assumed-role/exec/{task_id}");
        assert_eq!(*w.secrets.asked_by.lock().unwrap(), vec![exec; 3]);
        let plan = w.e.plan(0);
        let got: Vec<(&str, &str)> = plan.containers[0].secret_env.iter().collect();
        assert_eq!(
            got,
            vec![("WHOLE", V_WHOLE), ("JSON_KEY", V_JSON), ("PARAM", V_PARAM)]
        );
        assert!(!format!("{plan:?}").contains(V_WHOLE));

        // No value in the task record, the definition, any API answer, or
        // the store's file.
        let rec = serde_json::to_string(&record(&w, &arn)).unwrap();
        let td = w.e.ok(
            "DescribeTaskDefinition",
            json!({"taskDefinition": "fargate-task-definition"}),
        );
        let listed = w.e.ok("DescribeTasks", json!({"tasks": [arn]}));
        let file = std::fs::read(w.e._dir.path().join("state.redb")).unwrap();
        for v in [V_WHOLE, V_JSON, V_PARAM] {
            assert!(!rec.contains(v), "record holds {v}");
            assert!(!td.to_string().contains(v));
            assert!(!listed.to_string().contains(v));
            assert!(
                !file.windows(v.len()).any(|win| win == v.as_bytes()),
                "the store's file holds {v}"
            );
        }
        assert!(
            td.to_string().contains(&format!("{JSONS}:password::")),
            "the definition keeps valueFrom"
        );
    }

    #[test]
    fn failures_to_fetch_secrets_stop_the_task_with_fargates_words() {
        let head = "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: ";
        let missing = "arn:aws:secretsmanager:us-east-1:000000000000:secret:gone-XyZ123";
        let cases = [
            (
                json!([{"name": "A", "valueFrom": missing}]),
                format!(
                    "{head}unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {missing} from secrets manager: ResourceNotFoundException: Secrets Manager can't find the specified secret."
                ),
            ),
            (
                json!([{"name": "A", "valueFrom": format!("{JSONS}:nope::")}]),
                format!(
                    "{head}unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {JSONS} from secrets manager: retrieved secret from Secrets Manager did not contain json key nope"
                ),
            ),
            (
                json!([{"name": "A", "valueFrom": "/missing/param"}]),
                format!(
                    "{head}unable to retrieve secrets from ssm: service call has been retried 1 time(s): invalid ssm parameters: /missing/param"
                ),
            ),
        ];
        for (secrets, want) in cases {
            let w = world(&[LOGS]);
            w.e.ok("RegisterTaskDefinition", doc(Some("app"), secrets));
            let (arn, t) = run(&w);
            assert_eq!(t["lastStatus"], "STOPPED");
            assert_eq!(t["stopCode"], "TaskFailedToStart");
            assert_eq!(t["stoppedReason"], want.as_str());
            assert!(w.e.rt.started.lock().unwrap().is_empty());
            // The task role's session issued before the failure is revoked.
            assert_eq!(*w.sts.revoked.lock().unwrap(), vec![arn.clone()]);
            assert!(w.sessions.is_empty());
        }
    }

    #[test]
    fn the_execution_role_must_be_allowed_to_write_the_logs() {
        let w = world(&[]);
        w.e.ok("RegisterTaskDefinition", doc(None, json!([])));
        let (arn, t) = run(&w);
        let task_id = arn.rsplit('/').next().unwrap();
        assert_eq!(t["stopCode"], "TaskFailedToStart");
        assert_eq!(
            t["stoppedReason"].as_str().unwrap(),
            format!(
                "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 times: failed to create Cloudwatch log stream: AccessDeniedException: User: arn:aws:sts::{ACCOUNT}:assumed-role/exec/{task_id} is not authorized to perform: logs:CreateLogStream on resource: arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/ecs/fargate-task-definition:log-stream:ecs/sample-fargate-app/{task_id} because no identity-based policy allows the logs:CreateLogStream action"
            )
        );
        // Allowed to create the stream but not to write to it.
        let create_only = r#"{"Statement":[{"Effect":"Allow","Action":"logs:CreateLogStream","Resource":"arn:aws:logs:*:*:log-group:/ecs/fargate-task-definition:*"}]}"#;
        let w = world(&[create_only]);
        w.e.ok("RegisterTaskDefinition", doc(None, json!([])));
        let (_, t) = run(&w);
        assert!(
            t["stoppedReason"]
                .as_str()
                .unwrap()
                .contains("is not authorized to perform: logs:PutLogEvents"),
            "{t}"
        );
        // Without an execution role, logs work as before.
        let w = world(&[]);
        let mut d = source_doc();
        d.as_object_mut().unwrap().remove("executionRoleArn");
        w.e.ok("RegisterTaskDefinition", d);
        let (_, t) = run(&w);
        assert_eq!(t["lastStatus"], "PROVISIONING", "{t}");
    }

    #[test]
    fn sessions_are_released_when_the_task_stops_and_at_reconcile() {
        let w = world(&[LOGS]);
        w.e.ok("RegisterTaskDefinition", doc(Some("app"), three()));
        let (arn, _) = run(&w);
        let id = record(&w, &arn).roles.credentials_id.unwrap();
        w.e.ok("StopTask", json!({"task": arn}));
        // Still served while the containers stop (they may flush with them).
        assert!(w.sessions.credentials(&arn, &id).is_some());
        assert!(w.sts.revoked.lock().unwrap().is_empty());
        w.e.sink(0)(TaskEvent::Stopped {
            stop_code: "UserInitiated".into(),
            stopped_reason: "x".into(),
        });
        assert!(w.sessions.credentials(&arn, &id).is_none());
        assert_eq!(*w.sts.revoked.lock().unwrap(), vec![arn.clone()]);
        // Events after STOPPED do not release again.
        w.e.sink(0)(TaskEvent::Running);
        assert_eq!(w.sts.revoked.lock().unwrap().len(), 1);

        // A task running when the server went away is released at the
        // next start (and the STOPPED one once more).
        let arn2 = w.e.run_one();
        let World { e, .. } = w;
        let Env {
            _dir,
            store,
            rt,
            svc,
            ..
        } = e;
        drop((svc, store, rt));
        let w = world_with(&[LOGS], _dir, FakeRuntime::default());
        let t = w.e.describe(&arn2);
        assert_eq!(t["lastStatus"], "STOPPED");
        let mut revoked = w.sts.revoked.lock().unwrap().clone();
        revoked.sort();
        let mut want = vec![arn, arn2];
        want.sort();
        assert_eq!(revoked, want);
    }

    #[test]
    fn an_adopted_task_gets_its_credentials_served_again() {
        let w = world(&[LOGS]);
        w.e.ok("RegisterTaskDefinition", doc(Some("app"), json!([])));
        let (arn, _) = run(&w);
        let id = record(&w, &arn).roles.credentials_id.unwrap();
        let World { e, .. } = w;
        let Env {
            _dir,
            store,
            rt,
            svc,
            ..
        } = e;
        drop((svc, store, rt));
        let w = world_with(
            &[LOGS],
            _dir,
            FakeRuntime {
                adopt: true,
                ..Default::default()
            },
        );
        assert_eq!(w.e.describe(&arn)["lastStatus"], "PROVISIONING");
        assert!(w.sessions.credentials(&arn, &id).is_some());
        assert!(w.sts.revoked.lock().unwrap().is_empty());
    }

    #[test]
    fn a_server_without_iam_says_so() {
        let e = crate::tests::env();
        e.ok("RegisterTaskDefinition", doc(Some("app"), json!([])));
        let arn = e.run_one();
        let t = e.describe(&arn);
        assert_eq!(t["stopCode"], "TaskFailedToStart");
        assert_eq!(
            t["stoppedReason"],
            format!(
                "ResourceInitializationError: the task role {TASK_ROLE} cannot be used: IAM roles are not configured in this ferry server"
            )
        );
        e.ok("RegisterTaskDefinition", doc(None, three()));
        let arn = e.run_one();
        let reason = e.describe(&arn)["stoppedReason"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            reason.starts_with("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: the execution role")
                && reason.ends_with("not configured in this ferry server"),
            "{reason}"
        );
        // The source document (an execution role, awslogs, no secrets)
        // runs as before.
        e.ok("RegisterTaskDefinition", source_doc());
        let arn = e.run_one();
        assert_eq!(e.describe(&arn)["lastStatus"], "PROVISIONING");
        assert_eq!(record_of(&e, &arn).last_status, TaskStatus::Provisioning);
    }

    fn record_of(e: &Env, arn: &str) -> TaskRecord {
        let id = arn.rsplit('/').next().unwrap();
        e.store
            .get(db::TASKS, &db::task_key("default", id))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn repository_credentials_are_read_as_the_execution_role_into_the_plan_only() {
        let w = world(&[LOGS]);
        let mut d = doc(None, json!([]));
        d["containerDefinitions"][0]["image"] = "registry.example.com/team/app:1".into();
        d["containerDefinitions"][0]["repositoryCredentials"] =
            json!({"credentialsParameter": REGCREDS});
        w.e.ok("RegisterTaskDefinition", d.clone());
        let (arn, t) = run(&w);
        assert_eq!(t["lastStatus"], "PROVISIONING", "{t}");
        let task_id = arn.rsplit('/').next().unwrap();
        assert_eq!(
            *w.secrets.asked_by.lock().unwrap(),
            vec![format!(
                "arn:aws:sts::{ACCOUNT}:assumed-role/exec/{task_id}"
            )]
        );
        let plan = w.e.plan(0);
        let auth = plan.containers[0].registry_auth.clone().unwrap();
        assert_eq!((auth.username(), auth.password()), ("puller", V_REGPW));
        assert!(!format!("{plan:?}").contains(V_REGPW));
        let rec = serde_json::to_string(&record(&w, &arn)).unwrap();
        assert!(!rec.contains(V_REGPW) && !rec.contains("puller"), "{rec}");
        assert!(w.registry.asked.lock().unwrap().is_empty());

        // A secret that is missing or not {"username","password"}: the
        // task fails to start with Fargate's head and the secret's name.
        for (secret, detail) in [
            ("missing", "ResourceNotFoundException"),
            ("not-json", "not a JSON object"),
        ] {
            d["containerDefinitions"][0]["repositoryCredentials"] =
                json!({"credentialsParameter": secret});
            w.e.ok("RegisterTaskDefinition", d.clone());
            let (_, t) = run(&w);
            let reason = t["stoppedReason"].as_str().unwrap();
            assert!(
                reason.starts_with(&format!("{SECRETS_FAILED}: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {secret} from secrets manager: ")),
                "{reason}"
            );
            assert!(reason.contains(detail), "{reason}");
        }
    }

    #[test]
    fn images_in_ferrys_registry_get_a_login_as_the_execution_role() {
        let w = world(&[LOGS]);
        let mut d = doc(None, json!([]));
        d["containerDefinitions"][0]["image"] = format!("{OWN_HOST}/app:1").into();
        // repositoryCredentials does not apply to ECR images.
        d["containerDefinitions"][0]["repositoryCredentials"] =
            json!({"credentialsParameter": REGCREDS});
        w.e.ok("RegisterTaskDefinition", d.clone());
        let (arn, t) = run(&w);
        assert_eq!(t["lastStatus"], "PROVISIONING", "{t}");
        let task_id = arn.rsplit('/').next().unwrap();
        assert_eq!(
            *w.registry.asked.lock().unwrap(),
            vec![(
                format!("arn:aws:sts::{ACCOUNT}:assumed-role/exec/{task_id}"),
                OWN_HOST.to_string()
            )]
        );
        let auth = w.e.plan(0).containers[0].registry_auth.clone().unwrap();
        assert_eq!((auth.username(), auth.password()), ("AWS", "ecr-token-1"));
        assert!(w.secrets.asked_by.lock().unwrap().is_empty());

        // Without an execution role (no repositoryCredentials either).
        let mut bare = d.clone();
        bare.as_object_mut().unwrap().remove("executionRoleArn");
        bare["containerDefinitions"][0]
            .as_object_mut()
            .unwrap()
            .remove("repositoryCredentials");
        w.e.ok("RegisterTaskDefinition", bare);
        let (_, t) = run(&w);
        assert_eq!(
            t["stoppedReason"],
            format!(
                "{SECRETS_FAILED}: unable to retrieve ecr registry auth: the task has no execution role (executionRoleArn) to pull its image with"
            )
        );

        // The registry refuses the role.
        let w = world_full(
            &[LOGS],
            tempfile::tempdir().unwrap(),
            FakeRuntime::default(),
            Registry {
                refuse: true,
                ..Default::default()
            },
        );
        w.e.ok("RegisterTaskDefinition", d);
        let (_, t) = run(&w);
        let reason = t["stoppedReason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("{SECRETS_FAILED}: unable to retrieve ecr registry auth: service call has been retried 1 time(s): AccessDeniedException: User: arn:aws:sts::{ACCOUNT}:assumed-role/exec/")),
            "{reason}"
        );
        assert_eq!(t["stopCode"], "TaskFailedToStart");
    }

    #[test]
    fn registration_refuses_repository_credentials_without_an_execution_role() {
        let e = crate::tests::env();
        let mut d = doc(None, json!([]));
        d.as_object_mut().unwrap().remove("executionRoleArn");
        d["containerDefinitions"][0]["repositoryCredentials"] =
            json!({"credentialsParameter": REGCREDS});
        let err = e.err("RegisterTaskDefinition", d.clone());
        assert_eq!(err.code, "ClientException");
        assert_eq!(
            err.message,
            "When you are specifying repository credentials, you must also specify a value for 'executionRoleArn'."
        );
        d["executionRoleArn"] = EXEC_ROLE.into();
        for bad in [
            json!({}),
            json!({"credentialsParameter": ""}),
            json!({"credentialsParameter": "has space"}),
            json!({"credentialsParameter": "arn:aws:ssm:us-east-1:000000000000:parameter/x"}),
            json!({"credentialsParameter": format!("{JSONS}:password::")}),
        ] {
            d["containerDefinitions"][0]["repositoryCredentials"] = bad.clone();
            let err = e.err("RegisterTaskDefinition", d.clone());
            assert!(
                err.message
                    .starts_with("Invalid 'repositoryCredentials' setting for container"),
                "{bad}: {}",
                err.message
            );
        }
        d["containerDefinitions"][0]["repositoryCredentials"] =
            json!({"credentialsParameter": WHOLE});
        let td = e.ok("RegisterTaskDefinition", d);
        assert_eq!(
            td["taskDefinition"]["containerDefinitions"][0]["repositoryCredentials"]["credentialsParameter"],
            WHOLE
        );
    }

    #[test]
    fn registration_refuses_malformed_secrets_and_roles() {
        let e = crate::tests::env();
        let mut no_exec = doc(None, three());
        no_exec.as_object_mut().unwrap().remove("executionRoleArn");
        let err = e.err("RegisterTaskDefinition", no_exec);
        assert_eq!(err.code, "ClientException");
        assert_eq!(
            err.message,
            "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'."
        );
        for (secrets, needle) in [
            (
                json!([{"name": "A"}]),
                "each secret needs a name and a valueFrom",
            ),
            (
                json!([{"valueFrom": PARAM}]),
                "each secret needs a name and a valueFrom",
            ),
            (
                json!([{"name": "A", "valueFrom": "bad name!"}]),
                "The Systems Manager parameter name specified for secret A is invalid",
            ),
            (
                json!([{"name": "A", "valueFrom": "arn:aws:secretsmanager:us-east-1:000000000000:secret"}]),
                "The Secrets Manager secret ARN specified for secret A is invalid",
            ),
            (
                json!([{"name": "A", "valueFrom": PARAM}, {"name": "A", "valueFrom": PARAM}]),
                "used more than once",
            ),
        ] {
            let err = e.err("RegisterTaskDefinition", doc(None, secrets));
            assert_eq!(err.code, "ClientException");
            assert!(err.message.contains(needle), "{}", err.message);
        }
        let mut bad_role = doc(None, json!([]));
        bad_role["taskRoleArn"] = "arn:aws:iam::000000000000:user/bob".into();
        let err = e.err("RegisterTaskDefinition", bad_role);
        assert!(
            err.message.starts_with("Role is not valid"),
            "{}",
            err.message
        );
        // ARNs and names are fine; the document keeps valueFrom verbatim.
        let td = e.ok("RegisterTaskDefinition", doc(Some("app"), three()));
        assert_eq!(
            td["taskDefinition"]["containerDefinitions"][0]["secrets"][1]["valueFrom"],
            format!("{JSONS}:password::")
        );
        let attrs = td["taskDefinition"]["requiresAttributes"].to_string();
        for a in [
            "com.amazonaws.ecs.capability.task-iam-role",
            "ecs.capability.secrets.asm.environment-variables",
            "ecs.capability.secrets.ssm.environment-variables",
        ] {
            assert!(attrs.contains(a), "{attrs}");
        }
    }
}
