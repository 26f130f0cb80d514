//! Secrets Manager unit tests, over a real KMS on a temporary store.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use ferry_policy::Policy;
use ferry_proto::{AwsError, Caller, IdentityPolicies, JsonService, Principal, RequestContext};
use serde_json::{Value, json};

use super::SecretsManager;
use super::model::{SECRETS, SecretRecord};
use crate::testkit::{self, ACCOUNT, Kit, REGION, admin, contains};

struct T {
    kit: Kit,
    sm: SecretsManager,
}

impl T {
    fn new() -> Self {
        let kit = Kit::new();
        let sm = SecretsManager::new(kit.store.clone(), kit.kms.clone()).unwrap();
        Self { kit, sm }
    }

    fn call_as(&self, ctx: &RequestContext, op: &str, body: Value) -> Result<Value, AwsError> {
        self.sm.call(ctx, op, body.to_string().as_bytes())
    }

    fn call(&self, op: &str, body: Value) -> Result<Value, AwsError> {
        self.call_as(&admin(), op, body)
    }

    fn ok(&self, op: &str, body: Value) -> Value {
        self.call(op, body)
            .unwrap_or_else(|e| panic!("{op}: {}: {}", e.code, e.message))
    }

    fn err(&self, op: &str, body: Value) -> AwsError {
        match self.call(op, body) {
            Ok(v) => panic!("{op} succeeded: {v}"),
            Err(e) => e,
        }
    }

