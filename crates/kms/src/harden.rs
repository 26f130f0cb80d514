//! Process protections for a process that holds keys: no core dumps, not
//! ptrace-attachable by other users, memory locked so keys never reach swap,
//! files private (umask 077).

/// What [`protect_process`] managed to do (for a log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// Core dumps are off (RLIMIT_CORE 0 and not dumpable).
    pub no_core_dumps: bool,
    /// All current and future memory is locked.
    pub memory_locked: bool,
}

/// Disables core dumps and, when the memlock limit or CAP_IPC_LOCK allows
/// it, locks all memory (current and future, as it is touched). Plaintext
/// data keys pass through HTTP and JSON buffers that cannot all be
/// zeroized, so locking the whole process is the only way to keep them out
/// of swap.
pub fn protect_process() -> Protection {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let core = setrlimit(Resource::RLIMIT_CORE, 0, 0).is_ok();
    let dumpable = nix::sys::prctl::set_dumpable(false).is_ok();
    // Privileged processes may lift their own limit; others keep theirs.
    let _ = setrlimit(
        Resource::RLIMIT_MEMLOCK,
        nix::sys::resource::RLIM_INFINITY,
        nix::sys::resource::RLIM_INFINITY,
    );
    // Files this process creates (store, audit log) are private.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let unlimited = matches!(
        getrlimit(Resource::RLIMIT_MEMLOCK),
        Ok((soft, _)) if soft == nix::sys::resource::RLIM_INFINITY
    );
    // With a finite limit and no CAP_IPC_LOCK, MCL_FUTURE would make later
    // allocations fail once the limit is reached; with CAP_IPC_LOCK the
    // limit does not apply (containers often keep that capability but drop
    // CAP_SYS_RESOURCE, so the limit cannot be lifted above).
    use nix::sys::mman::MlockAllFlags as F;
    let locked = (unlimited || has_cap_ipc_lock())
        && nix::sys::mman::mlockall(
            // On fault: lock pages as they are touched rather than populating
            // every mapping (each runtime thread's whole stack) up front.
            F::MCL_CURRENT | F::MCL_FUTURE | F::from_bits_retain(nix::libc::MCL_ONFAULT),
        )
        .is_ok();
    Protection {
        no_core_dumps: core && dumpable,
        memory_locked: locked,
    }
}

/// Whether this process has CAP_IPC_LOCK in its effective set (from
/// /proc/self/status, so no capability library is needed for one bit).
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
            u64::from_str_radix(hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}
