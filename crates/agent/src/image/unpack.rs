//! Applying an image's layers to a directory, bottom layer first, with OCI
//! whiteouts: `.wh.NAME` deletes NAME from the layers below, and
//! `.wh..wh..opq` empties its directory of what the layers below put there.
//!
//! Each layer is read once; see [`apply_layer`] for how whiteouts and the
//! layer's own entries are kept apart.
//!
//! For a task in a user namespace the owners are shifted while unpacking
//! ([`unpack_image_as`]): a file of container uid `n` is written as host
//! uid `base + n`, so the container sees the image's owners and the host
//! sees only the task's unprivileged range (Docker's userns-remap).

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use ferry_blob::BlobError;
use flate2::read::GzDecoder;

use super::{Image, ImageError, ImageStore, io_err, one_line, read_err};
use crate::userns::IdRange;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// How a layer blob is compressed (detected from its first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
}

/// A layer blob as an uncompressed tar stream; `label` names it in errors.
pub fn layer_reader<'a>(
    blob: impl Read + 'a,
    label: &str,
) -> Result<(Box<dyn Read + 'a>, Compression), ImageError> {
    let mut f = BufReader::new(blob);
    let mut magic = [0u8; 4];
    let mut n = 0;
    // A short read is not the end of the stream: fill the magic.
    while n < magic.len() {
        let k = f
            .read(&mut magic[n..])
            .map_err(read_err(&format!("layer {label}")))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let head = io::Cursor::new(magic[..n].to_vec()).chain(f);
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Ok((Box::new(GzDecoder::new(head)), Compression::Gzip))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Err(ImageError::Unsupported(format!(
            "layer {label} is zstd-compressed, which is not supported"
        )))
    } else {
        Ok((Box::new(head), Compression::None))
    }
}

/// Unpacks every layer of `image` into `dest` (created if missing), each
/// read through the store's sealed reader.
pub fn unpack_image(store: &ImageStore, image: &Image, dest: &Path) -> Result<(), ImageError> {
    unpack_image_as(store, image, dest, None)
}

/// [`unpack_image`], with every owner shifted into `ids` when given (the
/// root directory too: it is the container's `/`).
pub fn unpack_image_as(
    store: &ImageStore,
    image: &Image,
    dest: &Path,
    ids: Option<IdRange>,
) -> Result<(), ImageError> {
    fs::create_dir_all(dest).map_err(io_err(format!("creating {}", dest.display())))?;
    // The container's `/` (layers do not carry it): 0755 as Docker makes
    // it, whatever the server's umask.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("chmod {}", dest.display())))?;
    }
    if let Some(r) = ids {
        std::os::unix::fs::lchown(dest, Some(r.base()), Some(r.base()))
            .map_err(io_err(format!("chown {}", dest.display())))?;
    }
    for layer in image.manifest.layers() {
        let digest = layer.digest().to_string();
        apply_layer_as(store.open_blob(&digest)?, &digest, dest, ids)?;
    }
    Ok(())
}

pub(crate) fn corrupt(label: &str) -> impl Fn(io::Error) -> ImageError + '_ {
    move |e| {
        if e.get_ref().is_some_and(|i| i.is::<BlobError>()) {
            return read_err(label)(e);
        }
        // tar's errors keep the OS error as their source; show both.
        let why = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        ImageError::Corrupt(one_line(&format!("layer {label}: {e}{why}")))
    }
}

/// Reads `r` to its end: a sealed reader checks its digest there, gzip its
/// checksum. What a tar leaves after its end marker is still read.
pub(crate) fn drain(mut r: impl Read, label: &str) -> Result<(), ImageError> {
    io::copy(&mut r, &mut io::sink()).map_err(corrupt(label))?;
    Ok(())
}

/// Applies one layer blob (a stream: the store's sealed reader) to `dest`,
/// in one pass; then reads the blob to its end so that its digest is
/// checked (a swapped blob fails here). `label` names it in errors.
///
/// Whiteouts only ever hide lower layers, and a layer's own entries may
/// come before or after its whiteouts in the tar, so the paths this layer
/// wrote (and their parents) are remembered and never removed by its own
/// whiteouts.
pub fn apply_layer(blob: impl Read, label: &str, dest: &Path) -> Result<(), ImageError> {
    apply_layer_as(blob, label, dest, None)
}

