//! Asymmetric, HMAC and imported keys through the JSON API: key specs and
//! usages, Sign/Verify, RSAES-OAEP, GetPublicKey checked with OpenSSL
//! directly, MACs, data key pairs, the import flow with expiry, rotation
//! refusals, the audit record, and persistence across a restart.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_kms::audit::AuditSink;
use ferry_kms::{Kms, RootKey};
use ferry_proto::{Caller, JsonService, RequestContext};
use ferry_store::Store;
use openssl::pkey::PKey;
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";

struct Lines(Arc<Mutex<Vec<String>>>);

impl AuditSink for Lines {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(line).into_owned());
        Ok(())
    }
}

fn open(dir: &std::path::Path, audit: Arc<Mutex<Vec<String>>>) -> Kms {
    let store = Arc::new(Store::open(&dir.join("state.redb")).unwrap());
    Kms::with_sink(
        store,
        RootKey::from_bytes([5; 32]),
        Box::new(Lines(audit)),
        ACCOUNT,
        "us-east-1",
    )
    .unwrap()
}

fn admin() -> RequestContext {
    RequestContext::internal(Caller::admin(ACCOUNT), "us-east-1")
}

fn call(kms: &Kms, op: &str, body: Value) -> Result<Value, (String, String)> {
    kms.call(&admin(), op, body.to_string().as_bytes())
        .map_err(|e| (e.code, e.message))
}

fn code(r: Result<Value, (String, String)>) -> String {
    r.unwrap_err().0
}

fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}

fn unb64(v: &Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap()).unwrap()
}

fn create(kms: &Kms, spec: &str, usage: &str) -> Value {
    call(
        kms,
        "CreateKey",
        json!({"KeySpec": spec, "KeyUsage": usage}),
    )
    .unwrap()["KeyMetadata"]
        .clone()
}

