//! Rendering the security-group firewall as one nftables table (text for
//! `nft -f -`). Pure: no I/O, so the rules can be checked in unit tests;
//! [`super::firewall`] applies the text.
//!
//! The table `inet NAME` (one per server; NAME is the task network's name)
//! judges only packets that enter or leave through a member's host-side
//! interface; everything else is accepted here (other tables, e.g. another
//! server's, judge it on their own; a drop anywhere is final). See
//! docs/runtime.md, "Task networking", for each rule's reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ferry_proto::net::{FirewallRules, Ipv4Cidr, Peer, Rule, Traffic};

/// One task interface the firewall protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The task id.
    pub task_id: String,
    /// The host side of the task's veth pair (from the CNI result).
    pub host_iface: String,
    /// The task's address.
    pub ip: Ipv4Addr,
    /// The task interface's MAC (lower-case `aa:bb:..`).
    pub mac: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its security groups.
    pub groups: Vec<String>,
}

/// Whether `s` is a Linux interface name that is safe to quote in nft
/// text (1-15 characters of `[A-Za-z0-9_.-]`).
pub fn valid_iface(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Whether `s` is a MAC as `aa:bb:cc:dd:ee:ff` (hex, either case).
pub fn valid_mac(s: &str) -> bool {
    super::parse_mac(s).is_some()
}

/// What one member is allowed: its egress and ingress matches with every
/// group resolved to its members' addresses (one entry per address), and
/// its VPC's networks. When a member's allowed traffic narrows
/// ([`Allowed::narrowed_from`]), its tracked connections are flushed so
/// the new rules judge them; when it only widens (a peer joined a group),
/// nothing needs flushing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allowed {
    egress: BTreeSet<String>,
    ingress: BTreeSet<String>,
    vpc: BTreeSet<String>,
    other_vpcs: BTreeSet<String>,
}

struct Names {
    groups: BTreeMap<String, usize>,
    vpcs: BTreeMap<String, usize>,
}

impl Names {
    fn new(rules: &FirewallRules, members: &[&Member]) -> Self {
        let mut groups = BTreeSet::new();
        let mut vpcs = BTreeSet::new();
        for g in &rules.groups {
            groups.insert(g.group_id.clone());
            vpcs.insert(g.vpc_id.clone());
            for r in g.ingress.iter().chain(&g.egress) {
                if let Peer::Group(p) = &r.peer {
                    groups.insert(p.clone());
                }
            }
        }
        for v in &rules.vpcs {
            vpcs.insert(v.vpc_id.clone());
        }
        for m in members {
            vpcs.insert(m.vpc_id.clone());
            groups.extend(m.groups.iter().cloned());
        }
        let index = |s: BTreeSet<String>| s.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
        Names {
            groups: index(groups),
            vpcs: index(vpcs),
        }
    }
}

/// The nft match of a rule's traffic, or `None` if it can match nothing
/// (a port range with from > to).
fn traffic(t: &Traffic) -> Option<String> {
    let ports = |proto: &str, from: u16, to: u16| {
        (from <= to).then(|| {
            if from == to {
                format!("{proto} dport {from}")
            } else {
                format!("{proto} dport {from}-{to}")
            }
        })
    };
    match *t {
        Traffic::All => Some(String::new()),
        Traffic::Tcp { from, to } => ports("tcp", from, to),
        Traffic::Udp { from, to } => ports("udp", from, to),
        Traffic::Icmp { icmp_type, code } => Some(match (icmp_type, code) {
            (None, None) => "meta l4proto icmp".into(),
            (Some(t), None) => format!("icmp type {t}"),
            (None, Some(c)) => format!("icmp code {c}"),
            (Some(t), Some(c)) => format!("icmp type {t} icmp code {c}"),
        }),
        Traffic::Protocol(p) => Some(format!("meta l4proto {p}")),
    }
}

/// `dir` is `saddr` (ingress: the peer is the source) or `daddr`.
fn rule_line(r: &Rule, dir: &str, names: &Names) -> Option<String> {
    let peer = match &r.peer {
        Peer::Cidr(c) if c.prefix() == 0 => String::new(),
        Peer::Cidr(c) => format!("ip {dir} {c} "),
        Peer::Group(g) => format!("ip {dir} @g{} ", names.groups.get(g)?),
    };
    let t = traffic(&r.traffic)?;
    let line = format!("{peer}{t}");
    Some(line.trim_end().to_string())
}

