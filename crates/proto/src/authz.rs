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
//! Resources whose own policy must grant access (KMS key policies, role
//! trust policies) use [`authorize_required_policy`] instead, where a
//! resource-policy statement for the account (`arn:aws:iam::ACCOUNT:root`)
//! delegates to identity policies rather than allowing by itself. The KMS
//! builds its rules (grants, the administrator on customer keys) on
//! [`decisions`], so that every service answers alike.
//!
//! Requests whose resource is not known where they are checked (the API
//! listener's gate for services that do not authorize themselves) use
//! [`authorize_unknown_resource`].

use std::collections::BTreeMap;

use ferry_policy::{Decision, Evaluation, Facts, Policy};

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

/// Where a deny came from, or which allow was missing (AWS names it in the
/// message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenySource {
    /// The caller's identity policies.
    Identity,
    /// The resource's policy.
    Resource,
}

impl DenySource {
    fn words(self) -> &'static str {
        match self {
            DenySource::Identity => "an identity-based policy",
            DenySource::Resource => "a resource-based policy",
        }
    }
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
    /// For an implicit deny: the kind of policy whose `Allow` was missing
    /// (for a KMS key, usually the key policy; elsewhere the caller's
    /// identity policies).
    pub missing: DenySource,
}

impl Denied {
    /// An explicit deny from `source`.
    pub fn explicit(caller: &Caller, check: &Check<'_>, source: DenySource) -> Self {
        Self {
            principal: caller.arn(),
            action: check.action.to_owned(),
            resource: check.resource.to_owned(),
            explicit: Some(source),
            missing: source,
        }
    }

    /// An implicit deny: no `Allow` in a policy of kind `missing`.
    pub fn implicit(caller: &Caller, check: &Check<'_>, missing: DenySource) -> Self {
        Self {
            principal: caller.arn(),
            action: check.action.to_owned(),
            resource: check.resource.to_owned(),
            explicit: None,
            missing,
        }
    }

    /// AWS's message: `User: ARN is not authorized to perform: ACTION on
    /// resource: RES because no identity-based policy allows the ACTION
    /// action` (or `... with an explicit deny in a resource-based policy`).
    pub fn message(&self) -> String {
        let why = match self.explicit {
            Some(source) => format!("with an explicit deny in {}", source.words()),
            None => {
                let kind = match self.missing {
                    DenySource::Identity => "identity",
                    DenySource::Resource => "resource",
                };
                format!(
                    "because no {kind}-based policy allows the {} action",
                    self.action
                )
            }
        };
        format!(
            "User: {} is not authorized to perform: {} on resource: {} {why}",
            self.principal, self.action, self.resource
        )
    }

    /// The error in the AWS shape with the service's code
    /// (`AccessDeniedException` for JSON services, `AccessDenied` for the
    /// query protocol), HTTP 400 as the JSON protocols answer it.
    pub fn into_error(self, code: &str) -> AwsError {
        AwsError::client(code, self.message())
    }
}

/// The global condition keys that describe the caller and the moment of
/// the request.
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
    keys.insert(
        "aws:principalisawsservice".into(),
        vec![matches!(caller.principal, Principal::Service(_)).to_string()],
    );
    keys.insert("aws:principalarn".into(), vec![arn]);
    keys.insert("aws:principaltype".into(), vec![kind.into()]);
    let now = time::OffsetDateTime::now_utc();
    keys.insert(
        "aws:epochtime".into(),
        vec![now.unix_timestamp().to_string()],
    );
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    if let Ok(t) = now.format(fmt) {
        keys.insert("aws:currenttime".into(), vec![t]);
    }
    keys
}

/// The caller's keys and the check's, for one evaluation.
fn all_keys(caller: &Caller, check: &Check<'_>) -> BTreeMap<String, Vec<String>> {
    let mut keys = caller_keys(caller);
    keys.extend(check.keys.iter().map(|(k, v)| (k.clone(), v.clone())));
    keys
}

