//! What an NFS client (a task) may do on a file system: EFS's
//! `elasticfilesystem:ClientMount`, `ClientWrite` and `ClientRootAccess`,
//! decided from the file-system policy and, with IAM authorization, the
//! task role's identity policies (docs/efs.md, "File-system policies").
//!
//! AWS's rules, as implemented:
//! - No file-system policy: every client that can connect has full access
//!   (EFS's default policy), except what the role's identity policies
//!   explicitly deny.
//! - A policy: an explicit deny in it (or in the role's policies) wins;
//!   then an allow in either grants (same account). Without IAM
//!   authorization the client is anonymous: only statements for `*` can
//!   allow it, and identity policies play no part.
//! - Condition keys: `elasticfilesystem:AccessPointArn` (when mounting
//!   through an access point) and `aws:SecureTransport` (transit
//!   encryption).

use std::collections::BTreeMap;

use ferry_policy::{Decision, Facts, Policy, Subject};
use ferry_proto::Caller;
use ferry_proto::authz::{self, Check};

/// The client actions, in the order they matter.
pub const MOUNT: &str = "elasticfilesystem:ClientMount";
/// Write access; without it the mount is read-only.
pub const WRITE: &str = "elasticfilesystem:ClientWrite";
/// Root access; without it uid 0 is squashed to the anonymous user.
pub const ROOT: &str = "elasticfilesystem:ClientRootAccess";

/// The uid/gid root is squashed to (EFS's, and NFS's `nfsnobody`).
pub const SQUASH_ID: u32 = 65534;

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// May mount at all.
    pub mount: bool,
    /// May write (else read-only).
    pub write: bool,
    /// Keeps root (else root is squashed).
    pub root: bool,
}

impl Access {
    /// Full access: no policy, nothing denied.
    pub const FULL: Access = Access {
        mount: true,
        write: true,
        root: true,
    };
}

/// Who mounts.
pub enum Client<'a> {
    /// No IAM authorization: anonymous.
    Anonymous,
    /// IAM authorization as the task role's session.
    Role(&'a Caller),
}

/// The request facts of one client action.
pub struct Request<'a> {
    /// The file system's ARN (the resource).
    pub fs_arn: &'a str,
    /// The access point's ARN, when mounting through one.
    pub access_point_arn: Option<&'a str>,
    /// Transit encryption on (`aws:SecureTransport`).
    pub secure_transport: bool,
}

/// Decides the three client actions for `client` on a file system whose
/// policy is `policy` (None: the default policy).
pub fn decide(policy: Option<&Policy>, client: &Client<'_>, req: &Request<'_>) -> Access {
    let one = |action: &str| allowed(policy, client, req, action);
    let mount = one(MOUNT);
    Access {
        mount,
        write: mount && one(WRITE),
        root: mount && one(ROOT),
    }
}

fn keys(req: &Request<'_>) -> Vec<(&'static str, Vec<String>)> {
    let mut k = vec![(
        "aws:SecureTransport",
        vec![req.secure_transport.to_string()],
    )];
    if let Some(ap) = req.access_point_arn {
        k.push(("elasticfilesystem:AccessPointArn", vec![ap.to_owned()]));
    }
    k
}

