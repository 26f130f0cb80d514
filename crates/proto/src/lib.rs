//! The boundary between the wire (`ferry-api`: HTTP, SigV4, JSON 1.1 framing)
//! and the cores (`ferry-kms`, `ferry-control`, ...).
//!
//! The API server authenticates a request, turns it into a [`RequestContext`]
//! plus an operation name and a JSON body, and hands it to the
//! [`JsonService`] registered for the `X-Amz-Target` prefix. Cores never see
//! HTTP; the API server never sees domain types. Errors travel back as
//! [`AwsError`], which the API server renders in the AWS JSON error shape
//! (`{"__type": ..., "message": ...}`).
//!
//! Module map (the contracts at the bottom of the crate graph):
//! - this file: [`AwsError`], [`Caller`]/[`Principal`], [`RequestContext`],
//!   the [`JsonService`] trait (JSON 1.1 protocols), [`parse_request`].
//! - [`rest`]: the [`RestService`] trait (REST protocols such as EFS).
//! - [`query`]: the [`query::QueryService`] trait (the query protocol of
//!   IAM and STS: form parameters in, XML out).
//! - [`plan`]: what the control plane asks the agent to run
//!   ([`plan::TaskPlan`]) and what the agent reports ([`plan::TaskEvent`]).
//! - [`failure`]: [`TaskFailure`], why a task failed to start, typed.
//! - [`net`]: a task's network interface ([`net::InterfacePlan`]) and the
//!   security-group rules the data plane enforces ([`net::FirewallRules`]).
//! - [`authz`]: how identity and resource policies combine for one request.
//! - [`audit_trail`]: the KMS audit trail read back (query, page, cursor).
//! - [`storage`]: a task volume's facts as its host holds it.

#![forbid(unsafe_code)]

pub mod audit_trail;
pub mod authz;
pub mod failure;
pub mod net;
pub mod plan;
pub mod query;
pub mod rest;
pub mod storage;

pub use failure::{FailureCode, TaskFailure};
pub use rest::{RestOperation, RestRequest, RestResponse, RestService};

use std::fmt;

/// An error in the AWS JSON 1.1 shape. `code` becomes `__type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// The AWS error code, e.g. `ValidationException`.
    pub code: String,
    /// A human-readable message that says what is wrong.
    pub message: String,
    /// The HTTP status the error is sent with (400 for client faults).
    pub status: u16,
}