/// The decision of the caller's identity policies alone (`NotApplicable`
/// for principals without any: the administrator and services).
pub fn identity_decision(caller: &Caller, check: &Check<'_>) -> Decision {
    decisions(caller, check, None).identity
}

/// The decision of one resource policy for the caller.
pub fn resource_decision(caller: &Caller, check: &Check<'_>, policy: &Policy) -> Decision {
    decisions(caller, check, Some(policy)).resource.decision
}

/// What the caller's identity policies and a resource's policy say about
/// one check (evaluated over one set of condition keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decisions {
    /// The identity policies' decision (`NotApplicable` for callers
    /// without any).
    pub identity: Decision,
    /// The resource policy's evaluation (`NotApplicable` without one).
    pub resource: Evaluation,
}

/// Evaluates the caller's identity policies and, if given, the resource's
/// policy for `check`.
pub fn decisions(
    caller: &Caller,
    check: &Check<'_>,
    resource_policy: Option<&Policy>,
) -> Decisions {
    let none = Evaluation {
        decision: Decision::NotApplicable,
        account_allow: false,
    };
    if caller.policies.is_none() && resource_policy.is_none() {
        return Decisions {
            identity: Decision::NotApplicable,
            resource: none,
        };
    }
    let subject = caller.subject();
    let facts = Facts {
        subject: &subject,
        action: check.action,
        resource: check.resource,
        keys: all_keys(caller, check),
    };
    let identity = caller
        .policies
        .as_ref()
        .map_or(Decision::NotApplicable, |set| {
            combine(set.policies.iter().map(|p| p.evaluate(&facts)))
        });
    let resource = resource_policy.map_or(none, |p| p.evaluate_detail(&facts));
    Decisions { identity, resource }
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

/// The explicit deny among `d`, identity first (as AWS reports it).
fn explicit_deny(d: &Decisions) -> Option<DenySource> {
    if d.identity == Decision::Deny {
        Some(DenySource::Identity)
    } else if d.resource.decision == Decision::Deny {
        Some(DenySource::Resource)
    } else {
        None
    }
}

/// Decides `check` for `caller` given the resource's policy, if it has one.
pub fn authorize(
    caller: &Caller,
    check: &Check<'_>,
    resource_policy: Option<&Policy>,
) -> Result<(), Denied> {
    // ferry serves one account per data directory: nothing crosses accounts.
    if arn_account(check.resource).is_some_and(|a| a != caller.account) {
        return Err(Denied::implicit(caller, check, DenySource::Identity));
    }
    let d = decisions(caller, check, resource_policy);
    if let Some(source) = explicit_deny(&d) {
        return Err(Denied::explicit(caller, check, source));
    }
    if caller.principal == Principal::AccountAdmin
        || d.identity == Decision::Allow
        || d.resource.decision == Decision::Allow
    {
        return Ok(());
    }
    Err(Denied::implicit(caller, check, DenySource::Identity))
}

/// Decides `check` on a resource whose own policy must grant access (a KMS
/// key policy, a role trust policy), by AWS's rules for those: an explicit
/// deny anywhere denies; otherwise the resource policy must allow the
/// caller, either by naming it (its ARN, its role's ARN, `*`; the account
/// for the administrator) or by naming its account, in which case one of
/// the caller's identity policies must allow it too. An identity policy
/// alone never suffices, and the administrator has no standing exception
/// here (the KMS adds its own, see its `authorize`).
pub fn authorize_required_policy(
    caller: &Caller,
    check: &Check<'_>,
    policy: &Policy,
) -> Result<(), Denied> {
    if arn_account(check.resource).is_some_and(|a| a != caller.account) {
        return Err(Denied::implicit(caller, check, DenySource::Resource));
    }
    let d = decisions(caller, check, Some(policy));
    if let Some(source) = explicit_deny(&d) {
        return Err(Denied::explicit(caller, check, source));
    }
    required_policy_allows(&d).map_err(|missing| Denied::implicit(caller, check, missing))
}

/// The allow half of [`authorize_required_policy`] (no explicit deny in
/// `d`): `Ok` if the resource policy allows, directly or through the
/// account with an identity `Allow`; else which allow was missing.
pub fn required_policy_allows(d: &Decisions) -> Result<(), DenySource> {
    if d.resource.decision == Decision::Allow {
        return Ok(());
    }
    if d.resource.account_allow {
        return if d.identity == Decision::Allow {
            Ok(())
        } else {
            Err(DenySource::Identity)
        };
    }
    Err(DenySource::Resource)
}

/// Decides `action` for `caller` where the resource is not known (the API
/// listener's gate): the administrator and service principals pass unless
/// denied; an IAM user or role session needs an identity `Allow` whose
/// `Resource` is `*`, and any of its `Deny`s for the action applies,
/// whatever resource it names (see
/// [`ferry_policy::Policy::evaluate_unknown_resource`]). The denial names
/// resource `*`.
pub fn authorize_unknown_resource(caller: &Caller, action: &str) -> Result<(), Denied> {
    let check = Check::new(action, "*");
    let decision = match &caller.policies {
        None => Decision::NotApplicable,
        Some(set) => {
            let subject = caller.subject();
            let facts = Facts {
                subject: &subject,
                action,
                resource: "*",
                keys: caller_keys(caller),
            };
            combine(
                set.policies
                    .iter()
                    .map(|p| p.evaluate_unknown_resource(&facts)),
            )
        }
    };
    match decision {
        Decision::Deny => Err(Denied::explicit(caller, &check, DenySource::Identity)),
        Decision::Allow => Ok(()),
        Decision::NotApplicable
            if matches!(
                caller.principal,
                Principal::AccountAdmin | Principal::Service(_)
            ) =>
        {
            Ok(())
        }
        Decision::NotApplicable => Err(Denied::implicit(caller, &check, DenySource::Identity)),
    }
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

    fn session(policies: &[&str]) -> Caller {
        Caller {
            principal: Principal::AssumedRole {
                role_arn: format!("arn:aws:iam::{ACCOUNT}:role/app"),
                session_name: "task-1".into(),
            },
            ..user(policies)
        }
    }

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";

    fn key_policy(statements: &str) -> Policy {
        Policy::parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn required_policy_delegates_through_the_account_only() {
        let root = key_policy(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}}"#
        ));
        let enc = Check::new("kms:Encrypt", KEY);
        // The account statement alone does not let a user in...
        let e = authorize_required_policy(&user(&[]), &enc, &root).unwrap_err();
        assert_eq!((e.explicit, e.missing), (None, DenySource::Identity));
        assert!(
            e.message()
                .ends_with("because no identity-based policy allows the kms:Encrypt action")
        );
        // ...with an identity Allow it does.
        let allow = r#"{"Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#;
        assert!(authorize_required_policy(&user(&[allow]), &enc, &root).is_ok());
        assert!(authorize_required_policy(&session(&[allow]), &enc, &root).is_ok());
        // An identity Allow without the key policy's delegation is not enough.
        let only_admin = key_policy(
            r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"*"}"#,
        );
        let e = authorize_required_policy(&user(&[allow]), &enc, &only_admin).unwrap_err();
        assert_eq!(e.missing, DenySource::Resource);
        assert!(
            e.message()
                .ends_with("because no resource-based policy allows the kms:Encrypt action")
        );
        // A key policy naming the role lets its sessions in directly.
        let role = key_policy(
            r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/app"},"Action":"kms:Encrypt","Resource":"*"}"#,
        );
        assert!(authorize_required_policy(&session(&[]), &enc, &role).is_ok());
        assert!(authorize_required_policy(&user(&[]), &enc, &role).is_err());
        // Any explicit deny wins, and says where it was.
        let deny = r#"{"Statement":[{"Effect":"Deny","Action":"kms:*","Resource":"*"}]}"#;
        let e = authorize_required_policy(&session(&[deny]), &enc, &role).unwrap_err();
        assert_eq!(e.explicit, Some(DenySource::Identity));
        assert!(
            e.message()
                .ends_with("with an explicit deny in an identity-based policy")
        );
        let denied = key_policy(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},
               {{"Effect":"Deny","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:Encrypt","Resource":"*"}}"#
        ));
        let e = authorize_required_policy(&user(&[allow]), &enc, &denied).unwrap_err();
        assert_eq!(e.explicit, Some(DenySource::Resource));
        let admin = Caller::admin(ACCOUNT);
        let e = authorize_required_policy(&admin, &enc, &denied).unwrap_err();
        assert_eq!(e.explicit, Some(DenySource::Resource));
        assert_eq!(
            e.message(),
            format!(
                "User: arn:aws:iam::{ACCOUNT}:root is not authorized to perform: kms:Encrypt on resource: {KEY} with an explicit deny in a resource-based policy"
            )
        );
        assert!(
            authorize_required_policy(&admin, &Check::new("kms:Decrypt", KEY), &denied).is_ok()
        );
    }

    #[test]
    fn unknown_resource_gate() {
        let describe = r#"{"Statement":[{"Effect":"Allow","Action":"ecs:Describe*","Resource":"*"},
            {"Effect":"Allow","Action":"ecs:RunTask","Resource":"arn:aws:ecs:*:*:task-definition/web:*"},
            {"Effect":"Deny","Action":"ecs:DescribeTasks","Resource":"arn:aws:ecs:*:*:task/prod/*"}]}"#;
        let bob = user(&[describe]);
        assert!(authorize_unknown_resource(&bob, "ecs:DescribeClusters").is_ok());
        let e = authorize_unknown_resource(&bob, "ecs:RunTask").unwrap_err();
        assert_eq!(
            e.message(),
            format!(
                "User: arn:aws:iam::{ACCOUNT}:user/bob is not authorized to perform: ecs:RunTask on resource: * because no identity-based policy allows the ecs:RunTask action"
            )
        );
        let e = authorize_unknown_resource(&bob, "ecs:DescribeTasks").unwrap_err();
        assert_eq!(e.explicit, Some(DenySource::Identity));
        // A caller without policies (should an IAM caller ever lack them)
        // gets nothing; the administrator and services pass.
        let mut bare = user(&[]);
        bare.policies = None;
        assert!(authorize_unknown_resource(&bare, "ecs:ListClusters").is_err());
        assert!(authorize_unknown_resource(&Caller::admin(ACCOUNT), "ecs:RunTask").is_ok());
        assert!(
            authorize_unknown_resource(
                &Caller::service(ACCOUNT, "ecs.amazonaws.com"),
                "logs:PutLogEvents"
            )
            .is_ok()
        );
    }

    #[test]
    fn global_condition_keys() {
        let time_bound = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*",
            "Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"},
                         "DateLessThan":{"aws:EpochTime":"2999-01-01T00:00:00Z"},
                         "StringEquals":{"aws:username":"bob","aws:PrincipalType":"User"},
                         "Bool":{"aws:PrincipalIsAWSService":"false"}}}]}"#;
        assert!(
            authorize(
                &user(&[time_bound]),
                &Check::new("ecs:ListClusters", "*"),
                None
            )
            .is_ok()
        );
        let expired = r#"{"Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*",
            "Condition":{"DateLessThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}}]}"#;
        assert!(
            authorize(
                &user(&[expired]),
                &Check::new("ecs:ListClusters", "*"),
                None
            )
            .is_err()
        );
        let role = r#"{"Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*",
            "Condition":{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/app"}}}]}"#;
        assert!(
            authorize(
                &session(&[role]),
                &Check::new("ecs:ListClusters", "*"),
                None
            )
            .is_ok()
        );
        assert!(authorize(&user(&[role]), &Check::new("ecs:ListClusters", "*"), None).is_err());
        let keys = caller_keys(&session(&[]));
        assert_eq!(keys["aws:principaltype"], vec!["AssumedRole".to_owned()]);
        assert!(!keys.contains_key("aws:username"));
    }
}