fn elements(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }};", v.join(", "))
    }
}

/// The members' group sets: group id → member addresses.
pub type GroupAddrs<'a> = BTreeMap<&'a str, BTreeSet<Ipv4Addr>>;

/// The group sets of `members` (computed once per render or apply).
pub fn group_addrs<'a>(members: impl IntoIterator<Item = &'a Member>) -> GroupAddrs<'a> {
    let mut out = GroupAddrs::new();
    for m in members {
        for g in &m.groups {
            out.entry(g.as_str()).or_default().insert(m.ip);
        }
    }
    out
}

fn vpc_nets<'a>(rules: &'a FirewallRules, vpc: &str) -> impl Iterator<Item = &'a Ipv4Cidr> {
    rules
        .vpcs
        .iter()
        .filter(move |v| v.vpc_id == vpc)
        .flat_map(|v| v.subnets.iter())
}

/// What `m` is allowed under `rules` with the members' group sets
/// `addrs` ([`group_addrs`]; see [`Allowed`]).
pub fn allowed(rules: &FirewallRules, addrs: &GroupAddrs<'_>, m: &Member) -> Allowed {
    let resolve = |r: &Rule| -> Vec<String> {
        let peer = match &r.peer {
            Peer::Cidr(c) => c.to_string(),
            Peer::Group(g) => {
                let t = traffic(&r.traffic);
                return addrs
                    .get(g.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|ip| Some(format!("{} {ip}/32", t.clone()?)))
                    .collect();
            }
        };
        traffic(&r.traffic)
            .map(|t| format!("{t} {peer}"))
            .into_iter()
            .collect()
    };
    let mut a = Allowed::default();
    for g in rules
        .groups
        .iter()
        .filter(|g| m.groups.contains(&g.group_id))
    {
        a.egress.extend(g.egress.iter().flat_map(resolve));
        a.ingress.extend(g.ingress.iter().flat_map(resolve));
    }
    for v in &rules.vpcs {
        let nets = v.subnets.iter().map(|c| c.to_string());
        if v.vpc_id == m.vpc_id {
            a.vpc.extend(nets);
        } else {
            a.other_vpcs.extend(nets);
        }
    }
    a
}

impl Allowed {
    /// Whether `self` allows less than `before` did: something allowed
    /// before is not now. Entries naming only an address in `gone` (a
    /// member that left: nothing of it is left to talk to) do not count.
    pub fn narrowed_from(&self, before: &Allowed, gone: &[Ipv4Addr]) -> bool {
        let departed = |e: &String| gone.iter().any(|ip| e.ends_with(&format!(" {ip}/32")));
        let lost = |old: &BTreeSet<String>, new: &BTreeSet<String>| {
            old.iter().any(|e| !new.contains(e) && !departed(e))
        };
        lost(&before.egress, &self.egress)
            || lost(&before.ingress, &self.ingress)
            || lost(&before.vpc, &self.vpc)
            || !self.other_vpcs.is_subset(&before.other_vpcs)
    }
}

