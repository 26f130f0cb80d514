//! Placement: which live host runs a new task.
//!
//! A host can take a task when the task's CPU units and memory fit in what
//! the host may promise (its size times its overcommit ratio) less what
//! its unfinished tasks hold (their [`Reservation`]s), and, for a host
//! with `--subnet`, when one of the task's subnets lies inside the host's
//! block. Among those, the task goes to the host with the largest free
//! share (the smaller of its free CPU and free memory, each as a share of
//! what it may promise), so hosts fill evenly whatever their sizes; ties
//! go to the host with the fewest tasks, then to the first by name.
//!
//! [`tasks::launch`](crate::tasks::launch) chooses twice: outside the
//! store's write transaction, to know which subnets the task's ENI may be
//! made in (a host's subnet), and again inside the transaction that
//! records the task, against the reservations as they are then (writers
//! are serialized, across replicas too): the choice and the reservation
//! are one atomic step.

use std::collections::HashMap;

use ferry_proto::net::Ipv4Cidr;
use ferry_store::{LeaseInfo, WriteTxn};

use super::{HOST_LEASE_PREFIX, HostRecord, Reservation, lease_name};
use crate::db;
use crate::error::EcsError;
use crate::leader::Leader;
use crate::model::task::TaskRecord;
use crate::service::Core;
use crate::wire::Failure;

/// What a task needs of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Task-level CPU units.
    pub cpu: u64,
    /// Task-level memory, MiB.
    pub memory: u64,
}

impl Demand {
    /// What the task of `plan` needs.
    pub fn of(plan: &ferry_proto::plan::TaskPlan) -> Self {
        Self {
            cpu: u64::from(plan.cpu_units),
            memory: u64::from(plan.memory_mib),
        }
    }
}

/// A host as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its name.
    pub name: String,
    /// CPU units it may promise.
    pub cpu_capacity: u64,
    /// MiB it may promise.
    pub memory_capacity: u64,
    /// CPU units its unfinished tasks hold.
    pub cpu_used: u64,
    /// MiB its unfinished tasks hold.
    pub memory_used: u64,
    /// Its unfinished tasks.
    pub tasks: u32,
    /// Its `--subnet`.
    pub subnet: Option<Ipv4Cidr>,
    /// Whether it is this process's own host.
    pub local: bool,
    /// Whether its agent is a remote `ferry agent` (it cannot give a task
    /// role sessions, secrets or EFS mounts yet).
    pub remote: bool,
    /// Its liveness lease as seen before the transaction (`None` without
    /// a fleet: the local host is alive by definition).
    lease: Option<LeaseInfo>,
    /// Found dead inside the transaction.
    dead: bool,
}

impl Candidate {
    fn free_cpu(&self) -> u64 {
        self.cpu_capacity.saturating_sub(self.cpu_used)
    }

    fn free_memory(&self) -> u64 {
        self.memory_capacity.saturating_sub(self.memory_used)
    }

    /// The smaller of its free CPU and free memory, as shares.
    fn free_share(&self) -> f64 {
        let share = |free: u64, cap: u64| {
            if cap == 0 {
                0.0
            } else {
                free as f64 / cap as f64
            }
        };
        share(self.free_cpu(), self.cpu_capacity)
            .min(share(self.free_memory(), self.memory_capacity))
    }

    /// Whether the task may have its ENI in a subnet of `cidr`.
    pub fn serves(&self, cidr: &Ipv4Cidr) -> bool {
        self.subnet.is_none_or(|s| s.covers(cidr))
    }
}

/// Why a task fits on no host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No host is live.
    NoHost,
    /// Live hosts exist, but none may take this task (none serves its
    /// subnets, holds its file systems, or gives what it needs).
    NotServed,
    /// No host that may take it has the CPU units free; the most any has.
    Cpu {
        /// The most free CPU units of any host that may take it.
        most_free: u64,
    },
    /// Some have the CPU units, none of those the memory.
    Memory {
        /// The most free MiB of any host with the CPU units.
        most_free: u64,
    },
}

/// The `failures` reason when no host has the CPU (ECS's).
pub const NO_CPU: &str = "RESOURCE:CPU";
/// The `failures` reason when no host has the memory (ECS's).
pub const NO_MEMORY: &str = "RESOURCE:MEMORY";

