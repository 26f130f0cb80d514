//! IAM policy documents: parsing (the IAM policy grammar) and evaluation
//! for one request. Key policies, trust policies and identity policies all
//! use this one grammar; the services decide how decisions combine.
//!
//! Supported: `Effect`, `Principal` (`"*"`, `{"AWS": ...}`, `{"Service": ...}`),
//! `Action`/`NotAction` with `*`/`?` wildcards, `Resource`, and `Condition`
//! with the String*, Bool and Null operators, the `IfExists` suffix and the
//! `ForAllValues:`/`ForAnyValue:` set prefixes. A policy using anything else
//! (e.g. `NotPrincipal`, numeric or date operators) is rejected with
//! `MalformedPolicyDocumentException` rather than half-enforced.
//!
//! An `{"AWS": "arn:aws:iam::ACCOUNT:root"}` (or `"ACCOUNT"`) principal
//! matches the account administrator; other IAM principals match by one of
//! the subject's ARNs (a role session also matches as its role).

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    Bool,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Single,
    ForAllValues,
    ForAnyValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    op: Op,
    set: SetOp,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    effect: Effect,
    principals: Principals,
    actions: Vec<String>,
    not_actions: bool,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// A parsed key policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// The request facts a policy is evaluated against.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// Who is asking.
    pub subject: &'a Subject,
    /// The full action name, e.g. `kms:Decrypt`.
    pub action: &'a str,
    /// The resource ARN.
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

fn parse_op(name: &str) -> Result<(Op, SetOp, bool), MalformedPolicy> {
    let (set, rest) = if let Some(r) = name.strip_prefix("ForAllValues:") {
        (SetOp::ForAllValues, r)
    } else if let Some(r) = name.strip_prefix("ForAnyValue:") {
        (SetOp::ForAnyValue, r)
    } else {
        (SetOp::Single, name)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let op = match base {
        "StringEquals" => Op::StringEquals,
        "StringNotEquals" => Op::StringNotEquals,
        "StringEqualsIgnoreCase" => Op::StringEqualsIgnoreCase,
        "StringNotEqualsIgnoreCase" => Op::StringNotEqualsIgnoreCase,
        "StringLike" => Op::StringLike,
        "StringNotLike" => Op::StringNotLike,
        "Bool" => Op::Bool,
        "Null" if !if_exists => Op::Null,
        _ => {
            return Err(MalformedPolicy(format!(
                "Policy contains an unsupported condition operator: {name}"
            )));
        }
    };
    Ok((op, set, if_exists))
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
    /// Parses a resource-based policy (key policy, trust policy, secret
    /// policy): every statement names its `Principal`.
    pub fn parse(text: &str) -> Result<Self, MalformedPolicy> {
        Self::parse_as(text, Kind::Resource)
    }

    /// Parses an identity-based policy (attached to a user or role): no
    /// statement may name a `Principal`; each applies to its holder.
    pub fn parse_identity(text: &str) -> Result<Self, MalformedPolicy> {
        Self::parse_as(text, Kind::Identity)
    }

    fn parse_as(text: &str, kind: Kind) -> Result<Self, MalformedPolicy> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|_| MalformedPolicy("The policy is not valid JSON.".into()))?;
        let obj = doc
            .as_object()
            .ok_or_else(|| MalformedPolicy("The policy must be a JSON object.".into()))?;
        if let Some(v) = obj.get("Version")
            && v != "2012-10-17"
            && v != "2008-10-17"
        {
            return Err(MalformedPolicy(
                "The policy Version must be 2012-10-17 or 2008-10-17.".into(),
            ));
        }
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
        Ok(Self { statements })
    }

    /// Evaluates the policy for `facts`.
    pub fn evaluate(&self, facts: &Facts<'_>) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if s.applies(facts) {
                match s.effect {
                    Effect::Deny => return Decision::Deny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NotApplicable
        }
    }
}

/// Which grammar a document follows: resource policies name principals,
/// identity policies must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Resource,
    Identity,
}

