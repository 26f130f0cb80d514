//! The VPC state ([`Ec2`]): durable in the state store, live in memory, and
//! the typed in-process API RunTask and the task firewall use.
//!
//! Every change runs through [`Ec2::mutate`]: it applies the change to a
//! copy of the state, writes the records that differ in one store
//! transaction, and only then makes the copy current; if the firewall
//! rules differ, the listeners hear the new rules before the caller's
//! request returns.
//!
//! Replicas (a shared store, issue 19): memory is a cache then. Every read
//! first compares the tables' versions with what it loaded and reloads the
//! tables another process changed ([`Ec2::refresh`], one round trip when
//! nothing did). A change starts from the state as its write transaction
//! sees it (the versions are compared again inside it, where no other
//! writer can commit, and changed tables are read from it), so no replica
//! loses another's update. A thread polls the versions every second and
//! tells the listeners when another replica changed the rules, so this
//! host's firewall follows within a few seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use ferry_proto::net::{
    FirewallRules, GroupRules, InterfacePlan, Ipv4Cidr, Peer, Rule, Traffic, VpcNet,
};
use ferry_store::{Store, StoreError, WriteTxn};
use rand::Rng;
use serde::Serialize;

use crate::error::{AttachError, Ec2Error, ServiceEniError};
use crate::model::{
    ENIS, Eni, EniOwner, GROUPS, Group, GroupRule, RULES, RulePeer, SUBNETS, Subnet, VPCS, Vpc,
};

/// A listener for firewall rule changes.
type RulesListener = Arc<dyn Fn(&FirewallRules) + Send + Sync>;

/// Everything the service holds, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct State {
    pub vpcs: BTreeMap<String, Vpc>,
    pub subnets: BTreeMap<String, Subnet>,
    pub groups: BTreeMap<String, Group>,
    pub rules: BTreeMap<String, GroupRule>,
    pub enis: BTreeMap<String, Eni>,
}

/// The tables the state is made of, in the order of `Ec2::seen`.
const TABLES: [&str; 5] = [VPCS, SUBNETS, GROUPS, RULES, ENIS];

thread_local! {
    /// Set while this thread runs the rules listeners.
    static TELLING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How often a replica asks whether another one changed the tables (and
/// so, maybe, the firewall rules).
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// The VPC service's state and in-process API.
pub struct Ec2 {
    store: Arc<Store>,
    account: String,
    region: String,
    state: Mutex<State>,
    listeners: RwLock<Vec<RulesListener>>,
    /// Held by every change (and reload) until its listeners have run, so
    /// they hear changes in commit order. Taken before `state`.
    notify: Mutex<()>,
    /// Whether other processes write the store ([`Store::is_shared`]).
    shared: bool,
    /// The versions of [`TABLES`] the state reflects (shared store only).
    /// Changed under `notify` and `state`.
    seen: Mutex<[u64; 5]>,
    /// The rules the listeners heard last (shared store only: a reload
    /// tells them only what they have not heard).
    heard: Mutex<Option<FirewallRules>>,
}

/// What [`Ec2::attach`] is asked for: a task's `awsvpcConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// Subnet ids (at least one).
    pub subnets: Vec<String>,
    /// Security group ids; empty means the VPC's default group.
    pub security_groups: Vec<String>,
    /// The ENI's description (names the task's attachment).
    pub description: String,
}

/// What [`Ec2::attach_service`] is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEniRequest {
    /// The subnet.
    pub subnet_id: String,
    /// The address, if the caller chose one.
    pub ip: Option<Ipv4Addr>,
    /// Security group ids (at most five); empty means the VPC's default.
    pub security_groups: Vec<String>,
    /// The ENI's description.
    pub description: String,
    /// The service it is for.
    pub owner: EniOwner,
}

/// Most security groups an interface may have (EC2's default quota).
pub const MAX_GROUPS_PER_ENI: usize = 5;

