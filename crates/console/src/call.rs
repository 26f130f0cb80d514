//! `POST /console/api/call`: one AWS operation from the page, run as the
//! signed-in principal through [`ferry_api::Calls`] (the gate, the KMS's
//! key policies: exactly what the AWS CLI's request would meet).
//!
//! Only the operations the console's views and actions need are served: a
//! stolen session (or a bug in the page) can do no more than the console
//! itself does. EFS is a REST API and EC2 a query-protocol one; the page
//! names their operations like the JSON ones and gets JSON back.

use bytes::Bytes;
use ferry_proto::{AwsError, RestRequest};
use serde::Deserialize;

use crate::server::{Authed, Inner};

const ECS: &str = "AmazonEC2ContainerServiceV20141113";
const KMS: &str = "TrentService";
const LOGS: &str = "Logs_20140328";

const ECS_OPS: &[&str] = &[
    "ListClusters",
    "DescribeClusters",
    "ListServices",
    "DescribeServices",
    "ListTasks",
    "DescribeTasks",
    "ListTaskDefinitions",
    "ListTaskDefinitionFamilies",
    "DescribeTaskDefinition",
    "RunTask",
    "StopTask",
    "UpdateService",
];
const KMS_OPS: &[&str] = &[
    "ListKeys",
    "DescribeKey",
    "ListAliases",
    "ListGrants",
    "GetKeyPolicy",
    "GetKeyRotationStatus",
    "ListResourceTags",
    "EnableKey",
    "DisableKey",
];
const LOGS_OPS: &[&str] = &["GetLogEvents", "DescribeLogStreams", "FilterLogEvents"];

#[derive(Deserialize)]
struct Call {
    service: String,
    operation: String,
    #[serde(default)]
    input: serde_json::Value,
}

fn unsupported(service: &str, operation: &str) -> AwsError {
    AwsError::client(
        "UnsupportedOperationException",
        format!("the console does not call {service}:{operation}"),
    )
}

/// Runs the call in `body`.
pub(crate) async fn call(
    inner: &Inner,
    authed: &Authed,
    body: &Bytes,
) -> Result<serde_json::Value, AwsError> {
    let c: Call = serde_json::from_slice(body).map_err(|e| {
        AwsError::client(
            "ValidationException",
            format!("a console call is {{\"service\", \"operation\", \"input\"}}: {e}"),
        )
    })?;
    let input = match c.input {
        serde_json::Value::Null => serde_json::json!({}),
        v @ serde_json::Value::Object(_) => v,
        _ => {
            return Err(AwsError::client(
                "ValidationException",
                "a console call's input must be a JSON object",
            ));
        }
    };
    let (service, op) = (c.service.as_str(), c.operation.as_str());
    let prefix = match service {
        "ecs" if ECS_OPS.contains(&op) => ECS,
        "kms" if KMS_OPS.contains(&op) => KMS,
        "logs" if LOGS_OPS.contains(&op) => LOGS,
        "efs" => return efs(inner, authed, op, &input).await,
        "ec2" => return ec2(inner, authed, op),
        _ => return Err(unsupported(service, op)),
    };
    if op == "UpdateService" {
        force_deployment_only(&input)?;
    }
    let body = Bytes::from(input.to_string());
    inner
        .calls
        .json(authed.context(inner.calls.region()), prefix, op, body)
        .await
}

/// The console's only service update is "force a new deployment".
fn force_deployment_only(input: &serde_json::Value) -> Result<(), AwsError> {
    let ok = input.as_object().is_some_and(|o| {
        o.keys()
            .all(|k| matches!(k.as_str(), "cluster" | "service" | "forceNewDeployment"))
            && o.get("forceNewDeployment") == Some(&serde_json::Value::Bool(true))
    });
    if ok {
        Ok(())
    } else {
        Err(AwsError::client(
            "UnsupportedOperationException",
            "the console's UpdateService only forces a new deployment: input {cluster, service, forceNewDeployment: true}",
        ))
    }
}

/// An EFS read as its REST request.
async fn efs(
    inner: &Inner,
    authed: &Authed,
    op: &str,
    input: &serde_json::Value,
) -> Result<serde_json::Value, AwsError> {
    let fs_id = input.get("FileSystemId").and_then(|v| v.as_str());
    let path = match op {
        "DescribeFileSystems" => "/2015-02-01/file-systems",
        "DescribeAccessPoints" => "/2015-02-01/access-points",
        "DescribeMountTargets" => "/2015-02-01/mount-targets",
        _ => return Err(unsupported("efs", op)),
    };
    let query = fs_id
        .map(|id| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair("FileSystemId", id)
                .finish()
        })
        .unwrap_or_default();
    let req = RestRequest {
        method: http::Method::GET,
        path: path.to_owned(),
        query,
        headers: http::HeaderMap::new(),
        body: Bytes::new(),
    };
    let r = inner
        .calls
        .rest(authed.context(inner.calls.region()), req)
        .await?;
    Ok(r.body)
}

/// The run form's subnets and security groups, authorized by the gate
/// as the EC2 call would be (EC2 is gated by identity policy), refused in
/// EC2's words.
fn ec2(inner: &Inner, authed: &Authed, op: &str) -> Result<serde_json::Value, AwsError> {
    if !matches!(op, "DescribeSubnets" | "DescribeSecurityGroups") {
        return Err(unsupported("ec2", op));
    }
    inner
        .calls
        .authorize(&authed.context(inner.calls.region()), "ec2", op)
        .map_err(|e| AwsError::client("UnauthorizedOperation", e.message))?;
    Ok(if op == "DescribeSubnets" {
        serde_json::json!({ "Subnets": inner.network.subnets() })
    } else {
        serde_json::json!({ "SecurityGroups": inner.network.security_groups() })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_service_is_force_deployment_only() {
        let ok = serde_json::json!({"cluster": "c", "service": "s", "forceNewDeployment": true});
        assert!(force_deployment_only(&ok).is_ok());
        for bad in [
            serde_json::json!({"cluster": "c", "service": "s", "desiredCount": 0, "forceNewDeployment": true}),
            serde_json::json!({"cluster": "c", "service": "s", "forceNewDeployment": false}),
            serde_json::json!({"cluster": "c", "service": "s", "taskDefinition": "x"}),
        ] {
            let e = force_deployment_only(&bad).unwrap_err();
            assert_eq!(e.code, "UnsupportedOperationException");
        }
    }
}
