"""Driver for bench/fleet.sh: ECS request rates through one API replica and
through two sharing one PostgreSQL store, and RunTask-to-RUNNING on
PostgreSQL against the embedded store, in one run (issue 19).

It starts, and removes at the end whatever happens (Ctrl-C and SIGTERM
included):
- a PostgreSQL cluster of its own (tests/e2e/pg.py: a temporary directory,
  Unix socket only, fsync off);
- replica A (`--name fbench-a`, task network fbench-a, default VPC
  10.201.0.0/16), the fleet's only host: its agent runs every task;
- replica B (`--name fbench-b --no-agent`): an API replica only, so the two
  never hand out the same task addresses on this one machine; a task
  started through B is placed on A, as docs/fleet.md describes;
- a server on the embedded redb store (task network fbench-r,
  10.202.0.0/16) for the latency comparison.
All on 127.0.0.1 ports picked by the kernel; the servers run with
--stop-tasks-on-exit, so SIGTERM stops their tasks.

1. Requests/s: N client processes (one boto3 client each, SigV4-signed;
   processes, not threads, so the GIL does not cap the clients), for a
   fixed time, all to A or half to A and half to B, in R rounds each,
   alternating (the order swapped every round); the two/one ratio is the
   median of the rounds' ratios:
   - DescribeTasks of 10 running tasks;
   - RunTask of a cheap task (busybox `sleep`, platform 1.3.0: no KMS call
     and no encrypted volume; 0.25 vCPU/512 MiB/20 GiB on a host with high
     CPU, memory and storage overcommit so capacity does not run out). After each round the tasks
     are stopped and waited for until STOPPED. RunTask `failures` entries
     and errors are counted apart from the successes.
   Beside each rate: the CPU time the ferry servers and PostgreSQL spent
   per request, and how busy the machine's CPUs were.
2. RunTask-to-RUNNING: M tasks of the source document's task definition
   (examples/fargate-task-definition.json, platform 1.4.0; stopTimeout 2
   so that each can be stopped and waited for before the next), one at a
   time, alternating between the redb server and replica A (PostgreSQL),
   the order swapped every round; the time from the RunTask call to the
   first DescribeTasks that shows RUNNING, polled every 20 ms; p50 and p90.

The results go to stdout as markdown and to bench/results-fleet.md (with
the command, date, machine and notes) unless --no-write.
"""
import argparse
import datetime
import json
import multiprocessing
import os
import pathlib
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import SOURCE_LOG_GROUP, SOURCE_TD, FerryServer, import_httpd  # noqa: E402
from pg import PgCluster  # noqa: E402

FLEET_NET, FLEET_SUBNET = ("fbench-a", "fbench-b"), "10.201.0.0/16"
REDB_NET, REDB_SUBNET = "fbench-r", "10.202.0.0/16"
CHEAP_TD = {
    "family": "fbench-cheap", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
    "cpu": "256", "memory": "512",
    "containerDefinitions": [{"name": "app", "image": "httpd:2.4", "stopTimeout": 1,
                              "entryPoint": ["sh", "-c"], "command": ["sleep 3600"]}],
}
POLL = 0.02


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)] if xs else float("nan")


# -- CPU accounting ----------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid, children=False):
    """CPU seconds of a process (and of its reaped children if asked)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is the state (field 3): utime is field 14, cutime 16.
    t = int(fields[11]) + int(fields[12])
    if children:
        t += int(fields[13]) + int(fields[14])
    return t / TICK


def pg_cpu(pg):
    """CPU seconds of the cluster: the postmaster, what it reaped, and its
    live children (the backends and helpers)."""
    try:
        with open(os.path.join(pg.data, "postmaster.pid")) as f:
            master = int(f.readline())
    except OSError:
        return 0.0
    total = proc_cpu(master, children=True)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid == master:
            total += proc_cpu(int(d))
    return total


def machine_busy():
    """(busy, total) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class CpuMeter:
    def __init__(self, servers, pg):
        self.servers, self.pg = servers, pg

    def sample(self):
        return ([proc_cpu(s.proc.pid) for s in self.servers], pg_cpu(self.pg), machine_busy())

    @staticmethod
    def diff(a, b):
        servers = [y - x for x, y in zip(a[0], b[0])]
        busy = (b[2][0] - a[2][0]) / max(1, b[2][1] - a[2][1])
        return servers, b[1] - a[1], busy


