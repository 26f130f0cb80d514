//! Asymmetric (RSA, ECC) and HMAC key material, from OpenSSL.
//!
//! A key's material is what the root key seals (the same path as the
//! 32-byte symmetric material): for RSA and ECC keys the private key as
//! PKCS#8 DER, for HMAC keys the raw secret. The tables here are AWS's:
//! which key usages a key spec allows, which algorithms it lists, which
//! signing algorithm a curve takes.

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::md::{Md, MdRef};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use openssl::sign::RsaPssSaltlen;
use openssl::sign::Signer;
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError};

/// A key spec ferry serves (AWS's `KeySpec` values, minus SM2, ML-DSA and
/// Ed25519, which ferry refuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// `SYMMETRIC_DEFAULT`: AES-256-GCM.
    Symmetric,
    /// `RSA_2048`, `RSA_3072`, `RSA_4096` (the modulus size in bits).
    Rsa(u32),
    /// `ECC_NIST_P256`, `ECC_NIST_P384`, `ECC_NIST_P521`, `ECC_SECG_P256K1`.
    Ec(Curve),
    /// `HMAC_224` .. `HMAC_512` (the key and digest size in bits).
    Hmac(u32),
}

/// The elliptic curves AWS offers for signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
    /// secp256k1.
    K256,
}

impl Curve {
    fn nid(self) -> Nid {
        match self {
            Curve::P256 => Nid::X9_62_PRIME256V1,
            Curve::P384 => Nid::SECP384R1,
            Curve::P521 => Nid::SECP521R1,
            Curve::K256 => Nid::SECP256K1,
        }
    }
}

/// The `EncryptionAlgorithms` of RSA keys.
pub const RSA_ENCRYPTION: &[&str] = &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"];
/// The `SigningAlgorithms` of RSA keys.
pub const RSA_SIGNING: &[&str] = &[
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
];

impl Spec {
    /// Parses a `KeySpec` (or `KeyPairSpec`) ferry serves.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SYMMETRIC_DEFAULT" => Spec::Symmetric,
            "RSA_2048" => Spec::Rsa(2048),
            "RSA_3072" => Spec::Rsa(3072),
            "RSA_4096" => Spec::Rsa(4096),
            "ECC_NIST_P256" => Spec::Ec(Curve::P256),
            "ECC_NIST_P384" => Spec::Ec(Curve::P384),
            "ECC_NIST_P521" => Spec::Ec(Curve::P521),
            "ECC_SECG_P256K1" => Spec::Ec(Curve::K256),
            "HMAC_224" => Spec::Hmac(224),
            "HMAC_256" => Spec::Hmac(256),
            "HMAC_384" => Spec::Hmac(384),
            "HMAC_512" => Spec::Hmac(512),
            _ => return None,
        })
    }

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            Spec::Symmetric => "SYMMETRIC_DEFAULT",
            Spec::Rsa(2048) => "RSA_2048",
            Spec::Rsa(3072) => "RSA_3072",
            Spec::Rsa(_) => "RSA_4096",
            Spec::Ec(Curve::P256) => "ECC_NIST_P256",
            Spec::Ec(Curve::P384) => "ECC_NIST_P384",
            Spec::Ec(Curve::P521) => "ECC_NIST_P521",
            Spec::Ec(Curve::K256) => "ECC_SECG_P256K1",
            Spec::Hmac(224) => "HMAC_224",
            Spec::Hmac(256) => "HMAC_256",
            Spec::Hmac(384) => "HMAC_384",
            Spec::Hmac(_) => "HMAC_512",
        }
    }

    /// Whether the spec may be created with `usage` (AWS's matrix, minus
    /// KEY_AGREEMENT, which ferry does not serve).
    pub fn allows_usage(self, usage: &str) -> bool {
        match self {
            Spec::Symmetric => usage == "ENCRYPT_DECRYPT",
            Spec::Rsa(_) => usage == "ENCRYPT_DECRYPT" || usage == "SIGN_VERIFY",
            Spec::Ec(_) => usage == "SIGN_VERIFY",
            Spec::Hmac(_) => usage == "GENERATE_VERIFY_MAC",
        }
    }

    /// `EncryptionAlgorithms` for a key of this spec and usage.
    pub fn encryption_algorithms(self, usage: &str) -> &'static [&'static str] {
        match (self, usage) {
            (Spec::Symmetric, _) => &["SYMMETRIC_DEFAULT"],
            (Spec::Rsa(_), "ENCRYPT_DECRYPT") => RSA_ENCRYPTION,
            _ => &[],
        }
    }

    /// `SigningAlgorithms` for a key of this spec and usage.
    pub fn signing_algorithms(self, usage: &str) -> &'static [&'static str] {
        match (self, usage) {
            (Spec::Rsa(_), "SIGN_VERIFY") => RSA_SIGNING,
            (Spec::Ec(Curve::P256 | Curve::K256), _) => &["ECDSA_SHA_256"],
            (Spec::Ec(Curve::P384), _) => &["ECDSA_SHA_384"],
            (Spec::Ec(Curve::P521), _) => &["ECDSA_SHA_512"],
            _ => &[],
        }
    }

    /// `MacAlgorithms` for a key of this spec.
    pub fn mac_algorithms(self) -> &'static [&'static str] {
        match self {
            Spec::Hmac(224) => &["HMAC_SHA_224"],
            Spec::Hmac(256) => &["HMAC_SHA_256"],
            Spec::Hmac(384) => &["HMAC_SHA_384"],
            Spec::Hmac(_) => &["HMAC_SHA_512"],
            _ => &[],
        }
    }

    /// Whether the material is a private key (RSA, ECC).
    pub fn is_asymmetric(self) -> bool {
        matches!(self, Spec::Rsa(_) | Spec::Ec(_))
    }
}