#[test]
fn key_specs_usages_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), Arc::default());
    let m = create(&kms, "RSA_2048", "SIGN_VERIFY");
    assert_eq!(m["KeySpec"], "RSA_2048");
    assert_eq!(m["CustomerMasterKeySpec"], "RSA_2048");
    assert_eq!(m["KeyUsage"], "SIGN_VERIFY");
    assert_eq!(m["SigningAlgorithms"].as_array().unwrap().len(), 6);
    assert!(m.get("EncryptionAlgorithms").is_none());
    let m = create(&kms, "RSA_3072", "ENCRYPT_DECRYPT");
    assert_eq!(
        m["EncryptionAlgorithms"],
        json!(["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
    );
    let m = create(&kms, "ECC_NIST_P384", "SIGN_VERIFY");
    assert_eq!(m["SigningAlgorithms"], json!(["ECDSA_SHA_384"]));
    let m = create(&kms, "ECC_SECG_P256K1", "SIGN_VERIFY");
    assert_eq!(m["SigningAlgorithms"], json!(["ECDSA_SHA_256"]));
    let m = create(&kms, "HMAC_384", "GENERATE_VERIFY_MAC");
    assert_eq!(m["MacAlgorithms"], json!(["HMAC_SHA_384"]));
    assert_eq!(m["KeyState"], "Enabled");
    // Refused combinations and values outside the model.
    for (spec, usage) in [
        ("ECC_NIST_P256", "ENCRYPT_DECRYPT"),
        ("HMAC_256", "SIGN_VERIFY"),
        ("SYMMETRIC_DEFAULT", "SIGN_VERIFY"),
        ("RSA_2048", "GENERATE_VERIFY_MAC"),
    ] {
        let r = call(
            &kms,
            "CreateKey",
            json!({"KeySpec": spec, "KeyUsage": usage}),
        );
        assert_eq!(code(r), "ValidationException", "{spec} {usage}");
    }
    // No KeyUsage means ENCRYPT_DECRYPT, which an ECC key cannot have.
    assert_eq!(
        code(call(&kms, "CreateKey", json!({"KeySpec": "ECC_NIST_P256"}))),
        "ValidationException"
    );
    for body in [
        json!({"KeySpec": "RSA_1024"}),
        json!({"KeyUsage": "SIGN"}),
        json!({"Origin": "HSM"}),
        json!({"CustomerMasterKeySpec": "ML_DSA_44"}),
    ] {
        let (c, msg) = call(&kms, "CreateKey", body.clone()).unwrap_err();
        assert_eq!(c, "ValidationException", "{body}");
        assert!(msg.contains("Member must satisfy enum value set"), "{msg}");
    }
    assert_eq!(
        code(call(
            &kms,
            "CreateKey",
            json!({"KeySpec": "SM2", "KeyUsage": "SIGN_VERIFY"})
        )),
        "UnsupportedOperationException"
    );
    // Rotation is for symmetric keys only.
    let id = create(&kms, "ECC_NIST_P256", "SIGN_VERIFY")["KeyId"].clone();
    for op in ["EnableKeyRotation", "RotateKeyOnDemand"] {
        assert_eq!(
            code(call(&kms, op, json!({"KeyId": id}))),
            "UnsupportedOperationException"
        );
    }
    // Symmetric operations on a signing key: InvalidKeyUsageException.
    let (c, msg) = call(
        &kms,
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"x")}),
    )
    .unwrap_err();
    assert_eq!(c, "InvalidKeyUsageException");
    assert!(msg.ends_with("key usage is SIGN_VERIFY which is not valid for Encrypt."));
    assert_eq!(
        code(call(
            &kms,
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256"})
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(call(
            &kms,
            "GetPublicKey",
            json!({"KeyId": "alias/aws/ecs-ephemeral"})
        )),
        "UnsupportedOperationException"
    );
}

#[test]
fn signatures_verify_with_openssl_and_failures_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let audit: Arc<Mutex<Vec<String>>> = Arc::default();
    let kms = open(dir.path(), audit.clone());
    for (spec, algs) in [
        ("RSA_2048", ferry_kms::asym::RSA_SIGNING),
        ("ECC_NIST_P256", &["ECDSA_SHA_256"][..]),
        ("ECC_NIST_P521", &["ECDSA_SHA_512"][..]),
    ] {
        let id = create(&kms, spec, "SIGN_VERIFY")["Arn"].clone();
        let pk = call(&kms, "GetPublicKey", json!({"KeyId": id})).unwrap();
        assert_eq!(pk["KeySpec"], spec);
        let public = PKey::public_key_from_der(&unb64(&pk["PublicKey"])).unwrap();
        for alg in algs {
            let msg = b"the message";
            let sig = call(
                &kms,
                "Sign",
                json!({"KeyId": id, "Message": b64(msg), "SigningAlgorithm": alg}),
            )
            .unwrap();
            let sig = unb64(&sig["Signature"]);
            // OpenSSL, independently, with the public key alone.
            let hash = match &alg[alg.len() - 3..] {
                "256" => openssl::hash::MessageDigest::sha256(),
                "384" => openssl::hash::MessageDigest::sha384(),
                _ => openssl::hash::MessageDigest::sha512(),
            };
            let mut v = openssl::sign::Verifier::new(hash, &public).unwrap();
            if alg.starts_with("RSASSA_PSS") {
                v.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS).unwrap();
            }
            v.update(msg).unwrap();
            assert!(v.verify(&sig).unwrap(), "{spec} {alg}");
            // DIGEST: the same digest verifies; a wrong length is refused.
            let digest = openssl::hash::hash(hash, msg).unwrap();
            let ok = call(
                &kms,
                "Verify",
                json!({"KeyId": id, "Message": b64(&digest), "MessageType": "DIGEST",
                       "Signature": b64(&sig), "SigningAlgorithm": alg}),
            )
            .unwrap();
            assert_eq!(ok["SignatureValid"], true);
            let (c, m) = call(
                &kms,
                "Sign",
                json!({"KeyId": id, "Message": b64(&digest[1..]), "MessageType": "DIGEST",
                       "SigningAlgorithm": alg}),
            )
            .unwrap_err();
            assert_eq!(c, "ValidationException");
            assert!(m.starts_with("Digest is invalid length"), "{m}");
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert_eq!(
                code(call(
                    &kms,
                    "Verify",
                    json!({"KeyId": id, "Message": b64(msg), "Signature": b64(&bad),
                           "SigningAlgorithm": alg}),
                )),
                "KMSInvalidSignatureException"
            );
        }
        let wrong = if spec.starts_with("RSA") {
            "ECDSA_SHA_256"
        } else {
            "RSASSA_PSS_SHA_256"
        };
        assert_eq!(
            code(call(
                &kms,
                "Sign",
                json!({"KeyId": id, "Message": b64(b"m"), "SigningAlgorithm": wrong})
            )),
            "InvalidKeyUsageException"
        );
        assert_eq!(
            code(call(
                &kms,
                "Sign",
                json!({"KeyId": id, "Message": b64(b"m"), "SigningAlgorithm": "RSA"})
            )),
            "ValidationException"
        );
        assert_eq!(
            code(call(
                &kms,
                "Sign",
                json!({"KeyId": id, "Message": b64(&[0u8; 4097]), "SigningAlgorithm": algs[0]})
            )),
            "ValidationException"
        );
    }
    // The record names the key and the algorithm, never the message.
    let lines = audit.lock().unwrap();
    let sign = lines
        .iter()
        .find(|l| l.contains("\"eventName\":\"Sign\""))
        .unwrap();
    let rec: Value = serde_json::from_str(sign).unwrap();
    assert!(rec["requestParameters"]["signingAlgorithm"].is_string());
    assert!(rec["requestParameters"].get("message").is_none());
    assert!(rec["responseElements"].is_null());
    assert!(!sign.contains(&b64(b"the message")));
}