# -- load --------------------------------------------------------------------

def client(endpoint, creds, region="us-east-1"):
    import boto3
    from botocore.config import Config
    return boto3.session.Session().client(
        "ecs", endpoint_url=endpoint, region_name=region, aws_access_key_id=creds[0],
        aws_secret_access_key=creds[1],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, proxies={},
                      max_pool_connections=2))


def worker(endpoint, creds, op, args, start_at, seconds, cap, counter, out):
    """One client process: `op` in a loop from start_at for `seconds` (or
    until `counter` reaches `cap`, for RunTask). Puts (ok, failures,
    errors, latencies, first error, end time) on `out`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ecs = client(endpoint, creds)
    call = getattr(ecs, op)
    ok = failures = errors = 0
    lat, first_err = [], None
    # One call before the clock starts: the connection is open and the
    # client warmed up (not counted).
    try:
        call(**args) if op == "describe_tasks" else ecs.list_clusters()
    except Exception as e:  # noqa: BLE001 - reported
        first_err = repr(e)
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + seconds
    while time.time() < deadline:
        if cap:
            with counter.get_lock():
                if counter.value >= cap:
                    break
                counter.value += 1
        t0 = time.monotonic()
        try:
            r = call(**args)
            lat.append(time.monotonic() - t0)
            if r.get("failures"):
                failures += 1
                first_err = first_err or json.dumps(r["failures"])[:300]
            else:
                ok += 1
        except Exception as e:  # noqa: BLE001 - reported
            errors += 1
            first_err = first_err or repr(e)[:300]
    out.put((ok, failures, errors, lat, first_err, time.time()))


class Load:
    """Client processes, kept so that cleanup can end them."""

    def __init__(self):
        self.ctx = multiprocessing.get_context("fork")
        self.procs = []

    def run(self, meter, targets, op, args, clients, seconds, cap=0):
        """`clients` processes spread round-robin over `targets`
        (endpoints); returns a dict of the totals, with the CPU `meter`'s
        figures from the start of the clock to the last client's end."""
        out = self.ctx.Queue()
        counter = self.ctx.Value("i", 0)
        # Time for every client to make its boto3 client and warm up.
        start_at = time.time() + 2 + 0.3 * clients
        self.procs = [self.ctx.Process(target=worker, args=(
            targets[i % len(targets)][0], targets[i % len(targets)][1], op, args, start_at, seconds, cap,
            counter, out), daemon=True) for i in range(clients)]
        for p in self.procs:
            p.start()
        while time.time() < start_at:
            time.sleep(0.005)
        before = meter.sample()
        res = [out.get(timeout=seconds + 120) for _ in self.procs]
        after = meter.sample()
        for p in self.procs:
            p.join(10)
        self.procs = []
        end = max(r[5] for r in res)
        return {"ok": sum(r[0] for r in res), "failures": sum(r[1] for r in res),
                "errors": sum(r[2] for r in res), "lat": [x for r in res for x in r[3]],
                "first_error": next((r[4] for r in res if r[4]), None),
                "elapsed": max(end - start_at, 1e-9), "cpu": CpuMeter.diff(before, after)}

    def kill(self):
        for p in self.procs:
            if p.is_alive():
                p.kill()
        self.procs = []


# -- tasks -------------------------------------------------------------------

def task_arns(ecs, status):
    arns, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        r = ecs.list_tasks(desiredStatus=status, **kw)
        arns += r["taskArns"]
        token = r.get("nextToken")
        if not token:
            return arns


def stop_all(ecs, timeout=300):
    """Stops every task of the default cluster and waits until all are
    STOPPED; returns the seconds it took and how many."""
    t0 = time.monotonic()
    arns = task_arns(ecs, "RUNNING")
    for arn in arns:
        ecs.stop_task(task=arn, reason="fleet bench")
    wait_status(ecs, arns, "STOPPED", timeout=timeout, poll=0.25)
    return time.monotonic() - t0, len(arns)


