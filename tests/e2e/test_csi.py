"""`ferry csi`, the Kubernetes CSI node plugin (issue 15), driven over its
Unix socket exactly as kubelet drives it, with gRPC stubs generated at test
time from the repository's own crates/csi/proto/csi.proto.

One ferry server (its KMS) per module; the plugin runs as an IAM user whose
policy allows only GenerateDataKeyWithoutPlaintext, CreateGrant (for
Decrypt) and RetireGrant: every Decrypt it makes is through a grant it made
for the pod. Needs root (loop devices, FUSE, mounts)."""
import base64
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from conftest import ferry_bin, fresh_server, pids_with_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(REPO, "crates", "csi", "proto")
XTS = os.path.join(REPO, "tests", "tools", "xts_decrypt.py")
NODE = "node-a"
KEY_ALIAS = "alias/ferry-csi"
GIB = 1 << 30

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


# -- stubs -------------------------------------------------------------------

def _stubs():
    """csi_pb2 and csi_pb2_grpc, compiled from the repo's csi.proto."""
    grpc_tools = pytest.importorskip("grpc_tools", reason="pip install grpcio-tools")
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="ferry-e2e-csi-stubs-")
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{wkt}", f"--python_out={out}",
                      f"--grpc_python_out={out}", os.path.join(PROTO_DIR, "csi.proto")])
    assert rc == 0, "protoc failed on csi.proto"
    sys.path.insert(0, out)
    try:
        return importlib.import_module("csi_pb2"), importlib.import_module("csi_pb2_grpc")
    finally:
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)


pb, pb_grpc = _stubs()
import grpc  # noqa: E402  (after the stubs: grpcio comes with grpcio-tools)


# -- the plugin ----------------------------------------------------------------

class Plugin:
    """`ferry csi` as a subprocess, and a kubelet-like client of its socket."""

    def __init__(self, srv, root, creds_file):
        self.srv = srv
        self.root = root
        self.socket = os.path.join(root, "csi", "csi.sock")
        self.data_dir = os.path.join(root, "plugin-data")
        self.creds_file = creds_file
        self.proc = None
        self.log_path = os.path.join(root, "plugin.log")

    def start(self, timeout=30):
        self.proc = subprocess.Popen(
            [ferry_bin(), "csi", "--endpoint", f"unix://{self.socket}",
             "--kms-endpoint", self.srv.endpoint, "--credentials", self.creds_file,
             "--node-id", NODE, "--data-dir", self.data_dir, "--region", self.srv.region],
            stdout=subprocess.PIPE, stderr=open(self.log_path, "a"), text=True)
        line = self.proc.stdout.readline()
        assert "serving ephemeral.ferry.dev" in line, f"plugin did not start: {line!r}\n{self.log()}"
        # kubelet's gRPC (Go) sends `:authority: localhost` on a Unix socket;
        # Python's default (the socket path) is not a valid authority for h2.
        self.channel = grpc.insecure_channel(f"unix://{self.socket}",
                                             options=[("grpc.default_authority", "localhost")])
        grpc.channel_ready_future(self.channel).result(timeout=timeout)
        self.identity = pb_grpc.IdentityStub(self.channel)
        self.node = pb_grpc.NodeStub(self.channel)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            rc = self.proc.wait(timeout=30)
            self.channel.close()
            return rc
        return self.proc.returncode if self.proc else None

    # -- kubelet's calls --------------------------------------------------------
    def publish(self, volume_id, target, pod, attrs=None, readonly=False, group="",
                mode=None, block=False, ephemeral=True, drop=()):
        mode = mode or pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
        ctx = {
            "csi.storage.k8s.io/pod.namespace": pod[0],
            "csi.storage.k8s.io/pod.name": pod[1],
            "csi.storage.k8s.io/pod.uid": pod[2],
            "csi.storage.k8s.io/serviceAccount.name": "default",
        }
        if ephemeral:
            ctx["csi.storage.k8s.io/ephemeral"] = "true"
        ctx.update(attrs or {})
        cap = pb.VolumeCapability(access_mode=pb.VolumeCapability.AccessMode(mode=mode))
        if block:
            cap.block.SetInParent()
        else:
            cap.mount.volume_mount_group = group
        req = pb.NodePublishVolumeRequest(volume_id=volume_id, target_path=target,
                                          volume_capability=cap, readonly=readonly,
                                          volume_context=ctx)
        for field in drop:
            req.ClearField(field)
        return self.node.NodePublishVolume(req, timeout=120)

    def unpublish(self, volume_id, target):
        return self.node.NodeUnpublishVolume(
            pb.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target), timeout=120)

    def stats(self, volume_id, path):
        return self.node.NodeGetVolumeStats(
            pb.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=path), timeout=30)

    def image(self, volume_id):
        import hashlib
        return os.path.join(self.data_dir, "volumes",
                            hashlib.sha256(volume_id.encode()).hexdigest(), "volume.img")


