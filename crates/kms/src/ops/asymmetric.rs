//! The asymmetric and HMAC operations: Sign, Verify, GetPublicKey,
//! GenerateMac, VerifyMac, GenerateDataKeyPair(WithoutPlaintext), and the
//! RSAES-OAEP forms of Encrypt and Decrypt (reached from
//! [`super::data`] when the key named is an RSA key).

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::check_grant_tokens;
use super::data::{context, key_for_use, refuse_recipient, seal};
use crate::asym::{self, SigningAlgorithm, Spec};
use crate::error::KmsError;
use crate::keystore::{KeyStore, LiveKey, Names, Request};
use crate::params::{Params, b64};
use crate::service::{Kms, Trail};

/// Every `SigningAlgorithm` the model lists.
const SIGNING_ALGORITHMS: &[&str] = &[
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "ECDSA_SHA_256",
    "ECDSA_SHA_384",
    "ECDSA_SHA_512",
    "SM2DSA",
    "ML_DSA_SHAKE_256",
    "ED25519_SHA_512",
    "ED25519_PH_SHA_512",
];

/// Every `MacAlgorithm` the model lists.
const MAC_ALGORITHMS: &[&str] = &[
    "HMAC_SHA_224",
    "HMAC_SHA_256",
    "HMAC_SHA_384",
    "HMAC_SHA_512",
];

/// Every `KeyPairSpec` the model lists.
const KEY_PAIR_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SM2",
    "ECC_NIST_EDWARDS25519",
];

