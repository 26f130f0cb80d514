//! The task network contract (awsvpc): what the VPC service (`ferry-ec2`)
//! decides and the agent's data plane enforces.
//!
//! - [`InterfacePlan`]: one task's elastic network interface (ENI): its VPC,
//!   subnet, address, MAC and security groups. The EC2 service allocates it
//!   at RunTask; it travels in the [`crate::plan::TaskPlan`] and is stored
//!   with the task record (serde names are part of the store format).
//! - [`FirewallRules`]: every VPC and security group with its rules, as the
//!   data plane needs them. The EC2 service renders it whenever a group,
//!   rule or VPC changes; the data plane combines it with the interfaces it
//!   runs (group membership) into one firewall.
//!
//! Nothing here knows about the EC2 wire format or about nftables.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 network `A.B.C.D/N` with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a string is not an [`Ipv4Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `A.B.C.D/N` with N in 0..=32.
    #[error("{0:?} is not an IPv4 CIDR block such as 10.0.0.0/16")]
    Syntax(String),
    /// Host bits are set (`10.0.0.1/16`).
    #[error("{given:?} has host bits set; the network is {network}")]
    HostBits {
        /// What was given.
        given: String,
        /// The network it names.
        network: Ipv4Cidr,
    },
}

impl Ipv4Cidr {
    /// The network of `addr/prefix` (host bits cleared). `prefix` above 32
    /// is taken as 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as an address (`255.255.255.0`).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether `other` lies wholly inside this network.
    pub fn covers(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// The number of addresses (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `n`th address of the network (0 is the network address), if
    /// inside.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.addr).wrapping_add(n as u32)))
    }

    /// The offset of `ip` in the network, if inside.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u64> {
        self.contains(ip)
            .then(|| u64::from(u32::from(ip) - u32::from(self.addr)))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    /// Parses `A.B.C.D/N`; refuses host bits, as EC2 does.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(s.to_owned());
        let (a, p) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| syntax())?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let prefix: u8 = p.parse().map_err(|_| syntax())?;
        if prefix > 32 {
            return Err(syntax());
        }
        let network = Ipv4Cidr::new(addr, prefix);
        if network.addr != addr {
            return Err(CidrError::HostBits {
                given: s.to_owned(),
                network,
            });
        }
        Ok(network)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// EC2's private DNS name of an address: `ip-10-0-1-4.ec2.internal` in
/// us-east-1, `ip-10-0-1-4.REGION.compute.internal` elsewhere (DescribeTasks
/// and the task metadata endpoint both show it).
pub fn private_dns_name(ip: &str, region: &str) -> String {
    let host = format!("ip-{}", ip.replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

/// A task's elastic network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfacePlan {
    /// `eni-` and 17 hex digits.
    pub eni_id: String,
    /// `vpc-...`.
    pub vpc_id: String,
    /// `subnet-...`.
    pub subnet_id: String,
    /// The subnet's CIDR block.
    pub subnet_cidr: Ipv4Cidr,
    /// The task's private address, inside `subnet_cidr`.
    pub ip: Ipv4Addr,
    /// The subnet's router: its first usable address (`.1`), as in a VPC.
    pub gateway: Ipv4Addr,
    /// The interface's MAC, `0a:..` lower-case hex with colons.
    pub mac: String,
    /// The security groups (`sg-...`) the interface is in, at least one.
    pub security_groups: Vec<String>,
    /// The subnet's availability zone (`us-east-1a`): the task's.
    #[serde(default)]
    pub availability_zone: String,
}

/// Every VPC and security group, as the data plane enforces them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirewallRules {
    /// The VPCs (routing between subnets of one VPC is allowed; between
    /// VPCs it is not).
    pub vpcs: Vec<VpcNet>,
    /// The security groups.
    pub groups: Vec<GroupRules>,
}

