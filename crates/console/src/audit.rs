//! `GET /console/api/audit`: pages of the KMS audit trail, newest first,
//! with the view's filters. Reading the trail is CloudTrail's
//! `LookupEvents` on AWS, so that is the action an IAM principal needs;
//! the administrator may always.

use ferry_proto::{AwsError, Principal};

use crate::data::{AuditError, AuditQuery, MAX_AUDIT_PAGE};
use crate::server::{Authed, Inner};
use crate::task::param;
use ferry_proto::audit_trail::rfc3339_seconds;

/// Records per page when the page does not say.
const DEFAULT_PAGE: usize = 50;

/// The audit query in a query string.
pub(crate) fn parse(query: &str) -> Result<AuditQuery, AwsError> {
    let bad = |m: String| AwsError::client("ValidationException", m);
    let cursor = |name: &str| -> Result<Option<u64>, AwsError> {
        param(query, name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("{name} must be a cursor the console gave")))
            })
            .transpose()
    };
    let time = |name: &str| -> Result<Option<f64>, AwsError> {
        param(query, name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                parse_time(&v).ok_or_else(|| {
                    bad(format!(
                        "{name} must be ISO-8601 or seconds since the epoch"
                    ))
                })
            })
            .transpose()
    };
    let limit = match param(query, "limit").filter(|v| !v.is_empty()) {
        None => DEFAULT_PAGE,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_AUDIT_PAGE).contains(n))
            .ok_or_else(|| bad(format!("limit must be 1 to {MAX_AUDIT_PAGE}")))?,
    };
    let text = |name: &str| {
        param(query, name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    Ok(AuditQuery {
        before: cursor("before")?,
        after: cursor("after")?,
        limit,
        key: text("key"),
        principal: text("principal"),
        event_name: text("eventName"),
        from: time("from")?,
        to: time("to")?,
        errors_only: param(query, "errorsOnly").is_some_and(|v| v == "true" || v == "1"),
        task_arn: text("taskArn"),
    })
}

/// ISO-8601 (with or without seconds or zone: a `datetime-local` value is
/// taken as UTC) or seconds since the epoch.
fn parse_time(v: &str) -> Option<f64> {
    if let Ok(secs) = v.parse::<f64>() {
        return secs.is_finite().then_some(secs);
    }
    // `2026-12-03T07:30` or `2026-12-03T07:30:15` (no zone): UTC.
    rfc3339_seconds(v).or_else(|| match v.len() {
        16 => rfc3339_seconds(&format!("{v}:00Z")),
        _ => rfc3339_seconds(&format!("{v}Z")),
    })
}

pub(crate) async fn audit(
    inner: &Inner,
    authed: &Authed,
    query: &str,
) -> Result<serde_json::Value, AwsError> {
    // The gate does not gate service principals; the trail is not theirs.
    if matches!(authed.caller.principal, Principal::Service(_)) {
        return Err(AwsError::client(
            "AccessDeniedException",
            "service principals do not read the audit trail",
        ));
    }
    inner.calls.authorize(
        &authed.context(inner.calls.region()),
        "cloudtrail",
        "LookupEvents",
    )?;
    let q = parse(query)?;
    let data = inner.data.clone();
    let page = tokio::task::spawn_blocking(move || data.audit(&q))
        .await
        .map_err(|_| AwsError::server("InternalFailure", "reading the audit trail failed"))?
        .map_err(|e| match e {
            AuditError::BadCursor(_) | AuditError::BadQuery(_) => {
                AwsError::client("ValidationException", e.to_string())
            }
            AuditError::Io(_) => AwsError::server("InternalFailure", e.to_string()),
        })?;
    serde_json::to_value(page)
        .map_err(|_| AwsError::server("InternalFailure", "the audit page could not be encoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_becomes_a_query() {
        let q = parse("limit=20&before=1234&eventName=Decrypt&errorsOnly=true&key=%20k%20&from=2026-12-03T07:30").unwrap();
        assert_eq!(q.limit, 20);
        assert_eq!(q.before, Some(1234));
        assert_eq!(q.event_name.as_deref(), Some("Decrypt"));
        assert!(q.errors_only);
        assert_eq!(q.key.as_deref(), Some("k"));
        let from = q.from.unwrap();
        assert_eq!(from, 1_796_283_000.0);
        assert_eq!(parse("").unwrap().limit, DEFAULT_PAGE);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            "limit=0",
            "limit=501",
            "limit=x",
            "before=-1",
            "after=z",
            "from=yesterday",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, "ValidationException", "{bad}");
        }
    }

    #[test]
    fn times_in_every_accepted_form() {
        assert_eq!(parse_time("1796283000"), Some(1_796_283_000.0));
        assert_eq!(parse_time("2026-12-03T07:30:00Z"), Some(1_796_283_000.0));
        assert_eq!(parse_time("2026-12-03T07:30:00"), Some(1_796_283_000.0));
        assert_eq!(parse_time("NaN"), None);
    }
}