/// [`apply_layer`], with owners shifted into `ids` when given: an owner
/// outside the range fails the layer (as Docker's userns-remap does: it
/// cannot be represented in the task's namespace).
pub fn apply_layer_as(
    mut blob: impl Read,
    label: &str,
    dest: &Path,
    ids: Option<IdRange>,
) -> Result<(), ImageError> {
    fs::create_dir_all(dest).map_err(io_err(format!("creating {}", dest.display())))?;
    let (r, _) = layer_reader(&mut blob, label)?;
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    // Shifted owners are set after each entry is written.
    ar.set_preserve_ownerships(ids.is_none());
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let mut written: HashSet<PathBuf> = HashSet::new();
    for entry in ar.entries().map_err(corrupt(label))? {
        let mut entry = entry.map_err(corrupt(label))?;
        let path = entry.path().map_err(corrupt(label))?.into_owned();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            // A whiteout whose directory is outside the rootfs (or behind
            // a symlink) hides nothing.
            let Some(target) = inside(dest, &path) else {
                continue;
            };
            if name == OPAQUE {
                if let Some(dir) = target.parent()
                    && let Ok(rd) = fs::read_dir(dir)
                {
                    for e in rd.flatten() {
                        if !written.contains(&e.path()) {
                            remove_any(&e.path())?;
                        }
                    }
                }
            } else {
                let victim = target.with_file_name(hidden);
                if !written.contains(&victim) {
                    remove_any(&victim)?;
                }
            }
            continue;
        }
        let Some(target) = inside(dest, &path) else {
            // `.`, `/` or a path escaping the root: let tar decide (it
            // refuses escapes and skips the root itself).
            entry.unpack_in(dest).map_err(corrupt(label))?;
            continue;
        };
        // A path that changes kind (dir <-> file/link) replaces what is below.
        if let Ok(meta) = fs::symlink_metadata(&target) {
            let new_is_dir = entry.header().entry_type() == tar::EntryType::Directory;
            if !(meta.is_dir() && new_is_dir) {
                remove_any(&target)?;
            }
        }
        // Directories tar makes on the way (a layer need not list them)
        // belong to the container's root.
        let made = match ids {
            Some(_) => missing_dirs(dest, &target),
            None => Vec::new(),
        };
        let unpacked = entry.unpack_in(dest).map_err(corrupt(label))?;
        if let Some(r) = ids
            && unpacked
        {
            for d in &made {
                std::os::unix::fs::lchown(d, Some(r.base()), Some(r.base()))
                    .map_err(io_err(format!("chown {}", d.display())))?;
            }
            shift_owner(entry.header(), &target, r, label)?;
        }
        let mut p = target.as_path();
        while p != dest && written.insert(p.to_path_buf()) {
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
    }
    drain(ar.into_inner(), label)?;
    drain(blob, label)
}

/// The directories between `dest` and `target` that do not exist yet,
/// deepest first.
fn missing_dirs(dest: &Path, target: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut p = target.parent();
    while let Some(d) = p {
        if d == dest || !d.starts_with(dest) || fs::symlink_metadata(d).is_ok() {
            break;
        }
        out.push(d.to_path_buf());
        p = d.parent();
    }
    out
}

/// Gives the entry just written at `target` its header's owner shifted
/// into `ids`. chown(2) clears set-user/group-id bits of non-directories,
/// so those get their mode again. A hard link shares the inode of an
/// entry already shifted.
fn shift_owner(
    h: &tar::Header,
    target: &Path,
    ids: IdRange,
    label: &str,
) -> Result<(), ImageError> {
    let kind = h.entry_type();
    if kind.is_hard_link() {
        return Ok(());
    }
    let bad = |what: &str| {
        ImageError::Unsupported(format!(
            "layer {label}: {} has {what} outside the {} ids a task's user namespace maps",
            target.display(),
            crate::userns::RANGE_SIZE
        ))
    };
    let uid = h.uid().map_err(corrupt(label))?;
    let gid = h.gid().map_err(corrupt(label))?;
    let host_uid = ids.host(uid).ok_or_else(|| bad(&format!("uid {uid}")))?;
    let host_gid = ids.host(gid).ok_or_else(|| bad(&format!("gid {gid}")))?;
    std::os::unix::fs::lchown(target, Some(host_uid), Some(host_gid))
        .map_err(io_err(format!("chown {}", target.display())))?;
    if let Ok(mode) = h.mode()
        && mode & 0o6000 != 0
        && !kind.is_dir()
        && !kind.is_symlink()
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(target, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io_err(format!("chmod {}", target.display())))?;
    }
    Ok(())
}

/// `dest/rel`, provided `rel` stays inside `dest` and no directory on the
/// way is a symlink (a layer's symlink must not redirect a whiteout or a
/// replacement outside the rootfs).
fn inside(dest: &Path, rel: &Path) -> Option<PathBuf> {
    let mut out = dest.to_path_buf();
    let comps: Vec<_> = rel
        .components()
        .filter(|c| !matches!(c, Component::CurDir | Component::RootDir))
        .collect();
    for (i, c) in comps.iter().enumerate() {
        let Component::Normal(s) = c else {
            return None;
        };
        out.push(s);
        if i + 1 < comps.len() {
            match fs::symlink_metadata(&out) {
                Ok(m) if m.file_type().is_symlink() => return None,
                _ => {}
            }
        }
    }
    (out != dest).then_some(out)
}

