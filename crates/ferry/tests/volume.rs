//! `ferry volume` end to end, as root, with real LUKS2, FUSE, loop devices and ext4.
//!
//! Every test makes its own temp dir (prefix `ferry-voltest-`) and cleans up
//! only what it made. Volumes are 1 GiB except the one 20 GiB sparse check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

fn require_root() {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap();
    assert_eq!(
        uid, "0",
        "these tests need root (FUSE, loop devices, mounts): run cargo test as root"
    );
}

struct Fixture {
    dir: tempfile::TempDir,
    mounts: Vec<PathBuf>,
}

impl Fixture {
    fn new() -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("ferry-voltest-")
            .tempdir_in("/tmp")
            .unwrap();
        Fixture {
            dir,
            mounts: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn key(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        let mut k = [0u8; 64];
        fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut k)
            .unwrap();
        fs::write(&p, k).unwrap();
        p
    }

    fn mount_dir(&mut self, name: &str) -> PathBuf {
        let p = self.path(name);
        fs::create_dir_all(&p).unwrap();
        self.mounts.push(p.clone());
        p
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Best effort after a failed assertion: leave no mount or server behind.
        for m in self.mounts.iter().rev() {
            if is_mounted(m) {
                let _ = Command::new(FERRY)
                    .args(["volume", "unmount"])
                    .arg(m)
                    .output();
            }
        }
        {
            let extra = "backing";
            let p = self.path(extra);
            if is_mounted(&p) {
                let _ = Command::new("umount").arg("-l").arg(&p).output();
            }
        }
    }
}

fn ferry(args: &[&str]) -> Output {
    Command::new(FERRY)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "ferry failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts a failure with exactly one line on stderr containing `want`.
fn one_line_error(out: Output, want: &str) {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.contains(want), "{err:?} does not mention {want:?}");
    assert!(!err.contains("panicked"), "{err}");
}

fn p(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn format(img: &Path, size: &str, key: &Path) {
    ok(ferry(&[
        "volume",
        "format",
        p(img),
        "--size",
        size,
        "--key-file",
        p(key),
    ]));
}

fn mount(img: &Path, dir: &Path, key: &Path) {
    ok(ferry(&[
        "volume",
        "mount",
        p(img),
        p(dir),
        "--key-file",
        p(key),
    ]));
}

fn unmount(dir: &Path) {
    ok(ferry(&["volume", "unmount", p(dir)]));
}

fn mountinfo() -> Vec<(String, String)> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((f[4].to_string(), f.get(sep + 2)?.to_string()))
        })
        .collect()
}

fn is_mounted(dir: &Path) -> bool {
    let d = dir.to_str().unwrap();
    mountinfo().iter().any(|(mp, _)| mp == d)
}

/// (loop name, FUSE file, server pid) of the volume mounted on `dir`.
fn stack_of(dir: &Path) -> (String, PathBuf, u32) {
    let d = dir.canonicalize().unwrap();
    let src = mountinfo()
        .into_iter()
        .rev()
        .find(|(mp, _)| Path::new(mp) == d)
        .map(|(_, s)| s)
        .expect("not mounted");
    let name = src.strip_prefix("/dev/").unwrap().to_string();
    let backing = fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).unwrap();
    let fuse_file = PathBuf::from(backing.trim());
    let runtime = fuse_file.parent().unwrap().parent().unwrap();
    let pid = fs::read_to_string(runtime.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (name, fuse_file, pid)
}

fn assert_all_gone(loop_name: &str, fuse_file: &Path, pid: u32, dir: &Path) {
    assert!(!is_mounted(dir), "ext4 still mounted");
    let backing =
        fs::read_to_string(format!("/sys/block/{loop_name}/loop/backing_file")).unwrap_or_default();
    assert!(
        !backing.contains(fuse_file.to_str().unwrap()),
        "loop device still attached"
    );
    let runtime = fuse_file.parent().unwrap().parent().unwrap();
    assert!(!runtime.exists(), "runtime dir left behind");
    let fuse_dir = fuse_file.parent().unwrap().to_str().unwrap().to_string();
    assert!(
        !mountinfo().iter().any(|(mp, _)| *mp == fuse_dir),
        "FUSE mount left behind"
    );
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty()
            || stat
                .rsplit_once(')')
                .unwrap()
                .1
                .trim_start()
                .starts_with('Z'),
        "server process {pid} still running"
    );
}

