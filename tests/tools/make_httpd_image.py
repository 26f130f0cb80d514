#!/usr/bin/env python3
"""Builds a stand-in for the `httpd:2.4` image from Debian's busybox-static.

The source document's task runs `sh -c "echo '<html>...' > /usr/local/apache2/htdocs/index.html
&& httpd-foreground"` in `httpd:2.4`. With no registry reachable, tests and the
demo use this image instead: busybox's sh and httpd, the same paths as the real
image, and an `httpd-foreground` that runs busybox httpd on port 80.

    make_httpd_image.py [--format oci|docker] [--name httpd:2.4] [--with-fio] [--marker TEXT]
                        [--filler-mb N] OUT.tar

`--marker TEXT` adds /usr/local/apache2/htdocs/marker.html holding TEXT
(tests look for its bytes on the host disk). `--with-fio` adds the host's /usr/bin/fio and the shared libraries it links
(benchmarks run fio inside tasks with it).

Writes an OCI image archive (oci-layout, index.json, blobs/sha256/...) as
skopeo and podman write them, or a `docker save` archive.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "echo", "cat", "ls", "httpd", "sleep", "mkdir", "rm", "id", "env", "wget", "dd", "sync", "true", "false", "kill", "ps", "unshare", "seq"]
HTTPD_FOREGROUND = (b"#!/bin/sh\n# Stand-in for httpd:2.4's httpd-foreground: busybox httpd on port 80.\n"
                   b"echo 'httpd-foreground: busybox httpd serving /usr/local/apache2/htdocs on port 80' >&2\n"
                   b"exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs\n")


FIO = "/usr/bin/fio"


def fio_files():
    """fio and every library `ldd` resolves for it, as (path in image, host path)."""
    out = subprocess.run(["ldd", FIO], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"(/\S+) \(0x", out)
    return [(FIO, FIO)] + [(lib, os.path.realpath(lib)) for lib in libs]


def layer_tar(with_fio=False, marker=None, filler_mb=0, user=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add_dir(path, mode=0o755):
            ti = tarfile.TarInfo(path)
            ti.type = tarfile.DIRTYPE
            ti.mode = mode
            t.addfile(ti)

        def add_file(path, data, mode=0o644):
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mode = mode
            t.addfile(ti, io.BytesIO(data))

        for d in ["bin", "etc", "tmp", "usr", "usr/local", "usr/local/bin", "usr/local/apache2",
                  "usr/local/apache2/htdocs", "var", "var/www", "proc", "sys", "dev"]:
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        with open(BUSYBOX, "rb") as f:
            add_file("bin/busybox", f.read(), 0o755)
        for a in APPLETS:
            ti = tarfile.TarInfo("bin/" + a)
            ti.type = tarfile.SYMTYPE
            ti.linkname = "busybox"
            t.addfile(ti)
        add_file("usr/local/bin/httpd-foreground", HTTPD_FOREGROUND, 0o755)
        add_file("usr/local/apache2/htdocs/index.html", b"<html><body><h1>It works!</h1></body></html>\n")
        app = b""
        if user is not None:
            # The image's USER, with a home it owns.
            app = b"app:x:%d:%d:app:/home/app:/bin/sh\n" % (user, user)
            add_dir("home")
            ti = tarfile.TarInfo("home/app")
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.uid = ti.gid = user
            t.addfile(ti)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\n" + app)
        add_file("etc/group", b"root:x:0:\nwww-data:x:33:\n")
        if marker:
            add_file("usr/local/apache2/htdocs/marker.html", marker.encode() + b"\n")
        if filler_mb:
            # Random, so that compression cannot shrink it (benchmarks).
            add_file("var/filler.bin", os.urandom(filler_mb << 20))
        if with_fio:
            made = set()
            for inside, host in fio_files():
                parts = inside.strip("/").split("/")
                for i in range(1, len(parts)):
                    d = "/".join(parts[:i])
                    if d not in made and d not in ("bin", "usr", "usr/local", "usr/local/bin"):
                        made.add(d)
                        add_dir(d)
                with open(host, "rb") as f:
                    add_file(inside.strip("/"), f.read(), 0o755)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", choices=["oci", "docker"], default="oci")
    ap.add_argument("--name", default="httpd:2.4")
    ap.add_argument("--with-fio", action="store_true")
    ap.add_argument("--marker", help="text of htdocs/marker.html (a unique string tests look for)")
    ap.add_argument("--filler-mb", type=int, default=0,
                    help="add /var/filler.bin of N MiB of random bytes (image size for benchmarks)")
    ap.add_argument("--user", type=int, help="the image's USER (a uid; gets /home/app)")
    ap.add_argument("out")
    args = ap.parse_args()
    if not os.path.exists(BUSYBOX):
        raise SystemExit(f"{BUSYBOX} is missing: install busybox-static (scripts/setup does)")

    if args.with_fio and not os.path.exists(FIO):
        raise SystemExit(f"{FIO} is missing: install fio (scripts/setup does)")
    raw = layer_tar(args.with_fio, args.marker, args.filler_mb, args.user)
    gz = gzip.compress(raw, compresslevel=1 if args.filler_mb else 9, mtime=0)
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HTTPD_PREFIX=/usr/local/apache2"],
            "Cmd": ["httpd-foreground"],
            "WorkingDir": "/usr/local/apache2",
            "ExposedPorts": {"80/tcp": {}},
            **({"User": str(args.user)} if args.user is not None else {}),
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(raw)]},
        "history": [{"created_by": "tests/tools/make_httpd_image.py (busybox stand-in for httpd:2.4)"}],
    }, sort_keys=True).encode()

    with tarfile.open(args.out, "w") as out:
        def put(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            out.addfile(ti, io.BytesIO(data))

        if args.format == "oci":
            manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(gz), "size": len(gz)}],
            }).encode()
            index = json.dumps({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha(manifest), "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[-1]},
                }],
            }).encode()
            put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            put("index.json", index)
            for blob in (config, manifest, gz):
                put("blobs/sha256/" + sha(blob)[7:], blob)
        else:
            layer_name = sha(raw)[7:] + "/layer.tar"
            config_name = sha(config)[7:] + ".json"
            repo, _, tag = args.name.rpartition(":")
            manifest = json.dumps([{"Config": config_name, "RepoTags": [args.name], "Layers": [layer_name]}]).encode()
            put(config_name, config)
            put(layer_name, raw)
            put("manifest.json", manifest)
            put("repositories", json.dumps({repo: {tag: sha(raw)[7:]}}).encode())


if __name__ == "__main__":
    main()
