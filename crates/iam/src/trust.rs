//! Trust policies (a role's `AssumeRolePolicyDocument`) and the decision
//! whether a principal may assume the role.
//!
//! The grammar is `ferry_policy`'s trust grammar ([`Policy::parse_trust`]:
//! principals, no `Resource`), plus IAM's rule that a trust policy names
//! only STS actions. The decision is `ferry_proto::authz`'s for policies a
//! resource must itself grant through
//! ([`authz::authorize_required_policy`]), which are AWS's rules for
//! principals of the role's own account:
//! - an explicit `Deny` that applies (to the caller, or to the whole
//!   account through the account-root principal) refuses, as does an
//!   explicit `Deny` of `sts:AssumeRole` in the caller's identity policies;
//! - a statement naming the caller itself (its user ARN, its session's role
//!   ARN, or `*`) allows;
//! - a statement naming the account (`arn:aws:iam::ACCOUNT:root` or the
//!   bare account id) delegates to the account: the caller's identity
//!   policies must allow `sts:AssumeRole` on the role. The statement names
//!   ferry's administrator directly (it is the account root), where AWS
//!   refuses the root user any AssumeRole; ferry's administrator is the
//!   bootstrap identity that creates and tries out roles.
//! - service principals (`ecs-tasks.amazonaws.com`) are allowed only by a
//!   statement naming the service.

use ferry_policy::Policy;
use ferry_proto::authz::{self, Check};
use ferry_proto::{AwsError, Caller};
use serde_json::Value;

use crate::error::malformed_policy;

/// The action of AssumeRole.
pub const ASSUME_ROLE: &str = "sts:AssumeRole";

/// Parses and checks a trust policy.
pub fn parse(text: &str) -> Result<Policy, AwsError> {
    let policy = Policy::parse_trust(text).map_err(|e| malformed_policy(e.0))?;
    // It parsed, so it is an object whose statements are objects.
    let doc: Value = serde_json::from_str(text).map_err(|e| malformed_policy(e.to_string()))?;
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o) => vec![o],
        None => Vec::new(),
    };
    for s in statements {
        let sts_only = match s.get("Action") {
            Some(Value::String(a)) => is_sts(a),
            Some(Value::Array(a)) => a.iter().all(|a| a.as_str().is_some_and(is_sts)),
            _ => false,
        };
        if !sts_only {
            return Err(malformed_policy(
                "AssumeRole policy may only specify STS AssumeRole actions.",
            ));
        }
    }
    Ok(policy)
}

fn is_sts(action: &str) -> bool {
    action
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("sts:"))
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

/// Decides whether `caller` may assume the role with trust policy `trust`.
/// `check` is `sts:AssumeRole` on the role's ARN with the request's keys
/// (`sts:ExternalId`, `sts:RoleSessionName`, ...).
pub fn may_assume(trust: &Policy, caller: &Caller, check: &Check<'_>) -> Result<(), Refused> {
    authz::authorize_required_policy(caller, check, trust).map_err(|_| Refused {
        principal: caller.arn(),
        role_arn: check.resource.to_owned(),
    })
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
    authz::authorize_required_policy(&caller, &check, trust).map_err(|_| Refused {
        principal: service.to_owned(),
        role_arn: role_arn.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_proto::{IdentityPolicies, Principal};

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
        assert_eq!(e.code, "MalformedPolicyDocument");
        assert!(
            e.message.starts_with("Has prohibited field Resource"),
            "{}",
            e.message
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
