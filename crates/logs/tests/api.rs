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

#[test]
fn retention_hides_then_sweeps_expired_batches() {
    let f = fixture();
    call(&f.svc, "CreateLogGroup", json!({"logGroupName": "/r"})).unwrap();
    call(
        &f.svc,
        "CreateLogStream",
        json!({"logGroupName": "/r", "logStreamName": "s"}),
    )
    .unwrap();
    let day = 24 * 3600 * 1000;
    let t = now();
    // Batch 0: all 2+ days old. Batch 1: one old, one fresh (partial).
    let r = call(
        &f.svc,
        "PutLogEvents",
        json!({"logGroupName": "/r", "logStreamName": "s", "logEvents": [
            {"timestamp": t - 3 * day, "message": "old-1"},
            {"timestamp": t - 2 * day, "message": "old-2"}]}),
    )
    .unwrap();
    assert!(r["nextSequenceToken"].as_str().unwrap().ends_with('1'));
    assert!(r.get("rejectedLogEventsInfo").is_none());
    call(
        &f.svc,
        "PutLogEvents",
        json!({"logGroupName": "/r", "logStreamName": "s", "sequenceToken": "whatever", "logEvents": [
            {"timestamp": t - 2 * day, "message": "old-3"},
            {"timestamp": t, "message": "fresh"}]}),
    )
    .unwrap();
    let e = call(
        &f.svc,
        "PutRetentionPolicy",
        json!({"logGroupName": "/r", "retentionInDays": 2}),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    assert!(
        e.message.contains("enum value set: [1, 3, 5"),
        "{}",
        e.message
    );
    call(
        &f.svc,
        "PutRetentionPolicy",
        json!({"logGroupName": "/r", "retentionInDays": 1}),
    )
    .unwrap();
    let g = call(
        &f.svc,
        "DescribeLogGroups",
        json!({"logGroupNamePrefix": "/r"}),
    )
    .unwrap();
    assert_eq!(g["logGroups"][0]["retentionInDays"], 1);
    let got = call(
        &f.svc,
        "GetLogEvents",
        json!({"logGroupName": "/r", "logStreamName": "s", "startFromHead": true}),
    )
    .unwrap();
    let msgs: Vec<&str> = got["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["fresh"]);
    // Events past the retention are now refused as too old.
    let r = call(
        &f.svc,
        "PutLogEvents",
        json!({"logGroupName": "/r", "logStreamName": "s", "logEvents": [
            {"timestamp": t - 2 * day, "message": "late"}, {"timestamp": t, "message": "ok"}]}),
    )
    .unwrap();
    assert_eq!(r["rejectedLogEventsInfo"]["tooOldLogEventEndIndex"], 1);
    // The sweep deletes batch 0 only: batch 1 still holds "fresh".
    assert_eq!(f.svc.sweep_expired().unwrap(), 1);
    assert_eq!(f.svc.sweep_expired().unwrap(), 0);
    call(
        &f.svc,
        "DeleteRetentionPolicy",
        json!({"logGroupName": "/r"}),
    )
    .unwrap();
    let got = call(
        &f.svc,
        "GetLogEvents",
        json!({"logGroupName": "/r", "logStreamName": "s", "startFromHead": true}),
    )
    .unwrap();
    let msgs: Vec<&str> = got["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    // Batch 0 is gone for good; batch 1's expired event shows again.
    assert_eq!(msgs, ["old-3", "fresh", "ok"]);
}

#[test]
fn tags_metric_filters_and_identifiers() {
    let f = fixture();
    call(
        &f.svc,
        "CreateLogGroup",
        json!({"logGroupName": "/t", "tags": {"team": "a"}}),
    )
    .unwrap();
    let arn = "arn:aws:logs:us-east-1:123456789012:log-group:/t";
    call(
        &f.svc,
        "TagResource",
        json!({"resourceArn": arn, "tags": {"env": "prod"}}),
    )
    .unwrap();
    let t = call(&f.svc, "ListTagsLogGroup", json!({"logGroupName": "/t"})).unwrap();
    assert_eq!(t["tags"], json!({"team": "a", "env": "prod"}));
    call(
        &f.svc,
        "UntagLogGroup",
        json!({"logGroupName": "/t", "tags": ["team"]}),
    )
    .unwrap();
    let t = call(&f.svc, "ListTagsForResource", json!({"resourceArn": arn})).unwrap();
    assert_eq!(t["tags"], json!({"env": "prod"}));
    let e = call(
        &f.svc,
        "ListTagsForResource",
        json!({"resourceArn": format!("{arn}:*")}),
    )
    .unwrap_err();
    assert_eq!(e.code, "ValidationException");
    let many: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
    let e = call(
        &f.svc,
        "TagResource",
        json!({"resourceArn": arn, "tags": many}),
    )
    .unwrap_err();
    assert_eq!(e.code, "TooManyTagsException");

    let mf = json!({"logGroupName": "/t", "filterName": "errors", "filterPattern": "ERROR -healthcheck",
        "metricTransformations": [{"metricName": "Errors", "metricNamespace": "App", "metricValue": "1"}]});
    call(&f.svc, "PutMetricFilter", mf).unwrap();
    let d = call(
        &f.svc,
        "DescribeMetricFilters",
        json!({"logGroupName": "/t", "filterNamePrefix": "err"}),
    )
    .unwrap();
    assert_eq!(d["metricFilters"][0]["filterName"], "errors");
    let d = call(
        &f.svc,
        "DescribeMetricFilters",
        json!({"metricName": "Other", "metricNamespace": "App"}),
    )
    .unwrap();
    assert_eq!(d["metricFilters"].as_array().unwrap().len(), 0);
    let g = call(&f.svc, "DescribeLogGroups", json!({})).unwrap();
    assert_eq!(g["logGroups"][0]["metricFilterCount"], 1);
    let m = call(
        &f.svc,
        "TestMetricFilter",
        json!({"filterPattern": "ERROR -healthcheck",
        "logEventMessages": ["ERROR disk", "INFO ok", "ERROR healthcheck"]}),
    )
    .unwrap();
    assert_eq!(
        m["matches"],
        json!([{"eventNumber": 1, "eventMessage": "ERROR disk", "extractedValues": {}}])
    );
    call(
        &f.svc,
        "DeleteMetricFilter",
        json!({"logGroupName": "/t", "filterName": "errors"}),
    )
    .unwrap();
    let e = call(
        &f.svc,
        "DeleteMetricFilter",
        json!({"logGroupName": "/t", "filterName": "errors"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");

    // Patterns need 3..=24 name characters per alternative.
    let e = call(
        &f.svc,
        "ListLogGroups",
        json!({"logGroupNamePattern": "^/t"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    call(
        &f.svc,
        "CreateLogGroup",
        json!({"logGroupName": "/other/app"}),
    )
    .unwrap();
    let l = call(
        &f.svc,
        "ListLogGroups",
        json!({"logGroupNamePattern": "^/oth|nothing"}),
    )
    .unwrap();
    assert_eq!(l["logGroups"][0]["logGroupName"], "/other/app");
    assert_eq!(l["logGroups"].as_array().unwrap().len(), 1);
    let l = call(&f.svc, "ListLogGroups", json!({})).unwrap();
    assert_eq!(
        l["logGroups"][1],
        json!({"logGroupName": "/t", "logGroupArn": arn, "logGroupClass": "STANDARD"})
    );
    call(
        &f.svc,
        "CreateLogStream",
        json!({"logGroupName": "/t", "logStreamName": "s"}),
    )
    .unwrap();
    call(
        &f.svc,
        "DescribeLogStreams",
        json!({"logGroupIdentifier": arn}),
    )
    .unwrap();
    let e = call(
        &f.svc,
        "DescribeLogStreams",
        json!({"logGroupIdentifier": format!("{arn}:*")}),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
}
