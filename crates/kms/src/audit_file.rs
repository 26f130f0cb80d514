//! The audit file with group commit: records of concurrent calls are
//! queued, and the first caller that finds no write in flight writes
//! everything queued in one `write(2)` and completes the whole batch.
//!
//! The contract is the one-record-per-write design's: a call's response
//! waits for its own record (a [`Ticket`]), and if the write fails every
//! call in that batch fails. Batching only changes how many records share a
//! system call. An async caller yields once before writing, so the other
//! requests its worker has ready add their records to the same batch; no
//! extra thread, no thread wake-ups (a writer thread was measured: batches
//! of ~2 records cost a futex wake and a context switch each, more than the
//! writes they saved).
//!
//! The queue and its tickets ([`GroupCommit`]) do not care where a batch
//! goes: the file here, or one write transaction of a shared store
//! ([`crate::audit_store`]).

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::audit::AuditSink;

/// How a write ended, shared by every record of a batch.
pub(crate) type Outcome = Result<(), (std::io::ErrorKind, String)>;

/// Where a batch of queued records goes, as one unit: all of it is
/// written, or none of it (then every call of the batch fails).
pub(crate) trait BatchWrite: Send + Sync {
    /// Writes `buf`: whole records, each ending in a newline.
    fn write_batch(&self, buf: &[u8]) -> Outcome;
}

