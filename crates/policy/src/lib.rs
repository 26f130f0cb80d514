//! IAM policy documents: parsing (the IAM policy grammar) and evaluation
//! for one request. Key policies, trust policies and identity policies all
//! use this one grammar; the services decide how decisions combine.
//!
//! Supported: `Effect`, `Principal` (`"*"`, `{"AWS": ...}`, `{"Service": ...}`),
//! `Action`/`NotAction` and `Resource`/`NotResource` with `*`/`?`
//! wildcards, and `Condition` with the String*, Arn*, Numeric*, Date*,
//! Bool and Null operators, the `IfExists` suffix and the
//! `ForAllValues:`/`ForAnyValue:` set prefixes. Policy variables
//! (`${aws:username}`, `${aws:PrincipalTag/x}`-style keys the request
//! carries, `${*}`, `${?}`, `${$}`, defaults `${k, 'd'}`) are substituted in
//! `Resource`/`NotResource` and in String/Arn condition values of version
//! 2012-10-17 documents, as in IAM. A policy using anything else (e.g.
//! `NotPrincipal`, `IpAddress`) is rejected with
//! `MalformedPolicyDocumentException` rather than half-enforced.
//!
//! Principals: an `{"AWS": "arn:aws:iam::ACCOUNT:root"}` (or `"ACCOUNT"`)
//! principal names the account. It matches the account administrator
//! directly; for the account's IAM users and role sessions it is a
//! delegation ([`Evaluation::account_allow`]): an `Allow` through it
//! counts only together with an identity policy's `Allow` (how services
//! combine the two is theirs to say), while a `Deny` through it denies
//! them outright. Other IAM principals match by one of the subject's ARNs
//! (a role session also matches as its role).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde_json::Value;

/// Who is asking, as a policy's `Principal` element sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The account root (ferry's administrator).
    Root {
        /// The 12-digit account id.
        account: String,
    },
    /// An AWS service principal such as `ecs-tasks.amazonaws.com`.
    Service {
        /// The account the service acts for.
        account: String,
        /// The service principal name.
        service: String,
    },
    /// An IAM identity (user, role or role session), known by every ARN a
    /// policy may name it with (for a session: the session ARN and the
    /// role ARN).
    Iam {
        /// The 12-digit account id.
        account: String,
        /// The ARNs that name this identity.
        arns: Vec<String>,
    },
}

impl Subject {
    /// The account the subject belongs to.
    pub fn account(&self) -> &str {
        match self {
            Subject::Root { account }
            | Subject::Service { account, .. }
            | Subject::Iam { account, .. } => account,
        }
    }
}

/// Why a policy document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedPolicy(pub String);

mod cond;
mod pattern;

use cond::{Condition, parse_op};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Principals {
    Any,
    Listed {
        aws: Vec<String>,
        service: Vec<String>,
    },
}

/// How a statement's `Principal` names the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// Not at all.
    No,
    /// By itself (or `*`).
    Directly,
    /// Through its account (`arn:aws:iam::ACCOUNT:root` or `ACCOUNT`, for
    /// an IAM user or role session).
    ByAccount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    effect: Effect,
    principals: Principals,
    actions: Vec<String>,
    not_actions: bool,
    resources: Vec<String>,
    not_resources: bool,
    conditions: Vec<Condition>,
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
    /// Version 2012-10-17: policy variables are substituted (in 2008-10-17
    /// documents `${...}` is literal text, as in IAM).
    variables: bool,
}

/// The request facts a policy is evaluated against.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// Who is asking.
    pub subject: &'a Subject,
    /// The full action name, e.g. `kms:Decrypt`.
    pub action: &'a str,
    /// The resource ARN (`*` for actions on no particular resource).
    pub resource: &'a str,
    /// Condition keys (lowercase names, except the part after
    /// `kms:encryptioncontext:`, which keeps its case) and their values.
    pub keys: BTreeMap<String, Vec<String>>,
}

/// The outcome of evaluating a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it and none denies it.
    Allow,
    /// A statement explicitly denies it.
    Deny,
    /// No statement applies.
    NotApplicable,
}

