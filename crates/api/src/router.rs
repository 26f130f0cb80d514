//! The services one server answers, and how a request finds its service.
//!
//! JSON 1.1 services (ECS, KMS, Logs) are found by the `X-Amz-Target`
//! prefix; query-protocol services (IAM, STS) by the SigV4 credential
//! scope's service name of a request without `X-Amz-Target`; REST services
//! (EFS) by the request path. Each registration names the SigV4 signing
//! name the credential scope must carry (`kms`, `ecs`, `logs`, `iam`,
//! `sts`, `elasticfilesystem`); it is also the IAM action prefix the
//! authorization gate checks (`ecs:RunTask`), as the two coincide for every
//! service ferry serves.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_proto::query::QueryService;
use ferry_proto::{JsonService, RestService};

use crate::auth::Authenticator;

pub(crate) struct JsonRoute {
    pub signing_name: &'static str,
    pub service: Arc<dyn JsonService>,
}

pub(crate) struct QueryRoute {
    pub signing_name: &'static str,
    pub service: Arc<dyn QueryService>,
}

pub(crate) struct RestRoute {
    pub signing_name: &'static str,
    pub service: Arc<dyn RestService>,
}

pub(crate) struct HttpRoute {
    pub prefix: &'static str,
    /// Only the path `prefix` itself (`/health`), not paths under it.
    pub exact: bool,
    pub service: Arc<dyn crate::http::HttpService>,
}

/// Everything the listener needs: the services, the credential table, the
/// server's region and limits. Build one, then pass it to [`crate::serve`].
pub struct Router {
    pub(crate) json: HashMap<&'static str, JsonRoute>,
    pub(crate) rest: Vec<RestRoute>,
    pub(crate) query: Vec<QueryRoute>,
    pub(crate) http: Vec<HttpRoute>,
    pub(crate) keys: Arc<dyn Authenticator>,
    pub(crate) region: String,
    pub(crate) body_limit: usize,
    pub(crate) limits: crate::listener::Limits,
    pub(crate) signing_keys: crate::sigv4::SigningKeyCache,
    /// The JSON targets a signed request from a service principal's key
    /// (a remote agent's) may reach; every other route refuses it.
    pub(crate) service_targets: Vec<&'static str>,
}

/// The default request body limit. KMS requests are at most a few KiB;
/// large ECS task definitions stay well below this.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

impl Router {
    /// A router with no services. `region` is the server's region: the one
    /// resources are created in, and the only one regional services accept
    /// requests signed for (IAM and STS, global on AWS, take any).
    pub fn new(keys: Arc<dyn Authenticator>, region: impl Into<String>) -> Self {
        Self {
            json: HashMap::new(),
            rest: Vec::new(),
            query: Vec::new(),
            http: Vec::new(),
            keys,
            region: region.into(),
            body_limit: DEFAULT_BODY_LIMIT,
            limits: crate::listener::Limits::default(),
            signing_keys: crate::sigv4::SigningKeyCache::new(),
            service_targets: Vec::new(),
        }
    }

    /// Registers a JSON 1.1 service under its `X-Amz-Target` prefix;
    /// `signing_name` is the SigV4 service name (`kms`, `ecs`, `logs`).
    #[must_use]
    pub fn json_service(
        mut self,
        signing_name: &'static str,
        service: Arc<dyn JsonService>,
    ) -> Self {
        self.json.insert(
            service.target_prefix(),
            JsonRoute {
                signing_name,
                service,
            },
        );
        self
    }

    /// Registers a query-protocol service (IAM, STS) under its SigV4
    /// signing name: a request without `X-Amz-Target` whose credential
    /// scope names `signing_name` goes to it.
    #[must_use]
    pub fn query_service(
        mut self,
        signing_name: &'static str,
        service: Arc<dyn QueryService>,
    ) -> Self {
        self.query.push(QueryRoute {
            signing_name,
            service,
        });
        self
    }

    /// Registers a REST service; the first whose `matches` accepts the path
    /// gets the request.
    #[must_use]
    pub fn rest_service(
        mut self,
        signing_name: &'static str,
        service: Arc<dyn RestService>,
    ) -> Self {
        self.rest.push(RestRoute {
            signing_name,
            service,
        });
        self
    }

    /// Registers a raw HTTP service for every path equal to `prefix`
    /// without its trailing slash, or starting with `prefix` (e.g. `/v2/`
    /// takes `/v2` and `/v2/...`). Checked before any other route.
    #[must_use]
    pub fn http_service(
        mut self,
        prefix: &'static str,
        service: Arc<dyn crate::http::HttpService>,
    ) -> Self {
        self.http.push(HttpRoute {
            prefix,
            exact: false,
            service,
        });
        self
    }

    /// The JSON target prefixes (`TrentService`, ...) a key that
    /// authenticates as a service principal may call. Such keys (a remote
    /// agent's) stand for a part of the platform, not for a user: identity
    /// checks let service principals through (their limits are resource
    /// policies), so the router keeps them to what they are for.
    #[must_use]
    pub fn service_targets(mut self, prefixes: &[&'static str]) -> Self {
        self.service_targets = prefixes.to_vec();
        self
    }

    /// Serves `GET /health` ([`crate::health`]): exactly that path,
    /// before SigV4 (a load balancer probes it without credentials).
    #[must_use]
    pub fn health(mut self, health: crate::health::Health) -> Self {
        self.http.push(HttpRoute {
            prefix: "/health",
            exact: true,
            service: Arc::new(health),
        });
        self
    }

    /// The raw HTTP service that takes `path`, if any.
    pub(crate) fn http_route(&self, path: &str) -> Option<&Arc<dyn crate::http::HttpService>> {
        self.http
            .iter()
            .find(|r| {
                if r.exact {
                    path == r.prefix
                } else {
                    path.starts_with(r.prefix) || path == r.prefix.trim_end_matches('/')
                }
            })
            .map(|r| &r.service)
    }

    /// Sets the listener's timeouts and connection caps.
    #[must_use]
    pub fn limits(mut self, limits: crate::listener::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the request body limit in bytes.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }
}