/// grep -F over a (sparse, large) file: fast where a debug-build scan is not.
fn file_contains(path: &Path, text: &str) -> bool {
    let st = Command::new("grep")
        .args(["-q", "-a", "-F", text])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.code() == Some(0) || st.code() == Some(1), "grep failed");
    st.success()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Deterministic pseudo-random bytes (xorshift), so files can be checked byte for byte.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sync() {
    run(&mut Command::new("sync"));
}

#[test]
fn encrypted_volume_is_standard_luks2_and_decrypts_independently() {
    let mut fx = Fixture::new();
    let img = fx.path("v.img");
    let key = fx.key("key");
    let dir = fx.mount_dir("mnt");
    format(&img, "1GiB", &key);
    mount(&img, &dir, &key);

    let marker = b"ferry-plaintext-marker-0123456789abcdef".repeat(100);
    let big = pattern(7, 3 << 20);
    fs::write(dir.join("a.txt"), &marker).unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/big.bin"), &big).unwrap();

    // Unwritten sectors of the plaintext view read as zeros (they are holes).
    let (_, fuse_file, _) = stack_of(&dir);
    let mut tail = vec![1u8; 1 << 20];
    fs::File::open(&fuse_file)
        .unwrap()
        .read_exact_at(&mut tail, (1 << 30) - (1 << 20))
        .unwrap();
    assert!(tail.iter().all(|&b| b == 0), "unwritten sectors not zero");
    unmount(&dir);

    // (a) none of the plaintext is in the backing file: not the marker text
    // anywhere, and none of the file's blocks at any block boundary (where
    // ext4 would have put them).
    assert!(!file_contains(&img, "ferry-plaintext-marker"));
    let blocks: std::collections::HashSet<&[u8]> = big.chunks(4096).collect();
    let raw = fs::read(&img).unwrap();
    assert!(
        !raw.chunks(4096).any(|b| blocks.contains(b)),
        "a plaintext block of big.bin is in the image"
    );
    drop(raw);

    // (b) cryptsetup reads it as LUKS2 / aes-xts-plain64 / 4096 / 512 bits.
    let dump = run(Command::new("cryptsetup").args(["luksDump", p(&img)]));
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("Version:       \t2"), "{dump}");
    assert!(dump.contains("cipher: aes-xts-plain64"), "{dump}");
    assert!(dump.contains("sector: 4096 [bytes]"), "{dump}");
    assert!(dump.contains("Key:        512 bits"), "{dump}");
    let offset: u64 = dump
        .lines()
        .find_map(|l| l.trim().strip_prefix("offset: "))
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();

    // (c) the volume key from cryptsetup + an independent AES-XTS give an
    // ext4 image in which debugfs finds the files byte for byte.
    let vk = run(Command::new("cryptsetup").args([
        "luksDump",
        "--dump-volume-key",
        "--batch-mode",
        "--key-file",
        p(&key),
        p(&img),
    ]));
    let vk = String::from_utf8_lossy(&vk.stdout);
    let hex: String = vk
        .split("MK dump:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .take(64)
        .collect();
    assert_eq!(hex.len(), 128);
    let plain = fx.path("plain.ext4");
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/tools/xts_decrypt.py");
    let mut child = Command::new("python3")
        .arg(&tool)
        .arg(&img)
        .arg(offset.to_string())
        .arg(&plain)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(hex.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "decryptor failed");
    for (inside, want) in [("/a.txt", &marker), ("/sub/big.bin", &big)] {
        let out = fx.path("dumped");
        let _ = fs::remove_file(&out);
        run(Command::new("debugfs").args(["-R", &format!("dump {inside} {}", p(&out)), p(&plain)]));
        assert_eq!(&fs::read(&out).unwrap(), want, "{inside} differs");
    }

    // And the volume mounts again with the same contents.
    mount(&img, &dir, &key);
    assert_eq!(fs::read(dir.join("sub/big.bin")).unwrap(), big);
    unmount(&dir);
    ok(ferry(&["volume", "shred", p(&img)]));
}