fn lib<E>(_: E) -> CryptoError {
    CryptoError::Library
}

/// New material for `spec`: a PKCS#8 DER private key, or an HMAC secret
/// (as long as the digest, as AWS's HMAC keys are), or a 32-byte AES key.
pub fn generate(spec: Spec) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let pkey: PKey<Private> = match spec {
        Spec::Symmetric => {
            return Ok(Zeroizing::new(crypto::random_key()?.to_vec()));
        }
        Spec::Hmac(bits) => {
            let mut k = Zeroizing::new(vec![0u8; bits as usize / 8]);
            crypto::random(&mut k)?;
            return Ok(k);
        }
        Spec::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits).map_err(lib)?).map_err(lib)?,
        Spec::Ec(curve) => {
            let group = EcGroup::from_curve_name(curve.nid()).map_err(lib)?;
            PKey::from_ec_key(EcKey::generate(&group).map_err(lib)?).map_err(lib)?
        }
    };
    Ok(Zeroizing::new(pkey.private_key_to_pkcs8().map_err(lib)?))
}

/// The private key in PKCS#8 DER material.
pub fn private_key(material: &[u8]) -> Result<PKey<Private>, CryptoError> {
    PKey::private_key_from_pkcs8(material).map_err(lib)
}

/// The public key (DER `SubjectPublicKeyInfo`) of PKCS#8 material.
pub fn public_key_der(material: &[u8]) -> Result<Vec<u8>, CryptoError> {
    private_key(material)?.public_key_to_der().map_err(lib)
}

/// Whether a DER `SubjectPublicKeyInfo` is well formed (tests).
pub fn public_key_ok(der: &[u8]) -> bool {
    PKey::public_key_from_der(der).is_ok()
}

/// A hash function by its size in bits (1 for SHA-1).
pub fn md(bits: u32) -> &'static MdRef {
    match bits {
        1 => Md::sha1(),
        224 => Md::sha224(),
        256 => Md::sha256(),
        384 => Md::sha384(),
        _ => Md::sha512(),
    }
}

/// A signing algorithm: its padding (RSA) and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningAlgorithm {
    /// `None` for ECDSA; RSA's padding otherwise.
    pub rsa_padding: Option<RsaSigPadding>,
    /// The hash size in bits.
    pub hash_bits: u32,
}

/// RSA signature paddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaSigPadding {
    /// RSASSA-PKCS1-v1_5.
    Pkcs1,
    /// RSASSA-PSS, salt as long as the hash (as AWS signs).
    Pss,
}

