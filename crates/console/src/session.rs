//! Signed-in sessions: a random id in an HttpOnly, SameSite=Strict cookie,
//! and per session a CSRF token the page sends back in `X-Ferry-Csrf` on
//! every state change.
//!
//! The table holds the SHA-256 of each session id, never the id itself, so
//! a memory read of the table yields no usable cookie. A session remembers
//! only the access key id: every request looks the key up again (a key
//! deleted or deactivated since sign-in ends the session; policies are the
//! current ones). Sessions live in memory: a server restart signs everyone
//! out, which is the safe direction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a session lives after sign-in (the cookie's `Max-Age`).
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The most sessions held at once; the oldest are dropped beyond it (a
/// flood of sign-ins cannot grow memory without bound).
const MAX_SESSIONS: usize = 10_000;

/// The session cookie's name.
pub const COOKIE: &str = "ferry_console";

/// One signed-in session.
#[derive(Clone)]
pub struct Session {
    /// The access key the user signed in with.
    pub access_key_id: String,
    /// The token state changes must carry.
    pub csrf_token: String,
    expires: Instant,
    created: Instant,
}

/// The session table.
#[derive(Default)]
pub struct Sessions {
    by_id_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes from the OS-seeded CSPRNG, hex.
fn token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// Starts a session for `access_key_id`: its id (the cookie's value)
    /// and the session.
    pub fn start(&self, access_key_id: &str) -> (String, Session) {
        let id = token();
        let now = Instant::now();
        let session = Session {
            access_key_id: access_key_id.to_owned(),
            csrf_token: token(),
            expires: now + LIFETIME,
            created: now,
        };
        let mut table = self.lock();
        table.retain(|_, s| s.expires > now);
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
        {
            table.remove(&oldest);
        }
        table.insert(digest(&id), session.clone());
        (id, session)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = digest(id);
        let mut table = self.lock();
        match table.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                table.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session with this id (sign-out): the id is refused from
    /// then on.
    pub fn end(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // Every critical section is a map operation; a panic in one leaves
        // the map consistent.
        self.by_id_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that ends one.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_until_it_ends() {
        let s = Sessions::default();
        let (id, session) = s.start("AKIA1");
        assert_eq!(s.get(&id).map(|x| x.access_key_id), Some("AKIA1".into()));
        assert_eq!(session.csrf_token.len(), 64);
        assert!(s.get("not-a-session").is_none());
        s.end(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn ids_and_tokens_differ_per_session() {
        let s = Sessions::default();
        let (a, sa) = s.start("K");
        let (b, sb) = s.start("K");
        assert_ne!(a, b);
        assert_ne!(sa.csrf_token, sb.csrf_token);
    }

    #[test]
    fn an_expired_session_is_refused() {
        let s = Sessions::default();
        let (id, _) = s.start("K");
        for v in s.lock().values_mut() {
            v.expires = Instant::now() - Duration::from_secs(1);
        }
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let s = Sessions::default();
        let (first, _) = s.start("K");
        for _ in 0..MAX_SESSIONS {
            s.start("K");
        }
        assert!(s.lock().len() <= MAX_SESSIONS);
        assert!(
            s.get(&first).is_none(),
            "the oldest session is dropped first"
        );
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "a"));
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; ferry_console=xyz; b=2"),
        );
        assert_eq!(cookie_value(&h), Some("xyz".into()));
        assert!(
            set_cookie("xyz").contains("HttpOnly; SameSite=Strict; Path=/console; Max-Age=43200")
        );
    }
}
