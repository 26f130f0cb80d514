//! The KMS ciphertext blob format and the Decrypt path behind it.
//!
//! The first input byte picks a mode:
//! - even: the rest is an edit program (pairs of position, xor mask; a
//!   final odd byte truncates or extends) applied to a blob this KMS
//!   really made, under its real key. Decrypt of the edited blob must
//!   answer `InvalidCiphertextException`, or (only when the edits cancel
//!   out) succeed with the original plaintext;
//! - odd: the rest is a blob as a client would send it. Decrypt must fail
//!   with `InvalidCiphertextException` (it was not made by this KMS).
//!
//! In both modes, a blob that parses re-assembles to the same bytes, and
//! decrypting under a changed encryption context fails.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use ferry_kms::audit::AuditSink;
use ferry_kms::blob;
use ferry_kms::ops::data::Decrypt;
use ferry_kms::{Kms, RootKey};
use ferry_proto::{Caller, JsonService, RequestContext};
use libfuzzer_sys::fuzz_target;

const ACCOUNT: &str = "111122223333";
const PLAINTEXT: &[u8] = b"the task volume's data key: 64 bytes of it, as ferry asks for...";

struct Discard;

impl AuditSink for Discard {
    fn append(&self, _line: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

struct Fixture {
    kms: Kms,
    ctx: RequestContext,
    context: BTreeMap<String, String>,
    blob: Vec<u8>,
}

fn fixture() -> Option<Fixture> {
    // The store file is unlinked once open: nothing is left on disk
    // whatever way the fuzzer exits.
    let dir = tempfile::tempdir().ok()?;
    let store = Arc::new(ferry_store::Store::open(&dir.path().join("state.redb")).ok()?);
    drop(dir);
    let kms = Kms::with_sink(
        store,
        RootKey::from_bytes([7; 32]),
        Box::new(Discard),
        ACCOUNT,
        "us-east-1",
    )
    .ok()?;
    let ctx = RequestContext::internal(Caller::admin(ACCOUNT), "us-east-1");
    let key = kms.call(&ctx, "CreateKey", b"{}").ok()?;
    let key_id = key["KeyMetadata"]["KeyId"].as_str()?.to_owned();
    let context: BTreeMap<String, String> = [
        ("aws:ecs:clusterAccount", ACCOUNT),
        ("aws:ecs:clusterName", "default"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let body = serde_json::json!({
        "KeyId": key_id,
        "Plaintext": b64(PLAINTEXT),
        "EncryptionContext": context,
    });
    let out = kms
        .call(&ctx, "Encrypt", body.to_string().as_bytes())
        .ok()?;
    let blob = unb64(out["CiphertextBlob"].as_str()?)?;
    Some(Fixture {
        kms,
        ctx,
        context,
        blob,
    })
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn decrypt(
    f: &Fixture,
    data: &[u8],
    context: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let op = Decrypt {
        ciphertext_blob: data,
        encryption_context: context,
        key_id: None,
        dry_run: false,
    };
    f.kms
        .execute(&f.ctx, &op)
        .map(|d| d.plaintext.to_vec())
        .map_err(|e| e.code)
}

fn check_format(data: &[u8]) {
    if let Ok(p) = blob::parse(data) {
        assert_eq!(blob::header(p.key_arn, p.material_version), p.header);
        let (Ok(iv), Ok(tag)) = (p.iv.try_into(), p.tag.try_into()) else {
            panic!("parsed IV or tag of the wrong length");
        };
        assert_eq!(blob::assemble(p.header, iv, tag, p.ciphertext), data);
    }
}

fuzz_target!(|data: &[u8]| {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    let Some(f) = FIXTURE.get_or_init(fixture) else {
        panic!("the KMS fixture could not be set up");
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let candidate = if mode % 2 == 0 {
        let mut b = f.blob.clone();
        let mut edits = rest.chunks_exact(3);
        for e in &mut edits {
            let pos = usize::from(u16::from_be_bytes([e[0], e[1]]));
            if let Some(x) = b.get_mut(pos) {
                *x ^= e[2];
            }
        }
        match edits.remainder() {
            [n] if n % 2 == 0 => b.truncate(usize::from(*n)),
            [n] => b.extend(std::iter::repeat_n(0u8, usize::from(*n))),
            [n, m] => b.truncate(usize::from(u16::from_be_bytes([*n, *m]))),
            _ => {}
        }
        b
    } else {
        rest.to_vec()
    };
    check_format(&candidate);
    match decrypt(f, &candidate, &f.context) {
        Ok(pt) => {
            assert_eq!(candidate, f.blob, "an altered blob decrypted");
            assert_eq!(pt, PLAINTEXT, "the blob decrypted to other plaintext");
            let mut other = f.context.clone();
            other.insert("aws:ecs:clusterName".into(), "other".into());
            assert_eq!(
                decrypt(f, &candidate, &other).err().as_deref(),
                Some("InvalidCiphertextException"),
                "decrypted under another encryption context"
            );
        }
        Err(code) => assert_eq!(
            code, "InvalidCiphertextException",
            "tampered blob answered {code}"
        ),
    }
});
