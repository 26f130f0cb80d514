//! Unit tests: every operation through the query service (parameters as
//! botocore writes them, XML as it parses it), and the typed API.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use ferry_proto::net::{FirewallRules, Peer, Traffic};
use ferry_proto::query::{Params, QueryService};
use ferry_proto::{AwsError, Caller, RequestContext};
use ferry_store::Store;

use crate::{AttachError, AttachRequest, Ec2, Ec2Service};

const ACC: &str = "111122223333";

struct T {
    dir: tempfile::TempDir,
    ec2: Arc<Ec2>,
    api: Ec2Service,
}

fn open(dir: &std::path::Path, cidr: &str) -> Arc<Ec2> {
    let store = Arc::new(Store::open(&dir.join("s.redb")).unwrap());
    Ec2::open(store, ACC, "us-east-1", cidr.parse().unwrap()).unwrap()
}

fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let ec2 = open(dir.path(), "198.18.0.0/16");
    T {
        dir,
        api: Ec2Service::new(ec2.clone()),
        ec2,
    }
}

impl T {
    fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<String, AwsError> {
        let mut p = Params::default();
        for (k, v) in params {
            p.insert(*k, *v);
        }
        let ctx = RequestContext::internal(Caller::admin(ACC), "us-east-1");
        self.api
            .call(&ctx, action, &p)
            .map(|x| x.as_str().to_owned())
    }

    fn ok(&self, action: &str, params: &[(&str, &str)]) -> String {
        self.call(action, params)
            .unwrap_or_else(|e| panic!("{action}: {}: {}", e.code, e.message))
    }

    fn err(&self, action: &str, params: &[(&str, &str)]) -> AwsError {
        match self.call(action, params) {
            Ok(x) => panic!("{action} succeeded: {x}"),
            Err(e) => e,
        }
    }

    fn vpc(&self, cidr: &str) -> String {
        first(&self.ok("CreateVpc", &[("CidrBlock", cidr)]), "vpcId")
    }

    fn subnet(&self, vpc: &str, cidr: &str) -> String {
        first(
            &self.ok("CreateSubnet", &[("VpcId", vpc), ("CidrBlock", cidr)]),
            "subnetId",
        )
    }

    fn group(&self, vpc: &str, name: &str) -> String {
        first(
            &self.ok(
                "CreateSecurityGroup",
                &[
                    ("VpcId", vpc),
                    ("GroupName", name),
                    ("GroupDescription", "d"),
                ],
            ),
            "groupId",
        )
    }

    fn default_group(&self, vpc: &str) -> String {
        first(
            &self.ok(
                "DescribeSecurityGroups",
                &[
                    ("Filter.1.Name", "vpc-id"),
                    ("Filter.1.Value.1", vpc),
                    ("Filter.2.Name", "group-name"),
                    ("Filter.2.Value.1", "default"),
                ],
            ),
            "groupId",
        )
    }
}

/// Every `<name>` text in `xml`, in order.
fn all(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(rest[..j].to_owned());
        rest = &rest[j..];
    }
    out
}

fn first(xml: &str, name: &str) -> String {
    all(xml, name)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
}