#[test]
fn rsa_encryption_hmac_and_data_key_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), Arc::default());
    let id = create(&kms, "RSA_2048", "ENCRYPT_DECRYPT")["Arn"].clone();
    let pk = call(&kms, "GetPublicKey", json!({"KeyId": id})).unwrap();
    let public = PKey::public_key_from_der(&unb64(&pk["PublicKey"])).unwrap();
    // A ciphertext made by OpenSSL with the public key decrypts here.
    let rsa = public.rsa().unwrap();
    let mut ct = vec![0u8; 256];
    rsa.public_encrypt(b"secret", &mut ct, openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    let out = call(
        &kms,
        "Decrypt",
        json!({"KeyId": id, "CiphertextBlob": b64(&ct), "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}),
    )
    .unwrap();
    assert_eq!(unb64(&out["Plaintext"]), b"secret");
    // The algorithm is required, and must be the one used.
    assert_eq!(
        code(call(
            &kms,
            "Decrypt",
            json!({"KeyId": id, "CiphertextBlob": b64(&ct)})
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(call(
            &kms,
            "Decrypt",
            json!({"KeyId": id, "CiphertextBlob": b64(&ct), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
        )),
        "InvalidCiphertextException"
    );
    // Round trip at the size limit; one byte more is refused.
    let pt = vec![3u8; 190];
    let enc = call(
        &kms,
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(&pt), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
    )
    .unwrap();
    assert_eq!(unb64(&enc["CiphertextBlob"]).len(), 256);
    let dec = call(
        &kms,
        "Decrypt",
        json!({"KeyId": id, "CiphertextBlob": enc["CiphertextBlob"], "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
    )
    .unwrap();
    assert_eq!(unb64(&dec["Plaintext"]), pt);
    assert_eq!(
        code(call(
            &kms,
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(&[3u8; 191]), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
        )),
        "ValidationException"
    );

    // HMAC: the MAC verifies, a flipped one does not (checked against an
    // independent HMAC with imported material in the e2e test).
    let h = create(&kms, "HMAC_256", "GENERATE_VERIFY_MAC")["Arn"].clone();
    let mac = call(
        &kms,
        "GenerateMac",
        json!({"KeyId": h, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256"}),
    )
    .unwrap();
    let mut m = unb64(&mac["Mac"]);
    assert_eq!(m.len(), 32);
    let body = |mac: &[u8]| json!({"KeyId": h, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256", "Mac": b64(mac)});
    assert_eq!(call(&kms, "VerifyMac", body(&m)).unwrap()["MacValid"], true);
    m[0] ^= 1;
    assert_eq!(
        code(call(&kms, "VerifyMac", body(&m))),
        "KMSInvalidMacException"
    );
    assert_eq!(
        code(call(
            &kms,
            "GenerateMac",
            json!({"KeyId": h, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_512"})
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(call(
            &kms,
            "GenerateMac",
            json!({"KeyId": id, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256"})
        )),
        "InvalidKeyUsageException"
    );

    // Data key pairs: the private key, sealed under a symmetric key,
    // decrypts with Decrypt and belongs to the public key.
    let sym = call(&kms, "CreateKey", json!({})).unwrap()["KeyMetadata"]["Arn"].clone();
    for spec in ["ECC_NIST_P256", "RSA_2048"] {
        let pair = call(
            &kms,
            "GenerateDataKeyPair",
            json!({"KeyId": sym, "KeyPairSpec": spec, "EncryptionContext": {"k": "v"}}),
        )
        .unwrap();
        let plain = unb64(&pair["PrivateKeyPlaintext"]);
        let opened = call(
            &kms,
            "Decrypt",
            json!({"CiphertextBlob": pair["PrivateKeyCiphertextBlob"], "EncryptionContext": {"k": "v"}}),
        )
        .unwrap();
        assert_eq!(unb64(&opened["Plaintext"]), plain);
        let private = PKey::private_key_from_pkcs8(&plain).unwrap();
        assert_eq!(
            private.public_key_to_der().unwrap(),
            unb64(&pair["PublicKey"])
        );
        let wp = call(
            &kms,
            "GenerateDataKeyPairWithoutPlaintext",
            json!({"KeyId": sym, "KeyPairSpec": spec}),
        )
        .unwrap();
        assert!(wp.get("PrivateKeyPlaintext").is_none());
        assert_eq!(wp["KeyPairSpec"], spec);
    }
    assert_eq!(
        code(call(
            &kms,
            "GenerateDataKeyPair",
            json!({"KeyId": id, "KeyPairSpec": "RSA_2048"})
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(call(
            &kms,
            "GenerateDataKeyPair",
            json!({"KeyId": sym, "KeyPairSpec": "RSA_1024"})
        )),
        "ValidationException"
    );
}

fn wrap_for_import(params: &Value, material: &[u8], sha256: bool) -> String {
    let public = PKey::public_key_from_der(&unb64(&params["PublicKey"])).unwrap();
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&public).unwrap();
    ctx.encrypt_init().unwrap();
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    if sha256 {
        ctx.set_rsa_oaep_md(openssl::md::Md::sha256()).unwrap();
        ctx.set_rsa_mgf1_md(openssl::md::Md::sha256()).unwrap();
    }
    let mut out = Vec::new();
    ctx.encrypt_to_vec(material, &mut out).unwrap();
    b64(&out)
}

#[test]
fn imported_material_expires_and_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let audit: Arc<Mutex<Vec<String>>> = Arc::default();
    let kms = open(dir.path(), audit.clone());
    let m = call(&kms, "CreateKey", json!({"Origin": "EXTERNAL"})).unwrap()["KeyMetadata"].clone();
    assert_eq!(m["KeyState"], "PendingImport");
    assert_eq!(m["Origin"], "EXTERNAL");
    let id = m["KeyId"].clone();
    assert_eq!(
        code(call(
            &kms,
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(b"x")})
        )),
        "KMSInvalidStateException"
    );
    let params = call(
        &kms,
        "GetParametersForImport",
        json!({"KeyId": id, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
    )
    .unwrap();
    let material = [0x42u8; 32];
    let now = ferry_kms::model::now();
    let import = |params: &Value, material: &[u8], extra: Value| {
        let mut body = json!({"KeyId": id, "ImportToken": params["ImportToken"],
                              "EncryptedKeyMaterial": wrap_for_import(params, material, true)});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        call(&kms, "ImportKeyMaterial", body)
    };
    // ValidTo is required with the default model, and refused without it.
    assert_eq!(
        code(import(&params, &material, json!({}))),
        "ValidationException"
    );
    assert_eq!(
        code(import(
            &params,
            &material,
            json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "ValidTo": now + 60.0})
        )),
        "ValidationException"
    );
    assert_eq!(
        code(import(
            &params,
            &[1u8; 16],
            json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
        )),
        "IncorrectKeyMaterialException"
    );
    let mut forged = params.clone();
    forged["ImportToken"] = json!(b64(&[0u8; 32]));
    assert_eq!(
        code(import(
            &forged,
            &material,
            json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
        )),
        "InvalidImportTokenException"
    );
    let out = import(
        &params,
        &material,
        json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}),
    )
    .unwrap();
    let material_id = out["KeyMaterialId"].as_str().unwrap().to_owned();
    let d = call(&kms, "DescribeKey", json!({"KeyId": id})).unwrap()["KeyMetadata"].clone();
    assert_eq!(d["KeyState"], "Enabled");
    assert_eq!(d["ExpirationModel"], "KEY_MATERIAL_DOES_NOT_EXPIRE");
    // The imported material is the key: an AES-256-GCM blob under it opens.
    let blob = call(
        &kms,
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"hello")}),
    )
    .unwrap()["CiphertextBlob"]
        .clone();
    // The token was used up.
    assert_eq!(
        code(import(
            &params,
            &material,
            json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
        )),
        "InvalidImportTokenException"
    );
    // Delete: PendingImport, nothing decrypts.
    let del = call(&kms, "DeleteImportedKeyMaterial", json!({"KeyId": id})).unwrap();
    assert_eq!(del["KeyMaterialId"], material_id.as_str());
    assert_eq!(
        call(&kms, "DescribeKey", json!({"KeyId": id})).unwrap()["KeyMetadata"]["KeyState"],
        "PendingImport"
    );
    assert_eq!(
        code(call(&kms, "Decrypt", json!({"CiphertextBlob": blob}))),
        "KMSInvalidStateException"
    );
    // Other material is refused; the same comes back, with an expiry one
    // second ahead, and the old blob opens again.
    let params = call(
        &kms,
        "GetParametersForImport",
        json!({"KeyId": id, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_3072"}),
    )
    .unwrap();
    assert_eq!(
        code(import(
            &params,
            &[0x43u8; 32],
            json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
        )),
        "IncorrectKeyMaterialException"
    );
    let valid_to = ferry_kms::model::now() + 1.5;
    import(&params, &material, json!({"ValidTo": valid_to})).unwrap();
    let opened = call(&kms, "Decrypt", json!({"CiphertextBlob": blob})).unwrap();
    assert_eq!(unb64(&opened["Plaintext"]), b"hello");
    // After ValidTo: PendingImport, and the material is purged.
    std::thread::sleep(std::time::Duration::from_secs_f64(
        (valid_to - ferry_kms::model::now()).max(0.0) + 0.2,
    ));
    assert_eq!(
        call(&kms, "DescribeKey", json!({"KeyId": id})).unwrap()["KeyMetadata"]["KeyState"],
        "PendingImport"
    );
    assert_eq!(
        code(call(&kms, "Decrypt", json!({"CiphertextBlob": blob}))),
        "KMSInvalidStateException"
    );
    call(&kms, "ListKeys", json!({})).unwrap();
    drop(kms);
    let kms = open(dir.path(), audit.clone());
    assert_eq!(
        call(&kms, "DescribeKey", json!({"KeyId": id})).unwrap()["KeyMetadata"]["KeyState"],
        "PendingImport"
    );
    // A deletion cancelled leaves it waiting for material, not Disabled.
    call(
        &kms,
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .unwrap();
    call(&kms, "CancelKeyDeletion", json!({"KeyId": id})).unwrap();
    assert_eq!(
        call(&kms, "DescribeKey", json!({"KeyId": id})).unwrap()["KeyMetadata"]["KeyState"],
        "PendingImport"
    );
    // Import operations need an EXTERNAL key.
    let sym = call(&kms, "CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"].clone();
    assert_eq!(
        code(call(
            &kms,
            "GetParametersForImport",
            json!({"KeyId": sym, "WrappingAlgorithm": "RSAES_OAEP_SHA_1", "WrappingKeySpec": "RSA_2048"})
        )),
        "UnsupportedOperationException"
    );
    assert_eq!(
        code(call(
            &kms,
            "GetParametersForImport",
            json!({"KeyId": id, "WrappingAlgorithm": "RSAES_OAEP_SHA_1", "WrappingKeySpec": "RSA_1024"})
        )),
        "ValidationException"
    );
    // Nothing secret reached the trail.
    let lines = audit.lock().unwrap().join("\n");
    assert!(!lines.contains(params["ImportToken"].as_str().unwrap()));
    assert!(lines.contains("\"eventName\":\"ImportKeyMaterial\""));
}

#[test]
fn aes_key_wrap_import_description_retirable_grants_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), Arc::default());
    let id =
        call(&kms, "CreateKey", json!({"Origin": "EXTERNAL"})).unwrap()["KeyMetadata"]["KeyId"]
            .clone();
    let params = call(
        &kms,
        "GetParametersForImport",
        json!({"KeyId": id, "WrappingAlgorithm": "RSA_AES_KEY_WRAP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
    )
    .unwrap();
    let kek = [7u8; 32];
    let mut wrapped = STANDARD
        .decode(wrap_for_import(&params, &kek, true))
        .unwrap();
    wrapped.extend(ferry_kms::asym::aes_kwp_wrap(&kek, &[9u8; 32]).unwrap());
    call(
        &kms,
        "ImportKeyMaterial",
        json!({"KeyId": id, "ImportToken": params["ImportToken"], "EncryptedKeyMaterial": b64(&wrapped),
               "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}),
    )
    .unwrap();
    let blob = call(
        &kms,
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"p")}),
    )
    .unwrap()["CiphertextBlob"]
        .clone();

    // HMAC material can be imported too: the MAC is RFC 4231's.
    let h = call(
        &kms,
        "CreateKey",
        json!({"Origin": "EXTERNAL", "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    )
    .unwrap()["KeyMetadata"]["KeyId"]
        .clone();
    let hp = call(
        &kms,
        "GetParametersForImport",
        json!({"KeyId": h, "WrappingAlgorithm": "RSAES_OAEP_SHA_1", "WrappingKeySpec": "RSA_2048"}),
    )
    .unwrap();
    let short = call(
        &kms,
        "ImportKeyMaterial",
        json!({"KeyId": h, "ImportToken": hp["ImportToken"], "EncryptedKeyMaterial": wrap_for_import(&hp, b"Jefe", false),
               "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}),
    );
    assert_eq!(code(short), "IncorrectKeyMaterialException");
    let key = [0x0bu8; 32];
    call(
        &kms,
        "ImportKeyMaterial",
        json!({"KeyId": h, "ImportToken": hp["ImportToken"], "EncryptedKeyMaterial": wrap_for_import(&hp, &key, false),
               "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}),
    )
    .unwrap();
    let mac = call(
        &kms,
        "GenerateMac",
        json!({"KeyId": h, "Message": b64(b"Hi There"), "MacAlgorithm": "HMAC_SHA_256"}),
    )
    .unwrap();
    let pkey = PKey::hmac(&key).unwrap();
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
    s.update(b"Hi There").unwrap();
    assert_eq!(unb64(&mac["Mac"]), s.sign_to_vec().unwrap());

    let signer = create(&kms, "ECC_NIST_P256", "SIGN_VERIFY")["KeyId"].clone();
    call(
        &kms,
        "UpdateKeyDescription",
        json!({"KeyId": signer, "Description": "jwt signer"}),
    )
    .unwrap();
    assert_eq!(
        code(call(&kms, "UpdateKeyDescription", json!({"KeyId": signer}))),
        "ValidationException"
    );
    let grant = call(
        &kms,
        "CreateGrant",
        json!({"KeyId": signer, "GranteePrincipal": "arn:aws:iam::111122223333:role/app",
               "RetiringPrincipal": "arn:aws:iam::111122223333:role/ops", "Operations": ["Sign"]}),
    )
    .unwrap();
    let listed = call(
        &kms,
        "ListRetirableGrants",
        json!({"RetiringPrincipal": "arn:aws:iam::111122223333:role/ops"}),
    )
    .unwrap();
    assert_eq!(listed["Grants"].as_array().unwrap().len(), 1);
    assert_eq!(listed["Grants"][0]["GrantId"], grant["GrantId"]);
    assert_eq!(
        call(
            &kms,
            "ListRetirableGrants",
            json!({"RetiringPrincipal": "arn:aws:iam::111122223333:role/app"})
        )
        .unwrap()["Grants"],
        json!([])
    );
    assert_eq!(
        code(call(&kms, "ListRetirableGrants", json!({}))),
        "ValidationException"
    );
    let sig = call(
        &kms,
        "Sign",
        json!({"KeyId": signer, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256"}),
    )
    .unwrap()["Signature"]
        .clone();

    // After a restart the sealed material unwraps: the old signature
    // verifies, the imported key decrypts.
    drop(kms);
    let kms = open(dir.path(), Arc::default());
    let d = call(&kms, "DescribeKey", json!({"KeyId": signer})).unwrap()["KeyMetadata"].clone();
    assert_eq!(d["Description"], "jwt signer");
    assert_eq!(d["KeySpec"], "ECC_NIST_P256");
    assert_eq!(
        call(
            &kms,
            "Verify",
            json!({"KeyId": signer, "Message": b64(b"m"), "Signature": sig, "SigningAlgorithm": "ECDSA_SHA_256"})
        )
        .unwrap()["SignatureValid"],
        true
    );
    assert_eq!(
        unb64(&call(&kms, "Decrypt", json!({"CiphertextBlob": blob})).unwrap()["Plaintext"]),
        b"p"
    );
}
