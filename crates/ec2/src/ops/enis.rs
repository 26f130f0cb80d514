//! DescribeNetworkInterfaces: the tasks' ENIs (created by
//! [`crate::Ec2::attach`]) and EFS mount targets' (by
//! [`crate::Ec2::attach_service`]), never by the API.

use ferry_proto::AwsError;
use ferry_proto::query::{Params, Xml};

use super::{Filterable, b, dry_run, filters, ids, matches, page, tag_set};
use crate::Ec2;
use crate::ec2::{State, zone_id, zones};
use crate::error::ApiError;
use crate::model::{Eni, Tag};

struct View<'a> {
    e: &'a Eni,
    zone: String,
    zone_id: String,
    group_names: Vec<String>,
    account: &'a str,
}

impl<'a> View<'a> {
    fn new(ec2: &'a Ec2, s: &State, e: &'a Eni) -> Self {
        let zone = s
            .subnets
            .get(&e.subnet_id)
            .map(|n| n.availability_zone.clone())
            .unwrap_or_default();
        let zone_id = zones(ec2.region())
            .iter()
            .position(|z| *z == zone)
            .map(|i| zone_id(ec2.region(), i))
            .unwrap_or_default();
        View {
            e,
            zone,
            zone_id,
            group_names: e
                .groups
                .iter()
                .map(|g| s.groups.get(g).map(|g| g.name.clone()).unwrap_or_default())
                .collect(),
            account: ec2.account(),
        }
    }
}

impl Filterable for View<'_> {
    fn values(&self, name: &str) -> Option<Vec<String>> {
        let e = self.e;
        Some(match name {
            "network-interface-id" => vec![e.id.clone()],
            "subnet-id" => vec![e.subnet_id.clone()],
            "vpc-id" => vec![e.vpc_id.clone()],
            "group-id" => e.groups.clone(),
            "group-name" => self.group_names.clone(),
            "addresses.private-ip-address" | "private-ip-address" => vec![e.ip.to_string()],
            "mac-address" => vec![e.mac.clone()],
            "description" => vec![e.description.clone()],
            "status" => vec!["in-use".into()],
            "availability-zone" => vec![self.zone.clone()],
            "interface-type" => vec!["interface".into()],
            "requester-managed" => vec!["true".into()],
            "requester-id" => vec![e.owner.requester().into()],
            "owner-id" => vec![self.account.to_owned()],
            "attachment.status" => vec!["attached".into()],
            "attachment.attachment-id" => vec![e.attachment_id.clone()],
            _ => return None,
        })
    }

    fn tags(&self) -> &[Tag] {
        &self.e.tags
    }
}

fn eni_xml(x: &mut Xml, v: &View<'_>) {
    let e = v.e;
    let ip = e.ip.to_string();
    let attached = crate::fmt_time(e.attached_at);
    x.text("networkInterfaceId", &e.id)
        .text("subnetId", &e.subnet_id)
        .text("vpcId", &e.vpc_id)
        .text("availabilityZone", &v.zone)
        .text("availabilityZoneId", &v.zone_id)
        .text("description", &e.description)
        .text("ownerId", v.account)
        .text("requesterId", e.owner.requester())
        .text("requesterManaged", "true")
        .text("status", "in-use")
        .text("macAddress", &e.mac)
        .text("privateIpAddress", &ip)
        .text("sourceDestCheck", "true")
        .text("interfaceType", "interface")
        .items(
            "groupSet",
            e.groups.iter().zip(&v.group_names),
            |i, (id, name)| {
                i.text("groupId", id).text("groupName", name);
            },
        )
        .elem("attachment", |a| {
            a.text("attachmentId", &e.attachment_id)
                .text("attachTime", &attached)
                .text("deleteOnTermination", "false")
                .text("deviceIndex", "1")
                .text("networkCardIndex", "0")
                .text("instanceOwnerId", "amazon-aws")
                .text("status", "attached");
        })
        .items("privateIpAddressesSet", [&ip], |i, ip| {
            i.text("privateIpAddress", ip).text("primary", b(true));
        })
        .items("ipv6AddressesSet", std::iter::empty::<()>(), |_, ()| {});
    tag_set(x, &e.tags);
}

/// DescribeNetworkInterfaces.
pub(crate) fn describe(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let filters = filters(p)?;
    let s = ec2.snapshot();
    let wanted = ids(
        p,
        "NetworkInterfaceId",
        |id| s.enis.contains_key(id),
        ApiError::EniNotFound,
    )?;
    let mut items = Vec::new();
    for e in s.enis.values() {
        let v = View::new(ec2, &s, e);
        if (wanted.is_empty() || wanted.contains(&e.id.as_str())) && matches(&v, &filters)? {
            items.push((e.id.clone(), v));
        }
    }
    let (items, next) = page(items, p, 5, !wanted.is_empty())?;
    let mut x = Xml::new();
    x.items("networkInterfaceSet", items, |i, v| eni_xml(i, &v));
    super::next_token(&mut x, next);
    Ok(x)
}
