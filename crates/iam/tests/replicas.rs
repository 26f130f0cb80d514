//! Two identity stores (replicas) over one PostgreSQL database (issue 19):
//! a user, key, role or session made through one authenticates through the
//! other at once, and one deleted or revoked through either is refused by
//! both at once.
//!
//! Needs root and PostgreSQL's server binaries (`scripts/setup`):
//! `ferry_store::testing::TempPostgres` fails the test with the reason
//! when either is missing.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use ferry_iam::iam::{NewRole, NewUser};
use ferry_iam::{AssumeRoleRequest, AuthRefusal, Iam, Sealer};
use ferry_proto::{AwsError, Caller, Principal};
use ferry_store::Store;
use ferry_store::testing::TempPostgres;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const ACCOUNT: &str = "111122223333";

/// A stand-in for the KMS root key's sealing: bound to the label, and
/// reversible, which is all the identity store asks of it.
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

fn replica(pg: &TempPostgres) -> Arc<Iam> {
    let store = Arc::new(Store::connect(&pg.url()).unwrap());
    Arc::new(Iam::open(store, Arc::new(TestSealer), ACCOUNT).unwrap())
}

const TASK_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
    "Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
const ACCOUNT_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
    "Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;

fn role(name: &str, trust: &str) -> NewRole {
    NewRole {
        name: name.into(),
        path: "/".into(),
        trust: trust.into(),
        max_session: 3600,
        ..NewRole::default()
    }
}

#[test]
fn a_user_key_made_through_one_replica_authenticates_through_the_other() {
    let pg = TempPostgres::new();
    let (a, b) = (replica(&pg), replica(&pg));
    a.create_user(NewUser {
        name: "alice".into(),
        path: "/".into(),
        tags: Vec::new(),
    })
    .unwrap();
    let (key, secret) = a.create_access_key("alice").unwrap();
    let (got, caller) = b.authenticate(&key.key_id, None).unwrap();
    assert_eq!(*got, *secret);
    assert_eq!(
        caller.principal,
        Principal::Iam(format!("arn:aws:iam::{ACCOUNT}:user/alice"))
    );
    // An inline policy added through B applies through A at once.
    b.update_user("alice", |u| {
        u.inline.insert(
            "p".into(),
            r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#.into(),
        );
        Ok(())
    })
    .unwrap();
    let (_, caller) = a.authenticate(&key.key_id, None).unwrap();
    assert_eq!(caller.policies.unwrap().policies.len(), 1);
    // Deactivated through A: refused through B at once; active again.
    a.set_access_key_status("alice", &key.key_id, "Inactive")
        .unwrap();
    assert_eq!(
        b.authenticate(&key.key_id, None).unwrap_err(),
        AuthRefusal::Invalid
    );
    b.set_access_key_status("alice", &key.key_id, "Active")
        .unwrap();
    a.authenticate(&key.key_id, None).unwrap();
    // Deleted through B: refused through A at once, and by the registry's
    // check (`caller_of_key`) too.
    b.delete_access_key("alice", &key.key_id).unwrap();
    assert_eq!(
        a.authenticate(&key.key_id, None).unwrap_err(),
        AuthRefusal::Invalid
    );
    assert!(a.caller_of_key(&key.key_id).is_none());
    // The user can go now, through either.
    b.update_user("alice", |u| {
        u.inline.clear();
        Ok(())
    })
    .unwrap();
    a.delete_user("alice").unwrap();
    // In-process readers read what the last refresh loaded (the API
    // refreshes once per call).
    b.refresh().unwrap();
    assert_eq!(b.user("alice").unwrap_err().code, "NoSuchEntity");
}

#[test]
fn limits_and_names_hold_across_replicas() {
    let pg = TempPostgres::new();
    let (a, b) = (replica(&pg), replica(&pg));
    // The same name through both at once: one user.
    let made: Vec<bool> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|iam| {
            std::thread::spawn(move || {
                iam.create_user(NewUser {
                    name: "bob".into(),
                    path: "/".into(),
                    tags: Vec::new(),
                })
                .is_ok()
            })
        })
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(made.iter().filter(|m| **m).count(), 1, "{made:?}");
    // Two keys at most, counted in the transaction.
    a.create_access_key("bob").unwrap();
    b.create_access_key("bob").unwrap();
    assert_eq!(
        a.create_access_key("bob").unwrap_err().code,
        "LimitExceeded"
    );
    assert_eq!(
        b.create_access_key("bob").unwrap_err().code,
        "LimitExceeded"
    );
    // A user with keys cannot be deleted through either.
    assert_eq!(b.delete_user("bob").unwrap_err().code, "DeleteConflict");
}

