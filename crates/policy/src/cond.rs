//! Condition operators: parsing their names and values, and deciding one
//! condition for a request.

use std::collections::BTreeMap;

use time::format_description::well_known::{Iso8601, Rfc3339};
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use crate::MalformedPolicy;
use crate::pattern::{self, Tok};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetOp {
    Single,
    ForAllValues,
    ForAnyValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    pub op: Op,
    pub set: SetOp,
    pub if_exists: bool,
    pub key: String,
    pub values: Vec<String>,
}

/// Parses an operator name such as `ForAnyValue:StringLikeIfExists`.
pub(crate) fn parse_op(name: &str) -> Result<(Op, SetOp, bool), MalformedPolicy> {
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
        "ArnEquals" => Op::ArnEquals,
        "ArnNotEquals" => Op::ArnNotEquals,
        "ArnLike" => Op::ArnLike,
        "ArnNotLike" => Op::ArnNotLike,
        "NumericEquals" => Op::NumericEquals,
        "NumericNotEquals" => Op::NumericNotEquals,
        "NumericLessThan" => Op::NumericLessThan,
        "NumericLessThanEquals" => Op::NumericLessThanEquals,
        "NumericGreaterThan" => Op::NumericGreaterThan,
        "NumericGreaterThanEquals" => Op::NumericGreaterThanEquals,
        "DateEquals" => Op::DateEquals,
        "DateNotEquals" => Op::DateNotEquals,
        "DateLessThan" => Op::DateLessThan,
        "DateLessThanEquals" => Op::DateLessThanEquals,
        "DateGreaterThan" => Op::DateGreaterThan,
        "DateGreaterThanEquals" => Op::DateGreaterThanEquals,
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

/// A number as the Numeric operators read it.
fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A date as the Date operators read it, in nanoseconds since the epoch:
/// ISO 8601 (`2024-05-01T12:00:00Z`, `2024-05-01`, with or without an
/// offset; no offset means UTC) or epoch seconds (`aws:EpochTime`).
pub(crate) fn date(s: &str) -> Option<i128> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs = number(s)?;
        return Some((secs * 1e9) as i128);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(t) = PrimitiveDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t.assume_utc().unix_timestamp_nanos());
    }
    let day = format_description!("[year]-[month]-[day]");
    Date::parse(s, day)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp_nanos())
}

impl Op {
    /// Whether the operator is the negation of a positive match (and so
    /// holds for an absent key).
    pub(crate) fn negated(self) -> bool {
        matches!(
            self,
            Op::StringNotEquals
                | Op::StringNotEqualsIgnoreCase
                | Op::StringNotLike
                | Op::ArnNotEquals
                | Op::ArnNotLike
                | Op::NumericNotEquals
                | Op::DateNotEquals
        )
    }

    /// Whether the operator's values may hold policy variables.
    fn takes_variables(self) -> bool {
        matches!(
            self,
            Op::StringEquals
                | Op::StringNotEquals
                | Op::StringEqualsIgnoreCase
                | Op::StringNotEqualsIgnoreCase
                | Op::StringLike
                | Op::StringNotLike
                | Op::ArnEquals
                | Op::ArnNotEquals
                | Op::ArnLike
                | Op::ArnNotLike
        )
    }
}

