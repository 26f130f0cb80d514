//! Sealed image stores for tests: data keys from one fixed in-memory
//! test key (ferry_blob's `testing` feature), so every store a test
//! opens on a directory reads what another wrote; and the admin socket
//! served in-process, as `ferry server` serves it, for the CLI to reach.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, LazyLock};

use ferry_agent::image::{ImageStore, admin};
use ferry_blob::testing::MemoryKeys;

// A fixed test key: helper processes (crates/ferry/tests/agent.rs's crash
// helper) read the stores their parent wrote.
static KEYS: LazyLock<Arc<MemoryKeys>> = LazyLock::new(|| Arc::new(MemoryKeys::with_key([7; 32])));

/// The store in `dir` (e.g. `DATA_DIR/images`).
pub fn open(dir: &Path) -> ImageStore {
    let context = [("ferry:purpose".to_owned(), "image-store-test".to_owned())].into();
    ImageStore::open(dir, KEYS.clone(), context).unwrap()
}

/// Serves `DATA_DIR/images` on `DATA_DIR/run/admin.sock` (a thread for
/// the rest of the test process); returns the store.
pub fn serve(data_dir: &Path) -> ImageStore {
    let store = open(&data_dir.join("images"));
    let listener = admin::bind(data_dir).unwrap();
    let s = store.clone();
    std::thread::spawn(move || admin::serve(listener, s));
    store
}
