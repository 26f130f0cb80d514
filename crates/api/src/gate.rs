//! The authorization gate: for services that do not authorize requests
//! themselves (ECS, CloudWatch Logs, EFS), every request of an IAM user or
//! role session is checked against the caller's identity policies for the
//! IAM action `SIGNING_NAME:Operation` (`ecs:RunTask`,
//! `logs:PutLogEvents`, `elasticfilesystem:CreateFileSystem`) before the
//! service sees it.
//!
//! The resource: for EFS requests whose path names a file system or access
//! point, its ARN, evaluated exactly as IAM would. Otherwise the gate does
//! not know the resource (it would have to understand every operation's
//! body), so it decides strictly both ways
//! ([`ferry_proto::authz::authorize_unknown_resource`]): an `Allow` counts
//! only with `Resource: "*"`, while a `Deny` for the action counts whatever
//! resource it names. A policy can thus never reach further at the gate
//! than it would in AWS. See docs/iam.md, "Policy evaluation".
//!
//! The administrator and ferry's internal service principals are not
//! gated (they have no identity policies); the KMS and the services that
//! authorize per resource opt out (`authorizes_itself`).

use ferry_proto::authz::{self, Check};
use ferry_proto::{AwsError, Principal, RequestContext, RestService};

/// The error code of a refused request, in every protocol ferry serves.
const ACCESS_DENIED: &str = "AccessDeniedException";

/// Whether the gate applies to this caller.
fn gated(ctx: &RequestContext) -> bool {
    matches!(
        ctx.caller.principal,
        Principal::Iam(_) | Principal::AssumedRole { .. }
    )
}

fn refused(ctx: &RequestContext, d: authz::Denied) -> AwsError {
    tracing::info!(
        principal = %d.principal,
        action = %d.action,
        resource = %d.resource,
        request_id = %ctx.request_id,
        "request refused by policy"
    );
    d.into_error(ACCESS_DENIED)
}

/// Checks a JSON 1.1 request (`X-Amz-Target: PREFIX.Operation`) of service
/// `service` (its SigV4 signing name, which is also its IAM prefix).
/// HTTP 400 with `__type: AccessDeniedException`, as AWS's JSON services
/// answer.
pub(crate) fn json(ctx: &RequestContext, service: &str, operation: &str) -> Result<(), AwsError> {
    if !gated(ctx) {
        return Ok(());
    }
    let action = format!("{service}:{operation}");
    authz::authorize_unknown_resource(&ctx.caller, &action).map_err(|d| refused(ctx, d))
}

/// Checks a REST request as `service` describes it
/// ([`RestService::operation`]; a request that is no operation of the
/// service is refused for gated callers). `prefix` is the service's
/// signing name. AWS's REST services answer a refusal with HTTP 403.
pub(crate) fn rest(
    ctx: &RequestContext,
    prefix: &str,
    service: &dyn RestService,
    method: &http::Method,
    path: &str,
) -> Result<(), AwsError> {
    if !gated(ctx) {
        return Ok(());
    }
    let Some(op) = service.operation(method, path) else {
        return Err(AwsError::client(
            "UnknownOperationException",
            format!("no operation is served at {method} {path}"),
        )
        .with_status(404));
    };
    let action = format!("{prefix}:{}", op.name);
    let result = match &op.resource {
        Some(arn) => authz::authorize(&ctx.caller, &Check::new(&action, arn), None),
        None => authz::authorize_unknown_resource(&ctx.caller, &action),
    };
    result.map_err(|d| refused(ctx, d).with_status(403))
}
