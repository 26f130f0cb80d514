//! Who may use a key: explicit denies bind the administrator, key policies
//! delegate to identity policies through the account, role ARNs match
//! their sessions, grants, `kms:ViaService`, the lockout safety check, and
//! the operations on no key.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::sync::{Arc, Mutex};

use ferry_kms::audit::AuditSink;
use ferry_kms::policy::Policy;
use ferry_kms::{Kms, RootKey};
use ferry_proto::{Caller, IdentityPolicies, JsonService, Principal, RequestContext};
use ferry_store::Store;
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";
const ROOT: &str = "arn:aws:iam::111122223333:root";
const BOB: &str = "arn:aws:iam::111122223333:user/bob";
const ROLE: &str = "arn:aws:iam::111122223333:role/app";

struct Lines(Arc<Mutex<Vec<String>>>);

impl AuditSink for Lines {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(line).into_owned());
        Ok(())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    kms: Kms,
    audit: Arc<Mutex<Vec<String>>>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
    let audit = Arc::new(Mutex::new(Vec::new()));
    let kms = Kms::with_sink(
        store,
        RootKey::from_bytes([9; 32]),
        Box::new(Lines(audit.clone())),
        ACCOUNT,
        "us-east-1",
    )
    .unwrap();
    Fixture {
        _dir: dir,
        kms,
        audit,
    }
}

fn admin() -> RequestContext {
    RequestContext::internal(Caller::admin(ACCOUNT), "us-east-1")
}

fn policies(docs: &[Value]) -> Option<Arc<IdentityPolicies>> {
    Some(Arc::new(IdentityPolicies {
        policies: docs
            .iter()
            .map(|d| Policy::parse_identity(&d.to_string()).unwrap())
            .collect(),
    }))
}

fn user(docs: &[Value]) -> RequestContext {
    RequestContext::internal(
        Caller {
            account: ACCOUNT.into(),
            principal: Principal::Iam(BOB.into()),
            access_key_id: Some("AKIABOB".into()),
            policies: policies(docs),
        },
        "us-east-1",
    )
}

fn session(docs: &[Value]) -> RequestContext {
    RequestContext::internal(
        Caller {
            account: ACCOUNT.into(),
            principal: Principal::AssumedRole {
                role_arn: ROLE.into(),
                session_name: "task-1".into(),
            },
            access_key_id: Some("ASIATASK".into()),
            policies: policies(docs),
        },
        "us-east-1",
    )
}

fn allow(actions: &[&str], resource: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": resource}]})
}

fn call(kms: &Kms, ctx: &RequestContext, op: &str, body: Value) -> Result<Value, (String, String)> {
    kms.call(ctx, op, body.to_string().as_bytes())
        .map_err(|e| (e.code, e.message))
}

fn new_key(f: &Fixture, policy: Option<Value>) -> String {
    let body = match policy {
        Some(p) => json!({"Policy": p.to_string()}),
        None => json!({}),
    };
    call(&f.kms, &admin(), "CreateKey", body).unwrap()["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn encrypt(f: &Fixture, ctx: &RequestContext, key: &str) -> Result<Value, (String, String)> {
    call(
        &f.kms,
        ctx,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGVsbG8="}),
    )
}

fn decrypt(f: &Fixture, ctx: &RequestContext, blob: &Value) -> Result<Value, (String, String)> {
    call(&f.kms, ctx, "Decrypt", json!({"CiphertextBlob": blob}))
}

#[test]
fn an_explicit_deny_in_the_key_policy_binds_the_administrator() {
    let f = fixture();
    let key = new_key(
        &f,
        Some(json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "no encrypt", "Effect": "Deny", "Principal": {"AWS": ROOT}, "Action": "kms:Encrypt", "Resource": "*"}
        ]})),
    );
    let (code, msg) = encrypt(&f, &admin(), &key).unwrap_err();
    assert_eq!(code, "AccessDeniedException");
    assert_eq!(
        msg,
        format!(
            "User: {ROOT} is not authorized to perform: kms:Encrypt on resource: {key} with an explicit deny in a resource-based policy"
        )
    );
    // Everything else stays the administrator's.
    let other = new_key(&f, None);
    let blob = encrypt(&f, &admin(), &other).unwrap()["CiphertextBlob"].clone();
    assert!(decrypt(&f, &admin(), &blob).is_ok());
    assert!(call(&f.kms, &admin(), "DescribeKey", json!({"KeyId": key})).is_ok());
    assert!(
        call(
            &f.kms,
            &admin(),
            "GenerateDataKey",
            json!({"KeyId": key, "KeySpec": "AES_256"}),
        )
        .is_ok()
    );
    // The denial is in the audit trail with its reason.
    let lines = f.audit.lock().unwrap();
    assert!(lines.iter().any(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        v["eventName"] == "Encrypt"
            && v["errorCode"] == "AccessDeniedException"
            && v["errorMessage"]
                .as_str()
                .unwrap()
                .contains("explicit deny")
    }));
}

