//! CreateVpc, DescribeVpcs, DeleteVpc.

use ferry_proto::AwsError;
use ferry_proto::net::Ipv4Cidr;
use ferry_proto::query::{Params, Xml};

use super::{
    Filterable, b, dry_run, filters, ids, invalid_value, matches, page, required, tag_set,
};
use crate::Ec2;
use crate::ec2::{add_default_group, new_id};
use crate::error::ApiError;
use crate::model::{Tag, Vpc};

/// A CIDR block parameter.
pub(crate) fn parse_cidr(name: &str, v: &str) -> Result<Ipv4Cidr, AwsError> {
    v.parse::<Ipv4Cidr>()
        .map_err(|_| invalid_value(name, v, "This is not a valid CIDR block."))
}

/// Which prefixes a VPC or subnet may have.
pub(crate) const PREFIXES: std::ops::RangeInclusive<u8> = 16..=28;

struct View<'a>(&'a Vpc, &'a str);

impl Filterable for View<'_> {
    fn values(&self, name: &str) -> Option<Vec<String>> {
        let v = self.0;
        Some(match name {
            "vpc-id" => vec![v.id.clone()],
            "cidr" | "cidr-block-association.cidr-block" | "cidrBlock" => vec![v.cidr.to_string()],
            "cidr-block-association.association-id" => vec![v.cidr_association_id.clone()],
            "cidr-block-association.state" | "state" => {
                vec![
                    if name == "state" {
                        "available"
                    } else {
                        "associated"
                    }
                    .into(),
                ]
            }
            "is-default" | "isDefault" => vec![b(v.is_default).into()],
            "owner-id" => vec![self.1.to_owned()],
            "dhcp-options-id" => vec!["default".into()],
            _ => return None,
        })
    }

    fn tags(&self) -> &[Tag] {
        &self.0.tags
    }
}

fn vpc_xml(x: &mut Xml, v: &Vpc, account: &str) {
    x.text("vpcId", &v.id)
        .text("ownerId", account)
        .text("state", "available")
        .text("cidrBlock", &v.cidr.to_string())
        .items("cidrBlockAssociationSet", [v], |i, v| {
            i.text("associationId", &v.cidr_association_id)
                .text("cidrBlock", &v.cidr.to_string())
                .elem("cidrBlockState", |s| {
                    s.text("state", "associated");
                });
        })
        .text("dhcpOptionsId", "default")
        .text("instanceTenancy", &v.instance_tenancy)
        .text("isDefault", b(v.is_default));
    tag_set(x, &v.tags);
}

/// CreateVpc: a /16../28 block (VPCs may overlap; their subnets may not,
/// see CreateSubnet); its `default` group comes with it.
pub(crate) fn create(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let given = required(p, "CidrBlock")?;
    let cidr = parse_cidr("CidrBlock", given)?;
    if !PREFIXES.contains(&cidr.prefix()) {
        return Err(ApiError::VpcRange(given.to_owned()).into());
    }
    let tenancy = p.get("InstanceTenancy").unwrap_or("default");
    if !matches!(tenancy, "default" | "dedicated") {
        return Err(invalid_value(
            "InstanceTenancy",
            tenancy,
            "It must be default or dedicated.",
        ));
    }
    let tags = super::tag_specs(p, "vpc")?;
    let vpc = ec2.mutate(|s| {
        let vpc = Vpc {
            id: new_id("vpc"),
            cidr,
            cidr_association_id: new_id("vpc-cidr-assoc"),
            is_default: false,
            instance_tenancy: tenancy.to_owned(),
            tags,
        };
        s.vpcs.insert(vpc.id.clone(), vpc.clone());
        add_default_group(s, &vpc.id);
        Ok::<_, AwsError>(vpc)
    })?;
    let mut x = Xml::new();
    x.elem("vpc", |e| vpc_xml(e, &vpc, ec2.account()));
    Ok(x)
}

/// DescribeVpcs.
pub(crate) fn describe(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let filters = filters(p)?;
    let s = ec2.snapshot();
    let wanted = ids(
        p,
        "VpcId",
        |id| s.vpcs.contains_key(id),
        ApiError::VpcNotFound,
    )?;
    let mut items = Vec::new();
    for v in s.vpcs.values() {
        if (wanted.is_empty() || wanted.contains(&v.id.as_str()))
            && matches(&View(v, ec2.account()), &filters)?
        {
            items.push((v.id.clone(), v));
        }
    }
    let (items, next) = page(items, p, 5, !wanted.is_empty())?;
    let mut x = Xml::new();
    x.items("vpcSet", items, |i, v| vpc_xml(i, v, ec2.account()));
    super::next_token(&mut x, next);
    Ok(x)
}

/// DeleteVpc: only without subnets and groups other than its default
/// (which goes with it); ferry's default VPC stays.
pub(crate) fn delete(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let id = required(p, "VpcId")?;
    ec2.mutate(|s| {
        let vpc = s
            .vpcs
            .get(id)
            .ok_or_else(|| ApiError::VpcNotFound(id.to_owned()))?;
        if vpc.is_default {
            return Err(ApiError::NotPermitted(format!(
                "The default VPC '{id}' cannot be deleted: ferry's tasks use it unless told otherwise."
            ))
            .into());
        }
        let in_use = s.subnets.values().any(|n| n.vpc_id == id)
            || s.enis.values().any(|e| e.vpc_id == id)
            || s.groups.values().any(|g| g.vpc_id == id && g.name != "default");
        if in_use {
            return Err(ApiError::DependencyViolation(format!(
                "The vpc '{id}' has dependencies and cannot be deleted."
            ))
            .into());
        }
        let gone: Vec<String> = s
            .groups
            .values()
            .filter(|g| g.vpc_id == id)
            .map(|g| g.id.clone())
            .collect();
        s.rules.retain(|_, r| !gone.contains(&r.group_id));
        for g in &gone {
            s.groups.remove(g);
        }
        s.vpcs.remove(id);
        Ok::<_, AwsError>(())
    })?;
    let mut x = Xml::new();
    x.text("return", "true");
    Ok(x)
}