fn allowed(policy: Option<&Policy>, client: &Client<'_>, req: &Request<'_>, action: &str) -> bool {
    match client {
        Client::Anonymous => {
            let Some(p) = policy else {
                return true;
            };
            // Anonymous: matched only by `*` principals.
            let subject = Subject::Iam {
                account: String::new(),
                arns: Vec::new(),
            };
            let facts = Facts {
                subject: &subject,
                action,
                resource: req.fs_arn,
                keys: keys(req)
                    .into_iter()
                    .map(|(k, v)| (ferry_policy::norm_key(k), v))
                    .collect::<BTreeMap<_, _>>(),
            };
            p.evaluate(&facts) == Decision::Allow
        }
        Client::Role(caller) => {
            let mut check = Check::new(action, req.fs_arn);
            for (k, v) in keys(req) {
                check = check.key(k, v);
            }
            let d = authz::decisions(caller, &check, policy);
            if d.identity == Decision::Deny || d.resource.decision == Decision::Deny {
                return false;
            }
            policy.is_none()
                || d.identity == Decision::Allow
                || d.resource.decision == Decision::Allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: &str = "arn:aws:elasticfilesystem:us-east-1:012345678910:file-system/fs-1";
    const ROLE: &str = "arn:aws:iam::012345678910:role/app";

    fn req() -> Request<'static> {
        Request {
            fs_arn: FS,
            access_point_arn: None,
            secure_transport: true,
        }
    }

    fn policy(doc: serde_json::Value) -> Policy {
        Policy::parse(&doc.to_string()).unwrap()
    }

    fn role_caller(identity: Option<serde_json::Value>) -> Caller {
        let policies = identity.map(|d| {
            std::sync::Arc::new(ferry_proto::IdentityPolicies {
                policies: vec![Policy::parse_identity(&d.to_string()).unwrap()],
            })
        });
        Caller {
            account: "012345678910".into(),
            principal: ferry_proto::Principal::AssumedRole {
                role_arn: ROLE.into(),
                session_name: "task-1".into(),
            },
            access_key_id: None,
            policies: policies.or_else(|| {
                Some(std::sync::Arc::new(ferry_proto::IdentityPolicies {
                    policies: Vec::new(),
                }))
            }),
        }
    }

    #[test]
    fn no_policy_is_full_access_for_anyone() {
        assert_eq!(decide(None, &Client::Anonymous, &req()), Access::FULL);
        let c = role_caller(None);
        assert_eq!(decide(None, &Client::Role(&c), &req()), Access::FULL);
    }

    #[test]
    fn identity_deny_applies_without_a_policy() {
        let c = role_caller(Some(
            serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": WRITE, "Resource": "*"}]}),
        ));
        let a = decide(None, &Client::Role(&c), &req());
        assert_eq!((a.mount, a.write, a.root), (true, false, true));
    }

    #[test]
    fn role_named_in_policy_gets_what_is_listed() {
        let p = policy(serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROLE},
             "Action": [MOUNT, WRITE], "Resource": FS}]}));
        let c = role_caller(None);
        let a = decide(Some(&p), &Client::Role(&c), &req());
        assert_eq!((a.mount, a.write, a.root), (true, true, false));
        // Not named, not anonymous-allowed: nothing.
        assert_eq!(
            decide(Some(&p), &Client::Anonymous, &req()),
            Access {
                mount: false,
                write: false,
                root: false
            }
        );
    }

    #[test]
    fn identity_allow_counts_with_a_policy_that_does_not_name_the_role() {
        let p = policy(serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": MOUNT, "Resource": FS,
             "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}));
        let c = role_caller(Some(
            serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "elasticfilesystem:Client*", "Resource": "*"}]}),
        ));
        assert_eq!(decide(Some(&p), &Client::Role(&c), &req()), Access::FULL);
        // Anonymous: only the policy's `*` statement, under its condition.
        let a = decide(Some(&p), &Client::Anonymous, &req());
        assert_eq!((a.mount, a.write, a.root), (true, false, false));
        let plain = Request {
            secure_transport: false,
            ..req()
        };
        assert!(!decide(Some(&p), &Client::Anonymous, &plain).mount);
    }

    #[test]
    fn explicit_deny_in_policy_beats_identity_allow() {
        let p = policy(serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "*", "Resource": FS,
             "Condition": {"StringNotEquals": {"elasticfilesystem:AccessPointArn":
                 "arn:aws:elasticfilesystem:us-east-1:012345678910:access-point/fsap-1"}}}]}));
        let c = role_caller(Some(
            serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "elasticfilesystem:*", "Resource": "*"}]}),
        ));
        assert!(!decide(Some(&p), &Client::Role(&c), &req()).mount);
        let through_ap = Request {
            access_point_arn: Some(
                "arn:aws:elasticfilesystem:us-east-1:012345678910:access-point/fsap-1",
            ),
            ..req()
        };
        assert_eq!(
            decide(Some(&p), &Client::Role(&c), &through_ap),
            Access::FULL
        );
    }
}
