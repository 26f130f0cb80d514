//! CreateSubnet, DescribeSubnets, DeleteSubnet.

use ferry_proto::AwsError;
use ferry_proto::query::{Params, Xml};

use super::vpcs::{PREFIXES, parse_cidr};
use super::{
    Filterable, b, dry_run, filters, ids, invalid_value, matches, page, required, tag_set,
};
use crate::Ec2;
use crate::ec2::{State, available, new_id, zone_id, zones};
use crate::error::ApiError;
use crate::model::{Subnet, Tag};

struct View<'a> {
    n: &'a Subnet,
    free: u64,
    account: &'a str,
    zone_id: String,
}

impl<'a> View<'a> {
    fn new(ec2: &'a Ec2, s: &State, n: &'a Subnet) -> Self {
        let zone_id = zones(ec2.region())
            .iter()
            .position(|z| *z == n.availability_zone)
            .map(|i| zone_id(ec2.region(), i))
            .unwrap_or_default();
        View {
            n,
            free: available(s, n),
            account: ec2.account(),
            zone_id,
        }
    }
}

impl Filterable for View<'_> {
    fn values(&self, name: &str) -> Option<Vec<String>> {
        let n = self.n;
        Some(vec![match name {
            "subnet-id" => n.id.clone(),
            "vpc-id" => n.vpc_id.clone(),
            "cidr" | "cidr-block" | "cidrBlock" => n.cidr.to_string(),
            "availability-zone" | "availabilityZone" => n.availability_zone.clone(),
            "availability-zone-id" | "availabilityZoneId" => self.zone_id.clone(),
            "default-for-az" | "defaultForAz" => b(n.default_for_az).into(),
            "map-public-ip-on-launch" => b(n.map_public_ip_on_launch).into(),
            "available-ip-address-count" => self.free.to_string(),
            "state" => "available".into(),
            "owner-id" => self.account.to_owned(),
            _ => return None,
        }])
    }

    fn tags(&self) -> &[Tag] {
        &self.n.tags
    }
}

fn subnet_xml(x: &mut Xml, v: &View<'_>, region: &str) {
    let n = v.n;
    x.text("subnetId", &n.id)
        .text(
            "subnetArn",
            &format!("arn:aws:ec2:{region}:{}:subnet/{}", v.account, n.id),
        )
        .text("ownerId", v.account)
        .text("state", "available")
        .text("vpcId", &n.vpc_id)
        .text("cidrBlock", &n.cidr.to_string())
        .text("availableIpAddressCount", &v.free.to_string())
        .text("availabilityZone", &n.availability_zone)
        .text("availabilityZoneId", &v.zone_id)
        .text("defaultForAz", b(n.default_for_az))
        .text("mapPublicIpOnLaunch", b(n.map_public_ip_on_launch))
        .text("mapCustomerOwnedIpOnLaunch", "false")
        .text("assignIpv6AddressOnCreation", "false")
        .text("enableDns64", "false")
        .text("ipv6Native", "false")
        .elem("privateDnsNameOptionsOnLaunch", |o| {
            o.text("hostnameType", "ip-name")
                .text("enableResourceNameDnsARecord", "false")
                .text("enableResourceNameDnsAAAARecord", "false");
        });
    tag_set(x, &n.tags);
}

