//! REST-protocol services (EFS: `GET /2015-02-01/file-systems`): the hook
//! for protocols that route by method and path instead of `X-Amz-Target`.
//! The API server authenticates the request and hands it over as a
//! [`RestRequest`]; like [`crate::JsonService`], calls run on a blocking thread.

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::{AwsError, RequestContext};

/// A REST-protocol service (e.g. EFS: `GET /2015-02-01/file-systems`). The
/// hook for protocols that route by method and path instead of
/// `X-Amz-Target`. Like [`crate::JsonService`], calls run on a blocking thread.
pub trait RestService: Send + Sync {
    /// Whether this service answers `path` (e.g. a version prefix).
    fn matches(&self, path: &str) -> bool;

    /// Handles one authenticated request.
    fn call(&self, ctx: &RequestContext, req: &RestRequest) -> Result<RestResponse, AwsError>;

    /// The operation a request is, for the API listener's authorization
    /// gate: its IAM action name (without the service prefix, e.g.
    /// `CreateFileSystem`) and the ARN of the resource the path names, if
    /// it names one. `None` for a request that is no operation of this
    /// service: the gate then refuses IAM callers (fail closed), so a
    /// service that does not implement this serves only the administrator.
    fn operation(&self, _method: &Method, _path: &str) -> Option<RestOperation> {
        None
    }

    /// As [`crate::JsonService::authorizes_itself`]. Default: no.
    fn authorizes_itself(&self) -> bool {
        false
    }
}

/// What the authorization gate needs to know about one REST request (see
/// [`RestService::operation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestOperation {
    /// The operation's name, which is also its IAM action name.
    pub name: &'static str,
    /// The ARN of the resource the request's path names; `None` when it
    /// names none (creations, listings): the gate then decides without one.
    pub resource: Option<String>,
}

/// One REST request, after authentication.
#[derive(Debug, Clone)]
pub struct RestRequest {
    /// The HTTP method.
    pub method: Method,
    /// The path as sent (percent-encoded).
    pub path: String,
    /// The raw query string (may be empty).
    pub query: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// A REST response: status and JSON body.
#[derive(Debug, Clone)]
pub struct RestResponse {
    /// The HTTP status, e.g. 200 or 201.
    pub status: u16,
    /// The JSON body (`Value::Null` for no body).
    pub body: serde_json::Value,
}