/// The detailed outcome of evaluating a resource policy (see
/// [`Policy::evaluate_detail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// As [`Policy::evaluate`]: `Allow` only for statements that name the
    /// subject itself (or `*`).
    pub decision: Decision,
    /// Whether an `Allow` statement names the subject's account rather
    /// than the subject (an IAM user or role session under a statement for
    /// `arn:aws:iam::ACCOUNT:root`): AWS's delegation to identity
    /// policies. Never set when `decision` is `Deny`.
    pub account_allow: bool,
}

/// Which resource a request is about, for statement matching.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    /// This ARN (or `*`).
    Arn(&'a str),
    /// Not known at the point of evaluation (see
    /// [`Policy::evaluate_unknown_resource`]).
    Unknown,
}
fn strings(v: &Value, what: &str) -> Result<Vec<String>, MalformedPolicy> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(MalformedPolicy(format!(
                    "{what} must be a string or a list of strings"
                ))),
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        _ => Err(MalformedPolicy(format!(
            "{what} must be a string or a list of strings"
        ))),
    }
}

/// Normalizes a condition key: the name is case-insensitive, the
/// encryption-context key after `kms:EncryptionContext:` is not.
pub fn norm_key(key: &str) -> String {
    const EC: &str = "kms:encryptioncontext:";
    if key.len() > EC.len()
        && key.is_char_boundary(EC.len())
        && key[..EC.len()].eq_ignore_ascii_case(EC)
    {
        format!("{EC}{}", &key[EC.len()..])
    } else {
        key.to_ascii_lowercase()
    }
}

impl Policy {
    /// Parses a resource-based policy (key policy, secret policy): every
    /// statement names its `Principal` and its `Resource`/`NotResource`.
    pub fn parse(text: &str) -> Result<Self, MalformedPolicy> {
        Self::parse_as(text, Kind::Resource)
    }

    /// Parses an identity-based policy (attached to a user or role): no
    /// statement may name a `Principal`; each applies to its holder.
    pub fn parse_identity(text: &str) -> Result<Self, MalformedPolicy> {
        Self::parse_as(text, Kind::Identity)
    }

    /// Parses a role trust policy (`AssumeRolePolicyDocument`): every
    /// statement names its `Principal`, and none may name a `Resource`
    /// (the role itself is the resource), as IAM requires.
    pub fn parse_trust(text: &str) -> Result<Self, MalformedPolicy> {
        Self::parse_as(text, Kind::Trust)
    }

