"""The EC2 API subset (VPCs, subnets, security groups and rules, ENIs,
tags, availability zones) end to end, with the real AWS CLI and boto3
against a real `ferry server`.

No tasks run here (the task path is tested with RunTask); the VPCs these
tests create use blocks from the conftest's VPC_SPACE."""

import ipaddress
import itertools
import json
import time

import pytest
from botocore.exceptions import ClientError

from conftest import SOURCE_ACCOUNT, TASK_SUBNET, VPC_SPACE, fresh_server

SPACE = ipaddress.ip_network(VPC_SPACE)
# Subnets of every server's VPCs must not overlap (one host routing table):
# hand out /26s from the space, one at a time.
_BLOCKS = iter(SPACE.subnets(new_prefix=26))


def block():
    return str(next(_BLOCKS))


@pytest.fixture(scope="module")
def srv():
    yield from fresh_server()


def cli_error(srv, *args):
    """Runs `aws ec2 ARGS`, which must fail; returns the AwsCliError with
    its code (EC2's have dots: InvalidSubnet.Conflict) and message."""
    e = srv.aws_error("ec2", *args)
    assert e.code, e.stderr
    return e


def code(err):
    return err.response["Error"]["Code"]


def new_vpc(srv, cidr=None, *extra):
    return srv.aws("ec2", "create-vpc", "--cidr-block", cidr or str(SPACE), *extra)["Vpc"]


