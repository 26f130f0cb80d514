"""A server as a host (issue 19, "Agents", control-plane half): its size
and overcommit ratios bound what RunTask places on it, a task that fits
nowhere is a RESOURCE:CPU / RESOURCE:MEMORY failure as on ECS, and a server
started with --no-agent answers the API but runs no task.
"""

import os
import subprocess

from conftest import SOURCE_TD, create_source_log_group, ferry_bin, fresh_server, import_httpd, wait_status

from test_ecs_run import register_doc, run_family


def cores():
    """The CPUs this process may use (what the server counts)."""
    return len(os.sched_getaffinity(0))


def mem_total_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_no_agent_replica_answers_and_places_nothing(tmp_path):
    for srv in fresh_server(extra_args=["--no-agent"]):
        srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
        assert srv.aws("ecs", "describe-clusters")["clusters"][0]["clusterName"] == "default"
        out = srv.aws("ecs", "run-task", "--task-definition", "fargate-task-definition",
                      "--launch-type", "FARGATE", "--network-configuration", srv.netcfg)
        assert out["tasks"] == []
        f = out["failures"][0]
        assert f["reason"] == "RESOURCE:CPU", f
        assert "no ferry host is live" in f["detail"], f
        assert "arn" not in f, f
        assert srv.aws("ecs", "list-tasks")["taskArns"] == []
        # No agent: no image admin socket.
        assert not os.path.exists(os.path.join(srv.data_dir, "run", "admin.sock"))


def test_capacity_is_the_hosts_size_times_its_overcommit(tmp_path):
    # Room for two source tasks (256 units each) by CPU on a machine of up
    # to 5 cores (more at the smallest ratio, 0.1), and 3000 MiB of memory.
    cpu_ratio = max(0.5 / cores(), 0.1) + 1e-6
    room = int(cores() * 1024 * cpu_ratio) // 256
    assert room + 1 <= 10, f"{cores()} cores: too many tasks for one RunTask"
    mem_ratio = 3000 / mem_total_mib() + 1e-6
    args = ["--cpu-overcommit", f"{cpu_ratio:.7f}", "--memory-overcommit", f"{mem_ratio:.7f}",
            "--name", "e2e-host.1"]
    for srv in fresh_server(extra_args=args):
        import_httpd(srv, tmp_path)
        create_source_log_group(srv)
        srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
        # A task bigger than the host's memory fails at once; nothing runs.
        register_doc(srv, tmp_path, {
            "family": "big-memory", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "512", "memory": "4096",
            "containerDefinitions": [{"name": "web", "image": "httpd:2.4"}]})
        out = srv.aws("ecs", "run-task", "--task-definition", "big-memory", "--launch-type", "FARGATE",
                      "--network-configuration", srv.netcfg)
        assert out["tasks"] == [] and out["failures"][0]["reason"] == "RESOURCE:MEMORY", out
        assert "4096 MiB" in out["failures"][0]["detail"]
        # One more asked than there is room for: the last is RESOURCE:CPU.
        out = srv.aws("ecs", "run-task", "--task-definition", "fargate-task-definition",
                      "--count", str(room + 1), "--launch-type", "FARGATE",
                      "--network-configuration", srv.netcfg)
        assert len(out["tasks"]) == room, out
        assert [f["reason"] for f in out["failures"]] == ["RESOURCE:CPU"], out
        assert "256 CPU units" in out["failures"][0]["detail"]
        arns = [t["taskArn"] for t in out["tasks"]]
        for arn in arns:
            wait_status(srv, arn, "RUNNING")
        # A stopped task gives its room back.
        srv.aws("ecs", "stop-task", "--task", arns[0])
        wait_status(srv, arns[0], "STOPPED")
        again = run_family(srv, "fargate-task-definition")
        wait_status(srv, again, "RUNNING")
        for arn in arns[1:] + [again]:
            srv.aws("ecs", "stop-task", "--task", arn)
        for arn in arns[1:] + [again]:
            wait_status(srv, arn, "STOPPED")


def test_a_bad_host_name_or_subnet_is_refused(tmp_path):
    for args, needle in ((["--name", "no spaces"], "1 to 64"),
                         (["--name", "x" * 65], "1 to 64"),
                         (["--subnet", "10.1.0.7/16"], "host bits"),
                         (["--no-agent", "--subnet", "10.1.0.0/16"], "cannot be used with"),
                         (["--cpu-overcommit", "0"], "between 0.1 and 10000")):
        p = subprocess.run([ferry_bin(), "server", "--data-dir", str(tmp_path / "d"),
                            "--listen", "127.0.0.1:0", *args],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0, args
        assert needle in p.stderr, (args, p.stderr)
        # Refused before anything was made.
        assert not (tmp_path / "d").exists()
