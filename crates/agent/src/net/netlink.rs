//! The task's network made with rtnetlink requests from the agent itself:
//! the same interfaces, addresses and routes the CNI chain (loopback, ptp
//! with static IPAM, tuning for the MAC) leaves behind, without executing
//! a plugin (docs/runtime.md, "Task networking"). Requests go over two
//! netlink sockets, one opened in the host's namespace and one in the
//! task's (a socket stays in the namespace it was opened in), from a
//! short-lived thread that enters the task's namespace: `setns` changes
//! only the calling thread.
//!
//! What it leaves, for task address A in subnet S/P with gateway G:
//! - host: veth `HOST` (up) holding G/32, route `A/32 dev HOST scope host`,
//!   `net.ipv4.ip_forward=1`;
//! - task: `lo` up; `eth0` (the veth's peer, made in the namespace, the
//!   plan's MAC, up) holding A/P, routes `G dev eth0 scope link src A`,
//!   `S/P via G src A`, `default via G`.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkMessage};
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use ferry_proto::net::InterfacePlan;

/// The name of the task's interface inside its namespace.
pub const TASK_IFACE: &str = "eth0";

/// A failed netlink step.
#[derive(Debug, thiserror::Error)]
#[error("netlink: {step}: {why}")]
pub struct NetlinkError {
    step: &'static str,
    why: String,
}

fn fail<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> NetlinkError {
    move |e| NetlinkError {
        step,
        why: e.to_string(),
    }
}

/// The host-side interface name of task `task_id`: a fixed prefix (so
/// the firewall's FORWARD accepts can name every task interface at once)
/// and a digest of the task id (deterministic, so a restarted server
/// finds it; 14 characters, under the kernel's 15).
pub fn host_iface_name(task_id: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(task_id.as_bytes());
    format!("{HOST_IFACE_PREFIX}{}", hex::encode(&d[..6]))
}

/// Prefix of every host-side interface this driver makes.
pub const HOST_IFACE_PREFIX: &str = "fv";

/// Runs `f` with a netlink handle on a current-thread runtime.
fn with_handle<T>(
    f: impl AsyncFnOnce(&Handle) -> Result<T, NetlinkError>,
) -> Result<T, NetlinkError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(fail("starting the netlink runtime"))?;
    rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(fail("opening a netlink socket"))?;
        let task = tokio::spawn(conn);
        let r = f(&handle).await;
        task.abort();
        r
    })
}

async fn index_of(h: &Handle, name: &str) -> Result<u32, NetlinkError> {
    h.link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(fail("looking up an interface"))?
        .map(|m| m.header.index)
        .ok_or_else(|| NetlinkError {
            step: "looking up an interface",
            why: format!("no interface {name}"),
        })
}

/// Creates the veth pair (`host` in this namespace, `eth0` in the one at
/// `netns` with `plan`'s MAC) and configures both ends as ptp does. On
/// failure the caller deletes `host` ([`delete_host_iface`]).
pub fn setup(netns: &Path, host: &str, plan: &InterfacePlan) -> Result<(), NetlinkError> {
    let ns = File::open(netns).map_err(fail("opening the task's network namespace"))?;
    let mac = super::parse_mac(&plan.mac).ok_or_else(|| NetlinkError {
        step: "reading the plan's MAC",
        why: format!("{:?} is not a MAC address", plan.mac),
    })?;
    let (ip, gw, prefix) = (plan.ip, plan.gateway, plan.subnet_cidr.prefix());
    let subnet = plan.subnet_cidr.addr();
    enable_forwarding()?;
    // Host side first (this thread's namespace is the host's).
    with_handle(async |h| {
        // The peer is created in the task's namespace under its final
        // name and MAC: nothing to move or rename afterwards.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(TASK_IFACE.to_string())
            .address(mac.to_vec())
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let veth: LinkMessage = LinkVeth::new(host, TASK_IFACE)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .up()
            .build();
        h.link()
            .add(veth)
            .execute()
            .await
            .map_err(fail("creating the veth pair"))?;
        let idx = index_of(h, host).await?;
        h.address()
            .add(idx, IpAddr::V4(gw), 32)
            .execute()
            .await
            .map_err(fail("adding the gateway address to the host veth"))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(ip, 32)
            .output_interface(idx)
            .scope(RouteScope::Host)
            .protocol(RouteProtocol::Boot)
            .build();
        h.route()
            .add(route)
            .execute()
            .await
            .map_err(fail("adding the host route to the task"))
    })?;
    // Task side, from a thread inside the task's namespace.
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(fail("entering the task's network namespace"))?;
            with_handle(async |h| {
                let lo = index_of(h, "lo").await?;
                h.link()
                    .set(LinkUnspec::new_with_index(lo).up().build())
                    .execute()
                    .await
                    .map_err(fail("bringing lo up"))?;
                let idx = index_of(h, TASK_IFACE).await?;
                h.link()
                    .set(LinkUnspec::new_with_index(idx).up().build())
                    .execute()
                    .await
                    .map_err(fail("bringing eth0 up"))?;
                // No prefix route: ptp replaces it with one via the
                // gateway (below), so every packet goes through the host.
                let mut add = h.address().add(idx, IpAddr::V4(ip), prefix);
                add.message_mut()
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
                add.execute()
                    .await
                    .map_err(fail("adding the task's address"))?;
                let routes = [
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(gw, 32)
                        .output_interface(idx)
                        .scope(RouteScope::Link)
                        .pref_source(ip)
                        .protocol(RouteProtocol::Boot)
                        .build(),
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(subnet, prefix)
                        .output_interface(idx)
                        .gateway(gw)
                        .pref_source(ip)
                        .protocol(RouteProtocol::Boot)
                        .build(),
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .output_interface(idx)
                        .gateway(gw)
                        .protocol(RouteProtocol::Boot)
                        .build(),
                ];
                for r in routes {
                    h.route()
                        .add(r)
                        .execute()
                        .await
                        .map_err(fail("adding the task's routes"))?;
                }
                Ok(())
            })
        })
        .join()
        .map_err(|_| NetlinkError {
            step: "configuring the task's namespace",
            why: "the thread panicked".into(),
        })?
    })
}