#[test]
fn a_task_session_issued_through_one_replica_is_revoked_through_the_other() {
    let pg = TempPostgres::new();
    let (a, b) = (replica(&pg), replica(&pg));
    let r = a.create_role(role("task", TASK_TRUST)).unwrap();
    let owner = format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task/c/1");
    let creds = a
        .assume_role_for_service(
            &r.arn,
            "ecs-tasks.amazonaws.com",
            "t1",
            &owner,
            Duration::from_secs(3600),
        )
        .unwrap();
    let token = creds.session_token.to_string();
    let (secret, caller) = b.authenticate(&creds.access_key_id, Some(&token)).unwrap();
    assert_eq!(*secret, *creds.secret_access_key);
    assert!(matches!(caller.principal, Principal::AssumedRole { .. }));
    // Another task's session stays when this one's are revoked.
    let other = b
        .assume_role_for_service(
            &r.arn,
            "ecs-tasks.amazonaws.com",
            "t2",
            &format!("{owner}-other"),
            Duration::from_secs(3600),
        )
        .unwrap();
    b.revoke_owner(&owner);
    assert_eq!(
        a.authenticate(&creds.access_key_id, Some(&token))
            .unwrap_err(),
        AuthRefusal::Invalid
    );
    assert!(a.caller_of_key(&creds.access_key_id).is_none());
    a.authenticate(&other.access_key_id, Some(&other.session_token))
        .unwrap();
}

#[test]
fn an_assumed_role_session_dies_with_its_role_on_every_replica() {
    let pg = TempPostgres::new();
    let (a, b) = (replica(&pg), replica(&pg));
    a.create_role(role("ops", ACCOUNT_TRUST)).unwrap();
    let assumed = b
        .assume_role(
            &Caller::admin(ACCOUNT),
            &AssumeRoleRequest {
                role_arn: &format!("arn:aws:iam::{ACCOUNT}:role/ops"),
                session_name: "ops-session",
                ..AssumeRoleRequest::default()
            },
        )
        .unwrap();
    let c = &assumed.credentials;
    a.authenticate(&c.access_key_id, Some(&c.session_token))
        .unwrap();
    a.delete_role("ops").unwrap();
    for iam in [&a, &b] {
        assert_eq!(
            iam.authenticate(&c.access_key_id, Some(&c.session_token))
                .unwrap_err(),
            AuthRefusal::Invalid
        );
    }
}

#[test]
fn an_agent_key_issued_through_one_replica_authenticates_and_is_revoked_through_the_other() {
    let pg = TempPostgres::new();
    let (a, b) = (replica(&pg), replica(&pg));
    let (id, secret) = a.create_agent_key("node-1").unwrap();
    let (got, caller) = b.authenticate(&id, None).unwrap();
    assert_eq!(*got, *secret);
    assert_eq!(
        caller.principal,
        Principal::Service(ferry_iam::AGENT_PRINCIPAL.into())
    );
    assert_eq!(caller.access_key_id.as_deref(), Some(id.as_str()));
    assert_eq!(b.agent_host(&id).as_deref(), Some("node-1"));
    // Issued again through B: the old key is refused through A at once.
    let (id2, secret2) = b.create_agent_key("node-1").unwrap();
    assert_eq!(a.authenticate(&id, None).unwrap_err(), AuthRefusal::Invalid);
    assert!(a.agent_host(&id).is_none());
    assert_eq!(*a.authenticate(&id2, None).unwrap().0, *secret2);
    // Revoked through A: refused through B at once, for the registry's
    // check too.
    assert!(a.delete_agent_key("node-1").unwrap());
    assert_eq!(
        b.authenticate(&id2, None).unwrap_err(),
        AuthRefusal::Invalid
    );
    assert!(b.caller_of_key(&id2).is_none());
    assert!(!b.delete_agent_key("node-1").unwrap());
}