/// The groups of a service ENI in `vpc`: those named (deduplicated,
/// existing, of `vpc`), or the VPC's default group.
fn service_groups(s: &State, vpc: &str, named: &[String]) -> Result<Vec<String>, ServiceEniError> {
    let named = dedup(named);
    if named.len() > MAX_GROUPS_PER_ENI {
        return Err(ServiceEniError::TooManyGroups(MAX_GROUPS_PER_ENI));
    }
    if named.is_empty() {
        return Ok(default_group_of(s, vpc).into_iter().collect());
    }
    let missing: Vec<String> = named
        .iter()
        .filter(|g| !s.groups.contains_key(**g))
        .map(|g| (*g).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(ServiceEniError::GroupNotFound(missing));
    }
    if let Some(g) = named
        .iter()
        .find(|g| s.groups.get(**g).is_some_and(|g| g.vpc_id != vpc))
    {
        return Err(ServiceEniError::GroupOfOtherVpc(
            (*g).to_owned(),
            vpc.to_owned(),
        ));
    }
    Ok(named.into_iter().map(str::to_owned).collect())
}

/// A new id: `prefix-` and 17 hex digits, as EC2's.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut r = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 18);
    s.push_str(prefix);
    s.push('-');
    for _ in 0..17 {
        let d: u32 = r.random_range(0..16);
        s.push(char::from_digit(d, 16).unwrap_or('0'));
    }
    s
}

/// A random locally administered, unicast MAC (`0a:..`).
fn new_mac() -> String {
    let mut b = [0u8; 5];
    rand::rng().fill(&mut b[..]);
    let mut s = String::from("0a");
    for x in b {
        s.push_str(&format!(":{x:02x}"));
    }
    s
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a change leaves the state as it was before (changes apply
    // to a copy), so a poisoned lock holds consistent state.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The three availability zones of `region`: `REGIONa`, `b`, `c`.
pub fn zones(region: &str) -> [String; 3] {
    ["a", "b", "c"].map(|z| format!("{region}{z}"))
}

/// The zone id of the `n`th zone (`use1-az1`): the region's parts
/// shortened as AWS shortens them (`us-east-1` → `use1`).
pub fn zone_id(region: &str, n: usize) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    let mut short = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i == 0 || p.bytes().all(|b| b.is_ascii_digit()) {
            short.push_str(p);
        } else if let Some(c) = p.chars().next() {
            short.push(c);
        }
    }
    format!("{short}-az{}", n + 1)
}

/// The addresses of `cidr` a task may not get: EC2 reserves the network
/// address, the next three (router, DNS, future) and the last.
pub const RESERVED_ADDRESSES: u64 = 5;

impl Ec2 {
    /// Opens the service over `store`; creates the default VPC (CIDR
    /// `default_vpc`, three default subnets, its default group) at the
    /// first start. A later start with another `default_vpc` keeps the
    /// stored one and logs a warning.
    pub fn open(
        store: Arc<Store>,
        account: &str,
        region: &str,
        default_vpc: Ipv4Cidr,
    ) -> Result<Arc<Ec2>, Ec2Error> {
        let shared = store.is_shared();
        // Read before the tables: what they load is at least this version.
        let seen = if shared {
            let v = store.versions(&TABLES)?;
            [v[0], v[1], v[2], v[3], v[4]]
        } else {
            [0; 5]
        };
        let state = State {
            vpcs: load(&store, VPCS)?,
            subnets: load(&store, SUBNETS)?,
            groups: load(&store, GROUPS)?,
            rules: load(&store, RULES)?,
            enis: load(&store, ENIS)?,
        };
        let heard = shared.then(|| render_rules(&state));
        let ec2 = Arc::new(Ec2 {
            store,
            account: account.to_owned(),
            region: region.to_owned(),
            state: Mutex::new(state),
            listeners: RwLock::new(Vec::new()),
            notify: Mutex::new(()),
            shared,
            seen: Mutex::new(seen),
            heard: Mutex::new(heard),
        });
        let existing = lock(&ec2.state)
            .vpcs
            .values()
            .find(|v| v.is_default)
            .map(|v| (v.id.clone(), v.cidr));
        match existing {
            Some((id, cidr)) if cidr != default_vpc => tracing::warn!(
                vpc = %id, stored = %cidr, configured = %default_vpc,
                "--task-subnet differs from the stored default VPC; keeping the stored default VPC"
            ),
            Some(_) => {}
            None => ec2.create_default_vpc(default_vpc)?,
        }
        if shared {
            ec2.spawn_poll()?;
        }
        Ok(ec2)
    }