/// Deletes the host-side veth (its peer goes with it, and with them the
/// addresses and routes). Absent is fine: teardown is idempotent.
pub fn delete_host_iface(host: &str) -> Result<(), NetlinkError> {
    with_handle(async |h| {
        let found = h
            .link()
            .get()
            .match_name(host.to_string())
            .execute()
            .try_next()
            .await;
        let idx = match found {
            Ok(Some(m)) => m.header.index,
            Ok(None) => return Ok(()),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.map(|c| c.get()) == Some(-enodev()) =>
            {
                return Ok(());
            }
            Err(e) => return Err(fail("looking up the host veth")(e)),
        };
        match h.link().del(idx).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.map(|c| c.get()) == Some(-enodev()) =>
            {
                Ok(())
            }
            Err(e) => Err(fail("deleting the host veth")(e)),
        }
    })
}

/// The iptables FORWARD accepts the CNI `firewall` plugin would add per
/// task, once for every interface this driver makes: everything from a
/// task, and replies to it (new connections to a task are the security
/// groups' to allow, in the nftables table). Only a host whose FORWARD
/// policy is DROP needs them; they are idempotent and left in place, as
/// the plugin's chains are.
pub fn ensure_forward_accepts() -> Result<(), NetlinkError> {
    let iface = format!("{HOST_IFACE_PREFIX}+");
    let comment = ["-m", "comment", "--comment", "ferry task network"];
    let rules: [Vec<&str>; 2] = [
        [&["-i", iface.as_str()][..], &comment[..], &["-j", "ACCEPT"]].concat(),
        [
            &["-o", iface.as_str()][..],
            &["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"],
            &comment[..],
            &["-j", "ACCEPT"],
        ]
        .concat(),
    ];
    // Check-then-insert is two commands: servers starting at once (one
    // host, several data dirs) take turns, or each inserts the rules.
    let lock = File::create("/run/ferry-forward-accepts.lock")
        .map_err(fail("opening the FORWARD rules' lock"))?;
    lock.lock().map_err(fail("locking the FORWARD rules"))?;
    for rule in rules {
        let run = |op: &str| {
            std::process::Command::new("iptables")
                .args(["-w", op, "FORWARD"])
                .args(&rule)
                .output()
        };
        let present = run("-C").map_err(fail("running iptables"))?;
        if present.status.success() {
            continue;
        }
        let out = run("-I").map_err(fail("running iptables"))?;
        if !out.status.success() {
            return Err(NetlinkError {
                step: "adding the FORWARD accepts for task interfaces",
                why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}

fn enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

/// Tasks are routed by the host (ptp sets the same).
fn enable_forwarding() -> Result<(), NetlinkError> {
    const F: &str = "/proc/sys/net/ipv4/ip_forward";
    let on = std::fs::read_to_string(F).map_err(fail("reading ip_forward"))?;
    if on.trim() != "1" {
        std::fs::write(F, "1").map_err(fail("enabling ip_forward"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_refuses() {
        assert_eq!(
            super::super::parse_mac("0a:1B:00:ff:10:02"),
            Some([0x0a, 0x1b, 0, 0xff, 0x10, 0x02])
        );
        for bad in [
            "",
            "0a:1b:00:ff:10",
            "0a:1b:00:ff:10:02:03",
            "0a:1b:0:ff:10:02",
            "zz:1b:00:ff:10:02",
            "+a:1b:00:ff:10:02",
        ] {
            assert!(super::super::parse_mac(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn host_names_fit_and_differ() {
        let a = host_iface_name("0123456789abcdef0123456789abcdef");
        let b = host_iface_name("0123456789abcdef0123456789abcdee");
        assert!(a.len() <= 15 && a.starts_with(HOST_IFACE_PREFIX), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, host_iface_name("0123456789abcdef0123456789abcdef"));
    }
}