    fn value(&self, body: Value) -> String {
        self.ok("GetSecretValue", body)["SecretString"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn user(policies: &[&str]) -> RequestContext {
    RequestContext::internal(
        Caller {
            account: ACCOUNT.into(),
            principal: Principal::Iam(format!("arn:aws:iam::{ACCOUNT}:user/app")),
            access_key_id: None,
            policies: Some(Arc::new(IdentityPolicies {
                policies: policies
                    .iter()
                    .map(|p| Policy::parse_identity(p).unwrap())
                    .collect(),
            })),
        },
        REGION,
    )
}

#[test]
fn versions_and_stages() {
    let t = T::new();
    let c = t.ok(
        "CreateSecret",
        json!({"Name": "prod/db", "SecretString": "v1", "Description": "the db"}),
    );
    let arn = c["ARN"].as_str().unwrap().to_owned();
    let v1 = c["VersionId"].as_str().unwrap().to_owned();
    assert!(arn.starts_with(&format!(
        "arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-"
    )));
    assert_eq!(
        arn.len(),
        format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-").len() + 6
    );
    assert_eq!(t.value(json!({"SecretId": "prod/db"})), "v1");

    let p = t.ok(
        "PutSecretValue",
        json!({"SecretId": "prod/db", "SecretString": "v2"}),
    );
    let v2 = p["VersionId"].as_str().unwrap().to_owned();
    assert_eq!(p["VersionStages"], json!(["AWSCURRENT"]));
    assert_eq!(t.value(json!({"SecretId": "prod/db"})), "v2");
    assert_eq!(
        t.value(json!({"SecretId": "prod/db", "VersionStage": "AWSPREVIOUS"})),
        "v1"
    );
    assert_eq!(
        t.value(json!({"SecretId": "prod/db", "VersionId": v1})),
        "v1"
    );

    // A pending version does not move AWSCURRENT.
    let p3 = t.ok(
        "PutSecretValue",
        json!({"SecretId": arn, "SecretString": "v3", "VersionStages": ["AWSPENDING"]}),
    );
    let v3 = p3["VersionId"].as_str().unwrap().to_owned();
    assert_eq!(t.value(json!({"SecretId": "prod/db"})), "v2");
    let d = t.ok("DescribeSecret", json!({"SecretId": "prod/db"}));
    assert_eq!(d["VersionIdsToStages"][&v1], json!(["AWSPREVIOUS"]));
    assert_eq!(d["VersionIdsToStages"][&v2], json!(["AWSCURRENT"]));
    assert_eq!(d["VersionIdsToStages"][&v3], json!(["AWSPENDING"]));
    assert_eq!(d["Description"], "the db");
    assert!(d.get("KmsKeyId").is_none());
    assert!(d["LastChangedDate"].as_f64().unwrap() > 0.0);
    assert!(d["LastAccessedDate"].as_f64().is_some());

    // UpdateSecretVersionStage promotes the pending version.
    t.ok(
        "UpdateSecretVersionStage",
        json!({"SecretId": "prod/db", "VersionStage": "AWSCURRENT",
               "MoveToVersionId": v3, "RemoveFromVersionId": v2}),
    );
    assert_eq!(t.value(json!({"SecretId": "prod/db"})), "v3");
    assert_eq!(
        t.value(json!({"SecretId": "prod/db", "VersionStage": "AWSPREVIOUS"})),
        "v2"
    );
    let e = t.err(
        "UpdateSecretVersionStage",
        json!({"SecretId": "prod/db", "VersionStage": "AWSCURRENT", "MoveToVersionId": v1}),
    );
    assert_eq!(e.code, "InvalidParameterException");

    // UpdateSecret with a value makes a new current version.
    let u = t.ok(
        "UpdateSecret",
        json!({"SecretId": "prod/db", "SecretString": "v4", "Description": "new"}),
    );
    assert!(u["VersionId"].is_string());
    assert_eq!(t.value(json!({"SecretId": "prod/db"})), "v4");
    let versions = t.ok(
        "ListSecretVersionIds",
        json!({"SecretId": "prod/db", "IncludeDeprecated": true}),
    );
    assert_eq!(versions["Versions"].as_array().unwrap().len(), 4);
    let labelled = t.ok("ListSecretVersionIds", json!({"SecretId": "prod/db"}));
    assert_eq!(labelled["Versions"].as_array().unwrap().len(), 2);

    let e = t.err(
        "GetSecretValue",
        json!({"SecretId": "prod/db", "VersionStage": "NOPE"}),
    );
    assert_eq!(e.code, "ResourceNotFoundException");
    assert_eq!(
        e.message,
        "Secrets Manager can't find the specified secret value for staging label: NOPE"
    );
    let e = t.err(
        "GetSecretValue",
        json!({"SecretId": "prod/db", "VersionId": "0123456789abcdef0123456789abcdef"}),
    );
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[test]
fn idempotent_create_and_put_with_client_request_token() {
    let t = T::new();
    let tok = "11111111-2222-3333-4444-555555555555";
    let a = t.ok(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "x", "ClientRequestToken": tok}),
    );
    assert_eq!(a["VersionId"], tok);
    let b = t.ok(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "x", "ClientRequestToken": tok}),
    );
    assert_eq!(a, b);
    let e = t.err(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "y", "ClientRequestToken": tok}),
    );
    assert_eq!(e.code, "ResourceExistsException");
    let e = t.err("CreateSecret", json!({"Name": "s", "SecretString": "x"}));
    assert_eq!(e.code, "ResourceExistsException");
    assert_eq!(
        e.message,
        "The operation failed because the secret s already exists."
    );
    let tok2 = "22222222-2222-3333-4444-555555555555";
    t.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "z", "ClientRequestToken": tok2}),
    );
    t.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "z", "ClientRequestToken": tok2}),
    );
    let e = t.err(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "other", "ClientRequestToken": tok2}),
    );
    assert_eq!(e.code, "ResourceExistsException");
    assert_eq!(t.value(json!({"SecretId": "s"})), "z");
}

