//! [`TaskSessions`]: a [`TaskIdentity`] over STS ([`RoleSessions`]) that
//! also answers the metadata endpoint's credentials requests.
//!
//! Each task with a task role has one entry: the role, the credentials id
//! its containers were given, and the current session. A request for the
//! credentials gets the current session, re-issued first when less than
//! [`REFRESH_WITHIN`] of it is left, so a task that runs for days always
//! gets valid credentials while the SDKs (which refresh on their own
//! schedule, 15 minutes before `Expiration` for botocore) never see a
//! session about to expire. Every session is issued with the task's ARN
//! as its owner, so [`TaskIdentity::release`] revokes them all at once,
//! including the execution role's and any a renewal raced with the
//! release.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferry_proto::{AwsError, Caller};
use zeroize::Zeroizing;

use super::{ECS_TASKS_PRINCIPAL, IdentityError, TaskIdentity, TaskRef};

/// How long each session is issued for.
pub const SESSION_DURATION: Duration = Duration::from_secs(3600);

/// A session with less than this left is re-issued before it is served.
pub const REFRESH_WITHIN: Duration = Duration::from_secs(15 * 60);

/// Temporary credentials of a role session.
pub struct RoleSession {
    /// `ASIA...`.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: Zeroizing<String>,
    /// The session token.
    pub session_token: Zeroizing<String>,
    /// When the session expires.
    pub expiration: SystemTime,
    /// The role.
    pub role_arn: String,
    /// The session as a caller (the assumed-role principal and the role's
    /// policies).
    pub caller: Caller,
}

impl std::fmt::Debug for RoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleSession")
            .field("access_key_id", &self.access_key_id)
            .field("role_arn", &self.role_arn)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// What [`TaskSessions`] needs of STS. Implemented over `ferry-iam` in the
/// composition root.
pub trait RoleSessions: Send + Sync {
    /// A session of `role_arn` for `principal` (a service such as
    /// `ecs-tasks.amazonaws.com`, which the role's trust policy must
    /// allow), named `session_name`, owned by `owner`, valid for
    /// `duration`.
    fn assume(
        &self,
        role_arn: &str,
        principal: &str,
        session_name: &str,
        owner: &str,
        duration: Duration,
    ) -> Result<RoleSession, AwsError>;

    /// Refuses every session issued for `owner` from now on.
    fn revoke_owner(&self, owner: &str);
}

/// One task's role.
struct TaskRole {
    session_name: String,
    role_arn: String,
    credentials_id: String,
    current: Arc<RoleSession>,
}

/// The tasks' role sessions.
pub struct TaskSessions {
    sts: Arc<dyn RoleSessions>,
    duration: Duration,
    refresh_within: Duration,
    tasks: Mutex<HashMap<String, TaskRole>>,
}

impl std::fmt::Debug for TaskSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSessions")
            .field("duration", &self.duration)
            .field("refresh_within", &self.refresh_within)
            .finish_non_exhaustive()
    }
}

