//! Mount targets: CreateMountTarget, DescribeMountTargets,
//! DeleteMountTarget and their security groups. Each holds an address in
//! one subnet through an ENI of the VPC service ([`crate::network`]), with
//! EFS's rules: one mount target per zone per file system, all in one VPC,
//! a One Zone file system only in its zone.

use serde_json::{Value, json};

use super::{EfsService, R, bad, new_id, ok, opt_str, page, page_size, qget, req_str};
use crate::error::EfsError;
use crate::model::{MT_TABLE, MountTarget};

/// `SecurityGroups` of a request: a list of `sg-` ids (at most five, as
/// EFS allows per mount target).
fn groups(b: &Value) -> Result<Vec<String>, EfsError> {
    let list: Vec<String> = match b.get("SecurityGroups") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| bad("SecurityGroups must be a list of security group ids"))?,
    };
    if list.len() > 5 {
        return Err(EfsError::SecurityGroupLimitExceeded(
            "A mount target can have at most 5 security groups.".into(),
        ));
    }
    if let Some(g) = list.iter().find(|g| !g.starts_with("sg-")) {
        return Err(bad(format!("invalid security group id {g:?}")));
    }
    Ok(list)
}

impl EfsService {
    fn network(&self) -> Result<&dyn crate::network::Network, EfsError> {
        self.network.as_deref().ok_or_else(|| {
            EfsError::Internal("this server has no VPC service for mount targets".into())
        })
    }

    fn mt_or_404(&self, id: &str) -> Result<MountTarget, EfsError> {
        self.store
            .get(MT_TABLE, id)?
            .ok_or_else(|| EfsError::MountTargetNotFound(id.to_owned()))
    }

    pub(super) fn create_mount_target(&self, b: &Value) -> R {
        let fs_id = req_str(b, "FileSystemId")?;
        let subnet_id = req_str(b, "SubnetId")?;
        let ip = match opt_str(b, "IpAddress")? {
            None => None,
            Some(s) => Some(
                s.parse::<std::net::Ipv4Addr>()
                    .map_err(|_| bad(format!("IpAddress {s:?} is not an IPv4 address")))?,
            ),
        };
        match opt_str(b, "IpAddressType")? {
            None | Some("IPV4_ONLY") => {}
            Some(t) => {
                return Err(bad(format!(
                    "IpAddressType {t:?} is not supported: ferry's VPCs are IPv4 only"
                )));
            }
        }
        if opt_str(b, "Ipv6Address")?.is_some() {
            return Err(bad(
                "Ipv6Address is not supported: ferry's VPCs are IPv4 only",
            ));
        }
        let groups = groups(b)?;
        let net = self.network()?;
        let _g = self.guard();
        let fs = self.fs_or_404(fs_id)?;
        let (zone, vpc) = net.subnet(subnet_id)?;
        if let Some(z) = &fs.availability_zone
            && *z != zone
        {
            return Err(EfsError::AvailabilityZonesMismatch(format!(
                "One Zone file system {fs_id} is in {z}; subnet {subnet_id} is in {zone}."
            )));
        }
        let existing: Vec<MountTarget> = self
            .all_mt()?
            .into_iter()
            .filter(|m| m.file_system_id == fs_id)
            .collect();
        if existing.iter().any(|m| m.availability_zone == zone) {
            return Err(EfsError::MountTargetConflict(format!(
                "File system {fs_id} already has a mount target in availability zone {zone}."
            )));
        }
        if let Some(other) = existing.iter().find(|m| m.vpc_id != vpc) {
            return Err(EfsError::MountTargetConflict(format!(
                "File system {fs_id} has mount targets in VPC {}; subnet {subnet_id} is in VPC {vpc}.",
                other.vpc_id
            )));
        }
        let id = new_id("fsmt-");
        let iface = net.create(
            subnet_id,
            ip,
            &groups,
            &format!("EFS mount target for {fs_id} ({id})"),
        )?;
        let mt = MountTarget {
            id: id.clone(),
            file_system_id: fs_id.to_owned(),
            owner: self.account.clone(),
            subnet_id: subnet_id.to_owned(),
            vpc_id: iface.vpc_id,
            availability_zone: iface.availability_zone,
            availability_zone_id: iface.availability_zone_id,
            ip: iface.ip,
            eni_id: iface.eni_id,
        };
        // The one-per-zone and one-VPC rules are checked again in the
        // transaction that records it: another replica may have added a
        // mount target meanwhile.
        let stored = self.store.write(|w| {
            if w.get::<crate::model::FileSystem>(crate::model::FS_TABLE, fs_id)?
                .is_none()
            {
                return Err(EfsError::FileSystemNotFound(fs_id.to_owned()));
            }
            let all: Vec<(String, MountTarget)> = w.scan(MT_TABLE, "")?;
            let theirs: Vec<&MountTarget> = all
                .iter()
                .map(|(_, m)| m)
                .filter(|m| m.file_system_id == fs_id)
                .collect();
            if theirs.iter().any(|m| m.availability_zone == mt.availability_zone) {
                return Err(EfsError::MountTargetConflict(format!(
                    "File system {fs_id} already has a mount target in availability zone {}.",
                    mt.availability_zone
                )));
            }
            if let Some(other) = theirs.iter().find(|m| m.vpc_id != mt.vpc_id) {
                return Err(EfsError::MountTargetConflict(format!(
                    "File system {fs_id} has mount targets in VPC {}; subnet {subnet_id} is in VPC {}.",
                    other.vpc_id, mt.vpc_id
                )));
            }
            w.put(MT_TABLE, &id, &mt)?;
            Ok(())
        });
        if let Err(e) = stored {
            let _ = net.delete(&mt.eni_id);
            return Err(e);
        }
        ok(200, mt.describe())
    }

