//! Imported key material (Origin `EXTERNAL`): GetParametersForImport,
//! ImportKeyMaterial, DeleteImportedKeyMaterial. ferry imports material
//! into symmetric encryption keys (256 bits) and HMAC keys (AWS's lengths
//! per spec), not into asymmetric keys.

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{authorize, refuse_aws_managed};
use crate::asym::{self, Spec};
use crate::crypto;
use crate::error::KmsError;
use crate::keystore::{LiveKey, Names, delete_imported};
use crate::model::{ImportParams, KeyState, now};
use crate::params::{Params, b64};
use crate::service::{Kms, Trail};

const DAY: f64 = 86_400.0;
/// Import parameters are valid for 24 hours, as in AWS.
const PARAMETERS_VALID: f64 = DAY;
/// `ValidTo` may be at most 365 days ahead, as in AWS.
const MAX_VALID_DAYS: f64 = 365.0;

fn import_label(key_id: &str) -> String {
    format!("kms-import/{key_id}")
}

fn require_external(key: &LiveKey) -> Result<(), AwsError> {
    if key.rec.origin != "EXTERNAL" {
        return Err(KmsError::unsupported(format!(
            "{} origin is {} which is not valid for this operation.",
            key.rec.arn, key.rec.origin
        )));
    }
    if key.rec.state == KeyState::PendingDeletion {
        return Err(KmsError::pending_deletion(&key.rec.arn));
    }
    Ok(())
}

/// The OAEP hash of a wrapping algorithm, and whether it wraps with
/// RSA-OAEP + AES key wrap (RFC 5649) rather than RSA-OAEP alone.
fn wrapping(alg: &str) -> Result<(u32, bool), AwsError> {
    match alg {
        "RSAES_OAEP_SHA_1" => Ok((1, false)),
        "RSAES_OAEP_SHA_256" => Ok((256, false)),
        "RSA_AES_KEY_WRAP_SHA_1" => Ok((1, true)),
        "RSA_AES_KEY_WRAP_SHA_256" => Ok((256, true)),
        other => Err(KmsError::unsupported(format!(
            "WrappingAlgorithm {other} is not supported."
        ))),
    }
}

pub fn get_parameters_for_import(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let alg = p.enum_value(
        "WrappingAlgorithm",
        &[
            "RSAES_PKCS1_V1_5",
            "RSAES_OAEP_SHA_1",
            "RSAES_OAEP_SHA_256",
            "RSA_AES_KEY_WRAP_SHA_1",
            "RSA_AES_KEY_WRAP_SHA_256",
            "SM2PKE",
        ],
    )?;
    let spec_name = p.enum_value(
        "WrappingKeySpec",
        &["RSA_2048", "RSA_3072", "RSA_4096", "SM2"],
    )?;
    authorize(kms, ctx, res, &key, "GetParametersForImport")?;
    refuse_aws_managed(&key, "import key material into")?;
    require_external(&key)?;
    wrapping(alg)?;
    let Some(spec @ Spec::Rsa(_)) = Spec::parse(spec_name) else {
        return Err(KmsError::unsupported(format!(
            "WrappingKeySpec {spec_name} is not supported."
        )));
    };
    let private = asym::generate(spec)
        .map_err(|_| KmsError::internal("generating the wrapping key failed"))?;
    let public = asym::public_key_der(&private)
        .map_err(|_| KmsError::internal("deriving the wrapping key failed"))?;
    // The wrapping private key is sealed under the root key like key
    // material, bound to this key: it never leaves the KMS.
    let sealed = kms
        .keys
        .root
        .wrap(&import_label(&key.rec.key_id), &private)
        .map_err(|_| KmsError::internal("sealing the wrapping key failed"))?;
    let mut token = [0u8; 32];
    crypto::random(&mut token).map_err(|_| KmsError::internal("random generation failed"))?;
    let valid_to = (now() + PARAMETERS_VALID).floor();
    let _w = kms.keys.writer();
    kms.keys.update_key(&key.rec.key_id, |rec| {
        rec.import = Some(ImportParams {
            token: hex::encode(token),
            wrapping_algorithm: alg.to_owned(),
            wrapped_private_key: sealed,
            valid_to,
        });
        Ok(())
    })?;
    Ok(json!({
        "KeyId": key.rec.arn,
        "ImportToken": b64(&token),
        "PublicKey": b64(&public),
        "ParametersValidTo": valid_to,
    }))
}

/// The id of imported material: a digest bound to the key, so the same
/// material imported again is recognized (AWS requires the same material
/// on every import into a key).
fn material_id(key_id: &str, material: &[u8]) -> Result<String, AwsError> {
    let mut h = openssl::sha::Sha256::new();
    h.update(b"ferry-kms-imported-material\0");
    h.update(key_id.as_bytes());
    h.update(b"\0");
    h.update(material);
    Ok(hex::encode(h.finish()))
}

fn incorrect_material() -> AwsError {
    AwsError::client(
        "IncorrectKeyMaterialException",
        "The key material in the request is, expired, invalid, or is not the same key material that was previously imported into this KMS key.",
    )
}

