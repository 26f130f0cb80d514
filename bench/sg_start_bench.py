"""Driver for bench/sg_start.sh: what security groups cost a task's start.

Through the public API of a `ferry server` with boto3, as a user would:
tasks of one definition alternate between two network configurations,
one at a time (each stopped before the next), and each start is timed
from the RunTask call to DescribeTasks showing RUNNING (polled every 5 ms):

- "default group": the VPC's default security group alone;
- "5 groups, 100 rules": five groups of twenty ingress rules each (ports,
  CIDRs, and the other groups as sources), with `--members` long-running
  tasks already in those groups, so every start re-renders a firewall with
  members in every group set.

The ratio of the two p50s is what the rules add to a start.
"""
import argparse
import ipaddress
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from conftest import FerryServer, import_httpd  # noqa: E402
from task_bench import START_TD, pct, wait_running, wait_stopped  # noqa: E402


def groups_with_rules(ec2, vpc, n_groups=5, n_rules=20):
    ids = [ec2.create_security_group(GroupName=f"bench-{i}", Description="bench", VpcId=vpc)["GroupId"]
           for i in range(n_groups)]
    for i, g in enumerate(ids):
        perms = []
        for r in range(n_rules):
            port = 1000 + r
            if r % 2:
                perms.append({"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                              "UserIdGroupPairs": [{"GroupId": ids[(i + r) % n_groups]}]})
            else:
                net = ipaddress.ip_network(f"10.{i}.{r}.0/24")
                perms.append({"IpProtocol": "udp", "FromPort": port, "ToPort": port + 10,
                              "IpRanges": [{"CidrIp": str(net)}]})
        ec2.authorize_security_group_ingress(GroupId=g, IpPermissions=perms)
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=30, help="starts per configuration")
    ap.add_argument("--members", type=int, default=10, help="running tasks in the rule groups")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ferry-bench-sg-", dir="/var/tmp")
    srv = FerryServer(os.path.join(root, "data"))
    try:
        srv.start()
        import_httpd(srv, pathlib.Path(root))
        ecs, ec2 = srv.client("ecs"), srv.client("ec2")
        ecs.register_task_definition(**START_TD)
        subnet, default_group = srv.default_network()
        vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
        rule_groups = groups_with_rules(ec2, vpc)
        configs = {
            "default group": {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [default_group]}},
            "5 groups, 100 rules": {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": rule_groups}},
        }
        members = []
        for _ in range(a.members):
            members += [t["taskArn"] for t in ecs.run_task(
                taskDefinition="bench-start", launchType="FARGATE",
                networkConfiguration=configs["5 groups, 100 rules"])["tasks"]]
        wait_running(ecs, members, 0)
        lat = {k: [] for k in configs}
        kinds = list(configs)
        for i in range(a.tasks):
            for kind in (kinds if i % 2 == 0 else kinds[::-1]):
                t0 = time.monotonic()
                r = ecs.run_task(taskDefinition="bench-start", launchType="FARGATE",
                                 networkConfiguration=configs[kind])
                if r.get("failures"):
                    raise SystemExit(f"run-task failed: {r['failures']}")
                arn = r["tasks"][0]["taskArn"]
                lat[kind] += wait_running(ecs, [arn], t0)
                ecs.stop_task(task=arn, reason="bench")
                wait_stopped(ecs, [arn])
        print(f"host: {os.cpu_count()} cores, {os.uname().release}; {a.tasks} starts per configuration, "
              f"alternating; {a.members} tasks running in the rule groups")
        print("| network configuration | p50 ms | p90 ms | mean ms |")
        print("|---|---:|---:|---:|")
        for k, xs in lat.items():
            print(f"| {k} | {pct(xs, 0.5) * 1000:.0f} | {pct(xs, 0.9) * 1000:.0f} | "
                  f"{statistics.mean(xs) * 1000:.0f} |")
        base = pct(lat["default group"], 0.5)
        print(f"\np50 ratio (5 groups, 100 rules / default group): {pct(lat['5 groups, 100 rules'], 0.5) / base:.2f}")
        for arn in members:
            ecs.stop_task(task=arn, reason="bench")
        wait_stopped(ecs, members)
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
