"""awsvpc for real, end to end with the AWS CLI: security groups decide what
reaches a task, subnets count their addresses, and a task can neither forge
its address nor reach the host's own services.

Connections "from a task" are made inside the task's network namespace
(`ip netns exec ferry-TASK_ID ...`): the packets leave through the task's
interface with its address, exactly as the container's own would. What only
the container's privileges decide (raw sockets) is checked from inside the
container.
"""

import ipaddress
import json
import socket
import subprocess
import threading
import time

import pytest

from conftest import TASK_SUBNET, fresh_server, import_httpd, private_ip, task_page, wait_status, wait_stopped

# A web server on port 80 that stops at once on SIGTERM.
WEB_TD = {
    "family": "web",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [
        {"name": "web", "image": "httpd:2.4", "essential": True, "stopTimeout": 2,
         "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
         "entryPoint": ["sh", "-c"],
         "command": ["mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]},
    ],
}


def ping_td(family, add=()):
    """A task whose exit code says whether it could ping its own loopback:
    0 only if it may open a raw (or ICMP) socket."""
    c = {"name": "ping", "image": "httpd:2.4", "essential": True,
         "entryPoint": ["/bin/busybox"], "command": ["ping", "-c", "1", "-W", "2", "127.0.0.1"]}
    if add:
        c["linuxParameters"] = {"capabilities": {"add": list(add)}}
    return {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "256", "memory": "512", "containerDefinitions": [c]}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    gen = fresh_server()
    s = next(gen)
    import_httpd(s, tmp_path_factory.mktemp("img"))
    p = tmp_path_factory.mktemp("td") / "web.json"
    p.write_text(json.dumps(WEB_TD))
    s.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    yield s
    next(gen, None)
    # A drained server leaves no table behind.
    p = subprocess.run(["nft", "list", "table", "inet", s.network_name], capture_output=True, text=True)
    assert p.returncode != 0, f"the server's table outlived it:\n{p.stdout[:500]}"


def default_vpc(srv):
    subnet, group = srv.default_network()
    vpc = srv.aws("ec2", "describe-subnets", "--subnet-ids", subnet)["Subnets"][0]["VpcId"]
    return vpc, subnet, group


def new_group(srv, name, vpc):
    return srv.aws("ec2", "create-security-group", "--group-name", name, "--description", name,
                   "--vpc-id", vpc)["GroupId"]


def run(srv, subnet, groups, family="web"):
    """Runs one task in `subnet` and `groups`; returns (arn, task id, ip) once RUNNING."""
    cfg = f"awsvpcConfiguration={{subnets=[{subnet}],securityGroups=[{','.join(groups)}]}}"
    arn = srv.aws("ecs", "run-task", "--task-definition", family, "--launch-type", "FARGATE",
                  "--network-configuration", cfg)["tasks"][0]["taskArn"]
    t, _ = wait_status(srv, arn, "RUNNING")
    return arn, arn.rsplit("/", 1)[1], private_ip(t)


def stop(srv, *arns):
    for a in arns:
        srv.aws("ecs", "stop-task", "--task", a)
    for a in arns:
        wait_stopped(srv, a)


def reach(task_id, ip, port=80, timeout=1.0):
    """Whether a TCP connection from task `task_id`'s namespace to ip:port
    is accepted."""
    code = ("import socket,sys\n"
            f"try: socket.create_connection(({ip!r}, {port}), timeout={timeout}).close()\n"
            "except OSError: sys.exit(1)\n")
    p = subprocess.run(["ip", "netns", "exec", f"ferry-{task_id}", "python3", "-c", code],
                       capture_output=True, text=True, timeout=timeout + 20)
    return p.returncode == 0


def eventually(cond, within):
    """Polls `cond` until it holds; the seconds it took, or None."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            return None
        time.sleep(0.05)


def netns(task_id, *cmd):
    subprocess.run(["ip", "netns", "exec", f"ferry-{task_id}", *cmd], check=True, capture_output=True)


def groups_a_b_c(srv, prefix):
    """Groups A, B, C in the default VPC, where B admits tcp/80 from A,
    and a web task in each; returns the groups and the tasks."""
    vpc, subnet, _ = default_vpc(srv)
    a, b, c = (new_group(srv, f"{prefix}-{n}", vpc) for n in "abc")
    srv.aws("ec2", "authorize-security-group-ingress", "--group-id", b, "--protocol", "tcp",
            "--port", "80", "--source-group", a)
    return (a, b, c), (run(srv, subnet, [a]), run(srv, subnet, [b]), run(srv, subnet, [c]))


def test_security_groups_decide_who_reaches_whom_and_a_revoke_applies_at_once(srv):
    (a, b, c), (ta, tb, tc) = groups_a_b_c(srv, "iso")
    try:
        task_page(tb[2])  # B serves (from the host)
        assert reach(ta[1], tb[2]), "A must reach B:80 (B allows tcp/80 from A)"
        assert not reach(ta[1], tb[2], port=81), "B allows port 80 only"
        assert not reach(tb[1], ta[2]), "B must not reach A (A allows nothing in)"
        assert not reach(tc[1], ta[2]) and not reach(tc[1], tb[2]), "C reaches neither"
        assert not reach(ta[1], tc[2]), "nothing may reach C"

        # A new rule applies to the running tasks at once: C may now reach B.
        srv.aws("ec2", "authorize-security-group-ingress", "--group-id", b, "--protocol", "tcp",
                "--port", "80", "--cidr", f"{tc[2]}/32")
        assert eventually(lambda: reach(tc[1], tb[2], timeout=0.3), within=1.0) is not None

        # Revoking cuts A off from B within a second, the tasks still running.
        srv.aws("ec2", "revoke-security-group-ingress", "--group-id", b, "--protocol", "tcp",
                "--port", "80", "--source-group", a)
        took = eventually(lambda: not reach(ta[1], tb[2], timeout=0.3), within=1.0)
        assert took is not None, "A still reaches B a second after the revoke"
        assert reach(tc[1], tb[2]), "the CIDR rule for C stays"
        for arn, _, _ in (ta, tb, tc):
            assert srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]["lastStatus"] == "RUNNING"

        # A group in use cannot be deleted.
        e = srv.aws_error("ec2", "delete-security-group", "--group-id", a)
        assert e.code == "DependencyViolation", e.stderr
    finally:
        stop(srv, ta[0], tb[0], tc[0])
    for g in (a, b, c):
        srv.aws("ec2", "delete-security-group", "--group-id", g)


def test_the_default_group_admits_its_own_members_only(srv):
    vpc, subnet, default = default_vpc(srv)
    other = new_group(srv, "not-default", vpc)
    t1, t2, t3 = run(srv, subnet, [default]), run(srv, subnet, [default]), run(srv, subnet, [other])
    try:
        task_page(t2[2])
        assert reach(t1[1], t2[2]) and reach(t2[1], t1[2]), "members of the default group reach each other"
        assert not reach(t3[1], t1[2]), "a task outside the default group must not reach its members"
    finally:
        stop(srv, t1[0], t2[0], t3[0])
    srv.aws("ec2", "delete-security-group", "--group-id", other)


def test_a_task_that_forges_its_address_or_mac_gets_nothing_through(srv):
    (a, b, c), (ta, tb, tc) = groups_a_b_c(srv, "spoof")
    try:
        task_page(tb[2])
        assert reach(ta[1], tb[2])
        # C takes A's address (the one B admits): nothing gets through.
        netns(tc[1], "ip", "addr", "flush", "dev", "eth0")
        netns(tc[1], "ip", "addr", "add", f"{ta[2]}/32", "dev", "eth0")
        netns(tc[1], "ip", "route", "add", "default", "dev", "eth0")
        assert not reach(tc[1], tb[2]), "a forged source address got through"
        # A changes its MAC: its own address no longer gets through either.
        netns(ta[1], "ip", "link", "set", "dev", "eth0", "address", "0a:00:de:ad:be:ef")
        assert not reach(ta[1], tb[2]), "a forged MAC got through"
    finally:
        stop(srv, ta[0], tb[0], tc[0])
    # B's rule names A: B goes first (EC2 refuses to delete a referenced group).
    for g in (b, a, c):
        srv.aws("ec2", "delete-security-group", "--group-id", g)


def test_without_net_raw_a_task_cannot_ping(srv, tmp_path):
    for family, add in (("noraw", ()), ("raw", ("NET_RAW",))):
        p = tmp_path / f"{family}.json"
        p.write_text(json.dumps(ping_td(family, add)))
        srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    codes = {}
    for family in ("noraw", "raw"):
        arn = srv.aws("ecs", "run-task", "--task-definition", family, "--launch-type", "FARGATE",
                      "--network-configuration", srv.netcfg)["tasks"][0]["taskArn"]
        codes[family] = wait_stopped(srv, arn)["containers"][0].get("exitCode")
    assert codes["raw"] == 0, f"with NET_RAW the task should ping: {codes}"
    assert codes["noraw"] not in (0, None), f"without NET_RAW the task pinged: {codes}"


def test_tasks_cannot_reach_the_hosts_own_services(srv):
    _, subnet, group = default_vpc(srv)
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    accepted = []

    def accept():
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            accepted.append(peer)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    t = run(srv, subnet, [group])
    try:
        gateway = str(ipaddress.ip_network(TASK_SUBNET).network_address + 1)
        host_ips = {gateway} | {a for a in subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True).stdout.split() if ":" not in a}
        for ip in sorted(host_ips):
            assert not reach(t[1], ip, port=port), f"the task reached the host's listener on {ip}"
        # The ferry API too.
        api_port = int(srv.endpoint.rsplit(":", 1)[1])
        assert not reach(t[1], gateway, port=api_port)
        assert accepted == []
        # The host itself still reaches the task.
        assert task_page(t[2]).strip(), "the host reaches the task's page"
    finally:
        listener.close()
        stop(srv, t[0])


def test_missing_subnets_and_groups_fail_run_task_as_ecs_does(srv):
    _, subnet, group = default_vpc(srv)
    for cfg, needle in (
        ("awsvpcConfiguration={subnets=[subnet-12345678],securityGroups=[%s]}" % group, "subnet-12345678"),
        ("awsvpcConfiguration={subnets=[%s],securityGroups=[sg-12345678]}" % subnet, "sg-12345678"),
    ):
        e = srv.aws_error("ecs", "run-task", "--task-definition", "web", "--launch-type", "FARGATE",
                          "--network-configuration", cfg)
        assert e.code == "ClientException", e.stderr
        assert needle in e.message and "does not exist" in e.message, e.message


def test_subnet_address_counts_go_down_and_up(srv):
    _, subnet, group = default_vpc(srv)

    def free():
        return srv.aws("ec2", "describe-subnets", "--subnet-ids", subnet)["Subnets"][0]["AvailableIpAddressCount"]

    before = free()
    t1, t2 = run(srv, subnet, [group]), run(srv, subnet, [group])
    assert free() == before - 2
    enis = srv.aws("ec2", "describe-network-interfaces", "--filters",
                   f"Name=subnet-id,Values={subnet}")["NetworkInterfaces"]
    assert {e["PrivateIpAddress"] for e in enis} >= {t1[2], t2[2]}
    stop(srv, t1[0], t2[0])
    assert free() == before


def test_vpcs_are_apart_and_subnets_of_one_vpc_route(srv):
    from conftest import VPC_SPACE
    vpc, subnet, _ = default_vpc(srv)
    # A second subnet of the default VPC: routed to, through the groups.
    others = [s for s in srv.aws("ec2", "describe-subnets", "--filters", f"Name=vpc-id,Values={vpc}")["Subnets"]
              if s["SubnetId"] != subnet]
    open_in = new_group(srv, "open-in", vpc)
    srv.aws("ec2", "authorize-security-group-ingress", "--group-id", open_in, "--protocol", "-1",
            "--cidr", "0.0.0.0/0")
    space = ipaddress.ip_network(VPC_SPACE)
    vpc2 = srv.aws("ec2", "create-vpc", "--cidr-block", str(space))["Vpc"]["VpcId"]
    sub2 = srv.aws("ec2", "create-subnet", "--vpc-id", vpc2,
                   "--cidr-block", str(next(space.subnets(new_prefix=24))))["Subnet"]["SubnetId"]
    open2 = new_group(srv, "open-2", vpc2)
    srv.aws("ec2", "authorize-security-group-ingress", "--group-id", open2, "--protocol", "-1",
            "--cidr", "0.0.0.0/0")
    t1 = run(srv, subnet, [open_in])
    t2 = run(srv, others[0]["SubnetId"], [open_in])
    t3 = run(srv, sub2, [open2])
    try:
        task_page(t2[2])
        task_page(t3[2])
        assert ipaddress.ip_address(t2[2]) in ipaddress.ip_network(others[0]["CidrBlock"])
        assert reach(t1[1], t2[2]), "subnets of one VPC route to each other"
        assert not reach(t1[1], t3[2]), "another VPC must not be reachable"
        assert not reach(t3[1], t1[2]), "another VPC must not be reachable"
    finally:
        stop(srv, t1[0], t2[0], t3[0])
    srv.aws("ec2", "delete-security-group", "--group-id", open2)
    srv.aws("ec2", "delete-subnet", "--subnet-id", sub2)
    srv.aws("ec2", "delete-vpc", "--vpc-id", vpc2)
    srv.aws("ec2", "delete-security-group", "--group-id", open_in)


def test_a_reused_address_answers_from_the_host_at_once(srv):
    """Twenty tasks one after another get the same address; each answers
    the host within a second of RUNNING (no stale neighbour entry)."""
    _, subnet, group = default_vpc(srv)
    ips, waits = [], []
    for _ in range(20):
        arn, _, ip = run(srv, subnet, [group])
        t0 = time.monotonic()

        def answers():
            try:
                with socket.create_connection((ip, 80), timeout=0.2):
                    return True
            except OSError:
                return False

        took = eventually(answers, within=1.0)
        waits.append(took)
        ips.append(ip)
        stop(srv, arn)
        assert took is not None, f"task {len(ips)} on {ip} did not answer within 1 s ({time.monotonic() - t0:.2f} s)"
    assert len(set(ips)) == 1, f"the address was not reused: {ips}"
