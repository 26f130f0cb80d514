"""CloudWatch Logs through the real AWS CLI and boto3: groups, streams,
events, paging, filters, the AWS error shapes, and encryption at rest."""

import time

from conftest import state_files


def now_ms():
    return int(time.time() * 1000)


def test_cli_groups_streams_events(ferry_server_module):
    srv = ferry_server_module
    g, s = "/ecs/e2e-logs", "ecs/app/0123456789abcdef"
    srv.aws("logs", "create-log-group", "--log-group-name", g)
    err = srv.aws_error("logs", "create-log-group", "--log-group-name", g)
    assert err.code == "ResourceAlreadyExistsException"
    srv.aws("logs", "create-log-stream", "--log-group-name", g, "--log-stream-name", s)
    err = srv.aws_error("logs", "create-log-stream", "--log-group-name", "/nope", "--log-stream-name", s)
    assert err.code == "ResourceNotFoundException"

    t = now_ms()
    events = [f"timestamp={t + i},message=line-{i}" for i in range(5)]
    srv.aws("logs", "put-log-events", "--log-group-name", g, "--log-stream-name", s, "--log-events", *events)
    out = srv.aws("logs", "get-log-events", "--log-group-name", g, "--log-stream-name", s, "--start-from-head")
    assert [e["message"] for e in out["events"]] == [f"line-{i}" for i in range(5)]
    assert all(e["ingestionTime"] >= e["timestamp"] - 1000 for e in out["events"])

    groups = srv.aws("logs", "describe-log-groups", "--log-group-name-prefix", "/ecs/e2e")["logGroups"]
    assert [x["logGroupName"] for x in groups] == [g]
    streams = srv.aws("logs", "describe-log-streams", "--log-group-name", g)["logStreams"]
    assert streams[0]["logStreamName"] == s and streams[0]["lastEventTimestamp"] == t + 4

    hits = srv.aws("logs", "filter-log-events", "--log-group-name", g, "--filter-pattern", "line-3")["events"]
    assert [h["message"] for h in hits] == ["line-3"]

    err = srv.aws_error("logs", "get-log-events", "--log-group-name", g, "--log-stream-name", "missing")
    assert err.code == "ResourceNotFoundException"
    srv.aws("logs", "delete-log-group", "--log-group-name", g)
    err = srv.aws_error("logs", "describe-log-streams", "--log-group-name", g)
    assert err.code == "ResourceNotFoundException"


def test_boto3_paging_and_validation(ferry_server_module):
    srv = ferry_server_module
    logs = srv.client("logs")
    g, s = "/e2e/paging", "s"
    logs.create_log_group(logGroupName=g)
    logs.create_log_stream(logGroupName=g, logStreamName=s)
    t = now_ms()
    logs.put_log_events(logGroupName=g, logStreamName=s,
                        logEvents=[{"timestamp": t + i, "message": f"m{i}"} for i in range(25)])
    seen, token = [], None
    while True:
        kw = {"nextToken": token} if token else {"startFromHead": True}
        r = logs.get_log_events(logGroupName=g, logStreamName=s, limit=10, **kw)
        seen += [e["message"] for e in r["events"]]
        if r["nextForwardToken"] == token:
            break
        token = r["nextForwardToken"]
    assert seen == [f"m{i}" for i in range(25)]
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName=g, PaginationConfig={"PageSize": 7})
    assert sum(len(p["events"]) for p in pages) == 25

    import botocore.exceptions
    try:
        logs.put_log_events(logGroupName=g, logStreamName=s,
                            logEvents=[{"timestamp": t + 2, "message": "b"}, {"timestamp": t + 1, "message": "a"}])
        raise AssertionError("out-of-order events were accepted")
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidParameterException"
    try:
        logs.create_log_group(logGroupName="bad:name")
        raise AssertionError("a bad group name was accepted")
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidParameterException"


def test_log_events_are_encrypted_at_rest(ferry_server):
    srv = ferry_server
    secret = "card=4111111111111111-e2e"
    logs = srv.client("logs")
    logs.create_log_group(logGroupName="/e2e/secret")
    logs.create_log_stream(logGroupName="/e2e/secret", logStreamName="s")
    logs.put_log_events(logGroupName="/e2e/secret", logStreamName="s",
                        logEvents=[{"timestamp": now_ms(), "message": secret}])
    srv.restart()
    r = srv.client("logs").get_log_events(logGroupName="/e2e/secret", logStreamName="s")
    assert [e["message"] for e in r["events"]] == [secret]
    for path in state_files(srv):
        with open(path, "rb") as fh:
            assert secret.encode() not in fh.read(), f"plaintext log line in {path}"
