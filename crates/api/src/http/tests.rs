use super::*;
use crate::auth::StaticKeys;
use crate::sigv4::{Signer, SigningCredentials};
use ferry_proto::JsonService;
use ferry_proto::query::{self, Params, QueryService};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

struct Echo;
impl JsonService for Echo {
    fn target_prefix(&self) -> &'static str {
        "Echo_1"
    }
    fn runs_inline(&self, op: &str) -> bool {
        op == "InlinePanic" || op == "Echo"
    }
    fn call(
        &self,
        ctx: &RequestContext,
        op: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, AwsError> {
        match op {
            "InlinePanic" => panic!("inline boom"),
            "Echo" => Ok(serde_json::json!({
                "op": op,
                "len": body.len(),
                "caller": ctx.caller.arn(),
                "region": ctx.region,
            })),
            "Fail" => Err(AwsError::client("NotFoundException", "nothing here")),
            "Panic" => panic!("boom"),
            _ => Err(AwsError::unknown_operation(op)),
        }
    }
}

async fn start() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut keys = StaticKeys::new();
    keys.insert(
        "AKIATEST",
        Zeroizing::new("s3cr3t".into()),
        Caller::admin("123456789012"),
    );
    let router = Router::new(Arc::new(keys), "us-east-1")
        .json_service("echo", Arc::new(Echo))
        .body_limit(1000);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

async fn call(
    addr: SocketAddr,
    target: &str,
    body: &[u8],
    secret: &str,
    signed: bool,
) -> (u16, serde_json::Value, HeaderMap) {
    call_in(addr, target, body, secret, signed, "us-east-1").await
}

async fn call_in(
    addr: SocketAddr,
    target: &str,
    body: &[u8],
    secret: &str,
    signed: bool,
    region: &str,
) -> (u16, serde_json::Value, HeaderMap) {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_str(&addr.to_string()).unwrap());
    h.insert("content-type", HeaderValue::from_static(JSON_11));
    h.insert("x-amz-target", HeaderValue::from_str(target).unwrap());
    if signed {
        let creds = SigningCredentials {
            access_key_id: "AKIATEST".into(),
            secret_access_key: Zeroizing::new(secret.into()),
        };
        Signer {
            creds: &creds,
            region,
            service: "echo",
        }
        .sign(
            "POST",
            "/",
            "",
            &mut h,
            body,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    }
    let mut req = http::Request::post(format!("http://{addr}/"))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    *req.headers_mut() = h;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        headers,
    )
}

#[tokio::test]
async fn routes_authenticates_and_renders_errors() {
    let (addr, stop) = start().await;
    let (s, v, h) = call(addr, "Echo_1.Echo", b"{}", "s3cr3t", true).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["caller"], "arn:aws:iam::123456789012:root");
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(h["content-type"], JSON_11);
    assert_eq!(h["x-amzn-requestid"].len(), 36);

    let (s, v, _) = call(addr, "Echo_1.Fail", b"{}", "s3cr3t", true).await;
    assert_eq!((s, v["__type"].as_str()), (400, Some("NotFoundException")));
    assert_eq!(v["message"], "nothing here");

    let (s, v, _) = call(addr, "Nope_2.Echo", b"{}", "s3cr3t", true).await;
    assert_eq!(
        (s, v["__type"].as_str()),
        (400, Some("UnknownOperationException"))
    );

    let (_, v, _) = call(addr, "Echo_1.Echo", b"{}", "wrong", true).await;
    assert_eq!(v["__type"], "InvalidSignatureException");

    // One server is one region's endpoint.
    let (s, v, _) = call_in(addr, "Echo_1.Echo", b"{}", "s3cr3t", true, "ap-south-1").await;
    assert_eq!(
        (s, v["__type"].as_str()),
        (400, Some("InvalidSignatureException"))
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not 'ap-south-1'"),
        "{v}"
    );

    let (s, v, _) = call(addr, "Echo_1.Echo", b"{}", "s3cr3t", false).await;
    assert_eq!(
        (s, v["__type"].as_str()),
        (403, Some("MissingAuthenticationTokenException"))
    );

    let (s, v, _) = call(addr, "Echo_1.Echo", &[b' '; 2000], "s3cr3t", true).await;
    assert_eq!(
        (s, v["__type"].as_str()),
        (413, Some("RequestEntityTooLargeException"))
    );

    // A panicking service is a 500 with the AWS shape; the server lives on.
    let (s, v, _) = call(addr, "Echo_1.Panic", b"{}", "s3cr3t", true).await;
    assert_eq!((s, v["__type"].as_str()), (500, Some("InternalFailure")));
    let (s, v, _) = call(addr, "Echo_1.InlinePanic", b"{}", "s3cr3t", true).await;
    assert_eq!((s, v["__type"].as_str()), (500, Some("InternalFailure")));
    let (s, _, _) = call(addr, "Echo_1.Echo", b"{}", "s3cr3t", true).await;
    assert_eq!(s, 200);
    let _ = stop.send(());
}