#[test]
fn a_conditional_deny_binds_the_administrator_only_when_it_holds() {
    let f = fixture();
    let key = new_key(
        &f,
        Some(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringNotEquals": {"kms:EncryptionContext:team": "blue"}}}
        ]})),
    );
    let enc = |team: &str| {
        call(
            &f.kms,
            &admin(),
            "Encrypt",
            json!({"KeyId": key, "Plaintext": "aGk=", "EncryptionContext": {"team": team}}),
        )
        .unwrap()["CiphertextBlob"]
            .clone()
    };
    let blue = enc("blue");
    let red = enc("red");
    let dec = |blob: &Value, team: &str| {
        call(
            &f.kms,
            &admin(),
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": {"team": team}}),
        )
    };
    assert!(dec(&blue, "blue").is_ok());
    assert_eq!(dec(&red, "red").unwrap_err().0, "AccessDeniedException");
}

#[test]
fn iam_callers_need_the_key_policy_directly_or_through_the_account() {
    let f = fixture();
    // The default policy: the account, i.e. delegation to identity policies.
    let key = new_key(&f, None);
    // No identity policy: denied, and the message says which allow is missing.
    let (code, msg) = encrypt(&f, &user(&[]), &key).unwrap_err();
    assert_eq!(code, "AccessDeniedException");
    assert_eq!(
        msg,
        format!(
            "User: {BOB} is not authorized to perform: kms:Encrypt on resource: {key} because no identity-based policy allows the kms:Encrypt action"
        )
    );
    // An identity Allow on this key: allowed through the root statement.
    let bob = user(&[allow(&["kms:Encrypt", "kms:Decrypt"], &key)]);
    let blob = encrypt(&f, &bob, &key).unwrap()["CiphertextBlob"].clone();
    assert!(decrypt(&f, &bob, &blob).is_ok());
    // Allowed on another key only: not this one.
    let other = new_key(&f, None);
    let e = encrypt(&f, &user(&[allow(&["kms:Encrypt"], &other)]), &key).unwrap_err();
    assert_eq!(e.0, "AccessDeniedException");
    // An identity Deny beats the identity Allow.
    let deny = json!({"Statement": [{"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]});
    let e = decrypt(&f, &user(&[allow(&["kms:*"], "*"), deny]), &blob).unwrap_err();
    assert!(
        e.1.ends_with("with an explicit deny in an identity-based policy"),
        "{}",
        e.1
    );

    // A key policy that does not name the account: identity policies do
    // not help; naming the user does.
    let direct = new_key(
        &f,
        Some(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": ["kms:PutKeyPolicy", "kms:Describe*"], "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": "kms:Encrypt", "Resource": "*"}
        ]})),
    );
    assert!(encrypt(&f, &user(&[]), &direct).is_ok());
    let (_, msg) = encrypt(&f, &session(&[allow(&["kms:*"], "*")]), &direct).unwrap_err();
    assert!(
        msg.ends_with("because no resource-based policy allows the kms:Encrypt action"),
        "{msg}"
    );
    // The administrator keeps its standing access to customer keys even
    // when the policy names only others (it is the one who can repair it).
    assert!(encrypt(&f, &admin(), &direct).is_ok());
}

#[test]
fn a_role_arn_in_the_key_policy_lets_its_sessions_in() {
    let f = fixture();
    let key = new_key(
        &f,
        Some(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}
        ]})),
    );
    let s = session(&[]);
    let blob = encrypt(&f, &s, &key).unwrap()["CiphertextBlob"].clone();
    assert!(decrypt(&f, &s, &blob).is_ok());
    // Not a user, and not other operations.
    assert!(encrypt(&f, &user(&[]), &key).is_err());
    assert!(call(&f.kms, &s, "DisableKey", json!({"KeyId": key})).is_err());
    // The audit trail names the session.
    let lines = f.audit.lock().unwrap();
    assert!(lines.iter().any(|l| l.contains("assumed-role/app/task-1")));
}

