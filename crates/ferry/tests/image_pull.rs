//! `ferry image pull` against a real registry (Debian's `docker-registry`,
//! the CNCF distribution server) on loopback, plain HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "tools/testimage.rs"]
mod testimage;
#[path = "tools/teststore.rs"]
mod teststore;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Registry {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("ferry-registry-")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is missing: install Debian's docker-registry (scripts/setup)");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = ureq::get(&format!("{base}/v2/")).call()
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "registry did not come up on {base}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            base,
            _dir: dir,
        }
    }

    /// Pushes the image with the distribution API (monolithic uploads).
    fn push(&self, repo: &str, tag: &str, img: &testimage::TestImage) {
        let (manifest, blobs) = testimage::oci_blobs(img);
        for (digest, blob) in blobs {
            let r = ureq::post(&format!("{}/v2/{repo}/blobs/uploads/", self.base))
                .send_empty()
                .unwrap();
            assert_eq!(r.status(), 202);
            let loc = r
                .headers()
                .get("location")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let loc = if loc.starts_with("http") {
                loc
            } else {
                format!("{}{loc}", self.base)
            };
            let sep = if loc.contains('?') { '&' } else { '?' };
            let r = ureq::put(&format!("{loc}{sep}digest={digest}"))
                .header("Content-Type", "application/octet-stream")
                .send(&blob[..])
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let r = ureq::put(&format!("{}/v2/{repo}/manifests/{tag}", self.base))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .send(&manifest[..])
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

#[test]
fn pull_from_local_registry() {
    let reg = Registry::start();
    let img = testimage::httpd_image();
    reg.push("library/httpd", "2.4", &img);
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let data_s = data.to_str().unwrap();
    let host = reg.base.trim_start_matches("http://");
    let name = format!("{host}/library/httpd:2.4");

    let store = teststore::serve(&data);
    let (ok, out, err) = ferry(&["image", "pull", &name, "--data-dir", data_s]);
    assert!(ok, "pull failed: {err}");
    assert!(out.starts_with(&format!("{name}\tsha256:")), "{out}");
    let got = store.resolve(&name).unwrap();
    assert_eq!(got.manifest.layers().len(), 2);
    assert_eq!(
        got.config.rootfs().diff_ids(),
        &img.config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    // The pulled layers unpack to the stand-in image.
    let root = t.path().join("rootfs");
    ferry_agent::image::unpack::unpack_image(&store, &got, &root).unwrap();
    assert!(root.join("usr/local/bin/httpd-foreground").exists());
    assert!(!root.join("etc/motd").exists(), "whiteout not applied");

    // Pulling again is a no-op on blobs; the name still resolves.
    let (ok, _, err) = ferry(&["image", "pull", &name, "--data-dir", data_s]);
    assert!(ok, "{err}");

    // A missing tag: one-line error, nothing stored.
    let before = std::fs::read_dir(data.join("images/blobs/sha256"))
        .unwrap()
        .count();
    let (ok, _, err) = ferry(&[
        "image",
        "pull",
        &format!("{host}/library/httpd:nope"),
        "--data-dir",
        data_s,
    ]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not found"), "{err}");
    assert_eq!(
        std::fs::read_dir(data.join("images/blobs/sha256"))
            .unwrap()
            .count(),
        before
    );
}