def wait_status(ecs, arns, status, timeout, poll):
    """Waits until every task of `arns` shows `status` (DescribeTasks, 100
    at a time); a task that stops while RUNNING is awaited ends the run."""
    deadline = time.monotonic() + timeout
    left = list(arns)
    while left:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(left)} tasks did not reach {status} in {timeout} s")
        for i in range(0, len(left), 100):
            for t in ecs.describe_tasks(tasks=left[i:i + 100])["tasks"]:
                if t["lastStatus"] == status:
                    left.remove(t["taskArn"])
                elif t["lastStatus"] == "STOPPED":
                    raise SystemExit(f"task stopped: {t.get('stopCode')}: {t.get('stoppedReason')}")
        if left:
            time.sleep(poll)


def to_running(ecs, netcfg):
    """One RunTask of the source task definition: seconds until the first
    DescribeTasks showing RUNNING (polled every 20 ms); the ARN."""
    t0 = time.monotonic()
    r = ecs.run_task(taskDefinition="fargate-task-definition", launchType="FARGATE",
                     networkConfiguration=netcfg)
    if r.get("failures"):
        raise SystemExit(f"RunTask failed: {r['failures']}")
    arn = r["tasks"][0]["taskArn"]
    deadline = t0 + 120
    while time.monotonic() < deadline:
        t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
        if t["lastStatus"] == "RUNNING":
            return time.monotonic() - t0, arn
        if t["lastStatus"] == "STOPPED":
            raise SystemExit(f"task stopped: {t.get('stopCode')}: {t.get('stoppedReason')}")
        time.sleep(POLL)
    raise SystemExit("a task did not reach RUNNING in 120 s")


# -- the run -----------------------------------------------------------------

def merge(rs):
    """The rounds of one configuration as one: counts, latencies and CPU
    added up; `ratios` keeps each round's req/s for the pairwise ratios."""
    servers = [sum(r["cpu"][0][i] for r in rs) for i in range(len(rs[0]["cpu"][0]))]
    return {"ok": sum(r["ok"] for r in rs), "failures": sum(r["failures"] for r in rs),
            "errors": sum(r["errors"] for r in rs), "lat": [x for r in rs for x in r["lat"]],
            "elapsed": sum(r["elapsed"] for r in rs),
            "cpu": (servers, sum(r["cpu"][1] for r in rs),
                    sum(r["cpu"][2] * r["elapsed"] for r in rs) / sum(r["elapsed"] for r in rs)),
            "rates": [r["ok"] / r["elapsed"] for r in rs]}


def rate_rows(name, ones, twos, per):
    """Markdown rows for one operation (its rounds through one replica and
    through two), the median of the rounds' two/one ratios, and its range."""
    rows = []
    one, two = merge(ones), merge(twos)
    for label, r in (("A", one), ("A + B", two)):
        servers, pg_s, busy = r["cpu"]
        n = max(1, r["ok"] + r["failures"] + r["errors"])
        cpu_ms = "; ".join(f"{x / n * 1000:.2f}" for x in servers)
        rounds = ", ".join(f"{x:.0f}" for x in r["rates"])
        rows.append(f"| {name} | {label} | {r['ok'] / r['elapsed']:.0f} ({rounds}) | "
                    f"{r['ok'] * per / r['elapsed']:.0f} | "
                    f"{pct(r['lat'], 0.5) * 1000:.1f} | {pct(r['lat'], 0.99) * 1000:.1f} | "
                    f"{r['failures']} | {r['errors']} | {cpu_ms} | {pg_s / n * 1000:.2f} | {busy * 100:.0f} % |")
    ratios = [y / max(1e-9, x) for x, y in zip(one["rates"], two["rates"])]
    return rows, statistics.median(ratios), min(ratios), max(ratios)


