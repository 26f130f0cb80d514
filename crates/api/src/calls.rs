//! Calls into the served services for a caller authenticated some other
//! way than a SigV4 signature on this request: the console's signed-in
//! session. The listener's own dispatch takes the same functions after it
//! has verified a signature, so a call made here goes through exactly the
//! authorization an AWS CLI request gets (the gate for the services that
//! do not authorize themselves, the service's own checks for the others).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ferry_proto::{AwsError, Caller, RequestContext, RestRequest};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::Authenticator;
use crate::gate;
use crate::router::{JsonRoute, RestRoute, Router};

/// The services of a [`Router`], callable as an already-authenticated
/// caller. Made by [`Router::calls`] once every AWS service is registered.
pub struct Calls {
    json: HashMap<&'static str, JsonRoute>,
    rest: Vec<RestRoute>,
    keys: Arc<dyn Authenticator>,
    region: String,
}

impl Router {
    /// A handle on the services registered so far (register every AWS
    /// service first): cheap, the services are shared, not copied.
    pub fn calls(&self) -> Arc<Calls> {
        Arc::new(Calls {
            json: self
                .json
                .iter()
                .map(|(k, r)| {
                    (
                        *k,
                        JsonRoute {
                            signing_name: r.signing_name,
                            service: r.service.clone(),
                        },
                    )
                })
                .collect(),
            rest: self
                .rest
                .iter()
                .map(|r| RestRoute {
                    signing_name: r.signing_name,
                    service: r.service.clone(),
                })
                .collect(),
            keys: self.keys.clone(),
            region: self.region.clone(),
        })
    }
}

/// Whether two secrets are equal, in time independent of where they
/// differ and of their lengths: both are reduced to HMAC tags of one
/// length, compared by `verify_slice` (constant time).
fn same_secret(known: &[u8], given: &[u8]) -> bool {
    let tag = |bytes: &[u8]| {
        // A fixed (all-zero) key is enough: the tags never leave this
        // function. `new` cannot fail, unlike `new_from_slice`.
        let mut mac = <Hmac<Sha256> as Mac>::new(&Default::default());
        mac.update(bytes);
        mac
    };
    let expected = tag(known).finalize().into_bytes();
    tag(given).verify_slice(&expected).is_ok()
}

/// The answer to a refused key or secret, in the JSON protocols' words.
fn unrecognized() -> AwsError {
    AwsError::client(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
    .with_status(401)
}

impl Calls {
    /// The server's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Checks a long-term access key and its secret (a sign-in): the
    /// caller, or `UnrecognizedClientException` for an unknown or inactive
    /// key and for a wrong secret alike (no hint which). The secret is
    /// compared in constant time.
    pub fn authenticate_secret(
        &self,
        access_key_id: &str,
        secret: &str,
    ) -> Result<Caller, AwsError> {
        let (known, caller) = self
            .keys
            .lookup(access_key_id, None)
            .map_err(|_| unrecognized())?;
        if same_secret(known.as_bytes(), secret.as_bytes()) {
            Ok(caller)
        } else {
            Err(unrecognized())
        }
    }

    /// The caller of `access_key_id` as the credential table holds it now:
    /// a key deleted or deactivated since sign-in is refused, and the
    /// caller's policies are the current ones.
    pub fn current_caller(&self, access_key_id: &str) -> Result<Caller, AwsError> {
        self.keys
            .lookup(access_key_id, None)
            .map(|(_, caller)| caller)
            .map_err(|_| unrecognized())
    }

    /// The gate's decision on `SERVICE:operation` for `ctx`'s caller, for
    /// what a raw HTTP service serves itself (the console's EC2 choices and
    /// audit trail): IAM users and role sessions need an identity-policy
    /// Allow, the administrator and service principals are not gated
    /// (`AccessDeniedException` when refused).
    pub fn authorize(
        &self,
        ctx: &RequestContext,
        service: &str,
        operation: &str,
    ) -> Result<(), AwsError> {
        gate::json(ctx, service, operation)
    }

    /// The signing name (and IAM prefix) of the JSON service answering
    /// `target_prefix`, if one is registered.
    pub fn json_signing_name(&self, target_prefix: &str) -> Option<&'static str> {
        self.json.get(target_prefix).map(|r| r.signing_name)
    }

    /// Runs a JSON 1.1 operation (`TARGET_PREFIX.operation`) as `ctx`.
    pub async fn json(
        &self,
        ctx: RequestContext,
        target_prefix: &str,
        operation: &str,
        body: Bytes,
    ) -> Result<serde_json::Value, AwsError> {
        let route = self
            .json
            .get(target_prefix)
            .ok_or_else(|| AwsError::unknown_operation(&format!("{target_prefix}.{operation}")))?;
        call_json(route, ctx, operation, body).await
    }

    /// Runs a REST operation as `ctx`: the first REST service taking
    /// `req.path` answers, after the gate.
    pub async fn rest(
        &self,
        ctx: RequestContext,
        req: RestRequest,
    ) -> Result<ferry_proto::RestResponse, AwsError> {
        let route = self
            .rest
            .iter()
            .find(|r| r.service.matches(&req.path))
            .ok_or_else(|| {
                AwsError::client(
                    "UnknownOperationException",
                    format!("no operation is served at {} {}", req.method, req.path),
                )
                .with_status(404)
            })?;
        call_rest(route, ctx, req).await
    }
}