impl SigningAlgorithm {
    /// Parses a `SigningAlgorithm` ferry serves.
    pub fn parse(s: &str) -> Option<Self> {
        let (rsa_padding, hash) = if let Some(h) = s.strip_prefix("RSASSA_PSS_SHA_") {
            (Some(RsaSigPadding::Pss), h)
        } else if let Some(h) = s.strip_prefix("RSASSA_PKCS1_V1_5_SHA_") {
            (Some(RsaSigPadding::Pkcs1), h)
        } else if let Some(h) = s.strip_prefix("ECDSA_SHA_") {
            (None, h)
        } else {
            return None;
        };
        let hash_bits = match hash {
            "256" => 256,
            "384" => 384,
            "512" => 512,
            _ => return None,
        };
        Some(Self {
            rsa_padding,
            hash_bits,
        })
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        self.hash_bits as usize / 8
    }
}

/// The digest of `message` for `alg`.
pub fn digest(alg: SigningAlgorithm, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let kind = match alg.hash_bits {
        256 => openssl::hash::MessageDigest::sha256(),
        384 => openssl::hash::MessageDigest::sha384(),
        _ => openssl::hash::MessageDigest::sha512(),
    };
    Ok(openssl::hash::hash(kind, message).map_err(lib)?.to_vec())
}

fn sig_ctx(
    pkey: &PKey<Private>,
    alg: SigningAlgorithm,
    verify: bool,
) -> Result<PkeyCtx<Private>, CryptoError> {
    let mut ctx = PkeyCtx::new(pkey).map_err(lib)?;
    if verify {
        ctx.verify_init().map_err(lib)?;
    } else {
        ctx.sign_init().map_err(lib)?;
    }
    match alg.rsa_padding {
        Some(RsaSigPadding::Pkcs1) => ctx.set_rsa_padding(Padding::PKCS1).map_err(lib)?,
        Some(RsaSigPadding::Pss) => {
            ctx.set_rsa_padding(Padding::PKCS1_PSS).map_err(lib)?;
            ctx.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
                .map_err(lib)?;
        }
        None => {}
    }
    ctx.set_signature_md(md(alg.hash_bits)).map_err(lib)?;
    Ok(ctx)
}

/// Signs a digest (RSA: PKCS#1 v1.5 or PSS; ECDSA: DER-encoded `(r, s)`,
/// as AWS returns it).
pub fn sign_digest(
    material: &[u8],
    alg: SigningAlgorithm,
    digest: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let pkey = private_key(material)?;
    let mut ctx = sig_ctx(&pkey, alg, false)?;
    let mut sig = Vec::new();
    ctx.sign_to_vec(digest, &mut sig).map_err(lib)?;
    Ok(sig)
}

/// Verifies a signature over a digest; a malformed signature is simply
/// not valid.
pub fn verify_digest(
    material: &[u8],
    alg: SigningAlgorithm,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let pkey = private_key(material)?;
    let mut ctx = sig_ctx(&pkey, alg, true)?;
    Ok(ctx.verify(digest, signature).unwrap_or(false))
}

/// The RSA modulus size of PKCS#8 material, in bytes.
pub fn rsa_size(material: &[u8]) -> Result<usize, CryptoError> {
    Ok(private_key(material)?.size())
}

/// The largest plaintext RSAES-OAEP takes with a `k`-byte modulus and an
/// `h`-byte hash: k - 2h - 2 (RFC 8017).
pub fn oaep_max(modulus_bytes: usize, hash_bits: u32) -> usize {
    let h = if hash_bits == 1 {
        20
    } else {
        hash_bits as usize / 8
    };
    modulus_bytes.saturating_sub(2 * h + 2)
}

fn oaep_ctx<T>(ctx: &mut PkeyCtx<T>, hash_bits: u32) -> Result<(), CryptoError> {
    ctx.set_rsa_padding(Padding::PKCS1_OAEP).map_err(lib)?;
    // The OAEP hash and MGF1's are the same, as AWS and `openssl pkeyutl
    // -pkeyopt rsa_oaep_md:X` use them.
    ctx.set_rsa_oaep_md(md(hash_bits)).map_err(lib)?;
    ctx.set_rsa_mgf1_md(md(hash_bits)).map_err(lib)?;
    Ok(())
}

