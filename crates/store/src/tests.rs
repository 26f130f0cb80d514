//! One set of behavioural tests over both backends (`redb::*` and
//! `postgres::*` run the same bodies), then what only a shared store has.
//! The PostgreSQL tests start their own cluster ([`TempPostgres`]), so
//! they run as root; without root or PostgreSQL they fail, saying why.

use std::sync::Arc;
use std::time::Duration;

use crate::testing::TempPostgres;
use crate::{Store, StoreError};

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Rec {
    n: u32,
}

#[derive(Debug)]
enum E {
    Store,
    Abort,
}

impl From<StoreError> for E {
    fn from(_: StoreError) -> Self {
        E::Store
    }
}

/// Callers share the store across threads and may hold a transaction in
/// code that must be `Send`: both backends keep the embedded store's
/// auto traits.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
    send_sync::<crate::WriteTxn<'static>>();
};

fn keys<T>(v: Vec<(String, T)>) -> Vec<String> {
    v.into_iter().map(|(k, _)| k).collect()
}

fn put_get_scan_delete(s: &Store) {
    assert_eq!(s.get::<Rec>("t", "a").unwrap(), None);
    s.put("t", "a/1", &Rec { n: 1 }).unwrap();
    s.put("t", "a/2", &Rec { n: 2 }).unwrap();
    s.put("t", "b/1", &Rec { n: 3 }).unwrap();
    s.put("other", "a/9", &Rec { n: 9 }).unwrap();
    let a: Vec<(String, Rec)> = s.scan("t", "a/").unwrap();
    assert_eq!(
        a,
        [("a/1".into(), Rec { n: 1 }), ("a/2".into(), Rec { n: 2 })]
    );
    assert_eq!(keys(s.scan::<Rec>("t", "").unwrap()), ["a/1", "a/2", "b/1"]);
    assert!(s.scan::<Rec>("nope", "").unwrap().is_empty());
    s.put("t", "a/2", &Rec { n: 22 }).unwrap();
    assert_eq!(s.get::<Rec>("t", "a/2").unwrap(), Some(Rec { n: 22 }));
    assert!(s.delete("t", "a/1").unwrap());
    assert!(!s.delete("t", "a/1").unwrap());
    assert_eq!(s.get::<Rec>("t", "a/1").unwrap(), None);
    // A record of another shape is a codec error naming table and key.
    let e = s.get::<Vec<String>>("t", "b/1").unwrap_err();
    assert!(e.to_string().contains("t/b/1"), "{e}");
    s.ping().unwrap();
}