    /// The thread that reloads what other replicas changed every
    /// [`POLL_EVERY`] and tells the listeners about changed rules; it ends
    /// with the service.
    fn spawn_poll(self: &Arc<Self>) -> Result<(), Ec2Error> {
        let weak: Weak<Ec2> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("ec2-poll".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(POLL_EVERY);
                    let Some(ec2) = weak.upgrade() else { return };
                    if let Err(e) = ec2.refresh() {
                        tracing::warn!(
                            "reloading the VPC state failed (tried again in a second): {e}"
                        );
                    }
                }
            })
            .map(|_| ())
            .map_err(|e| Ec2Error::Poll(e.to_string()))
    }

    /// With a shared store, reloads the tables another process changed
    /// since they were loaded (one round trip when none did), and tells the
    /// listeners if the firewall rules are not the ones they heard last. A
    /// no-op with the embedded store.
    pub fn refresh(&self) -> Result<(), StoreError> {
        // A listener reading the service while it is told (with `notify`
        // held) reads what it was told.
        if !self.shared || TELLING.with(std::cell::Cell::get) {
            return Ok(());
        }
        let v = self.store.versions(&TABLES)?;
        if lock(&self.seen)[..] == v[..] {
            return Ok(());
        }
        let _order = lock(&self.notify);
        // Changes and other reloads wait on `notify`: ask again.
        let v = self.store.versions(&TABLES)?;
        let seen = *lock(&self.seen);
        if seen[..] == v[..] {
            return Ok(());
        }
        let mut next = self.snapshot_unchecked();
        reload(&mut next, &seen, &v, |t| load_any(&self.store, t))?;
        let rules = render_rules(&next);
        *lock(&self.state) = next;
        *lock(&self.seen) = [v[0], v[1], v[2], v[3], v[4]];
        self.tell(rules);
        Ok(())
    }

    /// Tells the listeners `rules` unless they heard them last (shared
    /// store). Call with `notify` held.
    fn tell(&self, rules: FirewallRules) {
        {
            let mut heard = lock(&self.heard);
            if heard.as_ref() == Some(&rules) {
                return;
            }
            *heard = Some(rules.clone());
        }
        let listeners: Vec<RulesListener> = self
            .listeners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        /// Clears the flag however the listeners end.
        struct Told;
        impl Drop for Told {
            fn drop(&mut self) {
                TELLING.with(|t| t.set(false));
            }
        }
        TELLING.with(|t| t.set(true));
        let _told = Told;
        for l in listeners {
            l(&rules);
        }
    }

    /// [`Ec2::refresh`] for the in-process readers that cannot fail: they
    /// answer from what is loaded, and the failure is logged.
    fn refreshed(&self) {
        if let Err(e) = self.refresh() {
            tracing::warn!("reloading the VPC state failed; answering from memory: {e}");
        }
    }

    fn create_default_vpc(&self, cidr: Ipv4Cidr) -> Result<(), Ec2Error> {
        if !(8..=24).contains(&cidr.prefix()) {
            return Err(Ec2Error::DefaultVpc(format!(
                "{cidr} must have a prefix of 8 to 24 (its default subnets are 4 bits longer)"
            )));
        }
        let zones = zones(&self.region);
        self.mutate(|s| {
            // Another replica starting at the same time may have made it
            // (with a shared store `s` is what the transaction reads).
            if s.vpcs.values().any(|v| v.is_default) {
                return Ok(());
            }
            let vpc = new_id("vpc");
            s.vpcs.insert(
                vpc.clone(),
                Vpc {
                    id: vpc.clone(),
                    cidr,
                    cidr_association_id: new_id("vpc-cidr-assoc"),
                    is_default: true,
                    instance_tenancy: "default".into(),
                    tags: Vec::new(),
                },
            );
            let step = 1u64 << (32 - u32::from(cidr.prefix()) - 4);
            for (i, zone) in zones.iter().enumerate() {
                let Some(addr) = cidr.nth(step * i as u64) else {
                    continue;
                };
                let id = new_id("subnet");
                s.subnets.insert(
                    id.clone(),
                    Subnet {
                        id,
                        vpc_id: vpc.clone(),
                        cidr: Ipv4Cidr::new(addr, cidr.prefix() + 4),
                        availability_zone: zone.clone(),
                        default_for_az: true,
                        map_public_ip_on_launch: true,
                        tags: Vec::new(),
                    },
                );
            }
            add_default_group(s, &vpc);
            Ok::<_, Ec2Error>(())
        })
    }

    /// The account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A copy of the current state, for reading (the API refreshes once
    /// per call, before its handler).
    pub(crate) fn snapshot(&self) -> State {
        self.snapshot_unchecked()
    }

    fn snapshot_unchecked(&self) -> State {
        lock(&self.state).clone()
    }

    /// Reads the current state under the lock, reloaded first if another
    /// replica changed it.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.refreshed();
        f(&lock(&self.state))
    }

    /// Applies `f` to a copy of the state, persists what changed, makes it
    /// current and tells the listeners if the firewall rules changed. An
    /// error from `f` or the store changes nothing.
    pub(crate) fn mutate<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, E>,
    ) -> Result<R, E> {
        // Changes take the notify lock first, so listeners hear them in
        // commit order, and a listener that reads the state (which takes
        // only the state lock) never waits on a change waiting on it.
        let _order = lock(&self.notify);
        if self.shared {
            return self.mutate_shared(f);
        }
        let mut cur = lock(&self.state);
        let mut next = cur.clone();
        let r = f(&mut next)?;
        if next == *cur {
            return Ok(r);
        }
        self.store.write(|t| {
            sync(t, VPCS, &cur.vpcs, &next.vpcs)?;
            sync(t, SUBNETS, &cur.subnets, &next.subnets)?;
            sync(t, GROUPS, &cur.groups, &next.groups)?;
            sync(t, RULES, &cur.rules, &next.rules)?;
            sync(t, ENIS, &cur.enis, &next.enis)?;
            Ok::<_, StoreError>(())
        })?;
        // Only VPCs, subnets, groups and rules make the firewall rules: an
        // ENI's change (every task start and stop) renders nothing.
        let before = (cur.vpcs != next.vpcs
            || cur.subnets != next.subnets
            || cur.groups != next.groups
            || cur.rules != next.rules)
            .then(|| render_rules(&cur));
        *cur = next;
        let after = before.map(|b| (b, render_rules(&cur)));
        drop(cur);
        if let Some((before, after)) = after
            && before != after
        {
            let listeners: Vec<RulesListener> = self
                .listeners
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            for l in listeners {
                l(&after);
            }
        }
        Ok(r)
    }

    /// [`Ec2::mutate`] with a shared store: `f` changes the state as the
    /// write transaction sees it. Inside the transaction no other writer
    /// can commit, so the versions read there say whether memory is
    /// current; the tables it is not current in are read from the
    /// transaction. After the commit memory holds the new state, and the
    /// versions it reflects are the ones read plus this commit's (each
    /// written table's version grows by one per transaction; were it to
    /// grow otherwise, the next refresh would merely reload).
    fn mutate_shared<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut cur = lock(&self.state);
        let seen = *lock(&self.seen);
        let (r, base, next, v) = self.store.write(|t| {
            let v = self.store.versions(&TABLES)?;
            let mut base = cur.clone();
            reload(&mut base, &seen, &v, |table| load_in(t, table))?;
            let mut next = base.clone();
            let r = f(&mut next)?;
            sync(t, VPCS, &base.vpcs, &next.vpcs)?;
            sync(t, SUBNETS, &base.subnets, &next.subnets)?;
            sync(t, GROUPS, &base.groups, &next.groups)?;
            sync(t, RULES, &base.rules, &next.rules)?;
            sync(t, ENIS, &base.enis, &next.enis)?;
            Ok::<_, E>((r, base, next, v))
        })?;
        let written = [
            base.vpcs != next.vpcs,
            base.subnets != next.subnets,
            base.groups != next.groups,
            base.rules != next.rules,
            base.enis != next.enis,
        ];
        let mut now = [v[0], v[1], v[2], v[3], v[4]];
        for (n, w) in now.iter_mut().zip(written) {
            *n += u64::from(w);
        }
        let rules_changed = written[..4].iter().any(|w| *w);
        *cur = next;
        *lock(&self.seen) = now;
        let rules = rules_changed.then(|| render_rules(&cur));
        drop(cur);
        if let Some(rules) = rules {
            self.tell(rules);
        }
        Ok(r)
    }

    /// Every VPC (its subnets' CIDRs) and every group with its rules.
    pub fn firewall_rules(&self) -> FirewallRules {
        self.read(render_rules)
    }

    /// Registers `f`, called with the new rules after every committed
    /// change that alters [`Ec2::firewall_rules`], before the request that
    /// made it returns. Calls are in commit order; `f` may read this
    /// service but must not change it.
    pub fn on_rules_changed(&self, f: Box<dyn Fn(&FirewallRules) + Send + Sync>) {
        self.listeners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::from(f));
    }

    /// [`Ec2::on_rules_changed`] without a gap: `first` gets the current
    /// rules (its error is returned), then `then` hears every change after
    /// them. Both happen under the lock listeners are told under, so no
    /// change (another replica's, heard by the poll) falls between.
    pub fn follow_rules<E>(
        &self,
        first: impl FnOnce(&FirewallRules) -> Result<(), E>,
        then: Box<dyn Fn(&FirewallRules) + Send + Sync>,
    ) -> Result<(), E> {
        self.refreshed();
        let _order = lock(&self.notify);
        let rules = render_rules(&lock(&self.state));
        first(&rules)?;
        if self.shared {
            *lock(&self.heard) = Some(rules);
        }
        self.listeners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::from(then));
        Ok(())
    }

    /// Every subnet, by id (the console's run form offers them).
    pub fn subnets(&self) -> Vec<Subnet> {
        self.read(|s| s.subnets.values().cloned().collect())
    }

    /// Every security group, by id.
    pub fn groups(&self) -> Vec<Group> {
        self.read(|s| s.groups.values().cloned().collect())
    }

    /// The default VPC's first default subnet (zone `a`, or the first
    /// left) and its default security group; empty strings if gone.
    pub fn default_network(&self) -> (String, String) {
        self.read(|s| {
            let Some(vpc) = s.vpcs.values().find(|v| v.is_default) else {
                return (String::new(), String::new());
            };
            let subnet = s
                .subnets
                .values()
                .filter(|n| n.vpc_id == vpc.id)
                .min_by_key(|n| (!n.default_for_az, n.availability_zone.clone(), n.cidr))
                .map(|n| n.id.clone())
                .unwrap_or_default();
            (subnet, default_group_of(s, &vpc.id).unwrap_or_default())
        })
    }

    /// Checks a task's network configuration as [`Ec2::attach`] would,
    /// allocating nothing (CreateService, RunTask before its first task).
    pub fn check(&self, req: &AttachRequest) -> Result<(), AttachError> {
        self.read(|s| resolve(s, req).map(|_| ()))
    }

    /// Validates and allocates one ENI for a task (see [`AttachRequest`]):
    /// the named subnet with the most free addresses, its lowest free
    /// address (a freed one is reused at once), a random `0a:` MAC.
    pub fn attach(&self, req: &AttachRequest) -> Result<InterfacePlan, AttachError> {
        self.mutate(|s| {
            let (vpc, subnets, groups) = resolve(s, req)?;
            // Most free addresses first; the order given breaks ties.
            let mut best: Option<(&Subnet, u64)> = None;
            for n in &subnets {
                let free = available(s, n);
                if best.is_none_or(|(_, f)| free > f) {
                    best = Some((n, free));
                }
            }
            let Some((subnet, _)) = best else {
                return Err(AttachError::NoSubnets);
            };
            let Some(ip) = lowest_free(s, subnet) else {
                return Err(AttachError::NoFreeAddress(subnet.id.clone()));
            };
            let eni = Eni {
                id: new_id("eni"),
                vpc_id: vpc.clone(),
                subnet_id: subnet.id.clone(),
                ip,
                mac: new_mac(),
                groups,
                description: req.description.clone(),
                attachment_id: new_id("eni-attach"),
                attached_at: time::OffsetDateTime::now_utc().unix_timestamp(),
                tags: Vec::new(),
                owner: EniOwner::Task,
            };
            let plan = InterfacePlan {
                eni_id: eni.id.clone(),
                vpc_id: vpc,
                subnet_id: subnet.id.clone(),
                subnet_cidr: subnet.cidr,
                ip,
                gateway: subnet.cidr.nth(1).unwrap_or(subnet.cidr.addr()),
                mac: eni.mac.clone(),
                security_groups: eni.groups.clone(),
                availability_zone: subnet.availability_zone.clone(),
            };
            s.enis.insert(eni.id.clone(), eni);
            Ok(plan)
        })
    }

    /// Allocates an ENI for another service (an EFS mount target) in
    /// `req.subnet`: the address asked for, or the lowest free one; the
    /// groups named, or the VPC's default group.
    pub fn attach_service(&self, req: &ServiceEniRequest) -> Result<Eni, ServiceEniError> {
        self.mutate(|s| {
            let subnet = s
                .subnets
                .get(&req.subnet_id)
                .ok_or_else(|| ServiceEniError::SubnetNotFound(req.subnet_id.clone()))?
                .clone();
            let groups = service_groups(s, &subnet.vpc_id, &req.security_groups)?;
            let ip = match req.ip {
                Some(ip) => {
                    let usable = (4..subnet.cidr.size().saturating_sub(1))
                        .filter_map(|o| subnet.cidr.nth(o))
                        .any(|a| a == ip);
                    if !usable {
                        return Err(ServiceEniError::AddressNotInSubnet(
                            ip,
                            subnet.id.clone(),
                            subnet.cidr.to_string(),
                        ));
                    }
                    if used(s, &subnet.id).contains(&ip) {
                        return Err(ServiceEniError::AddressInUse(ip, subnet.id.clone()));
                    }
                    ip
                }
                None => lowest_free(s, &subnet)
                    .ok_or_else(|| ServiceEniError::NoFreeAddress(subnet.id.clone()))?,
            };
            let eni = Eni {
                id: new_id("eni"),
                vpc_id: subnet.vpc_id.clone(),
                subnet_id: subnet.id.clone(),
                ip,
                mac: new_mac(),
                groups,
                description: req.description.clone(),
                attachment_id: new_id("ela-attach"),
                attached_at: time::OffsetDateTime::now_utc().unix_timestamp(),
                tags: Vec::new(),
                owner: req.owner,
            };
            s.enis.insert(eni.id.clone(), eni.clone());
            Ok(eni)
        })
    }

    /// Replaces the security groups of an ENI another service made
    /// (ModifyMountTargetSecurityGroups); returns the groups it now has.
    pub fn set_groups(
        &self,
        eni_id: &str,
        groups: &[String],
    ) -> Result<Vec<String>, ServiceEniError> {
        self.mutate(|s| {
            let vpc = s
                .enis
                .get(eni_id)
                .map(|e| e.vpc_id.clone())
                .ok_or_else(|| ServiceEniError::EniNotFound(eni_id.to_owned()))?;
            let groups = service_groups(s, &vpc, groups)?;
            if let Some(e) = s.enis.get_mut(eni_id) {
                e.groups = groups.clone();
            }
            Ok(groups)
        })
    }

    /// An ENI, if it exists.
    pub fn eni(&self, eni_id: &str) -> Option<Eni> {
        self.read(|s| s.enis.get(eni_id).cloned())
    }

    /// A subnet, if it exists.
    pub fn subnet(&self, subnet_id: &str) -> Option<Subnet> {
        self.read(|s| s.subnets.get(subnet_id).cloned())
    }

    /// Releases an ENI and its address; releasing one that is gone is not
    /// an error.
    pub fn detach(&self, eni_id: &str) -> Result<(), Ec2Error> {
        self.mutate(|s| {
            s.enis.remove(eni_id);
            Ok::<_, Ec2Error>(())
        })
    }

    /// After a restart: releases every task ENI whose id `keep` does not
    /// accept (other services' ENIs are theirs to release); returns their
    /// ids.
    pub fn release_unless(&self, keep: &dyn Fn(&str) -> bool) -> Result<Vec<String>, Ec2Error> {
        self.mutate(|s| {
            let gone: Vec<String> = s
                .enis
                .values()
                .filter(|e| e.owner == EniOwner::Task && !keep(&e.id))
                .map(|e| e.id.clone())
                .collect();
            for id in &gone {
                s.enis.remove(id);
            }
            Ok::<_, Ec2Error>(gone)
        })
    }
}