/// RSAES-OAEP encryption under the public half of PKCS#8 material.
pub fn rsa_encrypt(material: &[u8], hash_bits: u32, pt: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let pkey = private_key(material)?;
    let mut ctx = PkeyCtx::new(&pkey).map_err(lib)?;
    ctx.encrypt_init().map_err(lib)?;
    oaep_ctx(&mut ctx, hash_bits)?;
    let mut out = Vec::new();
    ctx.encrypt_to_vec(pt, &mut out).map_err(lib)?;
    Ok(out)
}

/// RSAES-OAEP decryption; any failure is [`CryptoError::Auth`].
pub fn rsa_decrypt(
    material: &[u8],
    hash_bits: u32,
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let pkey = private_key(material)?;
    let mut ctx = PkeyCtx::new(&pkey).map_err(lib)?;
    ctx.decrypt_init().map_err(lib)?;
    oaep_ctx(&mut ctx, hash_bits)?;
    let mut out = Zeroizing::new(Vec::new());
    ctx.decrypt_to_vec(ct, &mut out)
        .map_err(|_| CryptoError::Auth)?;
    Ok(out)
}

/// HMAC of `message` under `key` with the `bits`-bit SHA-2 hash.
pub fn hmac(key: &[u8], bits: u32, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let kind = match bits {
        224 => openssl::hash::MessageDigest::sha224(),
        256 => openssl::hash::MessageDigest::sha256(),
        384 => openssl::hash::MessageDigest::sha384(),
        _ => openssl::hash::MessageDigest::sha512(),
    };
    let pkey = PKey::hmac(key).map_err(lib)?;
    let mut s = Signer::new(kind, &pkey).map_err(lib)?;
    s.update(message).map_err(lib)?;
    s.sign_to_vec().map_err(lib)
}

/// AES key wrap with padding (RFC 5649) under a 256-bit KEK: the second
/// half of the `RSA_AES_KEY_WRAP_SHA_*` import wrapping.
pub fn aes_kwp_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    kwp(kek, wrapped, false)
}

/// The inverse of [`aes_kwp_unwrap`] (tests, and clients).
pub fn aes_kwp_wrap(kek: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
    Ok(kwp(kek, key, true)?.to_vec())
}

fn kwp(kek: &[u8], input: &[u8], encrypt: bool) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    use openssl::cipher::Cipher;
    use openssl::cipher_ctx::CipherCtx;
    if kek.len() != 32 {
        return Err(CryptoError::Auth);
    }
    let mut ctx = CipherCtx::new().map_err(lib)?;
    let cipher = Cipher::aes_256_wrap_pad();
    if encrypt {
        ctx.encrypt_init(Some(cipher), Some(kek), None)
            .map_err(lib)?;
    } else {
        ctx.decrypt_init(Some(cipher), Some(kek), None)
            .map_err(lib)?;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(input.len() + 16));
    ctx.cipher_update_vec(input, &mut out)
        .map_err(|_| CryptoError::Auth)?;
    ctx.cipher_final_vec(&mut out)
        .map_err(|_| CryptoError::Auth)?;
    Ok(out)
}

/// A fresh key pair for GenerateDataKeyPair: (PKCS#8 DER private key,
/// DER `SubjectPublicKeyInfo`).
pub fn data_key_pair(spec: Spec) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError> {
    if !spec.is_asymmetric() {
        return Err(CryptoError::Library);
    }
    let private = generate(spec)?;
    let public = public_key_der(&private)?;
    Ok((private, public))
}

