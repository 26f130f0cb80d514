//! The Logs API driven through its JsonService interface, on a real store.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::sync::Arc;

use ferry_logs::{AesGcmSealer, LogEvent, LogsService};
use ferry_proto::{Caller, JsonService, RequestContext};
use ferry_store::Store;
use serde_json::{Value, json};
use zeroize::Zeroizing;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    svc: LogsService,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = Arc::new(Store::open(&path).unwrap());
    let sealer = Arc::new(AesGcmSealer::new(Zeroizing::new([42u8; 32])));
    let svc = LogsService::new(store, sealer, "123456789012".into(), "us-east-1".into());
    Fixture {
        _dir: dir,
        path,
        svc,
    }
}

fn call(svc: &LogsService, op: &str, body: Value) -> Result<Value, ferry_proto::AwsError> {
    let ctx = RequestContext::internal(Caller::admin("123456789012"), "us-east-1");
    svc.call(&ctx, op, body.to_string().as_bytes())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn groups_streams_and_errors() {
    let f = fixture();
    call(
        &f.svc,
        "CreateLogGroup",
        json!({"logGroupName": "/ecs/app"}),
    )
    .unwrap();
    let e = call(
        &f.svc,
        "CreateLogGroup",
        json!({"logGroupName": "/ecs/app"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "ResourceAlreadyExistsException");
    let e = call(
        &f.svc,
        "CreateLogGroup",
        json!({"logGroupName": "bad:name"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    let e = call(
        &f.svc,
        "CreateLogStream",
        json!({"logGroupName": "/nope", "logStreamName": "s"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");
    call(
        &f.svc,
        "CreateLogStream",
        json!({"logGroupName": "/ecs/app", "logStreamName": "ecs/web/1"}),
    )
    .unwrap();
    call(
        &f.svc,
        "CreateLogStream",
        json!({"logGroupName": "/ecs/app", "logStreamName": "ecs/web/2"}),
    )
    .unwrap();
    let d = call(
        &f.svc,
        "DescribeLogGroups",
        json!({"logGroupNamePrefix": "/ecs"}),
    )
    .unwrap();
    assert_eq!(d["logGroups"][0]["logGroupName"], "/ecs/app");
    assert_eq!(
        d["logGroups"][0]["arn"],
        "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/app:*"
    );
    let d = call(
        &f.svc,
        "DescribeLogStreams",
        json!({"logGroupName": "/ecs/app", "limit": 1}),
    )
    .unwrap();
    assert_eq!(d["logStreams"].as_array().unwrap().len(), 1);
    let tok = d["nextToken"].as_str().unwrap().to_owned();
    let d2 = call(
        &f.svc,
        "DescribeLogStreams",
        json!({"logGroupName": "/ecs/app", "limit": 1, "nextToken": tok}),
    )
    .unwrap();
    assert_eq!(d2["logStreams"][0]["logStreamName"], "ecs/web/2");
    assert!(d2.get("nextToken").is_none());
    let e = call(
        &f.svc,
        "DescribeLogStreams",
        json!({"logGroupName": "/ecs/app", "limit": 51}),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    let e = call(&f.svc, "Nope", json!({})).unwrap_err();
    assert_eq!(e.code, "UnknownOperationException");
    let e = call(
        &f.svc,
        "DeleteLogStream",
        json!({"logGroupName": "/ecs/app", "logStreamName": "zzz"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");
    call(
        &f.svc,
        "DeleteLogGroup",
        json!({"logGroupName": "/ecs/app"}),
    )
    .unwrap();
    let d = call(
        &f.svc,
        "DescribeLogStreams",
        json!({"logGroupName": "/ecs/app"}),
    )
    .unwrap_err();
    assert_eq!(d.code, "ResourceNotFoundException");
}

#[test]
fn put_get_filter_and_paging() {
    let f = fixture();
    let t0 = now() - 10_000;
    f.svc
        .append(
            "/ecs/fargate-task-definition",
            "ecs/sample-fargate-app/abc",
            &(0..5)
                .map(|i| LogEvent {
                    timestamp: t0 + i,
                    message: format!("line {i} GET /"),
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let g = "/ecs/fargate-task-definition";
    let s = "ecs/sample-fargate-app/abc";
    let r = call(&f.svc, "PutLogEvents", json!({"logGroupName": g, "logStreamName": s,
        "logEvents": [{"timestamp": t0 + 10, "message": "ERROR boom"}, {"timestamp": now() + 10 * 3600 * 1000, "message": "future"}]})).unwrap();
    assert_eq!(r["rejectedLogEventsInfo"]["tooNewLogEventStartIndex"], 1);
    let e = call(&f.svc, "PutLogEvents", json!({"logGroupName": g, "logStreamName": s,
        "logEvents": [{"timestamp": t0 + 20, "message": "b"}, {"timestamp": t0 + 19, "message": "a"}]})).unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");

    let all = call(
        &f.svc,
        "GetLogEvents",
        json!({"logGroupName": g, "logStreamName": s, "startFromHead": true}),
    )
    .unwrap();
    let msgs: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        [
            "line 0 GET /",
            "line 1 GET /",
            "line 2 GET /",
            "line 3 GET /",
            "line 4 GET /",
            "ERROR boom"
        ]
    );

    // Forward paging ends when the token stops moving, as the CLI expects.
    let mut tok: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut req =
            json!({"logGroupName": g, "logStreamName": s, "startFromHead": true, "limit": 4});
        if let Some(t) = &tok {
            req["nextToken"] = json!(t);
        }
        let r = call(&f.svc, "GetLogEvents", req).unwrap();
        for e in r["events"].as_array().unwrap() {
            seen.push(e["message"].as_str().unwrap().to_owned());
        }
        let next = r["nextForwardToken"].as_str().unwrap().to_owned();
        if tok.as_deref() == Some(next.as_str()) {
            break;
        }
        tok = Some(next);
    }
    assert_eq!(seen.len(), 6);
    // Without startFromHead, the newest events come back.
    let tail = call(
        &f.svc,
        "GetLogEvents",
        json!({"logGroupName": g, "logStreamName": s, "limit": 2}),
    )
    .unwrap();
    assert_eq!(tail["events"][1]["message"], "ERROR boom");

    let hits = call(
        &f.svc,
        "FilterLogEvents",
        json!({"logGroupName": g, "filterPattern": "ERROR"}),
    )
    .unwrap();
    assert_eq!(hits["events"].as_array().unwrap().len(), 1);
    assert_eq!(hits["events"][0]["logStreamName"], s);
    let hits = call(
        &f.svc,
        "FilterLogEvents",
        json!({"logGroupName": g, "startTime": t0 + 1, "endTime": t0 + 2}),
    )
    .unwrap();
    assert_eq!(hits["events"].as_array().unwrap().len(), 2);
    let e = call(
        &f.svc,
        "GetLogEvents",
        json!({"logGroupName": g, "logStreamName": s, "nextToken": "garbage"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
}

#[test]
fn events_are_encrypted_at_rest() {
    let f = fixture();
    let secret = "card=4111111111111111";
    f.svc
        .append(
            "/g",
            "s",
            &[LogEvent {
                timestamp: now(),
                message: secret.into(),
            }],
        )
        .unwrap();
    let raw = std::fs::read(&f.path).unwrap();
    assert!(
        !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "plaintext log line found in the store file"
    );
    let r = call(
        &f.svc,
        "GetLogEvents",
        json!({"logGroupName": "/g", "logStreamName": "s"}),
    )
    .unwrap();
    assert_eq!(r["events"][0]["message"], secret);
}