/// The VPC, the named subnets and the groups (the VPC's default group when
/// none is named) of a task's network configuration, or why it is refused.
fn resolve<'s>(
    s: &'s State,
    req: &AttachRequest,
) -> Result<(String, Vec<&'s Subnet>, Vec<String>), AttachError> {
    if req.subnets.is_empty() {
        return Err(AttachError::NoSubnets);
    }
    let missing: Vec<String> = dedup(&req.subnets)
        .into_iter()
        .filter(|id| !s.subnets.contains_key(*id))
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        return Err(AttachError::SubnetNotFound(missing));
    }
    let missing: Vec<String> = dedup(&req.security_groups)
        .into_iter()
        .filter(|id| !s.groups.contains_key(*id))
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        return Err(AttachError::GroupNotFound(missing));
    }
    let subnets: Vec<&Subnet> = dedup(&req.subnets)
        .into_iter()
        .filter_map(|id| s.subnets.get(id))
        .collect();
    let Some(vpc) = subnets.first().map(|n| n.vpc_id.clone()) else {
        return Err(AttachError::NoSubnets);
    };
    if subnets.iter().any(|n| n.vpc_id != vpc)
        || req
            .security_groups
            .iter()
            .filter_map(|g| s.groups.get(g))
            .any(|g| g.vpc_id != vpc)
    {
        return Err(AttachError::NotOneVpc);
    }
    let groups: Vec<String> = if req.security_groups.is_empty() {
        default_group_of(s, &vpc).into_iter().collect()
    } else {
        dedup(&req.security_groups)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    Ok((vpc, subnets, groups))
}