/// Keys sort by bytes (redb's `&str` order): upper case before lower,
/// multi-byte characters after ASCII, a shorter key before its extensions.
fn keys_sort_by_bytes(s: &Store) {
    let mut all = vec![
        "a",
        "a/",
        "a/b",
        "a0",
        "B",
        "b",
        "é",
        "z",
        "\u{1F600}",
        "\u{FFFF}",
        "A b",
        "~",
        "a\u{1}",
    ];
    for (i, k) in all.iter().enumerate() {
        s.put("k", k, &Rec { n: i as u32 }).unwrap();
    }
    all.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    assert_eq!(keys(s.scan::<Rec>("k", "").unwrap()), all);
    assert_eq!(
        keys(s.scan::<Rec>("k", "a").unwrap()),
        ["a", "a\u{1}", "a/", "a/b", "a0"]
    );
    assert_eq!(
        keys(s.scan::<Rec>("k", "\u{1F6}").unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        keys(s.scan::<Rec>("k", "\u{1F600}").unwrap()),
        ["\u{1F600}"]
    );
    let mut rev = all.clone();
    rev.reverse();
    assert_eq!(
        keys(s.scan_page::<Rec>("k", "", None, 100, true).unwrap()),
        rev
    );
}

fn pages_forward_and_backward_within_a_prefix(s: &Store) {
    for (k, n) in [("a", 0), ("b/1", 1), ("b/2", 2), ("b/3", 3), ("c", 4)] {
        s.put("t", k, &Rec { n }).unwrap();
    }
    let page = |prefix: &str, after: Option<&str>, limit: usize, reverse: bool| {
        keys(
            s.scan_page::<Rec>("t", prefix, after, limit, reverse)
                .unwrap(),
        )
    };
    assert_eq!(page("b/", None, 2, false), ["b/1", "b/2"]);
    assert_eq!(page("b/", Some("b/2"), 2, false), ["b/3"]);
    assert_eq!(page("b/", Some("b/3"), 2, false), Vec::<String>::new());
    assert_eq!(page("b/", None, 2, true), ["b/3", "b/2"]);
    assert_eq!(page("b/", Some("b/2"), 5, true), ["b/1"]);
    assert_eq!(page("b/", None, 0, false), Vec::<String>::new());
    // `after` outside the prefix: before it pages from the start, past it
    // backwards from the end.
    assert_eq!(page("b/", Some("a"), 5, false), ["b/1", "b/2", "b/3"]);
    assert_eq!(page("b/", Some("c"), 5, true), ["b/3", "b/2", "b/1"]);
    // An `after` that is no key.
    assert_eq!(page("b/", Some("b/15"), 5, false), ["b/2", "b/3"]);
    assert_eq!(page("b/", Some("b/15"), 5, true), ["b/1"]);
    assert_eq!(page("", None, 10, false), ["a", "b/1", "b/2", "b/3", "c"]);
    assert_eq!(page("", Some("b/3"), 10, true), ["b/2", "b/1", "a"]);
    assert!(
        s.scan_page::<Rec>("nope", "", None, 5, true)
            .unwrap()
            .is_empty()
    );
}

fn a_failed_transaction_writes_nothing(s: &Store) {
    s.put("t", "k", &Rec { n: 1 }).unwrap();
    let r: Result<(), E> = s.write(|w| {
        w.put("t", "k", &Rec { n: 2 })?;
        w.put("t", "k2", &Rec { n: 3 })?;
        // The transaction sees its own writes.
        assert_eq!(w.get::<Rec>("t", "k")?, Some(Rec { n: 2 }));
        assert_eq!(keys(w.scan::<Rec>("t", "k")?), ["k", "k2"]);
        Err(E::Abort)
    });
    assert!(matches!(r, Err(E::Abort)));
    assert_eq!(s.get::<Rec>("t", "k").unwrap(), Some(Rec { n: 1 }));
    assert_eq!(s.get::<Rec>("t", "k2").unwrap(), None);
    // And a good one after it commits everything.
    s.write(|w| {
        assert!(w.delete("t", "k")?);
        w.put("t", "k3", &Rec { n: 4 })
    })
    .unwrap();
    assert_eq!(keys(s.scan::<Rec>("t", "").unwrap()), ["k3"]);
}

fn a_table_version_grows_with_each_commit_that_writes_it(s: &Store) {
    assert_eq!(s.versions(&["a", "b"]).unwrap(), [0, 0]);
    s.put("a", "k", &Rec { n: 1 }).unwrap();
    s.write(|w| {
        w.put("a", "k", &Rec { n: 2 })?;
        w.delete("b", "x")
    })
    .unwrap();
    let _: Result<(), E> = s.write(|w| {
        w.put("b", "k", &Rec { n: 3 })?;
        Err(E::Abort)
    });
    // Reading does not count.
    s.write(|w| w.get::<Rec>("a", "k")).unwrap();
    assert_eq!(s.versions(&["a", "b", "never"]).unwrap(), [2, 1, 0]);
    assert_eq!(s.versions(&[]).unwrap(), Vec::<u64>::new());
}

fn a_lease_has_one_holder_until_it_expires_or_is_released(s: &Store) {
    let long = Duration::from_secs(60);
    let a = s.lease("scheduler", "a", long).unwrap().unwrap();
    assert_eq!(a.epoch, 1);
    assert_eq!(s.lease("scheduler", "b", long).unwrap(), None);
    assert_eq!(s.lease("scheduler", "a", long).unwrap(), Some(a));
    assert!(
        s.write(|w| w.holds_lease("scheduler", "a", a.epoch))
            .unwrap()
    );
    assert!(
        !s.write(|w| w.holds_lease("scheduler", "b", a.epoch))
            .unwrap()
    );
    assert!(
        !s.write(|w| w.holds_lease("scheduler", "a", a.epoch + 1))
            .unwrap()
    );
    assert!(!s.write(|w| w.holds_lease("nothing", "a", 1)).unwrap());
    // Releasing someone else's lease does nothing.
    s.release_lease("scheduler", "b").unwrap();
    assert_eq!(s.lease("scheduler", "b", long).unwrap(), None);
    s.release_lease("scheduler", "a").unwrap();
    let b = s
        .lease("scheduler", "b", Duration::from_millis(1))
        .unwrap()
        .unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        !s.write(|w| w.holds_lease("scheduler", "b", b.epoch))
            .unwrap()
    );
    s.lease("reconciler", "c", long).unwrap().unwrap();
    let info = s.leases("sched").unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(
        (
            info[0].name.as_str(),
            info[0].holder.as_str(),
            info[0].epoch,
            info[0].live
        ),
        ("scheduler", "b", b.epoch, false)
    );
    let all = s.leases("").unwrap();
    assert_eq!(
        all.iter()
            .map(|l| (l.name.as_str(), l.live))
            .collect::<Vec<_>>(),
        [("reconciler", true), ("scheduler", false)]
    );
    // The expired lease goes to the next taker with a new epoch; its old
    // holder renewing later keeps nothing.
    let a2 = s.lease("scheduler", "a", long).unwrap().unwrap();
    assert_eq!(a2.epoch, b.epoch + 1);
    assert_eq!(s.lease("scheduler", "b", long).unwrap(), None);
    // The same holder taking its own expired lease back keeps the epoch.
    let c = s
        .lease("short", "x", Duration::from_millis(1))
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(s.lease("short", "x", long).unwrap(), Some(c));
}

