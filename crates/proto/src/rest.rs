//! REST-protocol services (EFS: `GET /2015-02-01/file-systems`): the hook
//! for protocols that route by method and path instead of `X-Amz-Target`.
//! The API server authenticates the request and hands it over as a
//! [`RestRequest`]; like [`crate::JsonService`], calls run on a blocking thread.

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::{AwsError, RequestContext};

/// A REST-protocol service (e.g. EFS: `GET /2015-02-01/file-systems`). The
/// hook for protocols that route by method and path instead of
/// `X-Amz-Target`. Like [`JsonService`], calls run on a blocking thread.
pub trait RestService: Send + Sync {
    /// Whether this service answers `path` (e.g. a version prefix).
    fn matches(&self, path: &str) -> bool;

    /// Handles one authenticated request.
    fn call(&self, ctx: &RequestContext, req: &RestRequest) -> Result<RestResponse, AwsError>;
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