/// Resolves, authorizes (with the algorithm as a condition key) and
/// state-checks a key for an asymmetric or HMAC use, then checks its usage.
fn key_for(
    kms: &Kms,
    ctx: &RequestContext,
    key: Arc<LiveKey>,
    action: &str,
    usage: &str,
    condition: (&'static str, &str),
    res: &mut Trail,
) -> Result<Arc<LiveKey>, AwsError> {
    res.push(key.rec.arn.clone());
    kms.keys.authorize(
        ctx,
        &key,
        action,
        &Request {
            context: None,
            keys: vec![(condition.0, vec![condition.1.to_owned()])],
        },
    )?;
    KeyStore::check_usable(&key)?;
    if key.rec.key_usage != usage {
        return Err(KmsError::key_usage(
            &key.rec.arn,
            &key.rec.key_usage,
            action,
        ));
    }
    Ok(key)
}

fn material(key: &LiveKey) -> Result<&[u8], AwsError> {
    key.current_material()
        .ok_or_else(|| KmsError::internal("key material missing"))
}

fn incompatible(what: &str, alg: &str, key: &LiveKey) -> AwsError {
    AwsError::client(
        "InvalidKeyUsageException",
        format!(
            "The {what} algorithm {alg} is not compatible with the key spec {} of {}.",
            key.rec.key_spec, key.rec.arn
        ),
    )
}

/// What Sign and Verify share: the key, the algorithm and the digest.
fn signing_input(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    action: &str,
    res: &mut Trail,
) -> Result<(Arc<LiveKey>, SigningAlgorithm, String, Vec<u8>), AwsError> {
    let key_id = p.key_id("KeyId")?;
    let message = p.blob("Message", 1, 4096)?;
    let message_type = p
        .opt_enum("MessageType", &["RAW", "DIGEST", "EXTERNAL_MU"])?
        .unwrap_or("RAW");
    let alg_name = p.enum_value("SigningAlgorithm", SIGNING_ALGORITHMS)?;
    if action == "Verify" {
        p.blob("Signature", 1, 6144)?;
    }
    check_grant_tokens(kms, p)?;
    let key = kms.keys.resolve(key_id, Names::KeyOrAlias)?;
    let key = key_for(
        kms,
        ctx,
        key,
        action,
        "SIGN_VERIFY",
        ("kms:signingalgorithm", alg_name),
        res,
    )?;
    let alg = SigningAlgorithm::parse(alg_name)
        .filter(|_| {
            key.spec()
                .signing_algorithms("SIGN_VERIFY")
                .contains(&alg_name)
        })
        .ok_or_else(|| incompatible("signing", alg_name, &key))?;
    let digest = match message_type {
        "RAW" => asym::digest(alg, &message)
            .map_err(|_| KmsError::internal("hashing the message failed"))?,
        "DIGEST" => {
            if message.len() != alg.digest_len() {
                return Err(KmsError::invalid(format!(
                    "Digest is invalid length for algorithm {alg_name}."
                )));
            }
            message.to_vec()
        }
        other => {
            return Err(KmsError::invalid(format!(
                "Message type {other} is incompatible with key spec {}.",
                key.rec.key_spec
            )));
        }
    };
    Ok((key, alg, alg_name.to_owned(), digest))
}

pub fn sign(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let (key, alg, alg_name, digest) = signing_input(kms, ctx, p, "Sign", res)?;
    if p.dry_run()? {
        return Err(KmsError::dry_run());
    }
    let sig = asym::sign_digest(material(&key)?, alg, &digest)
        .map_err(|_| KmsError::internal("signing failed"))?;
    Ok(json!({
        "KeyId": key.rec.arn,
        "Signature": b64(&sig),
        "SigningAlgorithm": alg_name,
    }))
}

pub fn verify(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let (key, alg, alg_name, digest) = signing_input(kms, ctx, p, "Verify", res)?;
    let signature = p.blob("Signature", 1, 6144)?;
    if p.dry_run()? {
        return Err(KmsError::dry_run());
    }
    let valid = asym::verify_digest(material(&key)?, alg, &digest, &signature)
        .map_err(|_| KmsError::internal("verification failed"))?;
    if !valid {
        return Err(AwsError::client(
            "KMSInvalidSignatureException",
            "The signature is not valid for this message, key and signing algorithm.",
        ));
    }
    Ok(json!({
        "KeyId": key.rec.arn,
        "SignatureValid": true,
        "SigningAlgorithm": alg_name,
    }))
}

pub fn get_public_key(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key_id = p.key_id("KeyId")?;
    check_grant_tokens(kms, p)?;
    let key = kms.keys.resolve(key_id, Names::KeyOrAlias)?;
    res.push(key.rec.arn.clone());
    kms.keys
        .authorize(ctx, &key, "GetPublicKey", &Request::default())?;
    KeyStore::check_usable(&key)?;
    let spec = key.spec();
    if !spec.is_asymmetric() {
        return Err(KmsError::unsupported(format!(
            "{} is not an asymmetric KMS key; it has no public key.",
            key.rec.arn
        )));
    }
    let der = asym::public_key_der(material(&key)?)
        .map_err(|_| KmsError::internal("deriving the public key failed"))?;
    let usage = key.rec.key_usage.as_str();
    let mut v = json!({
        "KeyId": key.rec.arn,
        "PublicKey": b64(&der),
        "CustomerMasterKeySpec": spec.name(),
        "KeySpec": spec.name(),
        "KeyUsage": usage,
    });
    if usage == "ENCRYPT_DECRYPT" {
        v["EncryptionAlgorithms"] = json!(spec.encryption_algorithms(usage));
    } else {
        v["SigningAlgorithms"] = json!(spec.signing_algorithms(usage));
    }
    Ok(v)
}

/// What GenerateMac and VerifyMac share: the key, the hash size, the MAC.
fn mac_input(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    action: &str,
    res: &mut Trail,
) -> Result<(Arc<LiveKey>, String, Vec<u8>), AwsError> {
    let message = p.blob("Message", 1, 4096)?;
    let key_id = p.key_id("KeyId")?;
    let alg = p.enum_value("MacAlgorithm", MAC_ALGORITHMS)?;
    if action == "VerifyMac" {
        p.blob("Mac", 1, 6144)?;
    }
    check_grant_tokens(kms, p)?;
    let key = kms.keys.resolve(key_id, Names::KeyOrAlias)?;
    let key = key_for(
        kms,
        ctx,
        key,
        action,
        "GENERATE_VERIFY_MAC",
        ("kms:macalgorithm", alg),
        res,
    )?;
    let Spec::Hmac(bits) = key.spec() else {
        return Err(incompatible("MAC", alg, &key));
    };
    if !key.spec().mac_algorithms().contains(&alg) {
        return Err(incompatible("MAC", alg, &key));
    }
    let mac = asym::hmac(material(&key)?, bits, &message)
        .map_err(|_| KmsError::internal("computing the MAC failed"))?;
    Ok((key, alg.to_owned(), mac))
}

pub fn generate_mac(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let (key, alg, mac) = mac_input(kms, ctx, p, "GenerateMac", res)?;
    if p.dry_run()? {
        return Err(KmsError::dry_run());
    }
    Ok(json!({ "Mac": b64(&mac), "MacAlgorithm": alg, "KeyId": key.rec.arn }))
}

pub fn verify_mac(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let (key, alg, mac) = mac_input(kms, ctx, p, "VerifyMac", res)?;
    let given = p.blob("Mac", 1, 6144)?;
    if p.dry_run()? {
        return Err(KmsError::dry_run());
    }
    // Constant time: the comparison must not say how much of a forged MAC
    // was right.
    if given.len() != mac.len() || !openssl::memcmp::eq(&given, &mac) {
        return Err(AwsError::client(
            "KMSInvalidMacException",
            "The MAC is not valid for this message, key and MAC algorithm.",
        ));
    }
    Ok(json!({ "KeyId": key.rec.arn, "MacValid": true, "MacAlgorithm": alg }))
}

fn data_key_pair(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
    with_plaintext: bool,
) -> Result<Value, AwsError> {
    let action = if with_plaintext {
        "GenerateDataKeyPair"
    } else {
        "GenerateDataKeyPairWithoutPlaintext"
    };
    let ec = context(p, "EncryptionContext")?;
    let key_id = p.key_id("KeyId")?;
    let spec_name = p.enum_value("KeyPairSpec", KEY_PAIR_SPECS)?;
    check_grant_tokens(kms, p)?;
    if with_plaintext {
        refuse_recipient(p)?;
    }
    let dry = p.dry_run()?;
    let key = key_for_use(kms, ctx, key_id, action, &ec, res)?;
    let spec = Spec::parse(spec_name)
        .filter(|s| s.is_asymmetric())
        .ok_or_else(|| {
            KmsError::unsupported(format!("KeyPairSpec {spec_name} is not supported."))
        })?;
    if dry {
        return Err(KmsError::dry_run());
    }
    let (private, public) = asym::data_key_pair(spec)
        .map_err(|_| KmsError::internal("generating the key pair failed"))?;
    // The private key (PKCS#8 DER) is sealed like any data key: an
    // ordinary ciphertext blob under the symmetric key named, which
    // Decrypt opens.
    let blob = seal(&key, &ec, &private, None)?;
    let material_id = key.rec.current().map(|m| m.id.clone()).unwrap_or_default();
    let mut v = json!({
        "PrivateKeyCiphertextBlob": b64(&blob),
        "PublicKey": b64(&public),
        "KeyId": key.rec.arn,
        "KeyPairSpec": spec_name,
        "KeyMaterialId": material_id,
    });
    if with_plaintext {
        let text = Zeroizing::new(b64(&private));
        v["PrivateKeyPlaintext"] = json!(text.as_str());
    }
    Ok(v)
}

pub fn generate_data_key_pair(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    data_key_pair(kms, ctx, p, res, true)
}

pub fn generate_data_key_pair_without_plaintext(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    data_key_pair(kms, ctx, p, res, false)
}

/// The OAEP hash of an RSA `EncryptionAlgorithm` (SHA-1 is `1`), or
/// `InvalidKeyUsageException` for the others (the default,
/// `SYMMETRIC_DEFAULT`, included: AWS requires the algorithm for
/// asymmetric keys).
fn oaep_hash(key: &LiveKey, algorithm: Option<&str>) -> Result<u32, AwsError> {
    match algorithm.unwrap_or("SYMMETRIC_DEFAULT") {
        "RSAES_OAEP_SHA_1" => Ok(1),
        "RSAES_OAEP_SHA_256" => Ok(256),
        other => Err(incompatible("encryption", other, key)),
    }
}

/// The key of an RSA Encrypt or Decrypt (`op`), authorized for it and
/// for `algorithm`, with the algorithm's OAEP hash; no encryption context
/// (asymmetric keys take none).
fn rsa_key(
    kms: &Kms,
    ctx: &RequestContext,
    key: &Arc<LiveKey>,
    op: &'static str,
    algorithm: Option<&str>,
    ec: &BTreeMap<String, String>,
    res: &mut Trail,
) -> Result<(Arc<LiveKey>, u32), AwsError> {
    let alg = algorithm.unwrap_or("SYMMETRIC_DEFAULT");
    let key = key_for(
        kms,
        ctx,
        key.clone(),
        op,
        "ENCRYPT_DECRYPT",
        ("kms:encryptionalgorithm", alg),
        res,
    )?;
    let hash = oaep_hash(&key, algorithm)?;
    refuse_context(ec)?;
    Ok((key, hash))
}

fn refuse_context(ec: &BTreeMap<String, String>) -> Result<(), AwsError> {
    if !ec.is_empty() {
        return Err(KmsError::invalid(
            "EncryptionContext is not supported with asymmetric KMS keys.",
        ));
    }
    Ok(())
}

/// Encrypt under an RSA key: RSAES-OAEP, the raw RSA ciphertext (as AWS
/// returns it, so the public key alone decrypts nothing and OpenSSL-made
/// ciphertexts decrypt here).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rsa_encrypt(
    kms: &Kms,
    ctx: &RequestContext,
    key: &Arc<LiveKey>,
    algorithm: Option<&str>,
    plaintext: &[u8],
    ec: &BTreeMap<String, String>,
    dry: bool,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let alg = algorithm.unwrap_or("SYMMETRIC_DEFAULT");
    let (key, hash) = rsa_key(kms, ctx, key, "Encrypt", algorithm, ec, res)?;
    let m = material(&key)?;
    let size = asym::rsa_size(m).map_err(|_| KmsError::internal("reading the key failed"))?;
    let max = asym::oaep_max(size, hash);
    if plaintext.len() > max {
        return Err(KmsError::invalid(format!(
            "The plaintext is {} bytes; {alg} with {} takes at most {max} bytes.",
            plaintext.len(),
            key.rec.key_spec
        )));
    }
    if dry {
        return Err(KmsError::dry_run());
    }
    let ct = asym::rsa_encrypt(m, hash, plaintext)
        .map_err(|_| KmsError::internal("encryption failed"))?;
    Ok(json!({
        "CiphertextBlob": b64(&ct),
        "KeyId": key.rec.arn,
        "EncryptionAlgorithm": alg,
    }))
}

/// Decrypt with an RSA key (RSAES-OAEP); any failure is
/// `InvalidCiphertextException` with no detail.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rsa_decrypt(
    kms: &Kms,
    ctx: &RequestContext,
    key: &Arc<LiveKey>,
    algorithm: Option<&str>,
    ciphertext: &[u8],
    ec: &BTreeMap<String, String>,
    dry: bool,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let alg = algorithm.unwrap_or("SYMMETRIC_DEFAULT");
    let (key, hash) = rsa_key(kms, ctx, key, "Decrypt", algorithm, ec, res)?;
    if dry {
        return Err(KmsError::dry_run());
    }
    let pt = asym::rsa_decrypt(material(&key)?, hash, ciphertext)
        .map_err(|_| KmsError::invalid_ciphertext())?;
    let text = Zeroizing::new(b64(&pt));
    Ok(json!({
        "KeyId": key.rec.arn,
        "Plaintext": text.as_str(),
        "EncryptionAlgorithm": alg,
        "KeyMaterialId": key.rec.current().map(|m| m.id.clone()).unwrap_or_default(),
    }))
}