/// CreateSubnet: inside its VPC's block, /16../28, overlapping no subnet
/// of any VPC (ferry routes every VPC's subnets in one host table).
pub(crate) fn create(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let vpc_id = required(p, "VpcId")?;
    let given = required(p, "CidrBlock")?;
    let cidr = parse_cidr("CidrBlock", given)?;
    let zones = zones(ec2.region());
    let zone = match (p.get("AvailabilityZone"), p.get("AvailabilityZoneId")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidParameterCombination(
                "Only one of availabilityZone or availabilityZoneId may be specified".into(),
            )
            .into());
        }
        (Some(z), None) => zones.iter().find(|x| *x == z).cloned().ok_or_else(|| {
            invalid_value(
                "AvailabilityZone",
                z,
                &format!(
                    "Subnets can currently only be created in the following availability zones: {}.",
                    zones.join(", ")
                ),
            )
        })?,
        (None, Some(id)) => (0..zones.len())
            .find(|&i| zone_id(ec2.region(), i) == id)
            .map(|i| zones[i].clone())
            .ok_or_else(|| invalid_value("AvailabilityZoneId", id, "No such zone."))?,
        (None, None) => zones[0].clone(),
    };
    let tags = super::tag_specs(p, "subnet")?;
    let subnet = ec2.mutate(|s| {
        let vpc = s
            .vpcs
            .get(vpc_id)
            .ok_or_else(|| ApiError::VpcNotFound(vpc_id.to_owned()))?;
        if !PREFIXES.contains(&cidr.prefix()) || !vpc.cidr.covers(&cidr) {
            return Err(ApiError::SubnetRange(given.to_owned()).into());
        }
        if let Some(other) = s.subnets.values().find(|n| n.cidr.overlaps(&cidr)) {
            let why = if other.vpc_id == vpc_id {
                format!("The CIDR '{given}' conflicts with another subnet")
            } else {
                format!(
                    "The CIDR '{given}' conflicts with subnet '{}' of VPC '{}': ferry routes the subnets of every VPC in one host routing table, so subnets of different VPCs may not overlap either",
                    other.id, other.vpc_id
                )
            };
            return Err(ApiError::SubnetConflict(why).into());
        }
        let n = Subnet {
            id: new_id("subnet"),
            vpc_id: vpc_id.to_owned(),
            cidr,
            availability_zone: zone,
            default_for_az: false,
            map_public_ip_on_launch: false,
            tags,
        };
        s.subnets.insert(n.id.clone(), n.clone());
        Ok::<_, AwsError>(n)
    })?;
    let s = ec2.snapshot();
    let mut x = Xml::new();
    x.elem("subnet", |e| {
        subnet_xml(e, &View::new(ec2, &s, &subnet), ec2.region())
    });
    Ok(x)
}

/// DescribeSubnets.
pub(crate) fn describe(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let filters = filters(p)?;
    let s = ec2.snapshot();
    let wanted = ids(
        p,
        "SubnetId",
        |id| s.subnets.contains_key(id),
        ApiError::SubnetNotFound,
    )?;
    let mut items = Vec::new();
    for n in s.subnets.values() {
        let v = View::new(ec2, &s, n);
        if (wanted.is_empty() || wanted.contains(&n.id.as_str())) && matches(&v, &filters)? {
            items.push((n.id.clone(), v));
        }
    }
    let (items, next) = page(items, p, 5, !wanted.is_empty())?;
    let mut x = Xml::new();
    x.items("subnetSet", items, |i, v| subnet_xml(i, &v, ec2.region()));
    super::next_token(&mut x, next);
    Ok(x)
}

/// DeleteSubnet: only without ENIs; the default VPC's default subnets
/// stay.
pub(crate) fn delete(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let id = required(p, "SubnetId")?;
    ec2.mutate(|s| {
        let n = s
            .subnets
            .get(id)
            .ok_or_else(|| ApiError::SubnetNotFound(id.to_owned()))?;
        if n.default_for_az {
            return Err(ApiError::NotPermitted(format!(
                "The default subnet '{id}' cannot be deleted: ferry's tasks use it unless told otherwise."
            ))
            .into());
        }
        if s.enis.values().any(|e| e.subnet_id == id) {
            return Err(ApiError::DependencyViolation(format!(
                "The subnet '{id}' has dependencies and cannot be deleted."
            ))
            .into());
        }
        s.subnets.remove(id);
        Ok::<_, AwsError>(())
    })?;
    let mut x = Xml::new();
    x.text("return", "true");
    Ok(x)
}