fn dedup(ids: &[String]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    ids.iter()
        .map(String::as_str)
        .filter(|id| seen.insert(*id))
        .collect()
}

fn load<T: serde::de::DeserializeOwned>(
    store: &Store,
    table: &str,
) -> Result<BTreeMap<String, T>, StoreError> {
    Ok(store.scan::<T>(table, "")?.into_iter().collect())
}

/// One table's records, read by `scan` (the store, or a transaction).
enum Loaded {
    Vpcs(BTreeMap<String, Vpc>),
    Subnets(BTreeMap<String, Subnet>),
    Groups(BTreeMap<String, Group>),
    Rules(BTreeMap<String, GroupRule>),
    Enis(BTreeMap<String, Eni>),
}

/// Reads `table` from the store.
fn load_any(store: &Store, table: &str) -> Result<Loaded, StoreError> {
    Ok(match table {
        VPCS => Loaded::Vpcs(load(store, table)?),
        SUBNETS => Loaded::Subnets(load(store, table)?),
        GROUPS => Loaded::Groups(load(store, table)?),
        RULES => Loaded::Rules(load(store, table)?),
        _ => Loaded::Enis(load(store, table)?),
    })
}

/// Reads `table` as the write transaction `t` sees it.
fn load_in(t: &WriteTxn<'_>, table: &str) -> Result<Loaded, StoreError> {
    fn m<T: serde::de::DeserializeOwned>(
        t: &WriteTxn<'_>,
        table: &str,
    ) -> Result<BTreeMap<String, T>, StoreError> {
        Ok(t.scan::<T>(table, "")?.into_iter().collect())
    }
    Ok(match table {
        VPCS => Loaded::Vpcs(m(t, table)?),
        SUBNETS => Loaded::Subnets(m(t, table)?),
        GROUPS => Loaded::Groups(m(t, table)?),
        RULES => Loaded::Rules(m(t, table)?),
        _ => Loaded::Enis(m(t, table)?),
    })
}