/// One VPC's address space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VpcNet {
    /// `vpc-...`.
    pub vpc_id: String,
    /// Its subnets' CIDR blocks.
    pub subnets: Vec<Ipv4Cidr>,
}

/// One security group's rules. Traffic is stateful: a reply to an allowed
/// flow is always allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRules {
    /// `sg-...`.
    pub group_id: String,
    /// The VPC the group belongs to.
    pub vpc_id: String,
    /// What may reach a member (new flows).
    pub ingress: Vec<Rule>,
    /// What a member may start (new flows).
    pub egress: Vec<Rule>,
}

/// One allowed flow: EC2's IpPermission flattened to one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Protocol and ports.
    pub traffic: Traffic,
    /// The other end: the source of ingress, the destination of egress.
    pub peer: Peer,
}

/// The traffic a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Traffic {
    /// Every protocol (`IpProtocol=-1`).
    All,
    /// TCP to destination ports `from..=to`.
    Tcp {
        /// First port.
        from: u16,
        /// Last port.
        to: u16,
    },
    /// UDP to destination ports `from..=to`.
    Udp {
        /// First port.
        from: u16,
        /// Last port.
        to: u16,
    },
    /// ICMP of this type and code (`None`: any).
    Icmp {
        /// ICMP type (`FromPort`; -1 is any).
        icmp_type: Option<u8>,
        /// ICMP code (`ToPort`; -1 is any).
        code: Option<u8>,
    },
    /// Any other IP protocol, by number.
    Protocol(u8),
}

/// The other end of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Peer {
    /// Addresses in a CIDR block.
    Cidr(Ipv4Cidr),
    /// The interfaces in a security group (`sg-...`), possibly the rule's
    /// own group.
    Group(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_refuse_host_bits_and_compare() {
        let c: Ipv4Cidr = "10.0.1.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.1.0/24");
        assert_eq!(c.size(), 256);
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(c.nth(256), None);
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 0, 1, 9)), Some(9));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        let vpc: Ipv4Cidr = "10.0.0.0/16".parse().unwrap();
        assert!(vpc.covers(&c) && !c.covers(&vpc) && c.overlaps(&vpc));
        assert!(!c.overlaps(&"10.0.2.0/24".parse().unwrap()));
        assert!(matches!(
            "10.0.1.5/24".parse::<Ipv4Cidr>(),
            Err(CidrError::HostBits { .. })
        ));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        assert_eq!("0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().size(), 1 << 32);
        assert!(
            "0.0.0.0/0"
                .parse::<Ipv4Cidr>()
                .unwrap()
                .contains(Ipv4Addr::new(1, 2, 3, 4))
        );
    }

    #[test]
    fn private_dns_names_follow_the_region() {
        assert_eq!(
            private_dns_name("10.0.1.4", "us-east-1"),
            "ip-10-0-1-4.ec2.internal"
        );
        assert_eq!(
            private_dns_name("10.0.1.4", "eu-west-1"),
            "ip-10-0-1-4.eu-west-1.compute.internal"
        );
    }

    #[test]
    fn plans_round_trip_through_json() {
        let p = InterfacePlan {
            eni_id: "eni-0123456789abcdef0".into(),
            vpc_id: "vpc-1".into(),
            subnet_id: "subnet-1".into(),
            subnet_cidr: "10.0.1.0/24".parse().unwrap(),
            ip: Ipv4Addr::new(10, 0, 1, 4),
            gateway: Ipv4Addr::new(10, 0, 1, 1),
            mac: "0a:00:00:00:00:01".into(),
            security_groups: vec!["sg-1".into()],
            availability_zone: "us-east-1a".into(),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["subnetCidr"], "10.0.1.0/24");
        assert_eq!(serde_json::from_value::<InterfacePlan>(v).unwrap(), p);
        let r = Rule {
            traffic: Traffic::Tcp { from: 80, to: 80 },
            peer: Peer::Group("sg-1".into()),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Rule>(&s).unwrap(), r);
    }
}