/// Runs each named body against a fresh embedded store and a fresh
/// PostgreSQL cluster.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let s = crate::Store::open(&dir.path().join("s.redb")).unwrap();
                    assert_eq!((s.backend(), s.is_shared()), ("redb", false));
                    super::$name(&s);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let pg = crate::testing::TempPostgres::new();
                    let s = crate::Store::connect(&pg.url()).unwrap();
                    assert_eq!((s.backend(), s.is_shared()), ("postgresql", true));
                    super::$name(&s);
                }
            )*
        }
    };
}

both_backends!(
    put_get_scan_delete,
    keys_sort_by_bytes,
    pages_forward_and_backward_within_a_prefix,
    a_failed_transaction_writes_nothing,
    a_table_version_grows_with_each_commit_that_writes_it,
    a_lease_has_one_holder_until_it_expires_or_is_released,
);

// What only a shared store has.

#[test]
fn two_stores_on_one_database_see_each_others_writes_at_once() {
    let pg = TempPostgres::new();
    let (s1, s2) = (
        Store::connect(&pg.url()).unwrap(),
        Store::connect(&pg.url()).unwrap(),
    );
    s1.put("t", "k", &Rec { n: 1 }).unwrap();
    assert_eq!(s2.get::<Rec>("t", "k").unwrap(), Some(Rec { n: 1 }));
    s2.write(|w| {
        w.put("t", "k", &Rec { n: 2 })?;
        w.put("u", "k", &Rec { n: 3 })
    })
    .unwrap();
    assert_eq!(s1.get::<Rec>("t", "k").unwrap(), Some(Rec { n: 2 }));
    // Versions are the database's: both see every writer's commits.
    assert_eq!(s1.versions(&["t", "u"]).unwrap(), [2, 1]);
    assert_eq!(s2.versions(&["t", "u"]).unwrap(), [2, 1]);
    // One lease, one holder, whichever store asks.
    let long = Duration::from_secs(60);
    let a = s1.lease("scheduler", "replica-1", long).unwrap().unwrap();
    assert_eq!(s2.lease("scheduler", "replica-2", long).unwrap(), None);
    assert!(
        s2.write(|w| w.holds_lease("scheduler", "replica-1", a.epoch))
            .unwrap()
    );
    s1.release_lease("scheduler", "replica-1").unwrap();
    let b = s2.lease("scheduler", "replica-2", long).unwrap().unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
    // The old holder's fencing check now fails, in its own store too.
    assert!(
        !s1.write(|w| w.holds_lease("scheduler", "replica-1", a.epoch))
            .unwrap()
    );
}

