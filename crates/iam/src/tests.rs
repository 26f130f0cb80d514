//! The identity store and both services, end to end below the listener.

use std::sync::Arc;
use std::time::Duration;

use ferry_proto::query::{Params, QueryService};
use ferry_proto::{AwsError, Caller, Principal, RequestContext};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::iam::{AuthRefusal, Iam, Sealer};
use crate::{IamService, StsService};

const ACC: &str = "111122223333";

/// A stand-in for the KMS root key: binds the label and scrambles the
/// bytes, so tests can check that plaintext never reaches the store.
struct TestSealer;
impl Sealer for TestSealer {
    fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, AwsError> {
        let mut out = Sha256::digest(label.as_bytes())[..8].to_vec();
        out.extend(plaintext.iter().map(|b| b ^ 0x5a));
        Ok(out)
    }
    fn unseal(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AwsError> {
        if sealed.len() < 8 || sealed[..8] != Sha256::digest(label.as_bytes())[..8] {
            return Err(AwsError::server("ServiceFailure", "wrong label"));
        }
        Ok(Zeroizing::new(
            sealed[8..].iter().map(|b| b ^ 0x5a).collect(),
        ))
    }
}

struct Env {
    dir: tempfile::TempDir,
    iam: Arc<Iam>,
    api: IamService,
    sts: StsService,
}

fn open_at(dir: tempfile::TempDir) -> Env {
    let store = Arc::new(ferry_store::Store::open(&dir.path().join("state.redb")).unwrap());
    let iam = Arc::new(Iam::open(store, Arc::new(TestSealer), ACC).unwrap());
    Env {
        dir,
        api: IamService::new(iam.clone()),
        sts: StsService::new(iam.clone()),
        iam,
    }
}

fn env() -> Env {
    open_at(tempfile::tempdir().unwrap())
}

impl Env {
    fn reopen(self) -> Env {
        let Env { dir, iam, api, sts } = self;
        drop((iam, api, sts));
        open_at(dir)
    }

    fn iam_call(
        &self,
        caller: &Caller,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        let mut p = Params::default();
        for (k, v) in params {
            p.insert(*k, *v);
        }
        let ctx = RequestContext::internal(caller.clone(), "us-east-1");
        self.api
            .call(&ctx, action, &p)
            .map(|x| x.as_str().to_owned())
    }

    fn sts_call(
        &self,
        caller: &Caller,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        let mut p = Params::default();
        for (k, v) in params {
            p.insert(*k, *v);
        }
        let ctx = RequestContext::internal(caller.clone(), "us-east-1");
        self.sts
            .call(&ctx, action, &p)
            .map(|x| x.as_str().to_owned())
    }

    fn admin(&self, action: &str, params: &[(&str, &str)]) -> Result<String, AwsError> {
        self.iam_call(&Caller::admin(ACC), action, params)
    }

    /// A user with one inline policy and an access key; its caller as the
    /// authenticator builds it.
    fn user_with(&self, name: &str, policy: &str) -> (String, Zeroizing<String>, Caller) {
        self.admin("CreateUser", &[("UserName", name)]).unwrap();
        self.admin(
            "PutUserPolicy",
            &[
                ("UserName", name),
                ("PolicyName", "p"),
                ("PolicyDocument", policy),
            ],
        )
        .unwrap();
        let (rec, secret) = self.iam.create_access_key(name).unwrap();
        let (_, caller) = self.iam.authenticate(&rec.key_id, None).unwrap();
        (rec.key_id, secret, caller)
    }
}

/// The text of the first `<name>` element.
fn elem<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| panic!("no {name} in {xml}"));
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    &xml[start..end]
}

fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn trust_for(principal: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":"sts:AssumeRole"}}]}}"#
    )
}

const ECS_READ: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecs:Describe*","ecs:List*"],"Resource":"*"}]}"#;

