//! Reading the audit trail back (the web console's audit views): pages of
//! the trail, newest first, filtered, without loading it.
//!
//! The trail is one of two append-only sequences:
//! - with the embedded store, the file `DIR/kms-audit.jsonl`
//!   ([`crate::audit_file`]): a cursor is the byte offset of a line start.
//!   A page is read backwards in [`CHUNK`]-sized reads from a cursor (or
//!   from the end) and stops once it has its records. Only complete lines
//!   count: a record being appended is not one until its newline is
//!   written.
//! - with a shared store (replicas), its table ([`crate::audit_store`]): a
//!   cursor is a record's sequence number (record `n` spans `[n, n + 1)`),
//!   and pages are key-ordered scans ([`Store::scan_page`], descending for
//!   newest first).
//!
//! Either way a cursor is stable, a live view asks for what came after the
//! `head` it was given, and the filters and answers are the same.
//!
//! A task's records (the calls that made, used and retired its volume's data
//! key) are answered from an in-memory index, task ARN -> record cursors,
//! that is built by one scan on first use and then extended by the records
//! appended since the last query, never by rescanning the trail.

use std::collections::HashMap;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_store::Store;
use serde_json::Value;

use crate::audit_store::{self, AUDIT, record_key, record_seq};

/// Bytes read per system call when the trail file is scanned.
pub const CHUNK: usize = 64 << 10;

/// Records read per round trip when the store's trail is scanned.
const STORE_BATCH: usize = 256;

pub use ferry_proto::audit_trail::{
    AuditError as ReadError, AuditPage as Page, AuditQuery as Query, MAX_AUDIT_PAGE as MAX_PAGE,
};

/// Reads one audit trail; shared by every request (`Send + Sync`).
pub struct AuditReader {
    source: Source,
    chunk: usize,
    index: Mutex<TaskIndex>,
}

/// Where the trail is.
enum Source {
    File(PathBuf),
    Store(Arc<Store>),
}

impl std::fmt::Debug for AuditReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("AuditReader");
        match &self.source {
            Source::File(p) => d.field("path", p),
            Source::Store(s) => d.field("store", &s.backend()),
        };
        d.finish_non_exhaustive()
    }
}

/// One record as a scan hands it out: a line of the file (filtered on its
/// text first, parsed only if it may match) or a record of the store.
enum Item<'a> {
    Line(&'a [u8]),
    Value(Value),
}

/// The trail as one query sees it.
enum Trail {
    File(FileTrail),
    Store(StoreTrail),
}

/// The store's trail as one query sees it: its length when opened.
struct StoreTrail {
    store: Arc<Store>,
    head: u64,
}

fn store_error(e: ferry_store::StoreError) -> ReadError {
    ReadError::Io(e.to_string())
}