#[test]
fn discard_punches_holes_in_backing_file() {
    let mut fx = Fixture::new();
    let img = fx.path("v.img");
    let key = fx.key("key");
    let dir = fx.mount_dir("mnt");
    format(&img, "1GiB", &key);
    mount(&img, &dir, &key);
    fs::write(dir.join("f"), pattern(3, 200 << 20)).unwrap();
    sync();
    let full = allocated(&img);
    assert!(full > 200 << 20, "only {full} bytes allocated");
    fs::remove_file(dir.join("f")).unwrap();
    sync();
    run(Command::new("fstrim").arg(&dir));
    let after = allocated(&img);
    assert!(
        after + (150 << 20) < full,
        "fstrim freed too little: {full} -> {after}"
    );
    unmount(&dir);
    ok(ferry(&["volume", "shred", p(&img)]));
}

#[test]
fn enospc_on_backing_fs_reaches_writer_and_volume_stays_consistent() {
    let mut fx = Fixture::new();
    let backing = fx.path("backing");
    fs::create_dir(&backing).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "ferry-voltest"])
        .arg(&backing));
    let img = backing.join("v.img");
    let key = fx.key("key");
    let dir = fx.mount_dir("mnt");
    format(&img, "1GiB", &key);
    mount(&img, &dir, &key);
    let early = pattern(11, 4 << 20);
    fs::write(dir.join("early"), &early).unwrap();
    sync();
    // 256 MiB cannot fit in 96 MiB of backing store.
    let dd = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", p(&dir.join("big"))))
        .args(["bs=1M", "count=256", "conv=fsync", "status=none"])
        .output()
        .unwrap();
    assert!(
        !dd.status.success(),
        "writer saw no error although the backing store is full"
    );
    let _ = fs::remove_file(dir.join("big"));
    unmount(&dir);
    // Give the backing store room again: the volume must mount and be intact.
    run(Command::new("mount")
        .args(["-o", "remount,size=512m"])
        .arg(&backing));
    mount(&img, &dir, &key);
    assert_eq!(fs::read(dir.join("early")).unwrap(), early);
    fs::write(dir.join("later"), b"still writable").unwrap();
    sync();
    unmount(&dir);
    mount(&img, &dir, &key);
    assert_eq!(fs::read(dir.join("early")).unwrap(), early);
    assert_eq!(fs::read(dir.join("later")).unwrap(), b"still writable");
    unmount(&dir);
    run(Command::new("umount").arg(&backing));
}

