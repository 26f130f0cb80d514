//! The credential table: which access key id belongs to which caller, and
//! its secret (needed to recompute SigV4 signatures; HMAC is symmetric).

use std::collections::HashMap;

use ferry_proto::Caller;
use zeroize::Zeroizing;

/// Looks up access keys. Implementations must be cheap: this runs on every
/// request.
pub trait Authenticator: Send + Sync {
    /// The secret and the caller for `access_key_id`, or `None` if unknown.
    fn lookup(&self, access_key_id: &str) -> Option<(Zeroizing<String>, Caller)>;
}

/// A fixed set of access keys (the administrator's, for now).
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
    fn lookup(&self, access_key_id: &str) -> Option<(Zeroizing<String>, Caller)> {
        self.keys
            .get(access_key_id)
            .map(|(s, c)| (s.clone(), c.clone()))
    }
}