#[test]
fn grants_still_work_for_iam_callers() {
    let f = fixture();
    let key = new_key(&f, None);
    let g = call(
        &f.kms,
        &admin(),
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": ROLE, "Operations": ["Encrypt", "Decrypt"],
               "Constraints": {"EncryptionContextSubset": {"app": "web"}}}),
    )
    .unwrap();
    let s = session(&[]);
    let with_ctx = json!({"KeyId": key, "Plaintext": "aGk=", "EncryptionContext": {"app": "web"}});
    let blob = call(&f.kms, &s, "Encrypt", with_ctx).unwrap()["CiphertextBlob"].clone();
    assert!(
        call(
            &f.kms,
            &s,
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": {"app": "web"}})
        )
        .is_ok()
    );
    // The grant's constraints hold.
    assert!(encrypt(&f, &s, &key).is_err());
    // An explicit identity deny beats the grant.
    let deny = json!({"Statement": [{"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*"}]});
    let with_ctx = json!({"KeyId": key, "Plaintext": "aGk=", "EncryptionContext": {"app": "web"}});
    assert_eq!(
        call(&f.kms, &session(&[deny]), "Encrypt", with_ctx)
            .unwrap_err()
            .0,
        "AccessDeniedException"
    );
    call(
        &f.kms,
        &admin(),
        "RevokeGrant",
        json!({"KeyId": key, "GrantId": g["GrantId"]}),
    )
    .unwrap();
}

#[test]
fn via_service_and_caller_condition_keys_reach_identity_policies() {
    let f = fixture();
    let key = new_key(&f, None);
    let via_secrets = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com",
                                        "kms:CallerAccount": ACCOUNT}}},
        {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"ArnEquals": {"aws:PrincipalArn": ROLE}}}
    ]});
    let s = session(std::slice::from_ref(&via_secrets));
    let blob = encrypt(&f, &s, &key).unwrap()["CiphertextBlob"].clone();
    // Directly: the ViaService condition fails.
    assert_eq!(
        decrypt(&f, &s, &blob).unwrap_err().0,
        "AccessDeniedException"
    );
    // Through Secrets Manager: allowed.
    let through = session(std::slice::from_ref(&via_secrets))
        .with_via_service("secretsmanager.us-east-1.amazonaws.com");
    assert!(decrypt(&f, &through, &blob).is_ok());
    // Through another service: not.
    let ssm = session(&[via_secrets]).with_via_service("ssm.us-east-1.amazonaws.com");
    assert!(decrypt(&f, &ssm, &blob).is_err());
    // The user's ARN is not the role's.
    assert!(encrypt(&f, &user(&[]), &key).is_err());

    // A key policy can require the service too.
    let key2 = new_key(
        &f,
        Some(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}}
        ]})),
    );
    let blob2 = encrypt(&f, &admin(), &key2).unwrap()["CiphertextBlob"].clone();
    assert!(decrypt(&f, &session(&[]), &blob2).is_err());
    let via_ssm = session(&[]).with_via_service("ssm.us-east-1.amazonaws.com");
    assert!(decrypt(&f, &via_ssm, &blob2).is_ok());
}

