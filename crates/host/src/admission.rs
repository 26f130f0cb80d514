//! Admission by free space: whether the host's disk can back a task's
//! ephemeral storage.
//!
//! A task's volume is a sparse image on the data directory's file system;
//! it takes host space only as the task writes. So the host promises each
//! running task the part of its volume it has not written yet, and a new
//! task is admitted when everything promised, its own size included, fits
//! in the free space less the reserve kept for ferry's own state, times the
//! operator's overcommit ratio (1.0: every task can fill its volume; more:
//! the bet that tasks write less than they ask for). See
//! `docs/volume-engine.md`, "A full disk".

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// The default overcommit ratio (see `docs/volume-engine.md`): volumes are
/// sparse, and tasks rarely write their whole 20 GiB.
pub const DEFAULT_OVERCOMMIT: f64 = 16.0;

/// The space kept free for ferry's own state (store, audit trail, logs):
/// volumes may not take it (admission leaves it out, and the volume server
/// answers ENOSPC for writes into holes once the host is down to it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserve {
    /// A fixed number of bytes.
    Bytes(u64),
    /// A share of the file system's size, in percent.
    Percent(f64),
    /// 5 % of the file system, at least 16 MiB and at most 1 GiB.
    Auto,
}

impl Reserve {
    /// `auto`, `5%`, or a size (`256MiB`, `1GiB`, `1000000`).
    pub fn parse(
        s: &str,
        parse_size: impl Fn(&str) -> Result<u64, String>,
    ) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Reserve::Auto);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage such as 5%"))?;
            if !(0.0..=90.0).contains(&v) {
                return Err(format!("{s:?}: a reserve of 0% to 90% of the file system"));
            }
            return Ok(Reserve::Percent(v));
        }
        parse_size(t).map(Reserve::Bytes)
    }

    /// The reserve on a file system of `fs_size` bytes.
    pub fn bytes(self, fs_size: u64) -> u64 {
        match self {
            Reserve::Bytes(b) => b,
            Reserve::Percent(p) => (fs_size as f64 * p / 100.0) as u64,
            Reserve::Auto => (fs_size / 20).clamp(16 * MIB, GIB),
        }
    }
}

/// The operator's admission policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoragePolicy {
    /// How many bytes of volume one free byte may back (≥ 1.0 in practice).
    pub overcommit: f64,
    /// Bytes of the host file system kept for ferry's own state.
    pub reserve: u64,
}

/// Space on the data directory's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Free bytes (`f_bavail`).
    pub free: u64,
}

/// Admits a task of `request` bytes when `outstanding` bytes are already
/// promised to admitted tasks (their sizes less what they have written).
/// `Err` says why not, naming the sizes.
pub fn check(
    policy: &StoragePolicy,
    disk: DiskSpace,
    outstanding: u64,
    request: u64,
) -> Result<(), String> {
    let usable = disk.free.saturating_sub(policy.reserve);
    let capacity = usable as f64 * policy.overcommit;
    let wanted = outstanding.saturating_add(request);
    if wanted as f64 <= capacity {
        return Ok(());
    }
    Err(format!(
        "This host cannot back {} of ephemeral storage: its disk has {} free, less {} kept for \
         the ferry server's own state, times the overcommit ratio {} (ferry server \
         --storage-overcommit) backs {}, and running tasks already hold {} of it.",
        human(request),
        human(disk.free),
        human(policy.reserve),
        policy.overcommit,
        human(capacity as u64),
        human(outstanding),
    ))
}

/// `20 GiB`, `300.0 MiB`.
pub fn human(b: u64) -> String {
    if b >= GIB {
        let g = b as f64 / GIB as f64;
        if b.is_multiple_of(GIB) {
            format!("{} GiB", b / GIB)
        } else {
            format!("{g:.1} GiB")
        }
    } else {
        format!("{:.1} MiB", b as f64 / MIB as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Result<u64, String> {
        match s.strip_suffix("MiB") {
            Some(n) => n.parse::<u64>().map(|n| n * MIB).map_err(|e| e.to_string()),
            None => s.parse::<u64>().map_err(|e| e.to_string()),
        }
    }

    #[test]
    fn reserves_parse_and_scale() {
        assert_eq!(Reserve::parse("auto", size).unwrap(), Reserve::Auto);
        assert_eq!(Reserve::parse("5%", size).unwrap(), Reserve::Percent(5.0));
        assert_eq!(
            Reserve::parse("256MiB", size).unwrap(),
            Reserve::Bytes(256 * MIB)
        );
        assert!(Reserve::parse("95%", size).is_err());
        assert!(Reserve::parse("x%", size).is_err());
        assert_eq!(Reserve::Percent(10.0).bytes(1000), 100);
        // Auto: 5 %, within 16 MiB .. 1 GiB.
        assert_eq!(Reserve::Auto.bytes(300 * MIB), 16 * MIB);
        assert_eq!(Reserve::Auto.bytes(10 * GIB), 512 * MIB);
        assert_eq!(Reserve::Auto.bytes(250 * GIB), GIB);
    }

    #[test]
    fn admission_counts_free_space_reserve_ratio_and_promises() {
        let p = StoragePolicy {
            overcommit: 1.0,
            reserve: GIB,
        };
        let disk = DiskSpace { free: 31 * GIB };
        // 31 free - 1 reserved = 30 usable.
        assert!(check(&p, disk, 0, 30 * GIB).is_ok());
        assert!(check(&p, disk, 10 * GIB, 20 * GIB).is_ok());
        let e = check(&p, disk, 10 * GIB + 1, 20 * GIB).unwrap_err();
        assert!(e.contains("cannot back 20 GiB"), "{e}");
        assert!(e.contains("31 GiB free"), "{e}");
        assert!(e.contains("1 GiB kept"), "{e}");
        // Overcommit 4: 120 GiB of promises on 30 usable.
        let p4 = StoragePolicy {
            overcommit: 4.0,
            ..p
        };
        assert!(check(&p4, disk, 100 * GIB, 20 * GIB).is_ok());
        assert!(check(&p4, disk, 101 * GIB, 20 * GIB).is_err());
        // Less free than the reserve: nothing is admitted, whatever the ratio.
        let tiny = DiskSpace { free: GIB / 2 };
        let e = check(&p4, tiny, 0, 1).unwrap_err();
        assert!(e.contains("512.0 MiB free"), "{e}");
    }

    #[test]
    fn the_300_mb_disk_refuses_20_gib_by_default_and_takes_it_overcommitted() {
        let free = 280 * MIB;
        let reserve = Reserve::Auto.bytes(300 * MIB);
        let default = StoragePolicy {
            overcommit: crate::admission::DEFAULT_OVERCOMMIT,
            reserve,
        };
        assert!(check(&default, DiskSpace { free }, 0, 20 * GIB).is_err());
        let lax = StoragePolicy {
            overcommit: 100.0,
            reserve,
        };
        assert!(check(&lax, DiskSpace { free }, 0, 20 * GIB).is_ok());
    }
}
