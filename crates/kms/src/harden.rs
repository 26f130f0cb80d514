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

/// Disables core dumps and, when the memlock limit allows it, locks all
/// memory (current and future). Plaintext data keys pass through HTTP and
/// JSON buffers that cannot all be zeroized, so locking the whole process is
/// the only way to keep them out of swap.
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
    let locked = unlimited
        && nix::sys::mman::mlockall(
            nix::sys::mman::MlockAllFlags::MCL_CURRENT | nix::sys::mman::MlockAllFlags::MCL_FUTURE,
        )
        .is_ok();
    Protection {
        no_core_dumps: core && dumpable,
        memory_locked: locked,
    }
}