#[test]
fn operations_on_no_key_need_an_identity_allow() {
    let f = fixture();
    for op in ["ListKeys", "ListAliases", "CreateKey"] {
        let (code, msg) = call(&f.kms, &user(&[]), op, json!({})).unwrap_err();
        assert_eq!(code, "AccessDeniedException", "{op}");
        assert_eq!(
            msg,
            format!(
                "User: {BOB} is not authorized to perform: kms:{op} on resource: * because no identity-based policy allows the kms:{op} action"
            )
        );
    }
    let e = call(
        &f.kms,
        &user(&[]),
        "GenerateRandom",
        json!({"NumberOfBytes": 8}),
    )
    .unwrap_err();
    assert_eq!(e.0, "AccessDeniedException");
    let bob = user(&[allow(
        &[
            "kms:List*",
            "kms:CreateKey",
            "kms:GenerateRandom",
            "kms:Encrypt",
        ],
        "*",
    )]);
    assert!(call(&f.kms, &bob, "ListKeys", json!({})).is_ok());
    assert!(call(&f.kms, &bob, "ListAliases", json!({})).is_ok());
    assert!(call(&f.kms, &bob, "GenerateRandom", json!({"NumberOfBytes": 8})).is_ok());
    // A user may create a key with the default policy, and then use it as
    // its identity policies say.
    let k = call(&f.kms, &bob, "CreateKey", json!({})).unwrap();
    let arn = k["KeyMetadata"]["Arn"].as_str().unwrap();
    assert!(encrypt(&f, &bob, arn).is_ok());
    // The administrator needs nothing.
    assert!(call(&f.kms, &admin(), "ListKeys", json!({})).is_ok());
}

#[test]
fn the_lockout_safety_check_refuses_unrepairable_policies() {
    let f = fixture();
    let locked = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": ROOT}, "Action": "kms:PutKeyPolicy", "Resource": "*"}
    ]})
    .to_string();
    let (code, msg) = call(&f.kms, &admin(), "CreateKey", json!({"Policy": locked})).unwrap_err();
    assert_eq!(code, "MalformedPolicyDocumentException");
    assert_eq!(
        msg,
        "The new key policy will not allow you to update the key policy in the future."
    );
    let key = new_key(&f, None);
    let e = call(
        &f.kms,
        &admin(),
        "PutKeyPolicy",
        json!({"KeyId": key, "Policy": locked}),
    )
    .unwrap_err();
    assert_eq!(e.0, "MalformedPolicyDocumentException");
    // With the bypass flag the caller takes the risk, as in AWS; then not
    // even the administrator can change the policy again.
    call(
        &f.kms,
        &admin(),
        "PutKeyPolicy",
        json!({"KeyId": key, "Policy": locked, "BypassPolicyLockoutSafetyCheck": true}),
    )
    .unwrap();
    let e = call(
        &f.kms,
        &admin(),
        "PutKeyPolicy",
        json!({"KeyId": key, "Policy": locked, "BypassPolicyLockoutSafetyCheck": true}),
    )
    .unwrap_err();
    assert_eq!(e.0, "AccessDeniedException");
    // A user whose identity policy allows only CreateKey cannot give a new
    // key a policy that leaves it out.
    let bob = user(&[allow(&["kms:CreateKey"], "*")]);
    let only_root = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"}]})
    .to_string();
    let e = call(&f.kms, &bob, "CreateKey", json!({"Policy": only_root})).unwrap_err();
    assert_eq!(e.0, "MalformedPolicyDocumentException");
}