impl AwsError {
    /// A client fault (HTTP 400) with the given AWS error code.
    pub fn client(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: 400,
        }
    }

    /// A server fault (HTTP 500). Use only for faults of ferry itself; the
    /// message must not carry secrets.
    pub fn server(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: 500,
        }
    }

    /// `ValidationException`, the generic bad-input error of JSON 1.1 services.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::client("ValidationException", message)
    }

    /// The error for an operation the service does not implement.
    pub fn unknown_operation(target: &str) -> Self {
        Self::client(
            "UnknownOperationException",
            format!("operation {target} is not supported"),
        )
    }

    /// Sets the HTTP status (builder style).
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The JSON body AWS SDKs parse: `{"__type": code, "message": message}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "__type": self.code, "message": self.message })
    }
}

/// Parses a JSON 1.1 request body into its typed form.
///
/// Malformed JSON and wrong member types get `SerializationException`, as
/// AWS JSON services answer; missing required members are reported by serde
/// with their name. Parse once at the edge, then work with typed values.
pub fn parse_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    // An empty body means "no members", which AWS SDKs send as `{}` anyway.
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_data() {
            "ValidationException"
        } else {
            "SerializationException"
        };
        AwsError::client(what, format!("could not parse the request: {e}"))
    })
}

/// Who is calling, as established by SigV4 verification (or by ferry itself
/// for internal calls, e.g. the control plane acting as the ECS service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The account's administrator (`arn:aws:iam::ACCOUNT:root`): allowed
    /// everything no policy explicitly denies, as an AWS account root user.
    AccountAdmin,
    /// An AWS service principal acting on the account's behalf, e.g.
    /// `ecs.amazonaws.com` or `fargate.amazonaws.com`. Subject to key
    /// policies and grants.
    Service(String),
    /// An IAM user by ARN (`arn:aws:iam::ACCOUNT:user/NAME`). Subject to its
    /// identity policies and to resource policies.
    Iam(String),
    /// A session of an assumed IAM role (STS AssumeRole, or a task role).
    AssumedRole {
        /// The role's ARN (`arn:aws:iam::ACCOUNT:role/NAME`).
        role_arn: String,
        /// The session name (for a task role: the task id).
        session_name: String,
    },
}

/// The identity-based policies that apply to a caller (a user's or a role's
/// inline and attached policies), resolved when the caller is
/// authenticated so that every service evaluates the same set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityPolicies {
    /// The parsed policy documents.
    pub policies: Vec<ferry_policy::Policy>,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The 12-digit account id the caller belongs to.
    pub account: String,
    /// What kind of principal this is.
    pub principal: Principal,
    /// The access key id used to sign the request, if any.
    pub access_key_id: Option<String>,
    /// The identity policies of an IAM user or role session; `None` for the
    /// administrator and service principals, which have none.
    pub policies: Option<std::sync::Arc<IdentityPolicies>>,
}

impl Caller {
    /// The account administrator of `account`.
    pub fn admin(account: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            principal: Principal::AccountAdmin,
            access_key_id: None,
            policies: None,
        }
    }

    /// A service principal such as `ecs.amazonaws.com`, acting in `account`.
    pub fn service(account: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            principal: Principal::Service(service.into()),
            access_key_id: None,
            policies: None,
        }
    }

    /// The principal's ARN (or service name), as CloudTrail and key policies
    /// name it. A role session is `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub fn arn(&self) -> String {
        match &self.principal {
            Principal::AccountAdmin => format!("arn:aws:iam::{}:root", self.account),
            Principal::Service(s) => s.clone(),
            Principal::Iam(arn) => arn.clone(),
            Principal::AssumedRole {
                role_arn,
                session_name,
            } => {
                let role = role_arn.rsplit('/').next().unwrap_or(role_arn);
                format!(
                    "arn:aws:sts::{}:assumed-role/{role}/{session_name}",
                    self.account
                )
            }
        }
    }

    /// The caller as a policy's `Principal` element sees it.
    pub fn subject(&self) -> ferry_policy::Subject {
        let account = self.account.clone();
        match &self.principal {
            Principal::AccountAdmin => ferry_policy::Subject::Root { account },
            Principal::Service(service) => ferry_policy::Subject::Service {
                account,
                service: service.clone(),
            },
            Principal::Iam(arn) => ferry_policy::Subject::Iam {
                account,
                arns: vec![arn.clone()],
            },
            Principal::AssumedRole { role_arn, .. } => ferry_policy::Subject::Iam {
                arns: vec![self.arn(), role_arn.clone()],
                account,
            },
        }
    }
}

/// Everything a core needs to know about one request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The authenticated caller.
    pub caller: Caller,
    /// The region the request was signed for.
    pub region: String,
    /// A unique id for this request (`x-amzn-RequestId`), echoed in audit
    /// records.
    pub request_id: String,
    /// The client's address, for audit records.
    pub source_ip: String,
    /// The client's `User-Agent`, for audit records.
    pub user_agent: String,
    /// The service making this request on the caller's behalf, as the
    /// `kms:ViaService` condition key names it (e.g.
    /// `secretsmanager.us-east-1.amazonaws.com` when Secrets Manager
    /// decrypts a secret for its caller); `None` for a caller's own request.
    pub via_service: Option<String>,
}

impl RequestContext {
    /// A context for a call ferry makes to itself (no HTTP request behind it).
    pub fn internal(caller: Caller, region: impl Into<String>) -> Self {
        Self {
            caller,
            region: region.into(),
            request_id: new_request_id(),
            source_ip: "internal".into(),
            user_agent: "ferry".into(),
            via_service: None,
        }
    }