/// Replaces the tables of `s` whose version `now` differs from `seen`
/// with what `read` gives.
fn reload(
    s: &mut State,
    seen: &[u64; 5],
    now: &[u64],
    mut read: impl FnMut(&str) -> Result<Loaded, StoreError>,
) -> Result<(), StoreError> {
    for (i, table) in TABLES.iter().enumerate() {
        if seen.get(i) == now.get(i) {
            continue;
        }
        match read(table)? {
            Loaded::Vpcs(m) => s.vpcs = m,
            Loaded::Subnets(m) => s.subnets = m,
            Loaded::Groups(m) => s.groups = m,
            Loaded::Rules(m) => s.rules = m,
            Loaded::Enis(m) => s.enis = m,
        }
    }
    Ok(())
}

/// Writes the records of `next` that differ from `cur`, deletes the gone.
fn sync<T: Serialize + PartialEq>(
    t: &mut WriteTxn<'_>,
    table: &str,
    cur: &BTreeMap<String, T>,
    next: &BTreeMap<String, T>,
) -> Result<(), StoreError> {
    for (k, v) in next {
        if cur.get(k) != Some(v) {
            t.put(table, k, v)?;
        }
    }
    for k in cur.keys() {
        if !next.contains_key(k) {
            t.delete(table, k)?;
        }
    }
    Ok(())
}