def measure(load, meter, targets, op, args, clients, seconds, cap=0):
    r = load.run(meter, targets, op, args, clients, seconds, cap)
    if r["first_error"]:
        print(f"  first error/failure: {r['first_error']}", flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8, help="client processes (default 8)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of each rate measurement, alternating one replica and two (default 3)")
    ap.add_argument("--describe-seconds", type=float, default=5, help="per DescribeTasks round (default 5)")
    ap.add_argument("--run-seconds", type=float, default=3, help="per RunTask round (default 3)")
    ap.add_argument("--run-cap", type=int, default=250,
                    help="most RunTask calls in one round, so capacity and the stop wait stay bounded "
                         "(default 250)")
    ap.add_argument("--tasks", type=int, default=15,
                    help="RunTask-to-RUNNING: tasks per store, one at a time (default 15)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results-fleet.md"))
    ap.add_argument("--no-write", action="store_true", help="print only; do not write --out")
    a = ap.parse_args()

    # SIGTERM cleans up as Ctrl-C does.
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    cmd = " ".join(["bench/fleet.sh", *(shlex.quote(x) for x in sys.argv[1:])])
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.monotonic()
    root = tempfile.mkdtemp(prefix="ferry-bench-fleet-", dir="/var/tmp")
    load = Load()
    pg = None
    servers = []
    try:
        pg = PgCluster()
        root_key = os.path.join(root, "root.key")
        common = ["--task-subnet", FLEET_SUBNET]
        # A is the fleet's only host; generous overcommit (CPU, memory, and
        # disk: each task reserves 20 GiB of sparse ephemeral storage) so
        # the RunTask rounds do not run out of capacity (the tasks sleep).
        srv_a = FerryServer(os.path.join(root, "a", "data"), pg=pg, root_key=root_key, extra_args=[
            *common, "--task-network", FLEET_NET[0], "--name", "fbench-a",
            "--cpu-overcommit", "64", "--memory-overcommit", "16", "--storage-overcommit", "1000"])
        srv_b = FerryServer(os.path.join(root, "b", "data"), pg=pg, root_key=root_key, extra_args=[
            *common, "--task-network", FLEET_NET[1], "--name", "fbench-b", "--no-agent"])
        srv_r = FerryServer(os.path.join(root, "r", "data"), store="redb", extra_args=[
            "--task-subnet", REDB_SUBNET, "--task-network", REDB_NET, "--name", "fbench-r"])
        for d in ("a", "b", "r"):
            os.makedirs(os.path.join(root, d))
        # One after the other: A creates the store's identity and root key.
        for s in (srv_a, srv_b, srv_r):
            s.start()
            servers.append(s)
        for s in (srv_a, srv_r):
            import_httpd(s, pathlib.Path(root))
        ecs_a, ecs_r = srv_a.client("ecs"), srv_r.client("ecs")
        with open(SOURCE_TD) as f:
            source_td = json.load(f)
        # Its shell (PID 1) ignores SIGTERM, so a stop would wait out the
        # default 30 s stopTimeout: 2 s instead, so that each task can be
        # stopped and waited for before the next starts (the start path is
        # the same).
        source_td["containerDefinitions"][0]["stopTimeout"] = 2
        for s, ecs in ((srv_a, ecs_a), (srv_r, ecs_r)):
            s.client("logs").create_log_group(logGroupName=SOURCE_LOG_GROUP)
            ecs.register_task_definition(**source_td)
        ecs_a.register_task_definition(**CHEAP_TD)
        netcfg_a, netcfg_r = srv_a.network_configuration, srv_r.network_configuration
        creds = srv_a.credentials()
        assert srv_b.credentials() == creds, "the replicas wrote different credentials"
        ta, tb = (srv_a.endpoint, creds), (srv_b.endpoint, creds)
        meter = CpuMeter([srv_a, srv_b], pg)
        host = (f"{os.cpu_count()} cores, Linux {os.uname().release}, "
                f"PostgreSQL {pg.bin.split('/')[-2]}")
        load_before = " ".join(open("/proc/loadavg").read().split()[:3])
        print(f"host: {host}; load average before: {load_before}", flush=True)

        # 1a. DescribeTasks of 10 running tasks.
        r = ecs_a.run_task(taskDefinition="fbench-cheap", launchType="FARGATE", platformVersion="1.3.0",
                           count=10, networkConfiguration=netcfg_a)
        if r.get("failures"):
            raise SystemExit(f"RunTask failed: {r['failures']}")
        ten = [t["taskArn"] for t in r["tasks"]]
        wait_status(ecs_a, ten, "RUNNING", timeout=180, poll=0.25)
        dargs = {"tasks": ten}
        # Rounds alternate between one replica and two, the order swapped
        # every round, so drift in the machine's load hits both alike.
        def rounds(what, op, args, seconds, cap=0, after=None):
            res = {1: [], 2: []}
            for i in range(a.rounds):
                for n in ((1, 2) if i % 2 == 0 else (2, 1)):
                    print(f"{what}, round {i + 1}/{a.rounds}, {'A' if n == 1 else 'A + B'} ...", flush=True)
                    res[n].append(measure(load, meter, [ta] if n == 1 else [ta, tb], op, args,
                                          a.clients, seconds, cap))
                    if after:
                        after()
            return res[1], res[2]

        d1, d2 = rounds("DescribeTasks x10", "describe_tasks", dargs, a.describe_seconds)
        stopped, _ = stop_all(ecs_a)

        # 1b. RunTask of the cheap task; stop and wait after each round.
        rargs = {"taskDefinition": "fbench-cheap", "launchType": "FARGATE", "platformVersion": "1.3.0",
                 "networkConfiguration": netcfg_a}
        stops = []

        def stop_round():
            stops.append(stop_all(ecs_a))
            print(f"  stopped {stops[-1][1]} tasks in {stops[-1][0]:.1f} s", flush=True)

        r1, r2 = rounds("RunTask", "run_task", rargs, a.run_seconds, a.run_cap, stop_round)

        # 2. RunTask-to-RUNNING, redb vs PostgreSQL, alternating.
        print(f"RunTask to RUNNING, {a.tasks} tasks per store ...", flush=True)
        lat = {"redb": [], "postgresql": []}
        runs = {"redb": (ecs_r, netcfg_r), "postgresql": (ecs_a, netcfg_a)}
        for i in range(a.tasks):
            for kind in (("redb", "postgresql") if i % 2 == 0 else ("postgresql", "redb")):
                ecs, net = runs[kind]
                took, arn = to_running(ecs, net)
                lat[kind].append(took)
                ecs.stop_task(task=arn, reason="fleet bench")
                wait_status(ecs, [arn], "STOPPED", timeout=120, poll=0.1)
        load_after = " ".join(open("/proc/loadavg").read().split()[:3])

        # The report.
        lines = [
            "| operation | through | req/s (each round) | tasks/s | p50 ms | p99 ms | RunTask failures | errors | "
            "ferry CPU ms/req (A; B) | PostgreSQL CPU ms/req | machine CPU busy |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        drows, dratio, dlo, dhi = rate_rows("DescribeTasks (10 tasks)", d1, d2, 10)
        rrows, rratio, rlo, rhi = rate_rows("RunTask (1 task, 1.3.0)", r1, r2, 1)
        lines += drows + rrows
        lines += ["", f"Two replicas / one, median of the {a.rounds} rounds' ratios: DescribeTasks "
                      f"**{dratio:.2f}** ({dlo:.2f}-{dhi:.2f}), RunTask **{rratio:.2f}** ({rlo:.2f}-{rhi:.2f}).",
                  "",
                  "| RunTask to RUNNING (source task definition, 1.4.0) | tasks | p50 ms | p90 ms | min ms | max ms |",
                  "|---|---:|---:|---:|---:|---:|"]
        for kind, label in (("redb", "embedded store (redb)"), ("postgresql", "PostgreSQL (replica A)")):
            xs = lat[kind]
            lines.append(f"| {label} | {len(xs)} | {pct(xs, 0.5) * 1000:.0f} | {pct(xs, 0.9) * 1000:.0f} | "
                         f"{min(xs) * 1000:.0f} | {max(xs) * 1000:.0f} |")
        ratio = pct(lat["postgresql"], 0.5) / pct(lat["redb"], 0.5)
        lines += ["", f"PostgreSQL / redb p50: **{ratio:.2f}** "
                      f"(p90 {pct(lat['postgresql'], 0.9) / pct(lat['redb'], 0.9):.2f})."]
        lines += ["", "Stopping each RunTask round's tasks until all were STOPPED: "
                      + ", ".join(f"{n} in {t:.1f} s" for t, n in stops)
                      + f"; the DescribeTasks set, {stopped:.1f} s.",
                  f"Load average (1, 5, 15 min) before: {load_before}; after: {load_after}. "
                  f"Whole run: {time.monotonic() - t_start:.0f} s."]
        table = "\n".join(lines)
        print("\n" + table, flush=True)
        if not a.no_write:
            write_results(a, cmd, started, host, table)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr, flush=True)
        raise SystemExit(130)
    finally:
        # Cleanup must not be cut short by a second signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        load.kill()
        rcs = []
        # B (no tasks) first, then the hosts: --stop-tasks-on-exit stops
        # their tasks before they exit.
        for s in reversed(servers):
            try:
                rcs.append((s.data_dir, s.stop(timeout=180)))
            except Exception as e:  # noqa: BLE001 - go on cleaning up
                print(f"stopping {s.data_dir}: {e!r}", file=sys.stderr)
        if pg is not None:
            pg.close()
        keep = os.environ.get("FLEET_BENCH_KEEP_LOGS")
        if keep:
            for d in ("a", "b", "r"):
                src = os.path.join(root, d, "server.log")
                if os.path.exists(src):
                    shutil.copy(src, f"{keep}.{d}.log")
        shutil.rmtree(root, ignore_errors=True)
        bad = [(d, rc) for d, rc in rcs if rc != 0]
        if bad:
            print(f"servers exited non-zero on SIGTERM: {bad}", file=sys.stderr)


