//! A background job that runs on one replica at a time (issue 19): the
//! replica holding a named lease in the shared store runs it; the others
//! wait, and take over within the lease's time to live when the holder
//! dies. With the embedded store (one process) there is no lease: the job
//! runs on its timer, as it always did.
//!
//! The holder renews the lease every [`RENEW`] whether or not the job is
//! due, so it keeps the job; the work the job records re-checks the lease
//! inside its write transaction ([`Held::holds`]), so a holder paused past
//! the lease's expiry cannot act after another took over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Store, StoreError, WriteTxn};

/// How long a lease lasts unless renewed.
pub const TTL: Duration = Duration::from_secs(10);
/// How often the holder renews it (and a waiting replica asks for it).
pub const RENEW: Duration = Duration::from_secs(3);

/// A lease held for one pass of a job.
#[derive(Clone)]
pub struct Held {
    store: Arc<Store>,
    name: String,
    holder: String,
    epoch: u64,
}

impl Held {
    /// Whether this holder still holds the lease at this epoch: call inside
    /// the write transaction that records the job's work, and write nothing
    /// if it does not.
    pub fn holds(&self, w: &WriteTxn<'_>) -> Result<bool, StoreError> {
        w.holds_lease(&self.name, &self.holder, self.epoch)
    }

    /// Renews the lease during a long pass; false once it is lost (or was
    /// taken by another holder meanwhile): the pass should stop.
    pub fn renew(&self) -> bool {
        matches!(
            self.store.lease(&self.name, &self.holder, TTL),
            Ok(Some(l)) if l.epoch == self.epoch
        )
    }
}

/// A process-unique lease holder id for when the composition root names
/// none: the host's name, the process id and the start time.
pub fn default_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{host}/{}/{started:x}", std::process::id())
}

/// Runs `job` every `every` on a background thread named `thread` while
/// `alive` says the owner lives. With a shared store only the holder of
/// the lease `name` runs it (`job` gets the lease); with the embedded store
/// it runs on every pass (`job` gets `None`). `holder` is read at each
/// pass (the composition root may name the process after starting it).
pub fn spawn(
    thread: &str,
    store: Arc<Store>,
    name: &'static str,
    holder: impl Fn() -> Option<String> + Send + 'static,
    every: Duration,
    mut job: impl FnMut(Option<&Held>) -> bool + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            if !store.is_shared() {
                loop {
                    std::thread::sleep(every);
                    if !job(None) {
                        return;
                    }
                }
            }
            let mut last = Instant::now();
            // The name under which the lease was held last round.
            let mut holding: Option<String> = None;
            loop {
                std::thread::sleep(RENEW.min(every));
                // The owner is gone: give the lease up at once, so another
                // replica need not wait for it to expire.
                let Some(holder) = holder() else {
                    if let Some(h) = holding {
                        let _ = store.release_lease(name, &h);
                    }
                    return;
                };
                let lease = store.lease(name, &holder, TTL);
                holding = matches!(lease, Ok(Some(_))).then(|| holder.clone());
                match lease {
                    Ok(Some(lease)) if last.elapsed() >= every => {
                        let held = Held {
                            store: store.clone(),
                            name: name.to_owned(),
                            holder: holder.clone(),
                            epoch: lease.epoch,
                        };
                        last = Instant::now();
                        if !job(Some(&held)) {
                            let _ = store.release_lease(name, &holder);
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(lease = name, "taking the job's lease failed: {e}"),
                }
            }
        })
        .map(|_| ())
}
