//! `GET /console/api/compliance`: the auditor's page. Every RUNNING task
//! in every cluster the principal may list: whether its storage is
//! encrypted and under which key (as the host holds the volume, not as the
//! task asked), how many run on platform version 1.3.0 (no encryption),
//! and whether the server refuses 1.3.0. As JSON, or as a download (JSON
//! or CSV).
//!
//! Computed through the same ListClusters / ListTasks / DescribeTasks calls
//! as the principal, so it shows what the principal may see and no more.

use std::collections::BTreeMap;

use bytes::Bytes;
use ferry_api::HttpResponse;
use ferry_proto::AwsError;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::server::{Authed, Inner, json};
use crate::task::param;

const ECS: &str = "AmazonEC2ContainerServiceV20141113";

/// One running task's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskLine {
    task_arn: String,
    cluster_arn: String,
    task_definition_arn: String,
    platform_version: String,
    encrypted: bool,
    key_arn: Option<String>,
}

/// The summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    generated_at: String,
    require_encrypted_storage: bool,
    running_tasks: usize,
    encrypted_tasks: usize,
    unencrypted_tasks: usize,
    tasks_on_platform130: usize,
    keys: Vec<KeyCount>,
    tasks: Vec<TaskLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyCount {
    key_arn: String,
    tasks: usize,
}