#[test]
fn writer_in_memory_limited_cgroup_completes_and_verifies() {
    let mut fx = Fixture::new();
    let img = fx.path("v.img");
    let key = fx.key("key");
    let dir = fx.mount_dir("mnt");
    format(&img, "1GiB", &key);
    mount(&img, &dir, &key);
    let (_, _, pid) = stack_of(&dir);

    // The server locks its memory and (where CAP_SYS_RESOURCE allows) is an IO flusher.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let vmlck: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(vmlck > 0, "server has no locked memory");
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let flags: u64 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(7)
        .unwrap()
        .parse()
        .unwrap();
    const PF_MEMALLOC_NOIO: u64 = 0x0008_0000;
    let cap_eff = u64::from_str_radix(
        fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap()
            .trim(),
        16,
    )
    .unwrap();
    const CAP_SYS_RESOURCE: u64 = 1 << 24;
    if cap_eff & CAP_SYS_RESOURCE != 0 {
        assert!(
            flags & PF_MEMALLOC_NOIO != 0,
            "server lacks PF_MEMALLOC_NOIO (flags {flags:#x})"
        );
    } else {
        // This host drops CAP_SYS_RESOURCE, so PR_SET_IO_FLUSHER cannot be set;
        // the server must say so (and rely on O_DIRECT + mlockall, tested below).
        let runtime = stack_of(&dir)
            .1
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let log = fs::read_to_string(runtime.join("server.log")).unwrap();
        assert!(log.contains("PR_SET_IO_FLUSHER unavailable"), "{log}");
        eprintln!("note: no CAP_SYS_RESOURCE here; PF_MEMALLOC_NOIO not checked");
    }

    // A cgroup v1 memory controller limit of 48 MiB; the writer writes 384 MiB.
    let cg = PathBuf::from(format!(
        "/sys/fs/cgroup/memory/ferry-voltest-{}",
        std::process::id()
    ));
    assert!(
        Path::new("/sys/fs/cgroup/memory").is_dir(),
        "need the cgroup v1 memory controller at /sys/fs/cgroup/memory"
    );
    fs::create_dir(&cg).unwrap();
    fs::write(cg.join("memory.limit_in_bytes"), "48M").unwrap();
    let script = format!(
        "import random\n\
         r = random.Random(5)\n\
         with open('{}', 'wb') as f:\n\
         \x20   for _ in range(384):\n\
         \x20       f.write(r.randbytes(1 << 20))\n",
        p(&dir.join("big"))
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec python3 -c \"$0\"",
            p(&cg)
        ))
        .arg(&script)
        .output()
        .unwrap();
    let failcnt = fs::read_to_string(cg.join("memory.failcnt")).unwrap_or_default();
    let _ = fs::remove_dir(&cg);
    assert!(
        out.status.success(),
        "writer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        failcnt.trim().parse::<u64>().unwrap_or(0) > 0,
        "the cgroup never hit its limit, so this proved nothing"
    );
    sync();
    unmount(&dir);
    mount(&img, &dir, &key);
    let verify = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import random,sys\n\
             r = random.Random(5)\n\
             with open('{}', 'rb') as f:\n\
             \x20   for _ in range(384):\n\
             \x20       assert f.read(1 << 20) == r.randbytes(1 << 20), 'mismatch'\n\
             \x20   assert f.read(1) == b''\n",
            p(&dir.join("big"))
        ))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "data differs: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    unmount(&dir);
}

