//! Trust policies (a role's `AssumeRolePolicyDocument`) and the decision
//! whether a principal may assume the role.
//!
//! A trust policy is a resource policy on the role whose statements have no
//! `Resource` (the role is the resource) and only STS actions. The decision
//! follows AWS's rules for principals of the role's own account:
//! - an explicit `Deny` that applies (to the caller, or to the whole
//!   account through the account-root principal) refuses, as does an
//!   explicit `Deny` of `sts:AssumeRole` in the caller's identity policies;
//! - a statement naming the caller itself (its user ARN, its session's role
//!   ARN, or `*`) allows;
//! - a statement naming the account (`arn:aws:iam::ACCOUNT:root` or the
//!   bare account id) delegates to the account: the caller's identity
//!   policies must allow `sts:AssumeRole` on the role. ferry's administrator
//!   passes that test (it is allowed what no policy denies), where AWS
//!   refuses the root user any AssumeRole; ferry's administrator is the
//!   bootstrap identity that creates and tries out roles.
//! - service principals (`ecs-tasks.amazonaws.com`) are allowed only by a
//!   statement naming the service.

use ferry_policy::{Decision, Facts, Policy, Subject};
use ferry_proto::authz::{self, Check};
use ferry_proto::{AwsError, Caller, Principal};
use serde_json::Value;

use crate::error::malformed_policy;

/// The action of AssumeRole.
pub const ASSUME_ROLE: &str = "sts:AssumeRole";

/// Parses and checks a trust policy.
pub fn parse(text: &str) -> Result<Policy, AwsError> {
    let mut doc: Value =
        serde_json::from_str(text).map_err(|_| malformed_policy("Syntax errors in policy."))?;
    let statements: Vec<&mut Value> = match doc.get_mut("Statement") {
        Some(Value::Array(a)) => a.iter_mut().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => return Err(malformed_policy("Syntax errors in policy.")),
    };
    for s in statements {
        let Some(o) = s.as_object_mut() else {
            return Err(malformed_policy("Syntax errors in policy."));
        };
        for field in ["Resource", "NotResource"] {
            if o.contains_key(field) {
                return Err(malformed_policy(format!("Has prohibited field {field}")));
            }
        }
        if o.contains_key("NotAction") {
            return Err(malformed_policy(
                "AssumeRole policy may only specify STS AssumeRole actions.",
            ));
        }
        let actions: Vec<&str> = match o.get("Action") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if actions.is_empty()
            || actions
                .iter()
                .any(|a| !a.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("sts:")))
        {
            return Err(malformed_policy(
                "AssumeRole policy may only specify STS AssumeRole actions.",
            ));
        }
        o.insert("Resource".into(), Value::String("*".into()));
    }
    let text = serde_json::to_string(&doc).map_err(|e| malformed_policy(e.to_string()))?;
    Policy::parse(&text).map_err(|e| malformed_policy(e.0))
}

/// Why a principal may not assume a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The principal, as AWS names it in the message.
    pub principal: String,
    /// The role.
    pub role_arn: String,
}

impl Refused {
    /// `AccessDenied` in STS's words.
    pub fn into_error(self) -> AwsError {
        crate::error::access_denied(format!(
            "User: {} is not authorized to perform: {ASSUME_ROLE} on resource: {}",
            self.principal, self.role_arn
        ))
    }
}

fn facts<'a>(subject: &'a Subject, caller: &Caller, check: &'a Check<'a>) -> Facts<'a> {
    let mut keys = authz::caller_keys(caller);
    keys.extend(check.keys.iter().map(|(k, v)| (k.clone(), v.clone())));
    Facts {
        subject,
        action: check.action,
        resource: check.resource,
        keys,
    }
}

/// Decides whether `caller` may assume the role with trust policy `trust`.
/// `check` is `sts:AssumeRole` on the role's ARN with the request's keys
/// (`sts:ExternalId`, `sts:RoleSessionName`, ...).
pub fn may_assume(trust: &Policy, caller: &Caller, check: &Check<'_>) -> Result<(), Refused> {
    let refused = || Refused {
        principal: caller.arn(),
        role_arn: check.resource.to_owned(),
    };
    let identity = authz::identity_decision(caller, check);
    let me = caller.subject();
    let direct = trust.evaluate(&facts(&me, caller, check));
    let account = Subject::Root {
        account: caller.account.clone(),
    };
    let via_account = trust.evaluate(&facts(&account, caller, check));
    if [identity, direct, via_account].contains(&Decision::Deny) {
        return Err(refused());
    }
    if direct == Decision::Allow {
        return Ok(());
    }
    let identity_allows =
        identity == Decision::Allow || caller.principal == Principal::AccountAdmin;
    if via_account == Decision::Allow && identity_allows {
        return Ok(());
    }
    Err(refused())
}

