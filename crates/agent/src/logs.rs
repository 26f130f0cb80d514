//! Container log capture: each line a container writes to stdout or stderr
//! becomes a [`LogEvent`] handed to a [`LogSink`] under the ECS `awslogs`
//! naming (group from `awslogs-group`, stream `PREFIX/CONTAINER/TASK_ID`).
//! The server puts its CloudWatch Logs service behind the trait; tests use
//! [`MemorySink`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch, when the agent read the line.
    pub timestamp_ms: i64,
    /// The line without its newline (invalid UTF-8 replaced).
    pub message: String,
}

/// Why a container's log stream could not be opened; the text follows
/// the awslogs driver's (it becomes the task's `stoppedReason` after
/// `ResourceInitializationError: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenStreamError {
    /// The group does not exist and `awslogs-create-group` is not `true`.
    #[error(
        "failed to validate logger args: create stream has been retried 1 times: failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log group does not exist. (log group {0}) : exit status 1"
    )]
    NoGroup(String),
    /// The logs service refused (an invalid name, a failure).
    #[error("failed to validate logger args: {0}")]
    Refused(String),
}

/// Where container logs go. Called from the agent's reader threads.
pub trait LogSink: Send + Sync {
    /// Opens a container's stream before the container starts, as the
    /// awslogs driver does: the group must exist unless `create_group`,
    /// and the stream exists from then on, even before the first line.
    fn open_stream(
        &self,
        group: &str,
        stream: &str,
        create_group: bool,
    ) -> Result<(), OpenStreamError>;

    /// Appends `events` (in order) to `stream` of `group`.
    fn put(&self, group: &str, stream: &str, events: &[LogEvent]);
}

/// Drops everything (containers without `awslogs`).
#[derive(Debug, Default)]
pub struct NullSink;

impl LogSink for NullSink {
    fn open_stream(&self, _: &str, _: &str, _: bool) -> Result<(), OpenStreamError> {
        Ok(())
    }
    fn put(&self, _: &str, _: &str, _: &[LogEvent]) {}
}

/// Keeps everything in memory, by (group, stream). For tests and tools.
#[derive(Debug, Default)]
pub struct MemorySink {
    streams: Mutex<BTreeMap<(String, String), Vec<LogEvent>>>,
}

impl MemorySink {
    /// A new, empty sink.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The events of one stream so far.
    pub fn events(&self, group: &str, stream: &str) -> Vec<LogEvent> {
        self.streams
            .lock()
            .map(|s| {
                s.get(&(group.to_string(), stream.to_string()))
                    .cloned()
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// Every (group, stream) seen.
    pub fn streams(&self) -> Vec<(String, String)> {
        self.streams
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl LogSink for MemorySink {
    /// Every group exists in memory; the stream is made empty.
    fn open_stream(&self, group: &str, stream: &str, _: bool) -> Result<(), OpenStreamError> {
        if let Ok(mut s) = self.streams.lock() {
            s.entry((group.to_string(), stream.to_string()))
                .or_default();
        }
        Ok(())
    }

    fn put(&self, group: &str, stream: &str, events: &[LogEvent]) {
        if let Ok(mut s) = self.streams.lock() {
            s.entry((group.to_string(), stream.to_string()))
                .or_default()
                .extend_from_slice(events);
        }
    }
}

/// The `awslogs` stream name: `PREFIX/CONTAINER/TASK_ID`, or
/// `CONTAINER/TASK_ID` without a prefix.
pub fn stream_name(prefix: Option<&str>, container: &str, task_id: &str) -> String {
    match prefix {
        Some(p) if !p.is_empty() => format!("{p}/{container}/{task_id}"),
        _ => format!("{container}/{task_id}"),
    }
}

pub(crate) fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Reads `r` line by line until EOF, calling `f(timestamp_ms, line)` with
/// the time each line was read. Lines longer than 256 KiB (CloudWatch's
/// event limit) are split; invalid UTF-8 is replaced.
pub(crate) fn read_lines(r: impl Read, mut f: impl FnMut(i64, String)) {
    const MAX: usize = 256 * 1024 - 26;
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.by_ref().take(MAX as u64).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                f(now_ms(), String::from_utf8_lossy(&buf).into_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pump_splits_lines_and_names_streams() {
        let sink = MemorySink::new();
        read_lines(&b"one\ntwo\n\nlast"[..], |ts, message| {
            sink.put(
                "g",
                "s",
                &[LogEvent {
                    timestamp_ms: ts,
                    message,
                }],
            )
        });
        let got: Vec<_> = sink
            .events("g", "s")
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(got, ["one", "two", "", "last"]);
        assert_eq!(stream_name(Some("ecs"), "web", "abc"), "ecs/web/abc");
        assert_eq!(stream_name(None, "web", "abc"), "web/abc");
    }
}
