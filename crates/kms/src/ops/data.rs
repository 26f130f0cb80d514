//! The cryptographic operations: Encrypt, Decrypt, GenerateDataKey,
//! GenerateDataKeyWithoutPlaintext, GenerateRandom, ReEncrypt. Decrypt,
//! GenerateDataKey and GenerateDataKeyWithoutPlaintext are also typed
//! ([`Operation`]) for in-process callers.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{check_grant_tokens, with_dry_run};
use crate::blob;
use crate::crypto;
use crate::error::KmsError;
use crate::keystore::{KeyStore, LiveKey, Names, Request};
use crate::params::{Params, b64};
use crate::service::{Kms, Operation, Trail};

pub(crate) const ALGORITHMS: &[&str] = &[
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

pub(crate) fn refuse_recipient(p: &Params<'_>) -> Result<(), AwsError> {
    if p.opt_object("Recipient")?.is_some() {
        return Err(KmsError::unsupported(
            "Recipient (Nitro Enclaves attestation) is not supported.",
        ));
    }
    Ok(())
}

/// Resolves, authorizes and state-checks a key for a cryptographic use,
/// rotating it first if automatic rotation is due.
pub(crate) fn key_for_use(
    kms: &Kms,
    ctx: &RequestContext,
    key_id: &str,
    action: &str,
    context: &BTreeMap<String, String>,
    res: &mut Trail,
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
    require_symmetric(&key, action)?;
    super::rotation::rotate_if_due(kms, key)
}

/// The symmetric operations need a symmetric encryption key: anything
/// else is `InvalidKeyUsageException`, as in AWS.
pub(crate) fn require_symmetric(key: &LiveKey, action: &str) -> Result<(), AwsError> {
    if key.rec.key_usage != "ENCRYPT_DECRYPT" {
        return Err(KmsError::key_usage(
            &key.rec.arn,
            &key.rec.key_usage,
            action,
        ));
    }
    if key.spec() != crate::asym::Spec::Symmetric {
        return Err(AwsError::client(
            "InvalidKeyUsageException",
            format!(
                "{} key spec is {} which is not valid for {action}.",
                key.rec.arn, key.rec.key_spec
            ),
        ));
    }
    Ok(())
}

/// A decrypted blob: its key, the plaintext, the material id.
type Opened = (Arc<LiveKey>, Zeroizing<Vec<u8>>, String);
/// A generated data key: the key, the plaintext, the blob.
type Generated = (Arc<LiveKey>, Zeroizing<Vec<u8>>, Vec<u8>);

/// Encrypts `plaintext` under the key's current material, with `iv` if
/// the caller already drew one, else a fresh one.
pub(crate) fn seal(
    key: &LiveKey,
    context: &BTreeMap<String, String>,
    plaintext: &[u8],
    iv: Option<[u8; crypto::IV_LEN]>,
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
    let sealed = match iv {
        Some(iv) => crypto::seal_with_iv(k, iv, &aad, plaintext),
        None => crypto::seal(k, &aad, plaintext),
    };
    let (iv, ct, tag) = sealed.map_err(|_| KmsError::internal("encryption failed"))?;
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
    res: &mut Trail,
) -> Result<Opened, AwsError> {
    let parsed = blob::parse(data).map_err(|_| KmsError::invalid_ciphertext())?;
    if !parsed.key_arn.starts_with(kms.keys.arn_prefix()) || !parsed.key_arn.contains(":key/") {
        return Err(KmsError::invalid_ciphertext());
    }
    // A key id that names no key is a damaged blob, not a missing key:
    // answering NotFoundException would echo (and confirm) an altered id.
    // Only a key that exists is named in the audit record (pushed below).
    let key = kms
        .keys
        .resolve(parsed.key_arn, Names::KeyOnly)
        .map_err(|_| KmsError::invalid_ciphertext())?;
    if let Some(k) = key_param {
        let named = kms.keys.resolve(k, Names::KeyOrAlias)?;
        if named.rec.key_id != key.rec.key_id {
            return Err(KmsError::incorrect_key());
        }
    }
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

pub(crate) fn context(p: &Params<'_>, name: &str) -> Result<BTreeMap<String, String>, AwsError> {
    Ok(p.opt_context(name)?.unwrap_or_default())
}

pub fn encrypt(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key_id = p.key_id("KeyId")?;
    let plaintext = p.blob("Plaintext", 1, 4096)?;
    let ec = context(p, "EncryptionContext")?;
    let algorithm = p.opt_enum("EncryptionAlgorithm", ALGORITHMS)?;
    // An asymmetric key encrypts with RSAES-OAEP (its own path); a
    // symmetric one as before.
    if let Ok(key) = kms.keys.resolve(key_id, Names::KeyOrAlias)
        && key.spec().is_asymmetric()
    {
        check_grant_tokens(kms, p)?;
        let dry = p.dry_run()?;
        return super::asymmetric::rsa_encrypt(
            kms, ctx, &key, algorithm, &plaintext, &ec, dry, res,
        );
    }
    check_algorithm(p, "EncryptionAlgorithm")?;
    check_grant_tokens(kms, p)?;
    let key = key_for_use(kms, ctx, key_id, "Encrypt", &ec, res)?;
    if p.dry_run()? {
        return Err(KmsError::dry_run());
    }
    let blob = seal(&key, &ec, &plaintext, None)?;
    Ok(json!({
        "CiphertextBlob": b64(&blob),
        "KeyId": key.rec.arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

/// Decrypt, typed: shared by the JSON handler and the platform's in-process
/// calls ([`crate::platform`]).
pub struct Decrypt<'a> {
    /// The ciphertext blob.
    pub ciphertext_blob: &'a [u8],
    /// The encryption context it was sealed with.
    pub encryption_context: &'a BTreeMap<String, String>,
    /// The key the caller expects the blob to be under, if named.
    pub key_id: Option<&'a str>,
    /// Check only.
    pub dry_run: bool,
}

/// What Decrypt returns. The plaintext is wiped on drop.
pub struct Decrypted {
    /// The ARN of the key that sealed the blob.
    pub key_arn: String,
    /// The plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The id of the key material that sealed it.
    pub key_material_id: String,
}

impl Operation for Decrypt<'_> {
    const NAME: &'static str = "Decrypt";
    type Output = Decrypted;

    fn audit_request(&self) -> Value {
        // The blob is never audited (audit::SECRET_FIELDS); the rest is.
        let mut v = json!({ "EncryptionContext": self.encryption_context });
        if let Some(k) = self.key_id {
            v["KeyId"] = json!(k);
        }
        with_dry_run(v, self.dry_run)
    }

    fn run(&self, kms: &Kms, ctx: &RequestContext, res: &mut Trail) -> Result<Decrypted, AwsError> {
        let (key, plaintext, key_material_id) = open(
            kms,
            ctx,
            self.ciphertext_blob,
            self.encryption_context,
            self.key_id,
            "Decrypt",
            res,
        )?;
        if self.dry_run {
            return Err(KmsError::dry_run());
        }
        Ok(Decrypted {
            key_arn: key.rec.arn.clone(),
            plaintext,
            key_material_id,
        })
    }
}

pub fn decrypt(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let data = p.blob("CiphertextBlob", 1, 6144)?;
    let ec = context(p, "EncryptionContext")?;
    let key_param = p.opt_str("KeyId", 1, 2048)?;
    let algorithm = p.opt_enum("EncryptionAlgorithm", ALGORITHMS)?;
    // An RSA ciphertext names no key: the caller names it, and only then
    // is this the asymmetric path. A symmetric blob takes the path it
    // always took.
    if let Some(k) = key_param
        && let Ok(key) = kms.keys.resolve(k, Names::KeyOrAlias)
        && key.spec().is_asymmetric()
    {
        check_grant_tokens(kms, p)?;
        refuse_recipient(p)?;
        let dry = p.dry_run()?;
        return super::asymmetric::rsa_decrypt(kms, ctx, &key, algorithm, &data, &ec, dry, res);
    }
    check_algorithm(p, "EncryptionAlgorithm")?;
    check_grant_tokens(kms, p)?;
    refuse_recipient(p)?;
    let out = Decrypt {
        ciphertext_blob: &data,
        encryption_context: &ec,
        key_id: key_param,
        dry_run: p.dry_run()?,
    }
    .run(kms, ctx, res)?;
    let plaintext = Zeroizing::new(b64(&out.plaintext));
    Ok(json!({
        "KeyId": out.key_arn,
        "Plaintext": plaintext.as_str(),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "KeyMaterialId": out.key_material_id,
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

/// GenerateDataKeyWithoutPlaintext, typed: shared by the JSON handler and
/// the platform's in-process calls ([`crate::platform`]).
pub struct GenerateDataKeyWithoutPlaintext<'a> {
    /// The KMS key (id, ARN, alias name or alias ARN).
    pub key_id: &'a str,
    /// The encryption context to bind the data key to.
    pub encryption_context: &'a BTreeMap<String, String>,
    /// The data key's length in bytes (1..=1024).
    pub number_of_bytes: usize,
    /// Check only.
    pub dry_run: bool,
}

/// A data key sealed under a KMS key, without its plaintext.
#[derive(Debug)]
pub struct WrappedDataKey {
    /// The ARN of the KMS key that sealed it.
    pub key_arn: String,
    /// The ciphertext blob (not secret without KMS access).
    pub ciphertext_blob: Vec<u8>,
    /// The id of the key material that sealed it.
    pub key_material_id: String,
}

impl GenerateDataKeyWithoutPlaintext<'_> {
    /// Draws a data key and seals it; the caller decides whether the
    /// plaintext leaves the KMS (GenerateDataKey) or not.
    fn generate(
        &self,
        kms: &Kms,
        ctx: &RequestContext,
        res: &mut Trail,
        action: &str,
    ) -> Result<Generated, AwsError> {
        let ec = self.encryption_context;
        let len = self.number_of_bytes;
        let key = key_for_use(kms, ctx, self.key_id, action, ec, res)?;
        if self.dry_run {
            return Err(KmsError::dry_run());
        }
        // The data key and its blob's IV from one call to the generator.
        let mut rnd = Zeroizing::new(vec![0u8; len + crypto::IV_LEN]);
        crypto::random(&mut rnd).map_err(|_| KmsError::internal("random generation failed"))?;
        let mut iv = [0u8; crypto::IV_LEN];
        iv.copy_from_slice(&rnd[len..]);
        let dk = Zeroizing::new(rnd[..len].to_vec());
        let blob = seal(&key, ec, &dk, Some(iv))?;
        Ok((key, dk, blob))
    }

    /// Parses the members GenerateDataKey and GenerateDataKeyWithoutPlaintext share.
    fn parse<'a>(
        kms: &Kms,
        p: &Params<'a>,
        ec: &'a BTreeMap<String, String>,
    ) -> Result<GenerateDataKeyWithoutPlaintext<'a>, AwsError> {
        let key_id = p.key_id("KeyId")?;
        let number_of_bytes = data_key_len(p)?;
        check_grant_tokens(kms, p)?;
        Ok(GenerateDataKeyWithoutPlaintext {
            key_id,
            encryption_context: ec,
            number_of_bytes,
            dry_run: p.dry_run()?,
        })
    }
}

impl Operation for GenerateDataKeyWithoutPlaintext<'_> {
    const NAME: &'static str = "GenerateDataKeyWithoutPlaintext";
    type Output = WrappedDataKey;

    fn audit_request(&self) -> Value {
        with_dry_run(
            json!({
                "KeyId": self.key_id,
                "EncryptionContext": self.encryption_context,
                "NumberOfBytes": self.number_of_bytes,
            }),
            self.dry_run,
        )
    }

    fn run(
        &self,
        kms: &Kms,
        ctx: &RequestContext,
        res: &mut Trail,
    ) -> Result<WrappedDataKey, AwsError> {
        let (key, _dk, ciphertext_blob) = self.generate(kms, ctx, res, Self::NAME)?;
        Ok(WrappedDataKey {
            key_arn: key.rec.arn.clone(),
            ciphertext_blob,
            key_material_id: material_id(&key),
        })
    }
}

fn material_id(key: &LiveKey) -> String {
    key.rec.current().map(|m| m.id.clone()).unwrap_or_default()
}

/// GenerateDataKey, typed: shared by the JSON handler and in-process
/// callers that seal data under a data key (Secrets Manager, SSM).
pub struct GenerateDataKey<'a> {
    /// The KMS key (id, ARN, alias name or alias ARN).
    pub key_id: &'a str,
    /// The encryption context to bind the data key to.
    pub encryption_context: &'a BTreeMap<String, String>,
    /// The data key's length in bytes (1..=1024).
    pub number_of_bytes: usize,
    /// Check only.
    pub dry_run: bool,
}

/// A fresh data key: its plaintext (wiped on drop) and the same key sealed
/// under the KMS key. No `Debug`: it holds the plaintext.
pub struct DataKey {
    /// The ARN of the KMS key that sealed it.
    pub key_arn: String,
    /// The plaintext data key.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The ciphertext blob (not secret without KMS access).
    pub ciphertext_blob: Vec<u8>,
    /// The id of the key material that sealed it.
    pub key_material_id: String,
}

impl<'a> GenerateDataKey<'a> {
    /// The same request without the plaintext: both operations share one
    /// generator and one audit shape; only the action authorized (and what
    /// leaves the KMS) differs.
    fn without_plaintext(&self) -> GenerateDataKeyWithoutPlaintext<'a> {
        GenerateDataKeyWithoutPlaintext {
            key_id: self.key_id,
            encryption_context: self.encryption_context,
            number_of_bytes: self.number_of_bytes,
            dry_run: self.dry_run,
        }
    }
}

impl Operation for GenerateDataKey<'_> {
    const NAME: &'static str = "GenerateDataKey";
    type Output = DataKey;

    fn audit_request(&self) -> Value {
        self.without_plaintext().audit_request()
    }

    fn run(&self, kms: &Kms, ctx: &RequestContext, res: &mut Trail) -> Result<DataKey, AwsError> {
        let (key, plaintext, ciphertext_blob) =
            self.without_plaintext()
                .generate(kms, ctx, res, Self::NAME)?;
        Ok(DataKey {
            key_arn: key.rec.arn.clone(),
            plaintext,
            ciphertext_blob,
            key_material_id: material_id(&key),
        })
    }
}