/// Adds a VPC's `default` group: all inbound from its own members, all
/// outbound.
pub(crate) fn add_default_group(s: &mut State, vpc: &str) -> String {
    let id = new_id("sg");
    s.groups.insert(
        id.clone(),
        Group {
            id: id.clone(),
            vpc_id: vpc.to_owned(),
            name: "default".into(),
            description: "default VPC security group".into(),
            tags: Vec::new(),
        },
    );
    add_rule(s, &id, false, RulePeer::Group(id.clone()));
    add_rule(
        s,
        &id,
        true,
        RulePeer::Cidr(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0)),
    );
    id
}

/// Adds an all-traffic rule.
pub(crate) fn add_rule(s: &mut State, group: &str, is_egress: bool, peer: RulePeer) {
    let id = new_id("sgr");
    s.rules.insert(
        id.clone(),
        GroupRule {
            id,
            group_id: group.to_owned(),
            is_egress,
            protocol: "-1".into(),
            from_port: -1,
            to_port: -1,
            peer,
            description: None,
            tags: Vec::new(),
        },
    );
}

/// The id of `vpc`'s default group.
pub(crate) fn default_group_of(s: &State, vpc: &str) -> Option<String> {
    s.groups
        .values()
        .find(|g| g.vpc_id == vpc && g.name == "default")
        .map(|g| g.id.clone())
}