impl Refusal {
    /// RunTask's failure for a task needing `d` (no ARN: the task was
    /// never made), and a service's event detail.
    pub fn failure(&self, d: Demand, subnets: &[String]) -> Failure {
        let (reason, detail) = match self {
            Refusal::NoHost => (
                NO_CPU,
                format!(
                    "No host can run the task ({} CPU units, {} MiB): no ferry host is live (each server without --no-agent is a host while it heartbeats).",
                    d.cpu, d.memory
                ),
            ),
            Refusal::NotServed => (
                crate::tasks::NO_ADDRESS,
                format!(
                    "No live host may take the task (subnets {}): a host started with --subnet runs only tasks whose subnet lies inside its block, a task that mounts an EFS file system runs only on the host the file system lives on, and a task with a task role, secrets or repository credentials only on a server's own host (not a remote agent).",
                    subnets.join(", ")
                ),
            ),
            Refusal::Cpu { most_free } => (
                NO_CPU,
                format!(
                    "No host has {} CPU units free for the task; the most any live host has free is {most_free} (its size times --cpu-overcommit, less its tasks').",
                    d.cpu
                ),
            ),
            Refusal::Memory { most_free } => (
                NO_MEMORY,
                format!(
                    "No host has {} MiB of memory free for the task; the most any live host with the CPU has free is {most_free} MiB (its size times --memory-overcommit, less its tasks').",
                    d.memory
                ),
            ),
        };
        Failure {
            arn: None,
            reason: reason.into(),
            detail: Some(detail),
        }
    }
}

/// The best host for `d` among `hosts` that `accept` lets take it.
pub fn choose(
    hosts: &[Candidate],
    d: Demand,
    accept: &dyn Fn(&Candidate) -> bool,
) -> Result<usize, Refusal> {
    let alive: Vec<usize> = (0..hosts.len()).filter(|&i| !hosts[i].dead).collect();
    if alive.is_empty() {
        return Err(Refusal::NoHost);
    }
    let accepted: Vec<usize> = alive.into_iter().filter(|&i| accept(&hosts[i])).collect();
    if accepted.is_empty() {
        return Err(Refusal::NotServed);
    }
    let with_cpu: Vec<usize> = accepted
        .iter()
        .copied()
        .filter(|&i| hosts[i].free_cpu() >= d.cpu)
        .collect();
    if with_cpu.is_empty() {
        let most_free = accepted.iter().map(|&i| hosts[i].free_cpu()).max();
        return Err(Refusal::Cpu {
            most_free: most_free.unwrap_or(0),
        });
    }
    let fits: Vec<usize> = with_cpu
        .iter()
        .copied()
        .filter(|&i| hosts[i].free_memory() >= d.memory)
        .collect();
    let best = fits.into_iter().max_by(|&a, &b| {
        let (ha, hb) = (&hosts[a], &hosts[b]);
        ha.free_share()
            .total_cmp(&hb.free_share())
            .then(hb.tasks.cmp(&ha.tasks))
            .then(hb.name.cmp(&ha.name))
    });
    best.ok_or_else(|| Refusal::Memory {
        most_free: with_cpu
            .iter()
            .map(|&i| hosts[i].free_memory())
            .max()
            .unwrap_or(0),
    })
}

/// The hosts a launch may use, with what they hold.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// The candidates.
    pub hosts: Vec<Candidate>,
}

impl Fleet {
    /// The fleet as it is now (outside a transaction): registered hosts
    /// with a live lease (without a fleet: the local host only).
    pub fn load(core: &Core) -> Result<Self, EcsError> {
        let records: Vec<HostRecord> = core
            .store
            .scan::<HostRecord>(db::HOSTS, "")?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let held = core.store.scan::<Reservation>(db::PLACEMENTS, "")?;
        let leases = if core.cfg.fleet {
            Some(core.store.leases(HOST_LEASE_PREFIX)?)
        } else {
            None
        };
        Ok(Self::build(core, records, held, leases.as_deref()))
    }

