//! The CloudWatch Logs service: routing, shared helpers, and the typed
//! append API the task runtime uses.

use std::sync::Arc;

use ferry_proto::{AwsError, JsonService, RequestContext};
use ferry_store::{Store, StoreError};
use serde_json::{Value, json};

use crate::model::{GROUPS, Group};
use crate::ops;
use crate::seal::Sealer;

/// One log event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The line, without its trailing newline.
    pub message: String,
}

/// The log store and its API.
pub struct LogsService {
    pub(crate) store: Arc<Store>,
    pub(crate) sealer: Arc<dyn Sealer>,
    pub(crate) account: String,
    pub(crate) region: String,
}

impl LogsService {
    /// A log service over `store`, sealing batches with `sealer`.
    pub fn new(
        store: Arc<Store>,
        sealer: Arc<dyn Sealer>,
        account: String,
        region: String,
    ) -> Self {
        Self {
            store,
            sealer,
            account,
            region,
        }
    }

    /// Appends events to `group`/`stream`, creating either if missing (the
    /// runtime's `awslogs` driver; ferry creates the group as the ECS console
    /// does when it registers a task definition with awslogs).
    pub fn append(&self, group: &str, stream: &str, events: &[LogEvent]) -> Result<(), AwsError> {
        ops::events::append(self, group, stream, events, true).map(|_| ())
    }

    /// Opens a container's stream as the awslogs driver does at container
    /// start: the group must exist unless `create_group`; the stream is
    /// created if missing. `ResourceNotFoundException` for a missing group.
    pub fn open_stream(
        &self,
        group: &str,
        stream: &str,
        create_group: bool,
    ) -> Result<(), AwsError> {
        ops::events::open_stream(self, group, stream, create_group)
    }

    /// `ResourceNotFoundException` unless `group` exists.
    pub(crate) fn require_group(&self, group: &str) -> Result<(), AwsError> {
        match self
            .store
            .get::<Group>(GROUPS, group)
            .map_err(store_error)?
        {
            Some(_) => Ok(()),
            None => Err(not_found("log group")),
        }
    }

    pub(crate) fn group_arn(&self, group: &str) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{group}",
            self.region, self.account
        )
    }

    pub(crate) fn stream_arn(&self, group: &str, stream: &str) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{group}:log-stream:{stream}",
            self.region, self.account
        )
    }
}

impl JsonService for LogsService {
    fn target_prefix(&self) -> &'static str {
        "Logs_20140328"
    }

    fn call(
        &self,
        _ctx: &RequestContext,
        operation: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, AwsError> {
        match operation {
            "CreateLogGroup" => ops::groups::create(self, body),
            "DeleteLogGroup" => ops::groups::delete(self, body),
            "DescribeLogGroups" => ops::groups::describe(self, body),
            "CreateLogStream" => ops::streams::create(self, body),
            "DeleteLogStream" => ops::streams::delete(self, body),
            "DescribeLogStreams" => ops::streams::describe(self, body),
            "PutLogEvents" => ops::events::put(self, body),
            "GetLogEvents" => ops::events::get(self, body),
            "FilterLogEvents" => ops::events::filter(self, body),
            other => Err(AwsError::unknown_operation(&format!(
                "Logs_20140328.{other}"
            ))),
        }
    }
}

/// The store failed: a server fault that names no data.
pub(crate) fn store_error(e: StoreError) -> AwsError {
    AwsError::server("ServiceUnavailableException", format!("log store: {e}"))
}

pub(crate) fn not_found(what: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!("The specified {what} does not exist."),
    )
}

pub(crate) fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterException", message)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Either `logGroupName` or `logGroupIdentifier` (a name or an ARN), as a
/// valid group name.
pub(crate) fn group_from(name: Option<&str>, identifier: Option<&str>) -> Result<String, AwsError> {
    let group = match (name, identifier) {
        (Some(n), None) => Ok(n.to_owned()),
        (None, Some(id)) => Ok(id
            .strip_prefix("arn:")
            .and_then(|rest| rest.split(":log-group:").nth(1))
            .map(|g| g.trim_end_matches(":*").to_owned())
            .unwrap_or_else(|| id.to_owned())),
        (Some(_), Some(_)) => Err(invalid(
            "LogGroupName and LogGroupIdentifier are mutually exclusive parameters.",
        )),
        (None, None) => Err(invalid(
            "Either LogGroupName or LogGroupIdentifier must be provided.",
        )),
    }?;
    crate::names::group(&group)?;
    Ok(group)
}

/// Opaque paging tokens carry a position: `PREFIX/N`.
pub(crate) fn parse_token(token: &str, prefix: char) -> Result<usize, AwsError> {
    let mut it = token.splitn(2, '/');
    match (it.next(), it.next()) {
        (Some(p), Some(n)) if p.len() == 1 && p.starts_with(prefix) => n
            .parse()
            .map_err(|_| invalid("The specified nextToken is invalid.")),
        _ => Err(invalid("The specified nextToken is invalid.")),
    }
}

/// The position a paging token of kind `prefix` carries; 0 without one.
pub(crate) fn token_start(token: Option<&str>, prefix: char) -> Result<usize, AwsError> {
    Ok(token
        .map(|t| parse_token(t, prefix))
        .transpose()?
        .unwrap_or(0))
}

/// Sets `nextToken` (kind `prefix`) on `out` when items remain after the
/// page of `limit` at `start` of `total`.
pub(crate) fn set_next_token(
    out: &mut Value,
    prefix: char,
    start: usize,
    limit: usize,
    total: usize,
) {
    if start + limit < total {
        out["nextToken"] = json!(format!("{prefix}/{}", start + limit));
    }
}