fn id_ok(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|h| {
        h.len() == 17
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[test]
fn a_new_account_has_a_default_vpc_with_three_subnets_and_a_default_group() {
    let t = setup();
    let x = t.ok("DescribeVpcs", &[]);
    assert_eq!(all(&x, "vpcId").len(), 1, "{x}");
    let vpc = first(&x, "vpcId");
    assert!(id_ok(&vpc, "vpc-"), "{vpc}");
    assert!(x.contains("<cidrBlock>198.18.0.0/16</cidrBlock>"), "{x}");
    assert!(x.contains("<isDefault>true</isDefault>"), "{x}");
    assert!(x.starts_with("<vpcSet><item><vpcId>"), "{x}");
    let x = t.ok("DescribeSubnets", &[]);
    let mut cidrs = all(&x, "cidrBlock");
    cidrs.sort();
    assert_eq!(
        cidrs,
        ["198.18.0.0/20", "198.18.16.0/20", "198.18.32.0/20"],
        "{x}"
    );
    let mut zones = all(&x, "availabilityZone");
    zones.sort();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    assert_eq!(all(&x, "defaultForAz"), ["true"; 3]);
    assert_eq!(all(&x, "mapPublicIpOnLaunch"), ["true"; 3]);
    assert_eq!(all(&x, "availableIpAddressCount"), ["4091"; 3]);
    let sg = t.default_group(&vpc);
    assert!(id_ok(&sg, "sg-"), "{sg}");
    let x = t.ok("DescribeSecurityGroups", &[("GroupId.1", &sg)]);
    assert!(
        x.contains(&format!(
            "<ipPermissions><item><ipProtocol>-1</ipProtocol><groups><item><userId>{ACC}</userId><groupId>{sg}</groupId></item></groups><ipRanges></ipRanges>"
        )),
        "{x}"
    );
    assert!(
        x.contains("<ipPermissionsEgress><item><ipProtocol>-1</ipProtocol><groups></groups><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges>"),
        "{x}"
    );
    let (subnet, group) = t.ec2.default_network();
    assert_eq!(group, sg);
    let x = t.ok("DescribeSubnets", &[("SubnetId.1", &subnet)]);
    assert!(
        x.contains("<availabilityZone>us-east-1a</availabilityZone>"),
        "{x}"
    );

    // A restart keeps it, even when told another block.
    let store_path = t.dir.path().to_owned();
    drop(t.api);
    drop(t.ec2);
    let again = open(&store_path, "10.9.0.0/16");
    assert_eq!(again.default_network(), (subnet, group));
    assert_eq!(again.firewall_rules().vpcs.len(), 1);
    assert_eq!(
        again.firewall_rules().vpcs[0].subnets[0]
            .to_string()
            .split('.')
            .next(),
        Some("198")
    );
}

#[test]
fn default_vpc_blocks_must_leave_room_for_subnets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let e = Ec2::open(store, ACC, "us-east-1", "10.0.0.0/25".parse().unwrap());
    assert!(e.is_err());
}

#[test]
fn vpcs_are_created_described_filtered_and_deleted_as_in_ec2() {
    let t = setup();
    for (cidr, code) in [
        ("10.0.0.0/15", "InvalidVpc.Range"),
        ("10.0.0.0/29", "InvalidVpc.Range"),
        ("10.0.0.1/16", "InvalidParameterValue"),
        ("10.0.0/16", "InvalidParameterValue"),
    ] {
        let e = t.err("CreateVpc", &[("CidrBlock", cidr)]);
        assert_eq!(e.code, code, "{cidr}: {}", e.message);
    }
    let e = t.err("CreateVpc", &[("CidrBlock", "10.0.0.0/15")]);
    assert_eq!(e.message, "The CIDR '10.0.0.0/15' is invalid.");
    assert_eq!(t.err("CreateVpc", &[]).code, "MissingParameter");
    let x = t.ok(
        "CreateVpc",
        &[
            ("CidrBlock", "10.1.0.0/16"),
            ("TagSpecification.1.ResourceType", "vpc"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", "payments"),
        ],
    );
    assert!(x.starts_with("<vpc><vpcId>vpc-"), "{x}");
    assert!(
        x.contains("<tagSet><item><key>Name</key><value>payments</value></item></tagSet>"),
        "{x}"
    );
    assert!(x.contains("<isDefault>false</isDefault>"), "{x}");
    let vpc = first(&x, "vpcId");
    let e = t.err(
        "CreateVpc",
        &[
            ("CidrBlock", "10.2.0.0/16"),
            ("TagSpecification.1.ResourceType", "subnet"),
            ("TagSpecification.1.Tag.1.Key", "a"),
        ],
    );
    assert_eq!(e.code, "InvalidParameterValue");
    let x = t.ok(
        "DescribeVpcs",
        &[("Filter.1.Name", "tag:Name"), ("Filter.1.Value.1", "pay*")],
    );
    assert_eq!(all(&x, "vpcId"), [vpc.as_str()]);
    let x = t.ok(
        "DescribeVpcs",
        &[
            ("Filter.1.Name", "is-default"),
            ("Filter.1.Value.1", "false"),
        ],
    );
    assert_eq!(all(&x, "vpcId"), [vpc.as_str()]);
    let x = t.ok(
        "DescribeVpcs",
        &[
            ("Filter.1.Name", "cidr"),
            ("Filter.1.Value.1", "198.18.0.0/16"),
        ],
    );
    assert_eq!(all(&x, "vpcId").len(), 1);
    let e = t.err("DescribeVpcs", &[("VpcId.1", "vpc-12345678")]);
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "InvalidVpcID.NotFound",
            "The vpc ID 'vpc-12345678' does not exist"
        )
    );
    let e = t.err(
        "DescribeVpcs",
        &[("Filter.1.Name", "bogus"), ("Filter.1.Value.1", "x")],
    );
    assert_eq!(e.code, "InvalidParameterValue");
    assert_eq!(e.message, "The filter 'bogus' is invalid");

    let subnet = t.subnet(&vpc, "10.1.1.0/24");
    let e = t.err("DeleteVpc", &[("VpcId", &vpc)]);
    assert_eq!(e.code, "DependencyViolation");
    assert_eq!(
        e.message,
        format!("The vpc '{vpc}' has dependencies and cannot be deleted.")
    );
    t.ok("DeleteSubnet", &[("SubnetId", &subnet)]);
    let sg = t.group(&vpc, "web");
    assert_eq!(
        t.err("DeleteVpc", &[("VpcId", &vpc)]).code,
        "DependencyViolation"
    );
    t.ok("DeleteSecurityGroup", &[("GroupId", &sg)]);
    let dflt = t.default_group(&vpc);
    assert!(
        t.ok("DeleteVpc", &[("VpcId", &vpc)])
            .contains("<return>true</return>")
    );
    assert_eq!(
        t.err("DescribeSecurityGroups", &[("GroupId.1", &dflt)])
            .code,
        "InvalidGroup.NotFound"
    );
    assert_eq!(
        t.err("DeleteVpc", &[("VpcId", &vpc)]).code,
        "InvalidVpcID.NotFound"
    );
    let (default_subnet, _) = t.ec2.default_network();
    let dvpc = t.ec2.firewall_rules().vpcs[0].vpc_id.clone();
    assert_eq!(
        t.err("DeleteVpc", &[("VpcId", &dvpc)]).code,
        "OperationNotPermitted"
    );
    assert_eq!(
        t.err("DeleteSubnet", &[("SubnetId", &default_subnet)]).code,
        "OperationNotPermitted"
    );
}

