"""Driver for bench/images.sh.

Throughput: one ~N MB image (the httpd stand-in plus N MiB of random bytes
in its layer, so compression cannot help), pushed with skopeo from an OCI
archive to a fresh repository and pulled back into a `dir:` layout, each
round against ferry's registry (login with `aws ecr get-login-password`,
every blob sealed under the repository's KMS key) and Debian's
docker-registry (plain files, no auth), in alternating order. Reported: the
median MB/s of each and the ratio ferry / docker-registry.

Start-up: tasks one at a time naming the image by its ECR reference, the
order alternating: `cached` (the image is in the host's sealed store) and
`first pull` (removed from the store with `ferry image rm` first, so the
agent logs in as the execution role and pulls it from ferry's registry
before the container starts). RunTask to DescribeTasks RUNNING, p50/p99.
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from conftest import MAKE_IMAGE, FerryServer, create_source_log_group, ferry_bin  # noqa: E402
from task_bench import START_TD, alternating_starts, pct  # noqa: E402
from test_image_pull import Registry  # noqa: E402


# skopeo remembers where it saw each blob and then mounts it across
# repositories instead of uploading it (or skips it): forget before every copy
# so each push and pull moves every byte.
BLOB_CACHE = "/var/lib/containers/cache/blob-info-cache-v1.boltdb"


def skopeo(*args):
    if os.path.exists(BLOB_CACHE):
        os.remove(BLOB_CACHE)
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"skopeo {' '.join(args)}: {p.stderr}")


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=8, help="tasks per kind for start-up")
    a = ap.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="ferry-bench-images-", dir="/var/tmp"))
    srv = FerryServer(str(root / "data"))
    reg = None
    try:
        archive = root / "image.tar"
        subprocess.run(["python3", MAKE_IMAGE, "--format", "oci", "--filler-mb", str(a.size_mb),
                        str(archive)], check=True)
        mb = archive.stat().st_size / 1e6
        srv.start()
        reg = Registry(root)
        ferry_host = srv.endpoint.removeprefix("http://")
        pw = subprocess.run(["aws", "--endpoint-url", srv.endpoint, "ecr", "get-login-password"],
                            capture_output=True, text=True, env=srv.env(), check=True).stdout.strip()
        creds = f"AWS:{pw}"
        print(f"host: {os.cpu_count()} cores, {os.uname().release}, image {mb:.0f} MB, load average before: "
              f"{' '.join(open('/proc/loadavg').read().split()[:3])}")

        rates = {"ferry": {"push": [], "pull": []}, "docker-registry": {"push": [], "pull": []}}
        for i in range(a.rounds):
            order = ["ferry", "docker-registry"] if i % 2 == 0 else ["docker-registry", "ferry"]
            for kind in order:
                repo = f"bench{i}"
                if kind == "ferry":
                    srv.aws("ecr", "create-repository", "--repository-name", repo)
                    dest, auth = f"docker://{ferry_host}/{repo}:v1", [f"--dest-creds={creds}"]
                    src_auth = [f"--src-creds={creds}"]
                else:
                    dest, auth, src_auth = f"docker://{reg.host}/{repo}:v1", [], []
                push = timed(lambda: skopeo("copy", "--dest-tls-verify=false", *auth,
                                            f"oci-archive:{archive}", dest))
                out = root / f"pulled-{kind}-{i}"
                pull = timed(lambda: skopeo("copy", "--src-tls-verify=false", *src_auth, dest, f"dir:{out}"))
                shutil.rmtree(out)
                rates[kind]["push"].append(mb / push)
                rates[kind]["pull"].append(mb / pull)
                if kind == "ferry":
                    srv.aws("ecr", "delete-repository", "--repository-name", repo, "--force")

        # Start-up: an image in ferry's registry, cached or pulled first.
        srv.aws("ecr", "create-repository", "--repository-name", "start")
        skopeo("copy", "--dest-tls-verify=false", f"--dest-creds={creds}", f"oci-archive:{archive}",
               f"docker://{ferry_host}/start:v1")
        account = srv.aws("sts", "get-caller-identity")["Account"]
        image = f"{account}.dkr.ecr.us-east-1.amazonaws.com/start:v1"
        create_source_log_group(srv)
        td = json.loads(json.dumps(START_TD))
        td["family"] = "bench-ecr"
        td["executionRoleArn"] = f"arn:aws:iam::{account}:role/ecsTaskExecutionRole"
        td["containerDefinitions"][0]["image"] = image
        ecs = srv.client("ecs")
        ecs.register_task_definition(**td)
        def evict(kind):
            if kind == "first pull":
                subprocess.run([ferry_bin(), "image", "rm", image, "--data-dir", srv.data_dir],
                               capture_output=True, text=True)
        lat = alternating_starts(ecs, {"first pull": "bench-ecr", "cached": "bench-ecr"}, a.tasks,
                                 before=evict)
    finally:
        if reg:
            reg.stop()
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nskopeo copy of a {mb:.0f} MB image, {a.rounds} rounds alternating, median MB/s:")
    print("| registry | push MB/s | pull MB/s |")
    print("|---|---:|---:|")
    med = {k: {d: statistics.median(v[d]) for d in v} for k, v in rates.items()}
    for k in ("ferry", "docker-registry"):
        print(f"| {k} | {med[k]['push']:.0f} | {med[k]['pull']:.0f} |")
    print(f"| ratio ferry / docker-registry | {med['ferry']['push'] / med['docker-registry']['push']:.2f} "
          f"| {med['ferry']['pull'] / med['docker-registry']['pull']:.2f} |")
    print(f"\nRunTask to RUNNING, image of {mb:.0f} MB in ferry's registry, {a.tasks} tasks each, alternating:")
    print("| image | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for k in ("cached", "first pull"):
        print(f"| {k} | {pct(lat[k], 0.5) * 1000:.0f} | {pct(lat[k], 0.99) * 1000:.0f} |")


if __name__ == "__main__":
    main()