    fn parse_as(text: &str, kind: Kind) -> Result<Self, MalformedPolicy> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|_| MalformedPolicy("The policy is not valid JSON.".into()))?;
        let obj = doc
            .as_object()
            .ok_or_else(|| MalformedPolicy("The policy must be a JSON object.".into()))?;
        let variables = match obj.get("Version") {
            Some(v) if v == "2012-10-17" => true,
            None => false,
            Some(v) if v == "2008-10-17" => false,
            Some(_) => {
                return Err(MalformedPolicy(
                    "The policy Version must be 2012-10-17 or 2008-10-17.".into(),
                ));
            }
        };
        let stmts = match obj.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            _ => {
                return Err(MalformedPolicy(
                    "The policy must contain a Statement.".into(),
                ));
            }
        };
        let mut statements = Vec::with_capacity(stmts.len());
        for s in &stmts {
            statements.push(parse_statement(s, kind)?);
        }
        Ok(Self {
            statements,
            variables,
        })
    }

    /// Evaluates the policy for `facts`: `Deny` if a statement denies
    /// (naming the subject directly or through its account), `Allow` if a
    /// statement naming the subject directly allows, else `NotApplicable`.
    pub fn evaluate(&self, facts: &Facts<'_>) -> Decision {
        self.evaluate_detail(facts).decision
    }

    /// [`Policy::evaluate`], also telling whether an `Allow` reaches the
    /// subject only through its account (see [`Evaluation::account_allow`]).
    pub fn evaluate_detail(&self, facts: &Facts<'_>) -> Evaluation {
        self.run(facts, Target::Arn(facts.resource))
    }

    /// Evaluates the policy for a request whose resource is not known
    /// where the decision is taken (`facts.resource` is ignored): an
    /// `Allow` counts only if its `Resource` matches every resource (`*`),
    /// while a `Deny` counts whatever resource it names. Stricter than
    /// evaluating against the real resource, never looser: a resource-scoped
    /// `Deny` is never skipped, a resource-scoped `Allow` never used.
    pub fn evaluate_unknown_resource(&self, facts: &Facts<'_>) -> Decision {
        self.run(facts, Target::Unknown).decision
    }

    /// Whether any statement is a `Deny` (a cheap test: a policy without
    /// one can never deny).
    pub fn has_deny(&self) -> bool {
        self.statements.iter().any(|s| s.effect == Effect::Deny)
    }

    fn run(&self, facts: &Facts<'_>, target: Target<'_>) -> Evaluation {
        let vars = self.variables.then_some(&facts.keys);
        let (mut allowed, mut by_account) = (false, false);
        for s in &self.statements {
            match (s.applies(facts, target, vars), s.effect) {
                (Named::No, _) => {}
                (_, Effect::Deny) => {
                    return Evaluation {
                        decision: Decision::Deny,
                        account_allow: false,
                    };
                }
                (Named::Directly, Effect::Allow) => allowed = true,
                (Named::ByAccount, Effect::Allow) => by_account = true,
            }
        }
        Evaluation {
            decision: if allowed {
                Decision::Allow
            } else {
                Decision::NotApplicable
            },
            account_allow: by_account,
        }
    }
}

/// Which grammar a document follows: resource policies name principals and
/// resources, trust policies principals only, identity policies resources
/// only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Resource,
    Identity,
    Trust,
}

fn parse_statement(s: &Value, kind: Kind) -> Result<Statement, MalformedPolicy> {
    let o = s
        .as_object()
        .ok_or_else(|| MalformedPolicy("Each policy statement must be a JSON object.".into()))?;
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(MalformedPolicy(format!(
                "Policy statement element {k} is not supported."
            )));
        }
    }
    let effect = match o.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => {
            return Err(MalformedPolicy(
                "Each statement must have Effect Allow or Deny.".into(),
            ));
        }
    };
    let principals = match (kind, o.get("Principal")) {
        (Kind::Identity, None) => Principals::Any,
        (Kind::Identity, Some(_)) => {
            return Err(MalformedPolicy(
                "Policy document should not specify a principal.".into(),
            ));
        }
        (_, Some(Value::String(s))) if s == "*" => Principals::Any,
        (_, Some(Value::Object(p))) => {
            let mut aws = Vec::new();
            let mut service = Vec::new();
            for (k, v) in p {
                match k.as_str() {
                    "AWS" => aws = strings(v, "Principal.AWS")?,
                    "Service" => service = strings(v, "Principal.Service")?,
                    _ => {
                        return Err(MalformedPolicy(format!(
                            "Principal type {k} is not supported."
                        )));
                    }
                }
            }
            if aws.iter().any(|a| a == "*") {
                Principals::Any
            } else {
                Principals::Listed { aws, service }
            }
        }
        _ => {
            return Err(MalformedPolicy(
                "Each statement of a resource policy must have a Principal.".into(),
            ));
        }
    };
    let (actions, not_actions) = match (o.get("Action"), o.get("NotAction")) {
        (Some(a), None) => (strings(a, "Action")?, false),
        (None, Some(a)) => (strings(a, "NotAction")?, true),
        _ => {
            return Err(MalformedPolicy(
                "Each statement must have exactly one of Action or NotAction.".into(),
            ));
        }
    };
    let (resources, not_resources) = match (kind, o.get("Resource"), o.get("NotResource")) {
        (Kind::Trust, None, None) => (vec!["*".to_owned()], false),
        (Kind::Trust, _, _) => {
            return Err(MalformedPolicy(
                "Has prohibited field Resource: a trust policy applies to its role.".into(),
            ));
        }
        (_, Some(r), None) => (strings(r, "Resource")?, false),
        (_, None, Some(r)) => (strings(r, "NotResource")?, true),
        _ => {
            return Err(MalformedPolicy(
                "Each statement must have exactly one of Resource or NotResource.".into(),
            ));
        }
    };
    let mut conditions = Vec::new();
    if let Some(c) = o.get("Condition") {
        let c = c
            .as_object()
            .ok_or_else(|| MalformedPolicy("Condition must be a JSON object.".into()))?;
        for (op_name, block) in c {
            let (op, set, if_exists) = parse_op(op_name)?;
            let block = block.as_object().ok_or_else(|| {
                MalformedPolicy(format!("Condition {op_name} must be a JSON object."))
            })?;
            for (key, vals) in block {
                let c = Condition {
                    op,
                    set,
                    if_exists,
                    key: norm_key(key),
                    values: strings(vals, "Condition value")?,
                };
                c.validate(op_name)?;
                conditions.push(c);
            }
        }
    }
    Ok(Statement {
        effect,
        principals,
        actions,
        not_actions,
        resources,
        not_resources,
        conditions,
    })
}