#[test]
fn subnets_stay_inside_their_vpc_and_never_overlap_any_subnet() {
    let t = setup();
    let a = t.vpc("10.1.0.0/16");
    let b = t.vpc("10.1.0.0/16");
    let s1 = t.subnet(&a, "10.1.1.0/24");
    assert!(id_ok(&s1, "subnet-"), "{s1}");
    let e = t.err(
        "CreateSubnet",
        &[("VpcId", &a), ("CidrBlock", "10.2.0.0/24")],
    );
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("InvalidSubnet.Range", "The CIDR '10.2.0.0/24' is invalid.")
    );
    let e = t.err(
        "CreateSubnet",
        &[("VpcId", &a), ("CidrBlock", "10.1.0.0/29")],
    );
    assert_eq!(e.code, "InvalidSubnet.Range");
    let e = t.err(
        "CreateSubnet",
        &[("VpcId", &a), ("CidrBlock", "10.1.1.128/25")],
    );
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "InvalidSubnet.Conflict",
            "The CIDR '10.1.1.128/25' conflicts with another subnet"
        )
    );
    // Another VPC with the same block: its subnets may not overlap either.
    let e = t.err(
        "CreateSubnet",
        &[("VpcId", &b), ("CidrBlock", "10.1.0.0/20")],
    );
    assert_eq!(e.code, "InvalidSubnet.Conflict");
    assert!(
        e.message.contains(&s1) && e.message.contains("routing table"),
        "{}",
        e.message
    );
    t.subnet(&b, "10.1.2.0/24");
    let e = t.err(
        "CreateSubnet",
        &[
            ("VpcId", &a),
            ("CidrBlock", "10.1.3.0/24"),
            ("AvailabilityZone", "us-east-1z"),
        ],
    );
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(
        e.message.contains("us-east-1a, us-east-1b, us-east-1c"),
        "{}",
        e.message
    );
    let x = t.ok(
        "CreateSubnet",
        &[
            ("VpcId", &a),
            ("CidrBlock", "10.1.3.0/28"),
            ("AvailabilityZone", "us-east-1b"),
        ],
    );
    assert!(
        x.contains("<availableIpAddressCount>11</availableIpAddressCount>"),
        "{x}"
    );
    assert!(
        x.contains("<availabilityZoneId>use1-az2</availabilityZoneId>"),
        "{x}"
    );
    assert!(x.contains("<defaultForAz>false</defaultForAz>"), "{x}");
    let e = t.err(
        "CreateSubnet",
        &[("VpcId", "vpc-0000"), ("CidrBlock", "10.1.4.0/24")],
    );
    assert_eq!(e.code, "InvalidVpcID.NotFound");
    let x = t.ok(
        "DescribeSubnets",
        &[
            ("Filter.1.Name", "vpc-id"),
            ("Filter.1.Value.1", &a),
            ("Filter.2.Name", "availability-zone"),
            ("Filter.2.Value.1", "us-east-1b"),
        ],
    );
    assert_eq!(all(&x, "cidrBlock"), ["10.1.3.0/28"]);
    let e = t.err("DescribeSubnets", &[("SubnetId.1", "subnet-12345678")]);
    assert_eq!(e.message, "The subnet ID 'subnet-12345678' does not exist");
    let fw = t.ec2.firewall_rules();
    let va = fw.vpcs.iter().find(|v| v.vpc_id == a).unwrap();
    assert_eq!(va.subnets.len(), 2);
}

