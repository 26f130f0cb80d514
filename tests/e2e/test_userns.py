"""Container root as an unprivileged host uid (user namespaces), end to end.

A default server (`--userns` auto: on here) runs tasks whose containers
report, through a task volume, what they are: `id -u` is 0 inside, but the
container's process is an unprivileged host uid (>= 100000) on the host,
files it writes on the task's volume are owned by the shifted uid, it
cannot make a device node, write a host-root file on its volume or chown to
an id outside its range; two tasks get disjoint ranges; an image with
`USER 1000` still runs as 1000 and owns its home. The same task on a
`--userns=off` server shows what host root could do (so each refusal above
is the namespace's doing, not something else's).
"""

import os
import subprocess
import time

import pytest

from conftest import MAKE_IMAGE, ferry_bin, fresh_server, import_httpd, wait_status, wait_stopped


# What the container does: report, wait for the host's go, then try to
# write the file host root put on its volume.
PROBE = (
    "id -u > /data/id; cat /proc/self/uid_map > /data/map; "
    "echo hi > /data/from-root; mkdir /data/d && chown 1000:1000 /data/d; "
    "if mknod /tmp/n c 1 3 2>/dev/null; then echo made; else echo refused; fi > /data/mknod; "
    "echo c > /data/c; if chown 70000 /data/c 2>/dev/null; then echo changed; else echo refused; fi > /data/chown; "
    "touch /data/ready; "
    "while [ ! -f /data/go ]; do sleep 0.2; done; "
    "if echo pwned >> /data/hostfile 2>/dev/null; then echo wrote; else echo denied; fi > /data/hostwrite; "
    "touch /data/done; exec sleep 3600"
)

TD = {
    "family": "userns",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "256",
    "memory": "512",
    "volumes": [{"name": "data"}],
    "containerDefinitions": [
        {"name": "app", "image": "httpd:2.4", "essential": True, "stopTimeout": 2,
         "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}],
         "entryPoint": ["sh", "-c"], "command": [PROBE]},
    ],
}

# USER 1000 from the image: exit 7 only if it runs as 1000 and can write
# the home the image gave it.
USER_TD = {
    "family": "userns-user",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [
        {"name": "app", "image": "httpd-user:1", "essential": True,
         "entryPoint": ["sh", "-c"],
         "command": ['test "$(id -u)" = 1000 && touch /home/app/ok && exit 7; exit 1']},
    ],
}


