//! The KMS audit trail as it is read back (the web console's audit views):
//! the query, a page, and why a page could not be read. The KMS reads
//! (`ferry_kms::audit_read`), the console asks; both name these types,
//! which is why they live here, below both.
//!
//! Cursors are byte offsets of line starts in `DIR/kms-audit.jsonl`: opaque
//! to the browser, sent back as given.

use serde::Serialize;
use serde_json::Value;

/// A position in the trail: the byte offset of a line start.
pub type Cursor = u64;

/// The most records one page may carry.
pub const MAX_AUDIT_PAGE: usize = 500;

/// Which records to return, newest first. Cursors are byte offsets of line
/// starts, as [`AuditPage::next`] and [`AuditPage::head`] give them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Only records that start before this cursor (a previous page's `next`).
    pub before: Option<u64>,
    /// Only records that start at or after this cursor (a previous page's
    /// `head`). With `after`, the *oldest* `limit` matching records after it
    /// are the page (returned newest first), so a poller that passes each
    /// page's `head` back misses none.
    pub after: Option<u64>,
    /// At most this many records (1..=[`MAX_AUDIT_PAGE`]).
    pub limit: usize,
    /// A key id, key ARN or alias: matched against `resources[].ARN` (equal,
    /// or ending with `/ID`) and `requestParameters.keyId` (also
    /// `targetKeyId` and `aliasName`, so an alias matches where it was named).
    pub key: Option<String>,
    /// A substring of `userIdentity`'s `arn`, `accessKeyId`, `invokedBy` or
    /// `principalId`.
    pub principal: Option<String>,
    /// `eventName`, exact.
    pub event_name: Option<String>,
    /// Records at or after this time (seconds since the epoch).
    pub from: Option<f64>,
    /// Records at or before this time (seconds since the epoch).
    pub to: Option<f64>,
    /// Only records with an `errorCode`.
    pub errors_only: bool,
    /// Only records about this ECS task: its ARN is a value of the call's
    /// encryption context (or of a CreateGrant's constraints), or the call
    /// names a grant created under such constraints (RetireGrant,
    /// RevokeGrant by grant id).
    pub task_arn: Option<String>,
}

/// One page of the trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The records, newest first, as written.
    pub records: Vec<Value>,
    /// Where the next older page starts (pass as `before`): the line start
    /// of the oldest record returned; `None` once the start of the trail
    /// (or of the task's records) was reached.
    pub next: Option<u64>,
    /// Pass as `after` for newer records: the trail's length (complete
    /// lines) when it was read, or, for an `after` page cut at `limit`, the
    /// end of its newest record.
    pub head: u64,
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A cursor that is no line start of this trail.
    #[error("invalid audit cursor: {0}")]
    BadCursor(String),
    /// A malformed query (limit out of range, bad time range).
    #[error("invalid audit query: {0}")]
    BadQuery(String),
    /// The file could not be read.
    #[error("the audit trail could not be read: {0}")]
    Io(String),
}

impl From<std::io::Error> for AuditError {
    fn from(e: std::io::Error) -> Self {
        AuditError::Io(e.to_string())
    }
}

/// An RFC 3339 time (`eventTime`, a query's bound) in seconds since the
/// epoch, the unit [`AuditQuery::from`] and [`AuditQuery::to`] use.
pub fn rfc3339_seconds(s: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}