/// IAM-style wildcard match: `*` any run, `?` one character.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    pattern::compile(pattern, None).is_some_and(|p| pattern::matches(&p, text, ignore_case))
}

/// EC2 filter match: `*` any run, `?` one character, `\` escapes the next
/// (the same iterative matcher: no hostile pattern blows up).
pub fn glob_escaped(pattern: &str, text: &str) -> bool {
    pattern::matches(&pattern::compile_escaped(pattern), text, false)
}

impl Statement {
    /// How the statement applies to the request: `Named::No` unless the
    /// action, resource and conditions all match, else how its principal
    /// names the subject.
    fn applies(
        &self,
        f: &Facts<'_>,
        target: Target<'_>,
        vars: Option<&BTreeMap<String, Vec<String>>>,
    ) -> Named {
        let named = self.principal_named(f.subject);
        if named != Named::No
            && self.action_matches(f.action)
            && self.resource_matches(target, vars)
            && self.conditions.iter().all(|c| c.holds(&f.keys, vars))
        {
            named
        } else {
            Named::No
        }
    }

    fn principal_named(&self, subject: &Subject) -> Named {
        let Principals::Listed { aws, service } = &self.principals else {
            return Named::Directly;
        };
        let names_account = |account: &str| {
            let root = format!("arn:aws:iam::{account}:root");
            aws.iter().any(|a| a == &root || a == account)
        };
        match subject {
            Subject::Root { account } if names_account(account) => Named::Directly,
            Subject::Service { service: s, .. } if service.iter().any(|x| x == s) => {
                Named::Directly
            }
            Subject::Iam { arns, .. } if aws.iter().any(|a| arns.contains(a)) => Named::Directly,
            Subject::Iam { account, .. } if names_account(account) => Named::ByAccount,
            _ => Named::No,
        }
    }

    fn action_matches(&self, action: &str) -> bool {
        let hit = self.actions.iter().any(|a| glob(a, action, true));
        hit != self.not_actions
    }

    fn resource_matches(
        &self,
        target: Target<'_>,
        vars: Option<&BTreeMap<String, Vec<String>>>,
    ) -> bool {
        match target {
            Target::Arn(resource) => {
                let hit = self.resources.iter().any(|r| {
                    pattern::compile(r, vars).is_some_and(|p| pattern::matches(&p, resource, false))
                });
                hit != self.not_resources
            }
            Target::Unknown => {
                let universal = self.resources.iter().any(|r| pattern::is_universal(r));
                match (self.effect, self.not_resources) {
                    // An Allow must cover every resource the request might
                    // be about; a NotResource Allow leaves some out.
                    (Effect::Allow, false) => universal,
                    (Effect::Allow, true) => false,
                    // A Deny applies unless it can apply to no resource.
                    (Effect::Deny, false) => true,
                    (Effect::Deny, true) => !universal,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
