"""Driver for bench/efs.sh: fio inside one task, on its EFS volume and on
its ephemeral storage, alternating job by job in the same run."""
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import FerryServer, NETCFG, import_httpd  # noqa: E402

SIZE = os.environ.get("BENCH_SIZE", "512m")
RUNTIME = os.environ.get("BENCH_RUNTIME", "5")
JOBS = [  # name rw bs iodepth extra
    ("seqwrite", "write", "1M", 8, ""),
    ("seqread", "read", "1M", 8, ""),
    ("randread", "randread", "4k", 16, f"--time_based --runtime={RUNTIME}"),
    ("randwrite", "randwrite", "4k", 16, f"--time_based --runtime={RUNTIME}"),
]
TARGETS = [("efs", "/efs"), ("ephemeral", "/scratch")]
GROUP = "/bench/efs"


def script(reps):
    lines = ["set -e"]
    for rep in range(reps):
        for name, rw, bs, depth, extra in JOBS:
            for target, d in TARGETS:
                fio = (f"fio --name={name} --directory={d} --filename=fio.dat --rw={rw} --bs={bs} "
                       f"--iodepth={depth} --ioengine=libaio --direct=1 --numjobs=1 --group_reporting "
                       f"--size={SIZE} {extra} --output-format=json")
                lines.append(f"echo \"@@ {target} {name} {rep} $({fio} | tr -d '\\n')\"")
        lines.append("rm -f /efs/fio.dat /scratch/fio.dat")
    return "\n".join(lines)


def main(reps):
    root = tempfile.mkdtemp(prefix="ferry-bench-efs-")
    srv = FerryServer(os.path.join(root, "data"))
    srv.start()
    try:
        import_httpd(srv, pathlib.Path(root), fmt="docker", name="fio:bench", extra=["--with-fio"])
        fs = srv.aws("efs", "create-file-system", "--creation-token", "bench")["FileSystemId"]
        td = {"family": "bench-efs", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
              "cpu": "1024", "memory": "2048",
              "volumes": [{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": fs}},
                          {"name": "scratch"}],
              "containerDefinitions": [{
                  "name": "fio", "image": "fio:bench", "essential": True, "stopTimeout": 2,
                  "entryPoint": ["sh", "-c"], "command": [script(reps)],
                  "mountPoints": [{"sourceVolume": "efs", "containerPath": "/efs"},
                                  {"sourceVolume": "scratch", "containerPath": "/scratch"}],
                  "logConfiguration": {"logDriver": "awslogs", "options": {
                      "awslogs-group": GROUP, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "b",
                      "awslogs-create-group": "true"}}}]}
        p = pathlib.Path(root) / "td.json"
        p.write_text(json.dumps(td))
        srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
        arn = srv.aws("ecs", "run-task", "--task-definition", "bench-efs", "--launch-type", "FARGATE",
                      "--network-configuration", NETCFG)["tasks"][0]["taskArn"]
        while True:
            t = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
            if t["lastStatus"] == "STOPPED":
                break
            time.sleep(1)
        stream = f"b/fio/{arn.rsplit('/', 1)[1]}"
        events, token = [], None
        while True:
            args = ["--log-group-name", GROUP, "--log-stream-name", stream, "--start-from-head"]
            if token:
                args += ["--next-token", token]
            r = srv.aws("logs", "get-log-events", *args)
            events += r["events"]
            if not r["events"] or r.get("nextForwardToken") == token:
                break
            token = r.get("nextForwardToken")
        if t["containers"][0].get("exitCode") != 0:
            msgs = "\n".join(e["message"][:300] for e in events)
            raise SystemExit(f"bench task failed: {t.get('stoppedReason')} exit "
                             f"{t['containers'][0].get('exitCode')}\n{msgs}")
        res = {}
        for e in events:
            m = e["message"]
            if not m.startswith("@@ "):
                continue
            _, target, name, _rep, js = m.split(" ", 4)
            j = json.loads(js)["jobs"][0]
            side = j["write"] if "write" in name else j["read"]
            res.setdefault((target, name), []).append((side["bw"] / 1024, side["iops"]))
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)

    print("## EFS benchmark: persistent file system vs ephemeral storage\n")
    print(f"{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, {os.uname().release}, {os.cpu_count()} CPUs "
          f"shared with other jobs. fio (host binary, make_httpd_image.py --with-fio) inside one task, libaio "
          f"direct=1, file {SIZE}, random jobs {RUNTIME}s; each job runs on the task's EFS volume "
          f"(/efs, encrypted file system, no access point) and then on its ephemeral storage (/scratch, "
          f"a volume on the task's LUKS2 volume), alternating; median of {reps} rounds.\n")
    print("| job | EFS (MB/s / IOPS) | ephemeral (MB/s / IOPS) | EFS / ephemeral |")
    print("|---|---:|---:|---:|")
    for name, *_ in JOBS:
        e = res.get(("efs", name), [])
        s = res.get(("ephemeral", name), [])
        if not e or not s:
            print(f"| {name} | missing | missing | - |")
            continue
        eb, ei = statistics.median(x[0] for x in e), statistics.median(x[1] for x in e)
        sb, si = statistics.median(x[0] for x in s), statistics.median(x[1] for x in s)
        print(f"| {name} | {eb:.0f} / {ei:.0f} | {sb:.0f} / {si:.0f} | {eb / sb:.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
