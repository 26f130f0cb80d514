"""CloudWatch Logs beyond the basics, through the real AWS CLI and boto3:
retention (enforced), tags (both APIs), ListLogGroups, sequence tokens,
logGroupIdentifier, metric filters and Logs Insights queries."""

import time

import botocore.exceptions
import pytest

DAY = 24 * 3600 * 1000


def now_ms():
    return int(time.time() * 1000)


def code(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def wait_query(logs, qid, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = logs.get_query_results(queryId=qid)
        if r["status"] not in ("Scheduled", "Running"):
            return r
        time.sleep(0.05)
    raise AssertionError(f"query {qid} still running after {timeout}s")


def rows(r):
    return [{f["field"]: f["value"] for f in row} for row in r["results"]]


def test_retention_expires_old_events(ferry_server_module):
    srv = ferry_server_module
    logs = srv.client("logs")
    g, s = "/e2e/retention", "s"
    logs.create_log_group(logGroupName=g)
    logs.create_log_stream(logGroupName=g, logStreamName=s)
    t = now_ms()
    old = [{"timestamp": t - 3 * DAY + i, "message": f"old-{i}"} for i in range(3)]
    r = logs.put_log_events(logGroupName=g, logStreamName=s, logEvents=old)
    assert "rejectedLogEventsInfo" not in r and r["nextSequenceToken"]
    # A sequence token is accepted and ignored, as CloudWatch does now.
    logs.put_log_events(logGroupName=g, logStreamName=s, sequenceToken="0",
                        logEvents=[{"timestamp": t, "message": "fresh"}])
    got = logs.get_log_events(logGroupName=g, logStreamName=s, startFromHead=True)["events"]
    assert [e["message"] for e in got] == ["old-0", "old-1", "old-2", "fresh"]

    c, msg = code(logs.put_retention_policy, logGroupName=g, retentionInDays=2)
    assert c == "InvalidParameterException" and "enum value set" in msg
    srv.aws("logs", "put-retention-policy", "--log-group-name", g, "--retention-in-days", "1")
    desc = srv.aws("logs", "describe-log-groups", "--log-group-name-prefix", g)["logGroups"][0]
    assert desc["retentionInDays"] == 1
    got = logs.get_log_events(logGroupName=g, logStreamName=s, startFromHead=True)["events"]
    assert [e["message"] for e in got] == ["fresh"]
    hits = logs.filter_log_events(logGroupName=g)["events"]
    assert [e["message"] for e in hits] == ["fresh"]
    # Too old for the retention now: refused with the index.
    r = logs.put_log_events(logGroupName=g, logStreamName=s, logEvents=[
        {"timestamp": t - 2 * DAY, "message": "late"}, {"timestamp": t + 1, "message": "ok"}])
    assert r["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1}

    srv.aws("logs", "delete-retention-policy", "--log-group-name", g)
    desc = srv.aws("logs", "describe-log-groups", "--log-group-name-prefix", g)["logGroups"][0]
    assert "retentionInDays" not in desc
    code_, _ = code(logs.put_retention_policy, logGroupName="/e2e/none", retentionInDays=1)
    assert code_ == "ResourceNotFoundException"


def test_tags_both_apis(ferry_server_module):
    srv = ferry_server_module
    logs = srv.client("logs")
    g = "/e2e/tags"
    srv.aws("logs", "create-log-group", "--log-group-name", g, "--tags", "team=core")
    arn = logs.describe_log_groups(logGroupNamePrefix=g)["logGroups"][0]["logGroupArn"]
    assert not arn.endswith(":*")
    srv.aws("logs", "tag-resource", "--resource-arn", arn, "--tags", "env=prod,tier=web")
    assert srv.aws("logs", "list-tags-log-group", "--log-group-name", g)["tags"] == {
        "team": "core", "env": "prod", "tier": "web"}
    logs.untag_log_group(logGroupName=g, tags=["tier"])
    logs.tag_log_group(logGroupName=g, tags={"owner": "me"})
    logs.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"env": "prod", "owner": "me"}
    # The `arn` DescribeLogGroups shows (with :*) is not a resource ARN.
    assert code(logs.list_tags_for_resource, resourceArn=arn + ":*")[0] == "ValidationException"
    assert code(logs.tag_resource, resourceArn=arn, tags={f"k{i}": "v" for i in range(49)})[0] == "TooManyTagsException"
    assert code(logs.tag_resource, resourceArn=arn, tags={"bad*key": "v"})[0] == "InvalidParameterException"
    missing = arn.replace(g, "/e2e/missing")
    assert code(logs.list_tags_for_resource, resourceArn=missing)[0] == "ResourceNotFoundException"


def test_list_log_groups_and_identifiers(ferry_server_module):
    srv = ferry_server_module
    logs = srv.client("logs")
    for g in ("/e2e/list/alpha", "/e2e/list/beta"):
        logs.create_log_group(logGroupName=g)
    out = srv.aws("logs", "list-log-groups", "--log-group-name-pattern", "^/e2e/list|zzz")["logGroups"]
    assert [x["logGroupName"] for x in out] == ["/e2e/list/alpha", "/e2e/list/beta"]
    out = logs.list_log_groups(logGroupNamePattern="beta")["logGroups"]
    assert out == [{"logGroupName": "/e2e/list/beta", "logGroupClass": "STANDARD",
                    "logGroupArn": out[0]["logGroupArn"]}]
    assert code(logs.list_log_groups, logGroupNamePattern="alp*a")[0] == "InvalidParameterException"
    arn = out[0]["logGroupArn"]
    logs.create_log_stream(logGroupName="/e2e/list/beta", logStreamName="s")
    streams = logs.describe_log_streams(logGroupIdentifier=arn)["logStreams"]
    assert [x["logStreamName"] for x in streams] == ["s"]
    assert code(logs.describe_log_streams, logGroupIdentifier=arn + ":*")[0] == "InvalidParameterException"
    assert code(logs.get_log_events, logGroupIdentifier=arn, logGroupName="/e2e/list/beta",
                logStreamName="s")[0] == "InvalidParameterException"
    logs.get_log_events(logGroupIdentifier=arn, logStreamName="s")


def test_metric_filters(ferry_server_module):
    srv = ferry_server_module
    logs = srv.client("logs")
    g = "/e2e/metrics"
    logs.create_log_group(logGroupName=g)
    srv.aws("logs", "put-metric-filter", "--log-group-name", g, "--filter-name", "errors",
            "--filter-pattern", "ERROR -healthcheck", "--metric-transformations",
            "metricName=Errors,metricNamespace=App,metricValue=1,defaultValue=0")
    logs.put_metric_filter(logGroupName=g, filterName="slow", filterPattern="\"slow request\"",
                           metricTransformations=[{"metricName": "Slow", "metricNamespace": "Other",
                                                   "metricValue": "1", "unit": "Count"}])
    fs = logs.describe_metric_filters(logGroupName=g)["metricFilters"]
    assert [f["filterName"] for f in fs] == ["errors", "slow"]
    assert fs[0]["metricTransformations"] == [{"metricName": "Errors", "metricNamespace": "App",
                                              "metricValue": "1", "defaultValue": 0.0}]
    assert [f["filterName"] for f in logs.describe_metric_filters(logGroupName=g, filterNamePrefix="sl")["metricFilters"]] == ["slow"]
    assert [f["filterName"] for f in logs.describe_metric_filters(metricName="Errors", metricNamespace="App")["metricFilters"]] == ["errors"]
    assert logs.describe_log_groups(logGroupNamePrefix=g)["logGroups"][0]["metricFilterCount"] == 2
    m = srv.aws("logs", "test-metric-filter", "--filter-pattern", "ERROR -healthcheck",
                "--log-event-messages", "ERROR disk full", "INFO fine", "ERROR healthcheck failed")["matches"]
    assert m == [{"eventNumber": 1, "eventMessage": "ERROR disk full", "extractedValues": {}}]
    m = logs.test_metric_filter(filterPattern='{ $.status >= 500 && $.req.path = "/api/*" }', logEventMessages=[
        '{"status": 503, "req": {"path": "/api/items"}}', '{"status": 200, "req": {"path": "/api/items"}}',
        '{"status": 500, "req": {"path": "/health"}}', "not json"])["matches"]
    assert m == [{"eventNumber": 1, "eventMessage": '{"status": 503, "req": {"path": "/api/items"}}',
                  "extractedValues": {"$.status": "503", "$.req.path": "/api/items"}}]
    line = '10.0.0.1 - alice [02/Dec/2026:10:00:00 +0000] "GET /index.html HTTP/1.1" 404 512'
    m = logs.test_metric_filter(filterPattern='[ip, id, user, ts, request = "*html*", status = 4*, bytes < 1000]',
                                logEventMessages=[line, line.replace(" 404 ", " 200 ")])["matches"]
    assert [x["eventNumber"] for x in m] == [1]
    assert m[0]["extractedValues"]["$user"] == "alice" and m[0]["extractedValues"]["$status"] == "404"
    assert code(logs.test_metric_filter, filterPattern="{ $.a = ", logEventMessages=["x"])[0] == "InvalidParameterException"
    logs.delete_metric_filter(logGroupName=g, filterName="slow")
    assert code(logs.delete_metric_filter, logGroupName=g, filterName="slow")[0] == "ResourceNotFoundException"
    assert code(logs.put_metric_filter, logGroupName="/e2e/nope", filterName="x", filterPattern="",
                metricTransformations=[{"metricName": "a", "metricNamespace": "b", "metricValue": "1"}])[0] == "ResourceNotFoundException"


@pytest.fixture(scope="module")
def insights_group(ferry_server_module):
    logs = ferry_server_module.client("logs")
    g = "/e2e/insights"
    logs.create_log_group(logGroupName=g)
    t0 = (now_ms() // 300_000) * 300_000 - 3_600_000  # a 5-minute boundary, an hour ago
    for stream, base in (("web-1", 0), ("web-2", 1)):
        logs.create_log_stream(logGroupName=g, logStreamName=stream)
        events = []
        for i in range(base, 20, 2):
            level = "ERROR" if i % 5 == 0 else "INFO"
            events.append({"timestamp": t0 + i * 60_000,
                           "message": f"{level} path=/p{i % 3} status={500 if level == 'ERROR' else 200} ms={i * 10}"})
        logs.put_log_events(logGroupName=g, logStreamName=stream, logEvents=events)
    return g, t0


def test_insights_queries(ferry_server_module, insights_group):
    logs = ferry_server_module.client("logs")
    g, t0 = insights_group
    window = {"logGroupName": g, "startTime": t0 // 1000 - 60, "endTime": t0 // 1000 + 3600}

    q = logs.start_query(queryString=(
        'fields @timestamp, @message, @logStream | parse @message "status=* " as status '
        "| filter status = 500 | sort @timestamp asc"), **window)["queryId"]
    r = wait_query(logs, q)
    assert r["status"] == "Complete"
    got = rows(r)
    assert [x["@message"] for x in got] == [f"ERROR path=/p{i % 3} status=500 ms={i * 10}" for i in (0, 5, 10, 15)]
    assert [x["@logStream"] for x in got] == ["web-1", "web-2", "web-1", "web-2"]
    assert all("@ptr" in x for x in got)
    assert r["statistics"]["recordsScanned"] == 20 and r["statistics"]["recordsMatched"] == 4
    assert r["statistics"]["bytesScanned"] > 0

    q = logs.start_query(queryString=(
        'parse @message "path=* status=* ms=*" as path, status, ms '
        "| stats count(*) as n, sum(ms) as total, avg(ms), min(ms), max(ms) by path | sort path"), **window)["queryId"]
    got = rows(wait_query(logs, q))
    # path /p0: i in 0,3,...,18 -> 7 events, ms sum 630
    assert got == [
        {"path": "/p0", "n": "7", "total": "630", "avg(ms)": "90", "min(ms)": "0", "max(ms)": "180"},
        {"path": "/p1", "n": "7", "total": "700", "avg(ms)": "100", "min(ms)": "10", "max(ms)": "190"},
        {"path": "/p2", "n": "6", "total": "570", "avg(ms)": "95", "min(ms)": "20", "max(ms)": "170"},
    ]

    q = logs.start_query(queryString="stats count(*) by bin(5m)", **window)["queryId"]
    got = rows(wait_query(logs, q))
    assert [x["count(*)"] for x in got] == ["5", "5", "5", "5"]
    assert got[0]["bin(5m)"] == time.strftime("%Y-%m-%d %H:%M:%S.000", time.gmtime(t0 / 1000))

    q = logs.start_query(queryString=(
        'filter @message like /ERROR|status=200/ and not @logStream in ["web-2"] and ms >= 100 '
        "| fields ms | sort ms desc | limit 3"), **window)["queryId"]
    assert [x["ms"] for x in rows(wait_query(logs, q))] == []  # ms is parsed only by `parse`
    q = logs.start_query(queryString=(
        'parse @message "ms=*" as ms | filter @message like /ERROR|status=200/ and not @logStream in ["web-2"] and ms >= 100 '
        "| fields ms | sort ms desc | limit 3"), **window)["queryId"]
    assert [x["ms"] for x in rows(wait_query(logs, q))] == ["180", "160", "140"]

    listed = logs.describe_queries(logGroupName=g)["queries"]
    assert listed[0]["queryId"] == q and listed[0]["status"] == "Complete"
    assert listed[0]["queryString"].startswith("parse @message")


def test_insights_errors_and_stop(ferry_server_module, insights_group):
    srv = ferry_server_module
    logs = srv.client("logs")
    g, t0 = insights_group
    window = {"logGroupName": g, "startTime": t0 // 1000 - 60, "endTime": t0 // 1000 + 3600}
    c, msg = code(logs.start_query, queryString="fields @message | filter status = ", **window)
    assert c == "MalformedQueryException" and "line 1 and position 35" in msg, msg
    err = srv.aws_error("logs", "start-query", "--log-group-name", g, "--start-time", "0", "--end-time", "1",
                        "--query-string", "bogus command")
    assert err.code == "MalformedQueryException" and "position 1" in err.message
    assert code(logs.start_query, queryString="fields @message", logGroupName="/e2e/none",
                startTime=0, endTime=1)[0] == "ResourceNotFoundException"
    assert code(logs.get_query_results, queryId="0000")[0] == "ResourceNotFoundException"

    q = logs.start_query(queryString="fields @message", **window)["queryId"]
    stopped = logs.stop_query(queryId=q)["success"]
    r = wait_query(logs, q)
    # Either the stop came first (Cancelled) or the query had finished.
    assert r["status"] == ("Cancelled" if stopped else "Complete")
    assert logs.stop_query(queryId=q)["success"] is False
    assert [x["status"] for x in logs.describe_queries(logGroupName=g, status=r["status"])["queries"]
            if x["queryId"] == q] == [r["status"]]
