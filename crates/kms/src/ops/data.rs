//! The cryptographic operations: Encrypt, Decrypt, GenerateDataKey,
//! GenerateDataKeyWithoutPlaintext, GenerateRandom, ReEncrypt.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::check_grant_tokens;
use crate::blob;
use crate::crypto;
use crate::error::KmsError;
use crate::keystore::{KeyStore, LiveKey, Names, Request};
use crate::params::{Params, b64};
use crate::service::Kms;

const ALGORITHMS: &[&str] = &[
    "SYMMETRIC_DEFAULT",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "SM2PKE",
];

fn check_algorithm(p: &Params<'_>, name: &str) -> Result<(), AwsError> {
    if let Some(a) = p.opt_enum(name, ALGORITHMS)?
        && a != "SYMMETRIC_DEFAULT"
    {
        return Err(AwsError::client(
            "InvalidKeyUsageException",
            format!(
                "The encryption algorithm {a} is not compatible with the key spec SYMMETRIC_DEFAULT."
            ),
        ));
    }
    Ok(())
}

fn refuse_recipient(p: &Params<'_>) -> Result<(), AwsError> {
    if p.opt_object("Recipient")?.is_some() {
        return Err(KmsError::unsupported(
            "Recipient (Nitro Enclaves attestation) is not supported.",
        ));
    }
    Ok(())
}

/// Resolves, authorizes and state-checks a key for a cryptographic use,
/// rotating it first if automatic rotation is due.
fn key_for_use(
    kms: &Kms,
    ctx: &RequestContext,
    key_id: &str,
    action: &str,
    context: &BTreeMap<String, String>,
    res: &mut Vec<String>,
) -> Result<Arc<LiveKey>, AwsError> {
    let key = kms.keys.resolve(key_id, Names::KeyOrAlias)?;
    res.push(key.rec.arn.clone());
    kms.keys.authorize(
        ctx,
        &key,
        action,
        &Request {
            context: Some(context),
            keys: vec![("kms:encryptionalgorithm", vec!["SYMMETRIC_DEFAULT".into()])],
        },
    )?;
    KeyStore::check_usable(&key)?;
    super::rotation::rotate_if_due(kms, key)
}

/// A decrypted blob: its key, the plaintext, the material id.
type Opened = (Arc<LiveKey>, Zeroizing<Vec<u8>>, String);
/// A generated data key: the key, the plaintext, the blob.
type Generated = (Arc<LiveKey>, Zeroizing<Vec<u8>>, Vec<u8>);

/// Encrypts `plaintext` under the key's current material.
fn seal(
    key: &LiveKey,
    context: &BTreeMap<String, String>,
    plaintext: &[u8],
) -> Result<Vec<u8>, AwsError> {
    let m = key
        .rec
        .current()
        .ok_or_else(|| KmsError::internal("key has no material"))?;
    let k = key
        .material(m.version)
        .ok_or_else(|| KmsError::internal("key material missing"))?;
    let header = blob::header(&key.rec.arn, m.version);
    let aad = blob::aad(&header, context);
    let (iv, ct, tag) =
        crypto::seal(k, &aad, plaintext).map_err(|_| KmsError::internal("encryption failed"))?;
    Ok(blob::assemble(&header, &iv, &tag, &ct))
}

/// Decrypts a blob: parses it, finds its key, authorizes `action`, checks
/// state and opens it. Returns the key, the plaintext and the material id.
fn open(
    kms: &Kms,
    ctx: &RequestContext,
    data: &[u8],
    context: &BTreeMap<String, String>,
    key_param: Option<&str>,
    action: &str,
    res: &mut Vec<String>,
) -> Result<Opened, AwsError> {
    let parsed = blob::parse(data).map_err(|_| KmsError::invalid_ciphertext())?;
    if !parsed.key_arn.starts_with(kms.keys.arn_prefix()) || !parsed.key_arn.contains(":key/") {
        return Err(KmsError::invalid_ciphertext());
    }
    let key = kms.keys.resolve(parsed.key_arn, Names::KeyOnly)?;
    res.push(key.rec.arn.clone());
    if let Some(k) = key_param {
        let named = kms.keys.resolve(k, Names::KeyOrAlias)?;
        if named.rec.key_id != key.rec.key_id {
            return Err(KmsError::incorrect_key());
        }
    }
    kms.keys.authorize(
        ctx,
        &key,
        action,
        &Request {
            context: Some(context),
            keys: vec![("kms:encryptionalgorithm", vec!["SYMMETRIC_DEFAULT".into()])],
        },
    )?;
    KeyStore::check_usable(&key)?;
    let material = key
        .material(parsed.material_version)
        .ok_or_else(KmsError::invalid_ciphertext)?;
    let id = key
        .rec
        .materials
        .iter()
        .find(|m| m.version == parsed.material_version)
        .map(|m| m.id.clone())
        .unwrap_or_default();
    let aad = blob::aad(parsed.header, context);
    let pt = crypto::open(material, parsed.iv, &aad, parsed.ciphertext, parsed.tag)
        .map_err(|_| KmsError::invalid_ciphertext())?;
    Ok((key.clone(), pt, id))
}

fn context(p: &Params<'_>, name: &str) -> Result<BTreeMap<String, String>, AwsError> {
    Ok(p.opt_map(name)?.unwrap_or_default())
}

