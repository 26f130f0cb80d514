//! TaskVolumes' decisions, with a fake KMS and a fake volume engine: what
//! is created, released and retired, in which order, on each failure.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_agent::TaskStorage;
use ferry_kms::platform::{EncryptionContext, IssuedKey, PlatformError, WrappedKey};
use ferry_proto::plan::{StoragePlan, TaskPlan};
use ferry_proto::{AwsError, RequestContext};
use ferry_volume::{KmsToken, Passphrase};
use zeroize::Zeroizing;

use super::*;
use crate::efs::EfsVolumes;
use crate::engine::{EngineError, Mounted, VolumeEngine};
use crate::keys::VolumeKeys;

const CMK: &str = "arn:aws:kms:us-east-1:111122223333:key/cmk";

/// Every call either fake saw, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn log(l: &Log, s: String) {
    l.lock().unwrap().push(s);
}

struct FakeKeys {
    log: Log,
    fail_issue: bool,
}

impl VolumeKeys for FakeKeys {
    fn account(&self) -> &str {
        "111122223333"
    }
    fn issue(&self, key_arn: &str, context: EncryptionContext) -> Result<IssuedKey, PlatformError> {
        log(
            &self.log,
            format!("issue {key_arn} {}", context["ferry:taskArn"]),
        );
        if self.fail_issue {
            return Err(PlatformError::Kms {
                operation: "GenerateDataKeyWithoutPlaintext",
                error: AwsError::client("DisabledException", "key is disabled"),
            });
        }
        Ok(IssuedKey {
            plaintext: Zeroizing::new(vec![7; 64]),
            wrapped: WrappedKey {
                key_arn: key_arn.to_owned(),
                ciphertext_blob: vec![1, 2, 3],
                encryption_context: context,
            },
            grant_id: "g1".into(),
        })
    }
    fn retire(&self, key_arn: &str, grant_id: &str) -> Result<(), PlatformError> {
        log(&self.log, format!("retire {key_arn} {grant_id}"));
        Ok(())
    }
    fn new_wrapped_key(
        &self,
        _key_id: &str,
        _context: EncryptionContext,
    ) -> Result<WrappedKey, PlatformError> {
        unreachable!("task volumes never make wrapped-only keys")
    }
    fn unwrap_volume_key(&self, _w: &WrappedKey) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        unreachable!("task volumes never unwrap stored keys")
    }
    fn key_arn_for(&self, _caller: &RequestContext, _key_id: &str) -> Result<String, AwsError> {
        unreachable!("task volumes never describe keys")
    }
}

struct FakeEngine {
    log: Log,
    fail_mount: bool,
}

struct FakeMount {
    log: Log,
    target: PathBuf,
}