fn sha(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn bad_inputs_get_one_line_errors_and_change_nothing() {
    let mut fx = Fixture::new();
    let img = fx.path("v.img");
    let key = fx.key("key");
    let other = fx.key("other");
    let dir = fx.mount_dir("mnt");
    format(&img, "1GiB", &key);
    let before = sha(&img);

    one_line_error(
        ferry(&["volume", "mount", p(&img), p(&dir), "--key-file", p(&other)]),
        "wrong passphrase",
    );
    one_line_error(
        ferry(&[
            "volume",
            "mount",
            p(&img),
            p(&fx.path("nope")),
            "--key-file",
            p(&key),
        ]),
        "does not exist",
    );
    assert_eq!(sha(&img), before, "a failed mount changed the image");
    assert!(!is_mounted(&dir));

    // Not LUKS at all.
    let junk = fx.path("junk.img");
    fs::write(&junk, pattern(1, 2 << 20)).unwrap();
    let junk_sha = sha(&junk);
    one_line_error(
        ferry(&["volume", "mount", p(&junk), p(&dir), "--key-file", p(&key)]),
        "not a LUKS2 volume",
    );
    one_line_error(ferry(&["volume", "shred", p(&junk)]), "not a LUKS2 volume");
    assert_eq!(sha(&junk), junk_sha);

    // LUKS1 and a LUKS2 with an unsupported cipher, both made by cryptsetup.
    for (name, args, want) in [
        ("luks1.img", vec!["--type", "luks1"], "LUKS version 1"),
        (
            "cbc.img",
            vec![
                "--type",
                "luks2",
                "--cipher",
                "aes-cbc-essiv:sha256",
                "--key-size",
                "256",
            ],
            "unsupported cipher aes-cbc-essiv:sha256",
        ),
    ] {
        let f = fx.path(name);
        fs::File::create(&f).unwrap().set_len(64 << 20).unwrap();
        run(Command::new("cryptsetup")
            .args(["luksFormat", "--batch-mode", "--pbkdf", "pbkdf2"])
            .args(["--pbkdf-force-iterations", "1000", "--key-file", p(&key)])
            .args(&args)
            .arg(&f));
        let h = sha(&f);
        one_line_error(
            ferry(&["volume", "mount", p(&f), p(&dir), "--key-file", p(&key)]),
            want,
        );
        assert_eq!(sha(&f), h, "{name} changed");
    }

    // Corrupt both LUKS2 header copies' JSON areas.
    let bad = fx.path("corrupt.img");
    fs::copy(&img, &bad).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&bad).unwrap();
    f.write_all_at(&[b'#'; 512], 4096).unwrap();
    f.write_all_at(&[b'#'; 512], 16384 + 4096).unwrap();
    drop(f);
    let h = sha(&bad);
    one_line_error(
        ferry(&["volume", "mount", p(&bad), p(&dir), "--key-file", p(&key)]),
        "corrupt LUKS2 header",
    );
    assert_eq!(sha(&bad), h);

    // Sizes outside 1..=200 GiB create nothing.
    for size in ["0", "1023MiB", "201GiB", "lots"] {
        let f = fx.path("sized.img");
        let out = ferry(&[
            "volume",
            "format",
            p(&f),
            "--size",
            size,
            "--key-file",
            p(&key),
        ]);
        one_line_error(out, "size");
        assert!(!f.exists(), "format --size {size} created a file");
    }
    // Format never overwrites.
    one_line_error(
        ferry(&[
            "volume",
            "format",
            p(&img),
            "--size",
            "1GiB",
            "--key-file",
            p(&key),
        ]),
        "already exists",
    );
    assert_eq!(sha(&img), before);
    // Unmounting something that is not a ferry volume.
    one_line_error(ferry(&["volume", "unmount", p(&dir)]), "not mounted");
}

#[test]
fn key_file_from_stdin() {
    let mut fx = Fixture::new();
    let img = fx.path("v.img");
    let key = fx.key("key");
    let dir = fx.mount_dir("mnt");
    let stdin_run = |args: &[&str]| {
        Command::new(FERRY)
            .args(args)
            .stdin(fs::File::open(&key).unwrap())
            .output()
            .unwrap()
    };
    ok(stdin_run(&[
        "volume",
        "format",
        p(&img),
        "--size",
        "1GiB",
        "--key-file",
        "-",
    ]));
    ok(stdin_run(&[
        "volume",
        "mount",
        p(&img),
        p(&dir),
        "--key-file",
        "-",
    ]));
    fs::write(dir.join("f"), b"via stdin").unwrap();
    unmount(&dir);
    mount(&img, &dir, &key);
    assert_eq!(fs::read(dir.join("f")).unwrap(), b"via stdin");
    unmount(&dir);
}

