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
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericLessThan":{"a":"one"}}}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"yesterday"}}}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NullIfExists":{"a":"true"}}}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","NotResource":"*"}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*"}]}"#,
        r#"{"Statement":[{"Effect":"Allow","NotPrincipal":"*","Action":"kms:*","Resource":"*"}]}"#,
        r#"{"Version":"2020-01-01","Statement":[]}"#,
    ] {
        assert!(Policy::parse(bad).is_err(), "{bad}");
    }
    // Identity policies name no principal; trust policies name no resource.
    assert!(
        Policy::parse_identity(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#
        )
        .is_err()
    );
    assert!(
        Policy::parse_trust(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole","Resource":"*"}]}"#
        )
        .is_err()
    );
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

#[test]
fn ec2_filter_globbing_escapes() {
    assert!(glob_escaped("vpc-*", "vpc-123"));
    assert!(glob_escaped("*", ""));
    assert!(glob_escaped("a?c", "abc"));
    assert!(!glob_escaped("a?c", "ac"));
    assert!(!glob_escaped("vpc-1", "vpc-12"));
    assert!(glob_escaped("a\\*", "a*"));
    assert!(!glob_escaped("a\\*", "ab"));
    assert!(glob_escaped("a\\", "a\\"));
    // Case matters, and a hostile pattern is no worse than IAM's.
    assert!(!glob_escaped("VPC-*", "vpc-1"));
    assert!(!glob_escaped(&"*a".repeat(50), &"a".repeat(40)));
}

proptest::proptest! {
    #[test]
    fn parse_and_glob_never_panic(s in "\\PC{0,200}", t in "\\PC{0,50}") {
        let _ = Policy::parse(&s);
        let _ = glob(&s, &t, true);
        let _ = norm_key(&s);
    }
}

fn iam(arns: &[&str]) -> Subject {
    Subject::Iam {
        account: ACCOUNT.into(),
        arns: arns.iter().map(|s| s.to_string()).collect(),
    }
}

fn on<'a>(
    subject: &'a Subject,
    action: &'a str,
    resource: &'a str,
    keys: &[(&str, &[&str])],
) -> Facts<'a> {
    Facts {
        resource,
        ..facts(subject, action, keys)
    }
}

fn identity(statements: &str) -> Policy {
    Policy::parse_identity(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#
    ))
    .unwrap()
}

#[test]
fn not_resource() {
    let p = identity(
        r#"{"Effect":"Allow","Action":"kms:*","NotResource":"arn:aws:kms:*:*:key/secret-*"}"#,
    );
    let bob = iam(&["arn:aws:iam::111122223333:user/bob"]);
    assert_eq!(
        p.evaluate(&on(&bob, "kms:Decrypt", KEY, &[])),
        Decision::Allow
    );
    assert_eq!(
        p.evaluate(&on(
            &bob,
            "kms:Decrypt",
            "arn:aws:kms:us-east-1:111122223333:key/secret-1",
            &[]
        )),
        Decision::NotApplicable
    );
    let d =
        identity(r#"{"Effect":"Deny","Action":"kms:*","NotResource":["arn:aws:kms:*:*:key/ok"]}"#);
    assert_eq!(
        d.evaluate(&on(&bob, "kms:Decrypt", KEY, &[])),
        Decision::Deny
    );
    assert_eq!(
        d.evaluate(&on(
            &bob,
            "kms:Decrypt",
            "arn:aws:kms:us-east-1:111122223333:key/ok",
            &[]
        )),
        Decision::NotApplicable
    );
}

#[test]
fn arn_operators() {
    let p = identity(
        r#"{"Effect":"Allow","Action":"kms:*","Resource":"*",
            "Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/app-*"}}},
           {"Effect":"Deny","Action":"kms:*","Resource":"*",
            "Condition":{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/app-evil"}}}"#,
    );
    let s = iam(&[]);
    let arn = |a: &str| p.evaluate(&on(&s, "kms:Decrypt", "*", &[("aws:PrincipalArn", &[a])]));
    assert_eq!(
        arn("arn:aws:iam::111122223333:role/app-web"),
        Decision::Allow
    );
    assert_eq!(
        arn("arn:aws:iam::111122223333:role/app-evil"),
        Decision::Deny
    );
    // Each of the six parts is matched on its own: a user is no role, and
    // something that is not an ARN matches no ARN pattern.
    assert_eq!(
        arn("arn:aws:iam::111122223333:user/app-web"),
        Decision::NotApplicable
    );
    assert_eq!(arn("app-web"), Decision::NotApplicable);
    // Absent key: ArnLike fails, ArnNotLike holds, IfExists holds.
    assert_eq!(
        p.evaluate(&on(&s, "kms:Decrypt", "*", &[])),
        Decision::NotApplicable
    );
    let n = identity(
        r#"{"Effect":"Deny","Action":"kms:*","Resource":"*",
            "Condition":{"ArnNotLike":{"aws:SourceArn":"arn:aws:ecs:*:111122223333:*"}}},
           {"Effect":"Allow","Action":"kms:*","Resource":"*",
            "Condition":{"ArnNotEqualsIfExists":{"aws:SourceArn":"arn:aws:ecs:us-east-1:111122223333:cluster/x"}}}"#,
    );
    assert_eq!(n.evaluate(&on(&s, "kms:Decrypt", "*", &[])), Decision::Deny);
    let src: &[(&str, &[&str])] = &[(
        "aws:SourceArn",
        &["arn:aws:ecs:us-east-1:111122223333:cluster/y"],
    )];
    assert_eq!(
        n.evaluate(&on(&s, "kms:Decrypt", "*", src)),
        Decision::Allow
    );
    let x: &[(&str, &[&str])] = &[(
        "aws:SourceArn",
        &["arn:aws:ecs:us-east-1:111122223333:cluster/x"],
    )];
    assert_eq!(
        n.evaluate(&on(&s, "kms:Decrypt", "*", x)),
        Decision::NotApplicable
    );
}