fn to_io(o: &Outcome) -> std::io::Result<()> {
    o.clone()
        .map_err(|(kind, msg)| std::io::Error::new(kind, msg))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked (every
    // critical section here is a few assignments or one write).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Default)]
struct SlotState {
    done: Option<Outcome>,
    waker: Option<Waker>,
}

/// Where one record's outcome arrives.
#[derive(Default)]
struct Slot(Mutex<SlotState>);

impl Slot {
    fn take_done(&self) -> Option<Outcome> {
        lock(&self.0).done.take()
    }

    fn complete(&self, outcome: Outcome) {
        let waker = {
            let mut s = lock(&self.0);
            s.done = Some(outcome);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Records queued for the next write.
#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    slots: Vec<Arc<Slot>>,
    /// A caller is writing; it writes until the queue is empty.
    flushing: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Where batches go.
    out: Box<dyn BatchWrite>,
}

/// The audit file and the length of its complete records.
struct FileOut {
    file: Mutex<(File, u64)>,
    /// Where the file is, to open it again after a failed write.
    path: PathBuf,
    /// A write failed and the cut back to whole lines may not have: the
    /// next write reopens the file and trims it first.
    reopen: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Becomes the writer if none is active: writes batches until the
    /// queue is empty and completes their tickets. Returns false if
    /// another caller is writing (it will complete what is queued), after
    /// registering `waker` (if any) on `own` under the queue lock so the
    /// writer cannot miss it.
    fn flush(&self, own: Option<(&Arc<Slot>, &Waker)>) -> bool {
        let mut q = lock(&self.queue);
        if q.flushing {
            if let Some((slot, waker)) = own {
                let mut s = lock(&slot.0);
                if s.done.is_none() && !s.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    s.waker = Some(waker.clone());
                }
            }
            return false;
        }
        q.flushing = true;
        let mut spare = Vec::new();
        while !q.slots.is_empty() {
            let buf = std::mem::replace(&mut q.buf, std::mem::take(&mut spare));
            let slots = std::mem::take(&mut q.slots);
            drop(q);
            let outcome = self.out.write_batch(&buf);
            for slot in slots {
                slot.complete(outcome.clone());
            }
            spare = buf;
            spare.clear();
            q = lock(&self.queue);
        }
        q.flushing = false;
        true
    }
}

impl BatchWrite for FileOut {
    fn write_batch(&self, buf: &[u8]) -> Outcome {
        use std::sync::atomic::Ordering;
        let mut f = lock(&self.file);
        if self.reopen.load(Ordering::SeqCst) {
            match open_trimmed(&self.path) {
                Ok(fresh) => {
                    *f = fresh;
                    self.reopen.store(false, Ordering::SeqCst);
                }
                Err(e) => return Err(explain(&e)),
            }
        }
        let (file, len) = &mut *f;
        match file.write_all(buf) {
            Ok(()) => {
                *len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut a partly written batch (e.g. disk full) so the file
                // stays a sequence of whole JSON lines; if even that
                // fails, the next write reopens the file and trims it.
                if file.set_len(*len).is_err() {
                    self.reopen.store(true, Ordering::SeqCst);
                }
                Err(explain(&e))
            }
        }
    }
}

/// An outcome's error; a full disk is named as such (the caller's message
/// reaches the operator).
fn explain(e: &std::io::Error) -> (std::io::ErrorKind, String) {
    if e.kind() == std::io::ErrorKind::StorageFull {
        (
            e.kind(),
            format!("the file system of ferry's data directory is full ({e})"),
        )
    } else {
        (e.kind(), e.to_string())
    }
}

/// Opens the audit file for appending, cut back to its last whole line.
fn open_trimmed(path: &Path) -> std::io::Result<(File, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let mut len = file.metadata()?.len();
    // A torn record ends without a newline: find the last one (records
    // are small, so look back a bounded distance).
    let window = len.min(1 << 20);
    if window > 0 {
        let mut tail = vec![0u8; window as usize];
        file.seek(SeekFrom::Start(len - window))?;
        file.read_exact(&mut tail)?;
        if tail.last() != Some(&b'\n') {
            let keep = tail
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(len - window, |i| len - window + i as u64 + 1);
            file.set_len(keep)?;
            len = keep;
        }
    }
    Ok((file, len))
}

/// A queued record's outcome: await it (async callers) or
/// [`Ticket::wait`] for it (threads).
pub struct Ticket(TicketInner);

enum TicketInner {
    Done(Option<Outcome>),
    Queued {
        shared: Arc<Shared>,
        slot: Arc<Slot>,
        yielded: bool,
    },
}

impl Ticket {
    /// A ticket for a record whose outcome is already known.
    pub fn done(r: std::io::Result<()>) -> Self {
        Ticket(TicketInner::Done(Some(
            r.map_err(|e| (e.kind(), e.to_string())),
        )))
    }

    /// Blocks the thread until the record is written (or failed), writing
    /// the queue itself if no one else is.
    pub fn wait(mut self) -> std::io::Result<()> {
        match &mut self.0 {
            TicketInner::Done(o) => o.take().as_ref().map_or(Ok(()), to_io),
            TicketInner::Queued { shared, slot, .. } => {
                let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
                let done = loop {
                    if let Some(o) = slot.take_done() {
                        break o;
                    }
                    if !shared.flush(Some((slot, &waker))) {
                        // Another caller is writing. It may have completed
                        // this slot before `flush` looked (then no waker
                        // was registered and no unpark will come): check
                        // again before parking.
                        if let Some(o) = slot.take_done() {
                            break o;
                        }
                        std::thread::park();
                    }
                };
                self.0 = TicketInner::Done(None);
                to_io(&done)
            }
        }
    }
}

/// Wakes a thread blocked in [`Ticket::wait`].
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl Future for Ticket {
    type Output = std::io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            TicketInner::Done(o) => Poll::Ready(o.take().as_ref().map_or(Ok(()), to_io)),
            TicketInner::Queued {
                shared,
                slot,
                yielded,
            } => {
                let done = match slot.take_done() {
                    Some(o) => o,
                    None if !*yielded => {
                        // Let the worker's other ready requests queue their
                        // records first, so one write carries them all.
                        *yielded = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    None => {
                        shared.flush(Some((slot, cx.waker())));
                        match slot.take_done() {
                            Some(o) => o,
                            None => return Poll::Pending,
                        }
                    }
                };
                // Resolved: nothing left for Drop to write.
                self.0 = TicketInner::Done(None);
                Poll::Ready(to_io(&done))
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A caller that went away before its record was written still gets
        // it written.
        if let TicketInner::Queued { shared, .. } = &self.0 {
            shared.flush(None);
        }
    }
}

/// The queue of records waiting for their write, and the tickets of
/// their calls: records of concurrent calls share one write.
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
}

impl GroupCommit {
    /// A queue whose batches go to `out`.
    pub(crate) fn new(out: Box<dyn BatchWrite>) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                out,
            }),
        }
    }

    /// Queues one record (a line without its newline).
    pub(crate) fn submit(&self, line: &[u8]) -> Ticket {
        let slot = Arc::new(Slot::default());
        {
            let mut q = lock(&self.shared.queue);
            q.buf.extend_from_slice(line);
            q.buf.push(b'\n');
            q.slots.push(slot.clone());
        }
        Ticket(TicketInner::Queued {
            shared: self.shared.clone(),
            slot,
            yielded: false,
        })
    }
}

