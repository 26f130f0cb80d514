//! Blob upload sessions of the distribution API (`POST .../blobs/uploads/`,
//! `PATCH`, `PUT ?digest=`). A session is a sealed blob being written
//! ([`ferry_blob::BlobUpload`]) and the offset reached. Sessions live in
//! memory only: a server restart loses unfinished uploads (clients start
//! again), and an idle session expires after [`IDLE_SECS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferry_blob::store::BlobUpload;

/// How long an upload may sit idle.
pub const IDLE_SECS: u64 = 15 * 60;

/// One upload.
pub struct Session {
    /// The repository (by name) it is for.
    pub repo: String,
    /// The sealed blob being written.
    pub upload: Option<BlobUpload>,
    /// Bytes received.
    pub offset: u64,
    /// Last activity.
    pub touched: Instant,
}

/// Every open upload by id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
}

impl Sessions {
    /// Starts a session; returns its id.
    pub fn start(&self, repo: &str, upload: BlobUpload) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let s = Session {
            repo: repo.to_owned(),
            upload: Some(upload),
            offset: 0,
            touched: Instant::now(),
        };
        if let Ok(mut m) = self.map.lock() {
            m.insert(id.clone(), Arc::new(Mutex::new(s)));
        }
        id
    }

    /// The session `id` of repository `repo`.
    pub fn get(&self, repo: &str, id: &str) -> Option<Arc<Mutex<Session>>> {
        let m = self.map.lock().ok()?;
        let s = m.get(id)?.clone();
        let same = s.lock().ok().is_some_and(|x| x.repo == repo);
        same.then_some(s)
    }

    /// Ends session `id` (finished or cancelled).
    pub fn remove(&self, id: &str) -> Option<Arc<Mutex<Session>>> {
        self.map.lock().ok()?.remove(id)
    }

    /// Drops idle sessions (their temporary files go with them).
    pub fn expire(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, s| {
                s.try_lock()
                    .map(|x| x.touched.elapsed().as_secs() < IDLE_SECS)
                    .unwrap_or(true)
            });
        }
    }
}

/// A `Content-Range` of a chunk: `START-END` (inclusive), as the
/// distribution spec writes it (some clients prefix `bytes `).
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

/// The `Range` header of an upload's status: `0-(offset-1)`; an empty
/// upload reports `0-0` as registries do... the spec says so only for the
/// first byte, so an empty upload omits it (`None`).
pub fn upload_range(offset: u64) -> Option<String> {
    (offset > 0).then(|| format!("0-{}", offset - 1))
}

/// A blob GET's `Range: bytes=A-B` (or `A-`, or `-N`) against a blob of
/// `len` bytes: the inclusive range to send, or `None` when it cannot be
/// satisfied.
pub fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let last = len.checked_sub(1)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
            (len.saturating_sub(n), last)
        }
        (a, "") => (a.parse().ok()?, last),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(last)),
    };
    (start <= end && start < len).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("5-4"), None);
        assert_eq!(parse_content_range("x"), None);
        assert_eq!(upload_range(0), None);
        assert_eq!(upload_range(100).as_deref(), Some("0-99"));
    }

    #[test]
    fn get_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert!(parse_range("bytes=100-", 100).is_none());
        assert!(parse_range("bytes=0-1,3-4", 100).is_none());
        assert!(parse_range("items=0-1", 100).is_none());
        assert!(parse_range("bytes=0-0", 0).is_none());
    }
}
