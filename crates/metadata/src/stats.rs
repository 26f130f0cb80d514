//! `${URI}/stats` and `${URI}/task/stats`: Docker's stats document, read
//! from the container's cgroup (v1 hierarchies, or v2) and the task's
//! network namespace's `/proc/net/dev`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `USER_HZ`: the unit of `cpuacct.stat` and `/proc/stat` (100 on Linux).
const NS_PER_TICK: u64 = 10_000_000;

/// One container's stats in Docker's shape.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// When read (RFC 3339).
    pub read: String,
    /// When the previous reading (`precpu_stats`) was taken.
    pub preread: String,
    /// `pids_stats`.
    pub pids_stats: PidsStats,
    /// `blkio_stats`.
    pub blkio_stats: BlkioStats,
    /// Always 0 on Linux.
    pub num_procs: u64,
    /// Empty on Linux.
    pub storage_stats: BTreeMap<String, u64>,
    /// `cpu_stats`.
    pub cpu_stats: CpuStats,
    /// The previous request's `cpu_stats` (zero on the first).
    pub precpu_stats: CpuStats,
    /// `memory_stats`.
    pub memory_stats: MemoryStats,
    /// `/NAME`.
    pub name: String,
    /// The container's id.
    pub id: String,
    /// Per interface, without `lo` (as Docker).
    pub networks: BTreeMap<String, NetStats>,
}

/// `pids_stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PidsStats {
    /// Processes in the cgroup.
    pub current: u64,
}

/// `blkio_stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BlkioStats {
    /// Bytes per device and operation.
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations per device and operation.
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// Not measured.
    pub io_queue_recursive: Vec<BlkioEntry>,
    /// Not measured.
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// Not measured.
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// Not measured.
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// Not measured.
    pub io_time_recursive: Vec<BlkioEntry>,
    /// Not measured.
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// One `blkio_stats` row.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    /// Device major.
    pub major: u64,
    /// Device minor.
    pub minor: u64,
    /// `read`, `write`, `sync`, `async`, `discard` or `total`.
    pub op: String,
    /// Count.
    pub value: u64,
}

/// `cpu_stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuStats {
    /// `cpu_usage`.
    pub cpu_usage: CpuUsage,
    /// Host CPU time, ns (from `/proc/stat`).
    pub system_cpu_usage: u64,
    /// Online CPUs.
    pub online_cpus: u64,
    /// `throttling_data`.
    pub throttling_data: Throttling,
}

/// `cpu_stats.cpu_usage`, ns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUsage {
    /// Total.
    pub total_usage: u64,
    /// Per CPU (v1 only).
    pub percpu_usage: Vec<u64>,
    /// System time.
    pub usage_in_kernelmode: u64,
    /// User time.
    pub usage_in_usermode: u64,
}

/// `cpu_stats.throttling_data`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throttling {
    /// CFS periods.
    pub periods: u64,
    /// Throttled periods.
    pub throttled_periods: u64,
    /// Throttled time, ns.
    pub throttled_time: u64,
}

/// `memory_stats`, bytes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryStats {
    /// Current usage.
    pub usage: u64,
    /// Peak usage.
    pub max_usage: u64,
    /// `memory.stat`.
    pub stats: BTreeMap<String, u64>,
    /// The limit (the task's).
    pub limit: u64,
}

/// One interface's counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NetStats {
    /// Received bytes.
    pub rx_bytes: u64,
    /// Received packets.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Receive drops.
    pub rx_dropped: u64,
    /// Sent bytes.
    pub tx_bytes: u64,
    /// Sent packets.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Send drops.
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`; `lo` left out.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetStats> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let g = |i: usize| f.get(i).copied().unwrap_or(0);
        out.insert(
            name.to_owned(),
            NetStats {
                rx_bytes: g(0),
                rx_packets: g(1),
                rx_errors: g(2),
                rx_dropped: g(3),
                tx_bytes: g(8),
                tx_packets: g(9),
                tx_errors: g(10),
                tx_dropped: g(11),
            },
        );
    }
    out
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat).
fn kv(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn read_u64(p: &Path) -> u64 {
    fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn read_kv(p: &Path) -> BTreeMap<String, u64> {
    fs::read_to_string(p).map(|s| kv(&s)).unwrap_or_default()
}

/// v1 `blkio.throttle.io_service_bytes` / `io_serviced`: `MAJ:MIN Op N`
/// rows and a `Total N` row.
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let dev = it.next()?;
            let op = it.next()?;
            let value = it.next()?.parse().ok()?;
            let (maj, min) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: op.to_ascii_lowercase(),
                value,
            })
        })
        .collect()
}

/// v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..`. Returns
/// (bytes, ops) rows.
pub fn parse_io_stat_v2(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ops) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "read"),
                "wbytes" => (&mut bytes, "write"),
                "rios" => (&mut ops, "read"),
                "wios" => (&mut ops, "write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    (bytes, ops)
}

/// Host CPU time in ns (the `cpu` line of `/proc/stat`).
fn system_cpu_usage() -> u64 {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum::<u64>()
                * NS_PER_TICK
        })
        .unwrap_or(0)
}

fn online_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

/// Reads the cgroup `rel` (e.g. `ferry/TASK/NAME`): cpu, memory, pids,
/// blkio. `task_rel` is the task's cgroup, where the memory limit is.
pub fn read_cgroup(rel: &str, task_rel: &str) -> (CpuStats, MemoryStats, PidsStats, BlkioStats) {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        read_v2(&Path::new(CGROUP_ROOT).join(rel), task_rel)
    } else {
        read_v1(rel, task_rel)
    }
}

fn v1(ctrl: &str, rel: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(ctrl).join(rel)
}