/// The JSON-lines audit file, appended with group commit.
pub struct FileSink {
    path: PathBuf,
    commit: GroupCommit,
}

impl FileSink {
    /// Opens (creating, mode 0600) the audit file for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let (file, len) = open_trimmed(path)?;
        Ok(Self {
            path: path.to_owned(),
            commit: GroupCommit::new(Box::new(FileOut {
                file: Mutex::new((file, len)),
                path: path.to_owned(),
                reopen: std::sync::atomic::AtomicBool::new(false),
            })),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for FileSink {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        self.submit(line).wait()
    }

    fn submit(&self, line: &[u8]) -> Ticket {
        self.commit.submit(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_whole_lines_in_order_and_tickets_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = Arc::new(FileSink::open(&path).unwrap());
        // Threads and queued tickets mixed: every record lands exactly once.
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let tickets: Vec<_> = (0..100)
                        .map(|i| sink.submit(format!("{{\"t\":{t},\"i\":{i}}}").as_bytes()))
                        .collect();
                    for tk in tickets {
                        tk.wait().unwrap();
                    }
                    sink.append(format!("{{\"t\":{t},\"i\":\"last\"}}").as_bytes())
                        .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4 * 101);
        for t in 0..4 {
            let mine: Vec<_> = lines.iter().filter(|v| v["t"] == t).collect();
            assert_eq!(mine.len(), 101);
            // Each thread's records keep their submission order.
            for (i, v) in mine.iter().take(100).enumerate() {
                assert_eq!(v["i"], i);
            }
            assert_eq!(mine[100]["i"], "last");
        }
    }

    /// Threads that wait on their own tickets while another thread is
    /// writing: a ticket completed between a waiter's check and its call
    /// to `flush` must not leave the waiter parked for ever.
    #[test]
    fn waiting_threads_never_miss_their_completion() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(FileSink::open(&dir.path().join("audit.jsonl")).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        for t in 0..16 {
            let (sink, tx) = (sink.clone(), tx.clone());
            std::thread::spawn(move || {
                for i in 0..2000 {
                    sink.submit(format!("{{\"t\":{t},\"i\":{i}}}").as_bytes())
                        .wait()
                        .unwrap();
                }
                tx.send(()).unwrap();
            });
        }
        for _ in 0..16 {
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .expect("a thread waiting on its audit record never woke up");
        }
    }

    #[test]
    fn async_ticket_resolves_after_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = FileSink::open(&path).unwrap();
        let ticket = sink.submit(b"{\"a\":1}");
        // A minimal executor: poll until ready, parking on the waker.
        let thread = std::thread::current();
        let waker = Waker::from(Arc::new(Unpark(thread)));
        let mut cx = Context::from_waker(&waker);
        let mut ticket = std::pin::pin!(ticket);
        let r = loop {
            match ticket.as_mut().poll(&mut cx) {
                Poll::Ready(r) => break r,
                Poll::Pending => std::thread::park(),
            }
        };
        r.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
    }

    #[test]
    fn a_torn_record_is_trimmed_when_the_file_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").unwrap();
        let (file, len) = open_trimmed(&path).unwrap();
        let out = FileOut {
            file: Mutex::new((file, len)),
            path: path.clone(),
            reopen: std::sync::atomic::AtomicBool::new(false),
        };
        // A write that failed with the cut-back failing too: the next one reopens.
        out.reopen.store(true, std::sync::atomic::Ordering::SeqCst);
        let sink = GroupCommit::new(Box::new(out));
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").unwrap();
        sink.submit(b"{\"c\":3}").wait().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"c\":3}\n"
        );
    }

    #[test]
    fn a_failed_write_fails_its_tickets_and_leaves_whole_lines() {
        // /dev/full fails every write with ENOSPC.
        let sink = FileSink::open(Path::new("/dev/full")).unwrap();
        let e = sink.append(b"{\"a\":1}").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        assert!(e.to_string().contains("data directory is full"), "{e}");
        assert!(sink.submit(b"{\"b\":2}").wait().is_err());
    }
}