    /// The same request, made by `service` (e.g.
    /// `secretsmanager.us-east-1.amazonaws.com`) on the caller's behalf:
    /// the caller stays the principal, and `kms:ViaService` names the
    /// service.
    #[must_use]
    pub fn with_via_service(mut self, service: impl Into<String>) -> Self {
        self.via_service = Some(service.into());
        self
    }
}

/// Whether `name` is a valid host name (`--name` of a server or agent):
/// `[A-Za-z0-9._-]{1,64}`. One rule for the control plane's hosts and the
/// identity store's agent keys.
pub fn is_host_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A random request id in the UUID text form AWS uses.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    // The id is not a secret; uniqueness is all that matters. Read the
    // kernel's randomness without pulling a RNG crate into this leaf crate.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = nanos.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A service speaking the AWS JSON 1.1 protocol: one call per operation, a
/// JSON object in, a JSON object out.
///
/// Implementations are synchronous: the API server runs them on a blocking
/// thread, because they write to the embedded store (fsync) and must not
/// stall the async reactor.
pub trait JsonService: Send + Sync {
    /// The `X-Amz-Target` prefix this service answers, e.g. `TrentService`.
    fn target_prefix(&self) -> &'static str;

    /// Whether `operation` is quick and never waits on I/O (no fsync, no
    /// locks held across I/O), so the API server may run it on its async
    /// worker instead of handing it to a blocking thread. The handoff costs
    /// two context switches, which dominates hot paths such as KMS
    /// `Decrypt`. Default: no.
    fn runs_inline(&self, _operation: &str) -> bool {
        false
    }

    /// Whether the service authorizes every request itself, per resource
    /// and with its own resource policies (the KMS; Secrets Manager, SSM,
    /// IAM and STS). Otherwise the API listener checks the IAM action
    /// `SIGNING_NAME:Operation` (e.g. `ecs:RunTask`) against the caller's
    /// identity policies before calling the service (the gate; see
    /// docs/iam.md, "Policy evaluation"). Default: no.
    fn authorizes_itself(&self) -> bool {
        false
    }

    /// Runs `operation` (the part of `X-Amz-Target` after the dot) on `body`.
    fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, AwsError>;

    /// Runs an inline operation (see [`JsonService::runs_inline`]) on the
    /// calling async worker and returns its result as a future that
    /// resolves when the result may be sent: a service can wait for a side
    /// effect, such as the KMS's audit record being written, without
    /// blocking the worker. Default: [`JsonService::call`], ready at once.
    fn call_inline(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> Deferred {
        Box::pin(std::future::ready(self.call(ctx, operation, body)))
    }
}

/// A service result that becomes available later (see
/// [`JsonService::call_inline`]).
pub type Deferred = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<serde_json::Value, AwsError>> + Send>,
>;

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::AccountAdmin => f.write_str("account administrator"),
            Principal::Service(s) => write!(f, "service {s}"),
            Principal::Iam(a) => f.write_str(a),
            Principal::AssumedRole {
                role_arn,
                session_name,
            } => write!(f, "{role_arn} session {session_name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_shape() {
        let e = AwsError::validation("bad size");
        assert_eq!(
            e.to_json(),
            serde_json::json!({"__type": "ValidationException", "message": "bad size"})
        );
        assert_eq!(e.status, 400);
    }

    #[test]
    fn parse_request_errors_are_aws_shaped() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct R {
            name: String,
        }
        assert!(parse_request::<R>(br#"{"name":"x"}"#).is_ok());
        let e = parse_request::<R>(b"{nope").unwrap_err();
        assert_eq!(e.code, "SerializationException");
        let e = parse_request::<R>(b"{}").unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert!(e.message.contains("name"), "{}", e.message);
        let e = parse_request::<R>(br#"{"name": 5}"#).unwrap_err();
        assert_eq!(e.code, "ValidationException");
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, b);
    }
}
