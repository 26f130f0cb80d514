//! Task networking (awsvpc): one named network namespace per task, wired
//! with the standard CNI plugins (loopback, then bridge + host-local IPAM
//! with IP masquerading, then firewall), torn down with CNI DEL and `ip netns delete`.
//!
//! - [`cni`]: executing CNI plugins per the CNI spec.
//! - [`netns`]: named network namespaces (`/run/netns/NAME`, via iproute2).

pub mod cni;
pub mod netns;

use std::path::PathBuf;

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
    /// Linux bridge the tasks attach to (created by the bridge plugin).
    pub bridge: String,
    /// Task subnet; the bridge gets its first address as the gateway.
    pub subnet: String,
    /// host-local IPAM state (address leases).
    pub ipam_dir: PathBuf,
    /// CNI network name (also names the plugin's iptables chains).
    pub network_name: String,
    /// Chain the `firewall` plugin after `bridge`, so task traffic is
    /// accepted in FORWARD even where the host's policy is DROP (as on
    /// hosts with Docker).
    pub firewall: bool,
}

impl NetworkConfig {
    /// Defaults: bridge `ferry0`, subnet 198.18.0.0/16, state under `state_dir`.
    pub fn new(state_dir: &std::path::Path) -> Self {
        Self {
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            bridge: "ferry0".into(),
            subnet: "198.18.0.0/16".into(),
            ipam_dir: state_dir.join("cni/networks"),
            network_name: "ferry".into(),
            firewall: true,
        }
    }

    /// The firewall plugin's config, chained after bridge's `result`.
    fn firewall_conf(&self, prev: &serde_json::Value) -> serde_json::Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.network_name,
            "type": "firewall",
            "backend": "iptables",
            "prevResult": prev,
        })
    }

    fn bridge_conf(&self) -> serde_json::Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.network_name,
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir,
            }
        })
    }

    fn loopback_conf(&self) -> serde_json::Value {
        json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"})
    }
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
    /// bridge's ADD result: the firewall plugin's `prevResult` (CNI has no
    /// cache here, so the agent keeps it for DEL).
    result: Option<serde_json::Value>,
}

impl TaskNetwork {
    /// Creates the namespace `name` and attaches it (`CNI_CONTAINERID` =
    /// `container_id`). On failure everything done so far is undone.
    pub fn setup(
        cfg: &NetworkConfig,
        name: &str,
        container_id: &str,
    ) -> Result<Self, NetworkError> {
        Self::setup_in(cfg, netns::Netns::create(name)?, container_id)
    }

    /// [`TaskNetwork::setup`] in a namespace that already exists at
    /// `/run/netns/NAME` (a task's user namespace owns it: `userns`).
    pub fn setup_in(
        cfg: &NetworkConfig,
        ns: netns::Netns,
        container_id: &str,
    ) -> Result<Self, NetworkError> {
        let mut net = TaskNetwork {
            netns: ns,
            ip: String::new(),
            container_id: container_id.to_string(),
            cfg: cfg.clone(),
            result: None,
        };
        match net.attach() {
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

    /// bridge's CNI ADD result.
    pub fn cni_result(&self) -> Option<&serde_json::Value> {
        self.result.as_ref()
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

    fn attach(&mut self) -> Result<String, NetworkError> {
        self.call("ADD", &self.cfg.loopback_conf(), "lo")?;
        let res = self.call("ADD", &self.cfg.bridge_conf(), "eth0")?;
        self.result = Some(res.clone());
        if self.cfg.firewall {
            self.call("ADD", &self.cfg.firewall_conf(&res), "eth0")?;
        }
        cni::first_ipv4(&res).ok_or(NetworkError::NoAddress)
    }

    /// CNI DEL (releases the address, veth and masquerade rules), then
    /// deletes the namespace. Tries every step; returns the first error.
    pub fn teardown(&self) -> Result<(), NetworkError> {
        // Plugins are deleted in reverse order of ADD.
        let r0 = match (&self.result, self.cfg.firewall) {
            (Some(prev), true) => self
                .call("DEL", &self.cfg.firewall_conf(prev), "eth0")
                .map(|_| ()),
            _ => Ok(()),
        };
        let r1 = self.call("DEL", &self.cfg.bridge_conf(), "eth0");
        // loopback keeps no state outside the namespace; without it there
        // is nothing to delete (and the plugin would fail to enter it).
        let r2 = if self.netns.path().exists() {
            self.call("DEL", &self.cfg.loopback_conf(), "lo")
        } else {
            Ok(serde_json::Value::Null)
        };
        let r3 = self.netns.delete();
        r0?;
        r1?;
        r2?;
        r3?;
        Ok(())
    }
}