#[test]
fn arn_and_partial_arn_resolution() {
    let t = T::new();
    // "my-secret" ends like an ARN suffix ("-secret"): it must still resolve.
    for name in ["plain", "my-secret", "a/b/c"] {
        let c = t.ok("CreateSecret", json!({"Name": name, "SecretString": name}));
        let arn = c["ARN"].as_str().unwrap();
        let partial = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}");
        for id in [name, arn, partial.as_str()] {
            assert_eq!(t.value(json!({"SecretId": id})), name, "{id}");
        }
    }
    let other_region = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:plain";
    assert_eq!(
        t.err("GetSecretValue", json!({"SecretId": other_region}))
            .code,
        "ResourceNotFoundException"
    );
    let e = t.err("GetSecretValue", json!({"SecretId": "missing"}));
    assert_eq!(e.code, "ResourceNotFoundException");
    assert_eq!(
        e.message,
        "Secrets Manager can't find the specified secret."
    );
    // A full ARN with a wrong suffix names nothing.
    let wrong = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:plain-ZZZZZZ");
    assert_eq!(
        t.err("DescribeSecret", json!({"SecretId": wrong})).code,
        "ResourceNotFoundException"
    );
}

#[test]
fn deletion_recovery_and_restore() {
    let t = T::new();
    t.ok("CreateSecret", json!({"Name": "d", "SecretString": "x"}));
    for days in [6, 31] {
        let e = t.err(
            "DeleteSecret",
            json!({"SecretId": "d", "RecoveryWindowInDays": days}),
        );
        assert_eq!(e.code, "InvalidParameterException");
    }
    let e = t.err(
        "DeleteSecret",
        json!({"SecretId": "d", "RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": true}),
    );
    assert_eq!(e.code, "InvalidParameterException");
    let del = t.ok(
        "DeleteSecret",
        json!({"SecretId": "d", "RecoveryWindowInDays": 7}),
    );
    let due = del["DeletionDate"].as_f64().unwrap();
    assert!((due - crate::util::now() - 7.0 * 86_400.0).abs() < 60.0);
    let e = t.err("GetSecretValue", json!({"SecretId": "d"}));
    assert_eq!(e.code, "InvalidRequestException");
    assert_eq!(
        e.message,
        "You can't perform this operation on the secret because it was marked for deletion."
    );
    assert_eq!(
        t.err(
            "PutSecretValue",
            json!({"SecretId": "d", "SecretString": "y"})
        )
        .code,
        "InvalidRequestException"
    );
    let e = t.err("CreateSecret", json!({"Name": "d", "SecretString": "y"}));
    assert_eq!(e.code, "InvalidRequestException");
    let d = t.ok("DescribeSecret", json!({"SecretId": "d"}));
    assert!(d["DeletedDate"].is_number());
    let listed = t.ok("ListSecrets", json!({}));
    assert_eq!(listed["SecretList"].as_array().unwrap().len(), 0);
    let listed = t.ok("ListSecrets", json!({"IncludePlannedDeletion": true}));
    assert_eq!(listed["SecretList"].as_array().unwrap().len(), 1);

    t.ok("RestoreSecret", json!({"SecretId": "d"}));
    assert_eq!(t.value(json!({"SecretId": "d"})), "x");
    assert!(
        t.ok("DescribeSecret", json!({"SecretId": "d"}))
            .get("DeletedDate")
            .is_none()
    );

    // A secret whose window has passed is gone (and its values with it).
    t.ok("DeleteSecret", json!({"SecretId": "d"}));
    let mut rec: SecretRecord = t.kit.store.get(SECRETS, "d").unwrap().unwrap();
    rec.delete_after = Some(1.0);
    t.kit.store.put(SECRETS, "d", &rec).unwrap();
    assert_eq!(
        t.err("DescribeSecret", json!({"SecretId": "d"})).code,
        "ResourceNotFoundException"
    );
    let values: Vec<(String, Value)> = t.kit.store.scan(super::model::VALUES, "").unwrap();
    assert!(values.is_empty());
    // The name is free again, with a new ARN.
    let c = t.ok("CreateSecret", json!({"Name": "d", "SecretString": "new"}));
    assert_ne!(c["ARN"].as_str().unwrap(), rec.arn);

    let f = t.ok(
        "DeleteSecret",
        json!({"SecretId": "d", "ForceDeleteWithoutRecovery": true}),
    );
    assert!(f["DeletionDate"].is_number());
    assert_eq!(
        t.err("DescribeSecret", json!({"SecretId": "d"})).code,
        "ResourceNotFoundException"
    );
}

