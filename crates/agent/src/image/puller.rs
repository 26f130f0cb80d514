//! Images for tasks: [`Puller::ensure`] finds an image in the store or
//! pulls it, once per image however many tasks ask at the same time.
//!
//! In-flight pulls are kept in a map keyed by the normalized reference
//! (`REGISTRY/REPO:TAG`, or `REGISTRY/REPO@sha256:...` when pinned by
//! digest). The first task to miss the store pulls; the others wait for its
//! result and then read the store. A task that comes after a pull finished
//! finds the image in the store and makes no request at all: like
//! Fargate's cached images, a tag is not re-resolved while it is stored.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use super::pull::{self, Access, PullError};
use super::{Image, ImageError, ImageStore, Pin, Reference};

/// The result of one pull, shared with the tasks that waited for it.
type Outcome = Result<(), Arc<PullError>>;

#[derive(Default)]
struct Flight {
    done: Mutex<Option<Outcome>>,
    cv: Condvar,
}

/// How an image was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// It was in the store.
    Cached,
    /// This call pulled it.
    Pulled,
    /// Another task's pull of it was under way; this call waited for it.
    Waited,
}

/// Pulls images into a store, deduplicating concurrent pulls. One per
/// agent (it is process-wide state); cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Puller {
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flight")
    }
}

impl Puller {
    /// A puller with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// `name` from `store`, pulled first (with `access`) if it is not there.
    pub fn ensure(
        &self,
        store: &ImageStore,
        name: &str,
        access: &Access,
    ) -> Result<(Image, Pin, Source), Arc<PullError>> {
        self.ensure_with(store, name, &mut |n| {
            pull::pull(store, n, access, &mut |_| {}).map(|_| ())
        })
    }

    /// [`Self::ensure`] with the pull itself given (tests count calls).
    fn ensure_with(
        &self,
        store: &ImageStore,
        name: &str,
        pull: &mut dyn FnMut(&str) -> Result<(), PullError>,
    ) -> Result<(Image, Pin, Source), Arc<PullError>> {
        let key = Reference::parse(name)
            .map_err(|e| Arc::new(PullError::Image(e.into())))?
            .to_string();
        if let Some((img, pin)) = cached(store, name)? {
            return Ok((img, pin, Source::Cached));
        }
        let (flight, mine) = {
            let mut flights = self
                .flights
                .lock()
                .map_err(|_| Arc::new(PullError::Copy("the pull table is poisoned".into())))?;
            match flights.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    // A pull may have finished between the look above and
                    // taking the lock.
                    if let Some((img, pin)) = cached(store, name)? {
                        return Ok((img, pin, Source::Cached));
                    }
                    let f = Arc::new(Flight::default());
                    flights.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        let outcome = if mine {
            let outcome: Outcome = pull(name).map_err(Arc::new);
            if let Ok(mut done) = flight.done.lock() {
                *done = Some(outcome.clone());
            }
            flight.cv.notify_all();
            if let Ok(mut flights) = self.flights.lock() {
                flights.remove(&key);
            }
            outcome
        } else {
            let mut done = flight
                .done
                .lock()
                .map_err(|_| Arc::new(PullError::Copy("a pull's result is poisoned".into())))?;
            loop {
                if let Some(o) = done.as_ref() {
                    break o.clone();
                }
                done = flight
                    .cv
                    .wait(done)
                    .map_err(|_| Arc::new(PullError::Copy("a pull's result is poisoned".into())))?;
            }
        };
        outcome?;
        let (img, pin) = store.resolve_pinned(name).map_err(|e| Arc::new(e.into()))?;
        Ok((img, pin, if mine { Source::Pulled } else { Source::Waited }))
    }
}

/// The image if the store has it; `None` if it has not.
/// `name` from the store, pinned for the task (no collection can come
/// between finding it and pinning it).
fn cached(store: &ImageStore, name: &str) -> Result<Option<(Image, Pin)>, Arc<PullError>> {
    match store.resolve_pinned(name) {
        Ok(found) => Ok(Some(found)),
        Err(ImageError::NotFound(_)) => Ok(None),
        Err(e) => Err(Arc::new(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Writes a minimal image (empty config, no layers) under `name`, as a
    /// pull would.
    fn store_image(store: &ImageStore, name: &str) {
        use sha2::Digest as _;
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
        let cdigest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(config)));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cdigest, "size": config.len()},
            "layers": []
        })
        .to_string();
        let mdigest = format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(manifest.as_bytes()))
        );
        store
            .commit(
                vec![
                    store.seal_bytes(config).unwrap(),
                    store.seal_bytes(manifest.as_bytes()).unwrap(),
                ],
                &[(vec![Reference::parse(name).unwrap()], mdigest)],
            )
            .unwrap();
    }

    #[test]
    fn concurrent_tasks_pull_once_and_later_ones_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::for_tests(dir.path());
        let puller = Puller::new();
        let pulls = AtomicUsize::new(0);
        let sources: Vec<Source> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|i| {
                    let (store, puller, pulls) = (&store, &puller, &pulls);
                    // Two spellings of one image share one pull.
                    let name = if i % 2 == 0 {
                        "httpd:2.4"
                    } else {
                        "docker.io/library/httpd:2.4"
                    };
                    s.spawn(move || {
                        puller
                            .ensure_with(store, name, &mut |n| {
                                pulls.fetch_add(1, Ordering::SeqCst);
                                // Long enough for the others to find it in flight.
                                std::thread::sleep(Duration::from_millis(300));
                                store_image(store, n);
                                Ok(())
                            })
                            .unwrap()
                            .2
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(pulls.load(Ordering::SeqCst), 1, "{sources:?}");
        assert_eq!(
            sources.iter().filter(|s| **s == Source::Pulled).count(),
            1,
            "{sources:?}"
        );
        let (_, _, again) = puller
            .ensure_with(&store, "httpd:2.4", &mut |_| {
                panic!("pulled a cached image")
            })
            .unwrap();
        assert_eq!(again, Source::Cached);
        assert!(puller.flights.lock().unwrap().is_empty());
    }

    #[test]
    fn waiters_share_a_failure_and_the_next_task_tries_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::for_tests(dir.path());
        let puller = Puller::new();
        let pulls = AtomicUsize::new(0);
        let fail = || {
            Err(PullError::Resolve {
                reference: "docker.io/library/nope:1".into(),
                attempts: 1,
                detail: "docker.io/library/nope:1: not found".into(),
            })
        };
        let errs: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let (store, puller, pulls) = (&store, &puller, &pulls);
                    s.spawn(move || {
                        puller
                            .ensure_with(store, "nope:1", &mut |_| {
                                pulls.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(300));
                                fail()
                            })
                            .unwrap_err()
                            .to_string()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(pulls.load(Ordering::SeqCst), 1);
        for e in &errs {
            assert_eq!(
                e,
                "pull image manifest has been retried 1 time(s): failed to resolve ref docker.io/library/nope:1: docker.io/library/nope:1: not found"
            );
        }
        // A failure is not remembered: the next task asks the registry again.
        puller
            .ensure_with(&store, "nope:1", &mut |_| {
                pulls.fetch_add(1, Ordering::SeqCst);
                fail()
            })
            .unwrap_err();
        assert_eq!(pulls.load(Ordering::SeqCst), 2);
    }
}