    /// The fleet inside a write transaction: the reservations as they are
    /// now, the liveness as it was seen in `before` (confirmed per chosen
    /// host by [`Fleet::pick`]).
    pub fn load_in(core: &Core, w: &WriteTxn<'_>, before: &Fleet) -> Result<Self, EcsError> {
        let records: Vec<HostRecord> = w
            .scan::<HostRecord>(db::HOSTS, "")?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let held = w.scan::<Reservation>(db::PLACEMENTS, "")?;
        let leases: Option<Vec<LeaseInfo>> = core.cfg.fleet.then(|| {
            before
                .hosts
                .iter()
                .filter_map(|h| h.lease.clone())
                .collect()
        });
        Ok(Self::build(core, records, held, leases.as_deref()))
    }

    fn build(
        core: &Core,
        records: Vec<HostRecord>,
        held: Vec<(String, Reservation)>,
        leases: Option<&[LeaseInfo]>,
    ) -> Self {
        let local = core.cfg.host.as_ref();
        let records: Vec<HostRecord> = match leases {
            // One process: its own host is the fleet (what it registered,
            // or its configuration if the record is not there yet).
            None => local
                .map(|cfg| {
                    records
                        .into_iter()
                        .find(|r| r.name == cfg.name)
                        .unwrap_or_else(|| HostRecord::of(cfg, &core.local.instance))
                })
                .into_iter()
                .collect(),
            Some(_) => records,
        };
        let live: HashMap<&str, &LeaseInfo> = leases
            .unwrap_or_default()
            .iter()
            .filter(|l| l.live)
            .filter_map(|l| Some((l.name.strip_prefix(HOST_LEASE_PREFIX)?, l)))
            .collect();
        let mut hosts: Vec<Candidate> = records
            .into_iter()
            .filter_map(|r| {
                let lease = match leases {
                    None => None,
                    Some(_) => Some((*live.get(r.name.as_str())?).clone()),
                };
                Some(Candidate {
                    cpu_capacity: r.cpu_capacity(),
                    memory_capacity: r.memory_capacity(),
                    cpu_used: 0,
                    memory_used: 0,
                    tasks: 0,
                    subnet: r.subnet,
                    local: local.is_some_and(|c| c.name == r.name),
                    remote: r.agent == super::REMOTE_AGENT,
                    name: r.name,
                    lease,
                    dead: false,
                })
            })
            .collect();
        let index: HashMap<String, usize> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        for (key, r) in held {
            let Some(&i) = key.split_once('/').and_then(|(h, _)| index.get(h)) else {
                continue;
            };
            let h = &mut hosts[i];
            h.cpu_used += r.cpu;
            h.memory_used += r.memory;
            h.tasks += 1;
        }
        Self { hosts }
    }

    /// Counts `d` against host `i`.
    pub fn take(&mut self, i: usize, d: Demand) {
        let h = &mut self.hosts[i];
        h.cpu_used += d.cpu;
        h.memory_used += d.memory;
        h.tasks += 1;
    }

    /// Whether any candidate has a `--subnet` (the task's subnets' blocks
    /// are needed then).
    pub fn restricts_subnets(&self) -> bool {
        self.hosts.iter().any(|h| h.subnet.is_some())
    }

    /// The index of host `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// Inside the write transaction: `prefer` (the host chosen before the
    /// transaction) if it still fits, else the best host; each choice's
    /// lease is confirmed in the transaction (a host that died since is
    /// passed over).
    pub fn pick(
        &mut self,
        w: &WriteTxn<'_>,
        d: Demand,
        prefer: Option<&str>,
        accept: &dyn Fn(&Candidate) -> bool,
    ) -> Result<Result<usize, Refusal>, EcsError> {
        let mut prefer = prefer.and_then(|p| self.find(p));
        loop {
            let choice = match prefer.take() {
                Some(i)
                    if !self.hosts[i].dead
                        && accept(&self.hosts[i])
                        && self.hosts[i].free_cpu() >= d.cpu
                        && self.hosts[i].free_memory() >= d.memory =>
                {
                    Ok(i)
                }
                _ => choose(&self.hosts, d, accept),
            };
            let Ok(i) = choice else { return Ok(choice) };
            let alive = match &self.hosts[i].lease {
                None => true,
                Some(l) => w.holds_lease(&lease_name(&self.hosts[i].name), &l.holder, l.epoch)?,
            };
            if alive {
                return Ok(Ok(i));
            }
            self.hosts[i].dead = true;
        }
    }
}

