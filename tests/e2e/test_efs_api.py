"""The rest of the EFS API, end to end with the real AWS CLI: mount
targets (addresses and security groups in the VPC service's subnets, shown
as ENIs), the older tag API, lifecycle and backup policies, throughput and
protection updates, and file-system policies enforced for task mounts:
ClientMount, ClientWrite and ClientRootAccess for anonymous clients and for
IAM-authorized clients (the task role), with `aws:SecureTransport`.
"""

import json

from conftest import import_httpd, wait_stopped

GROUP = "/ecs/efs-api-e2e"
TRUST_ECS_TASKS = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def new_fs(srv, token):
    return srv.aws("efs", "create-file-system", "--creation-token", token)["FileSystemId"]


def test_mount_targets_take_addresses_and_groups_in_the_vpc(ferry_server):
    srv = ferry_server
    fs = new_fs(srv, "mt")
    subnets = srv.aws("ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true")["Subnets"]
    by_zone = {s["AvailabilityZone"]: s for s in subnets}
    a, b = by_zone["us-east-1a"], by_zone["us-east-1b"]
    free_before = a["AvailableIpAddressCount"]
    vpc = a["VpcId"]
    sg = srv.aws("ec2", "create-security-group", "--group-name", "nfs", "--description", "NFS",
                 "--vpc-id", vpc)["GroupId"]
    srv.aws("ec2", "authorize-security-group-ingress", "--group-id", sg, "--protocol", "tcp",
            "--port", "2049", "--cidr", "0.0.0.0/0")
    base = a["CidrBlock"].split("/")[0].rsplit(".", 1)[0]
    ip = f"{base}.77"
    mt = srv.aws("efs", "create-mount-target", "--file-system-id", fs, "--subnet-id", a["SubnetId"],
                 "--ip-address", ip, "--security-groups", sg)
    assert mt["IpAddress"] == ip and mt["VpcId"] == vpc and mt["LifeCycleState"] == "available"
    assert mt["AvailabilityZoneName"] == "us-east-1a" and mt["MountTargetId"].startswith("fsmt-")
    # The ENI is in the VPC service, and takes the address from the subnet.
    eni = srv.aws("ec2", "describe-network-interfaces", "--network-interface-ids",
                  mt["NetworkInterfaceId"])["NetworkInterfaces"][0]
    assert eni["PrivateIpAddress"] == ip and eni["SubnetId"] == a["SubnetId"]
    assert [g["GroupId"] for g in eni["Groups"]] == [sg]
    assert fs in eni["Description"]
    after = srv.aws("ec2", "describe-subnets", "--subnet-ids", a["SubnetId"])["Subnets"][0]
    assert after["AvailableIpAddressCount"] == free_before - 1
    # EFS's refusals: same zone, address taken, unknown subnet and group.
    e = srv.aws_error("efs", "create-mount-target", "--file-system-id", fs, "--subnet-id", a["SubnetId"])
    assert e.code == "MountTargetConflict", e
    fs2 = new_fs(srv, "mt2")
    e = srv.aws_error("efs", "create-mount-target", "--file-system-id", fs2, "--subnet-id", a["SubnetId"],
                      "--ip-address", ip)
    assert e.code == "IpAddressInUse", e
    e = srv.aws_error("efs", "create-mount-target", "--file-system-id", fs2,
                      "--subnet-id", "subnet-0123456789abcdef0")
    assert e.code == "SubnetNotFound", e
    e = srv.aws_error("efs", "create-mount-target", "--file-system-id", fs2, "--subnet-id", b["SubnetId"],
                      "--security-groups", "sg-0123456789abcdef0")
    assert e.code == "SecurityGroupNotFound", e
    # A second zone; the default group when none is named.
    mt_b = srv.aws("efs", "create-mount-target", "--file-system-id", fs, "--subnet-id", b["SubnetId"])
    groups = srv.aws("efs", "describe-mount-target-security-groups",
                     "--mount-target-id", mt_b["MountTargetId"])["SecurityGroups"]
    default_sg = srv.aws("ec2", "describe-security-groups", "--filters", f"Name=vpc-id,Values={vpc}",
                         "Name=group-name,Values=default")["SecurityGroups"][0]["GroupId"]
    assert groups == [default_sg]
    srv.aws("efs", "modify-mount-target-security-groups", "--mount-target-id", mt_b["MountTargetId"],
            "--security-groups", sg, default_sg)
    eni_b = srv.aws("ec2", "describe-network-interfaces", "--network-interface-ids",
                    mt_b["NetworkInterfaceId"])["NetworkInterfaces"][0]
    assert sorted(g["GroupId"] for g in eni_b["Groups"]) == sorted([sg, default_sg])
    # A group in use by a mount target cannot be deleted.
    e = srv.aws_error("ec2", "delete-security-group", "--group-id", sg)
    assert e.code == "DependencyViolation", e
    listed = srv.aws("efs", "describe-mount-targets", "--file-system-id", fs)["MountTargets"]
    assert sorted(m["MountTargetId"] for m in listed) == sorted([mt["MountTargetId"], mt_b["MountTargetId"]])
    desc = srv.aws("efs", "describe-file-systems", "--file-system-id", fs)["FileSystems"][0]
    assert desc["NumberOfMountTargets"] == 2
    e = srv.aws_error("efs", "describe-mount-targets")
    assert e.code == "BadRequest", e
    # The file system goes only after its mount targets; their addresses
    # return to the subnet.
    e = srv.aws_error("efs", "delete-file-system", "--file-system-id", fs)
    assert e.code == "FileSystemInUse", e
    for m in (mt, mt_b):
        srv.aws("efs", "delete-mount-target", "--mount-target-id", m["MountTargetId"])
    e = srv.aws_error("efs", "delete-mount-target", "--mount-target-id", mt["MountTargetId"])
    assert e.code == "MountTargetNotFound", e
    after = srv.aws("ec2", "describe-subnets", "--subnet-ids", a["SubnetId"])["Subnets"][0]
    assert after["AvailableIpAddressCount"] == free_before
    srv.aws("efs", "delete-file-system", "--file-system-id", fs)
    srv.aws("ec2", "delete-security-group", "--group-id", sg)