def write_results(a, cmd, started, host, table):
    notes = f"""# Fleet: request rates through one and two replicas, RunTask-to-RUNNING on PostgreSQL

`{cmd}` (as root, release build), {started:%Y-%m-%d %H:%M} UTC, on {host}.

One PostgreSQL cluster of the bench's own (Unix socket, fsync off: tests/e2e/pg.py), replica A
(`--name fbench-a`, the only host: its agent runs every task) and replica B (`--no-agent`, an API
replica only, so two hosts on one machine never hand out the same addresses; a task started through B
is placed on A) sharing it, and a server on the embedded redb store, all on 127.0.0.1.

Request rates: {a.clients} client processes (one boto3 client each, every request SigV4-signed; processes,
not threads, so Python's GIL does not cap the clients), all to A, or half to A and half to B, in
{a.rounds} rounds each, alternating (the order swapped every round, so drift in the machine's load hits
both alike); the ratio is the median of the rounds' two / one ratios;
DescribeTasks of the same 10 running tasks for {a.describe_seconds:g} s per round, RunTask of a cheap task
(busybox `sleep`, platform 1.3.0: no KMS call, no encrypted volume; A runs with `--cpu-overcommit 64
--memory-overcommit 16 --storage-overcommit 1000` so that capacity does not run out) for
{a.run_seconds:g} s per round (at most {a.run_cap} calls), the tasks stopped and waited for until STOPPED after each round. req/s counts
successful calls only; RunTask `failures` entries and errors are counted apart. CPU ms/req: the CPU time
the ferry processes and PostgreSQL (postmaster and backends) spent during the round over the calls made.

RunTask to RUNNING: the source document's task definition (examples/fargate-task-definition.json,
platform 1.4.0: a 20 GiB encrypted volume; its container given `stopTimeout` 2, as its shell ignores
SIGTERM and each stop would otherwise wait 30 s), one task at a time, alternating between the redb server
and replica A with the order swapped every round, each stopped (and waited for) before the next; the
time from the RunTask call to the first DescribeTasks showing RUNNING, polled every 20 ms.

{table}

Notes:
- The machine was shared with other work during the run (see the load average), so absolute figures
  swing between runs; compare within the run.
- Everything, the clients included, shares the machine's {os.cpu_count()} cores, and B runs on the same
  cores as A: a second replica adds no CPU here, so "two / one" says what a second process and the
  shared store cost or save on one machine, not what a second machine adds. The CPU columns show where
  the time goes; the boto3 clients take most of it (the "machine CPU busy" column is near 100 % when the
  clients saturate the cores).
- RunTask's rate includes the agent starting each task in the background on A (RunTask returns when the
  task is recorded and placed; the start runs beside the next calls).
"""
    with open(a.out, "w") as f:
        f.write(notes)
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