fn summarize(tasks: Vec<TaskLine>, require: bool, now: String) -> Summary {
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &tasks {
        if let Some(k) = &t.key_arn {
            *keys.entry(k).or_default() += 1;
        }
    }
    let keys = keys
        .into_iter()
        .map(|(k, n)| KeyCount {
            key_arn: k.to_owned(),
            tasks: n,
        })
        .collect();
    let encrypted = tasks.iter().filter(|t| t.encrypted).count();
    Summary {
        generated_at: now,
        require_encrypted_storage: require,
        running_tasks: tasks.len(),
        encrypted_tasks: encrypted,
        unencrypted_tasks: tasks.len() - encrypted,
        tasks_on_platform130: tasks
            .iter()
            .filter(|t| t.platform_version == "1.3.0")
            .count(),
        keys,
        tasks,
    }
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv(s: &Summary) -> String {
    let mut out =
        String::from("taskArn,clusterArn,taskDefinitionArn,platformVersion,encrypted,keyArn\r\n");
    for t in &s.tasks {
        let fields = [
            csv_field(&t.task_arn),
            csv_field(&t.cluster_arn),
            csv_field(&t.task_definition_arn),
            csv_field(&t.platform_version),
            t.encrypted.to_string(),
            csv_field(t.key_arn.as_deref().unwrap_or("")),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

async fn ecs(
    inner: &Inner,
    authed: &Authed,
    op: &str,
    input: serde_json::Value,
) -> Result<serde_json::Value, AwsError> {
    inner
        .calls
        .json(
            authed.context(inner.calls.region()),
            ECS,
            op,
            Bytes::from(input.to_string()),
        )
        .await
}

/// Every page of a List call's `key` array.
async fn list_all(
    inner: &Inner,
    authed: &Authed,
    op: &str,
    mut input: serde_json::Value,
    key: &str,
) -> Result<Vec<String>, AwsError> {
    let mut out = Vec::new();
    loop {
        let page = ecs(inner, authed, op, input.clone()).await?;
        out.extend(
            page.get(key)
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned)),
        );
        match page.get("nextToken").and_then(|v| v.as_str()) {
            Some(t) if !t.is_empty() => input["nextToken"] = t.into(),
            _ => return Ok(out),
        }
    }
}

async fn running_tasks(inner: &Inner, authed: &Authed) -> Result<Vec<TaskLine>, AwsError> {
    let mut lines = Vec::new();
    let clusters = list_all(
        inner,
        authed,
        "ListClusters",
        serde_json::json!({}),
        "clusterArns",
    )
    .await?;
    for cluster in clusters {
        let arns = list_all(
            inner,
            authed,
            "ListTasks",
            serde_json::json!({"cluster": cluster, "desiredStatus": "RUNNING", "maxResults": 100}),
            "taskArns",
        )
        .await?;
        for chunk in arns.chunks(100) {
            let described = ecs(
                inner,
                authed,
                "DescribeTasks",
                serde_json::json!({"cluster": cluster, "tasks": chunk}),
            )
            .await?;
            let tasks = described
                .get("tasks")
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default();
            for t in tasks {
                let s = |k: &str| t.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                if s("lastStatus") != "RUNNING" {
                    continue;
                }
                let platform_version = s("platformVersion");
                lines.push(TaskLine {
                    task_arn: s("taskArn"),
                    cluster_arn: s("clusterArn"),
                    task_definition_arn: s("taskDefinitionArn"),
                    // Until the host says otherwise (below): only 1.3.0 is
                    // unencrypted.
                    encrypted: platform_version != "1.3.0",
                    platform_version,
                    key_arn: None,
                });
            }
        }
    }
    // The volumes' facts touch the disk: one trip off the async worker for
    // every task, not one per task. A volume this host holds says for
    // itself; another host's task (or one not attached yet) keeps what its
    // platform version says.
    let data = inner.data.clone();
    tokio::task::spawn_blocking(move || {
        for line in &mut lines {
            let id = line.task_arn.rsplit('/').next().unwrap_or("");
            if let Some(st) = data.task_storage(id) {
                line.encrypted = st.encrypted;
                line.key_arn = st.key_arn;
            }
        }
        lines
    })
    .await
    .map_err(|_| AwsError::server("InternalFailure", "reading the tasks' volumes failed"))
}

pub(crate) async fn compliance(
    inner: &Inner,
    authed: &Authed,
    query: &str,
) -> Result<HttpResponse, AwsError> {
    let format = param(query, "format");
    let tasks = running_tasks(inner, authed).await?;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let summary = summarize(tasks, inner.data.require_encrypted_storage(), now);
    let value = serde_json::to_value(&summary)
        .map_err(|_| AwsError::server("InternalFailure", "the summary could not be encoded"))?;
    let attach = |r: &mut HttpResponse, name: &'static str| {
        r.headers_mut()
            .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(name));
    };
    match format.as_deref() {
        None | Some("") => Ok(json(StatusCode::OK, &value)),
        Some("json") => {
            let mut r = json(StatusCode::OK, &value);
            attach(&mut r, "attachment; filename=\"ferry-compliance.json\"");
            Ok(r)
        }
        Some("csv") => {
            let mut r = http::Response::new(ferry_api::full_body(csv(&summary)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            attach(&mut r, "attachment; filename=\"ferry-compliance.csv\"");
            Ok(r)
        }
        Some(other) => Err(AwsError::client(
            "ValidationException",
            format!("format must be json or csv, not {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(arn: &str, pv: &str, key: Option<&str>) -> TaskLine {
        TaskLine {
            task_arn: arn.into(),
            cluster_arn: "arn:aws:ecs:us-east-1:1:cluster/default".into(),
            task_definition_arn: "arn:aws:ecs:us-east-1:1:task-definition/t:1".into(),
            platform_version: pv.into(),
            encrypted: pv != "1.3.0",
            key_arn: key.map(str::to_owned),
        }
    }

    #[test]
    fn counts_per_key_and_version() {
        let s = summarize(
            vec![
                line("a", "1.4.0", Some("k1")),
                line("b", "1.4.0", Some("k1")),
                line("c", "1.4.0", Some("k2")),
                line("d", "1.3.0", None),
            ],
            false,
            "now".into(),
        );
        assert_eq!(
            (s.running_tasks, s.encrypted_tasks, s.unencrypted_tasks),
            (4, 3, 1)
        );
        assert_eq!(s.tasks_on_platform130, 1);
        assert_eq!(
            s.keys,
            vec![
                KeyCount {
                    key_arn: "k1".into(),
                    tasks: 2
                },
                KeyCount {
                    key_arn: "k2".into(),
                    tasks: 1
                }
            ]
        );
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_task_and_quotes() {
        let mut odd = line("x,\"y\"", "1.4.0", Some("k"));
        odd.platform_version = "1.4.0".into();
        let s = summarize(vec![line("a", "1.3.0", None), odd], true, "now".into());
        let text = csv(&s);
        let rows: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            "taskArn,clusterArn,taskDefinitionArn,platformVersion,encrypted,keyArn"
        );
        assert!(rows[1].starts_with("a,") && rows[1].ends_with(",1.3.0,false,"));
        assert!(rows[2].starts_with("\"x,\"\"y\"\"\","), "{}", rows[2]);
    }
}
