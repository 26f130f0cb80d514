//! `ferry image import|ls|rm` against the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "tools/testimage.rs"]
mod testimage;
#[path = "tools/teststore.rs"]
mod teststore;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

fn ferry(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` with the hash of its content.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel + "/", String::new());
                stack.push(p);
            } else if e.file_type().unwrap().is_file() {
                out.insert(rel, hex::encode(Sha256::digest(std::fs::read(&p).unwrap())));
            }
        }
    }
    out
}

#[test]
fn import_both_formats_ls_and_rm() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let data_s = data.to_str().unwrap();
    let store = teststore::serve(&data);
    let img = testimage::httpd_image();
    let oci = t.path().join("httpd-oci.tar");
    let docker = t.path().join("httpd-docker.tar");
    testimage::write_oci_archive(&img, &oci, Some("docker.io/library/httpd:2.4"));
    testimage::write_docker_archive(&img, &docker, "httpd:2.4-docker");

    let (ok, out, err) = ferry(&[
        "image",
        "import",
        oci.to_str().unwrap(),
        "--data-dir",
        data_s,
    ]);
    assert!(ok, "oci import failed: {err}");
    assert!(out.contains("httpd:2.4\tsha256:"), "{out}");
    let (ok, out, err) = ferry(&[
        "image",
        "import",
        docker.to_str().unwrap(),
        "--data-dir",
        data_s,
    ]);
    assert!(ok, "docker import failed: {err}");
    assert!(out.contains("httpd:2.4-docker\tsha256:"), "{out}");
    // --name overrides the archive's name; default tag is latest.
    let (ok, out, err) = ferry(&[
        "image",
        "import",
        oci.to_str().unwrap(),
        "--name",
        "docker.io/library/web",
        "--data-dir",
        data_s,
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("web:latest\t"), "{out}");

    let (ok, ls, _) = ferry(&["image", "ls", "--data-dir", data_s]);
    assert!(ok);
    for n in ["httpd:2.4 ", "httpd:2.4-docker ", "web:latest "] {
        assert!(ls.contains(n), "{n} missing from ls:\n{ls}");
    }

    // Both spellings of the name resolve to the same image.
    let a = store.resolve("httpd:2.4").unwrap();
    let b = store.resolve("docker.io/library/httpd:2.4").unwrap();
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.manifest.layers().len(), 2);
    // The docker archive's layers are the same content (uncompressed).
    let d = store.resolve("httpd:2.4-docker").unwrap();
    assert_eq!(d.config.rootfs().diff_ids(), a.config.rootfs().diff_ids());

    // rm removes the name and garbage-collects blobs nobody else uses.
    let blobs = || {
        std::fs::read_dir(data.join("images/blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = blobs();
    let (ok, _, err) = ferry(&["image", "rm", "httpd:2.4-docker", "--data-dir", data_s]);
    assert!(ok, "{err}");
    assert!(blobs() < before, "rm freed no blob");
    assert!(store.resolve("httpd:2.4-docker").is_err());
    assert!(store.resolve("httpd:2.4").is_ok());
    let (ok, _, err) = ferry(&["image", "rm", "httpd:2.4-docker", "--data-dir", data_s]);
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn corrupt_or_truncated_archive_leaves_store_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let data_s = data.to_str().unwrap();
    let _store = teststore::serve(&data);
    let img = testimage::httpd_image();
    let good = t.path().join("good.tar");
    testimage::write_oci_archive(&img, &good, Some("httpd:2.4"));
    let (ok, _, err) = ferry(&[
        "image",
        "import",
        good.to_str().unwrap(),
        "--data-dir",
        data_s,
    ]);
    assert!(ok, "{err}");
    let before = snapshot(&data);

    let bytes = std::fs::read(&good).unwrap();
    // Truncated in the middle of the first layer.
    let trunc = t.path().join("trunc.tar");
    std::fs::write(&trunc, &bytes[..bytes.len() / 3]).unwrap();
    // One flipped byte inside the busybox binary (in the first gzip layer).
    let mut flipped = bytes.clone();
    let at = 4096 + 512;
    flipped[at] ^= 0xff;
    let corrupt = t.path().join("corrupt.tar");
    std::fs::write(&corrupt, &flipped).unwrap();
    // A docker archive whose layer content no longer matches the diff_id.
    let mut bad = testimage::httpd_image();
    let n = bad.layers[1].len() - 1024;
    bad.layers[1].truncate(n);
    let docker = t.path().join("docker-bad.tar");
    testimage::write_docker_archive(&bad, &docker, "other:1");
    let garbage = t.path().join("garbage.tar");
    // Multi-line text the size of a tar header: tar's error quotes it.
    std::fs::write(&garbage, "not a tar archive\n".repeat(40)).unwrap();

    for (f, want) in [
        (&trunc, "truncated or corrupt"),
        (&corrupt, ""),
        (&docker, "diff_id"),
        (&garbage, ""),
    ] {
        let (ok, _, err) = ferry(&[
            "image",
            "import",
            f.to_str().unwrap(),
            "--name",
            "evil:1",
            "--data-dir",
            data_s,
        ]);
        assert!(!ok, "{} imported", f.display());
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        assert!(err.starts_with("ferry: importing"), "{err}");
        assert!(err.contains(want), "{err}");
        assert_eq!(snapshot(&data), before, "store changed by {}", f.display());
    }
}

#[test]
fn bare_tag_in_oci_index_needs_a_name() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let data_s = data.to_str().unwrap();
    let _store = teststore::serve(&data);
    let img = testimage::httpd_image();
    let oci = t.path().join("bare.tar");
    // skopeo's `oci-archive:FILE:2.4` records only the tag.
    testimage::write_oci_archive(&img, &oci, Some("2.4"));
    let (ok, _, err) = ferry(&[
        "image",
        "import",
        oci.to_str().unwrap(),
        "--data-dir",
        data_s,
    ]);
    assert!(!ok);
    assert!(err.contains("--name"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (ok, out, err) = ferry(&[
        "image",
        "import",
        oci.to_str().unwrap(),
        "--name",
        "httpd:2.4",
        "--data-dir",
        data_s,
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("httpd:2.4\t"), "{out}");
}

#[test]
fn import_from_stdin() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let _store = teststore::serve(&data);
    let docker = t.path().join("d.tar");
    testimage::write_docker_archive(&testimage::httpd_image(), &docker, "piped:1");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["image", "import", "-", "--data-dir", data.to_str().unwrap()])
        .stdin(std::fs::File::open(&docker).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("piped:1\t"));
}

#[test]
fn without_a_server_the_cli_says_to_start_one() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let (ok, _, err) = ferry(&["image", "ls", "--data-dir", data.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("no ferry server is running on") && err.contains("start it first"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !data.join("images").exists(),
        "the CLI opened the store itself"
    );
}
