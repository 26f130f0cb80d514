use super::*;
use crate::auth::StaticKeys;
use crate::sigv4::{Signer, SigningCredentials};
use ferry_proto::JsonService;
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
