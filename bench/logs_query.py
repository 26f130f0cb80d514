"""Driver for bench/logs.sh: a Logs Insights query over 1,000,000 events
next to FilterLogEvents over the same events, same server, same run.

Loads N events (default 1,000,000) into 4 streams of one group with
PutLogEvents batches of 10,000 (~50 bytes a message, under CloudWatch's
1 MiB request limit), spread over the last 24 hours; then times, each
ROUNDS times: an Insights stats query (parse + filter + stats by bin),
an Insights search (filter like + sort + limit), and FilterLogEvents
for the same search (every page). Query times run from StartQuery to the
GetQueryResults that says Complete (polled every 10 ms).
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import FerryServer  # noqa: E402


def timed_query(logs, group, q, start, end):
    t = time.perf_counter()
    qid = logs.start_query(logGroupName=group, queryString=q, startTime=start, endTime=end, limit=10000)["queryId"]
    while True:
        r = logs.get_query_results(queryId=qid)
        if r["status"] not in ("Scheduled", "Running"):
            break
        time.sleep(0.01)
    return time.perf_counter() - t, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-logs.") as d:
        srv = FerryServer(os.path.join(d, "data"))
        srv.start()
        try:
            run(srv, a.events, a.rounds)
        finally:
            srv.stop()


def run(srv, n, rounds):
    logs = srv.client("logs", read_timeout=300)
    g = "/bench/insights"
    logs.create_log_group(logGroupName=g)
    streams = [f"app/web/{i}" for i in range(4)]
    for s in streams:
        logs.create_log_stream(logGroupName=g, logStreamName=s)
    now = int(time.time() * 1000)
    t0 = now - 24 * 3600 * 1000
    step = (24 * 3600 * 1000 - 60_000) // n
    batch = 10_000
    t = time.perf_counter()
    for b in range(0, n, batch):
        s = streams[(b // batch) % len(streams)]
        events = []
        for i in range(b, min(b + batch, n)):
            status = 500 if i % 97 == 0 else 200
            events.append({"timestamp": t0 + i * step,
                           "message": f"GET /items/{i % 1000} status={status} ms={i % 250} user=user-{i % 10000}"})
        r = logs.put_log_events(logGroupName=g, logStreamName=s, logEvents=events)
        assert "rejectedLogEventsInfo" not in r, r
    load_s = time.perf_counter() - t
    print(f"loaded {n} events in {load_s:.1f} s ({n / load_s:,.0f} events/s, PutLogEvents batches of {batch})")
    start, end = t0 // 1000 - 1, now // 1000 + 1
    stats_q = 'parse @message "status=* ms=* " as status, ms | filter status = 500 | stats count(*) as errors, avg(ms) by bin(1h)'
    search_q = 'fields @timestamp, @message | filter @message like "user=user-4242" | sort @timestamp desc | limit 200'
    expected_errors = sum(1 for i in range(n) if i % 97 == 0)
    expected_hits = sum(1 for i in range(n) if i % 10000 == 4242)
    res = {"stats": [], "search": [], "filter": []}
    for _ in range(rounds):
        dt, r = timed_query(logs, g, stats_q, start, end)
        assert r["status"] == "Complete", r["status"]
        total = sum(int(f["value"]) for row in r["results"] for f in row if f["field"] == "errors")
        assert total == expected_errors, (total, expected_errors)
        assert r["statistics"]["recordsScanned"] == n
        res["stats"].append(dt)
        dt, r = timed_query(logs, g, search_q, start, end)
        assert r["status"] == "Complete" and len(r["results"]) == min(200, expected_hits), len(r["results"])
        res["search"].append(dt)
        t = time.perf_counter()
        hits, token = 0, None
        while True:
            kw = {"nextToken": token} if token else {}
            p = logs.filter_log_events(logGroupName=g, filterPattern='user=user-4242', **kw)
            hits += len(p["events"])
            token = p.get("nextToken")
            if not token:
                break
        res["filter"].append(time.perf_counter() - t)
        assert hits == expected_hits, (hits, expected_hits)
    print()
    print(f"| over {n:,} events ({rounds} rounds) | best | median | worst |")
    print("|---|---|---|---|")
    names = {"stats": f"Insights `{stats_q}`", "search": f"Insights `{search_q}`",
             "filter": 'FilterLogEvents `user=user-4242` (all pages)'}
    for k in ("stats", "search", "filter"):
        v = sorted(res[k])
        print(f"| {names[k].replace('|', '&#124;')} | {v[0]:.2f} s | {v[len(v) // 2]:.2f} s | {v[-1]:.2f} s |")


if __name__ == "__main__":
    main()
