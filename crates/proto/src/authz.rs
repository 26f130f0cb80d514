//! Authorization: how a caller's identity policies and a resource's policy
//! combine for one request, by AWS's evaluation logic for requests within
//! one account:
//!
//! 1. an explicit `Deny` in any applicable policy denies, whoever asks
//!    (the account administrator included);
//! 2. otherwise the administrator is allowed (it is the account root);
//! 3. otherwise an `Allow` in an identity policy or in the resource policy
//!    allows;
//! 4. otherwise the request is implicitly denied.
//!
//! Services that have resource policies with their own rules (the KMS:
//! key policies that must delegate to IAM, and grants) build on the same
//! [`Check`] and [`Denied`] so that every service answers alike.

use std::collections::BTreeMap;

use ferry_policy::{Decision, Facts, Policy};

use crate::{AwsError, Caller, Principal};

/// One authorization question: may the caller do `action` on `resource`?
#[derive(Debug, Clone)]
pub struct Check<'a> {
    /// The full action name, e.g. `secretsmanager:GetSecretValue`.
    pub action: &'a str,
    /// The resource ARN, or `*` for actions without one.
    pub resource: &'a str,
    /// Request-specific condition keys (lowercase names, see
    /// [`ferry_policy::norm_key`]); the caller's global keys
    /// (`aws:PrincipalArn`, `aws:PrincipalAccount`, ...) are added.
    pub keys: BTreeMap<String, Vec<String>>,
}

impl<'a> Check<'a> {
    /// A check without request-specific condition keys.
    pub fn new(action: &'a str, resource: &'a str) -> Self {
        Self {
            action,
            resource,
            keys: BTreeMap::new(),
        }
    }

    /// Adds a condition key (builder style).
    #[must_use]
    pub fn key(mut self, name: &str, values: Vec<String>) -> Self {
        self.keys.insert(ferry_policy::norm_key(name), values);
        self
    }
}

/// Where an explicit deny came from (AWS names it in the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenySource {
    /// A statement of one of the caller's identity policies.
    Identity,
    /// A statement of the resource's policy.
    Resource,
}

/// A refused request: who, what, on what, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The caller's ARN.
    pub principal: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// `Some` for an explicit deny, `None` when nothing allowed it.
    pub explicit: Option<DenySource>,
}

impl Denied {
    /// AWS's message: `User: ARN is not authorized to perform: ACTION on
    /// resource: RES because ...`.
    pub fn message(&self) -> String {
        let why = match self.explicit {
            Some(DenySource::Identity) => {
                "with an explicit deny in an identity-based policy".into()
            }
            Some(DenySource::Resource) => "with an explicit deny in a resource-based policy".into(),
            None => format!(
                "because no identity-based policy allows the {} action",
                self.action
            ),
        };
        format!(
            "User: {} is not authorized to perform: {} on resource: {} {why}",
            self.principal, self.action, self.resource
        )
    }

    /// The error in the AWS shape with the service's code
    /// (`AccessDeniedException` for JSON services, `AccessDenied` for the
    /// query protocol).
    pub fn into_error(self, code: &str) -> AwsError {
        AwsError::client(code, self.message())
    }
}

/// The global condition keys that describe the caller.
pub fn caller_keys(caller: &Caller) -> BTreeMap<String, Vec<String>> {
    let mut keys = BTreeMap::new();
    keys.insert("aws:principalaccount".into(), vec![caller.account.clone()]);
    let (arn, kind) = match &caller.principal {
        Principal::AccountAdmin => (caller.arn(), "Account"),
        Principal::Service(s) => (s.clone(), "AWSService"),
        Principal::Iam(arn) => (arn.clone(), "User"),
        Principal::AssumedRole { role_arn, .. } => (role_arn.clone(), "AssumedRole"),
    };
    if let Principal::Iam(arn) = &caller.principal
        && let Some(name) = arn.rsplit('/').next()
    {
        keys.insert("aws:username".into(), vec![name.to_owned()]);
    }
    keys.insert("aws:principalarn".into(), vec![arn]);
    keys.insert("aws:principaltype".into(), vec![kind.into()]);
    keys
}

/// The decision of the caller's identity policies alone (`NotApplicable`
/// for principals without any: the administrator and services).
pub fn identity_decision(caller: &Caller, check: &Check<'_>) -> Decision {
    let Some(set) = &caller.policies else {
        return Decision::NotApplicable;
    };
    let subject = caller.subject();
    let mut keys = caller_keys(caller);
    keys.extend(check.keys.iter().map(|(k, v)| (k.clone(), v.clone())));
    let facts = Facts {
        subject: &subject,
        action: check.action,
        resource: check.resource,
        keys,
    };
    combine(set.policies.iter().map(|p| p.evaluate(&facts)))
}

/// The decision of one resource policy for the caller.
pub fn resource_decision(caller: &Caller, check: &Check<'_>, policy: &Policy) -> Decision {
    let subject = caller.subject();
    let mut keys = caller_keys(caller);
    keys.extend(check.keys.iter().map(|(k, v)| (k.clone(), v.clone())));
    policy.evaluate(&Facts {
        subject: &subject,
        action: check.action,
        resource: check.resource,
        keys,
    })
}

