use super::*;

const ACCOUNT: &str = "111122223333";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";

/// Fargate's documented customer-managed-key policy for ephemeral storage.
fn fargate_policy() -> Policy {
    Policy::parse(
        &serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
                 "Action": "kms:*", "Resource": "*"},
                {"Sid": "Allow generate data key access for Fargate tasks.", "Effect": "Allow",
                 "Principal": {"Service": "fargate.amazonaws.com"},
                 "Action": ["kms:GenerateDataKeyWithoutPlaintext"],
                 "Condition": {"StringEquals": {
                     "kms:EncryptionContext:aws:ecs:clusterAccount": [ACCOUNT],
                     "kms:EncryptionContext:aws:ecs:clusterName": ["prod"]}},
                 "Resource": "*"},
                {"Sid": "Allow grant creation permission for Fargate tasks.", "Effect": "Allow",
                 "Principal": {"Service": "fargate.amazonaws.com"},
                 "Action": ["kms:CreateGrant"],
                 "Condition": {
                     "StringEquals": {
                         "kms:EncryptionContext:aws:ecs:clusterAccount": [ACCOUNT],
                         "kms:EncryptionContext:aws:ecs:clusterName": ["prod"]},
                     "ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]}},
                 "Resource": "*"},
                {"Sid": "retire", "Effect": "Allow", "Principal": {"Service": "fargate.amazonaws.com"},
                 "Action": "kms:RetireGrant", "Resource": "*"}
            ]
        })
        .to_string(),
    )
    .unwrap()
}

fn admin(account: &str) -> Subject {
    Subject::Root {
        account: account.into(),
    }
}

fn service(account: &str, service: &str) -> Subject {
    Subject::Service {
        account: account.into(),
        service: service.into(),
    }
}

fn facts<'a>(subject: &'a Subject, action: &'a str, keys: &[(&str, &[&str])]) -> Facts<'a> {
    Facts {
        subject,
        action,
        resource: KEY,
        keys: keys
            .iter()
            .map(|(k, v)| (norm_key(k), v.iter().map(|s| s.to_string()).collect()))
            .collect(),
    }
}

#[test]
fn fargate_policy_allows_exactly_the_documented_uses() {
    let p = fargate_policy();
    let fargate = service(ACCOUNT, "fargate.amazonaws.com");
    let ctx: &[(&str, &[&str])] = &[
        ("kms:EncryptionContext:aws:ecs:clusterAccount", &[ACCOUNT]),
        ("kms:EncryptionContext:aws:ecs:clusterName", &["prod"]),
    ];
    assert_eq!(
        p.evaluate(&facts(&fargate, "kms:GenerateDataKeyWithoutPlaintext", ctx)),
        Decision::Allow
    );
    // Another cluster's name: not allowed.
    let other: &[(&str, &[&str])] = &[
        ("kms:EncryptionContext:aws:ecs:clusterAccount", &[ACCOUNT]),
        ("kms:EncryptionContext:aws:ecs:clusterName", &["dev"]),
    ];
    assert_eq!(
        p.evaluate(&facts(
            &fargate,
            "kms:GenerateDataKeyWithoutPlaintext",
            other
        )),
        Decision::NotApplicable
    );
    // No context: not allowed.
    assert_eq!(
        p.evaluate(&facts(&fargate, "kms:GenerateDataKeyWithoutPlaintext", &[])),
        Decision::NotApplicable
    );
    // Plaintext data keys and direct decrypts are not in the policy.
    assert_eq!(
        p.evaluate(&facts(&fargate, "kms:GenerateDataKey", ctx)),
        Decision::NotApplicable
    );
    assert_eq!(
        p.evaluate(&facts(&fargate, "kms:Decrypt", ctx)),
        Decision::NotApplicable
    );

    // CreateGrant only for Decrypt.
    let mut g: Vec<(&str, &[&str])> = ctx.to_vec();
    g.push(("kms:GrantOperations", &["Decrypt"]));
    assert_eq!(
        p.evaluate(&facts(&fargate, "kms:CreateGrant", &g)),
        Decision::Allow
    );
    let mut g2: Vec<(&str, &[&str])> = ctx.to_vec();
    g2.push(("kms:GrantOperations", &["Decrypt", "Encrypt"]));
    assert_eq!(
        p.evaluate(&facts(&fargate, "kms:CreateGrant", &g2)),
        Decision::NotApplicable
    );

    assert_eq!(
        p.evaluate(&facts(&fargate, "kms:RetireGrant", &[])),
        Decision::Allow
    );
    // The account root statement matches the administrator, not a service.
    assert_eq!(
        p.evaluate(&facts(&admin(ACCOUNT), "kms:ScheduleKeyDeletion", &[])),
        Decision::Allow
    );
    assert_eq!(
        p.evaluate(&facts(
            &service(ACCOUNT, "ecs.amazonaws.com"),
            "Decrypt",
            ctx
        )),
        Decision::NotApplicable
    );
    // Another account's administrator gets nothing.
    assert_eq!(
        p.evaluate(&facts(&admin("999999999999"), "kms:Decrypt", &[])),
        Decision::NotApplicable
    );
}