#[test]
fn list_pagination_and_filters() {
    let t = T::new();
    for i in 0..7 {
        let mut body = json!({"Name": format!("app/s{i}"), "SecretString": "x"});
        if i % 2 == 0 {
            body["Tags"] = json!([{"Key": "team", "Value": "blue"}]);
        }
        t.ok("CreateSecret", body);
    }
    t.ok(
        "CreateSecret",
        json!({"Name": "other", "Description": "Billing key"}),
    );
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"MaxResults": 3});
        if let Some(tk) = &token {
            body["NextToken"] = json!(tk);
        }
        let page = t.ok("ListSecrets", body);
        let list = page["SecretList"].as_array().unwrap();
        assert!(list.len() <= 3);
        names.extend(list.iter().map(|s| s["Name"].as_str().unwrap().to_owned()));
        match page["NextToken"].as_str() {
            Some(tk) => token = Some(tk.to_owned()),
            None => break,
        }
    }
    assert_eq!(names.len(), 8);
    let count = |filters: Value| {
        t.ok("ListSecrets", json!({"Filters": filters}))["SecretList"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(json!([{"Key": "name", "Values": ["app/"]}])), 7);
    assert_eq!(count(json!([{"Key": "name", "Values": ["!app/"]}])), 1);
    assert_eq!(count(json!([{"Key": "tag-key", "Values": ["team"]}])), 4);
    assert_eq!(
        count(
            json!([{"Key": "tag-value", "Values": ["blue"]}, {"Key": "name", "Values": ["app/s0"]}])
        ),
        1
    );
    assert_eq!(
        count(json!([{"Key": "description", "Values": ["billing"]}])),
        1
    );
    assert_eq!(count(json!([{"Key": "all", "Values": ["BILLING"]}])), 1);
    let entry = &t.ok(
        "ListSecrets",
        json!({"Filters": [{"Key": "name", "Values": ["app/s0"]}]}),
    )["SecretList"][0];
    assert!(entry["SecretVersionsToStages"].is_object());
    assert_eq!(entry["Tags"], json!([{"Key": "team", "Value": "blue"}]));
    assert_eq!(
        t.err("ListSecrets", json!({"NextToken": "garbage"})).code,
        "InvalidNextTokenException"
    );
    assert_eq!(
        t.err("ListSecrets", json!({"MaxResults": 101})).code,
        "ValidationException"
    );
}

#[test]
fn binary_secrets_and_validation() {
    let t = T::new();
    let bytes = [0u8, 1, 2, 255, 254];
    t.ok(
        "CreateSecret",
        json!({"Name": "bin", "SecretBinary": crate::util::b64(&bytes)}),
    );
    let v = t.ok("GetSecretValue", json!({"SecretId": "bin"}));
    assert_eq!(v["SecretBinary"], crate::util::b64(&bytes));
    assert!(v.get("SecretString").is_none());
    let direct = t.sm.get_secret_value(&admin(), "bin", None, None).unwrap();
    assert_eq!(direct.binary.as_deref().unwrap().as_slice(), &bytes);
    assert!(direct.string.is_none());
    // Debug must not print the value, in any form. (Not "255" alone: the
    // version id and ARN suffix are random and may contain it.)
    let shown = format!("{direct:?}");
    for form in ["255, 254", "[0, 1, 2", "AAEC//4", "\\xff"] {
        assert!(!shown.contains(form), "{form} in {shown}");
    }

    let e = t.err(
        "CreateSecret",
        json!({"Name": "both", "SecretString": "a", "SecretBinary": "YQ=="}),
    );
    assert_eq!(e.code, "InvalidParameterException");
    assert_eq!(
        t.err("CreateSecret", json!({"Name": "bad name!"})).code,
        "ValidationException"
    );
    assert_eq!(
        t.err(
            "CreateSecret",
            json!({"Name": "x", "ClientRequestToken": "short"})
        )
        .code,
        "ValidationException"
    );
    // A secret without a value has no AWSCURRENT yet.
    t.ok("CreateSecret", json!({"Name": "empty"}));
    let e = t.err("GetSecretValue", json!({"SecretId": "empty"}));
    assert_eq!(e.code, "ResourceNotFoundException");
    assert!(
        e.message.ends_with("staging label: AWSCURRENT"),
        "{}",
        e.message
    );
    assert_eq!(
        t.err("PutSecretValue", json!({"SecretId": "empty"})).code,
        "InvalidRequestException"
    );
    let e = t.err("NoSuchOperation", json!({}));
    assert_eq!(e.code, "UnknownOperationException");
}

