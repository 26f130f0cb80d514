"""Driver for bench/services.sh (uses the e2e helpers)."""
import json, os, shutil, statistics, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import FerryServer, NETCFG, import_httpd  # noqa: E402

TD = {"family": "bench-svc", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
      "cpu": "256", "memory": "512",
      "containerDefinitions": [{"name": "app", "image": "httpd:2.4", "stopTimeout": 2,
                                "entryPoint": ["sh", "-c"], "command": ["sleep 3600"]}]}


def steady(srv, name):
    while True:
        s = srv.aws("ecs", "describe-services", "--services", name)["services"][0]
        d = s["deployments"]
        if len(d) == 1 and d[0]["rolloutState"] == "COMPLETED" and s["runningCount"] == 5 \
                and "steady state" in s["events"][0]["message"]:
            return
        time.sleep(0.1)


def main(rounds):
    root = tempfile.mkdtemp(prefix="ferry-bench-svc-")
    srv = FerryServer(os.path.join(root, "data"))
    srv.start()
    try:
        import pathlib
        import_httpd(srv, pathlib.Path(root))
        td = pathlib.Path(root) / "td.json"
        td.write_text(json.dumps(TD))
        srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{td}")
        t0 = time.time()
        srv.aws("ecs", "create-service", "--service-name", "b", "--task-definition", "bench-svc",
                "--desired-count", "5", "--network-configuration", NETCFG)
        steady(srv, "b")
        base = time.time() - t0
        times = []
        for _ in range(rounds):
            t0 = time.time()
            srv.aws("ecs", "update-service", "--service", "b", "--force-new-deployment")
            steady(srv, "b")
            times.append(time.time() - t0)
        med = statistics.median(times)
        print(f"initial 5-task rollout (baseline): {base:.2f} s")
        print(f"force-new-deployment to steady state, {rounds} rounds: "
              + ", ".join(f"{t:.2f}" for t in times) + f" s; median {med:.2f} s")
        print(f"ratio redeploy/initial: {med / base:.2f}")
        srv.aws("ecs", "delete-service", "--service", "b", "--force")
        deadline = time.time() + 60
        while time.time() < deadline and srv.aws("ecs", "describe-services", "--services", "b")["services"][0]["status"] != "INACTIVE":
            time.sleep(0.3)
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
