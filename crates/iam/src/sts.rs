//! The STS query service (`Version=2011-06-15`): GetCallerIdentity and
//! AssumeRole.

use std::sync::Arc;

use ferry_proto::query::{Params, QueryService, Xml};
use ferry_proto::{AwsError, RequestContext};

use crate::api::fmt_time;
use crate::error::validation;
use crate::iam::{AssumeRoleRequest, Iam};

/// The STS API's XML namespace.
pub const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The STS API version.
pub const VERSION: &str = "2011-06-15";

/// The STS query service over the identity store.
pub struct StsService {
    iam: Arc<Iam>,
}

impl StsService {
    /// The service over `iam`.
    pub fn new(iam: Arc<Iam>) -> Self {
        Self { iam }
    }
}

impl QueryService for StsService {
    fn xml_namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn api_version(&self) -> &'static str {
        VERSION
    }

    /// GetCallerIdentity reads memory only.
    fn runs_inline(&self, action: &str) -> bool {
        action == "GetCallerIdentity"
    }

    fn call(&self, ctx: &RequestContext, action: &str, params: &Params) -> Result<Xml, AwsError> {
        // Replicas: what another process changed is loaded first.
        self.iam.refresh()?;
        match action {
            "GetCallerIdentity" => self.get_caller_identity(ctx),
            "AssumeRole" => self.assume_role(ctx, params),
            _ => Err(AwsError::client(
                "InvalidAction",
                format!("Could not find operation {action} for version {VERSION}"),
            )),
        }
    }
}

fn length(member: &str, value: &str, min: usize, max: usize) -> Result<(), AwsError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must have length between {min} and {max}"
        )));
    }
    Ok(())
}

impl StsService {
    /// Who the caller is. Needs no permission, as in AWS: even a caller
    /// denied everything may ask.
    fn get_caller_identity(&self, ctx: &RequestContext) -> Result<Xml, AwsError> {
        let (user_id, arn) = self.iam.caller_identity(&ctx.caller)?;
        let mut x = Xml::new();
        x.text("UserId", &user_id)
            .text("Account", &ctx.caller.account)
            .text("Arn", &arn);
        Ok(x)
    }

    fn assume_role(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let role_arn = p.required("RoleArn")?;
        length("roleArn", role_arn, 20, 2048)?;
        let session_name = p.required("RoleSessionName")?;
        let external_id = p.get("ExternalId");
        if let Some(x) = external_id {
            length("externalId", x, 2, 1224)?;
        }
        let source_identity = p.get("SourceIdentity");
        if let Some(x) = source_identity {
            crate::validate::session_name(x).map_err(|_| {
                validation(format!(
                    "1 validation error detected: Value '{x}' at 'sourceIdentity' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
                ))
            })?;
        }
        // Session policies, session tags and MFA would each change what the
        // session may do; refusing them is safer than ignoring them.
        for unsupported in [
            "Policy",
            "PolicyArns",
            "Tags",
            "TransitiveTagKeys",
            "SerialNumber",
            "TokenCode",
            "ProvidedContexts",
        ] {
            if p.has(unsupported) {
                return Err(validation(format!(
                    "AssumeRole with {unsupported} is not supported by ferry."
                )));
            }
        }
        let assumed = self.iam.assume_role(
            &ctx.caller,
            &AssumeRoleRequest {
                role_arn,
                session_name,
                duration_seconds: p.int("DurationSeconds")?,
                external_id,
                source_identity,
            },
        )?;
        let c = &assumed.credentials;
        let mut x = Xml::new();
        x.elem("Credentials", |e| {
            e.text("AccessKeyId", &c.access_key_id)
                .text("SecretAccessKey", &c.secret_access_key)
                .text("SessionToken", &c.session_token)
                .text("Expiration", &fmt_time(c.expiration.unix_timestamp()));
        })
        .elem("AssumedRoleUser", |e| {
            e.text("AssumedRoleId", &assumed.assumed_role_id)
                .text("Arn", &c.caller.arn());
        })
        .opt("SourceIdentity", source_identity);
        Ok(x)
    }
}