def test_mount_targets_survive_a_restart(ferry_server):
    srv = ferry_server
    fs = new_fs(srv, "mt-restart")
    subnet = srv.aws("ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true")["Subnets"][0]
    mt = srv.aws("efs", "create-mount-target", "--file-system-id", fs, "--subnet-id", subnet["SubnetId"])
    srv.restart()
    # Task ENIs no task holds are freed at start; a mount target's is not.
    eni = srv.aws("ec2", "describe-network-interfaces", "--network-interface-ids",
                  mt["NetworkInterfaceId"])["NetworkInterfaces"][0]
    assert eni["PrivateIpAddress"] == mt["IpAddress"]
    got = srv.aws("efs", "describe-mount-targets", "--mount-target-id", mt["MountTargetId"])["MountTargets"]
    assert got[0]["IpAddress"] == mt["IpAddress"]


def test_tags_lifecycle_backup_throughput_and_protection(ferry_server):
    srv = ferry_server
    fs = new_fs(srv, "settings")
    srv.aws("efs", "create-tags", "--file-system-id", fs, "--tags", "Key=Name,Value=ledger", "Key=team,Value=pay")
    tags = srv.aws("efs", "describe-tags", "--file-system-id", fs)["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"Name": "ledger", "team": "pay"}
    assert srv.aws("efs", "describe-file-systems", "--file-system-id", fs)["FileSystems"][0]["Name"] == "ledger"
    srv.aws("efs", "delete-tags", "--file-system-id", fs, "--tag-keys", "team")
    assert srv.aws("efs", "list-tags-for-resource", "--resource-id", fs)["Tags"] == [{"Key": "Name", "Value": "ledger"}]
    e = srv.aws_error("efs", "describe-tags", "--file-system-id", "fs-0123456789abcdef0")
    assert e.code == "FileSystemNotFound", e

    assert srv.aws("efs", "describe-lifecycle-configuration", "--file-system-id", fs)["LifecyclePolicies"] == []
    lc = [{"TransitionToIA": "AFTER_30_DAYS"}, {"TransitionToPrimaryStorageClass": "AFTER_1_ACCESS"}]
    srv.aws("efs", "put-lifecycle-configuration", "--file-system-id", fs, "--lifecycle-policies", json.dumps(lc))
    assert srv.aws("efs", "describe-lifecycle-configuration", "--file-system-id", fs)["LifecyclePolicies"] == lc
    e = srv.aws_error("efs", "put-lifecycle-configuration", "--file-system-id", fs, "--lifecycle-policies",
                      json.dumps([{"TransitionToIA": "AFTER_30_DAYS"}, {"TransitionToIA": "AFTER_7_DAYS"}]))
    assert e.code == "BadRequest", e

    assert srv.aws("efs", "describe-backup-policy", "--file-system-id", fs)["BackupPolicy"]["Status"] == "DISABLED"
    got = srv.aws("efs", "put-backup-policy", "--file-system-id", fs, "--backup-policy", "Status=ENABLED")
    assert got["BackupPolicy"]["Status"] == "ENABLED"
    assert srv.aws("efs", "describe-backup-policy", "--file-system-id", fs)["BackupPolicy"]["Status"] == "ENABLED"

    e = srv.aws_error("efs", "update-file-system", "--file-system-id", fs, "--throughput-mode", "provisioned")
    assert e.code == "BadRequest", e
    got = srv.aws("efs", "update-file-system", "--file-system-id", fs, "--throughput-mode", "provisioned",
                  "--provisioned-throughput-in-mibps", "256")
    assert got["ThroughputMode"] == "provisioned" and got["ProvisionedThroughputInMibps"] == 256.0
    got = srv.aws("efs", "update-file-system-protection", "--file-system-id", fs,
                  "--replication-overwrite-protection", "DISABLED")
    assert got["ReplicationOverwriteProtection"] == "DISABLED"
    desc = srv.aws("efs", "describe-file-systems", "--file-system-id", fs)["FileSystems"][0]
    assert desc["FileSystemProtection"]["ReplicationOverwriteProtection"] == "DISABLED"
    assert desc["ProvisionedThroughputInMibps"] == 256.0

    # The policy API itself (enforcement: the next test).
    e = srv.aws_error("efs", "describe-file-system-policy", "--file-system-id", fs)
    assert e.code == "PolicyNotFound", e
    e = srv.aws_error("efs", "put-file-system-policy", "--file-system-id", fs, "--policy", "{\"nope\": 1}")
    assert e.code == "InvalidPolicyException", e
    lockout = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"},
                                                                    "Action": "elasticfilesystem:*", "Resource": "*"}]})
    e = srv.aws_error("efs", "put-file-system-policy", "--file-system-id", fs, "--policy", lockout)
    assert e.code == "InvalidPolicyException" and "BypassPolicyLockoutSafetyCheck" in e.message, e
    srv.aws("efs", "put-file-system-policy", "--file-system-id", fs, "--policy", lockout,
            "--bypass-policy-lockout-safety-check")
    assert json.loads(srv.aws("efs", "describe-file-system-policy", "--file-system-id", fs)["Policy"]) == json.loads(lockout)
    srv.aws("efs", "delete-file-system-policy", "--file-system-id", fs)
    e = srv.aws_error("efs", "describe-file-system-policy", "--file-system-id", fs)
    assert e.code == "PolicyNotFound", e


