//! Parameter Store unit tests, over a real KMS on a temporary store.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use ferry_policy::Policy;
use ferry_proto::{AwsError, Caller, IdentityPolicies, JsonService, Principal, RequestContext};
use serde_json::{Value, json};

use super::{ParameterType, Ssm};
use crate::testkit::{ACCOUNT, Kit, REGION, admin, contains};

struct T {
    kit: Kit,
    ssm: Ssm,
}

impl T {
    fn new() -> Self {
        let kit = Kit::new();
        let ssm = Ssm::new(kit.store.clone(), kit.kms.clone());
        Self { kit, ssm }
    }

    fn call_as(&self, ctx: &RequestContext, op: &str, body: Value) -> Result<Value, AwsError> {
        self.ssm.call(ctx, op, body.to_string().as_bytes())
    }

    fn ok(&self, op: &str, body: Value) -> Value {
        self.call_as(&admin(), op, body)
            .unwrap_or_else(|e| panic!("{op}: {}: {}", e.code, e.message))
    }

    fn err(&self, op: &str, body: Value) -> AwsError {
        match self.call_as(&admin(), op, body) {
            Ok(v) => panic!("{op} succeeded: {v}"),
            Err(e) => e,
        }
    }

    fn names(&self, op: &str, body: Value) -> Vec<String> {
        self.ok(op, body)["Parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["Name"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[test]
fn put_get_versions_and_history() {
    let t = T::new();
    let r = t.ok(
        "PutParameter",
        json!({"Name": "/app/url", "Value": "http://a", "Type": "String", "Description": "d"}),
    );
    assert_eq!(r, json!({"Version": 1, "Tier": "Standard"}));
    let e = t.err(
        "PutParameter",
        json!({"Name": "/app/url", "Value": "http://b", "Type": "String"}),
    );
    assert_eq!(e.code, "ParameterAlreadyExists");
    let r = t.ok(
        "PutParameter",
        json!({"Name": "/app/url", "Value": "http://b", "Overwrite": true}),
    );
    assert_eq!(r["Version"], 2);
    let p = &t.ok("GetParameter", json!({"Name": "/app/url"}))["Parameter"];
    assert_eq!(p["Value"], "http://b");
    assert_eq!(p["Version"], 2);
    assert_eq!(p["Type"], "String");
    assert_eq!(
        p["ARN"],
        format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/url")
    );
    assert_eq!(p["DataType"], "text");
    let p = &t.ok("GetParameter", json!({"Name": "/app/url:1"}))["Parameter"];
    assert_eq!(p["Value"], "http://a");
    assert_eq!(p["Selector"], ":1");
    assert_eq!(p["Name"], "/app/url");
    let arn = format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/url");
    assert_eq!(
        t.ok("GetParameter", json!({"Name": arn}))["Parameter"]["Value"],
        "http://b"
    );
    let e = t.err("GetParameter", json!({"Name": "/app/url:7"}));
    assert_eq!(e.code, "ParameterVersionNotFound");
    assert_eq!(
        t.err("GetParameter", json!({"Name": "/nope"})).code,
        "ParameterNotFound"
    );

    let h = t.ok("GetParameterHistory", json!({"Name": "/app/url"}));
    let h = h["Parameters"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["Value"], "http://a");
    assert_eq!(h[0]["Description"], "d");
    // The description carries over an overwrite that does not set one.
    assert_eq!(h[1]["Description"], "d");
    assert_eq!(
        h[1]["LastModifiedUser"],
        format!("arn:aws:iam::{ACCOUNT}:root")
    );
    let paged = t.ok(
        "GetParameterHistory",
        json!({"Name": "/app/url", "MaxResults": 1}),
    );
    assert_eq!(paged["Parameters"].as_array().unwrap().len(), 1);
    assert!(paged["NextToken"].is_string());

    // A name without a path has its ARN without a double slash.
    t.ok(
        "PutParameter",
        json!({"Name": "flat", "Value": "a,b,c", "Type": "StringList"}),
    );
    let p = &t.ok("GetParameter", json!({"Name": "flat"}))["Parameter"];
    assert_eq!(
        p["ARN"],
        format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/flat")
    );
    assert_eq!(p["Type"], "StringList");
    assert_eq!(
        t.ok(
            "GetParameter",
            json!({"Name": format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/flat")})
        )["Parameter"]["Value"],
        "a,b,c"
    );
}

#[test]
fn validation() {
    let t = T::new();
    let e = t.err("PutParameter", json!({"Name": "/x", "Value": "v"}));
    assert_eq!(
        e.message,
        "A parameter type is required when you create a parameter."
    );
    for name in ["/aws/x", "a/b", "bad name", "/a//b"] {
        assert_eq!(
            t.err(
                "PutParameter",
                json!({"Name": name, "Value": "v", "Type": "String"})
            )
            .code,
            "ValidationException",
            "{name}"
        );
    }
    let e = t.err(
        "PutParameter",
        json!({"Name": "/x", "Value": "v", "Type": "String", "KeyId": "alias/aws/ssm"}),
    );
    assert_eq!(e.code, "ValidationException");
    let e = t.err(
        "PutParameter",
        json!({"Name": "/x", "Value": "v", "Type": "Number"}),
    );
    assert_eq!(e.code, "ValidationException");
    let big = "x".repeat(4097);
    let e = t.err(
        "PutParameter",
        json!({"Name": "/x", "Value": big, "Type": "String"}),
    );
    assert!(
        e.message.starts_with("Standard tier parameters"),
        "{}",
        e.message
    );
    let r = t.ok(
        "PutParameter",
        json!({"Name": "/x", "Value": big, "Type": "String", "Tier": "Advanced"}),
    );
    assert_eq!(r["Tier"], "Advanced");
    let e = t.err(
        "PutParameter",
        json!({"Name": "/y", "Value": "v", "Type": "String", "Overwrite": true,
               "Tags": [{"Key": "a", "Value": "b"}]}),
    );
    assert!(
        e.message
            .starts_with("tags and overwrite can't be used together")
    );
    let e = t.err(
        "PutParameter",
        json!({"Name": "/p", "Value": "abc", "Type": "String", "AllowedPattern": "^\\d+$"}),
    );
    assert_eq!(e.code, "ParameterPatternMismatchException");
    t.ok(
        "PutParameter",
        json!({"Name": "/p", "Value": "123", "Type": "String", "AllowedPattern": "^\\d+$"}),
    );
    // An overwrite is held to the pattern the parameter has.
    let e = t.err(
        "PutParameter",
        json!({"Name": "/p", "Value": "abc", "Overwrite": true}),
    );
    assert_eq!(e.code, "ParameterPatternMismatchException");
    t.ok(
        "PutParameter",
        json!({"Name": "/p", "Value": "456", "Overwrite": true}),
    );
    let e = t.err("GetParametersByPath", json!({"Path": "nope"}));
    assert_eq!(e.code, "ValidationException");
    let e = t.err(
        "DescribeParameters",
        json!({"Filters": [{"Key": "Name", "Values": ["a"]}],
               "ParameterFilters": [{"Key": "Name", "Values": ["a"]}]}),
    );
    assert_eq!(
        e.message,
        "You can use either Filters or ParameterFilters in a single request."
    );
    assert_eq!(
        t.err(
            "GetParametersByPath",
            json!({"Path": "/", "ParameterFilters": [{"Key": "Name", "Values": ["a"]}]})
        )
        .code,
        "InvalidFilterKey"
    );
    assert_eq!(
        t.err(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Name", "Option": "Fuzzy", "Values": ["a"]}]})
        )
        .code,
        "InvalidFilterOption"
    );
}

#[test]
fn secure_strings_are_sealed_and_opened_as_the_caller() {
    let t = T::new();
    let marker = "MARKER-ssm-5c1e9b7a-securestring";
    t.ok(
        "PutParameter",
        json!({"Name": "/app/db/password", "Value": marker, "Type": "SecureString"}),
    );
    let p = &t.ok("GetParameter", json!({"Name": "/app/db/password"}))["Parameter"];
    let sealed = p["Value"].as_str().unwrap();
    assert_ne!(sealed, marker);
    let raw = crate::util::unb64("Value", sealed).unwrap();
    assert!(raw.starts_with(crate::seal::MAGIC));
    let p = &t.ok(
        "GetParameter",
        json!({"Name": "/app/db/password", "WithDecryption": true}),
    )["Parameter"];
    assert_eq!(p["Value"], marker);
    let d = t.ok("DescribeParameters", json!({}));
    assert_eq!(d["Parameters"][0]["KeyId"], "alias/aws/ssm");
    assert_eq!(d["Parameters"][0]["Type"], "SecureString");

    let v = t
        .ssm
        .get_parameter(&admin(), "/app/db/password", true)
        .unwrap();
    assert_eq!(v.value.as_str(), marker);
    assert_eq!(v.kind, ParameterType::SecureString);
    assert_eq!(v.version, 1);
    assert!(!format!("{v:?}").contains(marker));

    assert!(!contains(&t.kit.store_bytes(), marker.as_bytes()));
    let lines = t.kit.audit_lines();
    let dec = lines.iter().find(|l| l["eventName"] == "Decrypt").unwrap();
    assert_eq!(
        dec["requestParameters"]["encryptionContext"]["PARAMETER_ARN"],
        format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/db/password")
    );
    assert_eq!(dec["sourceIPAddress"], "ssm.amazonaws.com");
    // The AWS managed key exists with its alias now.
    let k = t
        .kit
        .kms
        .call(&admin(), "DescribeKey", br#"{"KeyId":"alias/aws/ssm"}"#)
        .unwrap();
    assert_eq!(k["KeyMetadata"]["KeyManager"], "AWS");

    // A customer key; the overwrite keeps it, history decrypts.
    let key = t.kit.kms.call(&admin(), "CreateKey", b"{}").unwrap();
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    t.ok(
        "PutParameter",
        json!({"Name": "/c", "Value": "one", "Type": "SecureString", "KeyId": key_id}),
    );
    t.ok(
        "PutParameter",
        json!({"Name": "/c", "Value": "two", "Overwrite": true}),
    );
    let h = t.ok(
        "GetParameterHistory",
        json!({"Name": "/c", "WithDecryption": true}),
    );
    assert_eq!(h["Parameters"][0]["Value"], "one");
    assert_eq!(h["Parameters"][1]["Value"], "two");
    assert_eq!(h["Parameters"][1]["KeyId"], key_id.as_str());

    // A user allowed to read the parameter, but not by the customer
    // key's policy: the KMS refuses the Decrypt.
    let reader = RequestContext::internal(
        Caller {
            account: ACCOUNT.into(),
            principal: Principal::Iam(format!("arn:aws:iam::{ACCOUNT}:user/r")),
            access_key_id: None,
            policies: Some(Arc::new(IdentityPolicies {
                policies: vec![
                    Policy::parse_identity(
                        r#"{"Statement":[{"Effect":"Allow","Action":"ssm:GetParameter*","Resource":"*"}]}"#,
                    )
                    .unwrap(),
                ],
            })),
        },
        REGION,
    );
    let e = t
        .call_as(
            &reader,
            "GetParameter",
            json!({"Name": "/c", "WithDecryption": true}),
        )
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    assert!(e.message.contains("AWSKMS"), "{}", e.message);
    // Without decryption it gets the sealed form; with the default key
    // (any principal of the account, through SSM) it may decrypt.
    assert!(
        t.call_as(&reader, "GetParameter", json!({"Name": "/c"}))
            .is_ok()
    );
    let p = t
        .call_as(
            &reader,
            "GetParameter",
            json!({"Name": "/app/db/password", "WithDecryption": true}),
        )
        .unwrap();
    assert_eq!(p["Parameter"]["Value"], marker);
    let e = t
        .call_as(&reader, "DeleteParameter", json!({"Name": "/c"}))
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");

    let e = t.err(
        "PutParameter",
        json!({"Name": "/k", "Value": "v", "Type": "SecureString",
               "KeyId": "alias/does-not-exist"}),
    );
    assert_eq!(e.code, "InvalidKeyId");
}

#[test]
fn paths_get_parameters_and_delete() {
    let t = T::new();
    for (n, v) in [
        ("/app/a", "1"),
        ("/app/b", "2"),
        ("/app/sub/c", "3"),
        ("/app/sub/deep/d", "4"),
        ("/other/e", "5"),
        ("/apple", "6"),
    ] {
        t.ok(
            "PutParameter",
            json!({"Name": n, "Value": v, "Type": "String"}),
        );
    }
    t.ok(
        "PutParameter",
        json!({"Name": "/app/s", "Value": "secret", "Type": "SecureString"}),
    );
    assert_eq!(
        t.names("GetParametersByPath", json!({"Path": "/app"})),
        vec!["/app/a", "/app/b", "/app/s"]
    );
    assert_eq!(
        t.names(
            "GetParametersByPath",
            json!({"Path": "/app/", "Recursive": true})
        ),
        vec![
            "/app/a",
            "/app/b",
            "/app/s",
            "/app/sub/c",
            "/app/sub/deep/d"
        ]
    );
    assert_eq!(
        t.names("GetParametersByPath", json!({"Path": "/"})),
        vec!["/apple"]
    );
    assert_eq!(
        t.names(
            "GetParametersByPath",
            json!({"Path": "/app", "Recursive": true,
                   "ParameterFilters": [{"Key": "Type", "Values": ["SecureString"]}]})
        ),
        vec!["/app/s"]
    );
    let r = t.ok(
        "GetParametersByPath",
        json!({"Path": "/app", "WithDecryption": true}),
    );
    assert_eq!(r["Parameters"][2]["Value"], "secret");
    // Pagination.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"Path": "/", "Recursive": true, "MaxResults": 2});
        if let Some(tk) = &token {
            body["NextToken"] = json!(tk);
        }
        let page = t.ok("GetParametersByPath", body);
        seen.extend(
            page["Parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["Name"].as_str().unwrap().to_owned()),
        );
        match page["NextToken"].as_str() {
            Some(tk) => token = Some(tk.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);

    let g = t.ok(
        "GetParameters",
        json!({"Names": ["/app/a", "/missing", "/app/s", "/app/a:1"], "WithDecryption": true}),
    );
    assert_eq!(g["InvalidParameters"], json!(["/missing"]));
    let ps = g["Parameters"].as_array().unwrap();
    assert_eq!(ps.len(), 3);
    assert_eq!(ps[1]["Value"], "secret");
    assert_eq!(ps[2]["Selector"], ":1");

    // DescribeParameters filters.
    assert_eq!(
        t.names(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Path", "Option": "Recursive", "Values": ["/app/sub"]}]})
        ),
        vec!["/app/sub/c", "/app/sub/deep/d"]
    );
    assert_eq!(
        t.names(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Name", "Option": "BeginsWith", "Values": ["/app/s"]}]})
        ),
        vec!["/app/s", "/app/sub/c", "/app/sub/deep/d"]
    );
    assert_eq!(
        t.names(
            "DescribeParameters",
            json!({"Filters": [{"Key": "Type", "Values": ["SecureString"]}]})
        ),
        vec!["/app/s"]
    );
    let d = t.ok("DescribeParameters", json!({"MaxResults": 5}));
    assert_eq!(d["Parameters"].as_array().unwrap().len(), 5);
    assert!(d["NextToken"].is_string());

    // Tags.
    t.ok(
        "AddTagsToResource",
        json!({"ResourceType": "Parameter", "ResourceId": "/app/a",
               "Tags": [{"Key": "team", "Value": "blue"}]}),
    );
    assert_eq!(
        t.names(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "tag:team", "Values": ["blue"]}]})
        ),
        vec!["/app/a"]
    );
    let l = t.ok(
        "ListTagsForResource",
        json!({"ResourceType": "Parameter", "ResourceId": "/app/a"}),
    );
    assert_eq!(l["TagList"], json!([{"Key": "team", "Value": "blue"}]));

    t.ok("DeleteParameter", json!({"Name": "/app/a"}));
    assert_eq!(
        t.err("DeleteParameter", json!({"Name": "/app/a"})).code,
        "ParameterNotFound"
    );
    assert_eq!(
        t.err("GetParameter", json!({"Name": "/app/a"})).code,
        "ParameterNotFound"
    );
    let d = t.ok(
        "DeleteParameters",
        json!({"Names": ["/app/b", "/nope", "/app/s"]}),
    );
    assert_eq!(d["DeletedParameters"], json!(["/app/b", "/app/s"]));
    assert_eq!(d["InvalidParameters"], json!(["/nope"]));
    // A re-created parameter starts again at version 1 (its history went).
    let r = t.ok(
        "PutParameter",
        json!({"Name": "/app/b", "Value": "new", "Type": "String"}),
    );
    assert_eq!(r["Version"], 1);
    let h = t.ok("GetParameterHistory", json!({"Name": "/app/b"}));
    assert_eq!(h["Parameters"].as_array().unwrap().len(), 1);
}