impl Mounted for FakeMount {
    fn target(&self) -> &Path {
        &self.target
    }
    fn unmount(self: Box<Self>) -> Result<(), EngineError> {
        log(&self.log, "unmount".into());
        Ok(())
    }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

impl VolumeEngine for FakeEngine {
    fn format(
        &self,
        image: &Path,
        size: u64,
        passphrase: &Passphrase,
        token: &KmsToken,
    ) -> Result<(), EngineError> {
        assert_eq!(passphrase.expose(), [7; 64]);
        assert_eq!(token.wrapped_data_key, [1, 2, 3]);
        std::fs::write(image, b"luks").unwrap();
        log(
            &self.log,
            format!("format {} {size} {}", name(image), token.key_arn),
        );
        Ok(())
    }
    fn format_plain(&self, image: &Path, size: u64) -> Result<(), EngineError> {
        std::fs::write(image, b"plain").unwrap();
        log(&self.log, format!("format_plain {} {size}", name(image)));
        Ok(())
    }
    fn mount(
        &self,
        image: &Path,
        target: &Path,
        passphrase: Option<&Passphrase>,
    ) -> Result<Box<dyn Mounted>, EngineError> {
        log(
            &self.log,
            format!("mount {} keyed={}", name(image), passphrase.is_some()),
        );
        if self.fail_mount {
            return Err(EngineError("loop device busy".into()));
        }
        Ok(Box::new(FakeMount {
            log: self.log.clone(),
            target: target.to_owned(),
        }))
    }
    fn unmount(&self, target: &Path) -> Result<(), EngineError> {
        log(&self.log, format!("unmount-path {}", name(target)));
        Ok(())
    }
    fn shred(&self, image: &Path) -> Result<(), EngineError> {
        std::fs::remove_file(image).unwrap();
        log(&self.log, format!("shred {}", name(image)));
        Ok(())
    }
    fn read_token(&self, _image: &Path) -> Result<KmsToken, EngineError> {
        unreachable!("task volumes never read tokens")
    }
}

struct Rig {
    dir: tempfile::TempDir,
    log: Log,
    volumes: TaskVolumes,
}

fn rig(fail_issue: bool, fail_mount: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let keys: Arc<dyn VolumeKeys> = Arc::new(FakeKeys {
        log: log.clone(),
        fail_issue,
    });
    let engine: Arc<dyn VolumeEngine> = Arc::new(FakeEngine {
        log: log.clone(),
        fail_mount,
    });
    let store = Arc::new(ferry_store::Store::open(&dir.path().join("state.redb")).unwrap());
    let efs =
        Arc::new(EfsVolumes::new(keys.clone(), engine.clone(), store, dir.path(), false).unwrap());
    let volumes = TaskVolumes::new(keys, engine, dir.path().join("tasks"), Some(efs));
    Rig { dir, log, volumes }
}

fn plan(storage: StoragePlan) -> TaskPlan {
    TaskPlan {
        task_arn: "arn:aws:ecs:us-east-1:111122223333:task/prod/t1".into(),
        task_id: "t1".into(),
        cluster_name: "prod".into(),
        account: "111122223333".into(),
        region: "us-east-1".into(),
        cpu_units: 256,
        memory_mib: 512,
        ephemeral_storage_gib: 20,
        storage,
        containers: vec![],
        volumes: vec![],
        network: None,
    }
}

fn calls(r: &Rig) -> Vec<String> {
    r.log.lock().unwrap().clone()
}

const SIZE: u64 = 20 << 30;

#[test]
fn encrypted_volume_lives_under_a_grant_retired_by_the_arn_it_was_issued_under() {
    let r = rig(false, false);
    let p = plan(StoragePlan::Encrypted {
        kms_key_arn: CMK.into(),
    });
    let root = r.volumes.attach(&p).unwrap();
    assert_eq!(root, r.dir.path().join("tasks/t1/root"));
    // The live grant is on record beside the volume, for crash recovery.
    assert_eq!(
        Grant::recorded(&r.dir.path().join("tasks/t1")),
        Some(Grant {
            key_arn: CMK.into(),
            grant_id: "g1".into()
        })
    );
    r.volumes.detach(&p, &root).unwrap();
    assert_eq!(
        calls(&r),
        [
            format!("issue {CMK} {}", p.task_arn),
            format!("format volume.luks {SIZE} {CMK}"),
            "mount volume.luks keyed=true".into(),
            "unmount".into(),
            "shred volume.luks".into(),
            format!("retire {CMK} g1"),
        ]
    );
    assert!(!r.dir.path().join("tasks/t1").exists());
}

#[test]
fn a_failed_mount_shreds_the_new_volume_and_retires_its_grant() {
    let r = rig(false, true);
    let p = plan(StoragePlan::Encrypted {
        kms_key_arn: CMK.into(),
    });
    let e = r.volumes.attach(&p).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mounting the encrypted volume: loop device busy"
    );
    assert_eq!(
        calls(&r)[2..],
        [
            "mount volume.luks keyed=true".to_string(),
            "shred volume.luks".into(),
            format!("retire {CMK} g1"),
        ]
    );
    assert!(!r.dir.path().join("tasks/t1").exists());
    // Nothing is left attached to detach.
    assert!(r.volumes.detach(&p, Path::new("/")).is_err());
}

#[test]
fn a_refused_key_fails_the_task_with_the_kms_reason_and_makes_nothing() {
    let r = rig(true, false);
    let p = plan(StoragePlan::Encrypted {
        kms_key_arn: CMK.into(),
    });
    let e = r.volumes.attach(&p).unwrap_err();
    assert_eq!(
        e.to_string(),
        "KMS GenerateDataKeyWithoutPlaintext failed: DisabledException: key is disabled"
    );
    assert_eq!(calls(&r), [format!("issue {CMK} {}", p.task_arn)]);
    assert!(!r.dir.path().join("tasks/t1").exists());
}