def register(srv, tmp_path, family, script, fs, iam=False, transit=True, role=None):
    cfg = {"fileSystemId": fs}
    if transit:
        cfg["transitEncryption"] = "ENABLED"
    if iam:
        cfg["authorizationConfig"] = {"iam": "ENABLED"}
    td = {
        "family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "volumes": [{"name": "shared", "efsVolumeConfiguration": cfg}],
        "containerDefinitions": [{
            "name": "app", "image": "httpd:2.4", "essential": True,
            "entryPoint": ["sh", "-c"], "command": [script], "stopTimeout": 2,
            "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data"}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": GROUP, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "efs",
                "awslogs-create-group": "true"}},
        }],
    }
    if role:
        td["taskRoleArn"] = role
    path = tmp_path / f"{family}.json"
    path.write_text(json.dumps(td))
    return srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{path}")["taskDefinition"]["taskDefinitionArn"]


def run(srv, td):
    out = srv.aws("ecs", "run-task", "--task-definition", td, "--launch-type", "FARGATE",
                  "--network-configuration", srv.netcfg)
    assert out["failures"] == [], out
    return wait_stopped(srv, out["tasks"][0]["taskArn"])


def logs(srv, t):
    stream = f"efs/app/{t['taskArn'].rsplit('/', 1)[1]}"
    r = srv.aws("logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", stream, check=False)
    return "\n".join(e["message"] for e in r.get("events", [])) if isinstance(r, dict) else str(r)


def exits_0(srv, td):
    t = run(srv, td)
    assert t["stopCode"] == "EssentialContainerExited" and t["containers"][0].get("exitCode") == 0, (
        t.get("stoppedReason"), t["containers"][0].get("exitCode"), logs(srv, t))
    return logs(srv, t)


