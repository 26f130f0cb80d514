//! DescribeAvailabilityZones: the three zones `REGIONa`..`c` ferry's
//! subnets are placed in (names only: every zone is this host).

use ferry_proto::AwsError;
use ferry_proto::query::{Params, Xml};

use super::{Filterable, dry_run, filters, invalid_value, matches};
use crate::Ec2;
use crate::ec2::{zone_id, zones};
use crate::model::Tag;

struct Zone<'a> {
    name: String,
    id: String,
    region: &'a str,
}

impl Filterable for Zone<'_> {
    fn values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "zone-name" => self.name.clone(),
            "zone-id" => self.id.clone(),
            "region-name" | "group-name" | "network-border-group" => self.region.to_owned(),
            "state" => "available".into(),
            "zone-type" => "availability-zone".into(),
            "opt-in-status" => "opt-in-not-required".into(),
            _ => return None,
        }])
    }

    fn tags(&self) -> &[Tag] {
        &[]
    }
}

/// DescribeAvailabilityZones.
pub(crate) fn describe(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let filters = filters(p)?;
    let region = ec2.region();
    let all: Vec<Zone<'_>> = zones(region)
        .into_iter()
        .enumerate()
        .map(|(i, name)| Zone {
            name,
            id: zone_id(region, i),
            region,
        })
        .collect();
    let names = p.items("ZoneName");
    let ids = p.items("ZoneId");
    for n in &names {
        if !all.iter().any(|z| z.name == *n) {
            return Err(invalid_value("ZoneName", n, "No such availability zone."));
        }
    }
    for n in &ids {
        if !all.iter().any(|z| z.id == *n) {
            return Err(invalid_value("ZoneId", n, "No such availability zone."));
        }
    }
    let mut out = Vec::new();
    for z in &all {
        let picked = (names.is_empty() && ids.is_empty())
            || names.contains(&z.name.as_str())
            || ids.contains(&z.id.as_str());
        if picked && matches(z, &filters)? {
            out.push(z);
        }
    }
    let mut x = Xml::new();
    x.items("availabilityZoneInfo", out, |i, z| {
        i.text("zoneName", &z.name)
            .text("zoneId", &z.id)
            .text("zoneState", "available")
            .text("optInStatus", "opt-in-not-required")
            .text("regionName", z.region)
            .text("groupName", z.region)
            .text("networkBorderGroup", z.region)
            .text("zoneType", "availability-zone")
            .items("messageSet", std::iter::empty::<()>(), |_, ()| {});
    });
    Ok(x)
}