#[test]
fn stored_records_hold_no_plaintext_and_reads_are_audited() {
    let t = T::new();
    let marker = "MARKER-a8f3e1d2c4b5-secret-value";
    let c = t.ok("CreateSecret", json!({"Name": "m", "SecretString": marker}));
    let arn = c["ARN"].as_str().unwrap().to_owned();
    let vid = c["VersionId"].as_str().unwrap().to_owned();
    t.ok(
        "PutSecretValue",
        json!({"SecretId": "m", "SecretString": format!("{marker}-2")}),
    );
    assert_eq!(t.value(json!({"SecretId": "m", "VersionId": vid})), marker);
    assert!(!contains(&t.kit.store_bytes(), marker.as_bytes()));
    let lines = t.kit.audit_lines();
    let decrypts: Vec<&Value> = lines
        .iter()
        .filter(|l| l["eventName"] == "Decrypt")
        .collect();
    assert_eq!(decrypts.len(), 1);
    let ec = &decrypts[0]["requestParameters"]["encryptionContext"];
    assert_eq!(ec["SecretARN"], arn.as_str());
    assert_eq!(ec["SecretVersionId"], vid.as_str());
    assert_eq!(
        decrypts[0]["sourceIPAddress"],
        "secretsmanager.amazonaws.com"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["eventName"] == "GenerateDataKey")
            .count(),
        2
    );
    assert!(!lines.iter().any(|l| l.to_string().contains(marker)));
}