#[test]
fn rules_are_authorized_described_revoked_and_reach_the_firewall() {
    let t = setup();
    let vpc = t.vpc("10.1.0.0/16");
    let other = t.vpc("10.2.0.0/16");
    let a = t.group(&vpc, "a");
    let bsg = t.group(&vpc, "b");
    let foreign = t.group(&other, "f");
    let heard: Arc<Mutex<Vec<FirewallRules>>> = Arc::default();
    let h = heard.clone();
    t.ec2
        .on_rules_changed(Box::new(move |r| h.lock().unwrap().push(r.clone())));
    // A listener may read the service: it sees what it was told.
    let reads = Arc::new(Mutex::new(0));
    let (w, n) = (Arc::downgrade(&t.ec2), reads.clone());
    t.ec2.on_rules_changed(Box::new(move |r| {
        if let Some(e) = w.upgrade() {
            assert_eq!(e.firewall_rules(), *r);
            *n.lock().unwrap() += 1;
        }
    }));
    let e = t.err(
        "CreateSecurityGroup",
        &[
            ("VpcId", &vpc),
            ("GroupName", "a"),
            ("GroupDescription", "d"),
        ],
    );
    assert_eq!(e.code, "InvalidGroup.Duplicate");
    assert_eq!(
        e.message,
        format!("The security group 'a' already exists for VPC '{vpc}'")
    );
    let x = t.ok(
        "AuthorizeSecurityGroupIngress",
        &[
            ("GroupId", &bsg),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "80"),
            ("IpPermissions.1.ToPort", "80"),
            ("IpPermissions.1.Groups.1.GroupId", &a),
            ("IpPermissions.1.IpRanges.1.CidrIp", "10.9.0.0/16"),
            ("IpPermissions.1.IpRanges.1.Description", "office"),
            ("IpPermissions.2.IpProtocol", "icmp"),
            ("IpPermissions.2.FromPort", "8"),
            ("IpPermissions.2.ToPort", "-1"),
            ("IpPermissions.2.IpRanges.1.CidrIp", "0.0.0.0/0"),
        ],
    );
    assert!(
        x.starts_with("<return>true</return><securityGroupRuleSet><item><securityGroupRuleId>sgr-"),
        "{x}"
    );
    assert_eq!(all(&x, "securityGroupRuleId").len(), 3, "{x}");
    assert!(x.contains(&format!("<referencedGroupInfo><groupId>{a}</groupId><userId>{ACC}</userId></referencedGroupInfo>")), "{x}");
    let g = heard.lock().unwrap().last().cloned().unwrap();
    let rules = &g.groups.iter().find(|x| x.group_id == bsg).unwrap().ingress;
    assert!(rules.iter().any(
        |r| r.traffic == Traffic::Tcp { from: 80, to: 80 } && r.peer == Peer::Group(a.clone())
    ));
    assert!(rules.iter().any(|r| r.traffic
        == Traffic::Icmp {
            icmp_type: Some(8),
            code: None
        }));
    assert_eq!(t.ec2.firewall_rules(), g);

    let e = t.err(
        "AuthorizeSecurityGroupIngress",
        &[
            ("GroupId", &bsg),
            ("IpProtocol", "tcp"),
            ("FromPort", "80"),
            ("ToPort", "80"),
            ("CidrIp", "10.9.0.0/16"),
        ],
    );
    assert_eq!(e.code, "InvalidPermission.Duplicate");
    assert_eq!(
        e.message,
        "the specified rule \"peer: 10.9.0.0/16, TCP, from port: 80, to port: 80, ALLOW\" already exists"
    );
    for (k, v, code) in [
        ("IpPermissions.1.IpProtocol", "gre", "InvalidParameterValue"),
        ("IpPermissions.1.FromPort", "90", "InvalidParameterValue"),
    ] {
        let mut p = vec![
            ("GroupId", bsg.as_str()),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "100"),
            ("IpPermissions.1.ToPort", "80"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "1.2.3.0/24"),
        ];
        p.retain(|(x, _)| *x != k);
        p.push((k, v));
        if k == "IpPermissions.1.FromPort" {
            p.retain(|(x, _)| *x != "IpPermissions.1.ToPort");
        }
        assert_eq!(
            t.err("AuthorizeSecurityGroupIngress", &p).code,
            code,
            "{k}={v}"
        );
    }
    let e = t.err(
        "AuthorizeSecurityGroupIngress",
        &[
            ("GroupId", &bsg),
            ("IpPermissions.1.IpProtocol", "-1"),
            ("IpPermissions.1.Groups.1.GroupId", &foreign),
        ],
    );
    assert_eq!(e.code, "InvalidParameter");
    let e = t.err(
        "AuthorizeSecurityGroupIngress",
        &[
            ("GroupId", "sg-12345678"),
            ("IpPermissions.1.IpProtocol", "-1"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "1.0.0.0/8"),
        ],
    );
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "InvalidGroup.NotFound",
            "The security group 'sg-12345678' does not exist"
        )
    );

    let x = t.ok("DescribeSecurityGroups", &[("GroupId.1", &bsg)]);
    assert!(x.contains(&format!("<item><ipProtocol>tcp</ipProtocol><fromPort>80</fromPort><toPort>80</toPort><groups><item><userId>{ACC}</userId><groupId>{a}</groupId></item></groups><ipRanges><item><cidrIp>10.9.0.0/16</cidrIp><description>office</description></item></ipRanges><ipv6Ranges></ipv6Ranges><prefixListIds></prefixListIds></item>")), "{x}");
    assert!(x.contains("<item><ipProtocol>icmp</ipProtocol><fromPort>8</fromPort><toPort>-1</toPort><groups></groups><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges>"), "{x}");
    let x = t.ok(
        "DescribeSecurityGroups",
        &[
            ("Filter.1.Name", "ip-permission.group-id"),
            ("Filter.1.Value.1", &a),
        ],
    );
    assert_eq!(all(&x, "groupName"), ["b"]);
    let x = t.ok(
        "DescribeSecurityGroupRules",
        &[("Filter.1.Name", "group-id"), ("Filter.1.Value.1", &bsg)],
    );
    assert_eq!(
        all(&x, "securityGroupRuleId").len(),
        4,
        "three ingress and the egress: {x}"
    );
    assert_eq!(
        all(&x, "isEgress").iter().filter(|e| *e == "true").count(),
        1
    );

    // a is referenced by b's rule.
    let e = t.err("DeleteSecurityGroup", &[("GroupId", &a)]);
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "DependencyViolation",
            &*format!("resource {a} has a dependent object")
        )
    );
    let x = t.ok(
        "RevokeSecurityGroupIngress",
        &[
            ("GroupId", &bsg),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "80"),
            ("IpPermissions.1.ToPort", "80"),
            ("IpPermissions.1.Groups.1.GroupId", &a),
            ("IpPermissions.2.IpProtocol", "udp"),
            ("IpPermissions.2.FromPort", "53"),
            ("IpPermissions.2.ToPort", "53"),
            ("IpPermissions.2.IpRanges.1.CidrIp", "0.0.0.0/0"),
        ],
    );
    assert!(
        x.contains(&format!("<referencedGroupId>{a}</referencedGroupId>")),
        "{x}"
    );
    assert!(
        x.contains("<unknownIpPermissionSet><item><ipProtocol>udp</ipProtocol>"),
        "{x}"
    );
    let g = heard.lock().unwrap().last().cloned().unwrap();
    let rules = &g.groups.iter().find(|x| x.group_id == bsg).unwrap().ingress;
    assert!(!rules.iter().any(|r| r.peer == Peer::Group(a.clone())));
    let e = t.err(
        "RevokeSecurityGroupIngress",
        &[
            ("GroupId", &bsg),
            ("IpPermissions.1.IpProtocol", "udp"),
            ("IpPermissions.1.FromPort", "53"),
            ("IpPermissions.1.ToPort", "53"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "0.0.0.0/0"),
        ],
    );
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "InvalidPermission.NotFound",
            "The specified rule does not exist in this security group."
        )
    );
    // Egress by rule id.
    let x = t.ok(
        "DescribeSecurityGroupRules",
        &[("Filter.1.Name", "group-id"), ("Filter.1.Value.1", &a)],
    );
    let egress = first(&x, "securityGroupRuleId");
    t.ok(
        "RevokeSecurityGroupEgress",
        &[("GroupId", &a), ("SecurityGroupRuleId.1", &egress)],
    );
    let fw = t.ec2.firewall_rules();
    assert!(
        fw.groups
            .iter()
            .find(|x| x.group_id == a)
            .unwrap()
            .egress
            .is_empty()
    );
    t.ok(
        "AuthorizeSecurityGroupEgress",
        &[
            ("GroupId", &a),
            ("IpPermissions.1.IpProtocol", "17"),
            ("IpPermissions.1.FromPort", "53"),
            ("IpPermissions.1.ToPort", "53"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.2/32"),
        ],
    );
    let fw = t.ec2.firewall_rules();
    assert_eq!(
        fw.groups.iter().find(|x| x.group_id == a).unwrap().egress[0].traffic,
        Traffic::Udp { from: 53, to: 53 }
    );

    t.ok("DeleteSecurityGroup", &[("GroupId", &a)]);
    assert_eq!(*reads.lock().unwrap(), heard.lock().unwrap().len());
    assert!(heard.lock().unwrap().len() >= 5);
    let dflt = t.default_group(&vpc);
    let e = t.err("DeleteSecurityGroup", &[("GroupId", &dflt)]);
    assert_eq!(e.code, "CannotDelete");
    assert_eq!(
        e.message,
        format!("the specified group: \"{dflt}\" name: \"default\" cannot be deleted by a user")
    );
    let e = t.err("DescribeSecurityGroups", &[("GroupName.1", "nope")]);
    assert_eq!(e.code, "InvalidGroup.NotFound");
    assert!(
        e.message
            .starts_with("The security group 'nope' does not exist in"),
        "{}",
        e.message
    );
}