pub fn encrypt(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Vec<String>,
) -> Result<Value, AwsError> {
    let key_id = p.key_id("KeyId")?;
    let plaintext = p.blob("Plaintext", 1, 4096)?;
    let ec = context(p, "EncryptionContext")?;
    check_algorithm(p, "EncryptionAlgorithm")?;
    check_grant_tokens(kms, p)?;
    let key = key_for_use(kms, ctx, key_id, "Encrypt", &ec, res)?;
    if p.dry_run()? {
        return Err(KmsError::dry_run());
    }
    let blob = seal(&key, &ec, &plaintext)?;
    Ok(json!({
        "CiphertextBlob": b64(&blob),
        "KeyId": key.rec.arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

pub fn decrypt(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Vec<String>,
) -> Result<Value, AwsError> {
    let data = p.blob("CiphertextBlob", 1, 6144)?;
    let ec = context(p, "EncryptionContext")?;
    let key_param = p.opt_str("KeyId", 1, 2048)?;
    check_algorithm(p, "EncryptionAlgorithm")?;
    check_grant_tokens(kms, p)?;
    refuse_recipient(p)?;
    let dry = p.dry_run()?;
    let (key, pt, material_id) = open(kms, ctx, &data, &ec, key_param, "Decrypt", res)?;
    if dry {
        return Err(KmsError::dry_run());
    }
    let plaintext = Zeroizing::new(b64(&pt));
    Ok(json!({
        "KeyId": key.rec.arn,
        "Plaintext": plaintext.as_str(),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "KeyMaterialId": material_id,
    }))
}

fn data_key_len(p: &Params<'_>) -> Result<usize, AwsError> {
    let spec = p.opt_enum("KeySpec", &["AES_256", "AES_128"])?;
    let n = p.opt_int("NumberOfBytes", 1, 1024)?;
    match (spec, n) {
        (Some(_), Some(_)) | (None, None) => Err(KmsError::invalid(
            "Please specify either number of bytes or key spec.",
        )),
        (Some("AES_128"), None) => Ok(16),
        (Some(_), None) => Ok(32),
        (None, Some(n)) => Ok(n as usize),
    }
}

fn generate(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Vec<String>,
    action: &str,
) -> Result<Generated, AwsError> {
    let key_id = p.key_id("KeyId")?;
    let ec = context(p, "EncryptionContext")?;
    let len = data_key_len(p)?;
    check_grant_tokens(kms, p)?;
    let key = key_for_use(kms, ctx, key_id, action, &ec, res)?;
    if p.dry_run()? {
        return Err(KmsError::dry_run());
    }
    let mut dk = Zeroizing::new(vec![0u8; len]);
    crypto::random(&mut dk).map_err(|_| KmsError::internal("random generation failed"))?;
    let blob = seal(&key, &ec, &dk)?;
    Ok((key, dk, blob))
}

fn material_id(key: &LiveKey) -> String {
    key.rec.current().map(|m| m.id.clone()).unwrap_or_default()
}

pub fn generate_data_key(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Vec<String>,
) -> Result<Value, AwsError> {
    refuse_recipient(p)?;
    let (key, dk, blob) = generate(kms, ctx, p, res, "GenerateDataKey")?;
    let plaintext = Zeroizing::new(b64(&dk));
    Ok(json!({
        "CiphertextBlob": b64(&blob),
        "Plaintext": plaintext.as_str(),
        "KeyId": key.rec.arn,
        "KeyMaterialId": material_id(&key),
    }))
}

pub fn generate_data_key_without_plaintext(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Vec<String>,
) -> Result<Value, AwsError> {
    let (key, _dk, blob) = generate(kms, ctx, p, res, "GenerateDataKeyWithoutPlaintext")?;
    Ok(json!({
        "CiphertextBlob": b64(&blob),
        "KeyId": key.rec.arn,
        "KeyMaterialId": material_id(&key),
    }))
}

pub fn generate_random(
    _kms: &Kms,
    _ctx: &RequestContext,
    p: &Params<'_>,
    _res: &mut Vec<String>,
) -> Result<Value, AwsError> {
    if p.opt_str("CustomKeyStoreId", 1, 64)?.is_some() {
        return Err(AwsError::client(
            "CustomKeyStoreNotFoundException",
            "Custom key stores are not supported.",
        ));
    }
    refuse_recipient(p)?;
    let n = p
        .opt_int("NumberOfBytes", 1, 1024)?
        .ok_or_else(|| KmsError::invalid("Please specify the number of bytes."))?;
    let mut buf = Zeroizing::new(vec![0u8; n as usize]);
    crypto::random(&mut buf).map_err(|_| KmsError::internal("random generation failed"))?;
    let out = Zeroizing::new(b64(&buf));
    Ok(json!({ "Plaintext": out.as_str() }))
}

pub fn re_encrypt(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Vec<String>,
) -> Result<Value, AwsError> {
    let data = p.blob("CiphertextBlob", 1, 6144)?;
    let src_ec = context(p, "SourceEncryptionContext")?;
    let dst_ec = context(p, "DestinationEncryptionContext")?;
    let src_key = p.opt_str("SourceKeyId", 1, 2048)?;
    let dst_key = p.key_id("DestinationKeyId")?;
    check_algorithm(p, "SourceEncryptionAlgorithm")?;
    check_algorithm(p, "DestinationEncryptionAlgorithm")?;
    check_grant_tokens(kms, p)?;
    let dry = p.dry_run()?;
    let (src, pt, src_material) = open(kms, ctx, &data, &src_ec, src_key, "ReEncryptFrom", res)?;
    let dst = key_for_use(kms, ctx, dst_key, "ReEncryptTo", &dst_ec, res)?;
    if dry {
        return Err(KmsError::dry_run());
    }
    let blob = seal(&dst, &dst_ec, &pt)?;
    Ok(json!({
        "CiphertextBlob": b64(&blob),
        "SourceKeyId": src.rec.arn,
        "KeyId": dst.rec.arn,
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "SourceKeyMaterialId": src_material,
        "DestinationKeyMaterialId": material_id(&dst),
    }))
}
