//! The security-group firewall of one server's task network: the current
//! [`FirewallRules`] (from the VPC service) and the member interfaces
//! (from the agent), rendered by [`super::nft`] into one nftables table
//! and applied as one `nft -f -` transaction on every change, so a change
//! is atomic. After a change, the tracked connections of every member
//! whose allowed traffic narrowed are deleted (`conntrack -D`), so the new
//! rules judge established connections too.
//!
//! Nothing is rendered until the first [`Firewall::set_rules`]: after a
//! server restart the previous server's table stays in force while tasks
//! are re-adopted (no window with no rules).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use ferry_proto::net::FirewallRules;

pub use super::nft::Member;
use super::nft::{self, Allowed};

/// Applying the firewall failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// `nft` could not run or refused the table.
    #[error("nft: {0}")]
    Nft(String),
    /// Deleting tracked connections failed (the table is applied).
    #[error("conntrack: {0}")]
    Conntrack(String),
    /// A member's interface name or MAC cannot be a firewall member.
    #[error("task {task}: {what}")]
    BadMember {
        /// The task.
        task: String,
        /// What is wrong.
        what: String,
    },
}

#[derive(Default)]
struct State {
    rules: Option<FirewallRules>,
    members: BTreeMap<String, Member>,
    /// What each member was allowed by the last applied table.
    applied: BTreeMap<String, Allowed>,
}

/// One server's firewall (table `inet NAME`). Share it (`Arc`).
pub struct Firewall {
    table: String,
    state: Mutex<State>,
}

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firewall")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Firewall {
    /// The firewall of table `inet TABLE` (the task network's name).
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_string(),
            state: Mutex::default(),
        }
    }

    /// The nftables table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Replaces the rules and applies the whole table (the first call
    /// after start is the first render).
    pub fn set_rules(&self, rules: &FirewallRules) -> Result<(), FirewallError> {
        let mut st = self.lock();
        st.rules = Some(rules.clone());
        self.apply(&mut st, &[], &[])
    }

    /// Adds (or replaces) a task's interface and applies the table if
    /// rules have been set. Connections tracked for its address (a stopped
    /// task's, on a reused address) are deleted.
    pub fn add_member(&self, m: Member) -> Result<(), FirewallError> {
        if !nft::valid_iface(&m.host_iface) {
            return Err(FirewallError::BadMember {
                task: m.task_id,
                what: format!("{:?} is not an interface name", m.host_iface),
            });
        }
        if !nft::valid_mac(&m.mac) {
            return Err(FirewallError::BadMember {
                task: m.task_id,
                what: format!("{:?} is not a MAC address", m.mac),
            });
        }
        let mut st = self.lock();
        let ip = m.ip;
        st.applied.remove(&m.task_id);
        st.members.insert(m.task_id.clone(), m);
        self.apply(&mut st, &[ip], &[])
    }

    /// Removes a task's interface (no-op if absent) and applies the table.
    pub fn remove_member(&self, task_id: &str) -> Result<(), FirewallError> {
        let mut st = self.lock();
        let Some(m) = st.members.remove(task_id) else {
            return Ok(());
        };
        st.applied.remove(task_id);
        // Its own flows: the address may be reused before its entries expire.
        self.apply(&mut st, &[m.ip], &[m.ip])
    }

    /// At a drained server's exit: deletes the table if no task is a
    /// member any more (nothing is left to protect, and a host should not
    /// keep a table per server that ever ran); returns whether it did.
    /// Later calls render nothing until [`Firewall::set_rules`].
    pub fn retire(&self) -> Result<bool, FirewallError> {
        let mut st = self.lock();
        if !st.members.is_empty() || st.rules.is_none() {
            return Ok(false);
        }
        delete_table(&self.table)?;
        st.rules = None;
        Ok(true)
    }

    /// The task ids of the current members.
    pub fn members(&self) -> Vec<String> {
        self.lock().members.keys().cloned().collect()
    }

    /// The table as it would be applied now (`None` before the first
    /// [`Firewall::set_rules`]).
    pub fn rendered(&self) -> Option<String> {
        let st = self.lock();
        let rules = st.rules.as_ref()?;
        Some(nft::render(&self.table, rules, &live_members(&st)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every
        // update is a single insert/remove before the apply).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renders and loads the table, then deletes the tracked connections
    /// of `flush` and of every member whose allowed traffic narrowed
    /// (`gone`: addresses of members that just left).
    fn apply(
        &self,
        st: &mut State,
        flush: &[std::net::Ipv4Addr],
        gone: &[std::net::Ipv4Addr],
    ) -> Result<(), FirewallError> {
        let Some(rules) = st.rules.clone() else {
            return Ok(());
        };
        let members = live_members(st);
        load(&nft::render(&self.table, &rules, &members))?;
        let mut ips: Vec<std::net::Ipv4Addr> = flush.to_vec();
        let mut applied = BTreeMap::new();
        let addrs = nft::group_addrs(&members);
        for m in &members {
            let now = nft::allowed(&rules, &addrs, m);
            // Only a narrowing needs the tracked flows judged again (a
            // peer joining a group widens; one leaving takes its flows).
            let narrowed = st
                .applied
                .get(&m.task_id)
                .is_none_or(|before| now.narrowed_from(before, gone));
            if narrowed {
                ips.push(m.ip);
            }
            applied.insert(m.task_id.clone(), now);
        }
        st.applied = applied;
        ips.sort();
        ips.dedup();
        let mut first_err = None;
        for ip in ips {
            if let Err(e) = delete_conntrack(ip) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Members whose host interface exists: the kernel refuses an ingress
/// hook on a missing device (a task whose veth went with its namespace is
/// about to be removed anyway, and a missing interface carries nothing).
fn live_members(st: &State) -> Vec<Member> {
    st.members
        .values()
        .filter(|m| {
            std::path::Path::new("/sys/class/net")
                .join(&m.host_iface)
                .exists()
        })
        .cloned()
        .collect()
}

fn load(text: &str) -> Result<(), FirewallError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| FirewallError::Nft(format!("running nft: {e} (install nftables)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| FirewallError::Nft(format!("writing the table: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| FirewallError::Nft(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Deletes the tracked connections from and to `ip`. conntrack exits 1
/// when nothing matched; that is success here.
fn delete_conntrack(ip: std::net::Ipv4Addr) -> Result<(), FirewallError> {
    for dir in ["--orig-src", "--orig-dst"] {
        let out = Command::new("conntrack")
            .args(["-D", dir, &ip.to_string()])
            .output()
            .map_err(|e| {
                FirewallError::Conntrack(format!("running conntrack: {e} (install conntrack)"))
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !stderr.contains("0 flow entries") {
            return Err(FirewallError::Conntrack(stderr.trim().to_string()));
        }
    }
    Ok(())
}

/// Deletes table `inet TABLE` if present (benchmarks and tests).
pub fn delete_table(table: &str) -> Result<(), FirewallError> {
    load(&format!(
        "table inet {table} {{}}\ndelete table inet {table}\n"
    ))
}
