//! The credential table: which access key id belongs to which caller, and
//! its secret (needed to recompute SigV4 signatures; HMAC is symmetric).
//!
//! The production table is the IAM store's (the administrator's key, IAM
//! users' access keys, STS sessions), adapted in the composition root;
//! [`StaticKeys`] is a fixed table for tests and tools.

use std::collections::HashMap;

use ferry_proto::Caller;
use zeroize::Zeroizing;

use crate::sigv4::AuthError;

/// Why an access key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefused {
    /// Unknown, inactive, revoked, or its session token is missing or
    /// wrong: "The security token included in the request is invalid."
    Invalid,
    /// A session key whose session has expired: "The security token
    /// included in the request is expired".
    Expired,
}

impl From<KeyRefused> for AuthError {
    fn from(r: KeyRefused) -> Self {
        match r {
            KeyRefused::Invalid => AuthError::UnknownKey,
            KeyRefused::Expired => AuthError::ExpiredToken,
        }
    }
}

/// Looks up access keys. Implementations must be cheap: this runs on every
/// request, so they answer from memory.
pub trait Authenticator: Send + Sync {
    /// The secret and the caller for `access_key_id`. `session_token` is
    /// the request's `X-Amz-Security-Token`: required (and checked) for
    /// temporary credentials, refused for long-term keys.
    fn lookup(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Result<(Zeroizing<String>, Caller), KeyRefused>;
}

/// A fixed set of long-term access keys (tests, tools).
#[derive(Default)]
pub struct StaticKeys {
    keys: HashMap<String, (Zeroizing<String>, Caller)>,
}

impl StaticKeys {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; the caller's `access_key_id` is filled in.
    pub fn insert(&mut self, access_key_id: &str, secret: Zeroizing<String>, mut caller: Caller) {
        caller.access_key_id = Some(access_key_id.to_owned());
        self.keys.insert(access_key_id.to_owned(), (secret, caller));
    }
}

impl Authenticator for StaticKeys {
    fn lookup(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Result<(Zeroizing<String>, Caller), KeyRefused> {
        // A session token with a long-term key is refused, as AWS does.
        if session_token.is_some() {
            return Err(KeyRefused::Invalid);
        }
        self.keys
            .get(access_key_id)
            .map(|(s, c)| (s.clone(), c.clone()))
            .ok_or(KeyRefused::Invalid)
    }
}
