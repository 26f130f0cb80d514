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
            region: "ap-south-1",
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

    // JSON services answer a session key in their own words.
    let _ = tx.send(());
}