fn remove_any(p: &Path) -> Result<(), ImageError> {
    let r = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => Ok(()),
    };
    r.map_err(io_err(format!("removing {}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn apply(l: &Path, root: &Path) -> Result<(), ImageError> {
        apply_layer(File::open(l).unwrap(), &l.display().to_string(), root)
    }

    fn layer(dir: &Path, name: &str, entries: &[(&str, Option<&str>)]) -> PathBuf {
        let p = dir.join(name);
        let mut b = tar::Builder::new(File::create(&p).unwrap());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
            }
        }
        b.finish().unwrap();
        p
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        let l1 = layer(
            t.path(),
            "l1.tar",
            &[
                ("etc/", None),
                ("etc/a", Some("a")),
                ("etc/b", Some("b")),
                ("opq/", None),
                ("opq/old", Some("old")),
                ("keep", Some("1")),
            ],
        );
        let l2 = layer(
            t.path(),
            "l2.tar",
            &[
                ("etc/.wh.a", Some("")),
                ("opq/new", Some("new")),
                ("opq/.wh..wh..opq", Some("")),
                ("keep", Some("2")),
            ],
        );
        apply(&l1, &root).unwrap();
        apply(&l2, &root).unwrap();
        assert!(!root.join("etc/a").exists());
        assert_eq!(fs::read_to_string(root.join("etc/b")).unwrap(), "b");
        assert!(!root.join("opq/old").exists());
        assert_eq!(fs::read_to_string(root.join("opq/new")).unwrap(), "new");
        assert_eq!(fs::read_to_string(root.join("keep")).unwrap(), "2");
        assert!(!root.join("etc/.wh.a").exists());
    }

    #[test]
    fn whiteout_through_symlink_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("victim"), "x").unwrap();
        let root = t.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let l = layer(t.path(), "l.tar", &[("link/.wh.victim", Some(""))]);
        apply(&l, &root).unwrap();
        assert!(outside.join("victim").exists());
    }

    #[test]
    fn owners_are_shifted_into_the_tasks_range() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test chowns files to other uids: run it as root"
        );
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("l.tar");
        let mut b = tar::Builder::new(File::create(&p).unwrap());
        let mut add =
            |path: &str, kind: tar::EntryType, uid: u64, mode: u32, link: Option<&str>| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(kind);
                h.set_uid(uid);
                h.set_gid(uid);
                h.set_mode(mode);
                h.set_size(0);
                match link {
                    Some(l) => b.append_link(&mut h, path, l).unwrap(),
                    None => b.append_data(&mut h, path, io::empty()).unwrap(),
                }
            };
        add("home/app/", tar::EntryType::Directory, 1000, 0o750, None);
        add("home/app/f", tar::EntryType::Regular, 1000, 0o640, None);
        // No entry for usr/ or usr/bin/: tar makes them.
        add("usr/bin/su", tar::EntryType::Regular, 0, 0o4755, None);
        add("usr/bin/sh", tar::EntryType::Symlink, 0, 0o777, Some("su"));
        add(
            "usr/bin/su2",
            tar::EntryType::Link,
            0,
            0o4755,
            Some("usr/bin/su"),
        );
        b.finish().unwrap();
        drop(b);
        let root = t.path().join("rootfs");
        let ids = IdRange::slot(1).unwrap();
        apply_layer_as(File::open(&p).unwrap(), "l", &root, Some(ids)).unwrap();
        let meta = |rel: &str| fs::symlink_metadata(root.join(rel)).unwrap();
        assert_eq!(
            (meta("home/app").uid(), meta("home/app").gid()),
            (166_536, 166_536)
        );
        assert_eq!(meta("home/app/f").uid(), 166_536);
        assert_eq!(meta("usr/bin/su").uid(), 165_536);
        // chown did not take the set-user-id bit away.
        assert_eq!(meta("usr/bin/su").permissions().mode() & 0o7777, 0o4755);
        assert_eq!(meta("usr/bin/sh").uid(), 165_536, "the symlink itself");
        assert_eq!(meta("usr").uid(), 165_536, "a directory tar made");
        assert_eq!(meta("usr/bin").uid(), 165_536);
        assert_eq!(meta("usr/bin/su2").ino(), meta("usr/bin/su").ino());

        // An owner the namespace cannot map fails the layer, naming it.
        let p2 = t.path().join("big.tar");
        let mut b = tar::Builder::new(File::create(&p2).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_uid(70_000);
        h.set_gid(0);
        h.set_mode(0o644);
        h.set_size(0);
        b.append_data(&mut h, "big", io::empty()).unwrap();
        b.finish().unwrap();
        drop(b);
        let err = apply_layer_as(File::open(&p2).unwrap(), "big", &root, Some(ids)).unwrap_err();
        assert!(err.to_string().contains("uid 70000"), "{err}");

        // Without a range the owners are the header's.
        let plain = t.path().join("plain");
        apply_layer(File::open(&p).unwrap(), "l", &plain).unwrap();
        assert_eq!(
            fs::symlink_metadata(plain.join("home/app")).unwrap().uid(),
            1000
        );
    }
}