/// A query-protocol service that says who called, or fails.
struct Q;
impl QueryService for Q {
    fn xml_namespace(&self) -> &'static str {
        "https://sts.amazonaws.com/doc/2011-06-15/"
    }
    fn api_version(&self) -> &'static str {
        "2011-06-15"
    }
    fn call(
        &self,
        ctx: &RequestContext,
        action: &str,
        params: &Params,
    ) -> Result<query::Xml, AwsError> {
        match action {
            "Who" => {
                let mut x = query::Xml::new();
                x.text("Arn", &ctx.caller.arn())
                    .opt("Echo", params.get("Echo"));
                Ok(x)
            }
            "Nothing" => Ok(query::Xml::new()),
            _ => Err(AwsError::client("NoSuchEntity", "no such thing").with_status(404)),
        }
    }
}

/// Long-term and session keys, as the IAM store's table answers.
struct Table;
impl crate::Authenticator for Table {
    fn lookup(
        &self,
        id: &str,
        token: Option<&str>,
    ) -> Result<(Zeroizing<String>, Caller), crate::auth::KeyRefused> {
        use crate::auth::KeyRefused;
        let session = |name: &str| Caller {
            principal: ferry_proto::Principal::AssumedRole {
                role_arn: "arn:aws:iam::123456789012:role/r".into(),
                session_name: name.into(),
            },
            access_key_id: Some(id.into()),
            ..Caller::admin("123456789012")
        };
        match (id, token) {
            ("AKIATEST", None) => Ok((
                Zeroizing::new("s3cr3t".into()),
                Caller::admin("123456789012"),
            )),
            ("ASIALIVE", Some("tok en+/=")) => Ok((Zeroizing::new("sess".into()), session("s"))),
            ("ASIAOLD", Some("old")) => Err(KeyRefused::Expired),
            _ => Err(KeyRefused::Invalid),
        }
    }
}

async fn query_call(
    addr: SocketAddr,
    service: &str,
    key: (&str, &str),
    token: Option<&str>,
    form: &str,
) -> (u16, String) {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_str(&addr.to_string()).unwrap());
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
    );
    if let Some(t) = token {
        h.insert("x-amz-security-token", HeaderValue::from_str(t).unwrap());
    }
    let creds = SigningCredentials {
        access_key_id: key.0.into(),
        secret_access_key: Zeroizing::new(key.1.into()),
    };
    Signer {
        creds: &creds,
        region: "us-east-1",
        service,
    }
    .sign(
        "POST",
        "/",
        "",
        &mut h,
        form.as_bytes(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let mut req = http::Request::post(format!("http://{addr}/"))
        .body(Full::new(Bytes::copy_from_slice(form.as_bytes())))
        .unwrap();
    *req.headers_mut() = h;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "text/xml");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn query_protocol_routes_by_scope_and_answers_in_xml() {
    let router = Router::new(Arc::new(Table), "us-east-1")
        .json_service("echo", Arc::new(Echo))
        .query_service("sts", Arc::new(Q));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, async {
        let _ = rx.await;
    }));
    let admin = ("AKIATEST", "s3cr3t");

    let (s, doc) = query_call(
        addr,
        "sts",
        admin,
        None,
        "Action=Who&Version=2011-06-15&Echo=a%3Cb",
    )
    .await;
    assert_eq!(s, 200, "{doc}");
    assert!(doc.contains("<WhoResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><WhoResult><Arn>arn:aws:iam::123456789012:root</Arn><Echo>a&lt;b</Echo></WhoResult><ResponseMetadata><RequestId>"), "{doc}");
    let (s, doc) = query_call(
        addr,
        "sts",
        admin,
        None,
        "Action=Nothing&Version=2011-06-15",
    )
    .await;
    assert_eq!(s, 200);
    assert!(!doc.contains("NothingResult"), "{doc}");

    let (s, doc) = query_call(addr, "sts", admin, None, "Action=Fail&Version=2011-06-15").await;
    assert_eq!(s, 404);
    assert!(doc.contains("<Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>no such thing</Message></Error>"), "{doc}");
    let (s, doc) = query_call(addr, "sts", admin, None, "Action=Who&Version=2010-05-08").await;
    assert_eq!(s, 400);
    assert!(doc.contains("<Code>InvalidAction</Code>"), "{doc}");

    // Session keys: the token must match; expired and wrong are told apart.
    let live = ("ASIALIVE", "sess");
    let (s, doc) = query_call(addr, "sts", live, Some("tok en+/="), "Action=Who").await;
    assert_eq!(s, 200, "{doc}");
    assert!(doc.contains("assumed-role/r/s"), "{doc}");
    let (s, doc) = query_call(addr, "sts", live, Some("other"), "Action=Who").await;
    assert_eq!(s, 403);
    assert!(doc.contains("<Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message>"), "{doc}");
    let (_, doc) = query_call(addr, "sts", live, None, "Action=Who").await;
    assert!(doc.contains("<Code>InvalidClientTokenId</Code>"), "{doc}");
    let (s, doc) = query_call(addr, "sts", ("ASIAOLD", "x"), Some("old"), "Action=Who").await;
    assert_eq!(s, 400);
    assert!(doc.contains("<Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message>"), "{doc}");
    let (s, doc) = query_call(addr, "sts", ("AKIATEST", "wrong"), None, "Action=Who").await;
    assert_eq!(s, 403);
    assert!(doc.contains("<Code>SignatureDoesNotMatch</Code>"), "{doc}");
    // A long-term key with a token is refused.
    let (_, doc) = query_call(addr, "sts", admin, Some("tok"), "Action=Who").await;
    assert!(doc.contains("<Code>InvalidClientTokenId</Code>"), "{doc}");

    let _ = tx.send(());
}