impl StoreTrail {
    /// Calls `each(start, end, record)` for every record in `[stop, from)`,
    /// newest first.
    fn scan_back(
        &self,
        from: u64,
        stop: u64,
        mut each: impl FnMut(u64, u64, Item<'_>) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        let mut below = from;
        while below > stop {
            let batch: Vec<(String, Value)> = self
                .store
                .scan_page(AUDIT, "", Some(&record_key(below)), STORE_BATCH, true)
                .map_err(store_error)?;
            if batch.is_empty() {
                return Ok(());
            }
            for (k, v) in batch {
                let Some(seq) = record_seq(&k) else { continue };
                if seq < stop {
                    return Ok(());
                }
                below = seq;
                if each(seq, seq + 1, Item::Value(v)).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Calls `each(start, end, record)` for every record in `[from, to)`,
    /// oldest first.
    fn scan_forward(
        &self,
        from: u64,
        to: u64,
        mut each: impl FnMut(u64, u64, Item<'_>) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        let mut after = from.checked_sub(1).map(record_key);
        loop {
            let batch: Vec<(String, Value)> = self
                .store
                .scan_page(AUDIT, "", after.as_deref(), STORE_BATCH, false)
                .map_err(store_error)?;
            let Some((last, _)) = batch.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (k, v) in batch {
                let Some(seq) = record_seq(&k) else { continue };
                if seq >= to {
                    return Ok(());
                }
                if each(seq, seq + 1, Item::Value(v)).is_break() {
                    return Ok(());
                }
            }
        }
    }
}

impl Trail {
    fn open(source: &Source, chunk: usize) -> Result<Self, ReadError> {
        Ok(match source {
            Source::File(path) => Trail::File(FileTrail::open(path, chunk)?),
            Source::Store(store) => Trail::Store(StoreTrail {
                head: audit_store::length(store).map_err(store_error)?,
                store: store.clone(),
            }),
        })
    }

    /// Where the complete records end (the file's complete length, the
    /// store's record count) when the trail was opened.
    fn head(&self) -> u64 {
        match self {
            Trail::File(f) => f.head,
            Trail::Store(s) => s.head,
        }
    }

    /// Which trail this is: the task index starts over for another one.
    fn id(&self) -> (u64, u64) {
        match self {
            Trail::File(f) => f.id,
            Trail::Store(_) => (u64::MAX, u64::MAX),
        }
    }

    /// The trail's length now (it may have grown since it was opened).
    fn len(&self) -> Result<u64, ReadError> {
        match self {
            Trail::File(f) => Ok(f.len()?),
            Trail::Store(s) => audit_store::length(&s.store).map_err(store_error),
        }
    }

    /// Refuses a cursor that is no record's start.
    fn check(&self, cursor: u64) -> Result<(), ReadError> {
        match self {
            Trail::File(f) => f.check(cursor),
            Trail::Store(s) if cursor > s.head => Err(ReadError::BadCursor(format!(
                "{cursor} is past the end of the trail ({})",
                s.head
            ))),
            Trail::Store(_) => Ok(()),
        }
    }

    fn scan_back(
        &self,
        from: u64,
        stop: u64,
        chunk: usize,
        mut each: impl FnMut(u64, u64, Item<'_>) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        match self {
            Trail::File(f) => Ok(f.scan_back(from, stop, chunk, |start, line| {
                each(start, start + line.len() as u64 + 1, Item::Line(line))
            })?),
            Trail::Store(s) => s.scan_back(from, stop, each),
        }
    }

    fn scan_forward(
        &self,
        from: u64,
        to: u64,
        chunk: usize,
        mut each: impl FnMut(u64, u64, Item<'_>) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        match self {
            Trail::File(f) => Ok(f.scan_forward(from, to, chunk, |start, line| {
                each(start, start + line.len() as u64 + 1, Item::Line(line))
            })?),
            Trail::Store(s) => s.scan_forward(from, to, each),
        }
    }

    /// The record starting at `start` if it matches `filter`, with where it
    /// ends.
    fn matching_at(
        &self,
        start: u64,
        chunk: usize,
        filter: &Filter<'_>,
    ) -> Result<Option<Found>, ReadError> {
        match self {
            Trail::File(f) => {
                let line = f.line_at(start, chunk)?;
                Ok(filter.check(&Item::Line(&line)).map(|v| Found {
                    start,
                    end: start + line.len() as u64 + 1,
                    record: v,
                }))
            }
            Trail::Store(s) => {
                let v: Option<Value> = s
                    .store
                    .get(AUDIT, &record_key(start))
                    .map_err(store_error)?;
                Ok(v.and_then(|v| filter.check(&Item::Value(v)))
                    .map(|v| Found {
                        start,
                        end: start + 1,
                        record: v,
                    }))
            }
        }
    }
}

/// The file's trail as one query sees it: the file and its complete length.
struct FileTrail {
    file: Option<File>,
    /// Identity of the file (device, inode): a replaced file resets the index.
    id: (u64, u64),
    /// Bytes of complete lines (up to and including the last newline).
    head: u64,
}

impl FileTrail {
    fn open(path: &Path, chunk: usize) -> std::io::Result<Self> {
        let file = match File::open(path) {
            Ok(f) => f,
            // No trail yet reads as an empty one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    file: None,
                    id: (0, 0),
                    head: 0,
                });
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let head = complete_len(&file, meta.len(), chunk)?;
        Ok(Self {
            file: Some(file),
            id: (meta.dev(), meta.ino()),
            head,
        })
    }

    /// The file's length now (it may have grown since it was opened).
    fn len(&self) -> std::io::Result<u64> {
        match &self.file {
            Some(f) => Ok(f.metadata()?.len()),
            None => Ok(0),
        }
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        match &self.file {
            Some(f) => f.read_exact_at(buf, at),
            None if buf.is_empty() => Ok(()),
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    /// Refuses a cursor that is not 0 or the start of a line.
    fn check(&self, cursor: u64) -> Result<(), ReadError> {
        if cursor == 0 {
            return Ok(());
        }
        if cursor > self.head {
            return Err(ReadError::BadCursor(format!(
                "{cursor} is past the end of the trail ({})",
                self.head
            )));
        }
        let mut b = [0u8; 1];
        self.read_at(&mut b, cursor - 1)?;
        if b[0] == b'\n' {
            Ok(())
        } else {
            Err(ReadError::BadCursor(format!(
                "{cursor} is not the start of a record"
            )))
        }
    }

    /// Calls `each(start, line)` for every line in `[stop, from)`, newest
    /// first, reading backwards `chunk` bytes at a time. Both bounds are
    /// line starts.
    fn scan_back(
        &self,
        from: u64,
        stop: u64,
        chunk: usize,
        mut each: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
    ) -> std::io::Result<()> {
        // `buf` holds file[lo..lo + buf.len()): the lines not yet handed
        // out, whose first one may be cut by the chunk's start.
        let mut lo = from;
        let mut buf: Vec<u8> = Vec::new();
        while lo > stop {
            let begin = lo.saturating_sub(chunk as u64).max(stop);
            let mut fresh = vec![0u8; (lo - begin) as usize];
            self.read_at(&mut fresh, begin)?;
            fresh.extend_from_slice(&buf);
            buf = fresh;
            lo = begin;
            // `end` is always a line start: buf[end - 1] is a newline.
            let mut end = buf.len();
            while end > 0 {
                let body_end = end - 1;
                let start = match buf[..body_end].iter().rposition(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None if lo == stop => 0,
                    // The line begins in an older chunk.
                    None => break,
                };
                if each(lo + start as u64, &buf[start..body_end]).is_break() {
                    return Ok(());
                }
                end = start;
            }
            buf.truncate(end);
        }
        Ok(())
    }

    /// Calls `each(start, line)` for every line in `[from, to)`, oldest
    /// first. Both bounds are line starts.
    fn scan_forward(
        &self,
        from: u64,
        to: u64,
        chunk: usize,
        mut each: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
    ) -> std::io::Result<()> {
        // `buf` holds file[pos..read_at).
        let mut pos = from;
        let mut read_at = from;
        let mut buf: Vec<u8> = Vec::new();
        while read_at < to {
            let n = (to - read_at).min(chunk as u64) as usize;
            let old = buf.len();
            buf.resize(old + n, 0);
            self.read_at(&mut buf[old..], read_at)?;
            read_at += n as u64;
            let mut s = 0;
            while let Some(i) = buf[s..].iter().position(|b| *b == b'\n') {
                if each(pos + s as u64, &buf[s..s + i]).is_break() {
                    return Ok(());
                }
                s += i + 1;
            }
            buf.drain(..s);
            pos += s as u64;
        }
        Ok(())
    }

    /// The line starting at `start` (without its newline).
    fn line_at(&self, start: u64, chunk: usize) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = start;
        // Records are small: one read of a few KiB nearly always holds one.
        let step = chunk.min(8 << 10) as u64;
        while at < self.head {
            let n = (self.head - at).min(step) as usize;
            let old = out.len();
            out.resize(old + n, 0);
            self.read_at(&mut out[old..], at)?;
            if let Some(i) = out[old..].iter().position(|b| *b == b'\n') {
                out.truncate(old + i);
                return Ok(out);
            }
            at += n as u64;
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no complete record at offset {start}"),
        ))
    }
}

/// The length of `file`'s complete lines: up to its last newline.
fn complete_len(file: &File, len: u64, chunk: usize) -> std::io::Result<u64> {
    // Nearly always the file ends with a newline: one byte says so.
    let mut last = [0u8; 1];
    if len == 0 {
        return Ok(0);
    }
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    let mut end = len - 1;
    while end > 0 {
        let begin = end.saturating_sub(chunk as u64);
        let mut buf = vec![0u8; (end - begin) as usize];
        file.read_exact_at(&mut buf, begin)?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(begin + i as u64 + 1);
        }
        end = begin;
    }
    Ok(0)
}

/// A query's filters, checked first on the raw line (cheap substring tests
/// that every match must pass), then on the parsed record.
struct Filter<'q> {
    q: &'q Query,
    /// Substrings a matching line must contain.
    needles: Vec<String>,
}

/// Whether `s` appears verbatim in serde_json's output wherever it is a
/// (part of a) string value: it has nothing serde_json escapes.
fn verbatim(s: &str) -> bool {
    !s.chars().any(|c| c == '"' || c == '\\' || c.is_control())
}

impl<'q> Filter<'q> {
    fn new(q: &'q Query) -> Self {
        let mut needles = Vec::new();
        if let Some(name) = &q.event_name
            && verbatim(name)
        {
            needles.push(format!("\"eventName\":\"{name}\""));
        }
        // Not the task ARN: records linked to a task by its grant's id
        // do not name it (the index decides those).
        for s in [&q.key, &q.principal].into_iter().flatten() {
            if verbatim(s) {
                needles.push(s.clone());
            }
        }
        if q.errors_only {
            needles.push("\"errorCode\":".into());
        }
        Self { q, needles }
    }

    /// The record if it matches (unparseable lines never do). A line is
    /// tested for the needles first; a stored record was parsed by the
    /// store, whose text may be spaced otherwise.
    fn check(&self, item: &Item<'_>) -> Option<Value> {
        let v: Value = match item {
            Item::Line(line) => {
                let text = std::str::from_utf8(line).ok()?;
                if !self.needles.iter().all(|n| text.contains(n.as_str())) {
                    return None;
                }
                serde_json::from_str(text).ok()?
            }
            Item::Value(v) => {
                return self.matches(v).then(|| v.clone());
            }
        };
        self.matches(&v).then_some(v)
    }

    fn matches(&self, v: &Value) -> bool {
        let q = self.q;
        if let Some(name) = &q.event_name
            && v["eventName"].as_str() != Some(name)
        {
            return false;
        }
        if q.errors_only && v.get("errorCode").is_none_or(Value::is_null) {
            return false;
        }
        if let Some(p) = &q.principal {
            let who = &v["userIdentity"];
            let found = ["arn", "accessKeyId", "invokedBy", "principalId"]
                .iter()
                .filter_map(|f| who[*f].as_str())
                .any(|s| s.contains(p.as_str()));
            if !found {
                return false;
            }
        }
        if let Some(k) = &q.key
            && !key_matches(v, k)
        {
            return false;
        }
        if q.from.is_some() || q.to.is_some() {
            let Some(t) = event_time(v) else {
                return false;
            };
            if q.from.is_some_and(|f| t < f) || q.to.is_some_and(|to| t > to) {
                return false;
            }
        }
        true
    }
}

fn key_matches(v: &Value, key: &str) -> bool {
    let rp = &v["requestParameters"];
    // A key id also matches the ARNs that end with it.
    let suffix =
        (!key.starts_with("arn:") && !key.starts_with("alias/")).then(|| format!("/{key}"));
    let is = |s: &str| s == key || suffix.as_deref().is_some_and(|x| s.ends_with(x));
    if ["keyId", "targetKeyId", "aliasName"]
        .iter()
        .filter_map(|f| rp[*f].as_str())
        .any(is)
    {
        return true;
    }
    v["resources"]
        .as_array()
        .is_some_and(|rs| rs.iter().filter_map(|r| r["ARN"].as_str()).any(is))
}

/// `eventTime` in seconds since the epoch.
fn event_time(v: &Value) -> Option<f64> {
    ferry_proto::audit_trail::rfc3339_seconds(v["eventTime"].as_str()?)
}

/// Whether `s` is an ECS task ARN (`arn:PARTITION:ecs:REGION:ACCOUNT:task/...`).
fn is_task_arn(s: &str) -> bool {
    let mut parts = s.splitn(6, ':');
    parts.next() == Some("arn")
        && parts.next().is_some()
        && parts.next() == Some("ecs")
        && parts.next().is_some()
        && parts.next().is_some()
        && parts.next().is_some_and(|r| r.starts_with("task/"))
}

/// The task ARNs a record's encryption contexts name: the request's
/// (`encryptionContext`, ReEncrypt's source and destination ones) and a
/// grant's constraints (kept with AWS's member names, in either casing).
fn task_arns(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut take = |ctx: &Value| {
        if let Some(m) = ctx.as_object() {
            for s in m.values().filter_map(Value::as_str) {
                if is_task_arn(s) && !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
        }
    };
    let Some(rp) = v["requestParameters"].as_object() else {
        return Vec::new();
    };
    for (k, ctx) in rp {
        if k.ends_with("ncryptionContext") {
            take(ctx);
        }
    }
    if let Some(c) = rp.get("constraints").and_then(Value::as_object) {
        for (k, ctx) in c {
            if k.to_ascii_lowercase().starts_with("encryptioncontext") {
                take(ctx);
            }
        }
    }
    out
}

/// Task ARN -> the line starts of its records, for the trail up to `indexed`.
#[derive(Default)]
struct TaskIndex {
    id: (u64, u64),
    indexed: u64,
    tasks: HashMap<String, Vec<u64>>,
    /// Live grants made under a task's context: grant id -> task ARNs.
    grants: HashMap<String, Vec<String>>,
    /// Bytes scanned since the reader was made (what the tests check to
    /// see that an update reads only what was appended).
    scanned: u64,
}

impl TaskIndex {
    /// Indexes what was appended since the last call; starts over if the
    /// file was replaced or cut back (a torn record trimmed at reopen).
    fn update(&mut self, trail: &Trail, chunk: usize) -> Result<(), ReadError> {
        if trail.id() != self.id || trail.len()? < self.indexed {
            *self = Self {
                id: trail.id(),
                scanned: self.scanned,
                ..Self::default()
            };
        }
        // A query that opened the trail before another's update may find
        // the index ahead of its own view; its cursors past `head` are
        // left out by the caller.
        let head = trail.head();
        if head <= self.indexed {
            return Ok(());
        }
        trail.scan_forward(self.indexed, head, chunk, |start, _, item| {
            self.add(start, item);
            ControlFlow::Continue(())
        })?;
        self.scanned += head - self.indexed;
        self.indexed = head;
        Ok(())
    }

    fn add(&mut self, start: u64, item: Item<'_>) {
        let v = match item {
            Item::Line(line) => {
                let Ok(text) = std::str::from_utf8(line) else {
                    return;
                };
                // Most records name no task and no grant: skip them unparsed.
                let names_task = text.contains(":task/");
                let names_grant = !self.grants.is_empty() && text.contains("\"grantId\"");
                if !names_task && !names_grant {
                    return;
                }
                let Ok(v) = serde_json::from_str::<Value>(text) else {
                    return;
                };
                v
            }
            Item::Value(v) => v,
        };
        let mut arns = task_arns(&v);
        let failed = v.get("errorCode").is_some_and(|e| !e.is_null());
        let event = v["eventName"].as_str().unwrap_or_default();
        if event == "CreateGrant"
            && !failed
            && !arns.is_empty()
            && let Some(g) = v["responseElements"]["grantId"].as_str()
        {
            self.grants.insert(g.to_owned(), arns.clone());
        }
        if let Some(g) = v["requestParameters"]["grantId"].as_str() {
            let linked = if matches!(event, "RetireGrant" | "RevokeGrant") && !failed {
                // The grant is gone: nothing can name it successfully again.
                self.grants.remove(g)
            } else {
                self.grants.get(g).cloned()
            };
            for a in linked.into_iter().flatten() {
                if !arns.contains(&a) {
                    arns.push(a);
                }
            }
        }
        for a in arns {
            let offsets = self.tasks.entry(a).or_default();
            if offsets.last() != Some(&start) {
                offsets.push(start);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The index is only ever extended; a panicked holder leaves at worst a
    // shorter index, which the next update completes.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AuditReader {
    /// A reader of the audit file at `path` (`DIR/`[`crate::service::AUDIT_FILE`]).
    /// Nothing is read until the first query.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            source: Source::File(path.into()),
            chunk: CHUNK,
            index: Mutex::new(TaskIndex::default()),
        }
    }

    /// A reader of the trail in a shared store ([`crate::audit_store`]).
    pub fn over_store(store: Arc<Store>) -> Self {
        Self {
            source: Source::Store(store),
            chunk: CHUNK,
            index: Mutex::new(TaskIndex::default()),
        }
    }

    /// The reader of the trail [`crate::Kms::open`] writes for `store` and
    /// `data_dir`: the store's table when it is shared, else the file.
    pub fn for_kms(store: &Arc<Store>, data_dir: &Path) -> Self {
        if store.is_shared() {
            Self::over_store(store.clone())
        } else {
            Self::new(data_dir.join(crate::service::AUDIT_FILE))
        }
    }

    /// The audit file's path (`None` for a store's trail).
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) => Some(p),
            Source::Store(_) => None,
        }
    }

    /// One page of records, newest first.
    pub fn page(&self, q: &Query) -> Result<Page, ReadError> {
        if q.limit == 0 || q.limit > MAX_PAGE {
            return Err(ReadError::BadQuery(format!(
                "limit must be 1..{MAX_PAGE}, not {}",
                q.limit
            )));
        }
        for t in [q.from, q.to].into_iter().flatten() {
            if !t.is_finite() {
                return Err(ReadError::BadQuery(format!("{t} is not a time")));
            }
        }
        if let (Some(f), Some(t)) = (q.from, q.to)
            && f > t
        {
            return Err(ReadError::BadQuery("from is after to".into()));
        }
        let trail = Trail::open(&self.source, self.chunk)?;
        for c in [q.before, q.after].into_iter().flatten() {
            trail.check(c)?;
        }
        let filter = Filter::new(q);
        if let Some(task) = &q.task_arn {
            return self.task_page(&trail, &filter, task);
        }
        let head = trail.head();
        let end = q.before.unwrap_or(head);
        match q.after {
            Some(after) => {
                let mut found: Vec<Found> = Vec::new();
                let mut more = false;
                trail.scan_forward(after.min(end), end, self.chunk, |start, stop, item| {
                    match filter.check(&item) {
                        Some(_) if found.len() == q.limit => {
                            more = true;
                            ControlFlow::Break(())
                        }
                        Some(v) => {
                            found.push(Found {
                                start,
                                end: stop,
                                record: v,
                            });
                            ControlFlow::Continue(())
                        }
                        None => ControlFlow::Continue(()),
                    }
                })?;
                Ok(forward_page(found, more, head))
            }
            None => {
                let mut records = Vec::new();
                let mut oldest = 0;
                trail.scan_back(end, 0, self.chunk, |start, _, item| {
                    if let Some(v) = filter.check(&item) {
                        records.push(v);
                        oldest = start;
                        if records.len() == q.limit {
                            return ControlFlow::Break(());
                        }
                    }
                    ControlFlow::Continue(())
                })?;
                let next = (records.len() == q.limit && oldest > 0).then_some(oldest);
                Ok(Page {
                    records,
                    next,
                    head,
                })
            }
        }
    }

    /// A task's records, from the index.
    fn task_page(&self, trail: &Trail, filter: &Filter<'_>, task: &str) -> Result<Page, ReadError> {
        let q = filter.q;
        let offsets: Vec<u64> = {
            let mut idx = lock(&self.index);
            idx.update(trail, self.chunk)?;
            idx.tasks.get(task).cloned().unwrap_or_default()
        };
        let head = trail.head();
        let end = q.before.unwrap_or(head);
        let after = q.after.unwrap_or(0);
        // The index was built up to at least `head`; a newer index
        // (another query read a longer trail) may hold cursors past it.
        let candidates: Vec<u64> = offsets
            .into_iter()
            .filter(|o| *o >= after && *o < end)
            .collect();
        let record = |start: u64| trail.matching_at(start, self.chunk, filter);
        if q.after.is_some() {
            let mut found: Vec<Found> = Vec::new();
            let mut more = false;
            for start in candidates {
                if let Some(f) = record(start)? {
                    if found.len() == q.limit {
                        more = true;
                        break;
                    }
                    found.push(f);
                }
            }
            return Ok(forward_page(found, more, head));
        }
        let mut records = Vec::new();
        let mut next = None;
        for (i, start) in candidates.iter().enumerate().rev() {
            if let Some(f) = record(*start)? {
                records.push(f.record);
                if records.len() == q.limit {
                    next = (i > 0).then_some(*start);
                    break;
                }
            }
        }
        Ok(Page {
            records,
            next,
            head,
        })
    }

    #[cfg(test)]
    fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk;
        self
    }
}

