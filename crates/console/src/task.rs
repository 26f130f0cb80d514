//! `GET /console/api/task?cluster=C&task=T`: a task as DescribeTasks
//! answers the signed-in principal, with what no AWS API shows beside it:
//! its ephemeral storage as the host holds it (size, use, cipher, key,
//! the LUKS2 token) and the audit records of its data key.
//!
//! Authorized by the DescribeTasks call itself: a principal who may not
//! describe the task sees none of it.

use bytes::Bytes;
use ferry_proto::AwsError;

use crate::data::AuditQuery;
use crate::server::{Authed, Inner};

/// The most audit records shown on a task's page (a task's key path makes
/// a handful; a long-lived one re-reads its key now and then).
const TASK_AUDIT_RECORDS: usize = 100;

/// The query string's value of `name`.
pub(crate) fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) async fn task(
    inner: &Inner,
    authed: &Authed,
    query: &str,
    region: &str,
) -> Result<serde_json::Value, AwsError> {
    let task = param(query, "task")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AwsError::client("ValidationException", "task= is required"))?;
    let mut input = serde_json::json!({ "tasks": [task], "include": ["TAGS"] });
    if let Some(c) = param(query, "cluster").filter(|c| !c.is_empty()) {
        input["cluster"] = c.into();
    }
    let described = inner
        .calls
        .json(
            authed.context(region),
            "AmazonEC2ContainerServiceV20141113",
            "DescribeTasks",
            Bytes::from(input.to_string()),
        )
        .await?;
    let Some(t) = described
        .get("tasks")
        .and_then(|v| v.as_array())
        .and_then(|a| a.first())
        .cloned()
    else {
        return Err(AwsError::client(
            "ResourceNotFoundException",
            format!("task {task} was not found"),
        )
        .with_status(404));
    };
    let arn = t
        .get("taskArn")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let id = arn.rsplit('/').next().unwrap_or_default().to_owned();
    let data = inner.data.clone();
    // Reading the header and the audit index touch the disk: off the
    // async worker.
    let (storage, audit) = tokio::task::spawn_blocking(move || {
        let storage = data.task_storage(&id);
        let audit = data.audit(&AuditQuery {
            limit: TASK_AUDIT_RECORDS,
            task_arn: Some(arn),
            ..AuditQuery::default()
        });
        (storage, audit)
    })
    .await
    .map_err(|_| AwsError::server("InternalFailure", "reading the task's storage failed"))?;
    let audit = audit
        .map_err(|e| AwsError::server("InternalFailure", e.to_string()))?
        .records;
    Ok(serde_json::json!({
        "task": t,
        "storage": storage,
        "audit": audit,
    }))
}