#[test]
fn concurrent_increments_from_two_stores_lose_no_update() {
    let pg = TempPostgres::new();
    let stores = [
        Arc::new(Store::connect(&pg.url()).unwrap()),
        Arc::new(Store::connect(&pg.url()).unwrap()),
    ];
    let mut threads = Vec::new();
    for s in &stores {
        for _ in 0..4 {
            let s = s.clone();
            threads.push(std::thread::spawn(move || {
                for _ in 0..50 {
                    s.write(|w| {
                        let n = w.get::<u64>("counters", "n")?.unwrap_or(0);
                        w.put("counters", "n", &(n + 1))
                    })
                    .unwrap();
                }
            }));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(stores[0].get::<u64>("counters", "n").unwrap(), Some(400));
    assert_eq!(stores[1].versions(&["counters"]).unwrap(), [400]);
}

#[test]
fn the_store_works_from_inside_a_tokio_runtime() {
    let pg = TempPostgres::new();
    let s = Arc::new(Store::connect(&pg.url()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s2 = s.clone();
    rt.block_on(async move {
        s2.put("t", "k", &Rec { n: 7 }).unwrap();
        assert_eq!(s2.get::<Rec>("t", "k").unwrap(), Some(Rec { n: 7 }));
        // Dropped inside the runtime: must not panic.
        let inner = Store::connect(&pg.url()).unwrap();
        inner.ping().unwrap();
        drop(inner);
        drop(pg);
    });
    drop(rt);
}

#[test]
fn racing_connects_on_a_fresh_database_both_migrate_safely() {
    let pg = TempPostgres::new();
    let url = pg.create_database("fresh");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Store::connect(&url).map(|s| s.ping()))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap().unwrap();
    }
    let s = Store::connect(&url).unwrap();
    s.put("t", "k", &Rec { n: 1 }).unwrap();
}

#[test]
fn a_database_from_a_newer_ferry_is_refused() {
    let pg = TempPostgres::new();
    let s = Store::connect(&pg.url()).unwrap();
    s.sql_for_tests("INSERT INTO ferry_schema_migrations (version) VALUES (999)")
        .unwrap();
    let e = Store::connect(&pg.url()).err().unwrap();
    assert!(
        matches!(
            e,
            StoreError::SchemaTooNew {
                found: 999,
                known: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("newer than this ferry"), "{e}");
}

#[test]
fn a_stopped_server_fails_calls_clearly_and_a_restarted_one_serves_the_same_store() {
    let mut pg = TempPostgres::new();
    let s = Store::connect(&pg.url()).unwrap();
    s.put("t", "k", &Rec { n: 1 }).unwrap();
    pg.stop();
    let e = s.get::<Rec>("t", "k").unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("is unreachable"), "{e}");
    let aws: ferry_proto::AwsError = s.put("t", "k2", &Rec { n: 2 }).unwrap_err().into();
    assert_eq!(
        (aws.code.as_str(), aws.status),
        ("ServiceUnavailableException", 503)
    );
    assert!(s.ping().is_err());
    pg.start();
    // The same Store, not reopened: it connects again by itself.
    assert_eq!(s.get::<Rec>("t", "k").unwrap(), Some(Rec { n: 1 }));
    s.put("t", "k2", &Rec { n: 3 }).unwrap();
    assert_eq!(s.get::<Rec>("t", "k2").unwrap(), Some(Rec { n: 3 }));
    s.ping().unwrap();
}

#[test]
fn urls_and_errors_never_show_the_password() {
    let e = Store::connect("postgresql://ferry:s3cret@127.0.0.1:1/ferry")
        .err()
        .unwrap();
    assert!(e.is_unavailable(), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    assert!(
        e.to_string()
            .contains("postgresql://ferry@127.0.0.1:1/ferry"),
        "{e}"
    );
    let e = Store::connect("postgresql://ferry:s3cret@host:port/ferry")
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::BadUrl(_)), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let e = Store::connect("mysql://ferry:s3cret@host/ferry")
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::BadUrl(_)), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
}

#[test]
fn keys_with_nul_are_never_found_and_never_stored() {
    let pg = TempPostgres::new();
    let s = Store::connect(&pg.url()).unwrap();
    s.put("t", "a", &Rec { n: 1 }).unwrap();
    s.put("t", "b", &Rec { n: 2 }).unwrap();
    assert_eq!(s.get::<Rec>("t", "a\0").unwrap(), None);
    assert!(s.scan::<Rec>("t", "a\0").unwrap().is_empty());
    assert!(!s.delete("t", "a\0").unwrap());
    assert!(!s.delete("t\0", "a").unwrap());
    assert!(s.put("t", "x\0", &Rec { n: 3 }).is_err());
    // A paging token with a NUL pages as the embedded store would.
    let page = |after, reverse| {
        keys(
            s.scan_page::<Rec>("t", "", Some(after), 5, reverse)
                .unwrap(),
        )
    };
    assert_eq!(page("a\0z", false), ["b"]);
    assert_eq!(page("a\0z", true), ["a"]);
    // The store is still usable.
    s.put("t", "c", &Rec { n: 4 }).unwrap();
}

#[test]
fn a_swallowed_statement_error_does_not_commit_half_a_transaction() {
    let pg = TempPostgres::new();
    let s = Store::connect(&pg.url()).unwrap();
    s.sql_for_tests(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.key = 'bad' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON ferry_records FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    .unwrap();
    let r = s.write(|w| {
        w.put("t", "good", &Rec { n: 1 })?;
        // The closure ignores the failure and returns Ok.
        let _ = w.put("t", "bad", &Rec { n: 2 });
        Ok::<_, StoreError>(())
    });
    let e = r.unwrap_err();
    assert!(e.to_string().contains("nothing was committed"), "{e}");
    assert_eq!(s.get::<Rec>("t", "good").unwrap(), None);
    assert_eq!(s.versions(&["t"]).unwrap(), [0]);
    // The connection was rolled back and serves the next transaction.
    s.put("t", "good", &Rec { n: 1 }).unwrap();
    assert_eq!(s.get::<Rec>("t", "good").unwrap(), Some(Rec { n: 1 }));
}

#[test]
fn a_full_database_disk_is_disk_full_not_unreachable() {
    let pg = TempPostgres::new();
    let s = Store::connect(&pg.url()).unwrap();
    s.put("t", "a", &Rec { n: 1 }).unwrap();
    // What PostgreSQL answers when it cannot extend a file (ENOSPC).
    s.sql_for_tests(
        "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.key = 'big' THEN RAISE EXCEPTION 'could not extend file \"base/1/2\": \
         No space left on device' USING ERRCODE = 'disk_full'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER full_disk BEFORE INSERT OR UPDATE ON ferry_records FOR EACH ROW \
         EXECUTE FUNCTION full_disk()",
    )
    .unwrap();
    let e = s.put("t", "big", &Rec { n: 2 }).unwrap_err();
    assert!(e.is_disk_full(), "{e}");
    assert!(!e.is_unavailable(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("disk is full") && msg.contains("53100"),
        "{msg}"
    );
    assert!(!msg.contains("unreachable"), "{msg}");
    // In a transaction too, and a caller sees a retryable 503.
    let e = s
        .write(|w| {
            w.put("t", "b", &Rec { n: 3 })?;
            w.put("t", "big", &Rec { n: 4 })
        })
        .unwrap_err();
    assert!(e.is_disk_full(), "{e}");
    let aws: ferry_proto::AwsError = e.into();
    assert_eq!(
        (aws.code.as_str(), aws.status),
        ("ServiceUnavailableException", 503)
    );
    // Reads keep working, nothing of the failed transaction was written,
    // and writes that fit go on.
    assert_eq!(s.get::<Rec>("t", "a").unwrap(), Some(Rec { n: 1 }));
    assert_eq!(s.get::<Rec>("t", "b").unwrap(), None);
    s.put("t", "c", &Rec { n: 5 }).unwrap();
    assert_eq!(s.get::<Rec>("t", "c").unwrap(), Some(Rec { n: 5 }));
}
