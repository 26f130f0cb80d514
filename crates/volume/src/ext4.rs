//! Where a freshly made ext4 keeps its journal and its bitmaps and inode
//! tables, read from the superblock, the group descriptors and the journal
//! inode's extent tree on the device itself.
//!
//! The full-disk handling (docs/volume-engine.md, "A full disk") needs both
//! right after mkfs. They used to come from `debugfs -R "stat <8>"` and
//! `dumpe2fs`, two forks that read the same few blocks and cost ~25-35 ms of
//! each task start; a few `pread`s of the device give the same numbers.
//! Everything read is checked against the device's size: a malformed file
//! system gives an error, never a panic or an unbounded walk.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// What could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// Reading the device failed.
    #[error("reading the file system: {0}")]
    Io(#[from] std::io::Error),
    /// The file system is not one this reader understands.
    #[error("ext4 layout: {0}")]
    Layout(&'static str),
}

/// A journal extent: `(first block, block count)`.
pub type Extent = (u64, u64);

/// The parts of the superblock the layout needs.
#[derive(Debug, Clone, Copy)]
struct Super {
    block_size: u64,
    blocks: u64,
    first_data_block: u64,
    blocks_per_group: u64,
    inodes_per_group: u64,
    inode_size: u64,
    desc_size: u64,
    journal_inum: u64,
}

const SB_OFFSET: u64 = 1024;
const EXT4_MAGIC: u16 = 0xEF53;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_META_BG: u32 = 0x10;
const EXTENTS_FL: u32 = 0x0008_0000;
const EXTENT_MAGIC: u16 = 0xF30A;
/// ext4 trees are at most 5 levels deep.
const MAX_DEPTH: u16 = 5;

fn u16_at(b: &[u8], at: usize) -> Result<u16, Ext4Error> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(Ext4Error::Layout("short read"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Ext4Error> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(Ext4Error::Layout("short read"))
}

/// Whether `dev` starts with an ext2/3/4 superblock (its magic).
pub fn is_ext4(dev: &File) -> std::io::Result<bool> {
    let mut b = [0u8; 1024];
    dev.read_exact_at(&mut b, SB_OFFSET)?;
    Ok(has_magic(&b))
}

/// The magic at byte 56 of the superblock `b`.
fn has_magic(b: &[u8]) -> bool {
    u16_at(b, 56).is_ok_and(|m| m == EXT4_MAGIC)
}

/// The layout of the ext4 on `dev`.
pub struct Layout<'a> {
    dev: &'a File,
    sb: Super,
    /// Per group: (block bitmap, inode bitmap, inode table first block).
    groups: Vec<(u64, u64, u64)>,
}

impl<'a> Layout<'a> {
    /// Reads the superblock and the group descriptors of `dev`.
    pub fn read(dev: &'a File) -> Result<Self, Ext4Error> {
        let mut b = [0u8; 1024];
        dev.read_exact_at(&mut b, SB_OFFSET)?;
        if !has_magic(&b) {
            return Err(Ext4Error::Layout("no ext4 superblock"));
        }
        let log = u32_at(&b, 24)?;
        if log > 6 {
            return Err(Ext4Error::Layout("block size"));
        }
        let incompat = u32_at(&b, 96)?;
        if incompat & INCOMPAT_META_BG != 0 {
            // Descriptors are spread over the disk; mkfs here never asks for it.
            return Err(Ext4Error::Layout("meta_bg"));
        }
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let blocks_hi = if is64 { u64::from(u32_at(&b, 336)?) } else { 0 };
        let sb = Super {
            block_size: 1024 << log,
            blocks: u64::from(u32_at(&b, 4)?) | (blocks_hi << 32),
            first_data_block: u64::from(u32_at(&b, 20)?),
            blocks_per_group: u64::from(u32_at(&b, 32)?),
            inodes_per_group: u64::from(u32_at(&b, 40)?),
            inode_size: u64::from(u16_at(&b, 88)?),
            desc_size: if is64 {
                u64::from(u16_at(&b, 254)?)
            } else {
                32
            },
            journal_inum: u64::from(u32_at(&b, 224)?),
        };
        if sb.blocks_per_group == 0
            || sb.inodes_per_group == 0
            || sb.inode_size < 128
            || sb.desc_size < 32
            || sb.first_data_block >= sb.blocks
        {
            return Err(Ext4Error::Layout("superblock values"));
        }
        // Seeking to the end works for block devices too (their st_size is 0).
        let dev_len = std::io::Seek::seek(&mut &*dev, std::io::SeekFrom::End(0))?;
        if sb.blocks.saturating_mul(sb.block_size) > dev_len {
            return Err(Ext4Error::Layout("file system larger than the device"));
        }
        let count = (sb.blocks - sb.first_data_block).div_ceil(sb.blocks_per_group);
        let table_len = count.saturating_mul(sb.desc_size);
        let table_at = (sb.first_data_block + 1) * sb.block_size;
        // Bounds the allocation below by the device, whatever the fields say.
        if table_at.saturating_add(table_len) > dev_len {
            return Err(Ext4Error::Layout("group descriptors beyond the device"));
        }
        let mut gdt =
            vec![0u8; usize::try_from(table_len).map_err(|_| Ext4Error::Layout("groups"))?];
        dev.read_exact_at(&mut gdt, table_at)?;
        let d = usize::try_from(sb.desc_size).map_err(|_| Ext4Error::Layout("descriptor size"))?;
        let mut groups = Vec::with_capacity(gdt.len() / d);
        for g in gdt.chunks_exact(d) {
            let hi = |at| -> Result<u64, Ext4Error> {
                Ok(if is64 && d >= 64 {
                    u64::from(u32_at(g, at)?) << 32
                } else {
                    0
                })
            };
            let bb = u64::from(u32_at(g, 0)?) | hi(0x20)?;
            let ib = u64::from(u32_at(g, 4)?) | hi(0x24)?;
            let it = u64::from(u32_at(g, 8)?) | hi(0x28)?;
            let table_end =
                it.saturating_add((sb.inodes_per_group * sb.inode_size).div_ceil(sb.block_size));
            for blk in [bb, ib, table_end - 1] {
                if blk >= sb.blocks {
                    return Err(Ext4Error::Layout(
                        "group descriptor outside the file system",
                    ));
                }
            }
            groups.push((bb, ib, it));
        }
        Ok(Layout { dev, sb, groups })
    }

    /// Bytes per block.
    pub fn block_size(&self) -> u64 {
        self.sb.block_size
    }

    fn inode_table_blocks(&self) -> u64 {
        (self.sb.inodes_per_group * self.sb.inode_size).div_ceil(self.sb.block_size)
    }

    /// Byte ranges `[start, end)` of the block and inode bitmaps and the
    /// inode tables, sorted and merged (what `dumpe2fs` lists per group).
    pub fn metadata_ranges(&self) -> Vec<(u64, u64)> {
        let len = self.inode_table_blocks();
        let mut r: Vec<(u64, u64)> = self
            .groups
            .iter()
            .flat_map(|&(bb, ib, it)| [(bb, bb + 1), (ib, ib + 1), (it, it + len)])
            .collect();
        r.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, b) in r {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let bs = self.sb.block_size;
        merged.into_iter().map(|(a, b)| (a * bs, b * bs)).collect()
    }

    /// The journal's data extents in blocks (index blocks of the extent
    /// tree are not included, as in `debugfs`'s `stat <8>` list).
    pub fn journal_extents(&self) -> Result<Vec<Extent>, Ext4Error> {
        let ino = self.sb.journal_inum;
        if ino == 0 {
            return Err(Ext4Error::Layout("no journal"));
        }
        let group = (ino - 1) / self.sb.inodes_per_group;
        let index = (ino - 1) % self.sb.inodes_per_group;
        let &(_, _, table) = usize::try_from(group)
            .ok()
            .and_then(|g| self.groups.get(g))
            .ok_or(Ext4Error::Layout("journal inode outside the groups"))?;
        let mut inode = [0u8; 128];
        self.dev.read_exact_at(
            &mut inode,
            table * self.sb.block_size + index * self.sb.inode_size,
        )?;
        if u32_at(&inode, 0x20)? & EXTENTS_FL == 0 {
            return Err(Ext4Error::Layout("journal without extents"));
        }
        let mut out = Vec::new();
        self.walk(&inode[0x28..0x28 + 60], MAX_DEPTH, &mut out)?;
        Ok(out)
    }

    /// Collects the leaf extents of the extent tree node `node`.
    fn walk(&self, node: &[u8], budget: u16, out: &mut Vec<Extent>) -> Result<(), Ext4Error> {
        if u16_at(node, 0)? != EXTENT_MAGIC {
            return Err(Ext4Error::Layout("extent header"));
        }
        let entries = usize::from(u16_at(node, 2)?);
        let depth = u16_at(node, 6)?;
        if depth >= budget {
            return Err(Ext4Error::Layout("extent tree too deep"));
        }
        for i in 0..entries {
            let e = node
                .get(12 + 12 * i..24 + 12 * i)
                .ok_or(Ext4Error::Layout("extent entries"))?;
            if depth == 0 {
                let len = u64::from(u16_at(e, 4)?);
                // Above 32768 the extent is unwritten, of len - 32768 blocks.
                let len = if len > 32768 { len - 32768 } else { len };
                let start = (u64::from(u16_at(e, 6)?) << 32) | u64::from(u32_at(e, 8)?);
                if len == 0 || start.saturating_add(len) > self.sb.blocks {
                    return Err(Ext4Error::Layout("extent outside the file system"));
                }
                out.push((start, len));
            } else {
                let leaf = u64::from(u32_at(e, 4)?) | (u64::from(u16_at(e, 8)?) << 32);
                if leaf >= self.sb.blocks {
                    return Err(Ext4Error::Layout("extent index outside the file system"));
                }
                let bs =
                    usize::try_from(self.sb.block_size).map_err(|_| Ext4Error::Layout("block"))?;
                let mut block = vec![0u8; bs];
                self.dev
                    .read_exact_at(&mut block, leaf * self.sb.block_size)?;
                self.walk(&block, depth, out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The block ranges `(first, last)` of the bitmaps and inode tables in
    /// `dumpe2fs` output, sorted and merged.
    fn dumpe2fs_ranges(text: &str) -> Vec<(u64, u64)> {
        let mut r: Vec<(u64, u64)> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let rest = l
                    .strip_prefix("Block bitmap at ")
                    .or_else(|| l.strip_prefix("Inode bitmap at "))
                    .or_else(|| l.strip_prefix("Inode table at "))?;
                let span = rest.split_whitespace().next()?;
                let (a, b) = span.split_once('-').unwrap_or((span, span));
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect();
        r.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, b) in r {
            match merged.last_mut() {
                Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    /// The extents in debugfs's `stat` output, index blocks skipped.
    fn debugfs_extents(stat: &str) -> Vec<Extent> {
        let mut out = Vec::new();
        let i = stat.find("EXTENTS:").unwrap();
        for item in stat[i + "EXTENTS:".len()..].split([',', '\n']) {
            let item = item.trim();
            let Some((_, phys)) = item.split_once("):") else {
                continue;
            };
            if item.starts_with("(ETB") {
                continue;
            }
            let (a, b) = phys.split_once('-').unwrap_or((phys, phys));
            let (a, b): (u64, u64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
            out.push((a, b - a + 1));
        }
        out
    }

    fn mkfs(path: &std::path::Path, size: u64, extra: &[&str]) {
        std::fs::File::create(path).unwrap().set_len(size).unwrap();
        let st = Command::new("mkfs.ext4")
            .args(crate::mount::MKFS_ARGS)
            .args(extra)
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// The reader gives what debugfs and dumpe2fs give, for the file
    /// systems the mount makes and for other shapes (a journal in several
    /// extents, 32-bit descriptors, a 1 KiB block size).
    #[test]
    fn agrees_with_debugfs_and_dumpe2fs() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(u64, &[&str])] = &[
            (20 << 30, &[]),
            (1 << 30, &[]),
            (3 << 30, &["-J", "size=1024"]),
            (512 << 20, &["-O", "^64bit"]),
            (256 << 20, &["-b", "1024"]),
        ];
        for (i, (size, extra)) in cases.iter().enumerate() {
            let img = dir.path().join(format!("fs{i}.img"));
            mkfs(&img, *size, extra);
            let f = File::open(&img).unwrap();
            let layout = Layout::read(&f).unwrap();
            let bs = layout.sb.block_size;

            let out = Command::new("dumpe2fs").arg(&img).output().unwrap();
            let want: Vec<(u64, u64)> = dumpe2fs_ranges(&String::from_utf8_lossy(&out.stdout))
                .into_iter()
                .map(|(a, b)| (a * bs, (b + 1) * bs))
                .collect();
            assert!(!want.is_empty());
            assert_eq!(layout.metadata_ranges(), want, "case {i}");

            let out = Command::new("debugfs")
                .args(["-R", "stat <8>"])
                .arg(&img)
                .output()
                .unwrap();
            let want = debugfs_extents(&String::from_utf8_lossy(&out.stdout));
            assert!(!want.is_empty());
            assert_eq!(layout.journal_extents().unwrap(), want, "case {i}");
        }
    }

    #[test]
    fn refuses_what_is_not_ext4_or_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, vec![0u8; 1 << 20]).unwrap();
        assert!(Layout::read(&File::open(&junk).unwrap()).is_err());

        let img = dir.path().join("fs.img");
        mkfs(&img, 64 << 20, &[]);
        // A block count beyond the device.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&img)
            .unwrap();
        f.write_all_at(&u32::MAX.to_le_bytes(), SB_OFFSET + 4)
            .unwrap();
        assert!(matches!(
            Layout::read(&f),
            Err(Ext4Error::Layout("file system larger than the device"))
        ));
        // Every byte of the superblock's first 256 bytes flipped in turn:
        // an error or a layout, never a panic.
        mkfs(&dir.path().join("fs2.img"), 64 << 20, &[]);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("fs2.img"))
            .unwrap();
        for at in 0..256u64 {
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, SB_OFFSET + at).unwrap();
            f.write_all_at(&[!b[0]], SB_OFFSET + at).unwrap();
            if let Ok(l) = Layout::read(&f) {
                let _ = l.metadata_ranges();
                let _ = l.journal_extents();
            }
            f.write_all_at(&b, SB_OFFSET + at).unwrap();
        }
        assert!(Layout::read(&f).unwrap().journal_extents().is_ok());
    }
}
