"""The Fargate way end to end: push to ferry's own registry with the real
AWS CLI and skopeo, then run tasks naming the image by its ECR reference
(`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG`) and by digest, with no
`ferry image` step. The task's execution role logs in to the registry
(`ecr:GetAuthorizationToken` as the role), the image is pulled once into the
host's sealed store and served, a second task finds it cached, a missing tag
fails with CannotPullContainerError, and no byte of the marker file the
image carries is anywhere on the host disk in plaintext.
"""

import json
import subprocess
import uuid

from conftest import (MAKE_IMAGE, SOURCE_TD, create_source_log_group, private_ip, state_files,
                      task_page, wait_status, wait_stopped)
from test_registry import host, login, skopeo


def audit(srv):
    return srv.audit_records()


def registry_decrypts(srv, repo_arn):
    """The registry's data-key unwraps for the repository: one per blob read."""
    ctx = {"aws:ecr:arn": repo_arn}
    return [a for a in audit(srv) if a["eventName"] == "Decrypt"
            and (a.get("requestParameters") or {}).get("encryptionContext") == ctx]


def register(srv, tmp_path, family, image, exec_role=True):
    doc = json.load(open(SOURCE_TD))
    doc["family"] = family
    doc["containerDefinitions"][0]["image"] = image
    if not exec_role:
        doc.pop("executionRoleArn", None)
        doc["containerDefinitions"][0].pop("logConfiguration", None)
    p = tmp_path / f"{family}.json"
    p.write_text(json.dumps(doc))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")


def run(srv, family):
    out = srv.aws("ecs", "run-task", "--task-definition", family, "--launch-type", "FARGATE",
                  "--network-configuration", srv.netcfg)
    assert out["failures"] == [], out
    return out["tasks"][0]["taskArn"]


def fetch(task, path):
    return task_page(private_ip(task), path)


def test_tasks_run_images_from_ferrys_registry_by_tag_and_digest(ferry_server, tmp_path):
    srv = ferry_server
    marker = f"ferry-ecr-task-marker-{uuid.uuid4().hex}"
    archive = tmp_path / "httpd-oci.tar"
    subprocess.run(["python3", MAKE_IMAGE, "--format", "oci", "--name", "httpd:2.4", "--marker", marker,
                    str(archive)], check=True)

    repo = srv.aws("ecr", "create-repository", "--repository-name", "payments/web")["repository"]
    account = srv.aws("sts", "get-caller-identity")["Account"]
    assert repo["repositoryUri"] == f"{account}.dkr.ecr.us-east-1.amazonaws.com/payments/web", repo
    authfile = str(tmp_path / "auth.json")
    login(srv, authfile)
    digestfile = tmp_path / "digest"
    skopeo("copy", "--authfile", authfile, "--dest-tls-verify=false", "--digestfile", str(digestfile),
           f"oci-archive:{archive}", f"docker://{host(srv)}/payments/web:v1")
    digest = digestfile.read_text().strip()
    assert digest.startswith("sha256:")

    create_source_log_group(srv)
    uri = repo["repositoryUri"]
    register(srv, tmp_path, "from-ecr", f"{uri}:v1")
    before = len(registry_decrypts(srv, repo["repositoryArn"]))
    arn = run(srv, "from-ecr")
    t, _ = wait_status(srv, arn, "RUNNING")
    assert fetch(t, "/marker.html").strip() == marker
    assert t["pullStartedAt"] <= t["pullStoppedAt"] <= t["startedAt"], t
    pulled = len(registry_decrypts(srv, repo["repositoryArn"]))
    # The manifest, the config and the layer were read from the registry.
    assert pulled - before >= 3, (before, pulled)

    # The same image by digest: found in the host's store, not pulled again.
    register(srv, tmp_path, "by-digest", f"{uri}@{digest}")
    arn2 = run(srv, "by-digest")
    t2, _ = wait_status(srv, arn2, "RUNNING")
    assert fetch(t2, "/marker.html").strip() == marker
    assert "pullStartedAt" in t2 and "pullStoppedAt" in t2
    assert len(registry_decrypts(srv, repo["repositoryArn"])) == pulled

    # With both tasks running (their volumes mounted), no plaintext marker
    # is on the host disk outside them: not in the registry, not in the
    # host's image store, not in any temporary file.
    needle = marker.encode()
    hits = [p for p in state_files(srv) if needle in open(p, "rb").read()]
    assert hits == [], hits

    # A tag that does not exist.
    register(srv, tmp_path, "missing-tag", f"{uri}:nope")
    t3 = wait_stopped(srv, run(srv, "missing-tag"))
    assert t3["stopCode"] == "TaskFailedToStart", t3
    assert t3["stoppedReason"].startswith("CannotPullContainerError:"), t3["stoppedReason"]
    assert "not found" in t3["stoppedReason"], t3["stoppedReason"]

    for a in (arn, arn2):
        srv.aws("ecs", "stop-task", "--task", a)
    for a in (arn, arn2):
        wait_status(srv, a, "STOPPED")


def test_an_ecr_image_needs_an_execution_role_allowed_to_log_in(ferry_server, tmp_path):
    srv = ferry_server
    archive = tmp_path / "httpd-oci.tar"
    subprocess.run(["python3", MAKE_IMAGE, "--format", "oci", "--name", "httpd:2.4", str(archive)], check=True)
    repo = srv.aws("ecr", "create-repository", "--repository-name", "web")["repository"]
    authfile = str(tmp_path / "auth.json")
    login(srv, authfile)
    skopeo("copy", "--authfile", authfile, "--dest-tls-verify=false",
           f"oci-archive:{archive}", f"docker://{host(srv)}/web:v1")

    # No execution role: nobody to log in as.
    register(srv, tmp_path, "no-exec-role", f"{repo['repositoryUri']}:v1", exec_role=False)
    t = wait_stopped(srv, run(srv, "no-exec-role"))
    assert t["stopCode"] == "TaskFailedToStart", t
    assert "ecr" in t["stoppedReason"].lower(), t["stoppedReason"]

    # An execution role whose policies do not allow ecr:GetAuthorizationToken.
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = srv.aws("iam", "create-role", "--role-name", "no-ecr",
                   "--assume-role-policy-document", json.dumps(trust))["Role"]["Arn"]
    doc = json.load(open(SOURCE_TD))
    doc["family"] = "denied-exec-role"
    doc["executionRoleArn"] = role
    doc["containerDefinitions"][0]["image"] = f"{repo['repositoryUri']}:v1"
    doc["containerDefinitions"][0].pop("logConfiguration", None)
    p = tmp_path / "denied.json"
    p.write_text(json.dumps(doc))
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")
    t = wait_stopped(srv, run(srv, "denied-exec-role"))
    assert t["stopCode"] == "TaskFailedToStart", t
    assert "AccessDenied" in t["stoppedReason"] or "not authorized" in t["stoppedReason"], t["stoppedReason"]