def refused(srv, td):
    t = run(srv, td)
    assert t["stopCode"] == "TaskFailedToStart", t
    assert "access denied by server" in t["stoppedReason"], t["stoppedReason"]
    return t["stoppedReason"]


def test_file_system_policy_decides_mount_write_and_root(ferry_server, tmp_path):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    fs = new_fs(srv, "policy")
    arn = srv.aws("efs", "describe-file-systems", "--file-system-id", fs)["FileSystems"][0]["FileSystemArn"]
    iam = srv.client("iam")
    role = iam.create_role(RoleName="efs-app", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))["Role"]["Arn"]
    other = iam.create_role(RoleName="efs-other", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))["Role"]["Arn"]

    # No policy: full access, root included; root's file is owned by root.
    writer = register(srv, tmp_path, "efs-writer",
                      "echo hi > /data/rootfile && chmod 644 /data/rootfile && mkdir -p /data/pub && chmod 777 /data/pub "
                      "&& chown 65534:65534 /data/pub", fs)
    exits_0(srv, writer)

    # Anonymous clients may mount over TLS, nothing more; the role may
    # mount and write but not keep root.
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "elasticfilesystem:ClientMount",
         "Resource": arn, "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
        {"Effect": "Allow", "Principal": {"AWS": role},
         "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"], "Resource": arn},
    ]}
    srv.aws("efs", "put-file-system-policy", "--file-system-id", fs, "--policy", json.dumps(policy))

    # Anonymous over TLS: read-only (the read works, a write fails with EROFS).
    reader = register(srv, tmp_path, "efs-reader",
                      "grep -q hi /data/rootfile || exit 4; if touch /data/pub/x 2>/tmp/err; then exit 3; fi; "
                      "grep -qi 'read-only' /tmp/err || { cat /tmp/err; exit 5; }", fs)
    exits_0(srv, reader)
    # Anonymous without transit encryption: not even mounted.
    plain = register(srv, tmp_path, "efs-plain", "true", fs, transit=False)
    reason = refused(srv, plain)
    assert "anonymous" in reason, reason

    # The task role (IAM authorization): writes, but root is squashed to
    # 65534: the root-owned file shows as 65534 and cannot be written; new
    # files work in the directory 65534 owns.
    squashed = register(
        srv, tmp_path, "efs-role",
        "test \"$(stat -c %u /data/rootfile)\" = 65534 || { stat /data/rootfile; exit 6; }; "
        "if echo more >> /data/rootfile 2>/dev/null; then exit 7; fi; "
        "echo new > /data/pub/by-role || exit 8", fs, iam=True, role=role)
    exits_0(srv, squashed)
    # Another role, neither named nor allowed by its own policies: only the
    # anonymous-style `*` statement applies to it, so it mounts read-only.
    other_td = register(srv, tmp_path, "efs-other",
                        "if touch /data/pub/y 2>/dev/null; then exit 3; fi; cat /data/pub/by-role", fs,
                        iam=True, role=other)
    out = exits_0(srv, other_td)
    assert "new" in out, out
    # IAM authorization without a task role cannot mount at all.
    norole = register(srv, tmp_path, "efs-norole", "true", fs, iam=True)
    t = run(srv, norole)
    assert t["stopCode"] == "TaskFailedToStart" and "no task role" in t["stoppedReason"], t

    # An explicit deny for the role wins over its allow; the identity
    # policy of a role can grant what the file-system policy does not name.
    deny = {"Version": "2012-10-17", "Statement": policy["Statement"] + [
        {"Effect": "Deny", "Principal": {"AWS": role}, "Action": "elasticfilesystem:ClientMount", "Resource": arn}]}
    srv.aws("efs", "put-file-system-policy", "--file-system-id", fs, "--policy", json.dumps(deny))
    refused(srv, squashed)
    iam.put_role_policy(RoleName="efs-other", PolicyName="efs-root", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "elasticfilesystem:Client*",
                                                 "Resource": arn}]}))
    full = register(srv, tmp_path, "efs-other-full",
                    "test \"$(stat -c %u /data/rootfile)\" = 0 && echo more >> /data/rootfile", fs,
                    iam=True, role=other)
    exits_0(srv, full)

    # Without a policy, everyone has full access again.
    srv.aws("efs", "delete-file-system-policy", "--file-system-id", fs)
    exits_0(srv, plain)
    exits_0(srv, writer)