/// Compares two ids in time independent of where they differ.
fn same_id(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl TaskSessions {
    /// Sessions from `sts`, [`SESSION_DURATION`] long, re-issued within
    /// [`REFRESH_WITHIN`] of their expiry.
    pub fn new(sts: Arc<dyn RoleSessions>) -> Self {
        Self {
            sts,
            duration: SESSION_DURATION,
            refresh_within: REFRESH_WITHIN,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Other timings (tests).
    #[must_use]
    pub fn with_timing(mut self, duration: Duration, refresh_within: Duration) -> Self {
        self.duration = duration;
        self.refresh_within = refresh_within;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TaskRole>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self, s: &RoleSession) -> bool {
        s.expiration
            .duration_since(SystemTime::now())
            .is_ok_and(|left| left > self.refresh_within)
    }

    /// The task role's credentials of the task `task_arn`, if
    /// `credentials_id` is the id its containers were given; `None` for
    /// any other id (another task's included), or when no valid session
    /// can be had.
    pub fn credentials(&self, task_arn: &str, credentials_id: &str) -> Option<Arc<RoleSession>> {
        let (role_arn, session_name, current) = {
            let tasks = self.lock();
            let t = tasks.get(task_arn)?;
            if !same_id(&t.credentials_id, credentials_id) {
                return None;
            }
            if self.fresh(&t.current) {
                return Some(t.current.clone());
            }
            (
                t.role_arn.clone(),
                t.session_name.clone(),
                t.current.clone(),
            )
        };
        // Renew without the lock: STS writes to its store.
        match self.sts.assume(
            &role_arn,
            ECS_TASKS_PRINCIPAL,
            &session_name,
            task_arn,
            self.duration,
        ) {
            Ok(s) => {
                let s = Arc::new(s);
                let mut tasks = self.lock();
                match tasks.get_mut(task_arn) {
                    Some(t) if same_id(&t.credentials_id, credentials_id) => {
                        t.current = s.clone();
                        Some(s)
                    }
                    _ => {
                        // Released meanwhile: the new session must not
                        // outlive the task.
                        drop(tasks);
                        self.sts.revoke_owner(task_arn);
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    task = task_arn,
                    role = %role_arn,
                    "renewing the task role's session failed: {}: {}",
                    e.code,
                    e.message
                );
                (current.expiration > SystemTime::now()).then_some(current)
            }
        }
    }

    /// How many tasks have a task role session.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no task has one.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TaskIdentity for TaskSessions {
    fn task_role(
        &self,
        task: TaskRef<'_>,
        role_arn: &str,
        credentials_id: &str,
    ) -> Result<(), IdentityError> {
        let s = self
            .sts
            .assume(
                role_arn,
                ECS_TASKS_PRINCIPAL,
                task.id,
                task.arn,
                self.duration,
            )
            .map_err(|error| IdentityError::CannotAssume {
                role_arn: role_arn.to_owned(),
                error,
            })?;
        self.lock().insert(
            task.arn.to_owned(),
            TaskRole {
                session_name: task.id.to_owned(),
                role_arn: role_arn.to_owned(),
                credentials_id: credentials_id.to_owned(),
                current: Arc::new(s),
            },
        );
        Ok(())
    }

    fn execution_caller(&self, task: TaskRef<'_>, role_arn: &str) -> Result<Caller, IdentityError> {
        self.sts
            .assume(
                role_arn,
                ECS_TASKS_PRINCIPAL,
                task.id,
                task.arn,
                self.duration,
            )
            .map(|s| s.caller)
            .map_err(|error| IdentityError::CannotAssume {
                role_arn: role_arn.to_owned(),
                error,
            })
    }

    fn release(&self, task_arn: &str) {
        self.lock().remove(task_arn);
        self.sts.revoke_owner(task_arn);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ferry_proto::Principal;

    /// An STS that issues numbered sessions, refuses roles named `untrusted`,
    /// and remembers what it was asked.
    #[derive(Default)]
    pub(crate) struct FakeSts {
        pub(crate) issued: Mutex<Vec<(String, String, String, String)>>,
        pub(crate) revoked: Mutex<Vec<String>>,
        /// Lifetime of the sessions it issues (default: the duration asked).
        pub(crate) lifetime: Mutex<Option<Duration>>,
    }

    impl RoleSessions for FakeSts {
        fn assume(
            &self,
            role_arn: &str,
            principal: &str,
            session_name: &str,
            owner: &str,
            duration: Duration,
        ) -> Result<RoleSession, AwsError> {
            if role_arn.ends_with("/untrusted") {
                return Err(AwsError::client(
                    "AccessDenied",
                    format!(
                        "{principal} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
                    ),
                ));
            }
            let mut issued = self.issued.lock().unwrap();
            issued.push((
                role_arn.into(),
                principal.into(),
                session_name.into(),
                owner.into(),
            ));
            let n = issued.len();
            let life = self.lifetime.lock().unwrap().unwrap_or(duration);
            Ok(RoleSession {
                access_key_id: format!("ASIA{n:016}"),
                secret_access_key: format!("secret-{n}").into(),
                session_token: format!("token-{n}").into(),
                expiration: SystemTime::now() + life,
                role_arn: role_arn.into(),
                caller: Caller {
                    account: "111122223333".into(),
                    principal: Principal::AssumedRole {
                        role_arn: role_arn.into(),
                        session_name: session_name.into(),
                    },
                    access_key_id: Some(format!("ASIA{n:016}")),
                    policies: None,
                },
            })
        }

        fn revoke_owner(&self, owner: &str) {
            self.revoked.lock().unwrap().push(owner.into());
        }
    }

    const ROLE: &str = "arn:aws:iam::111122223333:role/app";
    const T1: TaskRef<'static> = TaskRef {
        arn: "arn:aws:ecs:us-east-1:111122223333:task/default/t1",
        id: "t1",
    };
    const T2: TaskRef<'static> = TaskRef {
        arn: "arn:aws:ecs:us-east-1:111122223333:task/default/t2",
        id: "t2",
    };

    #[test]
    fn each_task_gets_its_own_credentials_only() {
        let sts = Arc::new(FakeSts::default());
        let s = TaskSessions::new(sts.clone());
        s.task_role(T1, ROLE, "id-1").unwrap();
        s.task_role(T2, ROLE, "id-2").unwrap();
        let c = s.credentials(T1.arn, "id-1").unwrap();
        assert_eq!(c.role_arn, ROLE);
        assert_eq!(
            c.caller.arn(),
            "arn:aws:sts::111122223333:assumed-role/app/t1"
        );
        assert_eq!(
            sts.issued.lock().unwrap()[0],
            (
                ROLE.into(),
                "ecs-tasks.amazonaws.com".into(),
                "t1".into(),
                T1.arn.into()
            )
        );
        // Another task's id, from this task; an unknown id; an unknown task.
        assert!(s.credentials(T1.arn, "id-2").is_none());
        assert!(s.credentials(T1.arn, "id-").is_none());
        assert!(s.credentials("arn:other", "id-1").is_none());
        // Served again without a new session while fresh.
        let again = s.credentials(T1.arn, "id-1").unwrap();
        assert_eq!(again.access_key_id, c.access_key_id);
        assert_eq!(sts.issued.lock().unwrap().len(), 2);
    }

    #[test]
    fn sessions_are_renewed_before_they_expire() {
        let sts = Arc::new(FakeSts::default());
        let s = TaskSessions::new(sts.clone())
            .with_timing(Duration::from_secs(3600), Duration::from_secs(900));
        // The first session has only 10 minutes left.
        *sts.lifetime.lock().unwrap() = Some(Duration::from_secs(600));
        s.task_role(T1, ROLE, "id-1").unwrap();
        *sts.lifetime.lock().unwrap() = None;
        let c = s.credentials(T1.arn, "id-1").unwrap();
        assert_eq!(c.access_key_id, format!("ASIA{:016}", 2));
        let left = c.expiration.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(3500), "{left:?}");
        assert_eq!(
            s.credentials(T1.arn, "id-1").unwrap().access_key_id,
            c.access_key_id
        );
    }

    #[test]
    fn a_failed_renewal_serves_the_current_session_while_it_is_valid() {
        struct Flaky(FakeSts, std::sync::atomic::AtomicBool);
        impl RoleSessions for Flaky {
            fn assume(
                &self,
                r: &str,
                p: &str,
                n: &str,
                o: &str,
                d: Duration,
            ) -> Result<RoleSession, AwsError> {
                if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(AwsError::client("NoSuchEntity", "The role was deleted."));
                }
                self.0.assume(r, p, n, o, d)
            }
            fn revoke_owner(&self, o: &str) {
                self.0.revoke_owner(o)
            }
        }
        let sts = Arc::new(Flaky(FakeSts::default(), false.into()));
        *sts.0.lifetime.lock().unwrap() = Some(Duration::from_secs(60));
        let s = TaskSessions::new(sts.clone());
        s.task_role(T1, ROLE, "id-1").unwrap();
        sts.1.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(s.credentials(T1.arn, "id-1").is_some());
        *sts.0.lifetime.lock().unwrap() = Some(Duration::ZERO);
        sts.1.store(false, std::sync::atomic::Ordering::SeqCst);
        s.task_role(T2, ROLE, "id-2").unwrap();
        sts.1.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(s.credentials(T2.arn, "id-2").is_none(), "expired");
    }

    #[test]
    fn untrusted_roles_are_refused_and_release_revokes_everything() {
        let sts = Arc::new(FakeSts::default());
        let s = TaskSessions::new(sts.clone());
        let e = s
            .task_role(T1, "arn:aws:iam::111122223333:role/untrusted", "id-1")
            .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "ECS was unable to assume the role 'arn:aws:iam::111122223333:role/untrusted' that was provided for this task."
            ),
            "{e}"
        );
        assert!(e.to_string().contains("(AccessDenied: "), "{e}");
        assert!(s.is_empty());
        s.task_role(T1, ROLE, "id-1").unwrap();
        let exec = s
            .execution_caller(T1, "arn:aws:iam::111122223333:role/exec")
            .unwrap();
        assert_eq!(exec.arn(), "arn:aws:sts::111122223333:assumed-role/exec/t1");
        assert_eq!(sts.issued.lock().unwrap()[1].3, T1.arn, "owned by the task");
        s.release(T1.arn);
        assert!(s.credentials(T1.arn, "id-1").is_none());
        assert_eq!(*sts.revoked.lock().unwrap(), vec![T1.arn.to_owned()]);
        // Idempotent.
        s.release(T1.arn);
        assert!(s.is_empty());
    }
}