/// Several decisions as one: any deny denies, else any allow allows.
pub fn combine(decisions: impl IntoIterator<Item = Decision>) -> Decision {
    let mut out = Decision::NotApplicable;
    for d in decisions {
        match d {
            Decision::Deny => return Decision::Deny,
            Decision::Allow => out = Decision::Allow,
            Decision::NotApplicable => {}
        }
    }
    out
}

/// The account a resource ARN belongs to (`arn:PART:SVC:REGION:ACCOUNT:...`).
fn arn_account(resource: &str) -> Option<&str> {
    let mut parts = resource.splitn(6, ':');
    (parts.next() == Some("arn")).then_some(())?;
    parts.nth(3).filter(|a| !a.is_empty())
}

/// Decides `check` for `caller` given the resource's policy, if it has one.
pub fn authorize(
    caller: &Caller,
    check: &Check<'_>,
    resource_policy: Option<&Policy>,
) -> Result<(), Denied> {
    let denied = |explicit| Denied {
        principal: caller.arn(),
        action: check.action.to_owned(),
        resource: check.resource.to_owned(),
        explicit,
    };
    // ferry serves one account per data directory: nothing crosses accounts.
    if arn_account(check.resource).is_some_and(|a| a != caller.account) {
        return Err(denied(None));
    }
    let identity = identity_decision(caller, check);
    let resource = resource_policy
        .map(|p| resource_decision(caller, check, p))
        .unwrap_or(Decision::NotApplicable);
    if identity == Decision::Deny {
        return Err(denied(Some(DenySource::Identity)));
    }
    if resource == Decision::Deny {
        return Err(denied(Some(DenySource::Resource)));
    }
    if caller.principal == Principal::AccountAdmin
        || identity == Decision::Allow
        || resource == Decision::Allow
    {
        return Ok(());
    }
    Err(denied(None))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::IdentityPolicies;

    const ACCOUNT: &str = "111122223333";

    fn user(policies: &[&str]) -> Caller {
        Caller {
            account: ACCOUNT.into(),
            principal: Principal::Iam(format!("arn:aws:iam::{ACCOUNT}:user/bob")),
            access_key_id: None,
            policies: Some(Arc::new(IdentityPolicies {
                policies: policies
                    .iter()
                    .map(|p| Policy::parse_identity(p).unwrap())
                    .collect(),
            })),
        }
    }

    #[test]
    fn identity_allow_deny_and_the_administrator() {
        let read = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:Describe*","Resource":"*"}]}"#;
        let bob = user(&[read]);
        assert!(authorize(&bob, &Check::new("ecs:DescribeTasks", "*"), None).is_ok());
        let e = authorize(&bob, &Check::new("ecs:RunTask", "*"), None).unwrap_err();
        assert_eq!(e.explicit, None);
        assert!(
            e.message()
                .contains("because no identity-based policy allows the ecs:RunTask action"),
            "{}",
            e.message()
        );

        let deny =
            r#"{"Statement":[{"Effect":"Deny","Action":"ecs:DescribeTasks","Resource":"*"}]}"#;
        let bob = user(&[read, deny]);
        let e = authorize(&bob, &Check::new("ecs:DescribeTasks", "*"), None).unwrap_err();
        assert_eq!(e.explicit, Some(DenySource::Identity));

        let admin = Caller::admin(ACCOUNT);
        assert!(authorize(&admin, &Check::new("ecs:RunTask", "*"), None).is_ok());
        let res = Policy::parse(&format!(
            r#"{{"Statement":[{{"Effect":"Deny","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"secretsmanager:*","Resource":"*"}}]}}"#
        ))
        .unwrap();
        let e = authorize(
            &admin,
            &Check::new("secretsmanager:GetSecretValue", "*"),
            Some(&res),
        )
        .unwrap_err();
        assert_eq!(e.explicit, Some(DenySource::Resource));
    }

    #[test]
    fn resource_policy_allows_a_named_principal_and_nothing_crosses_accounts() {
        let bob = user(&[]);
        let res = Policy::parse(&format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:user/bob"}},"Action":"secretsmanager:GetSecretValue","Resource":"*"}}]}}"#
        ))
        .unwrap();
        let arn = format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:db-AbCdEf");
        assert!(
            authorize(
                &bob,
                &Check::new("secretsmanager:GetSecretValue", &arn),
                Some(&res)
            )
            .is_ok()
        );
        assert!(
            authorize(
                &bob,
                &Check::new("secretsmanager:GetSecretValue", &arn),
                None
            )
            .is_err()
        );
        let other = "arn:aws:secretsmanager:us-east-1:999999999999:secret:x";
        assert!(
            authorize(
                &Caller::admin(ACCOUNT),
                &Check::new("secretsmanager:GetSecretValue", other),
                None
            )
            .is_err()
        );
    }
}