pub fn generate_data_key(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    refuse_recipient(p)?;
    let ec = context(p, "EncryptionContext")?;
    let parsed = GenerateDataKeyWithoutPlaintext::parse(kms, p, &ec)?;
    let out = GenerateDataKey {
        key_id: parsed.key_id,
        encryption_context: &ec,
        number_of_bytes: parsed.number_of_bytes,
        dry_run: parsed.dry_run,
    }
    .run(kms, ctx, res)?;
    let plaintext = Zeroizing::new(b64(&out.plaintext));
    Ok(json!({
        "CiphertextBlob": b64(&out.ciphertext_blob),
        "Plaintext": plaintext.as_str(),
        "KeyId": out.key_arn,
        "KeyMaterialId": out.key_material_id,
    }))
}

pub fn generate_data_key_without_plaintext(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let ec = context(p, "EncryptionContext")?;
    let out = GenerateDataKeyWithoutPlaintext::parse(kms, p, &ec)?.run(kms, ctx, res)?;
    Ok(json!({
        "CiphertextBlob": b64(&out.ciphertext_blob),
        "KeyId": out.key_arn,
        "KeyMaterialId": out.key_material_id,
    }))
}

pub fn generate_random(
    _kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    _res: &mut Trail,
) -> Result<Value, AwsError> {
    super::authorize_account_op(ctx, "GenerateRandom")?;
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
    res: &mut Trail,
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
    let blob = seal(&dst, &dst_ec, &pt, None)?;
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
