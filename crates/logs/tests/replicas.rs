//! Background jobs on one replica at a time (issue 19): two processes'
//! job threads over one PostgreSQL database, one runs the job; when it
//! stops, the other takes over; work recorded under a lost lease is
//! refused.
//!
//! Needs root and PostgreSQL's server binaries (`scripts/setup`):
//! `ferry_store::testing::TempPostgres` fails the test with the reason
//! when either is missing.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferry_store::Store;
use ferry_store::singleton::{self, RENEW};
use ferry_store::testing::TempPostgres;

/// A job thread of holder `name`: counts its runs while `alive`; records
/// whether, in each run, the lease held (checked in a write transaction).
fn job(
    store: &Arc<Store>,
    name: &'static str,
    runs: Arc<AtomicUsize>,
    alive: Arc<AtomicBool>,
    fenced_ok: Arc<AtomicBool>,
) {
    let s = store.clone();
    singleton::spawn(
        "test-job",
        store.clone(),
        "test/job",
        move || Some(name.to_owned()),
        Duration::from_millis(1),
        move |lease| {
            if !alive.load(Ordering::SeqCst) {
                return false;
            }
            let Some(lease) = lease else {
                panic!("a shared store's job runs under a lease");
            };
            let held = s.write(|w| lease.holds(w)).unwrap();
            if !held {
                fenced_ok.store(false, Ordering::SeqCst);
            }
            runs.fetch_add(1, Ordering::SeqCst);
            true
        },
    )
    .unwrap();
}

#[test]
fn a_job_runs_on_one_holder_and_moves_when_it_stops() {
    let pg = TempPostgres::new();
    let (sa, sb) = (
        Arc::new(Store::connect(&pg.url()).unwrap()),
        Arc::new(Store::connect(&pg.url()).unwrap()),
    );
    let (ra, rb) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (alive_a, alive_b) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(true)),
    );
    let fenced = Arc::new(AtomicBool::new(true));
    job(&sa, "a", ra.clone(), alive_a.clone(), fenced.clone());
    job(&sb, "b", rb.clone(), alive_b.clone(), fenced.clone());
    // Three renewal rounds: one holder ran every time, the other never.
    std::thread::sleep(RENEW * 3 + Duration::from_millis(500));
    let (na, nb) = (ra.load(Ordering::SeqCst), rb.load(Ordering::SeqCst));
    assert!(
        (na == 0) != (nb == 0),
        "both or neither ran: a {na}, b {nb}"
    );
    assert!(na + nb >= 2, "a {na}, b {nb}");
    let live: Vec<_> = sa
        .leases("test/")
        .unwrap()
        .into_iter()
        .filter(|l| l.live)
        .collect();
    assert_eq!(live.len(), 1);
    let (first, second, second_runs) = if na > 0 {
        (&alive_a, "b", &rb)
    } else {
        (&alive_b, "a", &ra)
    };
    assert_eq!(
        live[0].holder,
        if second == "b" { "a" } else { "b" },
        "the lease names the one that ran"
    );
    // The holder stops (its owner went away): it gives the lease up, and
    // the other takes over within a renewal round or two.
    first.store(false, Ordering::SeqCst);
    let before = second_runs.load(Ordering::SeqCst);
    assert_eq!(before, 0);
    let t0 = Instant::now();
    while second_runs.load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < RENEW * 3,
            "{second} did not take over within {:?}",
            RENEW * 3
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(fenced.load(Ordering::SeqCst), "a run found its lease gone");
    alive_a.store(false, Ordering::SeqCst);
    alive_b.store(false, Ordering::SeqCst);
}

#[test]
fn a_holder_that_lost_its_lease_is_fenced_off() {
    let pg = TempPostgres::new();
    let store = Arc::new(Store::connect(&pg.url()).unwrap());
    let a = store
        .lease("test/fence", "a", Duration::from_millis(200))
        .unwrap()
        .unwrap();
    // A pauses past its lease; B takes it.
    std::thread::sleep(Duration::from_millis(400));
    let b = store
        .lease("test/fence", "b", Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
    // A's work, recorded with A's epoch, is refused in the transaction.
    assert!(
        !store
            .write(|w| w.holds_lease("test/fence", "a", a.epoch))
            .unwrap()
    );
    assert!(
        store
            .write(|w| w.holds_lease("test/fence", "b", b.epoch))
            .unwrap()
    );
}