pub fn import_key_material(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let token = p.blob("ImportToken", 1, 6144)?;
    let encrypted = p.blob("EncryptedKeyMaterial", 1, 6144)?;
    let valid_to = p.opt_timestamp("ValidTo")?;
    let model = p
        .opt_enum(
            "ExpirationModel",
            &["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"],
        )?
        .unwrap_or("KEY_MATERIAL_EXPIRES");
    let import_type = p.opt_enum("ImportType", &["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"])?;
    p.opt_str("KeyMaterialDescription", 0, 256)?;
    if let Some(id) = p.opt_str("KeyMaterialId", 64, 64)? {
        crate::params::check_pattern(
            "KeyMaterialId",
            id,
            |c| c.is_ascii_digit() || ('a'..='f').contains(&c),
            "^[a-f0-9]+$",
        )?;
    }
    authorize(kms, ctx, res, &key, "ImportKeyMaterial")?;
    refuse_aws_managed(&key, "import key material into")?;
    require_external(&key)?;
    if import_type == Some("NEW_KEY_MATERIAL") {
        return Err(KmsError::unsupported(
            "ferry keeps one imported key material per key; NEW_KEY_MATERIAL (rotation of imported material) is not supported.",
        ));
    }
    let t = now();
    let valid_to = match (model, valid_to) {
        ("KEY_MATERIAL_EXPIRES", None) => {
            return Err(KmsError::invalid(
                "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES",
            ));
        }
        ("KEY_MATERIAL_EXPIRES", Some(v)) => {
            if v <= t || v > t + MAX_VALID_DAYS * DAY {
                return Err(KmsError::invalid(
                    "The validTo date must be in the future and at most 365 days from now.",
                ));
            }
            Some(v)
        }
        (_, Some(_)) => {
            return Err(KmsError::invalid(
                "A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE",
            ));
        }
        (_, None) => None,
    };
    let Some(params) = key.rec.import.clone() else {
        return Err(AwsError::client(
            "InvalidImportTokenException",
            "The import token is not valid for this KMS key.",
        ));
    };
    if !openssl::memcmp::eq(hex::encode(&*token).as_bytes(), params.token.as_bytes())
        || token.len() * 2 != params.token.len()
    {
        return Err(AwsError::client(
            "InvalidImportTokenException",
            "The import token is not valid for this KMS key.",
        ));
    }
    if params.valid_to <= t {
        return Err(AwsError::client(
            "ExpiredImportTokenException",
            "The import token has expired; call GetParametersForImport again.",
        ));
    }
    let private = kms
        .keys
        .root
        .unwrap_material(&import_label(&key.rec.key_id), &params.wrapped_private_key)
        .map_err(|_| KmsError::internal("the wrapping key does not open under the root key"))?;
    let (hash, aes_wrap) = wrapping(&params.wrapping_algorithm)?;
    let raw: Zeroizing<Vec<u8>> = if aes_wrap {
        let size = asym::rsa_size(&private).map_err(|_| KmsError::internal("bad wrapping key"))?;
        if encrypted.len() <= size {
            return Err(KmsError::invalid_ciphertext());
        }
        let kek = asym::rsa_decrypt(&private, hash, &encrypted[..size])
            .map_err(|_| KmsError::invalid_ciphertext())?;
        asym::aes_kwp_unwrap(&kek, &encrypted[size..])
            .map_err(|_| KmsError::invalid_ciphertext())?
    } else {
        asym::rsa_decrypt(&private, hash, &encrypted).map_err(|_| KmsError::invalid_ciphertext())?
    };
    // AWS's lengths: 256 bits for AES; for HMAC, from the digest size
    // up to the hash's block size.
    let (min, max) = match key.spec() {
        Spec::Hmac(224) => (28, 64),
        Spec::Hmac(256) => (32, 64),
        Spec::Hmac(384) => (48, 128),
        Spec::Hmac(_) => (64, 128),
        _ => (crypto::KEY_LEN, crypto::KEY_LEN),
    };
    if raw.len() < min || raw.len() > max {
        return Err(incorrect_material());
    }
    let id = material_id(&key.rec.key_id, &raw)?;
    if key
        .rec
        .imported_material_id
        .as_ref()
        .is_some_and(|prev| *prev != id)
    {
        return Err(incorrect_material());
    }
    let material = kms
        .keys
        .seal_material(&key.rec.key_id, 1, None, &raw, id.clone())?;
    let _w = kms.keys.writer();
    let (live, _) = kms.keys.update_key(&key.rec.key_id, |rec| {
        // Checked again under the writer lock: a concurrent import may have
        // spent the token or brought material first.
        if rec.import.as_ref().map(|i| &i.token) != Some(&params.token) {
            return Err(AwsError::client(
                "InvalidImportTokenException",
                "The import token is not valid for this KMS key.",
            ));
        }
        if rec
            .imported_material_id
            .as_ref()
            .is_some_and(|prev| *prev != id)
        {
            return Err(incorrect_material());
        }
        rec.materials = vec![material];
        rec.imported_material_id = Some(id.clone());
        rec.valid_to = valid_to;
        rec.expiration_model = Some(model.to_owned());
        // The token is single use.
        rec.import = None;
        if rec.state == KeyState::PendingImport {
            rec.state = KeyState::Enabled;
        }
        Ok(())
    })?;
    Ok(json!({ "KeyId": live.rec.arn, "KeyMaterialId": id }))
}

pub fn delete_imported_key_material(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let wanted = p.opt_str("KeyMaterialId", 64, 64)?;
    authorize(kms, ctx, res, &key, "DeleteImportedKeyMaterial")?;
    refuse_aws_managed(&key, "delete the key material of")?;
    require_external(&key)?;
    let Some(current) = key.rec.current().map(|m| m.id.clone()) else {
        return Err(KmsError::pending_import(&key.rec.arn));
    };
    if wanted.is_some_and(|w| w != current) {
        return Err(AwsError::client(
            "NotFoundException",
            format!(
                "Key material {} does not exist in {}",
                wanted.unwrap_or(""),
                key.rec.arn
            ),
        ));
    }
    let _w = kms.keys.writer();
    let (live, _) = kms.keys.update_key(&key.rec.key_id, |rec| {
        delete_imported(rec);
        Ok(())
    })?;
    Ok(json!({ "KeyId": live.rec.arn, "KeyMaterialId": current }))
}