#[test]
fn attach_allocates_addresses_and_enis_as_ecs_would() {
    let t = setup();
    let vpc = t.vpc("10.1.0.0/16");
    let small = t.subnet(&vpc, "10.1.0.0/28");
    let big = t.subnet(&vpc, "10.1.1.0/24");
    let sg = t.group(&vpc, "web");
    let req = |subnets: &[&str], groups: &[&str]| AttachRequest {
        subnets: subnets.iter().map(|s| (*s).to_owned()).collect(),
        security_groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        description: "arn:aws:ecs:us-east-1:111122223333:attachment/x".into(),
    };
    let p = t.ec2.attach(&req(&[&small, &big], &[&sg])).unwrap();
    assert_eq!(p.subnet_id, big, "the subnet with the most free addresses");
    assert_eq!(p.ip, Ipv4Addr::new(10, 1, 1, 4));
    assert_eq!(p.gateway, Ipv4Addr::new(10, 1, 1, 1));
    assert!(p.mac.starts_with("0a:") && p.mac.len() == 17, "{}", p.mac);
    assert!(id_ok(&p.eni_id, "eni-"));
    assert_eq!(p.security_groups, [sg.as_str()]);
    assert_eq!(p.vpc_id, vpc);
    let x = t.ok("DescribeSubnets", &[("SubnetId.1", &big)]);
    assert_eq!(first(&x, "availableIpAddressCount"), "250");
    let x = t.ok(
        "DescribeNetworkInterfaces",
        &[
            ("Filter.1.Name", "addresses.private-ip-address"),
            ("Filter.1.Value.1", "10.1.1.4"),
        ],
    );
    assert_eq!(first(&x, "networkInterfaceId"), p.eni_id);
    assert!(
        x.contains("<status>in-use</status>")
            && x.contains("<requesterManaged>true</requesterManaged>")
            && x.contains("<interfaceType>interface</interfaceType>"),
        "{x}"
    );
    assert!(
        x.contains(&format!(
            "<groupSet><item><groupId>{sg}</groupId><groupName>web</groupName></item></groupSet>"
        )),
        "{x}"
    );
    assert!(
        x.contains(&format!("<macAddress>{}</macAddress>", p.mac)),
        "{x}"
    );
    // In use: neither the group nor the subnet can go.
    assert_eq!(
        t.err("DeleteSecurityGroup", &[("GroupId", &sg)]).code,
        "DependencyViolation"
    );
    let e = t.err("DeleteSubnet", &[("SubnetId", &big)]);
    assert_eq!(
        e.message,
        format!("The subnet '{big}' has dependencies and cannot be deleted.")
    );
    // A freed address is the next one given.
    let q = t.ec2.attach(&req(&[&big], &[])).unwrap();
    assert_eq!(q.ip, Ipv4Addr::new(10, 1, 1, 5));
    assert_eq!(
        q.security_groups,
        [t.default_group(&vpc)],
        "no groups: the VPC's default"
    );
    t.ec2.detach(&p.eni_id).unwrap();
    t.ec2.detach(&p.eni_id).unwrap();
    let r = t.ec2.attach(&req(&[&big], &[&sg])).unwrap();
    assert_eq!(r.ip, Ipv4Addr::new(10, 1, 1, 4));
    // A /28 has eleven addresses.
    for i in 0..11 {
        let e = t.ec2.attach(&req(&[&small], &[])).unwrap();
        assert_eq!(e.ip, Ipv4Addr::new(10, 1, 0, 4 + i));
    }
    let e = t.ec2.attach(&req(&[&small], &[])).unwrap_err();
    assert!(
        matches!(&e, AttachError::NoFreeAddress(s) if *s == small),
        "{e}"
    );
    let e = t.ec2.attach(&req(&["subnet-12345678"], &[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Error retrieving subnet information for [subnet-12345678]: The subnet ID 'subnet-12345678' does not exist (Service: AmazonEC2; Status Code: 400; Error Code: InvalidSubnetID.NotFound)"
    );
    let e = t.ec2.attach(&req(&[&big], &["sg-12345678"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Error retrieving security group information for [sg-12345678]: The security group 'sg-12345678' does not exist (Service: AmazonEC2; Status Code: 400; Error Code: InvalidGroup.NotFound)"
    );
    let (dsub, dsg) = t.ec2.default_network();
    assert!(matches!(
        t.ec2.attach(&req(&[&big, &dsub], &[])),
        Err(AttachError::NotOneVpc)
    ));
    assert!(matches!(
        t.ec2.attach(&req(&[&big], &[&dsg])),
        Err(AttachError::NotOneVpc)
    ));
    assert!(matches!(
        t.ec2.attach(&req(&[], &[])),
        Err(AttachError::NoSubnets)
    ));

    // After a restart only the kept ENIs stay.
    let keep = r.eni_id.clone();
    let gone = t.ec2.release_unless(&|id| id == keep).unwrap();
    assert_eq!(gone.len(), 12);
    let T { dir, ec2, api } = t;
    drop(api);
    drop(ec2);
    let reopened = open(dir.path(), "198.18.0.0/16");
    let api = Ec2Service::new(reopened);
    let ctx = RequestContext::internal(Caller::admin(ACC), "us-east-1");
    let x = api
        .call(&ctx, "DescribeNetworkInterfaces", &Params::default())
        .unwrap();
    assert_eq!(all(x.as_str(), "networkInterfaceId"), [keep]);
}

#[test]
fn tags_dry_runs_pages_and_unknown_actions() {
    let t = setup();
    let vpc = t.vpc("10.1.0.0/16");
    let sg = t.group(&vpc, "web");
    t.ok(
        "CreateTags",
        &[
            ("ResourceId.1", &vpc),
            ("ResourceId.2", &sg),
            ("Tag.1.Key", "team"),
            ("Tag.1.Value", "pay"),
            ("Tag.2.Key", "x"),
        ],
    );
    let x = t.ok(
        "DescribeTags",
        &[("Filter.1.Name", "key"), ("Filter.1.Value.1", "team")],
    );
    assert_eq!(all(&x, "resourceId").len(), 2, "{x}");
    assert!(
        x.contains("<resourceType>security-group</resourceType>"),
        "{x}"
    );
    t.ok(
        "DeleteTags",
        &[
            ("ResourceId.1", &vpc),
            ("Tag.1.Key", "team"),
            ("Tag.1.Value", "other"),
        ],
    );
    let x = t.ok(
        "DescribeTags",
        &[("Filter.1.Name", "resource-id"), ("Filter.1.Value.1", &vpc)],
    );
    assert_eq!(
        all(&x, "key"),
        ["team", "x"],
        "a value that does not match keeps the tag"
    );
    t.ok(
        "DeleteTags",
        &[("ResourceId.1", &vpc), ("Tag.1.Key", "team")],
    );
    let x = t.ok("DescribeVpcs", &[("VpcId.1", &vpc)]);
    assert_eq!(all(&x, "key"), ["x"]);
    let e = t.err(
        "CreateTags",
        &[("ResourceId.1", "vpc-0badbad"), ("Tag.1.Key", "a")],
    );
    assert_eq!(e.code, "InvalidVpcID.NotFound");
    let e = t.err(
        "CreateTags",
        &[("ResourceId.1", &vpc), ("Tag.1.Key", "aws:x")],
    );
    assert_eq!(e.code, "InvalidParameterValue");

    let e = t.err(
        "CreateVpc",
        &[("CidrBlock", "10.5.0.0/16"), ("DryRun", "true")],
    );
    assert_eq!((e.code.as_str(), e.status), ("DryRunOperation", 412));
    assert_eq!(
        e.message,
        "Request would have succeeded, but DryRun flag is set."
    );
    assert_eq!(
        all(&t.ok("DescribeVpcs", &[]), "vpcId").len(),
        2,
        "a dry run creates nothing"
    );

    for i in 0..6 {
        t.vpc(&format!("10.{}.0.0/16", 10 + i));
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut p = vec![("MaxResults", "5".to_owned())];
        if let Some(tk) = &token {
            p.push(("NextToken", tk.clone()));
        }
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let x = t.ok("DescribeVpcs", &p);
        let ids = all(&x, "vpcId");
        assert!(ids.len() <= 5);
        seen.extend(ids);
        token = all(&x, "nextToken").into_iter().next();
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 8);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 8);
    assert_eq!(
        t.err("DescribeVpcs", &[("MaxResults", "4")]).code,
        "InvalidParameterValue"
    );
    assert_eq!(
        t.err("DescribeVpcs", &[("NextToken", "zzz")]).code,
        "InvalidNextToken"
    );
    let e = t.err("RunInstances", &[]);
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        (
            "InvalidAction",
            "The action RunInstances is not valid for this web service."
        )
    );
    let x = t.ok("DescribeAvailabilityZones", &[]);
    assert_eq!(
        all(&x, "zoneName"),
        ["us-east-1a", "us-east-1b", "us-east-1c"]
    );
    assert_eq!(all(&x, "zoneId"), ["use1-az1", "use1-az2", "use1-az3"]);
}

#[test]
fn service_enis_take_chosen_addresses_and_survive_task_cleanup() {
    use crate::ServiceEniError as E;
    use crate::ServiceEniRequest;
    use crate::model::EniOwner;
    let t = setup();
    let (subnet, dsg) = t.ec2.default_network();
    let cidr = t.ec2.subnet(&subnet).unwrap().cidr;
    let req = |ip: Option<std::net::Ipv4Addr>, groups: &[&str]| ServiceEniRequest {
        subnet_id: subnet.clone(),
        ip,
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
        description: "EFS mount target for fs-1 (fsmt-1)".into(),
        owner: EniOwner::MountTarget,
    };
    let chosen = cidr.nth(20).unwrap();
    let e = t.ec2.attach_service(&req(Some(chosen), &[])).unwrap();
    assert_eq!(e.ip, chosen);
    assert_eq!(e.groups, vec![dsg.clone()], "the VPC's default group");
    assert!(matches!(
        t.ec2.attach_service(&req(Some(chosen), &[])),
        Err(E::AddressInUse(..))
    ));
    // The network address, the reserved ones and the broadcast address.
    for o in [0, 1, 3] {
        assert!(matches!(
            t.ec2.attach_service(&req(cidr.nth(o), &[])),
            Err(E::AddressNotInSubnet(..))
        ));
    }
    assert!(matches!(
        t.ec2.attach_service(&req(None, &["sg-00000000000000000"])),
        Err(E::GroupNotFound(_))
    ));
    assert!(matches!(
        t.ec2.attach_service(&ServiceEniRequest {
            subnet_id: "subnet-00000000000000000".into(),
            ..req(None, &[])
        }),
        Err(E::SubnetNotFound(_))
    ));
    // A task ENI takes the lowest free address, not the chosen one.
    let task = t
        .ec2
        .attach(&crate::AttachRequest {
            subnets: vec![subnet.clone()],
            security_groups: vec![],
            description: "task".into(),
        })
        .unwrap();
    assert_ne!(task.ip, chosen);
    // Groups can be replaced; DescribeNetworkInterfaces names the service.
    assert_eq!(
        t.ec2.set_groups(&e.id, std::slice::from_ref(&dsg)).unwrap(),
        vec![dsg]
    );
    let x = t
        .call(
            "DescribeNetworkInterfaces",
            &[("NetworkInterfaceId.1", &e.id)],
        )
        .unwrap();
    assert_eq!(first(&x, "requesterId"), "elasticfilesystem.amazonaws.com");
    // Cleanup after a restart releases task ENIs only.
    let gone = t.ec2.release_unless(&|_| false).unwrap();
    assert_eq!(gone, vec![task.eni_id]);
    assert!(t.ec2.eni(&e.id).is_some());
    t.ec2.detach(&e.id).unwrap();
    assert!(t.ec2.eni(&e.id).is_none());
}

/// `follow_rules` hands the current rules first, then every change.
#[test]
fn follow_rules_starts_from_the_current_rules() {
    let t = setup();
    let vpc = t.vpc("10.1.0.0/16");
    let first: Arc<Mutex<Option<FirewallRules>>> = Arc::default();
    let heard: Arc<Mutex<Vec<FirewallRules>>> = Arc::default();
    let (f, h) = (first.clone(), heard.clone());
    t.ec2
        .follow_rules(
            |r| {
                *f.lock().unwrap() = Some(r.clone());
                Ok::<_, AwsError>(())
            },
            Box::new(move |r| h.lock().unwrap().push(r.clone())),
        )
        .unwrap();
    let got = first.lock().unwrap().clone().unwrap();
    assert!(got.vpcs.iter().any(|v| v.vpc_id == vpc));
    assert!(heard.lock().unwrap().is_empty());
    let g = t.group(&vpc, "web");
    let last = heard.lock().unwrap().last().cloned().unwrap();
    assert!(last.groups.iter().any(|x| x.group_id == g));
    // A failing first application is the caller's error, and registers
    // nothing.
    let e = t
        .ec2
        .follow_rules(|_| Err("no firewall"), Box::new(|_| panic!("registered")))
        .unwrap_err();
    assert_eq!(e, "no firewall");
    t.group(&vpc, "db");
}