/// A service that leaves authorization to the gate, one that authorizes
/// itself, and a REST service: what an IAM user may reach.
mod gate {
    use super::*;
    use ferry_proto::{
        IdentityPolicies, Principal, RestOperation, RestRequest, RestResponse, RestService,
    };

    const ACCOUNT: &str = "123456789012";

    struct SelfAuthorizing;
    impl JsonService for SelfAuthorizing {
        fn target_prefix(&self) -> &'static str {
            "Self_1"
        }
        fn authorizes_itself(&self) -> bool {
            true
        }
        fn call(
            &self,
            ctx: &RequestContext,
            _op: &str,
            _body: &[u8],
        ) -> Result<serde_json::Value, AwsError> {
            Ok(serde_json::json!({"caller": ctx.caller.arn()}))
        }
    }

    struct Files;
    impl RestService for Files {
        fn matches(&self, path: &str) -> bool {
            path.starts_with("/files")
        }
        fn call(&self, _ctx: &RequestContext, req: &RestRequest) -> Result<RestResponse, AwsError> {
            Ok(RestResponse {
                status: 200,
                body: serde_json::json!({"path": req.path}),
            })
        }
        fn operation(&self, method: &http::Method, path: &str) -> Option<RestOperation> {
            let id = path.strip_prefix("/files/");
            match (method.as_str(), id) {
                ("GET", None) => Some(RestOperation {
                    name: "ListFiles",
                    resource: None,
                }),
                ("DELETE", Some(id)) => Some(RestOperation {
                    name: "DeleteFile",
                    resource: Some(format!("arn:aws:files:us-east-1:{ACCOUNT}:file/{id}")),
                }),
                _ => None,
            }
        }
    }

    fn bob() -> Caller {
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"echo:Echo","Resource":"*"},
            {"Effect":"Allow","Action":"files:ListFiles","Resource":"*"},
            {"Effect":"Allow","Action":"files:DeleteFile","Resource":"arn:aws:files:*:*:file/tmp-*"}]}"#;
        Caller {
            account: ACCOUNT.into(),
            principal: Principal::Iam(format!("arn:aws:iam::{ACCOUNT}:user/bob")),
            access_key_id: None,
            policies: Some(Arc::new(IdentityPolicies {
                policies: vec![ferry_policy::Policy::parse_identity(policy).unwrap()],
            })),
        }
    }

    async fn start() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let mut keys = StaticKeys::new();
        keys.insert(
            "AKIATEST",
            Zeroizing::new("s3cr3t".into()),
            Caller::admin(ACCOUNT),
        );
        keys.insert("AKIABOB", Zeroizing::new("b0b".into()), bob());
        let router = Router::new(Arc::new(keys), "us-east-1")
            .json_service("echo", Arc::new(Echo))
            .json_service("self", Arc::new(SelfAuthorizing))
            .rest_service("files", Arc::new(Files));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// One signed request as `key`; `target` makes it a JSON 1.1 call.
    async fn send(
        addr: SocketAddr,
        key: (&str, &str),
        service: &str,
        method: &str,
        path: &str,
        target: Option<&str>,
    ) -> (u16, serde_json::Value, HeaderMap) {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_str(&addr.to_string()).unwrap());
        h.insert("content-type", HeaderValue::from_static(JSON_11));
        if let Some(t) = target {
            h.insert("x-amz-target", HeaderValue::from_str(t).unwrap());
        }
        let creds = SigningCredentials {
            access_key_id: key.0.into(),
            secret_access_key: Zeroizing::new(key.1.into()),
        };
        Signer {
            creds: &creds,
            region: "us-east-1",
            service,
        }
        .sign(
            method,
            path,
            "",
            &mut h,
            b"{}",
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        *req.headers_mut() = h;
        let client = Client::builder(TokioExecutor::new()).build_http();
        let resp = client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            headers,
        )
    }

    const BOB: (&str, &str) = ("AKIABOB", "b0b");
    const ADMIN: (&str, &str) = ("AKIATEST", "s3cr3t");

    #[tokio::test]
    async fn refuses_iam_callers_without_an_allow_in_the_aws_shape() {
        let (addr, stop) = start().await;
        let json = |key, target| send(addr, key, "echo", "POST", "/", Some(target));

        let (s, v, _) = json(BOB, "Echo_1.Echo").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["caller"], "arn:aws:iam::123456789012:user/bob");

        // Not allowed: refused before the service runs, as AWS words it.
        let (s, v, h) = json(BOB, "Echo_1.Fail").await;
        assert_eq!(s, 400);
        assert_eq!(v["__type"], "AccessDeniedException");
        assert_eq!(
            v["message"],
            "User: arn:aws:iam::123456789012:user/bob is not authorized to perform: echo:Fail \
             on resource: * because no identity-based policy allows the echo:Fail action"
        );
        assert_eq!(h["x-amzn-requestid"].len(), 36);
        // A panicking operation is never reached.
        let (s, v, _) = json(BOB, "Echo_1.Panic").await;
        assert_eq!(
            (s, v["__type"].as_str()),
            (400, Some("AccessDeniedException"))
        );

        // The administrator is not gated.
        let (s, v, _) = json(ADMIN, "Echo_1.Fail").await;
        assert_eq!((s, v["__type"].as_str()), (400, Some("NotFoundException")));

        // A service that authorizes itself is not gated either.
        let (s, v, _) = send(addr, BOB, "self", "POST", "/", Some("Self_1.Anything")).await;
        assert_eq!(s, 200, "{v}");

        // REST: the operation's name and, when the path names one, its resource.
        let (s, v, _) = send(addr, BOB, "files", "GET", "/files", None).await;
        assert_eq!(s, 200, "{v}");
        let (s, _, _) = send(addr, BOB, "files", "DELETE", "/files/tmp-1", None).await;
        assert_eq!(s, 200);
        let (s, v, h) = send(addr, BOB, "files", "DELETE", "/files/keep-1", None).await;
        assert_eq!(s, 403);
        assert_eq!(h["x-amzn-errortype"], "AccessDeniedException");
        assert_eq!(
            v["message"],
            "User: arn:aws:iam::123456789012:user/bob is not authorized to perform: \
             files:DeleteFile on resource: arn:aws:files:us-east-1:123456789012:file/keep-1 \
             because no identity-based policy allows the files:DeleteFile action"
        );
        // A path that is no operation: refused for IAM callers.
        let (s, v, _) = send(addr, BOB, "files", "PUT", "/files/x", None).await;
        assert_eq!(
            (s, v["__type"].as_str()),
            (404, Some("UnknownOperationException"))
        );
        let (s, _, _) = send(addr, ADMIN, "files", "DELETE", "/files/keep-1", None).await;
        assert_eq!(s, 200);
        let _ = stop.send(());
    }
}

