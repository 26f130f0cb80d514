//! Task networking (awsvpc): one named network namespace per task,
//! routed rather than bridged: the task's `eth0` holds the plan's address
//! and MAC with a default route via the subnet's gateway; the host side of
//! the veth holds the gateway address as /32 and the host a /32 route to
//! the task. Every packet between tasks is routed by the host and judged
//! by the security-group [`firewall`].
//!
//! Two drivers make it ([`NetworkDriver`]):
//! - `netlink` (default): [`netlink`] requests from the agent itself, no
//!   process started per task;
//! - `cni`: the standard CNI plugins (loopback, `ptp` with `static` IPAM,
//!   `tuning` for the MAC, `firewall` for FORWARD accepts), for users who
//!   bring their own; torn down with CNI DEL.
//!
//! Both end with the same interfaces, addresses and routes, then
//! `ip netns delete` at teardown.
//!
//! - [`cni`]: executing CNI plugins per the CNI spec.
//! - [`netlink`]: the same network with rtnetlink requests.
//! - [`netns`]: named network namespaces (`/run/netns/NAME`, via iproute2).
//! - [`firewall`] and [`nft`]: the security groups as one nftables table.

pub mod cni;
pub mod firewall;
pub mod netlink;
pub mod netns;
pub mod nft;

use std::path::PathBuf;
use std::str::FromStr;

use ferry_proto::net::InterfacePlan;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What makes a task's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkDriver {
    /// rtnetlink requests from the agent ([`netlink`]).
    #[default]
    Netlink,
    /// The CNI plugins in [`NetworkConfig::cni_bin_dir`] ([`cni`]).
    Cni,
}

impl FromStr for NetworkDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "netlink" => Ok(Self::Netlink),
            "cni" => Ok(Self::Cni),
            _ => Err(format!(
                "{s:?} is not a task network driver (netlink or cni)"
            )),
        }
    }
}

impl std::fmt::Display for NetworkDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Netlink => "netlink",
            Self::Cni => "cni",
        })
    }
}

/// The bytes of a MAC written `aa:bb:cc:dd:ee:ff` (hex, either case);
/// `None` for anything else (a `+` sign or a short group included).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The name of task `task_id`'s network namespace (`/run/netns/NAME`).
pub fn netns_name(task_id: &str) -> String {
    format!("ferry-{task_id}")
}

/// Host-side network settings.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// What makes each task's network.
    pub driver: NetworkDriver,
    /// Where the CNI plugins live (`/usr/lib/cni`).
    pub cni_bin_dir: PathBuf,
    /// The task network's name: the CNI network name (it names the
    /// plugins' iptables chains) and the nftables table `inet NAME`.
    pub network_name: String,
    /// Accept task traffic in iptables' FORWARD even where the host's
    /// policy is DROP (as on hosts with Docker): CNI chains the `firewall`
    /// plugin after `tuning`; netlink adds two rules for every task
    /// interface once per server start ([`netlink::ensure_forward_accepts`]).
    pub firewall: bool,
}

impl NetworkConfig {
    /// The task network `network_name`, plugins in `/usr/lib/cni`.
    pub fn new(network_name: &str) -> Self {
        Self {
            driver: NetworkDriver::default(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            network_name: network_name.into(),
            firewall: true,
        }
    }

    /// The firewall plugin's config, chained after tuning's `result`.
    fn firewall_conf(&self, prev: &serde_json::Value) -> serde_json::Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.network_name,
            "type": "firewall",
            "backend": "iptables",
            "prevResult": prev,
        })
    }

    /// ptp with the plan's address (no plan: for DEL, which needs none).
    /// Masquerading is the firewall table's (only flows leaving the VPCs),
    /// not ptp's, which would also hide the source between subnets.
    fn ptp_conf(&self, plan: Option<&InterfacePlan>) -> serde_json::Value {
        let ipam = match plan {
            Some(p) => json!({
                "type": "static",
                "addresses": [{
                    "address": format!("{}/{}", p.ip, p.subnet_cidr.prefix()),
                    "gateway": p.gateway.to_string(),
                }],
                "routes": [{"dst": "0.0.0.0/0"}],
            }),
            None => json!({"type": "static"}),
        };
        json!({
            "cniVersion": "1.0.0",
            "name": self.network_name,
            "type": "ptp",
            "ipMasq": false,
            "ipam": ipam,
        })
    }

    /// tuning: the interface's MAC, chained after ptp's `result`.
    fn tuning_conf(&self, mac: Option<&str>, prev: &serde_json::Value) -> serde_json::Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": self.network_name,
            "type": "tuning",
            "prevResult": prev,
        });
        if let (Some(m), Some(o)) = (mac, c.as_object_mut()) {
            o.insert("mac".into(), json!(m));
        }
        c
    }

    fn loopback_conf(&self) -> serde_json::Value {
        json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"})
    }
}