def rpc_error(fn, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*a, **kw)
    return e.value


def plugin_user(srv, root):
    """An IAM user for the plugin and its credentials file; the customer
    managed key `alias/ferry-csi`. The user's policy is docs/csi.md's."""
    iam, kms = srv.client("iam"), srv.client("kms")
    key = kms.create_key(Description="ferry csi volumes")["KeyMetadata"]
    kms.create_alias(AliasName=KEY_ALIAS, TargetKeyId=key["KeyId"])
    with open(os.path.join(REPO, "deploy", "kubernetes", "iam-policy.json")) as f:
        policy = f.read()
    name = f"csi-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="ferry-csi", PolicyDocument=policy)
    ak = iam.create_access_key(UserName=name)["AccessKey"]
    path = os.path.join(root, "credentials")
    with open(path, "w") as f:
        f.write(f"[default]\naws_access_key_id = {ak['AccessKeyId']}\n"
                f"aws_secret_access_key = {ak['SecretAccessKey']}\n")
    os.chmod(path, 0o600)
    user_arn = iam.get_user(UserName=name)["User"]["Arn"]
    return key, user_arn


@pytest.fixture(scope="module")
def env():
    gen = fresh_server()
    srv = next(gen)
    root = tempfile.mkdtemp(prefix="ferry-e2e-csi-")
    try:
        key, user_arn = plugin_user(srv, root)
        plugin = Plugin(srv, root, os.path.join(root, "credentials"))
        plugin.start()
        yield srv, plugin, key, user_arn
        # Whatever a failed test left published goes the way kubelet would take it.
        vols = os.path.join(plugin.data_dir, "volumes")
        for d in os.listdir(vols) if os.path.isdir(vols) else []:
            try:
                rec = json.load(open(os.path.join(vols, d, "record.json")))
                plugin.unpublish(rec["volumeId"], rec["targetPath"])
            except Exception:
                pass
        plugin.stop()
    finally:
        for _ in gen:
            pass
        subprocess.run(["umount", "-R", root], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def target_for(plugin, pod_uid, name="data"):
    # kubelet's layout; kubelet creates the parent, the plugin the target.
    parent = os.path.join(plugin.root, "kubelet", "pods", pod_uid, "volumes",
                          "kubernetes.io~csi", name)
    os.makedirs(parent, exist_ok=True)
    return os.path.join(parent, "mount")


def new_pod(name):
    return ("team-a", name, str(uuid.uuid4()))


def audit(srv):
    return srv.audit_records()


def luks_token(image):
    out = subprocess.run(["cryptsetup", "token", "export", "--token-id", "0", image],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def is_mount_point(path):
    return subprocess.run(["mountpoint", "-q", path]).returncode == 0


# -- tests ---------------------------------------------------------------------

def test_identity_and_node_info(env):
    _, plugin, _, _ = env
    info = plugin.identity.GetPluginInfo(pb.GetPluginInfoRequest())
    assert info.name == "ephemeral.ferry.dev"
    assert info.vendor_version
    caps = plugin.identity.GetPluginCapabilities(pb.GetPluginCapabilitiesRequest())
    # Node-only: no CONTROLLER_SERVICE capability.
    assert not any(c.service.type == pb.PluginCapability.Service.CONTROLLER_SERVICE
                   for c in caps.capabilities)
    assert plugin.identity.Probe(pb.ProbeRequest()).ready.value is True
    assert plugin.node.NodeGetInfo(pb.NodeGetInfoRequest()).node_id == NODE
    ncaps = {c.rpc.type for c in plugin.node.NodeGetCapabilities(
        pb.NodeGetCapabilitiesRequest()).capabilities}
    T = pb.NodeServiceCapability.RPC
    assert ncaps == {T.GET_VOLUME_STATS, T.VOLUME_MOUNT_GROUP}
    # Not a capability: refused as unimplemented.
    e = rpc_error(plugin.node.NodeStageVolume, pb.NodeStageVolumeRequest(volume_id="v"))
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED


def volume_key(srv, image):
    """The 512-bit volume key, the way an operator gets it: KMS Decrypt of
    the token's wrapped key (administrator, the pod's context), then
    cryptsetup with that passphrase in a tmpfs key file."""
    tok = luks_token(image)
    kms = srv.client("kms")
    plain = kms.decrypt(CiphertextBlob=base64.b64decode(tok["wrappedDataKey"]),
                        EncryptionContext=tok["encryptionContext"],
                        KeyId=tok["keyArn"])["Plaintext"]
    assert len(plain) == 64
    fd, keyfile = tempfile.mkstemp(dir="/dev/shm")
    try:
        os.write(fd, plain)
        os.close(fd)
        out = subprocess.run(["cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode",
                              "--key-file", keyfile, image],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(keyfile)
    hexkey, on = "", False
    for line in out.splitlines():
        if "MK dump:" in line or "Volume key:" in line:
            on = True
            line = line.split(":", 1)[1]
        elif on and not line.startswith((" ", "\t")):
            break
        if on:
            hexkey += line.replace(" ", "").strip()
    assert len(hexkey) == 128, out
    return hexkey


def test_two_pods_encrypted_volumes_end_to_end(env):
    srv, plugin, key, user_arn = env
    pods = [new_pod("web-0"), new_pod("web-1")]
    vols = [f"csi-{uuid.uuid4().hex}" for _ in pods]
    targets = [target_for(plugin, p[2]) for p in pods]
    sizes = ["1Gi", "2Gi"]
    for v, t, p, s in zip(vols, targets, pods, sizes):
        plugin.publish(v, t, p, attrs={"size": s}, group="2000")
        assert is_mount_point(t)
        st = os.stat(t)
        assert st.st_gid == 2000 and st.st_mode & 0o2070 == 0o2070
        # Publish again, same target and parameters: OK, same mount.
        plugin.publish(v, t, p, attrs={"size": s}, group="2000")
    marker = b"FERRY-CSI-PLAINTEXT-MARKER-" * 2000
    for i, t in enumerate(targets):
        with open(os.path.join(t, "marker.bin"), "wb") as f:
            f.write(marker + str(i).encode())
            os.fsync(f.fileno())
        # Freezing checkpoints the journal: the metadata is in place on disk.
        subprocess.run(["fsfreeze", "-f", t], check=True)
        subprocess.run(["fsfreeze", "-u", t], check=True)

    # Stats: numbers of a real ext4 of the asked size, with our file in it.
    for v, t, s in zip(vols, targets, (1, 2)):
        usage = {u.unit: u for u in plugin.stats(v, t).usage}
        b, i = usage[pb.VolumeUsage.BYTES], usage[pb.VolumeUsage.INODES]
        assert 0.9 * s * GIB < b.total <= s * GIB
        assert b.used >= len(marker) and b.available > 0
        assert b.used + b.available <= b.total
        assert i.total > 0 and i.used >= 12 and i.available == i.total - i.used
        sv = os.statvfs(t)
        assert b.total == sv.f_blocks * sv.f_frsize

    for n, (v, t, p) in enumerate(zip(vols, targets, pods)):
        image = plugin.image(v)
        dump = subprocess.run(["cryptsetup", "luksDump", image], capture_output=True,
                              text=True, check=True).stdout
        assert "Version:       \t2" in dump or "Version:" in dump
        assert "aes-xts-plain64" in dump and "ferry-kms" in dump
        assert "sector: 4096" in dump
        tok = luks_token(image)
        assert tok["type"] == "ferry-kms" and tok["keyArn"] == key["Arn"]
        assert tok["encryptionContext"] == {"k8s:namespace": p[0], "k8s:podName": p[1],
                                            "k8s:podUID": p[2], "ferry:node": NODE}
        with open(image, "rb") as f:
            raw = f.read()
        assert b"FERRY-CSI-PLAINTEXT-MARKER" not in raw
        # Independent decryption: the data segment holds the file we wrote.
        hexkey = volume_key(srv, image)
        with tempfile.TemporaryDirectory(prefix="ferry-e2e-csi-plain-") as d:
            plain = os.path.join(d, "plain.img")
            subprocess.run([sys.executable, XTS, image, "1048576", plain],
                           input=hexkey, text=True, check=True)
            got = subprocess.run(["debugfs", "-R", "cat /marker.bin", plain],
                                 capture_output=True, check=True).stdout
            assert got == marker + str(n).encode()

    # The other pod's context does not open this pod's key.
    tok0 = luks_token(plugin.image(vols[0]))
    kms = srv.client("kms")
    other = dict(tok0["encryptionContext"], **{"k8s:podUID": pods[1][2]})
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=base64.b64decode(tok0["wrappedDataKey"]),
                    EncryptionContext=other)

    grants = {g["GrantId"]: g for g in kms.list_grants(KeyId=key["KeyId"])["Grants"]}
    recs = [json.load(open(os.path.join(os.path.dirname(plugin.image(v)), "record.json")))
            for v in vols]
    for r, p in zip(recs, pods):
        g = grants[r["grantId"]]
        assert g["GranteePrincipal"] == user_arn and g["Operations"] == ["Decrypt"]
        assert g["Constraints"]["EncryptionContextEquals"]["k8s:podUID"] == p[2]
        # Ids and ARNs only: no key material in the record.
        assert set(r) == {"volumeId", "targetPath", "params", "phase", "keyArn", "grantId"}

    for v, t in zip(vols, targets):
        image = plugin.image(v)
        plugin.unpublish(v, t)
        assert not os.path.exists(t) and not os.path.exists(image)
        assert not os.path.exists(os.path.dirname(image))
        # Idempotent: a second unpublish of the gone volume is OK.
        plugin.unpublish(v, t)
        e = rpc_error(plugin.stats, v, t)
        assert e.code() == grpc.StatusCode.NOT_FOUND
    left = {g["GrantId"] for g in kms.list_grants(KeyId=key["KeyId"])["Grants"]}
    assert not left & {r["grantId"] for r in recs}

    # The audit trail: the four calls per pod, by the plugin's user, with the pod's context.
    events = audit(srv)
    for r, p in zip(recs, pods):
        def mine(e):
            rp = e.get("requestParameters") or {}
            ctx = rp.get("encryptionContext") or (rp.get("constraints") or {}).get(
                "EncryptionContextEquals") or {}
            return ctx.get("k8s:podUID") == p[2] or rp.get("grantId") == r["grantId"]
        by_plugin = [e["eventName"] for e in events if mine(e) and e.get("errorCode") is None
                     and e["userIdentity"].get("arn") == user_arn]
        assert sorted(by_plugin) == sorted(["GenerateDataKeyWithoutPlaintext", "CreateGrant",
                                            "Decrypt", "RetireGrant"]), by_plugin
        gdk = [e for e in events if mine(e) and e["eventName"] == "GenerateDataKeyWithoutPlaintext"]
        assert gdk[0]["requestParameters"]["numberOfBytes"] == 64
        assert gdk[0]["requestParameters"]["encryptionContext"]["ferry:node"] == NODE


def test_idempotency_and_conflicts(env):
    _, plugin, _, _ = env
    pod = new_pod("conflict")
    v = f"csi-{uuid.uuid4().hex}"
    t = target_for(plugin, pod[2])
    plugin.publish(v, t, pod, attrs={"size": "1Gi"})
    try:
        plugin.publish(v, t, pod, attrs={"size": "1Gi"})
        # Same target, other parameters: ALREADY_EXISTS.
        e = rpc_error(plugin.publish, v, t, pod, attrs={"size": "2Gi"})
        assert e.code() == grpc.StatusCode.ALREADY_EXISTS
        e = rpc_error(plugin.publish, v, t, pod, attrs={"size": "1Gi"}, readonly=True)
        assert e.code() == grpc.StatusCode.ALREADY_EXISTS
        # Same volume at another target (single-node volume): FAILED_PRECONDITION (spec table).
        t2 = target_for(plugin, pod[2], "other")
        e = rpc_error(plugin.publish, v, t2, pod, attrs={"size": "1Gi"})
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert not os.path.exists(t2)
        # Unpublish at a target where it is not published: OK, and it stays where it is.
        plugin.unpublish(v, t2)
        assert is_mount_point(t)
    finally:
        plugin.unpublish(v, t)
    assert not os.path.exists(t)
    plugin.unpublish(f"csi-{uuid.uuid4().hex}", t)


def test_read_only_volume(env):
    _, plugin, _, _ = env
    pod = new_pod("ro")
    v = f"csi-{uuid.uuid4().hex}"
    t = target_for(plugin, pod[2])
    plugin.publish(v, t, pod, attrs={"size": "1Gi"}, readonly=True)
    try:
        with pytest.raises(OSError) as e:
            open(os.path.join(t, "x"), "w")
        assert e.value.errno == 30  # EROFS
    finally:
        plugin.unpublish(v, t)


def test_error_paths(env):
    srv, plugin, _, user_arn = env
    pod = new_pod("bad")
    t = target_for(plugin, pod[2])
    v = f"csi-{uuid.uuid4().hex}"
    INVALID, PRECOND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
    cases = [
        (dict(drop=["volume_id"]), INVALID, "volume_id"),
        (dict(drop=["target_path"]), INVALID, "target_path"),
        (dict(drop=["volume_capability"]), INVALID, "volume_capability"),
        (dict(ephemeral=False), INVALID, "ephemeral"),
        (dict(attrs={"size": "500Gi"}), INVALID, "1Gi..200Gi"),
        (dict(attrs={"size": "512Mi"}), INVALID, "1Gi..200Gi"),
        (dict(attrs={"size": "lots"}), INVALID, "quantity"),
        (dict(attrs={"sise": "1Gi"}), INVALID, "unknown volume attribute"),
        (dict(group="staff"), INVALID, "volume_mount_group"),
        (dict(block=True), PRECOND, "block"),
        (dict(mode=pb.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER), PRECOND, "access mode"),
        (dict(attrs={"kmsKeyId": "alias/no-such-key"}), INVALID, "NotFoundException"),
    ]
    for kw, code, words in cases:
        e = rpc_error(plugin.publish, v, t, pod, **kw)
        assert e.code() == code, (kw, e.code(), e.details())
        assert words in e.details(), (kw, e.details())
        assert not os.path.exists(t), kw
        assert not os.path.exists(os.path.dirname(plugin.image(v))), kw
    # podInfoOnMount missing.
    e = rpc_error(plugin.node.NodePublishVolume, pb.NodePublishVolumeRequest(
        volume_id=v, target_path=t,
        volume_capability=pb.VolumeCapability(
            mount=pb.VolumeCapability.MountVolume(),
            access_mode=pb.VolumeCapability.AccessMode(
                mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER)),
        volume_context={"csi.storage.k8s.io/ephemeral": "true"}))
    assert e.code() == INVALID and "podInfoOnMount" in e.details()
    for req, words in ((pb.NodeUnpublishVolumeRequest(target_path=t), "volume_id"),
                       (pb.NodeUnpublishVolumeRequest(volume_id=v), "target_path")):
        e = rpc_error(plugin.node.NodeUnpublishVolume, req)
        assert e.code() == INVALID and words in e.details()
    e = rpc_error(plugin.stats, "", t)
    assert e.code() == INVALID
    e = rpc_error(plugin.stats, v, "")
    assert e.code() == INVALID
    e = rpc_error(plugin.stats, v, t)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    # A key the plugin may not use (its policy denies the plugin's user): refused by KMS.
    kms = srv.client("kms")
    account = srv.client("sts").get_caller_identity()["Account"]
    other = kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": user_arn}, "Action": "kms:*", "Resource": "*"},
    ]}))["KeyMetadata"]
    e = rpc_error(plugin.publish, v, t, pod, attrs={"kmsKeyId": other["Arn"]})
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e.details()
    assert not os.path.exists(os.path.dirname(plugin.image(v)))