#[test]
fn numeric_operators() {
    let s = iam(&[]);
    let check = |op: &str, policy_value: &str, request: &str| -> bool {
        let p = identity(&format!(
            r#"{{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{{"{op}":{{"kms:NumberOfBytes":"{policy_value}"}}}}}}"#
        ));
        let v = [request];
        let keys: &[(&str, &[&str])] = &[("kms:NumberOfBytes", &v)];
        p.evaluate(&on(&s, "kms:GenerateRandom", "*", keys)) == Decision::Allow
    };
    assert!(check("NumericEquals", "64", "64"));
    assert!(check("NumericEquals", "64", "64.0"));
    assert!(!check("NumericEquals", "64", "32"));
    assert!(check("NumericNotEquals", "64", "32"));
    assert!(!check("NumericNotEquals", "64", "64"));
    assert!(check("NumericLessThan", "64", "32"));
    assert!(!check("NumericLessThan", "64", "64"));
    assert!(check("NumericLessThanEquals", "64", "64"));
    assert!(!check("NumericLessThanEquals", "64", "65"));
    assert!(check("NumericGreaterThan", "64", "65"));
    assert!(!check("NumericGreaterThan", "64", "64"));
    assert!(check("NumericGreaterThanEquals", "64", "64"));
    assert!(!check("NumericGreaterThanEquals", "64", "-1"));
    // A request value that is no number matches no comparison.
    assert!(!check("NumericLessThan", "64", "many"));
    // Absent: fails unless IfExists.
    let p = identity(
        r#"{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"NumericLessThanIfExists":{"kms:NumberOfBytes":"64"}}}"#,
    );
    assert_eq!(
        p.evaluate(&on(&s, "kms:Decrypt", "*", &[])),
        Decision::Allow
    );
}

#[test]
fn date_operators() {
    let s = iam(&[]);
    let check = |op: &str, policy_value: &str, key: &str, request: &str| -> bool {
        let p = identity(&format!(
            r#"{{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{{"{op}":{{"{key}":"{policy_value}"}}}}}}"#
        ));
        let v = [request];
        let keys: &[(&str, &[&str])] = &[(key, &v)];
        p.evaluate(&on(&s, "kms:Decrypt", "*", keys)) == Decision::Allow
    };
    let now = "2024-06-01T12:00:00Z";
    assert!(check(
        "DateLessThan",
        "2025-01-01T00:00:00Z",
        "aws:CurrentTime",
        now
    ));
    assert!(!check(
        "DateLessThan",
        "2024-01-01T00:00:00Z",
        "aws:CurrentTime",
        now
    ));
    assert!(check(
        "DateGreaterThan",
        "2024-01-01",
        "aws:CurrentTime",
        now
    ));
    assert!(!check(
        "DateGreaterThan",
        "2024-07-01",
        "aws:CurrentTime",
        now
    ));
    assert!(check(
        "DateEquals",
        "2024-06-01T14:00:00+02:00",
        "aws:CurrentTime",
        now
    ));
    assert!(check(
        "DateNotEquals",
        "2024-06-01T12:00:01Z",
        "aws:CurrentTime",
        now
    ));
    assert!(check("DateLessThanEquals", now, "aws:CurrentTime", now));
    assert!(check("DateGreaterThanEquals", now, "aws:CurrentTime", now));
    // Epoch seconds on either side (aws:EpochTime).
    assert!(check(
        "DateLessThan",
        "2024-06-01T12:00:01Z",
        "aws:EpochTime",
        "1717243200"
    ));
    assert!(!check(
        "DateLessThan",
        "1717243200",
        "aws:EpochTime",
        "1717243200"
    ));
}