/// Addresses in use in `subnet`.
fn used(s: &State, subnet: &str) -> BTreeSet<Ipv4Addr> {
    s.enis
        .values()
        .filter(|e| e.subnet_id == subnet)
        .map(|e| e.ip)
        .collect()
}

/// `AvailableIpAddressCount`: the size less the five reserved, less the
/// ENIs in use.
pub(crate) fn available(s: &State, subnet: &Subnet) -> u64 {
    subnet
        .cidr
        .size()
        .saturating_sub(RESERVED_ADDRESSES)
        .saturating_sub(used(s, &subnet.id).len() as u64)
}

fn lowest_free(s: &State, subnet: &Subnet) -> Option<Ipv4Addr> {
    let used = used(s, &subnet.id);
    (4..subnet.cidr.size().saturating_sub(1))
        .filter_map(|o| subnet.cidr.nth(o))
        .find(|ip| !used.contains(ip))
}

/// The firewall view of `s`.
fn render_rules(s: &State) -> FirewallRules {
    let vpcs = s
        .vpcs
        .values()
        .map(|v| VpcNet {
            vpc_id: v.id.clone(),
            subnets: s
                .subnets
                .values()
                .filter(|n| n.vpc_id == v.id)
                .map(|n| n.cidr)
                .collect(),
        })
        .collect();
    let groups = s
        .groups
        .values()
        .map(|g| {
            let rules = |egress: bool| {
                s.rules
                    .values()
                    .filter(|r| r.group_id == g.id && r.is_egress == egress)
                    .filter_map(to_rule)
                    .collect()
            };
            GroupRules {
                group_id: g.id.clone(),
                vpc_id: g.vpc_id.clone(),
                ingress: rules(false),
                egress: rules(true),
            }
        })
        .collect();
    FirewallRules { vpcs, groups }
}

/// One stored rule as the data plane sees it.
pub(crate) fn to_rule(r: &GroupRule) -> Option<Rule> {
    let port = |p: i32| u16::try_from(p).ok();
    let icmp = |p: i32| u8::try_from(p).ok();
    let traffic = match r.protocol.as_str() {
        "-1" => Traffic::All,
        "tcp" => Traffic::Tcp {
            from: port(r.from_port)?,
            to: port(r.to_port)?,
        },
        "udp" => Traffic::Udp {
            from: port(r.from_port)?,
            to: port(r.to_port)?,
        },
        "icmp" => Traffic::Icmp {
            icmp_type: icmp(r.from_port),
            code: icmp(r.to_port),
        },
        n => Traffic::Protocol(n.parse().ok()?),
    };
    let peer = match &r.peer {
        RulePeer::Cidr(c) => Peer::Cidr(*c),
        RulePeer::Group(g) => Peer::Group(g.clone()),
    };
    Some(Rule { traffic, peer })
}