/// The host side of the task's veth: the result's interface that is not
/// in a sandbox.
pub fn host_iface(result: &serde_json::Value) -> Option<String> {
    result
        .get("interfaces")?
        .as_array()?
        .iter()
        .find(|i| {
            i.get("sandbox")
                .and_then(|s| s.as_str())
                .is_none_or(str::is_empty)
        })?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// Errors setting up or tearing down a task's network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A CNI plugin failed.
    #[error(transparent)]
    Cni(#[from] cni::CniError),
    /// Creating or deleting the namespace failed.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    /// The plugin's result had no IPv4 address.
    #[error("CNI result has no IPv4 address")]
    NoAddress,
    /// The plugin's result named no host-side interface.
    #[error("CNI result has no host-side interface")]
    NoHostInterface,
}

/// A task's network: its namespace and address. Call [`TaskNetwork::teardown`].
#[derive(Debug)]
pub struct TaskNetwork {
    /// The namespace.
    pub netns: netns::Netns,
    /// The task's IPv4 address.
    pub ip: String,
    container_id: String,
    cfg: NetworkConfig,
    /// The driver that made it (a restarted server may have another).
    driver: NetworkDriver,
    /// The last plugin's ADD result (tuning's): the firewall plugin's
    /// `prevResult` (CNI has no cache here, so the agent keeps it for DEL)
    /// and where the host interface's name is. The netlink driver writes
    /// a result of the same shape (interfaces, ips).
    result: Option<serde_json::Value>,
}

impl TaskNetwork {
    /// Creates the namespace `name` and attaches it (`CNI_CONTAINERID` =
    /// `container_id`) as `plan` says. On failure everything done so far is
    /// undone.
    pub fn setup(
        cfg: &NetworkConfig,
        name: &str,
        container_id: &str,
        plan: &InterfacePlan,
    ) -> Result<Self, NetworkError> {
        Self::setup_in(cfg, netns::Netns::create(name)?, container_id, plan)
    }

    /// [`TaskNetwork::setup`] in a namespace that already exists at
    /// `/run/netns/NAME` (a task's user namespace owns it: `userns`).
    pub fn setup_in(
        cfg: &NetworkConfig,
        ns: netns::Netns,
        container_id: &str,
        plan: &InterfacePlan,
    ) -> Result<Self, NetworkError> {
        let mut net = TaskNetwork {
            netns: ns,
            ip: String::new(),
            container_id: container_id.to_string(),
            cfg: cfg.clone(),
            driver: cfg.driver,
            result: None,
        };
        match net.attach(plan) {
            Ok(ip) => {
                net.ip = ip;
                Ok(net)
            }
            Err(e) => {
                let _ = net.teardown();
                Err(e)
            }
        }
    }

    /// Rebuilds the handle of a task network from its record (after a
    /// restart), to tear it down with the driver that made it.
    pub fn restore(
        cfg: &NetworkConfig,
        driver: NetworkDriver,
        name: &str,
        container_id: &str,
        ip: Option<String>,
        result: Option<serde_json::Value>,
    ) -> Self {
        TaskNetwork {
            netns: netns::Netns {
                name: name.to_string(),
            },
            ip: ip.unwrap_or_default(),
            container_id: container_id.to_string(),
            cfg: cfg.clone(),
            driver,
            result,
        }
    }

    /// The driver that made it.
    pub fn driver(&self) -> NetworkDriver {
        self.driver
    }

    /// The CNI ADD result kept for DEL.
    pub fn cni_result(&self) -> Option<&serde_json::Value> {
        self.result.as_ref()
    }

    /// The host side of the task's veth.
    pub fn host_iface(&self) -> Option<String> {
        self.result.as_ref().and_then(host_iface)
    }

    fn call(
        &self,
        cmd: &str,
        conf: &serde_json::Value,
        ifname: &str,
    ) -> Result<serde_json::Value, cni::CniError> {
        cni::exec(&cni::Call {
            bin_dir: &self.cfg.cni_bin_dir,
            command: cmd,
            container_id: &self.container_id,
            netns: &self.netns.path(),
            ifname,
            config: conf,
        })
    }

    fn attach(&mut self, plan: &InterfacePlan) -> Result<String, NetworkError> {
        match self.driver {
            NetworkDriver::Cni => self.attach_cni(plan),
            NetworkDriver::Netlink => self.attach_netlink(plan),
        }
    }

    fn attach_netlink(&mut self, plan: &InterfacePlan) -> Result<String, NetworkError> {
        let host = netlink::host_iface_name(&self.container_id);
        // Kept before the veth exists, so a failure deletes what was made.
        self.result = Some(json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": host},
                {"name": netlink::TASK_IFACE, "mac": plan.mac,
                 "sandbox": self.netns.path().display().to_string()},
            ],
            "ips": [{
                "interface": 1,
                "address": format!("{}/{}", plan.ip, plan.subnet_cidr.prefix()),
                "gateway": plan.gateway.to_string(),
            }],
        }));
        netlink::setup(&self.netns.path(), &host, plan)?;
        Ok(plan.ip.to_string())
    }

    fn attach_cni(&mut self, plan: &InterfacePlan) -> Result<String, NetworkError> {
        self.call("ADD", &self.cfg.loopback_conf(), "lo")?;
        let res = self.call("ADD", &self.cfg.ptp_conf(Some(plan)), "eth0")?;
        // Kept at once, so a failure below still deletes the veth.
        self.result = Some(res.clone());
        let res = self.call("ADD", &self.cfg.tuning_conf(Some(&plan.mac), &res), "eth0")?;
        self.result = Some(res.clone());
        if self.cfg.firewall {
            self.call("ADD", &self.cfg.firewall_conf(&res), "eth0")?;
        }
        if host_iface(&res).is_none() {
            return Err(NetworkError::NoHostInterface);
        }
        cni::first_ipv4(&res).ok_or(NetworkError::NoAddress)
    }

    /// Removes the veth (CNI: DEL of every plugin, FORWARD accepts
    /// included), then deletes the namespace. Tries every step; returns
    /// the first error.
    pub fn teardown(&self) -> Result<(), NetworkError> {
        match self.driver {
            NetworkDriver::Cni => self.teardown_cni(),
            NetworkDriver::Netlink => {
                let host = self
                    .host_iface()
                    .unwrap_or_else(|| netlink::host_iface_name(&self.container_id));
                let r0 = netlink::delete_host_iface(&host);
                let r1 = self.netns.delete();
                r0?;
                r1?;
                Ok(())
            }
        }
    }

    fn teardown_cni(&self) -> Result<(), NetworkError> {
        // Plugins are deleted in reverse order of ADD.
        let r0 = match (&self.result, self.cfg.firewall) {
            (Some(prev), true) => self
                .call("DEL", &self.cfg.firewall_conf(prev), "eth0")
                .map(|_| ()),
            _ => Ok(()),
        };
        let null = serde_json::Value::Null;
        let prev = self.result.as_ref().unwrap_or(&null);
        let r1 = self.call("DEL", &self.cfg.tuning_conf(None, prev), "eth0");
        let r2 = self.call("DEL", &self.cfg.ptp_conf(None), "eth0");
        // loopback keeps no state outside the namespace; without it there
        // is nothing to delete (and the plugin would fail to enter it).
        let r3 = if self.netns.path().exists() {
            self.call("DEL", &self.cfg.loopback_conf(), "lo")
        } else {
            Ok(serde_json::Value::Null)
        };
        let r4 = self.netns.delete();
        r0?;
        r1?;
        r2?;
        r3?;
        r4?;
        Ok(())
    }
}