fn read_v1(rel: &str, task_rel: &str) -> (CpuStats, MemoryStats, PidsStats, BlkioStats) {
    let acct = v1("cpuacct", rel);
    let st = read_kv(&acct.join("cpuacct.stat"));
    let percpu = fs::read_to_string(acct.join("cpuacct.usage_percpu"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let thr = read_kv(&v1("cpu", rel).join("cpu.stat"));
    let cpu = CpuStats {
        cpu_usage: CpuUsage {
            total_usage: read_u64(&acct.join("cpuacct.usage")),
            percpu_usage: percpu,
            usage_in_kernelmode: st.get("system").copied().unwrap_or(0) * NS_PER_TICK,
            usage_in_usermode: st.get("user").copied().unwrap_or(0) * NS_PER_TICK,
        },
        system_cpu_usage: system_cpu_usage(),
        online_cpus: online_cpus(),
        throttling_data: Throttling {
            periods: thr.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: thr.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: thr.get("throttled_time").copied().unwrap_or(0),
        },
    };
    let mem = v1("memory", rel);
    let memory = MemoryStats {
        usage: read_u64(&mem.join("memory.usage_in_bytes")),
        max_usage: read_u64(&mem.join("memory.max_usage_in_bytes")),
        stats: read_kv(&mem.join("memory.stat")),
        limit: read_u64(&v1("memory", task_rel).join("memory.limit_in_bytes")),
    };
    let pids = PidsStats {
        current: fs::read_to_string(v1("pids", rel).join("cgroup.procs"))
            .or_else(|_| fs::read_to_string(mem.join("cgroup.procs")))
            .map(|s| s.lines().count() as u64)
            .unwrap_or(0),
    };
    let blk = v1("blkio", rel);
    let read_rows = |f: &str| {
        fs::read_to_string(blk.join(f))
            .map(|s| parse_blkio_v1(&s))
            .unwrap_or_default()
    };
    let blkio = BlkioStats {
        io_service_bytes_recursive: read_rows("blkio.throttle.io_service_bytes_recursive"),
        io_serviced_recursive: read_rows("blkio.throttle.io_serviced_recursive"),
        ..BlkioStats::default()
    };
    (cpu, memory, pids, blkio)
}

fn read_v2(dir: &Path, task_rel: &str) -> (CpuStats, MemoryStats, PidsStats, BlkioStats) {
    let st = read_kv(&dir.join("cpu.stat"));
    let us = |k: &str| st.get(k).copied().unwrap_or(0) * 1000;
    let cpu = CpuStats {
        cpu_usage: CpuUsage {
            total_usage: us("usage_usec"),
            percpu_usage: Vec::new(),
            usage_in_kernelmode: us("system_usec"),
            usage_in_usermode: us("user_usec"),
        },
        system_cpu_usage: system_cpu_usage(),
        online_cpus: online_cpus(),
        throttling_data: Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: us("throttled_usec"),
        },
    };
    let limit = fs::read_to_string(Path::new(CGROUP_ROOT).join(task_rel).join("memory.max"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let memory = MemoryStats {
        usage: read_u64(&dir.join("memory.current")),
        max_usage: read_u64(&dir.join("memory.peak")),
        stats: read_kv(&dir.join("memory.stat")),
        limit,
    };
    let pids = PidsStats {
        current: read_u64(&dir.join("pids.current")),
    };
    let (bytes, ops) = fs::read_to_string(dir.join("io.stat"))
        .map(|s| parse_io_stat_v2(&s))
        .unwrap_or_default();
    let blkio = BlkioStats {
        io_service_bytes_recursive: bytes,
        io_serviced_recursive: ops,
        ..BlkioStats::default()
    };
    (cpu, memory, pids, blkio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_without_lo() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n";
        let m = parse_net_dev(text);
        assert_eq!(m.len(), 1);
        assert_eq!(
            m["eth0"],
            NetStats {
                rx_bytes: 5000,
                rx_packets: 40,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 3000,
                tx_packets: 30,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
    }

    #[test]
    fn blkio_rows() {
        let rows = parse_blkio_v1("8:0 Read 4096\n8:0 Write 8192\nTotal 12288\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].op, "write");
        assert_eq!(rows[1].value, 8192);
        let (b, o) = parse_io_stat_v2("259:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0\n");
        assert_eq!(b.len(), 2);
        assert_eq!(o[1].value, 2);
    }

    #[test]
    fn docker_field_names() {
        let (cpu, memory_stats, pids_stats, blkio_stats) =
            read_cgroup("no-such-cgroup/x", "no-such-cgroup");
        let s = Stats {
            read: "r".into(),
            preread: "p".into(),
            pids_stats,
            blkio_stats,
            num_procs: 0,
            storage_stats: BTreeMap::new(),
            precpu_stats: cpu.clone(),
            cpu_stats: cpu,
            memory_stats,
            name: "/web".into(),
            id: "abc-web".into(),
            networks: BTreeMap::new(),
        };
        let v = serde_json::to_value(&s).unwrap();
        for k in [
            "read",
            "preread",
            "pids_stats",
            "blkio_stats",
            "num_procs",
            "storage_stats",
            "cpu_stats",
            "precpu_stats",
            "memory_stats",
            "name",
            "id",
            "networks",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        for k in [
            "total_usage",
            "percpu_usage",
            "usage_in_kernelmode",
            "usage_in_usermode",
        ] {
            assert!(v["cpu_stats"]["cpu_usage"].get(k).is_some(), "{k}");
        }
        assert!(v["cpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0);
        for k in ["usage", "max_usage", "stats", "limit"] {
            assert!(v["memory_stats"].get(k).is_some(), "{k}");
        }
        assert!(v["blkio_stats"]["io_service_bytes_recursive"].is_array());
    }
}