/// Decides whether AWS service `service` (e.g. `ecs-tasks.amazonaws.com`)
/// may assume the role: a statement must name the service. As AWS services
/// do, the request carries `aws:SourceAccount` (the account) and
/// `aws:SourceArn` (the resource the session is for, e.g. the task ARN),
/// the keys of the confused-deputy conditions AWS recommends.
pub fn service_may_assume(
    trust: &Policy,
    account: &str,
    service: &str,
    role_arn: &str,
    source_arn: &str,
) -> Result<(), Refused> {
    let caller = Caller::service(account, service);
    let check = Check::new(ASSUME_ROLE, role_arn)
        .key("aws:SourceAccount", vec![account.to_owned()])
        .key("aws:SourceArn", vec![source_arn.to_owned()]);
    let subject = caller.subject();
    match trust.evaluate(&facts(&subject, &caller, &check)) {
        Decision::Allow => Ok(()),
        _ => Err(Refused {
            principal: service.to_owned(),
            role_arn: role_arn.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_proto::IdentityPolicies;

    use super::*;

    const ACC: &str = "111122223333";
    const ROLE: &str = "arn:aws:iam::111122223333:role/r";

    fn trust(principal: &str) -> Policy {
        parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":"sts:AssumeRole"}}]}}"#
        ))
        .unwrap()
    }

    fn user(name: &str, policies: &[&str]) -> Caller {
        Caller {
            account: ACC.into(),
            principal: Principal::Iam(format!("arn:aws:iam::{ACC}:user/{name}")),
            access_key_id: None,
            policies: Some(Arc::new(IdentityPolicies {
                policies: policies
                    .iter()
                    .map(|p| Policy::parse_identity(p).unwrap())
                    .collect(),
            })),
        }
    }

    const ALLOW_ASSUME: &str =
        r#"{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#;
    const DENY_ASSUME: &str =
        r#"{"Statement":[{"Effect":"Deny","Action":"sts:*","Resource":"*"}]}"#;

    #[test]
    fn trust_documents_are_checked() {
        assert!(
            parse(r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
                .is_ok()
        );
        let e = parse(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Resource":"*"}]}"#).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("MalformedPolicyDocument", "Has prohibited field Resource")
        );
        let e =
            parse(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}]}"#)
                .unwrap_err();
        assert!(e.message.contains("STS"), "{}", e.message);
        assert!(parse(r#"{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}"#).is_err());
        assert!(parse("nope").is_err());
    }

    #[test]
    fn named_callers_need_no_identity_policy_account_delegation_does() {
        let check = Check::new(ASSUME_ROLE, ROLE);
        let named = trust(&format!(r#"{{"AWS":"arn:aws:iam::{ACC}:user/bob"}}"#));
        assert!(may_assume(&named, &user("bob", &[]), &check).is_ok());
        assert!(may_assume(&named, &user("eve", &[ALLOW_ASSUME]), &check).is_err());
        // An explicit deny in the caller's own policies wins.
        assert!(may_assume(&named, &user("bob", &[DENY_ASSUME]), &check).is_err());

        let account = trust(&format!(r#"{{"AWS":"arn:aws:iam::{ACC}:root"}}"#));
        assert!(may_assume(&account, &user("bob", &[]), &check).is_err());
        assert!(may_assume(&account, &user("bob", &[ALLOW_ASSUME]), &check).is_ok());
        assert!(may_assume(&account, &Caller::admin(ACC), &check).is_ok());
        let bare = trust(&format!(r#"{{"AWS":"{ACC}"}}"#));
        assert!(may_assume(&bare, &user("bob", &[ALLOW_ASSUME]), &check).is_ok());

        // A deny naming the account binds everyone in it, the administrator too.
        let deny = parse(&format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACC}:user/bob"}},"Action":"sts:AssumeRole"}},{{"Effect":"Deny","Principal":{{"AWS":"arn:aws:iam::{ACC}:root"}},"Action":"sts:AssumeRole"}}]}}"#
        ))
        .unwrap();
        assert!(may_assume(&deny, &user("bob", &[]), &check).is_err());
        assert!(may_assume(&deny, &Caller::admin(ACC), &check).is_err());

        let service = trust(r#"{"Service":"ecs-tasks.amazonaws.com"}"#);
        assert!(may_assume(&service, &Caller::admin(ACC), &check).is_err());
        let e = may_assume(&named, &user("eve", &[]), &check)
            .unwrap_err()
            .into_error();
        assert_eq!(e.status, 403);
        assert_eq!(
            e.message,
            format!(
                "User: arn:aws:iam::{ACC}:user/eve is not authorized to perform: sts:AssumeRole on resource: {ROLE}"
            )
        );
    }

    #[test]
    fn services_need_a_statement_naming_them() {
        let t = trust(r#"{"Service":"ecs-tasks.amazonaws.com"}"#);
        let task = format!("arn:aws:ecs:us-east-1:{ACC}:task/default/abc");
        let ecs = "ecs-tasks.amazonaws.com";
        assert!(service_may_assume(&t, ACC, ecs, ROLE, &task).is_ok());
        assert!(service_may_assume(&t, ACC, "lambda.amazonaws.com", ROLE, &task).is_err());
        let account = trust(&format!(r#"{{"AWS":"arn:aws:iam::{ACC}:root"}}"#));
        assert!(service_may_assume(&account, ACC, ecs, ROLE, &task).is_err());
        let cond = |acct: &str| {
            parse(&format!(
                r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"Service":"{ecs}"}},"Action":"sts:AssumeRole","Condition":{{"StringEquals":{{"aws:SourceAccount":"{acct}"}},"StringLike":{{"aws:SourceArn":"arn:aws:ecs:*:{acct}:*"}}}}}}]}}"#
            ))
            .unwrap()
        };
        assert!(service_may_assume(&cond("999999999999"), ACC, ecs, ROLE, &task).is_err());
        assert!(service_may_assume(&cond(ACC), ACC, ecs, ROLE, &task).is_ok());
    }
}