#[test]
fn policy_variables_in_resources_and_conditions() {
    let p = identity(
        r#"{"Effect":"Allow","Action":"secretsmanager:GetSecretValue",
            "Resource":"arn:aws:secretsmanager:*:111122223333:secret:home/${aws:username}/*"},
           {"Effect":"Allow","Action":"kms:Decrypt","Resource":"*",
            "Condition":{"StringEquals":{"kms:EncryptionContext:owner":"${aws:username}"}}}"#,
    );
    let s = iam(&[]);
    let bob: &[(&str, &[&str])] = &[("aws:username", &["bob"])];
    let own = "arn:aws:secretsmanager:us-east-1:111122223333:secret:home/bob/db";
    let other = "arn:aws:secretsmanager:us-east-1:111122223333:secret:home/alice/db";
    assert_eq!(
        p.evaluate(&on(&s, "secretsmanager:GetSecretValue", own, bob)),
        Decision::Allow
    );
    assert_eq!(
        p.evaluate(&on(&s, "secretsmanager:GetSecretValue", other, bob)),
        Decision::NotApplicable
    );
    // No value for the variable: the element matches nothing.
    assert_eq!(
        p.evaluate(&on(&s, "secretsmanager:GetSecretValue", own, &[])),
        Decision::NotApplicable
    );
    // A user name is matched literally, not as a wildcard.
    let star: &[(&str, &[&str])] = &[("aws:username", &["*"])];
    assert_eq!(
        p.evaluate(&on(&s, "secretsmanager:GetSecretValue", own, star)),
        Decision::NotApplicable
    );
    let ctx: &[(&str, &[&str])] = &[
        ("aws:username", &["bob"]),
        ("kms:EncryptionContext:owner", &["bob"]),
    ];
    assert_eq!(
        p.evaluate(&on(&s, "kms:Decrypt", KEY, ctx)),
        Decision::Allow
    );
    // 2008-10-17 documents take `${...}` literally.
    let old = Policy::parse_identity(
        r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"a/${aws:username}"}]}"#,
    )
    .unwrap();
    assert_eq!(
        old.evaluate(&on(&s, "s3:GetObject", "a/${aws:username}", bob)),
        Decision::Allow
    );
    // Defaults and escapes.
    let d = identity(
        r#"{"Effect":"Allow","Action":"s3:*","Resource":"a/${aws:username, 'nobody'}/${*}"}"#,
    );
    assert_eq!(
        d.evaluate(&on(&s, "s3:GetObject", "a/nobody/*", &[])),
        Decision::Allow
    );
    assert_eq!(
        d.evaluate(&on(&s, "s3:GetObject", "a/nobody/x", &[])),
        Decision::NotApplicable
    );
}

#[test]
fn the_account_principal_delegates_allows_but_its_denies_bind() {
    let p = Policy::parse(&format!(
        r#"{{"Statement":[
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:role/app"}},"Action":"kms:Decrypt","Resource":"*"}},
            {{"Effect":"Deny","Principal":{{"AWS":"{ACCOUNT}"}},"Action":"kms:ScheduleKeyDeletion","Resource":"*"}}
        ]}}"#
    ))
    .unwrap();
    let bob = iam(&["arn:aws:iam::111122223333:user/bob"]);
    let e = p.evaluate_detail(&facts(&bob, "kms:Encrypt", &[]));
    assert_eq!(
        e,
        Evaluation {
            decision: Decision::NotApplicable,
            account_allow: true
        }
    );
    assert_eq!(
        p.evaluate(&facts(&bob, "kms:ScheduleKeyDeletion", &[])),
        Decision::Deny
    );
    // A session of role `app` is named by the role's ARN.
    let session = iam(&[
        "arn:aws:sts::111122223333:assumed-role/app/task-1",
        "arn:aws:iam::111122223333:role/app",
    ]);
    let e = p.evaluate_detail(&facts(&session, "kms:Decrypt", &[]));
    assert_eq!(e.decision, Decision::Allow);
    // The administrator is the account itself: a direct match.
    let e = p.evaluate_detail(&facts(&admin(ACCOUNT), "kms:Encrypt", &[]));
    assert_eq!(
        e,
        Evaluation {
            decision: Decision::Allow,
            account_allow: false
        }
    );
    assert_eq!(
        p.evaluate(&facts(&admin(ACCOUNT), "kms:ScheduleKeyDeletion", &[])),
        Decision::Deny
    );
    // Another account's users are not delegated to.
    let eve = Subject::Iam {
        account: "999999999999".into(),
        arns: vec!["arn:aws:iam::999999999999:user/eve".into()],
    };
    assert_eq!(
        p.evaluate_detail(&facts(&eve, "kms:Encrypt", &[])),
        Evaluation {
            decision: Decision::NotApplicable,
            account_allow: false
        }
    );
    assert!(p.has_deny());
    assert!(!fargate_policy().has_deny());
}