#[test]
fn deny_wins_and_operators_behave() {
    let p = Policy::parse(
        r#"{"Statement":[
            {"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},
            {"Effect":"Deny","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*",
             "Condition":{"StringNotEquals":{"kms:EncryptionContext:team":"blue"}}}
        ]}"#,
    )
    .unwrap();
    let svc = service(ACCOUNT, "x.amazonaws.com");
    assert_eq!(
        p.evaluate(&facts(
            &svc,
            "kms:Decrypt",
            &[("kms:EncryptionContext:team", &["blue"])]
        )),
        Decision::Allow
    );
    assert_eq!(
        p.evaluate(&facts(
            &svc,
            "kms:Decrypt",
            &[("kms:EncryptionContext:team", &["red"])]
        )),
        Decision::Deny
    );
    // Absent key: StringNotEquals holds, so the deny applies.
    assert_eq!(p.evaluate(&facts(&svc, "kms:Decrypt", &[])), Decision::Deny);
    // Context keys are case-sensitive after the prefix; the prefix is not.
    assert_eq!(
        norm_key("KMS:EncryptionContext:Team"),
        "kms:encryptioncontext:Team"
    );
    assert_eq!(
        p.evaluate(&facts(&svc, "kms:Encrypt", &[])),
        Decision::Allow
    );
}

#[test]
fn malformed_policies_are_rejected() {
    for bad in [
        "not json",
        "[]",
        r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericLessThan":{"a":"1"}}}]}"#,
        r#"{"Statement":[{"Effect":"Allow","NotPrincipal":"*","Action":"kms:*","Resource":"*"}]}"#,
        r#"{"Version":"2020-01-01","Statement":[]}"#,
    ] {
        assert!(Policy::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn globbing() {
    assert!(glob("kms:Generate*", "kms:GenerateDataKey", true));
    assert!(glob("kms:*", "kms:Decrypt", true));
    assert!(glob("KMS:decrypt", "kms:Decrypt", true));
    assert!(!glob("kms:Decrypt", "kms:DecryptX", true));
    assert!(glob("a?c", "abc", false));
    assert!(!glob("a?c", "ac", false));
    assert!(glob("*a*b*c*", "xxaxxbxxcxx", false));
    assert!(!glob(&"*a".repeat(50), &"a".repeat(40), false));
}

proptest::proptest! {
    #[test]
    fn parse_and_glob_never_panic(s in "\\PC{0,200}", t in "\\PC{0,50}") {
        let _ = Policy::parse(&s);
        let _ = glob(&s, &t, true);
        let _ = norm_key(&s);
    }
}