/// One JSON 1.1 operation after authentication: the gate unless the
/// service authorizes itself, then the service (inline or on the blocking
/// pool, as it asks).
pub(crate) async fn call_json(
    route: &JsonRoute,
    ctx: RequestContext,
    operation: &str,
    body: Bytes,
) -> Result<serde_json::Value, AwsError> {
    if !route.service.authorizes_itself() {
        gate::json(&ctx, route.signing_name, operation)?;
    }
    let service = route.service.clone();
    if service.runs_inline(operation) {
        // Quick, non-blocking operations skip the blocking-pool handoff;
        // a panic still becomes a 500, not a dropped connection. The
        // service may make the response wait (the KMS waits for its audit
        // record) without holding this worker.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            service.call_inline(&ctx, operation, &body)
        }))
        .map_err(|_| service_failed())?
        .await
    } else {
        let operation = operation.to_owned();
        tokio::task::spawn_blocking(move || service.call(&ctx, &operation, &body))
            .await
            .map_err(|_| service_failed())?
    }
}

/// One REST operation after authentication: the gate (HTTP 403 as AWS's
/// REST services refuse) unless the service authorizes itself, then the
/// service on the blocking pool.
pub(crate) async fn call_rest(
    route: &RestRoute,
    ctx: RequestContext,
    req: RestRequest,
) -> Result<ferry_proto::RestResponse, AwsError> {
    if !route.service.authorizes_itself() {
        gate::rest(
            &ctx,
            route.signing_name,
            &*route.service,
            &req.method,
            &req.path,
        )?;
    }
    let service = route.service.clone();
    tokio::task::spawn_blocking(move || service.call(&ctx, &req))
        .await
        .map_err(|_| service_failed())?
}

/// The 500 for a service that panicked while handling a request.
pub(crate) fn service_failed() -> AwsError {
    AwsError::server(
        "InternalFailure",
        "the service failed while handling the request",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StaticKeys;
    use ferry_proto::{IdentityPolicies, JsonService, Principal};
    use zeroize::Zeroizing;

    struct Echo;
    impl JsonService for Echo {
        fn target_prefix(&self) -> &'static str {
            "Echo_1"
        }
        fn call(
            &self,
            ctx: &RequestContext,
            op: &str,
            _body: &[u8],
        ) -> Result<serde_json::Value, AwsError> {
            Ok(serde_json::json!({"op": op, "caller": ctx.caller.arn()}))
        }
    }

    fn calls() -> Arc<Calls> {
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"echo:Read","Resource":"*"}]}"#;
        let bob = Caller {
            account: "111122223333".into(),
            principal: Principal::Iam("arn:aws:iam::111122223333:user/bob".into()),
            access_key_id: None,
            policies: Some(Arc::new(IdentityPolicies {
                policies: vec![ferry_policy::Policy::parse_identity(policy).unwrap()],
            })),
        };
        let mut keys = StaticKeys::new();
        keys.insert(
            "AKIAADMIN",
            Zeroizing::new("adm1n".into()),
            Caller::admin("111122223333"),
        );
        keys.insert("AKIABOB", Zeroizing::new("b0b".into()), bob);
        Router::new(Arc::new(keys), "us-east-1")
            .json_service("echo", Arc::new(Echo))
            .calls()
    }

    #[test]
    fn a_sign_in_needs_the_exact_secret() {
        let c = calls();
        let who = c.authenticate_secret("AKIABOB", "b0b").unwrap();
        assert_eq!(who.arn(), "arn:aws:iam::111122223333:user/bob");
        for (key, secret) in [
            ("AKIABOB", "b0b "),
            ("AKIABOB", "b0"),
            ("AKIABOB", ""),
            ("AKIANONE", "b0b"),
        ] {
            let e = c.authenticate_secret(key, secret).unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.status),
                ("UnrecognizedClientException", 401)
            );
        }
        assert!(c.current_caller("AKIAADMIN").is_ok());
        assert!(c.current_caller("AKIANONE").is_err());
    }

    #[tokio::test]
    async fn calls_pass_the_same_gate_as_signed_requests() {
        let c = calls();
        let bob = RequestContext::internal(c.current_caller("AKIABOB").unwrap(), "us-east-1");
        let ok = c
            .json(bob.clone(), "Echo_1", "Read", Bytes::new())
            .await
            .unwrap();
        assert_eq!(ok["caller"], "arn:aws:iam::111122223333:user/bob");
        let e = c
            .json(bob, "Echo_1", "Write", Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
        let admin = RequestContext::internal(c.current_caller("AKIAADMIN").unwrap(), "us-east-1");
        assert!(
            c.json(admin.clone(), "Echo_1", "Write", Bytes::new())
                .await
                .is_ok()
        );
        let e = c
            .json(admin, "Nope_1", "Read", Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, "UnknownOperationException");
    }
}
