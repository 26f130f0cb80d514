//! Builds a stand-in `httpd:2.4` image from busybox-static for the tests
//! and writes it as an oci-archive and as a `docker save` archive.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// An image: uncompressed layer tars plus its config JSON.
pub struct TestImage {
    pub layers: Vec<Vec<u8>>,
    pub config: serde_json::Value,
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, path, std::io::empty()).unwrap();
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, path, data).unwrap();
}

fn symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_mtime(1_600_000_000);
    b.append_link(&mut h, path, target).unwrap();
}

/// Applets the stand-in image links to busybox.
const APPLETS: &[&str] = &[
    "sh", "httpd", "cat", "echo", "sleep", "ls", "id", "env", "pwd", "wget", "true", "false",
    "kill", "[", "seq", "head", "touch", "mkdir", "test", "grep", "ps", "hostname", "nslookup",
    "ip",
];

/// The stand-in `httpd:2.4`: busybox with applet links, the htdocs
/// directory and an `httpd-foreground` that runs busybox httpd on port 80.
/// Two layers, the second with a whiteout, as real images have.
pub fn httpd_image() -> TestImage {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox is missing: install busybox-static (scripts/setup)");
    let mut b = tar::Builder::new(Vec::new());
    for d in [
        "bin/",
        "etc/",
        "tmp/",
        "usr/",
        "usr/local/",
        "usr/local/bin/",
        "usr/local/apache2/",
        "usr/local/apache2/htdocs/",
        "home/",
        "home/app/",
        "proc/",
        "sys/",
        "dev/",
    ] {
        dir(&mut b, d);
    }
    file(&mut b, "bin/busybox", 0o755, &busybox);
    for a in APPLETS {
        symlink(&mut b, &format!("bin/{a}"), "busybox");
    }
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app:/home/app:/bin/sh\n",
    );
    file(&mut b, "etc/group", 0o644, b"root:x:0:\napp:x:2345:\n");
    file(&mut b, "etc/motd", 0o644, b"removed by the upper layer\n");
    file(
        &mut b,
        "usr/local/apache2/htdocs/index.html",
        0o644,
        b"<html><body><h1>It works!</h1></body></html>\n",
    );
    let l1 = b.into_inner().unwrap();

    let mut b = tar::Builder::new(Vec::new());
    dir(&mut b, "etc/");
    file(&mut b, "etc/.wh.motd", 0o644, b"");
    dir(&mut b, "usr/local/bin/");
    file(
        &mut b,
        "usr/local/bin/httpd-foreground",
        0o755,
        b"#!/bin/sh\nexec busybox httpd -f -v -p 80 -h /usr/local/apache2/htdocs\n",
    );
    let l2 = b.into_inner().unwrap();

    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HTTPD_PREFIX=/usr/local/apache2"],
            "Cmd": ["httpd-foreground"],
            "WorkingDir": "/usr/local/apache2",
            "ExposedPorts": {"80/tcp": {}}
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(&l1), sha(&l2)]}
    });
    TestImage {
        layers: vec![l1, l2],
        config,
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn add(b: &mut tar::Builder<File>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).unwrap();
}

/// The image as OCI blobs (gzip layers): (manifest, [(digest, blob)]),
/// config and layers only.
pub fn oci_blobs(img: &TestImage) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let config = serde_json::to_vec(&img.config).unwrap();
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    for l in &img.layers {
        let gz = gzip(l);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha(&gz), "size": gz.len()
        }));
        blobs.push((sha(&gz), gz));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(&config), "size": config.len()},
        "layers": layers
    }))
    .unwrap();
    blobs.push((sha(&config), config));
    (manifest, blobs)
}

/// Writes an oci-archive (gzip layers) naming the image `ref_name` in the
/// index's `org.opencontainers.image.ref.name`, as skopeo does.
pub fn write_oci_archive(img: &TestImage, path: &Path, ref_name: Option<&str>) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let (manifest, blobs) = oci_blobs(img);
    for (digest, blob) in &blobs {
        add(&mut b, &format!("blobs/sha256/{}", &digest[7..]), blob);
    }
    add(
        &mut b,
        &format!("blobs/sha256/{}", &sha(&manifest)[7..]),
        &manifest,
    );
    let mut desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(&manifest), "size": manifest.len()
    });
    if let Some(n) = ref_name {
        desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": n});
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "manifests": [desc]
    }))
    .unwrap();
    add(&mut b, "index.json", &index);
    b.finish().unwrap();
}

/// Writes a classic `docker save` archive (uncompressed `<id>/layer.tar`).
pub fn write_docker_archive(img: &TestImage, path: &Path, repo_tag: &str) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    let config = serde_json::to_vec(&img.config).unwrap();
    let config_name = format!("{}.json", &sha(&config)[7..]);
    let mut layer_paths = Vec::new();
    for l in &img.layers {
        let p = format!("{}/layer.tar", &sha(l)[7..]);
        add(&mut b, &p, l);
        layer_paths.push(p);
    }
    add(&mut b, &config_name, &config);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name, "RepoTags": [repo_tag], "Layers": layer_paths
    }]))
    .unwrap();
    add(&mut b, "manifest.json", &manifest);
    b.finish().unwrap();
}