def test_the_default_vpc_its_subnets_and_group_exist_from_the_first_start(srv):
    vpcs = srv.aws("ec2", "describe-vpcs", "--filters", "Name=isDefault,Values=true")["Vpcs"]
    assert len(vpcs) == 1, vpcs
    vpc = vpcs[0]
    assert vpc["CidrBlock"] == TASK_SUBNET and vpc["IsDefault"] is True and vpc["State"] == "available"
    assert vpc["VpcId"].startswith("vpc-") and len(vpc["VpcId"]) == 21
    assert vpc["OwnerId"] == SOURCE_ACCOUNT
    subnets = srv.aws("ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true",
                      f"Name=vpc-id,Values={vpc['VpcId']}")["Subnets"]
    net = ipaddress.ip_network(TASK_SUBNET)
    expected = [str(s) for s in itertools.islice(net.subnets(prefixlen_diff=4), 3)]
    assert sorted(s["CidrBlock"] for s in subnets) == sorted(expected)
    assert sorted(s["AvailabilityZone"] for s in subnets) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    size = 2 ** (32 - net.prefixlen - 4)
    for s in subnets:
        assert s["DefaultForAz"] and s["MapPublicIpOnLaunch"] and s["State"] == "available"
        assert s["AvailableIpAddressCount"] == size - 5
        assert s["SubnetArn"].endswith(f":subnet/{s['SubnetId']}")
    groups = srv.aws("ec2", "describe-security-groups", "--filters",
                     f"Name=vpc-id,Values={vpc['VpcId']}", "Name=group-name,Values=default")["SecurityGroups"]
    assert len(groups) == 1
    g = groups[0]
    assert g["IpPermissions"] == [{"IpProtocol": "-1", "IpRanges": [], "Ipv6Ranges": [], "PrefixListIds": [],
                                   "UserIdGroupPairs": [{"GroupId": g["GroupId"], "UserId": g["OwnerId"]}]}]
    assert g["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    zones = srv.aws("ec2", "describe-availability-zones")["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert all(z["State"] == "available" and z["RegionName"] == "us-east-1" for z in zones)


def test_vpcs_and_subnets_are_created_described_and_deleted(srv):
    vpc = new_vpc(srv, None, "--tag-specifications",
                  "ResourceType=vpc,Tags=[{Key=Name,Value=payments}]")
    vid = vpc["VpcId"]
    assert vpc["Tags"] == [{"Key": "Name", "Value": "payments"}] and vpc["IsDefault"] is False
    got = srv.aws("ec2", "describe-vpcs", "--vpc-ids", vid)["Vpcs"]
    assert [v["CidrBlock"] for v in got] == [str(SPACE)]
    tagged = srv.aws("ec2", "describe-vpcs", "--filters", "Name=tag:Name,Values=pay*")["Vpcs"]
    assert vid in [v["VpcId"] for v in tagged]
    cidr = block()
    sub = srv.aws("ec2", "create-subnet", "--vpc-id", vid, "--cidr-block", cidr,
                  "--availability-zone", "us-east-1b")["Subnet"]
    assert sub["AvailableIpAddressCount"] == 64 - 5 and sub["AvailabilityZone"] == "us-east-1b"
    assert sub["DefaultForAz"] is False
    found = srv.aws("ec2", "describe-subnets", "--filters", f"Name=vpc-id,Values={vid}")["Subnets"]
    assert [s["SubnetId"] for s in found] == [sub["SubnetId"]]
    # Overlaps are refused, in the same VPC and (one host routing table) in another.
    e = cli_error(srv, "create-subnet", "--vpc-id", vid, "--cidr-block", cidr)
    assert e.code == "InvalidSubnet.Conflict", e.stderr
    assert e.message == f"The CIDR '{cidr}' conflicts with another subnet"
    other = new_vpc(srv)["VpcId"]
    e = cli_error(srv, "create-subnet", "--vpc-id", other, "--cidr-block", cidr)
    assert e.code == "InvalidSubnet.Conflict" and "routing table" in e.message, e.stderr
    e = cli_error(srv, "create-subnet", "--vpc-id", vid, "--cidr-block", "10.99.0.0/24")
    assert (e.code, e.message) == ("InvalidSubnet.Range", "The CIDR '10.99.0.0/24' is invalid.")
    e = cli_error(srv, "create-vpc", "--cidr-block", "10.0.0.0/8")
    assert (e.code, e.message) == ("InvalidVpc.Range", "The CIDR '10.0.0.0/8' is invalid.")
    e = cli_error(srv, "create-vpc", "--cidr-block", "10.0.0.5/16")
    assert e.code == "InvalidParameterValue", e.stderr
    # A VPC with a subnet cannot go; then it can, with its default group.
    e = cli_error(srv, "delete-vpc", "--vpc-id", vid)
    assert (e.code, e.message) == ("DependencyViolation", f"The vpc '{vid}' has dependencies and cannot be deleted.")
    srv.aws("ec2", "delete-subnet", "--subnet-id", sub["SubnetId"])
    srv.aws("ec2", "delete-vpc", "--vpc-id", vid)
    srv.aws("ec2", "delete-vpc", "--vpc-id", other)
    e = cli_error(srv, "describe-vpcs", "--vpc-ids", vid)
    assert (e.code, e.message) == ("InvalidVpcID.NotFound", f"The vpc ID '{vid}' does not exist")
    e = cli_error(srv, "describe-subnets", "--subnet-ids", "subnet-12345678")
    assert (e.code, e.message) == ("InvalidSubnetID.NotFound", "The subnet ID 'subnet-12345678' does not exist")


def test_security_group_rules_with_cidr_and_group_sources(srv):
    vid = new_vpc(srv)["VpcId"]
    a = srv.aws("ec2", "create-security-group", "--group-name", "a", "--description", "clients",
                "--vpc-id", vid)["GroupId"]
    b = srv.aws("ec2", "create-security-group", "--group-name", "b", "--description", "servers",
                "--vpc-id", vid, "--tag-specifications",
                "ResourceType=security-group,Tags=[{Key=tier,Value=web}]")["GroupId"]
    e = cli_error(srv, "create-security-group", "--group-name", "a", "--description", "x", "--vpc-id", vid)
    assert (e.code, e.message) == ("InvalidGroup.Duplicate", f"The security group 'a' already exists for VPC '{vid}'")
    perms = [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
              "UserIdGroupPairs": [{"GroupId": a, "Description": "from a"}],
              "IpRanges": [{"CidrIp": "192.0.2.0/24"}]}]
    out = srv.aws("ec2", "authorize-security-group-ingress", "--group-id", b,
                  "--ip-permissions", json.dumps(perms))
    assert out["Return"] is True and len(out["SecurityGroupRules"]) == 2
    by_peer = {r.get("CidrIpv4") or r["ReferencedGroupInfo"]["GroupId"]: r for r in out["SecurityGroupRules"]}
    assert by_peer[a]["Description"] == "from a" and by_peer[a]["FromPort"] == 80
    assert by_peer["192.0.2.0/24"]["IsEgress"] is False
    # The shorthand form.
    srv.aws("ec2", "authorize-security-group-ingress", "--group-id", b, "--protocol", "udp",
            "--port", "53", "--cidr", "198.51.100.0/24")
    e = cli_error(srv, "authorize-security-group-ingress", "--group-id", b, "--protocol", "tcp",
                      "--port", "80", "--cidr", "192.0.2.0/24")
    assert e.code == "InvalidPermission.Duplicate", e.stderr
    assert e.message == 'the specified rule "peer: 192.0.2.0/24, TCP, from port: 80, to port: 80, ALLOW" already exists'
    g = srv.aws("ec2", "describe-security-groups", "--group-ids", b)["SecurityGroups"][0]
    assert g["Tags"] == [{"Key": "tier", "Value": "web"}] and g["Description"] == "servers"
    tcp = [p for p in g["IpPermissions"] if p["IpProtocol"] == "tcp"][0]
    assert tcp["FromPort"] == 80 and tcp["ToPort"] == 80
    assert tcp["UserIdGroupPairs"][0]["GroupId"] == a and tcp["IpRanges"] == [{"CidrIp": "192.0.2.0/24"}]
    assert {p["IpProtocol"] for p in g["IpPermissions"]} == {"tcp", "udp"}
    rules = srv.aws("ec2", "describe-security-group-rules", "--filters", f"Name=group-id,Values={b}")["SecurityGroupRules"]
    assert len(rules) == 4 and sum(r["IsEgress"] for r in rules) == 1
    assert all(r["SecurityGroupRuleId"].startswith("sgr-") for r in rules)
    # Referenced by b's rule, a cannot be deleted.
    e = cli_error(srv, "delete-security-group", "--group-id", a)
    assert (e.code, e.message) == ("DependencyViolation", f"resource {a} has a dependent object")
    srv.aws("ec2", "revoke-security-group-ingress", "--group-id", b, "--ip-permissions",
            json.dumps([{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": a}]}]))
    e = cli_error(srv, "revoke-security-group-ingress", "--group-id", b, "--ip-permissions",
                      json.dumps([{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": a}]}]))
    assert (e.code, e.message) == ("InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
    udp = [r for r in rules if r.get("IpProtocol") == "udp"][0]
    srv.aws("ec2", "revoke-security-group-ingress", "--group-id", b,
            "--security-group-rule-ids", udp["SecurityGroupRuleId"])
    left = srv.aws("ec2", "describe-security-group-rules", "--filters", f"Name=group-id,Values={b}",
                   "Name=tag:none,Values=x")["SecurityGroupRules"]
    assert left == []
    left = srv.aws("ec2", "describe-security-group-rules", "--filters", f"Name=group-id,Values={b}")["SecurityGroupRules"]
    assert sorted(r.get("CidrIpv4") for r in left) == ["0.0.0.0/0", "192.0.2.0/24"]
    srv.aws("ec2", "authorize-security-group-egress", "--group-id", a, "--ip-permissions",
            json.dumps([{"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]))
    srv.aws("ec2", "delete-security-group", "--group-id", a)
    default = srv.aws("ec2", "describe-security-groups", "--filters", f"Name=vpc-id,Values={vid}",
                      "Name=group-name,Values=default")["SecurityGroups"][0]["GroupId"]
    e = cli_error(srv, "delete-security-group", "--group-id", default)
    assert e.code == "CannotDelete", e.stderr
    e = cli_error(srv, "describe-security-groups", "--group-ids", "sg-12345678")
    assert (e.code, e.message) == ("InvalidGroup.NotFound", "The security group 'sg-12345678' does not exist")
    srv.aws("ec2", "delete-security-group", "--group-id", b)
    srv.aws("ec2", "delete-vpc", "--vpc-id", vid)


def test_tags_dry_run_pagination_and_boto3(srv):
    ec2 = srv.client("ec2")
    vids = [ec2.create_vpc(CidrBlock=str(SPACE))["Vpc"]["VpcId"] for _ in range(6)]
    ec2.create_tags(Resources=vids[:2], Tags=[{"Key": "team", "Value": "pay"}, {"Key": "env", "Value": ""}])
    tags = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["team"]}])["Tags"]
    assert sorted(t["ResourceId"] for t in tags) == sorted(vids[:2])
    assert all(t["ResourceType"] == "vpc" and t["Value"] == "pay" for t in tags)
    ec2.delete_tags(Resources=[vids[0]], Tags=[{"Key": "team"}])
    got = ec2.describe_vpcs(VpcIds=[vids[0]])["Vpcs"][0]
    assert got["Tags"] == [{"Key": "env", "Value": ""}]
    with pytest.raises(ClientError) as e:
        ec2.create_tags(Resources=["vpc-0000000000000000f"], Tags=[{"Key": "a", "Value": "b"}])
    assert code(e.value) == "InvalidVpcID.NotFound"

    e = cli_error(srv, "create-vpc", "--cidr-block", str(SPACE), "--dry-run")
    assert (e.code, e.message) == ("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
    e = cli_error(srv, "describe-vpcs", "--dry-run")
    assert e.code == "DryRunOperation"
    total = len(ec2.describe_vpcs()["Vpcs"])
    assert total >= 7
    pages = list(ec2.get_paginator("describe_vpcs").paginate(PaginationConfig={"PageSize": 5}))
    assert len(pages) >= 2 and all(len(p["Vpcs"]) <= 5 for p in pages)
    ids = [v["VpcId"] for p in pages for v in p["Vpcs"]]
    assert len(ids) == len(set(ids)) == total
    cli = srv.aws("ec2", "describe-vpcs", "--page-size", "5")["Vpcs"]
    assert sorted(v["VpcId"] for v in cli) == sorted(ids)
    with pytest.raises(ClientError) as e:
        ec2.describe_vpcs(NextToken="vpc-0000000000000000f")
    assert code(e.value) == "InvalidNextToken"
    with pytest.raises(ClientError) as e:
        ec2.describe_vpcs(Filters=[{"Name": "bogus", "Values": ["x"]}])
    assert code(e.value) == "InvalidParameterValue"
    assert ec2.describe_network_interfaces()["NetworkInterfaces"] == []
    with pytest.raises(ClientError) as e:
        ec2.describe_network_interfaces(NetworkInterfaceIds=["eni-12345678"])
    assert code(e.value) == "InvalidNetworkInterfaceID.NotFound"
    for v in vids:
        ec2.delete_vpc(VpcId=v)


def test_iam_policies_gate_ec2_actions(srv):
    srv.aws("iam", "create-user", "--user-name", "netreader")
    srv.aws("iam", "put-user-policy", "--user-name", "netreader", "--policy-name", "p", "--policy-document",
            json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}))
    k = srv.aws("iam", "create-access-key", "--user-name", "netreader")["AccessKey"]
    ec2 = srv.client("ec2", access_key=k["AccessKeyId"], secret_key=k["SecretAccessKey"])
    deadline = time.time() + 10
    while True:
        try:
            vpcs = ec2.describe_vpcs()["Vpcs"]
            break
        except ClientError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    assert any(v["IsDefault"] for v in vpcs)
    with pytest.raises(ClientError) as e:
        ec2.create_vpc(CidrBlock=str(SPACE))
    assert code(e.value) == "UnauthorizedOperation"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_default_vpc_and_created_resources_survive_a_restart(ferry_server):
    srv = ferry_server
    before = srv.aws("ec2", "describe-vpcs", "--filters", "Name=is-default,Values=true")["Vpcs"][0]
    vid = new_vpc(srv)["VpcId"]
    sid = srv.aws("ec2", "create-subnet", "--vpc-id", vid, "--cidr-block", block())["Subnet"]["SubnetId"]
    srv.restart()
    after = srv.aws("ec2", "describe-vpcs")["Vpcs"]
    assert {v["VpcId"] for v in after} == {before["VpcId"], vid}
    assert srv.aws("ec2", "describe-subnets", "--subnet-ids", sid)["Subnets"][0]["VpcId"] == vid
