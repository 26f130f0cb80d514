#!/usr/bin/env python3
"""Builds a small image with the host's fio for bench/efs.sh.

No registry is reachable, so the image is made from what the host has: the
busybox layer of the httpd:2.4 stand-in (tests/tools/make_httpd_image.py)
plus a layer with /usr/bin/fio and every shared library `ldd` resolves for
it (and the dynamic loader), at the same paths. Written as a `docker save`
archive for `ferry image import`.

    make_fio_image.py [--name fio:bench] OUT.tar
"""
import argparse
import importlib.util
import io
import json
import os
import re
import subprocess
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIO = "/usr/bin/fio"


def httpd_tools():
    spec = importlib.util.spec_from_file_location(
        "make_httpd_image", os.path.join(HERE, "..", "tests", "tools", "make_httpd_image.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    paths = set()
    for line in out.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if m:
            paths.add(m.group(1))
    return sorted(paths)


def fio_layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        dirs = set()
        for path in [FIO, *libraries(FIO)]:
            rel = path.lstrip("/")
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    t.addfile(ti)
            with open(os.path.realpath(path), "rb") as f:
                data = f.read()
            ti = tarfile.TarInfo(rel)
            ti.size = len(data)
            ti.mode = 0o755
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="fio:bench")
    ap.add_argument("out")
    args = ap.parse_args()
    h = httpd_tools()
    base, fio = h.layer_tar(), fio_layer()
    libdirs = sorted({os.path.dirname(p) for p in libraries(FIO)})
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin",
                           "LD_LIBRARY_PATH=" + ":".join(libdirs)],
                   "Cmd": ["fio", "--version"]},
        "rootfs": {"type": "layers", "diff_ids": [h.sha(base), h.sha(fio)]},
        "history": [{"created_by": "bench/make_fio_image.py: busybox"},
                    {"created_by": "bench/make_fio_image.py: host fio and its libraries"}],
    }, sort_keys=True).encode()
    repo, _, tag = args.name.rpartition(":")
    layers = [h.sha(base)[7:] + "/layer.tar", h.sha(fio)[7:] + "/layer.tar"]
    config_name = h.sha(config)[7:] + ".json"
    with tarfile.open(args.out, "w") as out:
        def put(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            out.addfile(ti, io.BytesIO(data))
        put(config_name, config)
        put(layers[0], base)
        put(layers[1], fio)
        put("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [args.name], "Layers": layers}]).encode())
        put("repositories", json.dumps({repo: {tag: h.sha(fio)[7:]}}).encode())


if __name__ == "__main__":
    main()
