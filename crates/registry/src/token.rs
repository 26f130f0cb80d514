//! The registry's login tokens: the password of user `AWS` that
//! GetAuthorizationToken hands out (`aws ecr get-login-password`).
//!
//! A token is `PAYLOAD.MAC`, both base64url: the payload is JSON naming
//! the principal it was issued to (its ARN and the access key it signed
//! with) and its expiry; the MAC is HMAC-SHA256 under the registry's token
//! key, a 256-bit secret kept sealed under the KMS root key. Nobody
//! without the key can make or alter one; the registry refuses it after
//! its expiry, and (checked by the caller of [`TokenKey::verify`]) once
//! the principal's key or session is gone.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// How long a token is valid: ECR's 12 hours.
pub const TOKEN_LIFETIME_SECS: i64 = 12 * 3600;

/// Who a token was issued to, and until when. Not secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// The account.
    #[serde(rename = "a")]
    pub account: String,
    /// The principal's ARN (`Caller::arn`).
    #[serde(rename = "p")]
    pub principal: String,
    /// The access key id the principal signed GetAuthorizationToken with
    /// (empty for in-process callers without one).
    #[serde(rename = "k")]
    pub access_key_id: String,
    /// Expiry, seconds since the epoch.
    #[serde(rename = "e")]
    pub expires: i64,
    /// Makes every token distinct.
    #[serde(rename = "n")]
    pub nonce: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this registry (malformed, or the MAC does not match).
    #[error("the authorization token is invalid")]
    Invalid,
    /// Past its expiry.
    #[error("the authorization token has expired")]
    Expired,
}

/// The token key. No `Debug`; wiped on drop.
pub struct TokenKey(Zeroizing<[u8; 32]>);

impl TokenKey {
    /// A key from its 32 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Self(k))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self(Zeroizing::new(rand::random()))
    }

    /// The key's bytes (to be sealed).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, payload: &str) -> Result<Vec<u8>, TokenError> {
        let mut m = Hmac::<Sha256>::new_from_slice(&*self.0).map_err(|_| TokenError::Invalid)?;
        m.update(b"ferry-ecr-token-v1\0");
        m.update(payload.as_bytes());
        Ok(m.finalize().into_bytes().to_vec())
    }

    /// A token for `claims`.
    pub fn issue(&self, claims: &Claims) -> Result<Zeroizing<String>, TokenError> {
        let json = serde_json::to_vec(claims).map_err(|_| TokenError::Invalid)?;
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = URL_SAFE_NO_PAD.encode(self.mac(&payload)?);
        Ok(Zeroizing::new(format!("{payload}.{mac}")))
    }

    /// The claims of `token` if this key made it and it has not expired
    /// at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (payload, mac) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Invalid)?;
        let mut m = Hmac::<Sha256>::new_from_slice(&*self.0).map_err(|_| TokenError::Invalid)?;
        m.update(b"ferry-ecr-token-v1\0");
        m.update(payload.as_bytes());
        // Constant-time comparison.
        m.verify_slice(&mac).map_err(|_| TokenError::Invalid)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
        if claims.expires <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires: i64) -> Claims {
        Claims {
            account: "012345678910".into(),
            principal: "arn:aws:iam::012345678910:user/alice".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            expires,
            nonce: "n".into(),
        }
    }

    #[test]
    fn issue_verify_expire_and_forge() {
        let key = TokenKey::generate();
        let t = key.issue(&claims(1000)).unwrap();
        assert_eq!(key.verify(&t, 999).unwrap(), claims(1000));
        assert_eq!(key.verify(&t, 1000), Err(TokenError::Expired));
        // Another key's token, a changed payload, garbage: invalid.
        let other = TokenKey::generate();
        assert_eq!(other.verify(&t, 0), Err(TokenError::Invalid));
        let (_, mac) = t.split_once('.').unwrap();
        let forged = format!(
            "{}.{mac}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(i64::MAX)).unwrap())
        );
        assert_eq!(key.verify(&forged, 0), Err(TokenError::Invalid));
        assert_eq!(key.verify("nonsense", 0), Err(TokenError::Invalid));
        assert_eq!(key.verify("", 0), Err(TokenError::Invalid));
        // The same key, reloaded from its bytes, accepts it.
        let again = TokenKey::from_slice(key.bytes()).unwrap();
        assert!(again.verify(&t, 0).is_ok());
    }
}
