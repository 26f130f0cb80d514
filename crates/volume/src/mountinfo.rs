//! The one reader of `/proc/self/mountinfo` for the host side of ferry
//! (the volume engine and the host storage that builds on it): mount points
//! with their octal escapes (`\040` for a space) decoded, so paths with
//! spaces are found too.

use std::path::{Path, PathBuf};

/// One mount: where, and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount point.
    pub target: PathBuf,
    /// The mount source (a device, `overlay`, a FUSE name, ...).
    pub source: String,
}

/// The mounts of this process's mount namespace, in mount order.
pub fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| parse(&s))
        .unwrap_or_default()
}

/// Parses mountinfo text (proc(5)): field 5 is the mount point; the
/// source is the second field after the ` - ` separator.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mp = f.get(4)?;
            let sep = f.iter().position(|x| *x == "-")?;
            let src = f.get(sep + 2)?;
            Some(Mount {
                target: PathBuf::from(unescape(mp)),
                source: unescape(src),
            })
        })
        .collect()
}

/// Whether `p` is a mount point.
pub fn is_mount_point(p: &Path) -> bool {
    mounts().iter().any(|m| m.target == p)
}

/// The source of the topmost mount at `target`.
pub fn source_of(target: &Path) -> Option<String> {
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.target == target)
        .map(|m| m.source)
}

/// Mount points strictly below `p`, deepest first (the order to unmount).
pub fn mounts_under(p: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|m| m.target)
        .filter(|m| m != p && m.starts_with(p))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    v
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/x\\"), "/x\\");
    }

    #[test]
    fn parses_targets_and_sources() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext4 /dev/loop3 rw\n\
                    37 36 0:42 / /mnt/a\\040b/x rw shared:2 - overlay overlay rw,lowerdir=/l\n\
                    garbage\n";
        let m = parse(text);
        assert_eq!(
            m,
            [
                Mount {
                    target: "/mnt/a b".into(),
                    source: "/dev/loop3".into()
                },
                Mount {
                    target: "/mnt/a b/x".into(),
                    source: "overlay".into()
                },
            ]
        );
    }

    #[test]
    fn this_process_sees_its_root() {
        assert!(is_mount_point(Path::new("/")));
        assert!(
            mounts_under(Path::new("/"))
                .iter()
                .all(|m| m != Path::new("/"))
        );
    }
}
