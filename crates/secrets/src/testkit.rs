//! A real KMS on a temporary store for unit tests, with an in-memory audit
//! trail.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::sync::{Arc, Mutex};

use ferry_kms::audit::AuditSink;
use ferry_kms::{Kms, RootKey};
use ferry_proto::{Caller, RequestContext};
use ferry_store::Store;

pub const ACCOUNT: &str = "111122223333";
pub const REGION: &str = "us-east-1";

#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<Vec<u8>>>>);

impl AuditSink for Lines {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        self.0.lock().unwrap().push(line.to_vec());
        Ok(())
    }
}

pub struct Kit {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub kms: Arc<Kms>,
    lines: Lines,
}

impl Kit {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
        let lines = Lines::default();
        let kms = Arc::new(
            Kms::with_sink(
                store.clone(),
                RootKey::from_bytes([7; 32]),
                Box::new(lines.clone()),
                ACCOUNT,
                REGION,
            )
            .unwrap(),
        );
        Self {
            dir,
            store,
            kms,
            lines,
        }
    }

    /// The audit records written so far.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    /// Every byte of the state store's file.
    pub fn store_bytes(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("state.redb")).unwrap()
    }
}

pub fn admin() -> RequestContext {
    RequestContext::internal(Caller::admin(ACCOUNT), REGION)
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
