//! A scratch directory per fuzz input for the image targets: `dest` (what
//! the code under test may write to) next to `outside` (a sentinel tree
//! it must never touch), and the check that it did not.

use std::fs;
use std::io::Read;
use std::path::PathBuf;

pub struct Sandbox {
    // Removed on drop, whatever the input did inside it.
    dir: tempfile::TempDir,
}

const SENTINEL: &[u8] = b"outside the destination";

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap_or_else(|e| panic!("mkdir: {e}"));
        fs::write(outside.join("victim"), SENTINEL).unwrap_or_else(|e| panic!("write: {e}"));
        Self { dir }
    }

    pub fn dest(&self) -> PathBuf {
        self.dir.path().join("dest")
    }

    /// Panics if anything appeared, vanished or changed outside `dest`.
    pub fn assert_contained(&self) {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap_or_else(|e| panic!("read_dir: {e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.retain(|n| n != "dest");
        assert_eq!(
            names,
            ["outside"],
            "something was written next to the destination"
        );
        let outside: Vec<String> = fs::read_dir(self.dir.path().join("outside"))
            .unwrap_or_else(|e| panic!("read_dir: {e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            outside,
            ["victim"],
            "something was written outside the destination"
        );
        let victim = self.dir.path().join("outside/victim");
        let meta = fs::symlink_metadata(&victim).unwrap_or_else(|e| panic!("victim: {e}"));
        assert!(meta.is_file(), "the sentinel was replaced");
        let mut got = Vec::new();
        fs::File::open(&victim)
            .and_then(|mut f| f.read_to_end(&mut got))
            .unwrap_or_else(|e| panic!("reading the sentinel: {e}"));
        assert_eq!(got, SENTINEL, "the sentinel was overwritten");
    }
}

/// Whether a (possibly gzipped) tar holds device nodes. The fuzzer runs as
/// root: creating block or character devices on the host (and writing
/// through one) is a risk to the machine, not a finding, so such inputs
/// are skipped. FIFOs are skipped too: opening one blocks.
pub fn has_special_entries(data: &[u8]) -> bool {
    let gz = data.starts_with(&[0x1f, 0x8b]);
    let r: Box<dyn Read + '_> = if gz {
        Box::new(flate2::read::GzDecoder::new(data))
    } else {
        Box::new(data)
    };
    let mut ar = tar::Archive::new(r);
    let Ok(entries) = ar.entries() else {
        return false;
    };
    for e in entries {
        let Ok(e) = e else { return false };
        let t = e.header().entry_type();
        if t.is_block_special() || t.is_character_special() || t.is_fifo() {
            return true;
        }
        // A layer nested in an archive is scanned too.
        if t.is_file() && e.size() < (1 << 20) {
            let mut inner = Vec::new();
            let mut e = e;
            if e.read_to_end(&mut inner).is_ok()
                && (inner.starts_with(&[0x1f, 0x8b]) || inner.get(257..262) == Some(&b"ustar"[..]))
                && has_special_entries(&inner)
            {
                return true;
            }
        }
    }
    false
}