impl Condition {
    /// Checks the condition's values at parse time, so a policy that could
    /// not be enforced as written is refused rather than half-enforced.
    pub(crate) fn validate(&self, op_name: &str) -> Result<(), MalformedPolicy> {
        let bad = |v: &str, what: &str| {
            Err(MalformedPolicy(format!(
                "Condition {op_name} on {} has a value that is not {what}: {v}",
                self.key
            )))
        };
        for v in &self.values {
            match self.op {
                Op::NumericEquals
                | Op::NumericNotEquals
                | Op::NumericLessThan
                | Op::NumericLessThanEquals
                | Op::NumericGreaterThan
                | Op::NumericGreaterThanEquals
                    if number(v).is_none() =>
                {
                    return bad(v, "a number");
                }
                Op::DateEquals
                | Op::DateNotEquals
                | Op::DateLessThan
                | Op::DateLessThanEquals
                | Op::DateGreaterThan
                | Op::DateGreaterThanEquals
                    if date(v).is_none() =>
                {
                    return bad(v, "a date");
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the request value `value` matches the policy value
    /// `pattern` (for a negated operator: the positive match).
    fn one(
        &self,
        pattern: &str,
        value: &str,
        vars: Option<&BTreeMap<String, Vec<String>>>,
    ) -> bool {
        let compiled = |p: &str| -> Option<Vec<Tok>> {
            pattern::compile(p, vars.filter(|_| self.op.takes_variables()))
        };
        let literal = |p: &str| -> Option<String> {
            compiled(p).map(|t| {
                t.into_iter()
                    .map(|t| match t {
                        Tok::Lit(c) => c,
                        Tok::Star => '*',
                        Tok::One => '?',
                    })
                    .collect()
            })
        };
        let cmp_num = |f: fn(f64, f64) -> bool| match (number(value), number(pattern)) {
            (Some(v), Some(p)) => f(v, p),
            _ => false,
        };
        let cmp_date = |f: fn(i128, i128) -> bool| match (date(value), date(pattern)) {
            (Some(v), Some(p)) => f(v, p),
            _ => false,
        };
        match self.op {
            Op::StringEquals | Op::StringNotEquals => literal(pattern).is_some_and(|p| p == value),
            Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase => {
                literal(pattern).is_some_and(|p| p.eq_ignore_ascii_case(value))
            }
            Op::StringLike | Op::StringNotLike => {
                compiled(pattern).is_some_and(|p| pattern::matches(&p, value, false))
            }
            Op::ArnEquals | Op::ArnNotEquals | Op::ArnLike | Op::ArnNotLike => {
                compiled(pattern).is_some_and(|p| pattern::arn_matches(&p, value))
            }
            Op::NumericEquals | Op::NumericNotEquals => cmp_num(|v, p| v == p),
            Op::NumericLessThan => cmp_num(|v, p| v < p),
            Op::NumericLessThanEquals => cmp_num(|v, p| v <= p),
            Op::NumericGreaterThan => cmp_num(|v, p| v > p),
            Op::NumericGreaterThanEquals => cmp_num(|v, p| v >= p),
            Op::DateEquals | Op::DateNotEquals => cmp_date(|v, p| v == p),
            Op::DateLessThan => cmp_date(|v, p| v < p),
            Op::DateLessThanEquals => cmp_date(|v, p| v <= p),
            Op::DateGreaterThan => cmp_date(|v, p| v > p),
            Op::DateGreaterThanEquals => cmp_date(|v, p| v >= p),
            Op::Bool => pattern.eq_ignore_ascii_case(value),
            Op::Null => false,
        }
    }

    /// Whether the condition holds for the request's keys. `vars` is
    /// `Some(keys)` when the policy's version allows policy variables.
    pub(crate) fn holds(
        &self,
        keys: &BTreeMap<String, Vec<String>>,
        vars: Option<&BTreeMap<String, Vec<String>>>,
    ) -> bool {
        let present = keys.get(&self.key).filter(|v| !v.is_empty());
        if self.op == Op::Null {
            let want_absent = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return want_absent == present.is_none();
        }
        let negated = self.op.negated();
        let hit = |v: &String| self.values.iter().any(|p| self.one(p, v, vars));
        match self.set {
            SetOp::ForAllValues => {
                // Vacuously true when the key is absent, as in IAM.
                let Some(vals) = present else { return true };
                vals.iter().all(|v| hit(v) != negated)
            }
            SetOp::ForAnyValue => {
                let Some(vals) = present else { return false };
                vals.iter().any(|v| hit(v) != negated)
            }
            SetOp::Single => {
                let Some(vals) = present else {
                    return self.if_exists || negated;
                };
                vals.iter().any(hit) != negated
            }
        }
    }
}