#[test]
fn resource_policy_deny_binds_the_administrator_and_allows_users() {
    let t = T::new();
    let c = t.ok("CreateSecret", json!({"Name": "p", "SecretString": "x"}));
    let arn = c["ARN"].as_str().unwrap().to_owned();
    let deny = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]});
    t.ok(
        "PutResourcePolicy",
        json!({"SecretId": "p", "ResourcePolicy": deny.to_string()}),
    );
    let got = t.ok("GetResourcePolicy", json!({"SecretId": "p"}));
    assert_eq!(got["ResourcePolicy"], deny.to_string());
    let e = t.err("GetSecretValue", json!({"SecretId": "p"}));
    assert_eq!(e.code, "AccessDeniedException");
    assert!(e.message.contains("explicit deny"), "{}", e.message);
    assert!(t.sm.get_secret_value(&admin(), &arn, None, None).is_err());
    t.ok("DeleteResourcePolicy", json!({"SecretId": "p"}));
    assert_eq!(t.value(json!({"SecretId": "p"})), "x");

    // An IAM user needs an Allow: from its identity policy or the secret's.
    let app = user(&[]);
    let e = t
        .call_as(&app, "GetSecretValue", json!({"SecretId": "p"}))
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    // Missing secrets do not reveal themselves to it either.
    let e = t
        .call_as(&app, "GetSecretValue", json!({"SecretId": "nope"}))
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    let allow = json!({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/app")},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]});
    t.ok(
        "PutResourcePolicy",
        json!({"SecretId": "p", "ResourcePolicy": allow.to_string()}),
    );
    let v = t
        .call_as(&app, "GetSecretValue", json!({"SecretId": "p"}))
        .unwrap();
    assert_eq!(v["SecretString"], "x");
    let reader = user(&[
        r#"{"Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#,
    ]);
    assert!(
        t.call_as(&reader, "GetSecretValue", json!({"SecretId": "p"}))
            .is_ok()
    );
    assert_eq!(
        t.call_as(&reader, "DescribeSecret", json!({"SecretId": "p"}))
            .unwrap_err()
            .code,
        "AccessDeniedException"
    );

    let e = t.err(
        "PutResourcePolicy",
        json!({"SecretId": "p", "ResourcePolicy": "{not json"}),
    );
    assert_eq!(e.code, "MalformedPolicyDocumentException");
    let public = json!({"Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]});
    let e = t.err(
        "PutResourcePolicy",
        json!({"SecretId": "p", "ResourcePolicy": public.to_string(), "BlockPublicPolicy": true}),
    );
    assert_eq!(e.code, "PublicPolicyException");
}

#[test]
fn customer_keys_and_kms_refusals() {
    let t = T::new();
    let key: Value = serde_json::from_slice(
        &t.kit
            .kms
            .call(&admin(), "CreateKey", b"{}")
            .unwrap()
            .to_string()
            .into_bytes(),
    )
    .unwrap();
    let key_arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    t.ok(
        "CreateSecret",
        json!({"Name": "k", "SecretString": "x", "KmsKeyId": key_arn}),
    );
    let d = t.ok("DescribeSecret", json!({"SecretId": "k"}));
    assert_eq!(d["KmsKeyId"], key_arn.as_str());
    let v = t.ok("ListSecretVersionIds", json!({"SecretId": "k"}));
    assert_eq!(v["Versions"][0]["KmsKeyIds"], json!([key_arn]));
    assert_eq!(t.value(json!({"SecretId": "k"})), "x");

    // A user allowed by IAM to read the secret but not by the key's
    // policy to decrypt: AWS's "Access to KMS is not allowed".
    let reader = user(&[
        r#"{"Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#,
    ]);
    let e = t
        .call_as(&reader, "GetSecretValue", json!({"SecretId": "k"}))
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    assert_eq!(e.message, "Access to KMS is not allowed");
    // The default key lets any principal of the account use it through
    // Secrets Manager.
    t.ok("CreateSecret", json!({"Name": "dflt", "SecretString": "y"}));
    let v = t
        .call_as(&reader, "GetSecretValue", json!({"SecretId": "dflt"}))
        .unwrap();
    assert_eq!(v["SecretString"], "y");

    let e = t.err(
        "CreateSecret",
        json!({"Name": "k2", "SecretString": "x",
               "KmsKeyId": format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000")}),
    );
    assert_eq!(e.code, "ResourceNotFoundException");
    // Nothing was created by the failed call.
    assert_eq!(
        t.err("DescribeSecret", json!({"SecretId": "k2"})).code,
        "ResourceNotFoundException"
    );
}

#[test]
fn tags() {
    let t = T::new();
    t.ok(
        "CreateSecret",
        json!({"Name": "t", "Tags": [{"Key": "a", "Value": "1"}]}),
    );
    t.ok(
        "TagResource",
        json!({"SecretId": "t", "Tags": [{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}]}),
    );
    let d = t.ok("DescribeSecret", json!({"SecretId": "t"}));
    assert_eq!(
        d["Tags"],
        json!([{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}])
    );
    t.ok("UntagResource", json!({"SecretId": "t", "TagKeys": ["a"]}));
    let d = t.ok("DescribeSecret", json!({"SecretId": "t"}));
    assert_eq!(d["Tags"], json!([{"Key": "b", "Value": "3"}]));
    let pw = t.ok(
        "GetRandomPassword",
        json!({"PasswordLength": 20, "ExcludePunctuation": true}),
    );
    let pw = pw["RandomPassword"].as_str().unwrap();
    assert_eq!(pw.len(), 20);
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
    let _ = testkit::ACCOUNT;
}