    pub(super) fn describe_mount_targets(&self, q: &[(String, String)]) -> R {
        let n = page_size(q, "MaxItems")?;
        let by = [
            qget(q, "FileSystemId"),
            qget(q, "MountTargetId"),
            qget(q, "AccessPointId"),
        ];
        let mut all = self.all_mt()?;
        match by {
            [Some(fs), None, None] => {
                self.fs_or_404(fs)?;
                all.retain(|m| m.file_system_id == fs);
            }
            [None, Some(id), None] => {
                let m = self.mt_or_404(id)?;
                all = vec![m];
            }
            [None, None, Some(ap)] => {
                let ap = self
                    .access_point(ap)?
                    .ok_or_else(|| EfsError::AccessPointNotFound(ap.to_owned()))?;
                all.retain(|m| m.file_system_id == ap.file_system_id);
            }
            _ => {
                return Err(bad(
                    "give exactly one of FileSystemId, MountTargetId or AccessPointId",
                ));
            }
        }
        let marker = qget(q, "Marker");
        let (items, next) = page(all, marker, n, |m| m.id.as_str())?;
        let mut out = json!({
            "MountTargets": items.iter().map(MountTarget::describe).collect::<Vec<_>>(),
        });
        if let Some(m) = marker {
            out["Marker"] = json!(m);
        }
        if let Some(nm) = next {
            out["NextMarker"] = json!(nm);
        }
        ok(200, out)
    }

    pub(super) fn delete_mount_target(&self, id: &str) -> R {
        let net = self.network()?;
        let _g = self.guard();
        let mt = self.mt_or_404(id)?;
        // Releasing an address that is gone is no error: replicas deleting
        // the same mount target at once both succeed.
        net.delete(&mt.eni_id)?;
        self.store.delete(MT_TABLE, id)?;
        ok(204, Value::Null)
    }

    pub(super) fn mount_target_groups(&self, id: &str) -> R {
        let mt = self.mt_or_404(id)?;
        let groups = self.network()?.groups(&mt.eni_id).unwrap_or_default();
        ok(200, json!({"SecurityGroups": groups}))
    }

    pub(super) fn modify_mount_target_groups(&self, id: &str, b: &Value) -> R {
        let groups = groups(b)?;
        let net = self.network()?;
        let _g = self.guard();
        let mt = self.mt_or_404(id)?;
        net.set_groups(&mt.eni_id, &groups)?;
        ok(204, Value::Null)
    }
}