#[test]
fn shred_leaves_nothing_and_header_is_unrecoverable() {
    let mut fx = Fixture::new();
    let img = fx.path("v.img");
    let key = fx.key("key");
    let dir = fx.mount_dir("mnt");
    format(&img, "1GiB", &key);
    mount(&img, &dir, &key);
    fs::write(dir.join("secret"), b"top secret").unwrap();
    let (loop_name, fuse_file, pid) = stack_of(&dir);
    unmount(&dir);
    assert_all_gone(&loop_name, &fuse_file, pid, &dir);

    // A second name for the inode shows what shred did to the bytes in place.
    let witness = fx.path("witness");
    fs::hard_link(&img, &witness).unwrap();
    let mut header_before = vec![0u8; 1 << 20];
    fs::File::open(&img)
        .unwrap()
        .read_exact_at(&mut header_before, 0)
        .unwrap();
    ok(ferry(&["volume", "shred", p(&img)]));
    assert!(!img.exists(), "image still there");
    let mut header_after = vec![0u8; 1 << 20];
    fs::File::open(&witness)
        .unwrap()
        .read_exact_at(&mut header_after, 0)
        .unwrap();
    assert!(!contains(&header_after, b"LUKS\xba\xbe"));
    assert!(!contains(&header_after, b"SKUL\xba\xbe"));
    assert!(!contains(&header_after, b"aes-xts-plain64"));
    // Keyslot 0's area (32 KiB .. 32 KiB + 252 KiB): no 4 KiB block survived.
    for off in (32 << 10..(32 << 10) + (252 << 10)).step_by(4096) {
        assert_ne!(
            header_before[off..off + 4096],
            header_after[off..off + 4096],
            "keyslot block at {off} unchanged"
        );
    }
    let dump = Command::new("cryptsetup")
        .args(["luksDump", p(&witness)])
        .output()
        .unwrap();
    assert!(!dump.status.success(), "cryptsetup still reads a header");
    let vk = Command::new("cryptsetup")
        .args([
            "luksDump",
            "--dump-volume-key",
            "--batch-mode",
            "--key-file",
        ])
        .arg(&key)
        .arg(&witness)
        .output()
        .unwrap();
    assert!(!vk.status.success(), "volume key still recoverable");
}

#[test]
fn twenty_gib_volume_is_sparse() {
    let mut fx = Fixture::new();
    let img = fx.path("v.img");
    let key = fx.key("key");
    let dir = fx.mount_dir("mnt");
    format(&img, "20GiB", &key);
    assert_eq!(fs::metadata(&img).unwrap().len(), (20 << 30) + (1 << 20));
    mount(&img, &dir, &key);
    let df = run(Command::new("df").args(["-B1", "--output=size"]).arg(&dir));
    let size: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(size > 19 << 30, "ext4 is only {size} bytes");
    unmount(&dir);
    let used = allocated(&img);
    // The ext4 journal (128 MiB at this size) is preallocated, so that its
    // writes never need new host space on a full disk (docs/volume-engine.md,
    // "A full disk"); everything else stays sparse.
    assert!(
        used < (128 + 64) << 20,
        "a new 20 GiB volume uses {used} bytes"
    );
    ok(ferry(&["volume", "shred", p(&img)]));
}

#[test]
fn plain_mode_uses_the_same_stack_unencrypted() {
    let mut fx = Fixture::new();
    let img = fx.path("plain.img");
    let dir = fx.mount_dir("mnt");
    ok(ferry(&[
        "volume",
        "format",
        p(&img),
        "--size",
        "1GiB",
        "--plain",
    ]));
    ok(ferry(&["volume", "mount", p(&img), p(&dir), "--plain"]));
    let (loop_name, _, _) = stack_of(&dir);
    assert_eq!(
        fs::read_to_string(format!("/sys/block/{loop_name}/loop/dio"))
            .unwrap()
            .trim(),
        "1",
        "loop device without direct I/O"
    );
    fs::write(dir.join("f"), b"plain-mode-visible-text").unwrap();
    unmount(&dir);
    assert!(file_contains(&img, "plain-mode-visible-text"));
    ok(ferry(&["volume", "mount", p(&img), p(&dir), "--plain"]));
    assert_eq!(fs::read(dir.join("f")).unwrap(), b"plain-mode-visible-text");
    unmount(&dir);
}

#[test]
fn used_volume_without_ext4_is_not_reformatted() {
    let mut fx = Fixture::new();
    let img = fx.path("plain.img");
    let dir = fx.mount_dir("mnt");
    ok(ferry(&[
        "volume",
        "format",
        p(&img),
        "--size",
        "1GiB",
        "--plain",
    ]));
    // Data somewhere, but no ext4 superblock.
    fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all_at(&pattern(9, 1 << 20), 100 << 20)
        .unwrap();
    let h = sha(&img);
    one_line_error(
        ferry(&["volume", "mount", p(&img), p(&dir), "--plain"]),
        "refusing to reformat",
    );
    assert_eq!(sha(&img), h);
    assert!(!is_mounted(&dir));
}
