#!/usr/bin/env python3
"""Writes fuzz/corpus/{image_archive,layer_unpack} seeds: tiny OCI-layout
and `docker save` archives (plain and gzipped), and layers that try to
escape the rootfs (.., absolute paths, symlinks and hard links out,
whiteouts through a symlink)."""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

root = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus"


def tar(entries, fmt=tarfile.GNU_FORMAT):
    """entries: (name, kind, data_or_target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, v in entries:
            i = tarfile.TarInfo(name)
            i.mtime = 0
            if kind == "file":
                i.size = len(v)
                t.addfile(i, io.BytesIO(v))
            elif kind == "dir":
                i.type, i.mode = tarfile.DIRTYPE, 0o755
                t.addfile(i)
            elif kind == "sym":
                i.type, i.linkname = tarfile.SYMTYPE, v
                t.addfile(i)
            elif kind == "hard":
                i.type, i.linkname = tarfile.LNKTYPE, v
                t.addfile(i)
    return buf.getvalue()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def save(kind, name, data):
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    with open(os.path.join(root, kind, name), "wb") as f:
        f.write(data)


layer = tar([
    ("etc/", "dir", None),
    ("etc/hostname", "file", b"fuzz\n"),
    ("bin/", "dir", None),
    ("bin/sh", "file", b"#!fake\n"),
    ("bin/ash", "hard", "bin/sh"),
    ("usr/local/apache2/htdocs/index.html", "file", b"<h1>Payment Processing</h1>\n"),
    ("sbin", "sym", "bin"),
])
upper = tar([("etc/.wh.hostname", "file", b""), ("usr/.wh..wh..opq", "file", b""),
             ("usr/new", "file", b"new")])
evil = [
    tar([("../escape", "file", b"x")]),
    tar([("/abs", "file", b"x")]),
    tar([("link", "sym", "../outside"), ("link/pwn", "file", b"x")]),
    tar([("link", "sym", "/"), ("link/tmp/pwn", "file", b"x")]),
    tar([("hl", "hard", "../outside/victim"), ("hl", "file", b"overwrite")]),
    tar([("link", "sym", "../outside"), ("link/.wh.victim", "file", b"")]),
    tar([("link", "sym", ".."), ("link/.wh..wh..opq", "file", b"")]),
    tar([("d/", "dir", None), ("d/../../outside/new", "file", b"x")], tarfile.PAX_FORMAT),
]
for i, l in enumerate([layer, upper, gzip.compress(layer, mtime=0)] + evil):
    save("layer_unpack", f"layer-{i}", l)


def oci_archive(layers, ref="fuzz:1", gz=False):
    blobs = {}
    diff_ids = [f"sha256:{sha(l)}" for l in layers]
    stored = [gzip.compress(l, mtime=0) if gz else l for l in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"], "WorkingDir": "/"},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    lmt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else "")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": f"sha256:{sha(config)}", "size": len(config)},
                           "layers": [{"mediaType": lmt, "digest": f"sha256:{sha(s)}", "size": len(s)}
                                      for s in stored]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{sha(manifest)}",
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": ref,
                                                "io.containerd.image.name": f"docker.io/library/{ref}"}}]}).encode()
    for b in [config, manifest] + stored:
        blobs[f"blobs/sha256/{sha(b)}"] = b
    return tar([("oci-layout", "file", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", "file", index)]
               + [("blobs/", "dir", None), ("blobs/sha256/", "dir", None)]
               + [(k, "file", v) for k, v in blobs.items()])


def docker_archive(layers, ref="fuzz:1"):
    diff_ids = [f"sha256:{sha(l)}" for l in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cid = sha(config)
    entries = [(f"{cid}.json", "file", config)]
    names = []
    for i, l in enumerate(layers):
        d = f"{i:064x}"
        entries += [(f"{d}/", "dir", None), (f"{d}/VERSION", "file", b"1.0"), (f"{d}/layer.tar", "file", l)]
        names.append(f"{d}/layer.tar")
    # A duplicate layer as docker writes it: a symlink to the first copy.
    entries.append(("dup/layer.tar", "sym", f"../{names[0]}"))
    manifest = json.dumps([{"Config": f"{cid}.json", "RepoTags": [ref], "Layers": names}]).encode()
    entries.append(("manifest.json", "file", manifest))
    entries.append(("repositories", "file", json.dumps({ref.split(":")[0]: {ref.split(":")[1]: "0" * 64}}).encode()))
    return tar(entries)


save("image_archive", "oci", oci_archive([layer, upper]))
save("image_archive", "oci-gzip-layers", oci_archive([layer], gz=True))
save("image_archive", "oci-evil-layer", oci_archive([layer, evil[2]], ref="evil:1"))
save("image_archive", "docker-save", docker_archive([layer, upper]))
save("image_archive", "docker-save.gz", gzip.compress(docker_archive([layer]), mtime=0))
save("image_archive", "docker-evil-layer", docker_archive([evil[4], evil[5]], ref="evil:2"))
