//! Two registries (replicas) over one PostgreSQL database (issue 19): they
//! agree on the login token key even when they start together, so a
//! login from one is accepted by the other, and a repository made through
//! one is seen through the other.
//!
//! Needs root and PostgreSQL's server binaries (`scripts/setup`):
//! `ferry_store::testing::TempPostgres` fails the test with the reason
//! when either is missing.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use ferry_kms::{Kms, RootKey};
use ferry_proto::{Caller, JsonService, RequestContext};
use ferry_registry::api::EcrService;
use ferry_registry::{Principals, Registry};
use ferry_store::Store;
use ferry_store::testing::TempPostgres;
use serde_json::json;

const ACCOUNT: &str = "111122223333";

/// Nobody but the administrator (whose logins carry no key id).
struct NoUsers;

impl Principals for NoUsers {
    fn current(&self, _principal_arn: &str, _access_key_id: &str) -> Option<Caller> {
        None
    }
}

fn replica(url: &str) -> (Arc<Registry>, tempfile::TempDir) {
    let store = Arc::new(Store::connect(url).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let kms = Arc::new(
        Kms::open(
            store.clone(),
            RootKey::from_bytes([3; 32]),
            dir.path(),
            ACCOUNT,
            "us-east-1",
        )
        .unwrap(),
    );
    let reg = Registry::open(store, kms, dir.path(), Arc::new(NoUsers)).unwrap();
    (Arc::new(reg), dir)
}

#[test]
fn replicas_agree_on_logins_and_repositories() {
    let pg = TempPostgres::new();
    let url = pg.url();
    let opened: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || replica(&url))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let admin = RequestContext::internal(Caller::admin(ACCOUNT), "us-east-1");
    for (issuer, _) in &opened {
        let login = issuer.login(&admin).unwrap();
        for (other, _) in &opened {
            let who = other.authenticate("AWS", &login.password);
            assert_eq!(who.map(|c| c.arn()), Some(Caller::admin(ACCOUNT).arn()));
        }
    }
    let (a, b) = (&opened[0].0, &opened[1].0);
    EcrService::new(a.clone())
        .call(
            &admin,
            "CreateRepository",
            json!({"repositoryName": "web"}).to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(b.repository("web").unwrap().name, "web");
    let e = EcrService::new(b.clone())
        .call(
            &admin,
            "CreateRepository",
            json!({"repositoryName": "web"}).to_string().as_bytes(),
        )
        .unwrap_err();
    assert_eq!(e.code, "RepositoryAlreadyExistsException");
}
