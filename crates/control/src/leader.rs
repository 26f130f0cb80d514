//! The control plane's singletons, elected through the store: the service
//! scheduler, the expiry of stopped tasks and the lost-host check run only
//! in the process that holds the lease [`SCHEDULER_LEASE`] (see
//! `docs/control-plane.md`, "Leases and fencing").
//!
//! The holder renews the lease every [`Timings::scheduler_renew`] (1 s)
//! for [`Timings::scheduler_ttl`] (8 s); the others try to take it every
//! [`Timings::scheduler_try`] (0.5 s), so a new holder takes over within
//! 8.5 s after the old one stops renewing. Every write the holder makes as the holder checks, inside its
//! transaction, that it still holds the lease at the epoch it was given
//! ([`Leader::check`]): a holder that was paused past its lease (and
//! replaced) cannot launch a service's tasks a second time.
//!
//! Without a fleet (one process on the embedded store) the process is the
//! leader, and nothing is written to prove it.
//!
//! [`Timings::scheduler_renew`]: crate::hosts::Timings::scheduler_renew
//! [`Timings::scheduler_ttl`]: crate::hosts::Timings::scheduler_ttl
//! [`Timings::scheduler_try`]: crate::hosts::Timings::scheduler_try

use std::sync::Mutex;
use std::time::Instant;

use ferry_store::WriteTxn;

use crate::error::EcsError;
use crate::service::Core;

/// The lease of the control plane's singletons.
pub const SCHEDULER_LEASE: &str = "control/scheduler";

/// A lease held at an epoch: what a fenced write checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease.
    pub name: String,
    /// This process.
    pub holder: String,
    /// The epoch it was given.
    pub epoch: u64,
}

/// The right to act as the singleton: `None` inside when there is no
/// fleet (nothing to check), else the fence every such write checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader(pub Option<Fence>);

impl Leader {
    /// Fails unless the lease is still this process's at its epoch
    /// (inside the transaction that records the work).
    pub fn check(&self, w: &WriteTxn<'_>) -> Result<(), EcsError> {
        let Some(f) = &self.0 else { return Ok(()) };
        if w.holds_lease(&f.name, &f.holder, f.epoch)? {
            Ok(())
        } else {
            Err(EcsError::NotLeader(format!(
                "this process no longer holds the lease {} (epoch {})",
                f.name, f.epoch
            )))
        }
    }
}

/// What this process knows of its term.
#[derive(Default)]
pub(crate) struct Term {
    state: Mutex<Option<(Fence, Instant)>>,
    /// When a replica that does not hold the lease last tried to take it.
    tried: Mutex<Option<Instant>>,
}

/// Takes or renews the scheduler lease when due; returns the leadership
/// if this process holds it. A new term rebuilds the hosts'
/// reservations from the task records (they are the source of truth).
pub fn tick(core: &Core) -> Option<Leader> {
    if core.closing() {
        return None;
    }
    if !core.cfg.fleet {
        return Some(Leader(None));
    }
    let t = &core.cfg.timings;
    let now = Instant::now();
    let mut state = core
        .local
        .term
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((f, renewed)) = &*state
        && now.duration_since(*renewed) < t.scheduler_renew
    {
        return Some(Leader(Some(f.clone())));
    }
    if state.is_none() {
        // Not the holder: try now and then, not at every scheduler wake.
        let mut tried = core
            .local
            .term
            .tried
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if tried.is_some_and(|at| now.duration_since(at) < t.scheduler_try) {
            return None;
        }
        *tried = Some(now);
    }
    let holder = core.local.instance.clone();
    match core.store.lease(SCHEDULER_LEASE, &holder, t.scheduler_ttl) {
        Ok(Some(lease)) => {
            let fence = Fence {
                name: SCHEDULER_LEASE.into(),
                holder,
                epoch: lease.epoch,
            };
            let new_term = state.as_ref().is_none_or(|(f, _)| f.epoch != lease.epoch);
            *state = Some((fence.clone(), now));
            drop(state);
            let leader = Leader(Some(fence));
            if new_term {
                tracing::info!(epoch = lease.epoch, "holding the scheduler lease");
                if let Err(e) = crate::hosts::placement::rebuild(core, &leader) {
                    tracing::warn!(error = %e, "rebuilding the hosts' reservations failed");
                }
            }
            Some(leader)
        }
        Ok(None) => {
            if state.take().is_some() {
                tracing::info!("another replica holds the scheduler lease now");
            }
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "renewing the scheduler lease failed");
            // Act on the last renewal while it lasts; every write is
            // fenced anyway.
            match &*state {
                Some((f, renewed)) if now.duration_since(*renewed) < t.scheduler_ttl => {
                    Some(Leader(Some(f.clone())))
                }
                _ => {
                    *state = None;
                    None
                }
            }
        }
    }
}

/// Whether this process acts as the singleton now (without renewing).
pub fn is_leader(core: &Core) -> bool {
    if !core.cfg.fleet {
        return true;
    }
    let state = core
        .local
        .term
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    state
        .as_ref()
        .is_some_and(|(_, renewed)| renewed.elapsed() < core.cfg.timings.scheduler_ttl)
}

/// Gives the lease up (a clean shutdown), so another replica takes over
/// at once instead of after the lease lapses.
pub fn resign(core: &Core) {
    if !core.cfg.fleet {
        return;
    }
    let mut state = core
        .local
        .term
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if state.take().is_some()
        && let Err(e) = core
            .store
            .release_lease(SCHEDULER_LEASE, &core.local.instance)
    {
        tracing::warn!(error = %e, "giving up the scheduler lease failed");
    }
}
