//! Task networking (awsvpc): one named network namespace per task, wired
//! with the standard CNI plugins, routed rather than bridged: loopback,
//! then `ptp` with `static` IPAM (the plan's address; the host side of the
//! veth holds the subnet's gateway address as /32 and a /32 route to the
//! task), then `tuning` (the plan's MAC), then `firewall` (FORWARD accepts
//! for hosts whose policy is DROP). Every packet between tasks is routed
//! by the host and judged by the security-group [`firewall`]. Torn down
//! with CNI DEL and `ip netns delete`.
//!
//! - [`cni`]: executing CNI plugins per the CNI spec.
//! - [`netns`]: named network namespaces (`/run/netns/NAME`, via iproute2).
//! - [`firewall`] and [`nft`]: the security groups as one nftables table.

pub mod cni;
pub mod firewall;
pub mod netns;
pub mod nft;

use std::path::PathBuf;

use ferry_proto::net::InterfacePlan;
use serde_json::json;

/// The name of task `task_id`'s network namespace (`/run/netns/NAME`).
pub fn netns_name(task_id: &str) -> String {
    format!("ferry-{task_id}")
}

/// Host-side network settings.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Where the CNI plugins live (`/usr/lib/cni`).
    pub cni_bin_dir: PathBuf,
    /// The task network's name: the CNI network name (it names the
    /// plugins' iptables chains) and the nftables table `inet NAME`.
    pub network_name: String,
    /// Chain the `firewall` plugin after `tuning`, so task traffic is
    /// accepted in FORWARD even where the host's policy is DROP (as on
    /// hosts with Docker).
    pub firewall: bool,
}

impl NetworkConfig {
    /// The task network `network_name`, plugins in `/usr/lib/cni`.
    pub fn new(network_name: &str) -> Self {
        Self {
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
    /// The last plugin's ADD result (tuning's): the firewall plugin's
    /// `prevResult` (CNI has no cache here, so the agent keeps it for DEL)
    /// and where the host interface's name is.
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
    /// restart), to tear it down.
    pub fn restore(
        cfg: &NetworkConfig,
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
            result,
        }
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

    /// CNI DEL (veth, FORWARD accepts), then deletes the namespace. Tries
    /// every step; returns the first error.
    pub fn teardown(&self) -> Result<(), NetworkError> {
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