#[test]
fn roles_round_trip_with_aws_shapes_and_errors() {
    let e = env();
    let trust = trust_for(r#"{"Service":"ecs-tasks.amazonaws.com"}"#);
    let x = e
        .admin(
            "CreateRole",
            &[
                ("RoleName", "App"),
                ("Path", "/svc/"),
                ("AssumeRolePolicyDocument", &trust),
                ("Description", "the app"),
                ("Tags.member.1.Key", "team"),
                ("Tags.member.1.Value", "a&b"),
            ],
        )
        .unwrap();
    assert_eq!(elem(&x, "Arn"), format!("arn:aws:iam::{ACC}:role/svc/App"));
    assert!(elem(&x, "RoleId").starts_with("AROA") && elem(&x, "RoleId").len() == 21);
    assert_eq!(unquote(elem(&x, "AssumeRolePolicyDocument")), trust);
    assert_eq!(elem(&x, "MaxSessionDuration"), "3600");
    assert!(x.contains("<Value>a&amp;b</Value>"), "{x}");
    assert!(elem(&x, "CreateDate").ends_with('Z'));

    // Names are unique without regard to case, and found that way.
    let err = e
        .admin(
            "CreateRole",
            &[("RoleName", "app"), ("AssumeRolePolicyDocument", &trust)],
        )
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.status),
        ("EntityAlreadyExists", 409)
    );
    assert!(e.admin("GetRole", &[("RoleName", "APP")]).is_ok());
    let err = e.admin("GetRole", &[("RoleName", "nope")]).unwrap_err();
    assert_eq!((err.code.as_str(), err.status), ("NoSuchEntity", 404));
    assert_eq!(err.message, "The role with name nope cannot be found.");

    let err = e
        .admin(
            "CreateRole",
            &[
                ("RoleName", "r2"),
                ("AssumeRolePolicyDocument", "{not json"),
            ],
        )
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.status),
        ("MalformedPolicyDocument", 400)
    );
    let err = e
        .admin(
            "CreateRole",
            &[
                ("RoleName", "r2"),
                ("AssumeRolePolicyDocument", &trust),
                ("MaxSessionDuration", "100"),
            ],
        )
        .unwrap_err();
    assert_eq!(err.code, "ValidationError");
    assert!(
        e.admin(
            "CreateRole",
            &[
                ("RoleName", "bad name"),
                ("AssumeRolePolicyDocument", &trust)
            ]
        )
        .is_err()
    );

    // Inline policy round trip; bad documents refused.
    e.admin(
        "PutRolePolicy",
        &[
            ("RoleName", "App"),
            ("PolicyName", "read"),
            ("PolicyDocument", ECS_READ),
        ],
    )
    .unwrap();
    let x = e
        .admin(
            "GetRolePolicy",
            &[("RoleName", "app"), ("PolicyName", "read")],
        )
        .unwrap();
    assert_eq!(elem(&x, "RoleName"), "App");
    assert_eq!(unquote(elem(&x, "PolicyDocument")), ECS_READ);
    let x = e.admin("ListRolePolicies", &[("RoleName", "App")]).unwrap();
    assert!(
        x.contains(
            "<PolicyNames><member>read</member></PolicyNames><IsTruncated>false</IsTruncated>"
        ),
        "{x}"
    );
    let err = e
        .admin(
            "PutRolePolicy",
            &[
                ("RoleName", "App"),
                ("PolicyName", "bad"),
                ("PolicyDocument", r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#),
            ],
        )
        .unwrap_err();
    assert_eq!(err.code, "MalformedPolicyDocument");

    // Managed policies: the built-in set only.
    e.admin(
        "AttachRolePolicy",
        &[
            ("RoleName", "App"),
            (
                "PolicyArn",
                "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
            ),
        ],
    )
    .unwrap();
    let x = e
        .admin("ListAttachedRolePolicies", &[("RoleName", "App")])
        .unwrap();
    assert!(
        x.contains("<PolicyName>AmazonECSTaskExecutionRolePolicy</PolicyName>"),
        "{x}"
    );
    let err = e
        .admin(
            "AttachRolePolicy",
            &[
                ("RoleName", "App"),
                ("PolicyArn", "arn:aws:iam::aws:policy/Nope"),
            ],
        )
        .unwrap_err();
    assert_eq!(err.code, "NoSuchEntity");

    // DeleteRole refuses while policies remain.
    let err = e.admin("DeleteRole", &[("RoleName", "App")]).unwrap_err();
    assert_eq!((err.code.as_str(), err.status), ("DeleteConflict", 409));
    e.admin(
        "DeleteRolePolicy",
        &[("RoleName", "App"), ("PolicyName", "read")],
    )
    .unwrap();
    let err = e
        .admin(
            "DeleteRolePolicy",
            &[("RoleName", "App"), ("PolicyName", "read")],
        )
        .unwrap_err();
    assert_eq!(
        err.message,
        "The role policy with name read cannot be found."
    );
    assert_eq!(
        e.admin("DeleteRole", &[("RoleName", "App")])
            .unwrap_err()
            .code,
        "DeleteConflict"
    );
    e.admin(
        "DetachRolePolicy",
        &[
            ("RoleName", "App"),
            (
                "PolicyArn",
                "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
            ),
        ],
    )
    .unwrap();

    // Tags and the trust policy change; a restart keeps everything.
    e.admin(
        "TagRole",
        &[
            ("RoleName", "App"),
            ("Tags.member.1.Key", "env"),
            ("Tags.member.1.Value", "prod"),
        ],
    )
    .unwrap();
    e.admin(
        "UntagRole",
        &[("RoleName", "App"), ("TagKeys.member.1", "TEAM")],
    )
    .unwrap();
    let new_trust = trust_for(&format!(r#"{{"AWS":"arn:aws:iam::{ACC}:root"}}"#));
    e.admin(
        "UpdateAssumeRolePolicy",
        &[("RoleName", "App"), ("PolicyDocument", &new_trust)],
    )
    .unwrap();
    let e = e.reopen();
    let x = e.admin("ListRoleTags", &[("RoleName", "App")]).unwrap();
    assert!(x.contains("<Key>env</Key>") && !x.contains("team"), "{x}");
    let x = e.admin("GetRole", &[("RoleName", "App")]).unwrap();
    assert_eq!(unquote(elem(&x, "AssumeRolePolicyDocument")), new_trust);
    e.admin("DeleteRole", &[("RoleName", "App")]).unwrap();
    assert!(e.admin("GetRole", &[("RoleName", "App")]).is_err());
}

#[test]
fn listing_pages_with_markers() {
    let e = env();
    let trust = trust_for(r#"{"Service":"ecs-tasks.amazonaws.com"}"#);
    for n in ["a", "b", "c"] {
        e.admin(
            "CreateRole",
            &[("RoleName", n), ("AssumeRolePolicyDocument", &trust)],
        )
        .unwrap();
    }
    let x = e.admin("ListRoles", &[("MaxItems", "2")]).unwrap();
    assert_eq!(elem(&x, "IsTruncated"), "true");
    let marker = elem(&x, "Marker").to_owned();
    let x = e
        .admin("ListRoles", &[("MaxItems", "2"), ("Marker", &marker)])
        .unwrap();
    assert!(
        x.contains("<RoleName>c</RoleName>") && !x.contains("<RoleName>a</RoleName>"),
        "{x}"
    );
    assert_eq!(elem(&x, "IsTruncated"), "false");
}

#[test]
fn users_keys_and_the_authenticator() {
    let e = env();
    let (key, secret, caller) = e.user_with("bob", ECS_READ);
    assert!(key.starts_with("AKIA") && key.len() == 20 && secret.len() == 40);
    assert_eq!(
        caller.principal,
        Principal::Iam(format!("arn:aws:iam::{ACC}:user/bob"))
    );
    assert_eq!(caller.access_key_id.as_deref(), Some(key.as_str()));
    assert_eq!(caller.policies.as_ref().unwrap().policies.len(), 1);
    let (s, _) = e.iam.authenticate(&key, None).unwrap();
    assert_eq!(*s, *secret);
    // A token with a long-term key, an unknown key: invalid.
    assert_eq!(
        e.iam.authenticate(&key, Some("t")).unwrap_err(),
        AuthRefusal::Invalid
    );
    assert_eq!(
        e.iam
            .authenticate("AKIAUNKNOWN000000000", None)
            .unwrap_err(),
        AuthRefusal::Invalid
    );

    // The secret never reaches the store in plaintext.
    let raw = std::fs::read(e.dir.path().join("state.redb")).unwrap();
    assert!(!raw.windows(40).any(|w| w == secret.as_bytes()));

    // Two keys at most.
    let (k2, _) = e.iam.create_access_key("bob").unwrap();
    let err = e
        .admin("CreateAccessKey", &[("UserName", "bob")])
        .unwrap_err();
    assert_eq!((err.code.as_str(), err.status), ("LimitExceeded", 409));

    // Inactive keys are refused at authentication, and come back.
    e.admin(
        "UpdateAccessKey",
        &[
            ("UserName", "bob"),
            ("AccessKeyId", &key),
            ("Status", "Inactive"),
        ],
    )
    .unwrap();
    assert_eq!(
        e.iam.authenticate(&key, None).unwrap_err(),
        AuthRefusal::Invalid
    );
    let x = e.admin("ListAccessKeys", &[("UserName", "bob")]).unwrap();
    assert!(
        x.contains("<Status>Inactive</Status>") && x.contains("<Status>Active</Status>"),
        "{x}"
    );
    e.admin(
        "UpdateAccessKey",
        &[
            ("UserName", "bob"),
            ("AccessKeyId", &key),
            ("Status", "Active"),
        ],
    )
    .unwrap();
    assert!(e.iam.authenticate(&key, None).is_ok());

    // A restart keeps keys (unsealed again) and policies.
    let e = e.reopen();
    let (s, c) = e.iam.authenticate(&key, None).unwrap();
    assert_eq!(*s, *secret);
    assert_eq!(c.policies.as_ref().unwrap().policies.len(), 1);

    // A user's own key ops need no UserName; the admin's do.
    let x = e.iam_call(&c, "ListAccessKeys", &[]);
    assert_eq!(x.unwrap_err().code, "AccessDenied");
    assert_eq!(
        e.admin("ListAccessKeys", &[]).unwrap_err().code,
        "ValidationError"
    );

    // Deleting: keys first, then policies, then the user.
    assert_eq!(
        e.admin("DeleteUser", &[("UserName", "bob")])
            .unwrap_err()
            .code,
        "DeleteConflict"
    );
    e.admin(
        "DeleteAccessKey",
        &[("UserName", "bob"), ("AccessKeyId", &key)],
    )
    .unwrap();
    assert_eq!(
        e.iam.authenticate(&key, None).unwrap_err(),
        AuthRefusal::Invalid
    );
    let err = e
        .admin(
            "DeleteAccessKey",
            &[("UserName", "bob"), ("AccessKeyId", &key)],
        )
        .unwrap_err();
    assert_eq!(err.code, "NoSuchEntity");
    e.admin(
        "DeleteAccessKey",
        &[("UserName", "bob"), ("AccessKeyId", &k2.key_id)],
    )
    .unwrap();
    assert_eq!(
        e.admin("DeleteUser", &[("UserName", "bob")])
            .unwrap_err()
            .code,
        "DeleteConflict"
    );
    e.admin(
        "DeleteUserPolicy",
        &[("UserName", "bob"), ("PolicyName", "p")],
    )
    .unwrap();
    e.admin("DeleteUser", &[("UserName", "bob")]).unwrap();
    assert_eq!(
        e.admin("GetUser", &[("UserName", "bob")]).unwrap_err().code,
        "NoSuchEntity"
    );
}

#[test]
fn iam_actions_are_authorized_for_iam_callers() {
    let e = env();
    let (_, _, reader) = e.user_with(
        "reader",
        r#"{"Statement":[{"Effect":"Allow","Action":["iam:Get*","iam:List*"],"Resource":"*"}]}"#,
    );
    let trust = trust_for(r#"{"Service":"ecs-tasks.amazonaws.com"}"#);
    let err = e
        .iam_call(
            &reader,
            "CreateRole",
            &[("RoleName", "x"), ("AssumeRolePolicyDocument", &trust)],
        )
        .unwrap_err();
    assert_eq!((err.code.as_str(), err.status), ("AccessDenied", 403));
    assert!(err.message.contains(&format!("User: arn:aws:iam::{ACC}:user/reader is not authorized to perform: iam:CreateRole on resource: arn:aws:iam::{ACC}:role/x")), "{}", err.message);
    assert!(e.iam_call(&reader, "ListUsers", &[]).is_ok());
    let x = e.iam_call(&reader, "GetUser", &[]).unwrap();
    assert_eq!(elem(&x, "UserName"), "reader");
    assert!(elem(&x, "UserId").starts_with("AIDA"));

    // Policy changes apply to the next request.
    e.admin(
        "AttachUserPolicy",
        &[
            ("UserName", "reader"),
            ("PolicyArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
        ],
    )
    .unwrap();
    let key = reader.access_key_id.clone().unwrap();
    let (_, reader) = e.iam.authenticate(&key, None).unwrap();
    assert!(
        e.iam_call(
            &reader,
            "CreateRole",
            &[("RoleName", "x"), ("AssumeRolePolicyDocument", &trust)]
        )
        .is_ok()
    );

    // The root user as GetUser answers it.
    let x = e.admin("GetUser", &[]).unwrap();
    assert_eq!(elem(&x, "Arn"), format!("arn:aws:iam::{ACC}:root"));
    assert_eq!(elem(&x, "UserId"), ACC);
}

#[test]
fn assume_role_by_trust_and_sessions_authenticate() {
    let e = env();
    let (_, _, bob) = e.user_with("bob", ECS_READ);
    let (_, _, eve) = e.user_with("eve", ECS_READ);
    let trust = trust_for(&format!(r#"{{"AWS":"arn:aws:iam::{ACC}:user/bob"}}"#));
    e.admin(
        "CreateRole",
        &[
            ("RoleName", "R"),
            ("AssumeRolePolicyDocument", &trust),
            ("MaxSessionDuration", "7200"),
        ],
    )
    .unwrap();
    e.admin(
        "PutRolePolicy",
        &[
            ("RoleName", "R"),
            ("PolicyName", "p"),
            (
                "PolicyDocument",
                r#"{"Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#,
            ),
        ],
    )
    .unwrap();
    let role_arn = format!("arn:aws:iam::{ACC}:role/R");

    let x = e.sts_call(&bob, "GetCallerIdentity", &[]).unwrap();
    assert_eq!(elem(&x, "Arn"), format!("arn:aws:iam::{ACC}:user/bob"));
    assert!(elem(&x, "UserId").starts_with("AIDA"));
    let x = e
        .sts_call(&Caller::admin(ACC), "GetCallerIdentity", &[])
        .unwrap();
    assert_eq!((elem(&x, "UserId"), elem(&x, "Account")), (ACC, ACC));

    let err = e
        .sts_call(
            &eve,
            "AssumeRole",
            &[("RoleArn", &role_arn), ("RoleSessionName", "s")],
        )
        .unwrap_err();
    assert_eq!(err.code, "ValidationError");
    let err = e
        .sts_call(
            &eve,
            "AssumeRole",
            &[("RoleArn", &role_arn), ("RoleSessionName", "s1")],
        )
        .unwrap_err();
    assert_eq!((err.code.as_str(), err.status), ("AccessDenied", 403));
    assert_eq!(
        err.message,
        format!(
            "User: arn:aws:iam::{ACC}:user/eve is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        )
    );
    let err = e
        .sts_call(
            &bob,
            "AssumeRole",
            &[
                ("RoleArn", &format!("arn:aws:iam::{ACC}:role/Missing")),
                ("RoleSessionName", "s1"),
            ],
        )
        .unwrap_err();
    assert_eq!(err.code, "AccessDenied");
    let err = e
        .sts_call(
            &bob,
            "AssumeRole",
            &[
                ("RoleArn", &role_arn),
                ("RoleSessionName", "s1"),
                ("DurationSeconds", "7201"),
            ],
        )
        .unwrap_err();
    assert!(
        err.message.contains("MaxSessionDuration"),
        "{}",
        err.message
    );
    let err = e
        .sts_call(
            &bob,
            "AssumeRole",
            &[
                ("RoleArn", &role_arn),
                ("RoleSessionName", "s1"),
                ("Policy", "{}"),
            ],
        )
        .unwrap_err();
    assert_eq!(err.code, "ValidationError");

    let x = e
        .sts_call(
            &bob,
            "AssumeRole",
            &[
                ("RoleArn", &role_arn),
                ("RoleSessionName", "s1"),
                ("DurationSeconds", "7200"),
            ],
        )
        .unwrap();
    let key = elem(&x, "AccessKeyId").to_owned();
    let secret = elem(&x, "SecretAccessKey").to_owned();
    let token = elem(&x, "SessionToken").to_owned();
    assert!(key.starts_with("ASIA") && secret.len() == 40);
    assert_eq!(
        elem(&x, "Arn"),
        format!("arn:aws:sts::{ACC}:assumed-role/R/s1")
    );
    assert!(
        elem(&x, "AssumedRoleId").starts_with("AROA") && elem(&x, "AssumedRoleId").ends_with(":s1")
    );

    let (s, session) = e.iam.authenticate(&key, Some(&token)).unwrap();
    assert_eq!(*s, secret);
    assert_eq!(
        session.arn(),
        format!("arn:aws:sts::{ACC}:assumed-role/R/s1")
    );
    assert_eq!(session.policies.as_ref().unwrap().policies.len(), 1);
    assert_eq!(
        e.iam.authenticate(&key, None).unwrap_err(),
        AuthRefusal::Invalid
    );
    assert_eq!(
        e.iam.authenticate(&key, Some("wrong")).unwrap_err(),
        AuthRefusal::Invalid
    );
    let x = e.sts_call(&session, "GetCallerIdentity", &[]).unwrap();
    assert_eq!(
        elem(&x, "Arn"),
        format!("arn:aws:sts::{ACC}:assumed-role/R/s1")
    );
    // Role chaining (a role trusting its own sessions) is limited to an hour.
    let chained = trust_for(&format!(
        r#"{{"AWS":["arn:aws:iam::{ACC}:user/bob","{role_arn}"]}}"#
    ));
    e.admin(
        "UpdateAssumeRolePolicy",
        &[("RoleName", "R"), ("PolicyDocument", &chained)],
    )
    .unwrap();
    assert!(
        e.sts_call(
            &session,
            "AssumeRole",
            &[("RoleArn", &role_arn), ("RoleSessionName", "s2")]
        )
        .is_ok()
    );
    let err = e
        .sts_call(
            &session,
            "AssumeRole",
            &[
                ("RoleArn", &role_arn),
                ("RoleSessionName", "s2"),
                ("DurationSeconds", "3601"),
            ],
        )
        .unwrap_err();
    assert!(err.message.contains("role chaining"), "{}", err.message);

    // AssumeRole sessions survive a restart; the token is stored as a digest only.
    let raw = std::fs::read(e.dir.path().join("state.redb")).unwrap();
    assert!(!raw.windows(token.len()).any(|w| w == token.as_bytes()));
    assert!(!raw.windows(40).any(|w| w == secret.as_bytes()));
    let e = e.reopen();
    assert!(e.iam.authenticate(&key, Some(&token)).is_ok());

    // Expired sessions are told apart from invalid ones.
    e.iam.expire_sessions_for_test();
    assert_eq!(
        e.iam.authenticate(&key, Some(&token)).unwrap_err(),
        AuthRefusal::Expired
    );
    assert_eq!(
        e.iam.authenticate(&key, Some("wrong")).unwrap_err(),
        AuthRefusal::Invalid
    );

    // Deleting the role revokes its sessions.
    let x = e
        .sts_call(
            &bob,
            "AssumeRole",
            &[("RoleArn", &role_arn), ("RoleSessionName", "s3")],
        )
        .unwrap();
    let (key, token) = (
        elem(&x, "AccessKeyId").to_owned(),
        elem(&x, "SessionToken").to_owned(),
    );
    assert!(e.iam.authenticate(&key, Some(&token)).is_ok());
    e.admin(
        "DeleteRolePolicy",
        &[("RoleName", "R"), ("PolicyName", "p")],
    )
    .unwrap();
    e.admin("DeleteRole", &[("RoleName", "R")]).unwrap();
    assert_eq!(
        e.iam.authenticate(&key, Some(&token)).unwrap_err(),
        AuthRefusal::Invalid
    );
    // A role created again under the name does not revive them.
    e.admin(
        "CreateRole",
        &[("RoleName", "R"), ("AssumeRolePolicyDocument", &trust)],
    )
    .unwrap();
    assert_eq!(
        e.iam.authenticate(&key, Some(&token)).unwrap_err(),
        AuthRefusal::Invalid
    );
}

#[test]
fn account_trust_needs_an_identity_policy() {
    let e = env();
    let trust = trust_for(&format!(r#"{{"AWS":"arn:aws:iam::{ACC}:root"}}"#));
    e.admin(
        "CreateRole",
        &[("RoleName", "R"), ("AssumeRolePolicyDocument", &trust)],
    )
    .unwrap();
    let arn = format!("arn:aws:iam::{ACC}:role/R");
    let (_, _, plain) = e.user_with("plain", ECS_READ);
    let (_, _, allowed) = e.user_with(
        "allowed",
        &format!(
            r#"{{"Statement":[{{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"{arn}"}}]}}"#
        ),
    );
    assert_eq!(
        e.sts_call(
            &plain,
            "AssumeRole",
            &[("RoleArn", &arn), ("RoleSessionName", "x1")]
        )
        .unwrap_err()
        .code,
        "AccessDenied"
    );
    assert!(
        e.sts_call(
            &allowed,
            "AssumeRole",
            &[("RoleArn", &arn), ("RoleSessionName", "x1")]
        )
        .is_ok()
    );
    assert!(
        e.sts_call(
            &Caller::admin(ACC),
            "AssumeRole",
            &[("RoleArn", &arn), ("RoleSessionName", "x1")]
        )
        .is_ok()
    );
}

#[test]
fn service_sessions_for_tasks_and_their_revocation() {
    let e = env();
    let trust = trust_for(r#"{"Service":"ecs-tasks.amazonaws.com"}"#);
    e.admin(
        "CreateRole",
        &[("RoleName", "task"), ("AssumeRolePolicyDocument", &trust)],
    )
    .unwrap();
    e.admin(
        "PutRolePolicy",
        &[
            ("RoleName", "task"),
            ("PolicyName", "p"),
            ("PolicyDocument", ECS_READ),
        ],
    )
    .unwrap();
    e.admin(
        "CreateRole",
        &[
            ("RoleName", "other"),
            (
                "AssumeRolePolicyDocument",
                &trust_for(&format!(r#"{{"AWS":"arn:aws:iam::{ACC}:root"}}"#)),
            ),
        ],
    )
    .unwrap();
    let role = format!("arn:aws:iam::{ACC}:role/task");
    let task = format!("arn:aws:ecs:us-east-1:{ACC}:task/default/0123456789abcdef");
    let c = e
        .iam
        .assume_role_for_service(
            &role,
            "ecs-tasks.amazonaws.com",
            "0123456789abcdef",
            &task,
            Duration::from_secs(6 * 3600),
        )
        .unwrap();
    assert!(c.access_key_id.starts_with("ASIA"));
    assert_eq!(c.role_arn, role);
    assert_eq!(
        c.caller.arn(),
        format!("arn:aws:sts::{ACC}:assumed-role/task/0123456789abcdef")
    );
    assert_eq!(c.caller.policies.as_ref().unwrap().policies.len(), 1);
    let left = c.expiration - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::hours(5) && left <= time::Duration::hours(6),
        "{left}"
    );
    let dbg = format!("{c:?}");
    assert!(!dbg.contains(c.secret_access_key.as_str()) && !dbg.contains(c.session_token.as_str()));
    let (s, caller) = e
        .iam
        .authenticate(&c.access_key_id, Some(&c.session_token))
        .unwrap();
    assert_eq!(*s, *c.secret_access_key);
    assert_eq!(caller.arn(), c.caller.arn());

    // Another role, not trusting the service: refused in ECS's words.
    let err = e
        .iam
        .assume_role_for_service(
            &format!("arn:aws:iam::{ACC}:role/other"),
            "ecs-tasks.amazonaws.com",
            "t1",
            &task,
            Duration::from_secs(3600),
        )
        .unwrap_err();
    assert_eq!(err.code, "AccessDenied");
    assert!(
        err.message.starts_with(&format!(
            "ECS was unable to assume the role 'arn:aws:iam::{ACC}:role/other'"
        )),
        "{}",
        err.message
    );
    assert!(
        e.iam
            .assume_role_for_service(
                &format!("arn:aws:iam::{ACC}:role/none"),
                "ecs-tasks.amazonaws.com",
                "t1",
                &task,
                Duration::from_secs(3600)
            )
            .is_err()
    );

    // Revoking the owner refuses its sessions; others stay.
    let other_task = format!("arn:aws:ecs:us-east-1:{ACC}:task/default/ffff");
    let c2 = e
        .iam
        .assume_role_for_service(
            &role,
            "ecs-tasks.amazonaws.com",
            "ffff",
            &other_task,
            Duration::from_secs(3600),
        )
        .unwrap();
    e.iam.revoke_owner(&task);
    assert_eq!(
        e.iam
            .authenticate(&c.access_key_id, Some(&c.session_token))
            .unwrap_err(),
        AuthRefusal::Invalid
    );
    assert!(
        e.iam
            .authenticate(&c2.access_key_id, Some(&c2.session_token))
            .is_ok()
    );
    // Service sessions live in memory only.
    let e = e.reopen();
    assert_eq!(
        e.iam
            .authenticate(&c2.access_key_id, Some(&c2.session_token))
            .unwrap_err(),
        AuthRefusal::Invalid
    );
}

#[test]
fn agent_keys_authenticate_as_the_fargate_service_one_per_host() {
    let e = env();
    let (id, secret) = e.iam.create_agent_key("host-1.example").unwrap();
    assert!(id.starts_with("AKIA") && id.len() == 20 && secret.len() == 40);
    let (s, caller) = e.iam.authenticate(&id, None).unwrap();
    assert_eq!(*s, *secret);
    // What the in-process platform acts as, with the key's id.
    let mut platform = Caller::service(ACC, "fargate.amazonaws.com");
    platform.access_key_id = Some(id.clone());
    assert_eq!(caller, platform);
    assert_eq!(e.iam.caller_of_key(&id), Some(caller.clone()));
    assert_eq!(e.iam.agent_host(&id).as_deref(), Some("host-1.example"));
    // A long-term key: a session token with it is refused.
    assert_eq!(
        e.iam.authenticate(&id, Some("t")).unwrap_err(),
        AuthRefusal::Invalid
    );
    // Not a user: the IAM API does not serve it, nor list it as a key.
    assert_eq!(
        e.iam_call(&caller, "ListUsers", &[]).unwrap_err().code,
        "AccessDenied"
    );
    // A user's key is no agent's.
    let (user_key, _, _) = e.user_with("bob", ECS_READ);
    assert!(e.iam.agent_host(&user_key).is_none());

    // The secret never reaches the store in plaintext.
    let raw = std::fs::read(e.dir.path().join("state.redb")).unwrap();
    assert!(!raw.windows(40).any(|w| w == secret.as_bytes()));

    // Issued again for the host: the old key is refused, the new one works;
    // another host's key is not touched.
    let (other, other_secret) = e.iam.create_agent_key("host-2").unwrap();
    let (id2, secret2) = e.iam.create_agent_key("host-1.example").unwrap();
    assert_ne!(id2, id);
    assert_eq!(
        e.iam.authenticate(&id, None).unwrap_err(),
        AuthRefusal::Invalid
    );
    assert!(e.iam.caller_of_key(&id).is_none() && e.iam.agent_host(&id).is_none());
    assert_eq!(*e.iam.authenticate(&id2, None).unwrap().0, *secret2);
    assert_eq!(*e.iam.authenticate(&other, None).unwrap().0, *other_secret);
    // Host names are exact: another case is another host.
    let (upper, _) = e.iam.create_agent_key("HOST-2").unwrap();
    assert_eq!(e.iam.agent_host(&upper).as_deref(), Some("HOST-2"));
    assert!(e.iam.authenticate(&other, None).is_ok());

    // A restart keeps the keys (unsealed again).
    let e = e.reopen();
    let (s, c) = e.iam.authenticate(&id2, None).unwrap();
    assert_eq!((&*s, c.access_key_id.as_deref()), (&*secret2, Some(&*id2)));
    assert_eq!(e.iam.agent_host(&id2).as_deref(), Some("host-1.example"));
    assert!(e.iam.authenticate(&id, None).is_err());

    // Revoked: refused at once; revoking again says there was none.
    assert!(e.iam.delete_agent_key("host-1.example").unwrap());
    assert_eq!(
        e.iam.authenticate(&id2, None).unwrap_err(),
        AuthRefusal::Invalid
    );
    assert!(e.iam.caller_of_key(&id2).is_none() && e.iam.agent_host(&id2).is_none());
    assert!(!e.iam.delete_agent_key("host-1.example").unwrap());
    assert!(e.iam.authenticate(&other, None).is_ok());
    let e = e.reopen();
    assert!(e.iam.authenticate(&id2, None).is_err());
    assert!(e.iam.authenticate(&other, None).is_ok());
}

#[test]
fn agent_host_names_follow_the_host_rule() {
    let e = env();
    let long = "x".repeat(65);
    for bad in ["", "a/b", "a b", "tab\t", "h\u{f6}st", "a:b", long.as_str()] {
        let err = e.iam.create_agent_key(bad).unwrap_err();
        assert_eq!((err.code.as_str(), err.status), ("ValidationError", 400));
        assert!(
            err.message
                .contains("Member must satisfy regular expression pattern: [A-Za-z0-9._-]{1,64}"),
            "{}",
            err.message
        );
        assert_eq!(
            e.iam.delete_agent_key(bad).unwrap_err().code,
            "ValidationError"
        );
    }
    // A refused name is echoed cut short.
    let huge = "y".repeat(10_000);
    assert!(e.iam.create_agent_key(&huge).unwrap_err().message.len() < 300);
    for good in ["a", "node-1.rack_2", "x".repeat(64).as_str(), "1.2.3.4"] {
        let (id, _) = e.iam.create_agent_key(good).unwrap();
        assert_eq!(e.iam.agent_host(&id).as_deref(), Some(good));
    }
}