/// Rebuilds every reservation from the task records (the source of
/// truth): at a single-host start (records from before hosts have none)
/// and at the start of each scheduler term in a fleet, so a reservation
/// that drifted cannot hold capacity for long. Returns how many.
pub fn rebuild(core: &Core, leader: &Leader) -> Result<usize, EcsError> {
    core.store.write(|w| {
        leader.check(w)?;
        for (k, _) in w.scan::<Reservation>(db::PLACEMENTS, "")? {
            w.delete(db::PLACEMENTS, &k)?;
        }
        let mut n = 0;
        for (key, t) in w.scan::<TaskRecord>(db::TASKS, "")? {
            let host = core.host_of(&t);
            if !super::holds_capacity(&t) || host.is_empty() {
                continue;
            }
            w.put(
                db::PLACEMENTS,
                &db::placement_key(host, &key),
                &Reservation::of(&t),
            )?;
            n += 1;
        }
        Ok(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, cpu: u64, mem: u64) -> Candidate {
        Candidate {
            name: name.into(),
            cpu_capacity: cpu,
            memory_capacity: mem,
            cpu_used: 0,
            memory_used: 0,
            tasks: 0,
            subnet: None,
            local: false,
            remote: false,
            lease: None,
            dead: false,
        }
    }

    const SMALL: Demand = Demand {
        cpu: 256,
        memory: 512,
    };

    #[test]
    fn tasks_spread_to_the_freest_host_then_fewest_tasks_then_name() {
        let mut f = Fleet {
            hosts: vec![host("b", 4096, 8192), host("a", 4096, 8192)],
        };
        let mut placed = Vec::new();
        for _ in 0..6 {
            let i = choose(&f.hosts, SMALL, &|_| true).unwrap();
            f.take(i, SMALL);
            placed.push(f.hosts[i].name.clone());
        }
        // Ties go to the name first: a, then b, and so on.
        assert_eq!(placed, ["a", "b", "a", "b", "a", "b"]);
        // A bigger host takes more, in proportion.
        let mut f = Fleet {
            hosts: vec![host("big", 8192, 16384), host("small", 2048, 4096)],
        };
        let mut on_big = 0;
        for _ in 0..10 {
            let i = choose(&f.hosts, SMALL, &|_| true).unwrap();
            f.take(i, SMALL);
            on_big += usize::from(f.hosts[i].name == "big");
        }
        assert_eq!(on_big, 8);
    }

    #[test]
    fn the_scarcer_resource_decides_and_refusals_name_it() {
        let mut a = host("a", 1024, 1024);
        a.cpu_used = 1000;
        let mut b = host("b", 1024, 1024);
        b.memory_used = 1000;
        let hosts = vec![a, b];
        assert_eq!(
            choose(&hosts, SMALL, &|_| true),
            Err(Refusal::Memory { most_free: 24 })
        );
        let d = Demand {
            cpu: 2048,
            memory: 1,
        };
        assert_eq!(
            choose(&hosts, d, &|_| true),
            Err(Refusal::Cpu { most_free: 1024 })
        );
        let f = Refusal::Cpu { most_free: 1024 }.failure(d, &[]);
        assert_eq!((f.reason.as_str(), f.arn), ("RESOURCE:CPU", None));
        assert!(f.detail.unwrap().contains("2048 CPU units"));
        let f = Refusal::Memory { most_free: 24 }.failure(SMALL, &[]);
        assert_eq!(f.reason, "RESOURCE:MEMORY");
        assert!(f.detail.unwrap().contains("512 MiB"));
        assert_eq!(choose(&[], SMALL, &|_| true), Err(Refusal::NoHost));
        assert_eq!(choose(&hosts, SMALL, &|_| false), Err(Refusal::NotServed));
    }

    #[test]
    fn a_host_with_a_subnet_serves_only_subnets_inside_it() {
        let mut h = host("a", 1024, 1024);
        h.subnet = Some("10.1.0.0/16".parse().unwrap());
        assert!(h.serves(&"10.1.2.0/24".parse().unwrap()));
        assert!(!h.serves(&"10.2.0.0/24".parse().unwrap()));
        assert!(!h.serves(&"10.0.0.0/8".parse().unwrap()));
        assert!(host("b", 1, 1).serves(&"10.0.0.0/8".parse().unwrap()));
    }
}
