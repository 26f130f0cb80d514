//! EFS's wiring to the rest of the server: mount targets' addresses from
//! the VPC service, and the task role sessions IAM-authorized mounts are
//! judged as.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ferry_control::identity::sessions::TaskSessions;
use ferry_ec2::model::EniOwner;
use ferry_ec2::{Ec2, ServiceEniError, ServiceEniRequest};
use ferry_efs::{EfsError, Interface, Network};
use ferry_iam::Iam;
use ferry_proto::Caller;

use super::ControlState;

/// Mount targets' ENIs in the VPC service.
pub struct MountTargetNetwork(pub Arc<Ec2>);

fn efs_error(e: ServiceEniError) -> EfsError {
    use ServiceEniError as E;
    let m = e.to_string();
    match e {
        E::SubnetNotFound(_) => EfsError::SubnetNotFound(m),
        E::GroupNotFound(_) => EfsError::SecurityGroupNotFound(m),
        E::GroupOfOtherVpc(..) | E::AddressNotInSubnet(..) => EfsError::BadRequest(m),
        E::TooManyGroups(_) => EfsError::SecurityGroupLimitExceeded(m),
        E::AddressInUse(..) => EfsError::IpAddressInUse(m),
        E::NoFreeAddress(_) => EfsError::NoFreeAddressesInSubnet(m),
        E::EniNotFound(_) | E::Store(_) => EfsError::Internal(m),
    }
}

impl MountTargetNetwork {
    fn zone_id(&self, zone: &str) -> String {
        let region = self.0.region();
        ferry_ec2::ec2::zones(region)
            .iter()
            .position(|z| z == zone)
            .map(|i| ferry_ec2::ec2::zone_id(region, i))
            .unwrap_or_default()
    }
}

impl Network for MountTargetNetwork {
    fn subnet(&self, subnet_id: &str) -> Result<(String, String), EfsError> {
        self.0
            .subnet(subnet_id)
            .map(|s| (s.availability_zone, s.vpc_id))
            .ok_or_else(|| {
                EfsError::SubnetNotFound(format!("The subnet ID '{subnet_id}' does not exist"))
            })
    }

    fn create(
        &self,
        subnet_id: &str,
        ip: Option<Ipv4Addr>,
        groups: &[String],
        description: &str,
    ) -> Result<Interface, EfsError> {
        let eni = self
            .0
            .attach_service(&ServiceEniRequest {
                subnet_id: subnet_id.to_owned(),
                ip,
                security_groups: groups.to_vec(),
                description: description.to_owned(),
                owner: EniOwner::MountTarget,
            })
            .map_err(efs_error)?;
        let (zone, _) = self.subnet(subnet_id)?;
        Ok(Interface {
            availability_zone_id: self.zone_id(&zone),
            availability_zone: zone,
            eni_id: eni.id,
            ip: eni.ip.to_string(),
            vpc_id: eni.vpc_id,
            security_groups: eni.groups,
        })
    }

    fn groups(&self, eni_id: &str) -> Option<Vec<String>> {
        self.0.eni(eni_id).map(|e| e.groups)
    }

    fn set_groups(&self, eni_id: &str, groups: &[String]) -> Result<Vec<String>, EfsError> {
        self.0.set_groups(eni_id, groups).map_err(efs_error)
    }

    fn delete(&self, eni_id: &str) -> Result<(), EfsError> {
        self.0
            .detach(eni_id)
            .map_err(|e| EfsError::Internal(format!("releasing {eni_id}: {e}")))
    }
}

/// A task's role session as a caller, from the control plane's task record
/// (which session id its containers got) and the IAM session table.
pub struct TaskRoleClients {
    pub(super) control: Arc<ControlState>,
    pub(super) sessions: Arc<TaskSessions>,
    pub(super) iam: Arc<Iam>,
}

impl ferry_host::efs::TaskClients for TaskRoleClients {
    fn task_role_caller(&self, task_arn: &str) -> Option<Caller> {
        let t = self.control.record(task_arn)?;
        let session = self
            .sessions
            .credentials(task_arn, t.roles.credentials_id.as_deref()?)?;
        self.iam.caller_of_key(&session.access_key_id)
    }
}

/// Where each file system lives, for placement: its record's `host`.
pub struct FileSystemHosts(pub Arc<ferry_store::Store>);

impl ferry_control::hosts::FileSystemHosts for FileSystemHosts {
    fn host_of(&self, file_system_id: &str) -> Option<String> {
        match self
            .0
            .get::<ferry_efs::model::FileSystem>(ferry_efs::model::FS_TABLE, file_system_id)
        {
            Ok(fs) => fs.and_then(|f| f.host),
            Err(e) => {
                // Placed anywhere then; the mount fails there with its reason.
                tracing::warn!(
                    file_system = file_system_id,
                    "reading the file system's host: {e}"
                );
                None
            }
        }
    }
}