def test_restart_readopts_published_and_shreds_orphans(env):
    srv, plugin, key, _ = env
    kept_pod, orphan_pod = new_pod("kept"), new_pod("orphan")
    kept, orphan = f"csi-{uuid.uuid4().hex}", f"csi-{uuid.uuid4().hex}"
    kt, ot = target_for(plugin, kept_pod[2]), target_for(plugin, orphan_pod[2])
    plugin.publish(kept, kt, kept_pod, attrs={"size": "1Gi"})
    plugin.publish(orphan, ot, orphan_pod, attrs={"size": "1Gi"})
    with open(os.path.join(kt, "before"), "w") as f:
        f.write("written before the restart")
    orphan_image = plugin.image(orphan)
    orphan_grant = json.load(open(os.path.join(os.path.dirname(orphan_image),
                                               "record.json")))["grantId"]
    # A stray image without a record (a crash between mkdir and record).
    stray_dir = os.path.join(plugin.data_dir, "volumes", "f" * 64)
    os.makedirs(stray_dir)
    shutil.copy(orphan_image, os.path.join(stray_dir, "volume.img"))

    plugin.stop(signal.SIGKILL)
    # While the plugin is down, the orphan's pod goes and its target with it
    # (kubelet gave up on it): the volume's mount is gone.
    subprocess.run(["umount", "-l", ot], check=True)
    os.rmdir(ot)
    # The kept pod's volume is still served without the plugin.
    with open(os.path.join(kt, "during"), "w") as f:
        f.write("written while the plugin was down")

    assert pids_with_args("serve", "--image", orphan_image)
    plugin.start()
    assert "re-adopted a published volume" in plugin.log()
    assert not os.path.exists(orphan_image) and not os.path.exists(stray_dir)
    # The orphan's volume server (its mount gone) is stopped, its FUSE mount too.
    assert not pids_with_args("serve", "--image", orphan_image)
    orphan_run = os.path.join(plugin.data_dir, "run", os.path.basename(os.path.dirname(orphan_image)))
    assert orphan_run not in open("/proc/self/mountinfo").read()
    assert not os.path.exists(orphan_run)
    assert pids_with_args("serve", "--image", plugin.image(kept))
    grants = {g["GrantId"] for g in srv.client("kms").list_grants(KeyId=key["KeyId"])["Grants"]}
    assert orphan_grant not in grants
    # The kept volume: usable, its stats known, and unpublishable.
    assert open(os.path.join(kt, "before")).read() == "written before the restart"
    with open(os.path.join(kt, "after"), "w") as f:
        f.write("and after")
    assert plugin.stats(kept, kt).usage[0].used > 0
    plugin.publish(kept, kt, kept_pod, attrs={"size": "1Gi"})
    image = plugin.image(kept)
    plugin.unpublish(kept, kt)
    assert not os.path.exists(kt) and not os.path.exists(image)
    assert not pids_with_args("serve", "--image", image)
    assert os.listdir(os.path.join(plugin.data_dir, "run")) == []


def test_startup_errors_are_one_clear_line(tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIAX\naws_secret_access_key = s\n")
    base = ["--endpoint", f"unix://{tmp_path}/csi.sock", "--kms-endpoint", "http://127.0.0.1:1",
            "--credentials", str(creds), "--node-id", NODE, "--data-dir", str(tmp_path / "d")]

    def fails(args, words):
        r = subprocess.run([ferry_bin(), "csi", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("ferry: ") and words in last, r.stderr

    fails(base, "cannot reach http://127.0.0.1:1/")
    fails([*base[:1], "/csi.sock", *base[2:]], "must be unix:///ABSOLUTE/PATH")
    fails([*base[:3], "127.0.0.1:1", *base[4:]], "bad KMS endpoint")
    fails([*base[:5], str(tmp_path / "nope"), *base[6:]], "reading --credentials")
    assert not (tmp_path / "csi.sock").exists()
