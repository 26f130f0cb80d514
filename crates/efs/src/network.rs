//! The VPC side of mount targets: an address and security groups in a
//! subnet, held by an ENI of the VPC service. `ferry` wires this to
//! ferry-ec2; tests use a fake. Kept behind a trait so this crate does not
//! depend on the VPC service's internals.

use crate::error::EfsError;

/// The ENI made for one mount target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `eni-...`.
    pub eni_id: String,
    /// Its address.
    pub ip: String,
    /// The subnet's VPC.
    pub vpc_id: String,
    /// The subnet's zone name.
    pub availability_zone: String,
    /// The zone's id.
    pub availability_zone_id: String,
    /// Its security groups.
    pub security_groups: Vec<String>,
}

/// Interfaces in the VPC service.
pub trait Network: Send + Sync {
    /// The zone name and VPC of `subnet_id`, or
    /// [`EfsError::SubnetNotFound`].
    fn subnet(&self, subnet_id: &str) -> Result<(String, String), EfsError>;

    /// Makes the ENI of a mount target in `subnet_id`: `ip` or the lowest
    /// free address, `groups` or the VPC's default group.
    fn create(
        &self,
        subnet_id: &str,
        ip: Option<std::net::Ipv4Addr>,
        groups: &[String],
        description: &str,
    ) -> Result<Interface, EfsError>;

    /// The security groups of `eni_id` (None when it is gone).
    fn groups(&self, eni_id: &str) -> Option<Vec<String>>;

    /// Replaces the security groups of `eni_id`.
    fn set_groups(&self, eni_id: &str, groups: &[String]) -> Result<Vec<String>, EfsError>;

    /// Releases `eni_id` and its address (gone already is fine).
    fn delete(&self, eni_id: &str) -> Result<(), EfsError>;
}