#[test]
fn platform_1_3_0_volumes_are_plain_and_use_no_key() {
    let r = rig(false, false);
    let p = plan(StoragePlan::Unencrypted);
    let root = r.volumes.attach(&p).unwrap();
    r.volumes.detach(&p, &root).unwrap();
    assert_eq!(
        calls(&r),
        [
            format!("format_plain volume.img {SIZE}"),
            "mount volume.img keyed=false".into(),
            "unmount".into(),
        ]
    );
    assert!(!r.dir.path().join("tasks/t1").exists());
}

#[test]
fn recovery_shreds_a_leftover_volume_and_removes_its_directory() {
    let r = rig(false, false);
    let dir = r.dir.path().join("tasks/dead");
    std::fs::create_dir_all(dir.join("root")).unwrap();
    std::fs::write(dir.join("volume.luks"), b"luks").unwrap();
    std::fs::write(
        dir.join(GRANT_FILE),
        format!(r#"{{"keyArn":"{CMK}","grantId":"g9"}}"#),
    )
    .unwrap();
    let engine = FakeEngine {
        log: r.log.clone(),
        fail_mount: false,
    };
    let keys = FakeKeys {
        log: r.log.clone(),
        fail_issue: false,
    };
    crate::recovery::release_task_dir(&engine, &keys, &dir).unwrap();
    // Not a mount point here, so nothing to unmount: the shred, then the
    // grant the dead server left live.
    assert_eq!(
        calls(&r),
        ["shred volume.luks".to_string(), format!("retire {CMK} g9")]
    );
    assert!(!dir.exists());
}

#[test]
fn describe_tells_an_attached_volumes_size_use_key_grant_and_header_token() {
    let r = rig(false, false);
    let p = plan(StoragePlan::Encrypted {
        kms_key_arn: CMK.into(),
    });
    assert_eq!(r.volumes.describe("t1"), None);
    let root = r.volumes.attach(&p).unwrap();
    // The fake engine writes no header: put a real LUKS2 volume with the
    // task's token where the image is, as the real engine would have.
    let image = r.dir.path().join("tasks/t1").join(ENCRYPTED_IMAGE);
    std::fs::remove_file(&image).unwrap();
    let token = KmsToken {
        key_arn: CMK.into(),
        wrapped_data_key: vec![1, 2, 3],
        encryption_context: context::task_volume("111122223333", "prod", &p.task_arn),
    };
    ferry_volume::format(
        &image,
        &ferry_volume::FormatOptions {
            size: 1 << 30,
            passphrase: &Passphrase::new(vec![7; 64]).unwrap(),
            token: Some(&token.to_json()),
        },
    )
    .unwrap();
    let f = r.volumes.describe("t1").unwrap();
    assert_eq!(f.size_bytes, SIZE);
    assert!(f.encrypted);
    assert_eq!(f.cipher.as_deref(), Some("aes-xts-plain64"));
    assert_eq!(f.key_bits, Some(512));
    assert_eq!(f.key_arn.as_deref(), Some(CMK));
    assert_eq!(f.grant_id.as_deref(), Some("g1"));
    // Used bytes are the mounted file system's (here the test's own).
    let st = nix::sys::statvfs::statvfs(&root).unwrap();
    assert!(f.used_bytes > 0 && f.used_bytes <= st.blocks() * st.fragment_size());
    // The token exactly as the header holds it, with the members LUKS2 adds.
    let t = f.token.unwrap();
    assert_eq!(t["type"], "ferry-kms");
    assert_eq!(t["keyslots"], serde_json::json!(["0"]));
    assert_eq!(t["keyArn"], CMK);
    assert_eq!(t["wrappedDataKey"], "AQID");
    assert_eq!(t["encryptionContext"]["ferry:taskArn"], p.task_arn.as_str());
    // Another task's id, and this one once detached: nothing.
    assert_eq!(r.volumes.describe("t2"), None);
    r.volumes.detach(&p, &root).unwrap();
    assert_eq!(r.volumes.describe("t1"), None);
}

#[test]
fn describe_of_a_plain_volume_names_no_cipher_key_or_token() {
    let r = rig(false, false);
    let p = plan(StoragePlan::Unencrypted);
    r.volumes.attach(&p).unwrap();
    let f = r.volumes.describe("t1").unwrap();
    assert_eq!(f.size_bytes, SIZE);
    assert!(!f.encrypted);
    assert_eq!(
        (f.cipher, f.key_bits, f.key_arn, f.grant_id, f.token),
        (None, None, None, None, None)
    );
}