fn parse_statement(s: &Value, kind: Kind) -> Result<Statement, MalformedPolicy> {
    let o = s
        .as_object()
        .ok_or_else(|| MalformedPolicy("Each policy statement must be a JSON object.".into()))?;
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "Sid" | "Effect" | "Principal" | "Action" | "NotAction" | "Resource" | "Condition"
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
        (Kind::Resource, Some(Value::String(s))) if s == "*" => Principals::Any,
        (Kind::Resource, Some(Value::Object(p))) => {
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
    let resources = match o.get("Resource") {
        Some(r) => strings(r, "Resource")?,
        None => {
            return Err(MalformedPolicy(
                "Each statement must have a Resource.".into(),
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
                conditions.push(Condition {
                    op,
                    set,
                    if_exists,
                    key: norm_key(key),
                    values: strings(vals, "Condition value")?,
                });
            }
        }
    }
    Ok(Statement {
        effect,
        principals,
        actions,
        not_actions,
        resources,
        conditions,
    })
}

/// IAM-style wildcard match: `*` any run, `?` one character.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let eq = |a: char, b: char| {
        if ignore_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Iterative matcher with backtracking to the last star: linear-ish, no
    // recursion, so hostile patterns cannot blow the stack.
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl Statement {
    fn applies(&self, f: &Facts<'_>) -> bool {
        self.principal_matches(f.subject)
            && self.action_matches(f.action)
            && self.resource_matches(f.resource)
            && self.conditions.iter().all(|c| c.holds(f))
    }

    fn principal_matches(&self, subject: &Subject) -> bool {
        match &self.principals {
            Principals::Any => true,
            Principals::Listed { aws, service } => match subject {
                Subject::Root { account } => {
                    let root = format!("arn:aws:iam::{account}:root");
                    aws.iter().any(|a| a == &root || a == account)
                }
                Subject::Service { service: s, .. } => service.iter().any(|x| x == s),
                Subject::Iam { arns, .. } => aws.iter().any(|a| arns.contains(a)),
            },
        }
    }

    fn action_matches(&self, action: &str) -> bool {
        let hit = self.actions.iter().any(|a| glob(a, action, true));
        hit != self.not_actions
    }

    fn resource_matches(&self, resource: &str) -> bool {
        self.resources.iter().any(|r| glob(r, resource, false))
    }
}

impl Condition {
    fn one(&self, pattern: &str, value: &str) -> bool {
        match self.op {
            Op::StringEquals | Op::StringNotEquals => pattern == value,
            Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase => {
                pattern.eq_ignore_ascii_case(value)
            }
            Op::StringLike | Op::StringNotLike => glob(pattern, value, false),
            Op::Bool => pattern.eq_ignore_ascii_case(value),
            Op::Null => false,
        }
    }

    fn negated(&self) -> bool {
        matches!(
            self.op,
            Op::StringNotEquals | Op::StringNotEqualsIgnoreCase | Op::StringNotLike
        )
    }

    fn holds(&self, f: &Facts<'_>) -> bool {
        let present = f.keys.get(&self.key).filter(|v| !v.is_empty());
        if self.op == Op::Null {
            let want_absent = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return want_absent == present.is_none();
        }
        match self.set {
            SetOp::ForAllValues => {
                // Vacuously true when the key is absent, as in IAM.
                let Some(vals) = present else { return true };
                vals.iter().all(|v| {
                    let m = self.values.iter().any(|p| self.one(p, v));
                    m != self.negated()
                })
            }
            SetOp::ForAnyValue => {
                let Some(vals) = present else { return false };
                vals.iter().any(|v| {
                    let m = self.values.iter().any(|p| self.one(p, v));
                    m != self.negated()
                })
            }
            SetOp::Single => {
                let Some(vals) = present else {
                    return self.if_exists || self.negated();
                };
                let m = vals
                    .iter()
                    .any(|v| self.values.iter().any(|p| self.one(p, v)));
                m != self.negated()
            }
        }
    }
}

#[cfg(test)]
mod tests;