def setup_server(srv, tmp):
    import_httpd(srv, tmp)
    archive = tmp / "httpd-user.tar"
    subprocess.run(["python3", MAKE_IMAGE, "--user", "1000", "--name", "httpd-user:1", str(archive)], check=True)
    p = subprocess.run([ferry_bin(), "image", "import", str(archive), "--name", "httpd-user:1",
                        "--data-dir", srv.data_dir], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"ferry image import failed: {p.stderr}"
    ecs = srv.client("ecs")
    ecs.register_task_definition(**TD)
    ecs.register_task_definition(**USER_TD)
    return srv


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    for s in fresh_server():
        yield setup_server(s, tmp_path_factory.mktemp("img"))


@pytest.fixture(scope="module")
def srv_off(tmp_path_factory):
    for s in fresh_server(["--userns", "off"]):
        yield setup_server(s, tmp_path_factory.mktemp("img-off"))


def run(srv, family, count=1):
    tasks = srv.client("ecs").run_task(taskDefinition=family, launchType="FARGATE", count=count,
                                       networkConfiguration=srv.network_configuration)["tasks"]
    assert len(tasks) == count, tasks
    return [t["taskArn"] for t in tasks]


def volume(srv, arn):
    """The task's volume `data` as the host sees it."""
    tid = arn.rsplit("/", 1)[1]
    return os.path.join(srv.data_dir, "tasks", tid, "root", "volumes", "data")


def wait_file(path, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            return
        time.sleep(0.2)
    pytest.fail(f"{path} did not appear in {timeout}s", pytrace=False)


def read(d, name):
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def host_uid(arn, container="app"):
    """The real uid (host view) of the container's first process, from
    /proc/PID/status, found by its cgroup `ferry/TASK_ID/NAME`."""
    tid = arn.rsplit("/", 1)[1]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if f"/ferry/{tid}/{container}\n" not in f.read():
                    continue
            with open(f"/proc/{pid}/status") as f:
                uid = next(l for l in f if l.startswith("Uid:"))
        except (FileNotFoundError, ProcessLookupError):
            continue
        return [int(x) for x in uid.split()[1:]]
    pytest.fail(f"no process of {tid}/{container} on the host", pytrace=False)


def probe(srv, arns):
    """Runs the host side of PROBE for each task (they are RUNNING):
    host root's file on the volume, then go; returns each volume dir."""
    dirs = []
    for arn in arns:
        wait_status(srv, arn, "RUNNING")
        d = volume(srv, arn)
        wait_file(os.path.join(d, "ready"))
        with open(os.path.join(d, "hostfile"), "w") as f:
            f.write("host\n")
        os.chown(os.path.join(d, "hostfile"), 0, 0)
        os.chmod(os.path.join(d, "hostfile"), 0o644)
        open(os.path.join(d, "go"), "w").close()
        dirs.append(d)
    for d in dirs:
        wait_file(os.path.join(d, "done"))
    return dirs


def stop(srv, arns):
    ecs = srv.client("ecs")
    for arn in arns:
        ecs.stop_task(task=arn, reason="test done")
    for arn in arns:
        wait_stopped(srv, arn)


def test_task_root_is_an_unprivileged_host_uid_and_tasks_get_disjoint_ranges(srv):
    assert "user namespaces on" in srv.log(), srv.log()[-2000:]
    arns = run(srv, "userns", count=2)
    try:
        dirs = probe(srv, arns)
        bases = []
        for arn, d in zip(arns, dirs):
            # Root inside...
            assert read(d, "id") == "0"
            inside, base, size = (int(x) for x in read(d, "map").split())
            assert (inside, size) == (0, 65536)
            assert base >= 100000
            # ...an unprivileged uid outside: real, effective, saved, fs.
            assert host_uid(arn) == [base] * 4
            # What it wrote on its volume is the shifted owner's on the host.
            st = os.stat(os.path.join(d, "from-root"))
            assert (st.st_uid, st.st_gid) == (base, base)
            st = os.stat(os.path.join(d, "d"))
            assert (st.st_uid, st.st_gid) == (base + 1000, base + 1000)
            # What host root could do, it cannot.
            assert read(d, "mknod") == "refused"
            assert read(d, "chown") == "refused"
            assert read(d, "hostwrite") == "denied"
            assert read(d, "hostfile") == "host"
            bases.append(base)
        assert abs(bases[0] - bases[1]) >= 65536, bases
    finally:
        stop(srv, arns)
    # The task's namespaces and its bind for runc are gone with it.
    for arn in arns:
        tid = arn.rsplit("/", 1)[1]
        assert not os.path.exists(f"/run/ferry-userns/{tid}")
        assert f"ferry-{tid}" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                    text=True).stdout
        assert tid not in open("/proc/self/mountinfo").read()


def test_an_image_with_user_1000_runs_as_1000(srv):
    [arn] = run(srv, "userns-user")
    t = wait_stopped(srv, arn)
    assert t["containers"][0].get("exitCode") == 7, t


def test_with_userns_off_container_root_is_host_root(srv_off):
    """The same probe without a user namespace: the refusals above are the
    namespace's doing (this is what host root in a container could do)."""
    assert "user namespaces off (--userns=off)" in srv_off.log(), srv_off.log()[-2000:]
    [arn] = run(srv_off, "userns")
    try:
        [d] = probe(srv_off, [arn])
        assert read(d, "id") == "0"
        assert read(d, "map").split() == ["0", "0", "4294967295"]
        assert host_uid(arn) == [0] * 4
        assert os.stat(os.path.join(d, "from-root")).st_uid == 0
        assert read(d, "mknod") == "made"
        assert read(d, "chown") == "changed"
        assert read(d, "hostwrite") == "wrote"
    finally:
        stop(srv_off, [arn])
    [arn] = run(srv_off, "userns-user")
    assert wait_stopped(srv_off, arn)["containers"][0].get("exitCode") == 7