#[test]
fn unknown_resource_is_strict_both_ways() {
    let s = iam(&[]);
    let p = identity(
        r#"{"Effect":"Allow","Action":"ecs:Describe*","Resource":"*"},
           {"Effect":"Allow","Action":"ecs:RunTask","Resource":"arn:aws:ecs:*:*:task-definition/web:*"},
           {"Effect":"Deny","Action":"ecs:DescribeTasks","Resource":"arn:aws:ecs:*:*:task/prod/*"},
           {"Effect":"Allow","Action":"ecs:StopTask","NotResource":"arn:aws:ecs:*:*:task/prod/*"},
           {"Effect":"Deny","Action":"ecs:ListTasks","NotResource":"*"}"#,
    );
    let u = |a| p.evaluate_unknown_resource(&facts(&s, a, &[]));
    assert_eq!(u("ecs:DescribeClusters"), Decision::Allow);
    // A resource-scoped Allow is not used, a resource-scoped Deny is.
    assert_eq!(u("ecs:RunTask"), Decision::NotApplicable);
    assert_eq!(u("ecs:DescribeTasks"), Decision::Deny);
    assert_eq!(u("ecs:StopTask"), Decision::NotApplicable);
    // A Deny on NotResource "*" applies to nothing.
    assert_eq!(u("ecs:ListTasks"), Decision::NotApplicable);
    // With the resource known, the ordinary rules apply.
    assert_eq!(
        p.evaluate(&on(
            &s,
            "ecs:DescribeTasks",
            "arn:aws:ecs:us-east-1:111122223333:task/dev/1",
            &[]
        )),
        Decision::Allow
    );
}

#[test]
fn trust_policies() {
    let p = Policy::parse_trust(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
    )
    .unwrap();
    let ecs = service(ACCOUNT, "ecs-tasks.amazonaws.com");
    assert_eq!(
        p.evaluate(&on(
            &ecs,
            "sts:AssumeRole",
            "arn:aws:iam::111122223333:role/app",
            &[]
        )),
        Decision::Allow
    );
    assert_eq!(
        p.evaluate(&on(
            &service(ACCOUNT, "lambda.amazonaws.com"),
            "sts:AssumeRole",
            "arn:aws:iam::111122223333:role/app",
            &[]
        )),
        Decision::NotApplicable
    );
}

proptest::proptest! {
    #[test]
    fn conditions_never_panic(op in "(String|Arn|Numeric|Date)[A-Za-z]{0,20}", v in "\\PC{0,30}", r in "\\PC{0,30}") {
        let doc = serde_json::json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*",
            "Condition": {op: {"k": v}}}]}).to_string();
        if let Ok(p) = Policy::parse_identity(&doc) {
            let s = iam(&[]);
            let keys: &[(&str, &[&str])] = &[("k", &[r.as_str()])];
            let _ = p.evaluate(&facts(&s, "x:Y", keys));
        }
    }

    #[test]
    fn variables_never_panic(res in "\\PC{0,60}", name in "\\PC{0,20}") {
        let doc = serde_json::json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource": res}]}).to_string();
        if let Ok(p) = Policy::parse_identity(&doc) {
            let s = iam(&[]);
            let keys: &[(&str, &[&str])] = &[("aws:username", &[name.as_str()])];
            let _ = p.evaluate(&facts(&s, "x:Y", keys));
            let _ = p.evaluate_unknown_resource(&facts(&s, "x:Y", keys));
        }
    }
}