/// Whether an EC key's public point is on its curve (tests: the material
/// is a real key, not bytes).
pub fn ec_point_ok(material: &[u8]) -> bool {
    let Ok(pkey) = private_key(material) else {
        return false;
    };
    let Ok(ec) = pkey.ec_key() else { return false };
    let Ok(mut ctx) = BigNumContext::new() else {
        return false;
    };
    ec.public_key()
        .is_on_curve(ec.group(), &mut ctx)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_signs_and_verifies_with_every_listed_algorithm() {
        for name in [
            "RSA_2048",
            "ECC_NIST_P256",
            "ECC_NIST_P384",
            "ECC_NIST_P521",
            "ECC_SECG_P256K1",
        ] {
            let spec = Spec::parse(name).unwrap();
            assert_eq!(spec.name(), name);
            let m = generate(spec).unwrap();
            assert!(public_key_ok(&public_key_der(&m).unwrap()));
            if let Spec::Ec(_) = spec {
                assert!(ec_point_ok(&m));
            }
            for a in spec.signing_algorithms("SIGN_VERIFY") {
                let alg = SigningAlgorithm::parse(a).unwrap();
                let d = digest(alg, b"message").unwrap();
                assert_eq!(d.len(), alg.digest_len());
                let sig = sign_digest(&m, alg, &d).unwrap();
                assert!(verify_digest(&m, alg, &d, &sig).unwrap(), "{name} {a}");
                let other = digest(alg, b"messagf").unwrap();
                assert!(!verify_digest(&m, alg, &other, &sig).unwrap(), "{name} {a}");
                assert!(!verify_digest(&m, alg, &d, &sig[1..]).unwrap());
            }
        }
    }

    #[test]
    fn pss_signatures_use_a_digest_length_salt() {
        // A verifier that insists on salt length = hash length accepts it.
        let m = generate(Spec::Rsa(2048)).unwrap();
        let alg = SigningAlgorithm::parse("RSASSA_PSS_SHA_384").unwrap();
        let d = digest(alg, b"x").unwrap();
        let sig = sign_digest(&m, alg, &d).unwrap();
        let pkey = private_key(&m).unwrap();
        let mut v =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha384(), &pkey).unwrap();
        v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(48))
            .unwrap();
        v.update(b"x").unwrap();
        assert!(v.verify(&sig).unwrap());
    }

    #[test]
    fn oaep_round_trip_and_limits() {
        let m = generate(Spec::Rsa(2048)).unwrap();
        assert_eq!(rsa_size(&m).unwrap(), 256);
        assert_eq!(oaep_max(256, 1), 214);
        assert_eq!(oaep_max(256, 256), 190);
        assert_eq!(oaep_max(512, 256), 446);
        for h in [1, 256] {
            let pt = vec![7u8; oaep_max(256, h)];
            let ct = rsa_encrypt(&m, h, &pt).unwrap();
            assert_eq!(ct.len(), 256);
            assert_eq!(rsa_decrypt(&m, h, &ct).unwrap().as_slice(), &pt[..]);
            let other = if h == 1 { 256 } else { 1 };
            assert_eq!(rsa_decrypt(&m, other, &ct), Err(CryptoError::Auth));
            assert!(rsa_encrypt(&m, h, &vec![0; oaep_max(256, h) + 1]).is_err());
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mac = hmac(b"Jefe", 256, b"what do ya want for nothing?").unwrap();
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(generate(Spec::Hmac(224)).unwrap().len(), 28);
        assert_eq!(generate(Spec::Hmac(512)).unwrap().len(), 64);
    }

    #[test]
    fn aes_key_wrap_with_padding_matches_rfc_5649() {
        // Round trip under a 256-bit KEK (the size the import uses); a
        // flipped bit or another KEK fails the integrity check.
        let kek = [9u8; 32];
        let key = [1u8; 32];
        let w = aes_kwp_wrap(&kek, &key).unwrap();
        assert_eq!(w.len(), 40);
        assert_eq!(aes_kwp_unwrap(&kek, &w).unwrap().as_slice(), &key);
        let mut bad = w.clone();
        bad[3] ^= 1;
        assert!(aes_kwp_unwrap(&kek, &bad).is_err());
        assert!(aes_kwp_unwrap(&[8u8; 32], &w).is_err());
    }

    #[test]
    fn usage_matrix() {
        assert!(Spec::Rsa(4096).allows_usage("SIGN_VERIFY"));
        assert!(Spec::Rsa(4096).allows_usage("ENCRYPT_DECRYPT"));
        assert!(!Spec::Ec(Curve::P256).allows_usage("ENCRYPT_DECRYPT"));
        assert!(!Spec::Hmac(256).allows_usage("SIGN_VERIFY"));
        assert!(!Spec::Symmetric.allows_usage("GENERATE_VERIFY_MAC"));
        assert!(Spec::parse("SM2").is_none());
        assert_eq!(
            Spec::Rsa(2048).signing_algorithms("ENCRYPT_DECRYPT").len(),
            0
        );
        assert_eq!(
            Spec::Rsa(2048).encryption_algorithms("SIGN_VERIFY").len(),
            0
        );
    }
}