/// A second JSON service, under another prefix.
struct Other;
impl JsonService for Other {
    fn target_prefix(&self) -> &'static str {
        "Other_1"
    }
    fn call(&self, _: &RequestContext, _: &str, _: &[u8]) -> Result<serde_json::Value, AwsError> {
        Ok(serde_json::json!({}))
    }
}

#[tokio::test]
async fn a_service_principals_key_reaches_only_its_targets() {
    let mut keys = StaticKeys::new();
    keys.insert(
        "AKIATEST",
        Zeroizing::new("s3cr3t".into()),
        Caller::service("123456789012", "fargate.amazonaws.com"),
    );
    let router = Router::new(Arc::new(keys), "us-east-1")
        .json_service("echo", Arc::new(Echo))
        .json_service("echo", Arc::new(Other))
        .service_targets(&["Echo_1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, async {
        let _ = rx.await;
    }));
    let (s, v, _) = call(addr, "Echo_1.Echo", b"{}", "s3cr3t", true).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["caller"], "fargate.amazonaws.com");
    let (s, v, _) = call(addr, "Other_1.Anything", b"{}", "s3cr3t", true).await;
    assert_eq!(
        (s, v["__type"].as_str()),
        (403, Some("AccessDeniedException")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("may call only Echo_1"),
        "{v}"
    );
    let _ = tx.send(());
}