/// A matching record and where its line is.
struct Found {
    start: u64,
    end: u64,
    record: Value,
}

/// An `after` page from its records in file order: newest first, `head`
/// the end of the newest one when more were left for the next poll.
fn forward_page(found: Vec<Found>, more: bool, trail_head: u64) -> Page {
    let head = match found.last() {
        Some(f) if more => f.end,
        _ => trail_head,
    };
    let next = found.first().map(|f| f.start).filter(|s| *s > 0);
    Page {
        records: found.into_iter().rev().map(|f| f.record).collect(),
        next,
        head,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use ferry_proto::{Caller, JsonService, Principal, RequestContext};
    use serde_json::json;

    use super::*;
    use crate::audit::{Event, render};
    use ferry_store::Store;

    const ACCOUNT: &str = "111122223333";
    const KEY_A: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaa-1111";
    const KEY_B: &str = "arn:aws:kms:us-east-1:111122223333:key/bbbb-2222";
    const USER: &str = "arn:aws:iam::111122223333:user/alice";

    /// What a generated record is, to compute each filter's answer
    /// independently of the reader.
    #[derive(Clone)]
    struct Made {
        n: u64,
        who: usize,
        op: &'static str,
        key: usize,
        failed: bool,
        time: i64,
    }

    const OPS: [&str; 3] = ["Encrypt", "Decrypt", "DescribeKey"];

    fn caller(who: usize) -> Caller {
        match who {
            0 => Caller::admin(ACCOUNT),
            1 => Caller::service(ACCOUNT, "fargate.amazonaws.com"),
            _ => Caller {
                account: ACCOUNT.into(),
                principal: Principal::Iam(USER.into()),
                access_key_id: Some("AKIAALICE".into()),
                policies: None,
            },
        }
    }

    /// Record `m` as the KMS writes it, at second `m.time` of the epoch.
    fn line(m: &Made) -> String {
        let mut ctx = RequestContext::internal(caller(m.who), "us-east-1");
        ctx.request_id = format!("req-{}", m.n);
        let key = [KEY_A, KEY_B][m.key];
        // Half of the calls name the key by id or alias, as clients do.
        let key_id = match m.n % 4 {
            0 => key.rsplit('/').next().unwrap().to_owned(),
            1 => format!("alias/k{}", m.key),
            _ => key.to_owned(),
        };
        let req = json!({"KeyId": key_id});
        let resources = [key.to_owned()];
        let mut v = render(&Event {
            ctx: &ctx,
            operation: m.op,
            request: Some(&req),
            response: (!m.failed).then_some(&json!({"KeyId": key})),
            error: m.failed.then_some(("DisabledException", "key is disabled")),
            resources: &resources,
        });
        v["eventTime"] = json!(
            time::OffsetDateTime::from_unix_timestamp(m.time)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        );
        v.to_string()
    }

    fn made(count: u64) -> Vec<Made> {
        (0..count)
            .map(|n| Made {
                n,
                who: (n % 3) as usize,
                op: OPS[(n / 3 % 3) as usize],
                key: (n / 2 % 2) as usize,
                failed: n % 7 == 0,
                time: 1_700_000_000 + n as i64,
            })
            .collect()
    }

    fn write(path: &Path, ms: &[Made]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for m in ms {
            writeln!(f, "{}", line(m)).unwrap();
        }
    }

    fn ns(p: &Page) -> Vec<u64> {
        p.records
            .iter()
            .map(|r| {
                r["requestID"].as_str().unwrap()["req-".len()..]
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    /// Every record matching `q`, page after page (limit `q.limit`).
    fn all_pages(r: &AuditReader, q: &Query) -> (Vec<u64>, usize) {
        let mut q = q.clone();
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            let p = r.page(&q).unwrap();
            pages += 1;
            assert!(p.records.len() <= q.limit);
            out.extend(ns(&p));
            match p.next {
                Some(n) => q.before = Some(n),
                None => return (out, pages),
            }
        }
    }

    fn q(limit: usize) -> Query {
        Query {
            limit,
            ..Query::default()
        }
    }

    #[test]
    fn pages_run_newest_first_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms-audit.jsonl");
        write(&path, &made(1000));
        let want: Vec<u64> = (0..1000).rev().collect();
        // Chunks smaller than a record, of odd sizes, and the real one: the
        // same records, none lost or doubled at a boundary.
        for chunk in [1, 97, 700, 4096, CHUNK] {
            let r = AuditReader::new(&path).with_chunk(chunk);
            for limit in [1, 7, 500] {
                if chunk == 1 && limit < 500 {
                    continue; // thousands of byte-sized reads per page: slow, adds nothing
                }
                let (got, pages) = all_pages(&r, &q(limit));
                assert_eq!(got, want, "chunk {chunk} limit {limit}");
                assert_eq!(
                    pages,
                    1000usize.div_ceil(limit),
                    "chunk {chunk} limit {limit}"
                );
            }
        }
        // The last page ends at the start of the file.
        let r = AuditReader::new(&path);
        let p = r.page(&q(500)).unwrap();
        let p2 = r
            .page(&Query {
                before: p.next,
                ..q(500)
            })
            .unwrap();
        assert_eq!(p2.next, None);
        assert_eq!(ns(&p2).last(), Some(&0));
        assert_eq!(p.head, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn filters_select_exactly_the_matching_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms-audit.jsonl");
        let ms = made(600);
        write(&path, &ms);
        let r = AuditReader::new(&path).with_chunk(1000);
        let expect = |f: &dyn Fn(&Made) -> bool| -> Vec<u64> {
            ms.iter().rev().filter(|m| f(m)).map(|m| m.n).collect()
        };
        let check = |query: Query, f: &dyn Fn(&Made) -> bool| {
            let want = expect(f);
            assert!(!want.is_empty() && want.len() < ms.len(), "{query:?}");
            let (got, _) = all_pages(&r, &query);
            assert_eq!(got, want, "{query:?}");
        };
        // By key: ARN, bare id (records naming the key by alias match
        // through `resources`), alias as given.
        check(
            Query {
                key: Some(KEY_A.into()),
                ..q(50)
            },
            &|m| m.key == 0,
        );
        check(
            Query {
                key: Some("bbbb-2222".into()),
                ..q(50)
            },
            &|m| m.key == 1,
        );
        check(
            Query {
                key: Some("alias/k0".into()),
                ..q(50)
            },
            &|m| m.key == 0 && m.n % 4 == 1,
        );
        // By principal: a substring of the ARN, an access key, a service.
        check(
            Query {
                principal: Some("user/ali".into()),
                ..q(50)
            },
            &|m| m.who == 2,
        );
        check(
            Query {
                principal: Some("AKIAALICE".into()),
                ..q(50)
            },
            &|m| m.who == 2,
        );
        check(
            Query {
                principal: Some("fargate".into()),
                ..q(50)
            },
            &|m| m.who == 1,
        );
        check(
            Query {
                principal: Some(":root".into()),
                ..q(50)
            },
            &|m| m.who == 0,
        );
        // By operation, exactly (not a prefix).
        check(
            Query {
                event_name: Some("Decrypt".into()),
                ..q(50)
            },
            &|m| m.op == "Decrypt",
        );
        assert!(
            r.page(&Query {
                event_name: Some("Decr".into()),
                ..q(50)
            })
            .unwrap()
            .records
            .is_empty()
        );
        // Errors only.
        check(
            Query {
                errors_only: true,
                ..q(50)
            },
            &|m| m.failed,
        );
        // A time window, both ends inclusive.
        let t0 = 1_700_000_000;
        check(
            Query {
                from: Some((t0 + 100) as f64),
                to: Some((t0 + 199) as f64),
                ..q(30)
            },
            &|m| (100..=199).contains(&m.n),
        );
        check(
            Query {
                to: Some((t0 + 10) as f64),
                ..q(30)
            },
            &|m| m.n <= 10,
        );
        // All together.
        check(
            Query {
                key: Some(KEY_B.into()),
                principal: Some("alice".into()),
                event_name: Some("Encrypt".into()),
                from: Some((t0 + 300) as f64),
                ..q(5)
            },
            &|m| m.key == 1 && m.who == 2 && m.op == "Encrypt" && m.n >= 300,
        );
        // Nothing matches: one empty page, back to the start of the file.
        let p = r
            .page(&Query {
                principal: Some("nobody".into()),
                ..q(50)
            })
            .unwrap();
        assert!(p.records.is_empty());
        assert_eq!(p.next, None);
    }

    #[test]
    fn bad_cursors_and_queries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms-audit.jsonl");
        write(&path, &made(3));
        let len = std::fs::metadata(&path).unwrap().len();
        let first_end = std::fs::read(&path)
            .unwrap()
            .iter()
            .position(|b| *b == b'\n')
            .unwrap() as u64
            + 1;
        let r = AuditReader::new(&path);
        for bad in [1, first_end - 1, first_end + 1, len + 1, u64::MAX] {
            for query in [
                Query {
                    before: Some(bad),
                    ..q(5)
                },
                Query {
                    after: Some(bad),
                    ..q(5)
                },
            ] {
                assert!(
                    matches!(r.page(&query), Err(ReadError::BadCursor(_))),
                    "{query:?}"
                );
            }
        }
        // Line starts, 0 and the end are cursors.
        assert_eq!(
            ns(&r
                .page(&Query {
                    before: Some(first_end),
                    ..q(5)
                })
                .unwrap()),
            [0]
        );
        assert_eq!(
            ns(&r
                .page(&Query {
                    after: Some(first_end),
                    ..q(5)
                })
                .unwrap()),
            [2, 1]
        );
        assert_eq!(
            ns(&r
                .page(&Query {
                    before: Some(0),
                    ..q(5)
                })
                .unwrap()),
            Vec::<u64>::new()
        );
        assert_eq!(
            ns(&r
                .page(&Query {
                    after: Some(len),
                    ..q(5)
                })
                .unwrap()),
            Vec::<u64>::new()
        );
        for bad in [
            q(0),
            q(MAX_PAGE + 1),
            Query {
                from: Some(10.0),
                to: Some(5.0),
                ..q(5)
            },
            Query {
                from: Some(f64::NAN),
                ..q(5)
            },
        ] {
            assert!(
                matches!(r.page(&bad), Err(ReadError::BadQuery(_))),
                "{bad:?}"
            );
        }
        assert_eq!(r.page(&q(MAX_PAGE)).unwrap().records.len(), 3);
        // No file yet: an empty trail.
        let none = AuditReader::new(dir.path().join("missing.jsonl"));
        let p = none.page(&q(5)).unwrap();
        assert_eq!((p.records.len(), p.next, p.head), (0, None, 0));
    }

    #[test]
    fn a_partly_written_last_line_is_not_a_record_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms-audit.jsonl");
        let ms = made(4);
        write(&path, &ms[..3]);
        let whole = std::fs::metadata(&path).unwrap().len();
        let last = line(&ms[3]);
        let (a, b) = last.split_at(last.len() / 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(a.as_bytes())
            .unwrap();
        for chunk in [5, CHUNK] {
            let r = AuditReader::new(&path).with_chunk(chunk);
            let p = r.page(&q(10)).unwrap();
            assert_eq!(ns(&p), [2, 1, 0]);
            assert_eq!(p.head, whole);
            // A cursor inside the torn line is refused, its end too.
            assert!(matches!(
                r.page(&Query {
                    before: Some(whole + a.len() as u64),
                    ..q(5)
                }),
                Err(ReadError::BadCursor(_))
            ));
            let polled = r
                .page(&Query {
                    after: Some(p.head),
                    ..q(10)
                })
                .unwrap();
            assert!(polled.records.is_empty());
            assert_eq!(polled.head, whole);
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(format!("{b}\n").as_bytes())
            .unwrap();
        let r = AuditReader::new(&path);
        let polled = r
            .page(&Query {
                after: Some(whole),
                ..q(10)
            })
            .unwrap();
        assert_eq!(ns(&polled), [3]);
        assert_eq!(polled.head, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn polling_after_head_returns_new_records_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms-audit.jsonl");
        let ms = made(12);
        write(&path, &ms[..5]);
        let r = AuditReader::new(&path).with_chunk(64);
        let first = r.page(&q(3)).unwrap();
        assert_eq!(ns(&first), [4, 3, 2]);
        write(&path, &ms[5..]);
        // Seven new records, polled 3 at a time: the oldest first, each
        // page newest first, and each head where the page ended.
        let mut head = first.head;
        let mut seen = Vec::new();
        for want in [vec![7, 6, 5], vec![10, 9, 8], vec![11]] {
            let p = r
                .page(&Query {
                    after: Some(head),
                    ..q(3)
                })
                .unwrap();
            assert_eq!(ns(&p), want);
            assert!(p.head > head);
            head = p.head;
            seen.extend(want);
        }
        assert_eq!(head, std::fs::metadata(&path).unwrap().len());
        let p = r
            .page(&Query {
                after: Some(head),
                ..q(3)
            })
            .unwrap();
        assert!(p.records.is_empty());
        assert_eq!(p.head, head);
        // Exactly `limit` new records: all of them, and the poll is done.
        write(&path, &made(15)[12..]);
        let p = r
            .page(&Query {
                after: Some(head),
                ..q(3)
            })
            .unwrap();
        assert_eq!(ns(&p), [14, 13, 12]);
        assert_eq!(p.head, std::fs::metadata(&path).unwrap().len());
        // Filters apply to polls too.
        write(&path, &made(30)[15..]);
        let p = r
            .page(&Query {
                after: Some(p.head),
                event_name: Some("DescribeKey".into()),
                ..q(50)
            })
            .unwrap();
        let want: Vec<u64> = (15..30).rev().filter(|n| n / 3 % 3 == 2).collect();
        assert_eq!(ns(&p), want);
        assert_eq!(seen, [7, 6, 5, 10, 9, 8, 11]);
    }

    /// The records of real calls: a task's volume key issued and retired by
    /// the platform, amid other calls.
    #[test]
    fn a_task_query_finds_its_key_calls_from_an_incremental_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ferry_store::Store::open(&dir.path().join("state.redb")).unwrap());
        let kms = Arc::new(
            crate::Kms::open(
                store,
                crate::RootKey::from_bytes([9; 32]),
                dir.path(),
                ACCOUNT,
                "us-east-1",
            )
            .unwrap(),
        );
        let p = crate::Platform::new(kms.clone());
        let admin = RequestContext::internal(Caller::admin(ACCOUNT), "us-east-1");
        let task = |id: &str| format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task/prod/{id}");
        let issue = |id: &str| {
            let ec = crate::platform::context::task_volume(ACCOUNT, "prod", &task(id));
            p.issue(p.platform_key_arn(), ec).unwrap()
        };
        let noise = |n: usize| {
            for _ in 0..n {
                kms.call(
                    &admin,
                    "GenerateRandom",
                    json!({"NumberOfBytes": 16}).to_string().as_bytes(),
                )
                .unwrap();
            }
        };
        let path = dir.path().join(crate::service::AUDIT_FILE);
        let r = AuditReader::new(&path).with_chunk(512);
        let names = |arn: &str, limit: usize| -> (Vec<String>, Option<u64>) {
            let page = r
                .page(&Query {
                    task_arn: Some(arn.into()),
                    ..q(limit)
                })
                .unwrap();
            let names = page
                .records
                .iter()
                .map(|v| v["eventName"].as_str().unwrap().to_owned())
                .collect();
            (names, page.next)
        };
        noise(20);
        let a = issue("a");
        noise(20);
        let b = issue("b");
        p.retire(&a.wrapped.key_arn, &a.grant_id).unwrap();
        noise(20);
        let volume_calls = ["GenerateDataKeyWithoutPlaintext", "CreateGrant", "Decrypt"];
        let (got, next) = names(&task("a"), 10);
        assert_eq!(
            got,
            [
                "RetireGrant",
                "Decrypt",
                "CreateGrant",
                "GenerateDataKeyWithoutPlaintext"
            ]
        );
        assert_eq!(next, None);
        let mut want_b: Vec<&str> = volume_calls.to_vec();
        want_b.reverse();
        assert_eq!(names(&task("b"), 10).0, want_b);
        assert_eq!(names(&task("nope"), 10).0, Vec::<String>::new());
        // Paged: the cursor goes on within the task's records.
        let (first, next) = names(&task("a"), 3);
        assert_eq!(first, ["RetireGrant", "Decrypt", "CreateGrant"]);
        let rest = r
            .page(&Query {
                task_arn: Some(task("a")),
                before: next,
                ..q(3)
            })
            .unwrap();
        assert_eq!(rest.records.len(), 1);
        assert_eq!(rest.next, None);
        // Other filters still apply.
        let only = r
            .page(&Query {
                task_arn: Some(task("a")),
                event_name: Some("Decrypt".into()),
                ..q(10)
            })
            .unwrap();
        assert_eq!(only.records.len(), 1);

        // One scan so far, of the whole file.
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(lock(&r.index).scanned, len);
        // More calls: the next query indexes only what was appended.
        noise(30);
        p.retire(&b.wrapped.key_arn, &b.grant_id).unwrap();
        let c = issue("c");
        let (got, _) = names(&task("b"), 10);
        assert_eq!(got[0], "RetireGrant");
        assert_eq!(got.len(), 4);
        assert_eq!(names(&task("c"), 10).0.len(), 3);
        let len2 = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            lock(&r.index).scanned,
            len2,
            "the first {len} bytes were read again"
        );
        // Polling a task's records.
        let head = r
            .page(&Query {
                task_arn: Some(task("c")),
                ..q(10)
            })
            .unwrap()
            .head;
        p.retire(&c.wrapped.key_arn, &c.grant_id).unwrap();
        let polled = r
            .page(&Query {
                task_arn: Some(task("c")),
                after: Some(head),
                ..q(10)
            })
            .unwrap();
        assert_eq!(polled.records.len(), 1);
        assert_eq!(polled.records[0]["eventName"], "RetireGrant");

        // A replaced file (another trail at the same path) is indexed anew.
        let old = std::fs::read(&path).unwrap();
        let cut = old.iter().position(|b| *b == b'\n').unwrap() + 1;
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, &old[..cut]).unwrap();
        assert_eq!(names(&task("a"), 10).0, Vec::<String>::new());
    }

    /// A store holding the records `ms` as the store sink writes them.
    fn stored(ms: &[Made]) -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        append(&store, ms);
        (dir, store)
    }

    fn append(store: &Arc<Store>, ms: &[Made]) {
        use crate::audit::AuditSink;
        let sink = crate::audit_store::StoreSink::new(store.clone());
        for m in ms {
            sink.append(line(m).as_bytes()).unwrap();
        }
    }

    /// The queries of the other tests, each answered from the file and from
    /// the store: the same records, page after page.
    #[test]
    fn the_store_trail_pages_and_filters_as_the_file_does() {
        let ms = made(600);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms-audit.jsonl");
        write(&path, &ms);
        let file = AuditReader::new(&path);
        let (_keep, store) = stored(&ms);
        let db = AuditReader::over_store(store.clone());
        let t0 = 1_700_000_000.0;
        let queries = [
            q(1),
            q(7),
            q(500),
            Query {
                key: Some(KEY_A.into()),
                ..q(50)
            },
            Query {
                key: Some("bbbb-2222".into()),
                ..q(13)
            },
            Query {
                principal: Some("user/ali".into()),
                ..q(50)
            },
            Query {
                event_name: Some("Decrypt".into()),
                ..q(50)
            },
            Query {
                errors_only: true,
                ..q(9)
            },
            Query {
                from: Some(t0 + 100.0),
                to: Some(t0 + 199.0),
                ..q(30)
            },
            Query {
                key: Some(KEY_B.into()),
                principal: Some("alice".into()),
                event_name: Some("Encrypt".into()),
                from: Some(t0 + 300.0),
                ..q(5)
            },
        ];
        for query in &queries {
            let (want, pages) = all_pages(&file, query);
            assert!(!want.is_empty(), "{query:?}");
            assert_eq!(all_pages(&db, query), (want, pages), "{query:?}");
        }
        // Cursors are sequence numbers: the head is the record count, and
        // a page's `next` is its oldest record's number.
        let p = db.page(&q(10)).unwrap();
        assert_eq!((p.head, p.next), (600, Some(590)));
        assert_eq!(ns(&p), (590..600).rev().collect::<Vec<u64>>());
        let older = db
            .page(&Query {
                before: Some(3),
                ..q(10)
            })
            .unwrap();
        assert_eq!((ns(&older), older.next), (vec![2, 1, 0], None));
        for bad in [601, u64::MAX] {
            assert!(matches!(
                db.page(&Query {
                    before: Some(bad),
                    ..q(5)
                }),
                Err(ReadError::BadCursor(_))
            ));
        }
        // Polling after the head: new records oldest first, bounded.
        append(&store, &made(608)[600..]);
        let polled = db
            .page(&Query {
                after: Some(p.head),
                ..q(5)
            })
            .unwrap();
        assert_eq!(ns(&polled), [604, 603, 602, 601, 600]);
        assert_eq!(polled.head, 605);
        let rest = db
            .page(&Query {
                after: Some(polled.head),
                ..q(5)
            })
            .unwrap();
        assert_eq!((ns(&rest), rest.head), (vec![607, 606, 605], 608));
        // An empty trail.
        let (_e, empty) = stored(&[]);
        let p = AuditReader::over_store(empty).page(&q(5)).unwrap();
        assert_eq!((p.records.len(), p.next, p.head), (0, None, 0));
    }

    /// A task's records from the store's trail, written by a KMS auditing
    /// into the store; the index reads only what was appended.
    #[test]
    fn a_task_query_over_the_store_finds_its_key_calls_incrementally() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
        let kms = Arc::new(
            crate::Kms::with_sink(
                store.clone(),
                crate::RootKey::from_bytes([9; 32]),
                Box::new(crate::audit_store::StoreSink::new(store.clone())),
                ACCOUNT,
                "us-east-1",
            )
            .unwrap(),
        );
        let p = crate::Platform::new(kms.clone());
        let task = |id: &str| format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task/prod/{id}");
        let issue = |id: &str| {
            let ec = crate::platform::context::task_volume(ACCOUNT, "prod", &task(id));
            p.issue(p.platform_key_arn(), ec).unwrap()
        };
        let r = AuditReader::over_store(store.clone());
        let names = |arn: &str| -> Vec<String> {
            r.page(&Query {
                task_arn: Some(arn.into()),
                ..q(10)
            })
            .unwrap()
            .records
            .iter()
            .map(|v| v["eventName"].as_str().unwrap().to_owned())
            .collect()
        };
        let a = issue("a");
        let b = issue("b");
        p.retire(&a.wrapped.key_arn, &a.grant_id).unwrap();
        assert_eq!(
            names(&task("a")),
            [
                "RetireGrant",
                "Decrypt",
                "CreateGrant",
                "GenerateDataKeyWithoutPlaintext"
            ]
        );
        assert_eq!(names(&task("b")).len(), 3);
        let len = crate::audit_store::length(&store).unwrap();
        assert_eq!(lock(&r.index).scanned, len);
        p.retire(&b.wrapped.key_arn, &b.grant_id).unwrap();
        assert_eq!(names(&task("b"))[0], "RetireGrant");
        let len2 = crate::audit_store::length(&store).unwrap();
        assert_eq!(lock(&r.index).scanned, len2, "records were read again");
    }
}