/// The whole table `inet NAME` as one `nft -f` transaction that replaces
/// any table of that name atomically (create if missing, delete, create
/// full). Members whose interface name or MAC is not safe to render are
/// left out (the caller refuses them before they get here).
pub fn render(table: &str, rules: &FirewallRules, members: &[Member]) -> String {
    let members: Vec<&Member> = members
        .iter()
        .filter(|m| valid_iface(&m.host_iface) && valid_mac(&m.mac))
        .collect();
    let names = Names::new(rules, &members);
    let mut t = String::new();
    // `writeln!` to a String cannot fail.
    macro_rules! w {
        ($($a:tt)*) => { let _ = writeln!(t, $($a)*); };
    }
    w!("table inet {table} {{}}");
    w!("delete table inet {table}");
    w!("table inet {table} {{");
    let quoted = |m: &&Member| format!("\"{}\"", m.host_iface);
    w!(
        "\tset ifaces {{ type ifname;{} }}",
        elements(members.iter().map(quoted))
    );
    w!(
        "\tset addrs {{ type ipv4_addr;{} }}",
        elements(members.iter().map(|m| m.ip.to_string()))
    );
    w!(
        "\tset ids {{ type ifname . ether_addr . ipv4_addr;{} }}",
        elements(members.iter().map(|m| format!(
            "\"{}\" . {} . {}",
            m.host_iface,
            m.mac.to_lowercase(),
            m.ip
        )))
    );
    w!(
        "\tset vpcs {{ type ipv4_addr; flags interval; auto-merge;{} }}",
        elements(
            rules
                .vpcs
                .iter()
                .flat_map(|v| v.subnets.iter())
                .map(|c| c.to_string())
                .collect::<BTreeSet<_>>()
        )
    );
    for (vpc, i) in &names.vpcs {
        w!(
            "\tset vpc{i} {{ type ipv4_addr; flags interval; auto-merge;{} }}",
            elements(
                vpc_nets(rules, vpc)
                    .map(|c| c.to_string())
                    .collect::<BTreeSet<_>>()
            )
        );
        w!(
            "\tset vif{i} {{ type ifname;{} }}",
            elements(members.iter().filter(|m| &m.vpc_id == vpc).map(quoted))
        );
    }
    let addrs = group_addrs(members.iter().copied());
    for (g, i) in &names.groups {
        w!(
            "\tset g{i} {{ type ipv4_addr;{} }}",
            elements(
                addrs
                    .get(g.as_str())
                    .into_iter()
                    .flatten()
                    .map(|a| a.to_string())
            )
        );
    }
    // Anti-spoofing, at the interface's ingress (before routing, for
    // every protocol): only IPv4 and ARP with the member's own MAC and
    // address pass; IPv6 and anything else is dropped.
    if !members.is_empty() {
        w!("\tchain antispoof {{");
        w!(
            "\t\ttype filter hook ingress devices = {{ {} }} priority -450; policy drop;",
            members.iter().map(quoted).collect::<Vec<_>>().join(", ")
        );
        w!("\t\tmeta protocol ip iifname . ether saddr . ip saddr @ids accept");
        w!(
            "\t\tmeta protocol arp iifname . ether saddr . arp saddr ip @ids iifname . arp saddr ether . arp saddr ip @ids accept"
        );
        w!("\t}}");
    }
    w!("\tchain forward {{");
    w!("\t\ttype filter hook forward priority filter; policy accept;");
    // Established flows first: the one rule most packets meet. (No IPv6
    // flow to or from a member is ever established: see below and the
    // anti-spoofing chain.)
    w!("\t\tct state established,related accept");
    w!("\t\tiifname != @ifaces oifname != @ifaces accept");
    w!("\t\tmeta nfproto != ipv4 drop");
    w!("\t\tct state invalid drop");
    if !members.is_empty() {
        let vmap = |prefix: &str| {
            members
                .iter()
                .enumerate()
                .map(|(i, m)| format!("\"{}\" : jump {prefix}{i}", m.host_iface))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // A new flow leaving a member must pass its egress rules, then
        // (when it goes to a member) the destination's ingress rules.
        w!("\t\tiifname vmap {{ {} }}", vmap("eg"));
        w!("\t\toifname vmap {{ {} }}", vmap("in"));
    }
    w!("\t}}");
    for (i, m) in members.iter().enumerate() {
        let v = names.vpcs.get(&m.vpc_id).copied().unwrap_or(usize::MAX);
        let groups: Vec<_> = rules
            .groups
            .iter()
            .filter(|g| m.groups.contains(&g.group_id))
            .collect();
        for (chain, dir, other_if) in [("eg", "daddr", "oifname"), ("in", "saddr", "iifname")] {
            w!("\tchain {chain}{i} {{");
            // Different VPCs never talk, whatever a rule says.
            w!("\t\t{other_if} @ifaces {other_if} != @vif{v} drop");
            w!("\t\tip {dir} @vpcs ip {dir} != @vpc{v} drop");
            let mut lines = BTreeSet::new();
            for g in &groups {
                let rs = if chain == "eg" { &g.egress } else { &g.ingress };
                lines.extend(rs.iter().filter_map(|r| rule_line(r, dir, &names)));
            }
            for l in lines {
                if l.is_empty() {
                    w!("\t\treturn");
                } else {
                    w!("\t\t{l} return");
                }
            }
            w!("\t\tdrop");
            w!("\t}}");
        }
    }
    // The host's own services: a member may answer the host, never open
    // a connection to it.
    w!("\tchain input {{");
    w!("\t\ttype filter hook input priority filter; policy accept;");
    w!("\t\tiifname != @ifaces accept");
    w!("\t\tct state established,related accept");
    w!("\t\tdrop");
    w!("\t}}");
    // Egress to outside the VPCs leaves with the host's address; flows
    // inside VPCs keep their source, so rules see (and tasks get) the
    // real peer.
    w!("\tchain postrouting {{");
    w!("\t\ttype nat hook postrouting priority srcnat; policy accept;");
    w!("\t\tip saddr @addrs ip daddr != @vpcs masquerade");
    w!("\t}}");
    w!("}}");
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::net::{GroupRules, VpcNet};

    fn allowed_among(rules: &FirewallRules, members: &[Member], m: &Member) -> Allowed {
        allowed(rules, &group_addrs(members), m)
    }

    fn member(id: &str, n: u8, groups: &[&str], vpc: &str) -> Member {
        Member {
            task_id: id.into(),
            host_iface: format!("veth{id}"),
            ip: Ipv4Addr::new(10, 0, 1, n),
            mac: format!("0a:00:00:00:00:{n:02x}"),
            vpc_id: vpc.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn rules() -> FirewallRules {
        FirewallRules {
            vpcs: vec![
                VpcNet {
                    vpc_id: "vpc-a".into(),
                    subnets: vec![
                        "10.0.1.0/24".parse().unwrap(),
                        "10.0.2.0/24".parse().unwrap(),
                    ],
                },
                VpcNet {
                    vpc_id: "vpc-b".into(),
                    subnets: vec!["10.9.0.0/24".parse().unwrap()],
                },
            ],
            groups: vec![
                GroupRules {
                    group_id: "sg-a".into(),
                    vpc_id: "vpc-a".into(),
                    ingress: vec![],
                    egress: vec![Rule {
                        traffic: Traffic::All,
                        peer: Peer::Cidr("0.0.0.0/0".parse().unwrap()),
                    }],
                },
                GroupRules {
                    group_id: "sg-b".into(),
                    vpc_id: "vpc-a".into(),
                    ingress: vec![
                        Rule {
                            traffic: Traffic::Tcp { from: 80, to: 80 },
                            peer: Peer::Group("sg-a".into()),
                        },
                        Rule {
                            traffic: Traffic::Udp { from: 53, to: 60 },
                            peer: Peer::Cidr("192.168.0.0/16".parse().unwrap()),
                        },
                        Rule {
                            traffic: Traffic::Icmp {
                                icmp_type: Some(8),
                                code: None,
                            },
                            peer: Peer::Group("sg-b".into()),
                        },
                        Rule {
                            traffic: Traffic::Tcp { from: 9, to: 1 },
                            peer: Peer::Group("sg-a".into()),
                        },
                    ],
                    egress: vec![],
                },
            ],
        }
    }

    #[test]
    fn renders_groups_rules_and_isolation() {
        let ms = [
            member("a", 4, &["sg-a"], "vpc-a"),
            member("b", 5, &["sg-b"], "vpc-a"),
        ];
        let t = render("ferry0", &rules(), &ms);
        let has = |s: &str| assert!(t.contains(s), "missing {s:?} in:\n{t}");
        has("table inet ferry0 {}\ndelete table inet ferry0\ntable inet ferry0 {\n");
        has(
            "set ids { type ifname . ether_addr . ipv4_addr; elements = { \"vetha\" . 0a:00:00:00:00:04 . 10.0.1.4, \"vethb\" . 0a:00:00:00:00:05 . 10.0.1.5 }; }",
        );
        // Group sets: g0 = sg-a, g1 = sg-b.
        has("set g0 { type ipv4_addr; elements = { 10.0.1.4 }; }");
        has("set g1 { type ipv4_addr; elements = { 10.0.1.5 }; }");
        has(
            "set vpc0 { type ipv4_addr; flags interval; auto-merge; elements = { 10.0.1.0/24, 10.0.2.0/24 }; }",
        );
        has("set vif0 { type ifname; elements = { \"vetha\", \"vethb\" }; }");
        has("iifname vmap { \"vetha\" : jump eg0, \"vethb\" : jump eg1 }");
        has("oifname vmap { \"vetha\" : jump in0, \"vethb\" : jump in1 }");
        // a: egress anywhere, no ingress.
        has(
            "\tchain eg0 {\n\t\toifname @ifaces oifname != @vif0 drop\n\t\tip daddr @vpcs ip daddr != @vpc0 drop\n\t\treturn\n\t\tdrop\n\t}",
        );
        has(
            "\tchain in0 {\n\t\tiifname @ifaces iifname != @vif0 drop\n\t\tip saddr @vpcs ip saddr != @vpc0 drop\n\t\tdrop\n\t}",
        );
        // b: tcp 80 from sg-a, udp 53-60 from a CIDR, echo from its own
        // group; the empty port range is left out; no egress.
        has("\t\tip saddr @g0 tcp dport 80 return\n");
        has("\t\tip saddr 192.168.0.0/16 udp dport 53-60 return\n");
        has("\t\tip saddr @g1 icmp type 8 return\n");
        assert!(!t.contains("dport 9-1"), "{t}");
        has(
            "\tchain eg1 {\n\t\toifname @ifaces oifname != @vif0 drop\n\t\tip daddr @vpcs ip daddr != @vpc0 drop\n\t\tdrop\n\t}",
        );
        has("priority -450; policy drop;");
        has(
            "policy accept;\n\t\tct state established,related accept\n\t\tiifname != @ifaces oifname != @ifaces accept\n\t\tmeta nfproto != ipv4 drop\n\t\tct state invalid drop",
        );
        has(
            "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tiifname != @ifaces accept\n\t\tct state established,related accept\n\t\tdrop\n\t}",
        );
        has("ip saddr @addrs ip daddr != @vpcs masquerade");
    }

    #[test]
    fn no_members_renders_no_device_chain_and_unsafe_members_are_left_out() {
        let t = render("ferry0", &FirewallRules::default(), &[]);
        assert!(!t.contains("antispoof") && !t.contains("vmap"), "{t}");
        let mut m = member("a", 4, &["sg-a"], "vpc-a");
        m.host_iface = "x\"; flush ruleset".into();
        let t = render("ferry0", &rules(), &[m]);
        assert!(!t.contains("flush"), "{t}");
        assert!(valid_mac("0A:00:00:00:00:ff") && !valid_mac("0a:00:00:00:00"));
        assert!(valid_iface("veth1234abcd") && !valid_iface("veth with space"));
    }

    #[test]
    fn allowed_changes_when_a_rule_or_a_group_member_goes() {
        let a = member("a", 4, &["sg-a"], "vpc-a");
        let b = member("b", 5, &["sg-b"], "vpc-a");
        let ms = [a.clone(), b.clone()];
        let before = allowed_among(&rules(), &ms, &b);
        let mut r = rules();
        r.groups[1].ingress.remove(0);
        assert_ne!(allowed_among(&r, &ms, &b), before);
        // a's own rules did not change.
        assert_eq!(allowed_among(&r, &ms, &a), allowed_among(&rules(), &ms, &a));
        // b's sg-a peer set shrinks when a leaves.
        assert_ne!(
            allowed_among(&rules(), std::slice::from_ref(&b), &b),
            before
        );
    }

    #[test]
    fn only_a_narrowing_needs_a_flush() {
        let a = member("a", 4, &["sg-a"], "vpc-a");
        let b = member("b", 5, &["sg-b"], "vpc-a");
        let a2 = member("a2", 6, &["sg-a"], "vpc-a");
        let before = allowed_among(&rules(), &[a.clone(), b.clone()], &b);
        // A peer joining sg-a widens what b admits: nothing to flush.
        let joined = allowed_among(&rules(), &[a.clone(), b.clone(), a2.clone()], &b);
        assert!(!joined.narrowed_from(&before, &[]));
        // The same peer leaving again narrows, but only by its own address.
        let left = allowed_among(&rules(), &[a.clone(), b.clone()], &b);
        assert!(left.narrowed_from(&joined, &[]));
        assert!(!left.narrowed_from(&joined, &[a2.ip]));
        // A revoked rule narrows.
        let mut r = rules();
        r.groups[1].ingress.remove(1);
        assert!(allowed_among(&r, &[a.clone(), b.clone()], &b).narrowed_from(&before, &[]));
        // Another VPC appearing narrows (its networks are now refused).
        let mut r = rules();
        r.vpcs.push(VpcNet {
            vpc_id: "vpc-c".into(),
            subnets: vec!["10.8.0.0/24".parse().unwrap()],
        });
        assert!(allowed_among(&r, &[a, b.clone()], &b).narrowed_from(&before, &[]));
    }
}
