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
    pub(crate) queries: Arc<crate::insights::Registry>,
    /// Who this process is when it takes a job's lease (replicas).
    holder: std::sync::RwLock<String>,
}

/// The retention sweep's lease: one replica sweeps at a time.
pub const RETENTION_LEASE: &str = "logs/retention";

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
            queries: Arc::default(),
            holder: std::sync::RwLock::new(ferry_store::singleton::default_holder()),
        }
    }

    /// Names this process for the leases of its background jobs (unique
    /// per process among the replicas sharing a store).
    pub fn set_holder(&self, holder: impl Into<String>) {
        *self
            .holder
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = holder.into();
    }

    /// The name this process takes leases under.
    pub fn holder(&self) -> String {
        self.holder
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Deletes the sealed batches whose events have all passed their
    /// group's retention; returns how many. Readers already hide expired
    /// events; this reclaims their space.
    pub fn sweep_expired(&self) -> Result<usize, AwsError> {
        ops::retention::sweep(self, None)
    }

    /// [`LogsService::sweep_expired`] under a job's lease: every deletion
    /// re-checks the lease in its transaction, and the pass stops once the
    /// lease is lost.
    pub fn sweep_expired_as(
        &self,
        lease: &ferry_store::singleton::Held,
    ) -> Result<usize, AwsError> {
        ops::retention::sweep(self, Some(lease))
    }

    /// Runs the retention sweep every `every` on a background thread for as
    /// long as the service lives; with a shared store, on the one replica
    /// that holds the lease [`RETENTION_LEASE`].
    pub fn spawn_retention_sweep(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> std::io::Result<()> {
        let weak = Arc::downgrade(self);
        let named = weak.clone();
        ferry_store::singleton::spawn(
            "logs-retention",
            self.store.clone(),
            RETENTION_LEASE,
            move || named.upgrade().map(|s| s.holder()),
            every,
            move |lease| {
                let Some(svc) = weak.upgrade() else {
                    return false;
                };
                // A failed sweep is retried next round; readers hide
                // expired events meanwhile.
                if let Err(e) = ops::retention::sweep(&svc, lease) {
                    tracing::warn!("log retention sweep: {}: {}", e.code, e.message);
                }
                true
            },
        )
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
            "ListLogGroups" => ops::groups::list(self, body),
            "PutRetentionPolicy" => ops::retention::put(self, body),
            "DeleteRetentionPolicy" => ops::retention::delete(self, body),
            "TagResource" => ops::tags::tag_resource(self, body),
            "UntagResource" => ops::tags::untag_resource(self, body),
            "ListTagsForResource" => ops::tags::list_for_resource(self, body),
            "TagLogGroup" => ops::tags::tag_log_group(self, body),
            "UntagLogGroup" => ops::tags::untag_log_group(self, body),
            "ListTagsLogGroup" => ops::tags::list_log_group(self, body),
            "PutMetricFilter" => ops::metrics::put(self, body),
            "DescribeMetricFilters" => ops::metrics::describe(self, body),
            "DeleteMetricFilter" => ops::metrics::delete(self, body),
            "TestMetricFilter" => ops::metrics::test(self, body),
            "StartQuery" => ops::queries::start(self, body),
            "GetQueryResults" => ops::queries::get_results(self, body),
            "StopQuery" => ops::queries::stop(self, body),
            "DescribeQueries" => ops::queries::describe(self, body),
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
        (None, Some(id)) => identifier_group(id),
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

/// The group a `logGroupIdentifier` names, validated as the model
/// constrains it: 1..=2048 of `[\w#+=/:,.@-]`, so the `:*` ARN form
/// DescribeLogGroups shows as `arn` is refused, as CloudWatch refuses it.
pub(crate) fn identifier_group(id: &str) -> Result<String, AwsError> {
    let ok = (1..=2048).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || "_#+=/:,.@-".contains(c));
    if !ok {
        return Err(invalid(format!(
            "1 validation error detected: Value '{id}' at 'logGroupIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w#+=/:,.@-]*"
        )));
    }
    if id.starts_with("arn:") {
        // arn:PARTITION:logs:REGION:ACCOUNT:log-group:NAME
        let parts: Vec<&str> = id.splitn(7, ':').collect();
        return match parts.as_slice() {
            [_, _, "logs", _, _, "log-group", name] => Ok((*name).to_owned()),
            _ => Err(invalid(format!("Invalid log group ARN: {id}"))),
        };
    }
    Ok(id.to_owned())
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
