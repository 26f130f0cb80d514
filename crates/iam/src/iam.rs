//! The identity store: roles, users, access keys and sessions, durable in
//! the state store and live in memory (every request is authenticated
//! against it, so lookups never touch the disk with the embedded store).
//!
//! Agent keys: a remote `ferry agent` host acts with its own long-term
//! key, one per host ([`Iam::create_agent_key`]), which authenticates as
//! the platform's service principal [`AGENT_PRINCIPAL`], exactly as the
//! in-process platform calls the KMS; no user owns it and the IAM API
//! neither lists nor changes it (only the operator's `FerryAdmin` calls
//! do).
//!
//! Writers are serialized by one mutex and write the store first, then the
//! memory: what a caller was told happened is durable. Secret access keys
//! and session secrets are sealed by a [`Sealer`] (the KMS root key) before
//! they reach the store; session tokens are kept only as SHA-256 digests.
//!
//! Sessions: AssumeRole sessions are persisted (sealed), so a restart keeps
//! them valid until they expire. Sessions issued to AWS services for a
//! resource ([`Iam::assume_role_for_service`], the task roles) live in
//! memory only with the embedded store: after a restart the control plane
//! issues new ones for the tasks it re-adopts, and a crashed task's
//! credentials cannot outlive the server. Deleting a role revokes its
//! sessions.
//!
//! Replicas (a shared store, issue 19): memory is a cache then. Every entry
//! point first compares the tables' versions with what it loaded and
//! reloads the tables another process changed ([`Iam::refresh`], one round
//! trip when nothing did; sealed secrets and parsed policies of unchanged
//! records are kept, not opened or parsed again). Every change re-reads its
//! records inside the write transaction (serialized across processes) and
//! is not published in memory: the next refresh loads it. Service sessions
//! are stored too (with their owner), so a task's credentials issued
//! through one replica authenticate through every other, and revoking them
//! through any replica refuses them everywhere.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use base64::Engine;
use ferry_policy::Policy;
use ferry_proto::authz::Check;
use ferry_proto::{AwsError, Caller, IdentityPolicies, Principal};
use ferry_store::{Store, WriteTxn};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::error::{self, no_such_role, no_such_user, store};
use crate::model::{
    ACCESS_KEYS, AGENT_KEYS, AccessKeyRecord, AgentKeyRecord, ROLES, RoleRecord, SESSIONS,
    SessionRecord, USERS, UserRecord,
};
use crate::{ids, managed, trust, validate};

/// Seals secrets for storage and opens them again (implemented over the
/// KMS root key in the composition root). `label` names the record the
/// secret belongs to and must be given again to open it.
pub trait Sealer: Send + Sync {
    /// Seals `plaintext`.
    fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, AwsError>;
    /// Opens what [`Sealer::seal`] sealed under the same label.
    fn unseal(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AwsError>;
}

/// The service principal an agent key authenticates as: the one the
/// in-process platform acts as (`ferry_kms::FARGATE_PRINCIPAL`, which this
/// crate does not depend on; the composition root asserts at compile time
/// that they are the same), so key policies and grants judge a remote
/// agent's KMS calls exactly as the platform's own.
pub const AGENT_PRINCIPAL: &str = "fargate.amazonaws.com";

/// Why a request's access key was refused at authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// Unknown, inactive, deleted or revoked, or the session token is
    /// missing or wrong.
    Invalid,
    /// The session has expired.
    Expired,
}

/// Temporary credentials for a role session.
pub struct SessionCredentials {
    /// `ASIA...`.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Zeroizing<String>,
    /// The session token (`X-Amz-Security-Token`).
    pub session_token: Zeroizing<String>,
    /// When the session expires.
    pub expiration: OffsetDateTime,
    /// The role's ARN.
    pub role_arn: String,
    /// The session as a caller, with the role's policies at issue time, for
    /// calls ferry makes in-process as the role (e.g. the execution role
    /// fetching secrets).
    pub caller: Caller,
}

impl fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"(secret)")
            .field("session_token", &"(secret)")
            .field("expiration", &self.expiration)
            .field("role_arn", &self.role_arn)
            .finish()
    }
}

/// An AssumeRole request from an authenticated caller.
#[derive(Debug, Clone, Default)]
pub struct AssumeRoleRequest<'a> {
    /// The role's ARN.
    pub role_arn: &'a str,
    /// The session name (2..=64 of `[\w+=,.@-]`).
    pub session_name: &'a str,
    /// The session's lifetime in seconds (900..=the role's maximum;
    /// default 3600).
    pub duration_seconds: Option<i64>,
    /// `ExternalId` (condition key `sts:ExternalId`).
    pub external_id: Option<&'a str>,
    /// `SourceIdentity` (condition key `sts:SourceIdentity`).
    pub source_identity: Option<&'a str>,
}

/// A session issued by AssumeRole, with what the response names.
#[derive(Debug)]
pub struct AssumedRole {
    /// The credentials.
    pub credentials: SessionCredentials,
    /// `AROA...:SESSION`.
    pub assumed_role_id: String,
}

/// A new role.
#[derive(Debug, Clone, Default)]
pub struct NewRole {
    /// The name.
    pub name: String,
    /// The path (`/` by default).
    pub path: String,
    /// The trust policy document.
    pub trust: String,
    /// The description.
    pub description: Option<String>,
    /// The longest session in seconds.
    pub max_session: u32,
    /// Tags.
    pub tags: Vec<crate::model::Tag>,
}

/// A new user.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// The name.
    pub name: String,
    /// The path.
    pub path: String,
    /// Tags.
    pub tags: Vec<crate::model::Tag>,
}

/// An identity policy set that denies everything: what a principal gets
/// when one of its stored policies no longer parses (dropping just that
/// policy could drop a Deny and so grant more than its owner meant).
const DENY_ALL: &str = r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;

struct LiveRole {
    rec: RoleRecord,
    /// `None` when the stored trust policy no longer parses: nobody may
    /// assume the role.
    trust: Option<Policy>,
    policies: Arc<IdentityPolicies>,
}

struct LiveUser {
    rec: UserRecord,
    policies: Arc<IdentityPolicies>,
}

struct LiveKey {
    rec: AccessKeyRecord,
    secret: Zeroizing<String>,
}

struct LiveAgentKey {
    rec: AgentKeyRecord,
    secret: Zeroizing<String>,
}

#[derive(Clone)]
struct LiveSession {
    secret: Zeroizing<String>,
    token: [u8; 32],
    /// The role's lowercase name.
    role: String,
    role_id: String,
    role_arn: String,
    session_name: String,
    /// Unix seconds.
    expires: i64,
    /// The resource a service session was issued for (a task ARN); `None`
    /// for AssumeRole sessions, which are persisted.
    owner: Option<String>,
}

#[derive(Default)]
struct State {
    /// By lowercase name.
    roles: BTreeMap<String, Arc<LiveRole>>,
    /// By lowercase name.
    users: BTreeMap<String, Arc<LiveUser>>,
    /// By key id.
    keys: HashMap<String, Arc<LiveKey>>,
    /// By key id.
    sessions: HashMap<String, Arc<LiveSession>>,
    /// Agent keys by key id (authentication looks them up by id; the
    /// table is keyed by host).
    agent_keys: HashMap<String, Arc<LiveAgentKey>>,
    /// The versions of [`TABLES`] the maps reflect (shared store only).
    seen: [u64; 5],
}

/// The tables kept in memory, in the order of `State::seen`.
const TABLES: [&str; 5] = [ROLES, USERS, ACCESS_KEYS, SESSIONS, AGENT_KEYS];

/// The identity store.
pub struct Iam {
    store: Arc<Store>,
    sealer: Arc<dyn Sealer>,
    account: String,
    /// When the account's identity store was created (the root user's
    /// CreateDate).
    created: i64,
    state: RwLock<State>,
    writer: Mutex<()>,
    /// Whether other processes write the store ([`Store::is_shared`]).
    shared: bool,
    /// One reload at a time.
    reload: Mutex<()>,
}

const META: &str = "iam_meta";

/// A write transaction's failure: the store's, or the operation's refusal.
enum Txn {
    Store(ferry_store::StoreError),
    Refused(AwsError),
}

impl From<ferry_store::StoreError> for Txn {
    fn from(e: ferry_store::StoreError) -> Self {
        Txn::Store(e)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    created: i64,
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// IAM names are unique without regard to case.
pub(crate) fn key_of(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Result<Vec<u8>, AwsError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| error::service_failure("a sealed secret in the store is not base64"))
}

fn secret_string(bytes: Zeroizing<Vec<u8>>) -> Result<Zeroizing<String>, AwsError> {
    let s = std::str::from_utf8(&bytes)
        .map_err(|_| error::service_failure("a sealed secret is not text"))?;
    Ok(Zeroizing::new(s.to_owned()))
}

fn key_label(key_id: &str) -> String {
    format!("iam/access-key/{key_id}")
}

fn session_label(key_id: &str) -> String {
    format!("iam/session/{key_id}")
}

// Its own label: a sealed user key copied into the agent table (or the
// reverse) does not open, so neither table can lend the other a secret.
fn agent_key_label(key_id: &str) -> String {
    format!("iam/agent-key/{key_id}")
}

/// The identity policies of a role or user: its inline policies and the
/// managed policies attached to it, parsed once.
fn identity_policies(
    what: &str,
    inline: &BTreeMap<String, String>,
    attached: &[String],
) -> Arc<IdentityPolicies> {
    let mut policies = Vec::with_capacity(inline.len() + attached.len());
    for (name, doc) in inline {
        match Policy::parse_identity(doc) {
            Ok(p) => policies.push(p),
            Err(e) => {
                tracing::warn!("{what}: stored policy {name} does not parse ({e}); denying all");
                return deny_all();
            }
        }
    }
    for arn in attached {
        match managed::parsed(arn) {
            Some(p) => policies.push(p.clone()),
            None => {
                tracing::warn!("{what}: attached policy {arn} is unknown; denying all");
                return deny_all();
            }
        }
    }
    Arc::new(IdentityPolicies { policies })
}

fn deny_all() -> Arc<IdentityPolicies> {
    Arc::new(IdentityPolicies {
        policies: Policy::parse_identity(DENY_ALL).into_iter().collect(),
    })
}

impl LiveRole {
    fn new(rec: RoleRecord) -> Self {
        let trust = trust::parse(&rec.trust)
            .inspect_err(|e| {
                tracing::warn!(
                    "role {}: stored trust policy does not parse ({}); nobody may assume it",
                    rec.name,
                    e.message
                );
            })
            .ok();
        let policies = identity_policies(&format!("role {}", rec.name), &rec.inline, &rec.attached);
        Self {
            rec,
            trust,
            policies,
        }
    }
}

impl LiveUser {
    fn new(rec: UserRecord) -> Self {
        let policies = identity_policies(&format!("user {}", rec.name), &rec.inline, &rec.attached);
        Self { rec, policies }
    }
}

impl Iam {
    /// Loads the identity store, opening every sealed secret. Expired
    /// sessions are dropped.
    pub fn open(
        store: Arc<Store>,
        sealer: Arc<dyn Sealer>,
        account: &str,
    ) -> Result<Self, AwsError> {
        // Made once, whichever replica starts first: read and written in
        // one transaction.
        let created = store
            .write(|w| {
                if let Some(m) = w.get::<Meta>(META, "meta")? {
                    return Ok(m.created);
                }
                let m = Meta { created: now() };
                w.put(META, "meta", &m)?;
                Ok::<_, ferry_store::StoreError>(m.created)
            })
            .map_err(error::store)?;
        let iam = Self {
            shared: store.is_shared(),
            store,
            sealer,
            account: account.to_owned(),
            created,
            state: RwLock::new(State::default()),
            writer: Mutex::new(()),
            reload: Mutex::new(()),
        };
        if iam.shared {
            iam.refresh()?;
            return Ok(iam);
        }
        let store = &iam.store;
        let mut st = State::default();
        for (k, rec) in store.scan::<RoleRecord>(ROLES, "").map_err(error::store)? {
            st.roles.insert(k, Arc::new(LiveRole::new(rec)));
        }
        for (k, rec) in store.scan::<UserRecord>(USERS, "").map_err(error::store)? {
            st.users.insert(k, Arc::new(LiveUser::new(rec)));
        }
        for (k, rec) in store
            .scan::<AccessKeyRecord>(ACCESS_KEYS, "")
            .map_err(error::store)?
        {
            let live = iam.live_key(&k, rec)?;
            st.keys.insert(k, Arc::new(live));
        }
        for (_, rec) in store
            .scan::<AgentKeyRecord>(AGENT_KEYS, "")
            .map_err(error::store)?
        {
            let live = iam.live_agent_key(rec)?;
            st.agent_keys
                .insert(live.rec.key_id.clone(), Arc::new(live));
        }
        let t = now();
        let mut expired = Vec::new();
        for (k, rec) in store
            .scan::<SessionRecord>(SESSIONS, "")
            .map_err(error::store)?
        {
            match iam.live_session(&k, rec, &st.roles, t)? {
                Some(live) => {
                    st.sessions.insert(k, Arc::new(live));
                }
                None => expired.push(k),
            }
        }
        if !expired.is_empty() {
            store
                .write(|w| {
                    for k in &expired {
                        w.delete(SESSIONS, k)?;
                    }
                    Ok::<_, ferry_store::StoreError>(())
                })
                .map_err(error::store)?;
        }
        *iam.write() = st;
        Ok(iam)
    }

    /// An access key's live form: its secret opened.
    fn live_key(&self, key_id: &str, rec: AccessKeyRecord) -> Result<LiveKey, AwsError> {
        let sealed = unb64(&rec.sealed_secret)?;
        let secret = secret_string(self.sealer.unseal(&key_label(key_id), &sealed)?)?;
        Ok(LiveKey { rec, secret })
    }

    /// An agent key's live form: its secret opened.
    fn live_agent_key(&self, rec: AgentKeyRecord) -> Result<LiveAgentKey, AwsError> {
        let sealed = unb64(&rec.sealed_secret)?;
        let secret = secret_string(self.sealer.unseal(&agent_key_label(&rec.key_id), &sealed)?)?;
        Ok(LiveAgentKey { rec, secret })
    }

    /// A stored session's live form, or `None` if it has expired by `t` or
    /// its role is gone (or was made again under its name).
    fn live_session(
        &self,
        key_id: &str,
        rec: SessionRecord,
        roles: &BTreeMap<String, Arc<LiveRole>>,
        t: i64,
    ) -> Result<Option<LiveSession>, AwsError> {
        if rec.expires <= t {
            return Ok(None);
        }
        let Some(role) = roles.get(&rec.role).filter(|r| r.rec.id == rec.role_id) else {
            return Ok(None);
        };
        let sealed = unb64(&rec.sealed_secret)?;
        let secret = secret_string(self.sealer.unseal(&session_label(key_id), &sealed)?)?;
        let mut token = [0u8; 32];
        hex::decode_to_slice(&rec.token_sha256, &mut token)
            .map_err(|_| error::service_failure("a stored session token digest is not hex"))?;
        Ok(Some(LiveSession {
            secret,
            token,
            role: rec.role,
            role_id: rec.role_id,
            role_arn: role.rec.arn.clone(),
            session_name: rec.session_name,
            expires: rec.expires,
            owner: rec.owner,
        }))
    }

    /// With a shared store, reloads the tables another process (or a change
    /// of this one, which is not published) wrote since they were loaded:
    /// one round trip when nothing changed. Unchanged records keep their
    /// live form (no secret is opened, no policy parsed again). A no-op
    /// with the embedded store.
    pub fn refresh(&self) -> Result<(), AwsError> {
        if !self.shared {
            return Ok(());
        }
        let now_v = self.store.versions(&TABLES).map_err(error::store)?;
        if self.read().seen[..] == now_v[..] {
            return Ok(());
        }
        let _one = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        // Another caller may have reloaded while this one waited.
        let now_v = self.store.versions(&TABLES).map_err(error::store)?;
        let (seen, prev_roles, prev_users, prev_keys, prev_sessions, prev_agents) = {
            let st = self.read();
            (
                st.seen,
                st.roles.clone(),
                st.users.clone(),
                st.keys.clone(),
                st.sessions.clone(),
                st.agent_keys.clone(),
            )
        };
        if seen[..] == now_v[..] {
            return Ok(());
        }
        let changed = |i: usize| seen[i] != now_v[i];
        // Each scan starts after its version was read: it loads at least
        // that version (a newer one is loaded again next time).
        let roles = if changed(0) {
            reload(&self.store, ROLES, &prev_roles, |l| &l.rec, LiveRole::new)?
        } else {
            prev_roles
        };
        let users = if changed(1) {
            reload(&self.store, USERS, &prev_users, |l| &l.rec, LiveUser::new)?
        } else {
            prev_users
        };
        let keys = if changed(2) {
            let mut m = HashMap::new();
            for (k, rec) in self
                .store
                .scan::<AccessKeyRecord>(ACCESS_KEYS, "")
                .map_err(error::store)?
            {
                let live = match prev_keys.get(&k) {
                    Some(p) if p.rec == rec => p.clone(),
                    // Only the status changed: the secret is the same.
                    Some(p) if p.rec.sealed_secret == rec.sealed_secret => Arc::new(LiveKey {
                        rec,
                        secret: p.secret.clone(),
                    }),
                    _ => Arc::new(self.live_key(&k, rec)?),
                };
                m.insert(k, live);
            }
            m
        } else {
            prev_keys
        };
        // Sessions name their role: a changed role table re-checks them.
        let sessions = if changed(3) || changed(0) {
            let t = now();
            let mut m = HashMap::new();
            for (k, rec) in self
                .store
                .scan::<SessionRecord>(SESSIONS, "")
                .map_err(error::store)?
            {
                // A session never changes once issued: keep its opened
                // secret while its role is the one it was issued for.
                let kept = prev_sessions.get(&k).filter(|p| {
                    p.role_id == rec.role_id
                        && roles
                            .get(&p.role)
                            .is_some_and(|r| r.rec.id == p.role_id && r.rec.arn == p.role_arn)
                });
                let live = match kept {
                    Some(p) => Some(p.clone()),
                    None => self.live_session(&k, rec, &roles, t)?.map(Arc::new),
                };
                if let Some(l) = live {
                    m.insert(k, l);
                }
            }
            m
        } else {
            prev_sessions
        };
        let agent_keys = if changed(4) {
            let mut m = HashMap::new();
            for (_, rec) in self
                .store
                .scan::<AgentKeyRecord>(AGENT_KEYS, "")
                .map_err(error::store)?
            {
                // A re-issued key is a new record (new id, new secret): an
                // unchanged one keeps its opened secret.
                let live = match prev_agents.get(&rec.key_id) {
                    Some(p) if p.rec == rec => p.clone(),
                    _ => Arc::new(self.live_agent_key(rec)?),
                };
                m.insert(live.rec.key_id.clone(), live);
            }
            m
        } else {
            prev_agents
        };
        let mut st = self.write();
        st.roles = roles;
        st.users = users;
        st.keys = keys;
        st.sessions = sessions;
        st.agent_keys = agent_keys;
        for (s, n) in st.seen.iter_mut().zip(now_v) {
            *s = n;
        }
        Ok(())
    }

    /// [`Iam::refresh`] for entry points that cannot fail: a store that
    /// cannot be asked is logged, and the caller decides what to do.
    fn refreshed(&self) -> bool {
        match self.refresh() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(
                    "iam: the identity store could not be refreshed: {}",
                    e.message
                );
                false
            }
        }
    }

    /// Whether other processes write the store too.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The account this store serves.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// When the account's identity store was created (Unix seconds).
    pub fn created(&self) -> i64 {
        self.created
    }

    // A poisoned lock means a panic while holding it; the state it guards
    // is only ever replaced whole (insert/remove after the store write), so
    // it is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one write transaction: its refusal rolls it back and is
    /// returned as is; a store failure is a service failure.
    fn txn<R>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<R, AwsError>,
    ) -> Result<R, AwsError> {
        self.store
            .write(|w| f(w).map_err(Txn::Refused))
            .map_err(|e| match e {
                Txn::Store(s) => error::store(s),
                Txn::Refused(a) => a,
            })
    }

    /// Publishes a committed change in memory with the embedded store only
    /// (with a shared store the next refresh loads it: publishing could put
    /// an older record back over a newer one a concurrent refresh loaded).
    fn publish(&self, f: impl FnOnce(&mut State)) {
        if !self.shared {
            f(&mut self.write());
        }
    }

    /// The ARN of a role or user with `path` and `name`.
    pub fn arn(&self, kind: &str, path: &str, name: &str) -> String {
        format!("arn:aws:iam::{}:{kind}{path}{name}", self.account)
    }

    // ---- authentication ------------------------------------------------

    /// The secret and caller of `access_key_id` (a user's long-term key, a
    /// session key, or an agent key, whose caller is the service principal
    /// [`AGENT_PRINCIPAL`] with the key's id); `session_token` is the
    /// request's `X-Amz-Security-Token`. Runs on every request: memory
    /// only (with a shared store, one version check first).
    pub fn authenticate(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Result<(Zeroizing<String>, Caller), AuthRefusal> {
        // Fail closed: a key deleted through another replica must not pass
        // while the store cannot say so.
        if !self.refreshed() {
            return Err(AuthRefusal::Invalid);
        }
        let st = self.read();
        if let Some(s) = st.sessions.get(access_key_id) {
            let token = session_token.ok_or(AuthRefusal::Invalid)?;
            if !ids::digest_eq(&s.token, &ids::token_digest(token)) {
                return Err(AuthRefusal::Invalid);
            }
            if s.expires <= now() {
                return Err(AuthRefusal::Expired);
            }
            let role = st
                .roles
                .get(&s.role)
                .filter(|r| r.rec.id == s.role_id)
                .ok_or(AuthRefusal::Invalid)?;
            let caller = Caller {
                account: self.account.clone(),
                principal: Principal::AssumedRole {
                    role_arn: s.role_arn.clone(),
                    session_name: s.session_name.clone(),
                },
                access_key_id: Some(access_key_id.to_owned()),
                policies: Some(role.policies.clone()),
            };
            return Ok((s.secret.clone(), caller));
        }
        if let Some(a) = st.agent_keys.get(access_key_id) {
            // A long-term key: a session token with it is refused, as AWS
            // does for a user's key.
            if session_token.is_some() {
                return Err(AuthRefusal::Invalid);
            }
            return Ok((a.secret.clone(), self.agent_caller(access_key_id)));
        }
        let k = st.keys.get(access_key_id).ok_or(AuthRefusal::Invalid)?;
        if session_token.is_some() || k.rec.status != "Active" {
            return Err(AuthRefusal::Invalid);
        }
        let user = st.users.get(&k.rec.user).ok_or(AuthRefusal::Invalid)?;
        let caller = Caller {
            account: self.account.clone(),
            principal: Principal::Iam(user.rec.arn.clone()),
            access_key_id: Some(access_key_id.to_owned()),
            policies: Some(user.policies.clone()),
        };
        Ok((k.secret.clone(), caller))
    }

    /// The caller `access_key_id` belongs to while it is usable (an
    /// active key of an existing user, a live session, or an agent key),
    /// without a signature: for credentials derived from an earlier
    /// authenticated request (the registry's login tokens), to refuse them
    /// once the principal is gone and to apply its current policies.
    pub fn caller_of_key(&self, access_key_id: &str) -> Option<Caller> {
        if !self.refreshed() {
            return None;
        }
        let st = self.read();
        if let Some(s) = st.sessions.get(access_key_id) {
            if s.expires <= now() {
                return None;
            }
            let role = st.roles.get(&s.role).filter(|r| r.rec.id == s.role_id)?;
            return Some(Caller {
                account: self.account.clone(),
                principal: Principal::AssumedRole {
                    role_arn: s.role_arn.clone(),
                    session_name: s.session_name.clone(),
                },
                access_key_id: Some(access_key_id.to_owned()),
                policies: Some(role.policies.clone()),
            });
        }
        if st.agent_keys.contains_key(access_key_id) {
            return Some(self.agent_caller(access_key_id));
        }
        let k = st.keys.get(access_key_id)?;
        if k.rec.status != "Active" {
            return None;
        }
        let user = st.users.get(&k.rec.user)?;
        Some(Caller {
            account: self.account.clone(),
            principal: Principal::Iam(user.rec.arn.clone()),
            access_key_id: Some(access_key_id.to_owned()),
            policies: Some(user.policies.clone()),
        })
    }

    /// GetCallerIdentity's `UserId` and `Arn` for `caller`.
    pub fn caller_identity(&self, caller: &Caller) -> Result<(String, String), AwsError> {
        let gone = || {
            AwsError::client(
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )
            .with_status(403)
        };
        let st = self.read();
        match &caller.principal {
            Principal::AccountAdmin => Ok((caller.account.clone(), caller.arn())),
            Principal::Service(s) => Ok((s.clone(), s.clone())),
            Principal::Iam(arn) => st
                .users
                .values()
                .find(|u| &u.rec.arn == arn)
                .map(|u| (u.rec.id.clone(), arn.clone()))
                .ok_or_else(gone),
            Principal::AssumedRole {
                role_arn,
                session_name,
            } => st
                .roles
                .values()
                .find(|r| &r.rec.arn == role_arn)
                .map(|r| (format!("{}:{session_name}", r.rec.id), caller.arn()))
                .ok_or_else(gone),
        }
    }

    // ---- roles ---------------------------------------------------------

    /// Creates a role (the trust policy must parse).
    pub fn create_role(&self, new: NewRole) -> Result<RoleRecord, AwsError> {
        trust::parse(&new.trust)?;
        let _w = self.writer();
        let key = key_of(&new.name);
        let rec = RoleRecord {
            arn: self.arn("role", &new.path, &new.name),
            id: ids::role_id(),
            created: now(),
            name: new.name,
            path: new.path,
            trust: new.trust,
            description: new.description,
            max_session: new.max_session,
            tags: new.tags,
            inline: BTreeMap::new(),
            attached: Vec::new(),
        };
        // The name is checked in the transaction: another replica may have
        // taken it since this one's copy was loaded.
        self.txn(|w| {
            if w.get::<RoleRecord>(ROLES, &key).map_err(store)?.is_some() {
                return Err(error::already_exists(format!(
                    "Role with name {} already exists.",
                    rec.name
                )));
            }
            w.put(ROLES, &key, &rec).map_err(store)
        })?;
        self.publish(|st| {
            st.roles.insert(key, Arc::new(LiveRole::new(rec.clone())));
        });
        tracing::info!(role = %rec.arn, "iam: role created");
        Ok(rec)
    }

    /// A role by name. Like the other readers of roles and users, it reads
    /// what the last [`Iam::refresh`] loaded (the API refreshes once per
    /// call, before its handler).
    pub fn role(&self, name: &str) -> Result<RoleRecord, AwsError> {
        self.read()
            .roles
            .get(&key_of(name))
            .map(|r| r.rec.clone())
            .ok_or_else(|| no_such_role(name))
    }

    /// The ARN a role operation on `name` is authorized against: the
    /// role's, or (for a role that does not exist) the one it would have
    /// at path `/`.
    pub fn role_arn(&self, name: &str) -> String {
        self.read()
            .roles
            .get(&key_of(name))
            .map(|r| r.rec.arn.clone())
            .unwrap_or_else(|| self.arn("role", "/", name))
    }

    /// Every role whose path starts with `path_prefix`, by lowercase name.
    pub fn roles(&self, path_prefix: &str) -> Vec<(String, RoleRecord)> {
        self.read()
            .roles
            .iter()
            .filter(|(_, r)| r.rec.path.starts_with(path_prefix))
            .map(|(k, r)| (k.clone(), r.rec.clone()))
            .collect()
    }

    /// Changes a role: `f` edits its record as the write transaction reads
    /// it, which is then stored and made live (policies and trust parsed
    /// again).
    pub fn update_role<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut RoleRecord) -> Result<R, AwsError>,
    ) -> Result<R, AwsError> {
        let _w = self.writer();
        let key = key_of(name);
        let (rec, out) = self.txn(|w| {
            let mut rec: RoleRecord = w
                .get(ROLES, &key)
                .map_err(store)?
                .ok_or_else(|| no_such_role(name))?;
            let out = f(&mut rec)?;
            w.put(ROLES, &key, &rec).map_err(store)?;
            Ok((rec, out))
        })?;
        self.publish(|st| {
            st.roles.insert(key, Arc::new(LiveRole::new(rec)));
        });
        Ok(out)
    }

    /// Deletes a role that has no policies; its sessions are revoked.
    pub fn delete_role(&self, name: &str) -> Result<(), AwsError> {
        let _w = self.writer();
        let key = key_of(name);
        let (rec, sessions) = self.txn(|w| {
            let rec: RoleRecord = w
                .get(ROLES, &key)
                .map_err(store)?
                .ok_or_else(|| no_such_role(name))?;
            if !rec.inline.is_empty() {
                return Err(error::delete_conflict(
                    "Cannot delete entity, must delete policies first.",
                ));
            }
            if !rec.attached.is_empty() {
                return Err(error::delete_conflict(
                    "Cannot delete entity, must detach all policies first.",
                ));
            }
            // Its stored sessions (every replica's), and those only this
            // process knows (service sessions with the embedded store).
            let mut sessions: Vec<String> = w
                .scan::<SessionRecord>(SESSIONS, "")
                .map_err(store)?
                .into_iter()
                .filter(|(_, r)| r.role == key)
                .map(|(k, _)| k)
                .collect();
            for k in &sessions {
                w.delete(SESSIONS, k).map_err(store)?;
            }
            sessions.extend(
                self.read()
                    .sessions
                    .iter()
                    .filter(|(k, s)| s.role == key && !sessions.contains(k))
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>(),
            );
            w.delete(ROLES, &key).map_err(store)?;
            Ok((rec, sessions))
        })?;
        self.publish(|st| {
            st.roles.remove(&key);
            for k in &sessions {
                st.sessions.remove(k);
            }
        });
        tracing::info!(role = %rec.arn, revoked = sessions.len(), "iam: role deleted");
        Ok(())
    }

    // ---- users ---------------------------------------------------------

    /// Creates a user.
    pub fn create_user(&self, new: NewUser) -> Result<UserRecord, AwsError> {
        let _w = self.writer();
        let key = key_of(&new.name);
        let rec = UserRecord {
            arn: self.arn("user", &new.path, &new.name),
            id: ids::user_id(),
            created: now(),
            name: new.name,
            path: new.path,
            tags: new.tags,
            inline: BTreeMap::new(),
            attached: Vec::new(),
        };
        self.txn(|w| {
            if w.get::<UserRecord>(USERS, &key).map_err(store)?.is_some() {
                return Err(error::already_exists(format!(
                    "User with name {} already exists.",
                    rec.name
                )));
            }
            w.put(USERS, &key, &rec).map_err(store)
        })?;
        self.publish(|st| {
            st.users.insert(key, Arc::new(LiveUser::new(rec.clone())));
        });
        tracing::info!(user = %rec.arn, "iam: user created");
        Ok(rec)
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Result<UserRecord, AwsError> {
        self.read()
            .users
            .get(&key_of(name))
            .map(|u| u.rec.clone())
            .ok_or_else(|| no_such_user(name))
    }

    /// The ARN a user operation on `name` is authorized against.
    pub fn user_arn(&self, name: &str) -> String {
        self.read()
            .users
            .get(&key_of(name))
            .map(|u| u.rec.arn.clone())
            .unwrap_or_else(|| self.arn("user", "/", name))
    }

    /// The name of the user with `arn` (an IAM caller's own user).
    pub fn user_name_of(&self, arn: &str) -> Option<String> {
        self.read()
            .users
            .values()
            .find(|u| u.rec.arn == arn)
            .map(|u| u.rec.name.clone())
    }

    /// Every user whose path starts with `path_prefix`, by lowercase name.
    pub fn users(&self, path_prefix: &str) -> Vec<(String, UserRecord)> {
        self.read()
            .users
            .iter()
            .filter(|(_, u)| u.rec.path.starts_with(path_prefix))
            .map(|(k, u)| (k.clone(), u.rec.clone()))
            .collect()
    }

    /// Changes a user (see [`Iam::update_role`]).
    pub fn update_user<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut UserRecord) -> Result<R, AwsError>,
    ) -> Result<R, AwsError> {
        let _w = self.writer();
        let key = key_of(name);
        let (rec, out) = self.txn(|w| {
            let mut rec: UserRecord = w
                .get(USERS, &key)
                .map_err(store)?
                .ok_or_else(|| no_such_user(name))?;
            let out = f(&mut rec)?;
            w.put(USERS, &key, &rec).map_err(store)?;
            Ok((rec, out))
        })?;
        self.publish(|st| {
            st.users.insert(key, Arc::new(LiveUser::new(rec)));
        });
        Ok(out)
    }

    /// Deletes a user that has no access keys and no policies.
    pub fn delete_user(&self, name: &str) -> Result<(), AwsError> {
        let _w = self.writer();
        let key = key_of(name);
        let rec = self.txn(|w| {
            let rec: UserRecord = w
                .get(USERS, &key)
                .map_err(store)?
                .ok_or_else(|| no_such_user(name))?;
            let keys: Vec<(String, AccessKeyRecord)> = w.scan(ACCESS_KEYS, "").map_err(store)?;
            if keys.iter().any(|(_, k)| k.user == key) {
                return Err(error::delete_conflict(
                    "Cannot delete entity, must delete access keys first.",
                ));
            }
            if !rec.inline.is_empty() {
                return Err(error::delete_conflict(
                    "Cannot delete entity, must delete policies first.",
                ));
            }
            if !rec.attached.is_empty() {
                return Err(error::delete_conflict(
                    "Cannot delete entity, must detach all policies first.",
                ));
            }
            w.delete(USERS, &key).map_err(store)?;
            Ok(rec)
        })?;
        self.publish(|st| {
            st.users.remove(&key);
        });
        tracing::info!(user = %rec.arn, "iam: user deleted");
        Ok(())
    }

    // ---- access keys ---------------------------------------------------

    /// The most access keys one user may have.
    pub const MAX_ACCESS_KEYS: usize = 2;

    /// Creates an access key for `user`; the secret is returned once and
    /// stored only sealed.
    pub fn create_access_key(
        &self,
        user: &str,
    ) -> Result<(AccessKeyRecord, Zeroizing<String>), AwsError> {
        let _w = self.writer();
        let ukey = key_of(user);
        let key_id = ids::access_key_id();
        let secret = ids::secret_access_key();
        let sealed = self.sealer.seal(&key_label(&key_id), secret.as_bytes())?;
        let rec = AccessKeyRecord {
            key_id: key_id.clone(),
            user: ukey.clone(),
            status: "Active".into(),
            created: now(),
            sealed_secret: b64(&sealed),
        };
        // The user and the quota are checked in the transaction.
        let u = self.txn(|w| {
            let u: UserRecord = w
                .get(USERS, &ukey)
                .map_err(store)?
                .ok_or_else(|| no_such_user(user))?;
            let keys: Vec<(String, AccessKeyRecord)> = w.scan(ACCESS_KEYS, "").map_err(store)?;
            if keys.iter().filter(|(_, k)| k.user == ukey).count() >= Self::MAX_ACCESS_KEYS {
                return Err(error::limit_exceeded(format!(
                    "Cannot exceed quota for AccessKeysPerUser: {}",
                    Self::MAX_ACCESS_KEYS
                )));
            }
            w.put(ACCESS_KEYS, &key_id, &rec).map_err(store)?;
            Ok(u)
        })?;
        self.publish(|st| {
            st.keys.insert(
                key_id.clone(),
                Arc::new(LiveKey {
                    rec: rec.clone(),
                    secret: secret.clone(),
                }),
            );
        });
        tracing::info!(user = %u.arn, access_key_id = %key_id, "iam: access key created");
        Ok((rec, secret))
    }

    /// The access keys of `user` (metadata only).
    pub fn access_keys(&self, user: &str) -> Result<Vec<AccessKeyRecord>, AwsError> {
        self.user(user)?;
        let ukey = key_of(user);
        let mut keys: Vec<AccessKeyRecord> = self
            .read()
            .keys
            .values()
            .filter(|k| k.rec.user == ukey)
            .map(|k| k.rec.clone())
            .collect();
        keys.sort_by(|a, b| (a.created, &a.key_id).cmp(&(b.created, &b.key_id)));
        Ok(keys)
    }

    /// The access key `key_id` of `user` as the write transaction reads it.
    fn user_key_in(
        w: &WriteTxn<'_>,
        user: &str,
        key_id: &str,
    ) -> Result<AccessKeyRecord, AwsError> {
        if w.get::<UserRecord>(USERS, &key_of(user))
            .map_err(store)?
            .is_none()
        {
            return Err(no_such_user(user));
        }
        w.get::<AccessKeyRecord>(ACCESS_KEYS, key_id)
            .map_err(store)?
            .filter(|k| k.user == key_of(user))
            .ok_or_else(|| {
                error::no_such_entity(format!("The Access Key with id {key_id} cannot be found."))
            })
    }

    /// Sets an access key `Active` or `Inactive` (inactive keys are refused
    /// at authentication).
    pub fn set_access_key_status(
        &self,
        user: &str,
        key_id: &str,
        status: &str,
    ) -> Result<(), AwsError> {
        let _w = self.writer();
        let rec = self.txn(|w| {
            let mut rec = Self::user_key_in(w, user, key_id)?;
            rec.status = status.to_owned();
            w.put(ACCESS_KEYS, key_id, &rec).map_err(store)?;
            Ok(rec)
        })?;
        self.publish(|st| {
            if let Some(k) = st.keys.get(key_id).cloned() {
                st.keys.insert(
                    key_id.to_owned(),
                    Arc::new(LiveKey {
                        rec,
                        secret: k.secret.clone(),
                    }),
                );
            }
        });
        tracing::info!(access_key_id = %key_id, status, "iam: access key status changed");
        Ok(())
    }

    /// Deletes an access key.
    pub fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), AwsError> {
        let _w = self.writer();
        self.txn(|w| {
            Self::user_key_in(w, user, key_id)?;
            w.delete(ACCESS_KEYS, key_id).map_err(store)?;
            Ok(())
        })?;
        self.publish(|st| {
            st.keys.remove(key_id);
        });
        tracing::info!(access_key_id = %key_id, "iam: access key deleted");
        Ok(())
    }

    // ---- agent keys ----------------------------------------------------

    /// Issues the service key of remote agent host `host` (the name it
    /// joins the fleet with, `[A-Za-z0-9._-]{1,64}`, exact case): its
    /// access key id and secret, the secret returned once and stored only
    /// sealed. One key per host: a key the host had is replaced, and
    /// refused from now on (through every replica).
    pub fn create_agent_key(&self, host: &str) -> Result<(String, Zeroizing<String>), AwsError> {
        validate::agent_host(host)?;
        let _w = self.writer();
        let key_id = ids::access_key_id();
        let secret = ids::secret_access_key();
        let sealed = self
            .sealer
            .seal(&agent_key_label(&key_id), secret.as_bytes())?;
        let rec = AgentKeyRecord {
            host: host.to_owned(),
            key_id: key_id.clone(),
            created: now(),
            sealed_secret: b64(&sealed),
        };
        // The host's previous key is read in the transaction: another
        // replica may have issued one since this one's copy was loaded.
        let old = self.txn(|w| {
            let old: Option<AgentKeyRecord> = w.get(AGENT_KEYS, host).map_err(store)?;
            w.put(AGENT_KEYS, host, &rec).map_err(store)?;
            Ok(old.map(|o| o.key_id))
        })?;
        self.publish(|st| {
            if let Some(o) = &old {
                st.agent_keys.remove(o);
            }
            st.agent_keys.insert(
                key_id.clone(),
                Arc::new(LiveAgentKey {
                    rec,
                    secret: secret.clone(),
                }),
            );
        });
        tracing::info!(
            host,
            access_key_id = %key_id,
            replaced = old.as_deref().unwrap_or("none"),
            "iam: agent key issued"
        );
        Ok((key_id, secret))
    }

    /// Revokes the service key of agent host `host`: refused from now on
    /// (through every replica). `false` if the host had none.
    pub fn delete_agent_key(&self, host: &str) -> Result<bool, AwsError> {
        validate::agent_host(host)?;
        let _w = self.writer();
        let old = self.txn(|w| {
            let old: Option<AgentKeyRecord> = w.get(AGENT_KEYS, host).map_err(store)?;
            if old.is_some() {
                w.delete(AGENT_KEYS, host).map_err(store)?;
            }
            Ok(old.map(|o| o.key_id))
        })?;
        let Some(old) = old else {
            return Ok(false);
        };
        self.publish(|st| {
            st.agent_keys.remove(&old);
        });
        tracing::info!(host, access_key_id = %old, "iam: agent key revoked");
        Ok(true)
    }

    /// The host agent key `access_key_id` belongs to (`None` for any other
    /// key): for the agent protocol, to scope a caller to its own host.
    /// Reads what the last refresh loaded (every authentication refreshes
    /// first), so it costs no store round trip.
    pub fn agent_host(&self, access_key_id: &str) -> Option<String> {
        self.read()
            .agent_keys
            .get(access_key_id)
            .map(|a| a.rec.host.clone())
    }

    /// The caller an agent key authenticates as: the platform's service
    /// principal, with the key's id (which the KMS audit records name).
    fn agent_caller(&self, access_key_id: &str) -> Caller {
        let mut caller = Caller::service(self.account.clone(), AGENT_PRINCIPAL);
        caller.access_key_id = Some(access_key_id.to_owned());
        caller
    }

    // ---- sessions ------------------------------------------------------

    /// AssumeRole by an authenticated caller: the role's trust policy
    /// decides (see [`crate::trust`]).
    pub fn assume_role(
        &self,
        caller: &Caller,
        req: &AssumeRoleRequest<'_>,
    ) -> Result<AssumedRole, AwsError> {
        validate::session_name(req.session_name)?;
        if let Some(d) = req.duration_seconds
            && !(900..=43_200).contains(&d)
        {
            let what = if d < 900 {
                "Member must have value greater than or equal to 900"
            } else {
                "Member must have value less than or equal to 43200"
            };
            return Err(error::validation(format!(
                "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: {what}"
            )));
        }
        let denied = || trust::Refused {
            principal: caller.arn(),
            role_arn: req.role_arn.to_owned(),
        };
        self.refresh()?;
        let (role_key, rec, trust_policy) = {
            let st = self.read();
            let name = req.role_arn.rsplit('/').next().unwrap_or_default();
            let live = st
                .roles
                .get(&key_of(name))
                .filter(|r| r.rec.arn == req.role_arn)
                .ok_or_else(|| denied().into_error())?;
            let trust = live.trust.clone().ok_or_else(|| denied().into_error())?;
            (key_of(name), live.rec.clone(), trust)
        };
        let mut check = Check::new(trust::ASSUME_ROLE, &rec.arn)
            .key("sts:RoleSessionName", vec![req.session_name.to_owned()]);
        if let Some(x) = req.external_id {
            check = check.key("sts:ExternalId", vec![x.to_owned()]);
        }
        if let Some(x) = req.source_identity {
            check = check.key("sts:SourceIdentity", vec![x.to_owned()]);
        }
        trust::may_assume(&trust_policy, caller, &check).map_err(trust::Refused::into_error)?;
        let duration = req.duration_seconds.unwrap_or(3600);
        if duration > i64::from(rec.max_session) {
            return Err(error::validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            ));
        }
        if matches!(caller.principal, Principal::AssumedRole { .. }) && duration > 3600 {
            return Err(error::validation(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
            ));
        }
        let credentials = self.issue(&role_key, &rec, req.session_name, duration, None)?;
        tracing::info!(
            principal = %caller.arn(),
            role = %rec.arn,
            session = req.session_name,
            "sts: role assumed"
        );
        Ok(AssumedRole {
            credentials,
            assumed_role_id: format!("{}:{}", rec.id, req.session_name),
        })
    }

    /// Assumes `role_arn` on behalf of AWS service `service` (e.g.
    /// `ecs-tasks.amazonaws.com`): the role's trust policy must allow that
    /// service principal `sts:AssumeRole` (with `aws:SourceAccount` the
    /// account and `aws:SourceArn` = `owner`). The session is tied to
    /// `owner` (a task ARN) for revocation, lives in memory only, and lasts
    /// `duration` (at most 12 hours, at least 15 minutes).
    pub fn assume_role_for_service(
        &self,
        role_arn: &str,
        service: &str,
        session_name: &str,
        owner: &str,
        duration: Duration,
    ) -> Result<SessionCredentials, AwsError> {
        let refused = || {
            let message = if service == "ecs-tasks.amazonaws.com" {
                format!(
                    "ECS was unable to assume the role '{role_arn}' that was provided for this task. \
                     Please verify that the role being passed has the proper trust relationship and \
                     permissions and that your IAM user has permissions to pass this role."
                )
            } else {
                format!(
                    "User: {service} is not authorized to perform: {} on resource: {role_arn}",
                    trust::ASSUME_ROLE
                )
            };
            error::access_denied(message)
        };
        validate::session_name(session_name)?;
        self.refresh()?;
        let (role_key, rec, trust_policy) = {
            let st = self.read();
            let name = role_arn.rsplit('/').next().unwrap_or_default();
            let live = st
                .roles
                .get(&key_of(name))
                .filter(|r| r.rec.arn == role_arn)
                .ok_or_else(refused)?;
            let trust = live.trust.clone().ok_or_else(refused)?;
            (key_of(name), live.rec.clone(), trust)
        };
        trust::service_may_assume(&trust_policy, &self.account, service, &rec.arn, owner)
            .map_err(|_| refused())?;
        let secs = i64::try_from(duration.as_secs())
            .unwrap_or(i64::MAX)
            .clamp(900, 43_200);
        let creds = self.issue(&role_key, &rec, session_name, secs, Some(owner))?;
        tracing::info!(
            principal = service,
            role = %rec.arn,
            session = session_name,
            owner,
            "sts: role assumed for a service"
        );
        Ok(creds)
    }

    /// Refuses every session issued for `owner` from now on (through every
    /// replica: with a shared store they are deleted from it).
    pub fn revoke_owner(&self, owner: &str) {
        let mut revoked = 0;
        if self.shared {
            let r = self.txn(|w| {
                let mine: Vec<String> = w
                    .scan::<SessionRecord>(SESSIONS, "")
                    .map_err(store)?
                    .into_iter()
                    .filter(|(_, r)| r.owner.as_deref() == Some(owner))
                    .map(|(k, _)| k)
                    .collect();
                for k in &mine {
                    w.delete(SESSIONS, k).map_err(store)?;
                }
                Ok(mine.len())
            });
            match r {
                Ok(n) => revoked = n,
                // Not fatal for the task's stop, but the credentials stay
                // valid until they expire: say so.
                Err(e) => tracing::error!(
                    owner,
                    "sts: revoking the sessions failed; they stay valid until they expire: {}",
                    e.message
                ),
            }
        }
        let mut st = self.write();
        let before = st.sessions.len();
        st.sessions.retain(|_, s| s.owner.as_deref() != Some(owner));
        revoked = revoked.max(before - st.sessions.len());
        if revoked > 0 {
            tracing::info!(owner, revoked, "sts: sessions revoked");
        }
    }

    /// Issues a session for a role; AssumeRole sessions (no `owner`) are
    /// stored sealed, service sessions too with a shared store. Expired
    /// sessions are swept on the way (checked again on the records the
    /// transaction reads, so replicas sweeping at once delete each once).
    fn issue(
        &self,
        role_key: &str,
        rec: &RoleRecord,
        session_name: &str,
        duration: i64,
        owner: Option<&str>,
    ) -> Result<SessionCredentials, AwsError> {
        let key_id = ids::session_key_id();
        let secret = ids::secret_access_key();
        let token = ids::session_token();
        let now_utc = OffsetDateTime::now_utc();
        let issued = now_utc.replace_nanosecond(0).unwrap_or(now_utc);
        let expiration = issued + time::Duration::seconds(duration);
        let expires = expiration.unix_timestamp();
        let digest = ids::token_digest(&token);

        let _w = self.writer();
        let denied = || {
            error::access_denied(format!(
                "User is not authorized to perform: {} on resource: {}",
                trust::ASSUME_ROLE,
                rec.arn
            ))
        };
        // The role may have been deleted (or replaced) since the trust
        // decision; a session must not outlive it.
        if self
            .read()
            .roles
            .get(role_key)
            .is_none_or(|r| r.rec.id != rec.id)
        {
            return Err(denied());
        }
        let t = now();
        let expired: Vec<(String, bool)> = self
            .read()
            .sessions
            .iter()
            .filter(|(_, s)| s.expires <= t)
            .map(|(k, s)| (k.clone(), s.owner.is_none() || self.shared))
            .collect();
        let record = match owner {
            Some(_) if !self.shared => None,
            _ => {
                let sealed = self
                    .sealer
                    .seal(&session_label(&key_id), secret.as_bytes())?;
                Some(SessionRecord {
                    key_id: key_id.clone(),
                    sealed_secret: b64(&sealed),
                    token_sha256: hex::encode(digest),
                    role: role_key.to_owned(),
                    role_id: rec.id.clone(),
                    session_name: session_name.to_owned(),
                    expires,
                    owner: owner.map(str::to_owned),
                })
            }
        };
        if record.is_some() || expired.iter().any(|(_, stored)| *stored) {
            self.txn(|w| {
                if record.is_some() && self.shared {
                    // Another replica may have deleted the role meanwhile.
                    let cur: Option<RoleRecord> = w.get(ROLES, role_key).map_err(store)?;
                    if cur.is_none_or(|c| c.id != rec.id) {
                        return Err(denied());
                    }
                }
                if let Some(r) = &record {
                    w.put(SESSIONS, &r.key_id, r).map_err(store)?;
                }
                for (k, stored) in &expired {
                    if !*stored {
                        continue;
                    }
                    let cur: Option<SessionRecord> = w.get(SESSIONS, k).map_err(store)?;
                    if cur.is_some_and(|c| c.expires <= t) {
                        w.delete(SESSIONS, k).map_err(store)?;
                    }
                }
                Ok(())
            })?;
        }
        let live = Arc::new(LiveSession {
            secret: secret.clone(),
            token: digest,
            role: role_key.to_owned(),
            role_id: rec.id.clone(),
            role_arn: rec.arn.clone(),
            session_name: session_name.to_owned(),
            expires,
            owner: owner.map(str::to_owned),
        });
        self.publish(|st| {
            for (k, _) in &expired {
                st.sessions.remove(k);
            }
            st.sessions.insert(key_id.clone(), live);
        });
        let policies = self
            .read()
            .roles
            .get(role_key)
            .map(|r| r.policies.clone())
            .unwrap_or_else(deny_all);
        Ok(SessionCredentials {
            caller: Caller {
                account: self.account.clone(),
                principal: Principal::AssumedRole {
                    role_arn: rec.arn.clone(),
                    session_name: session_name.to_owned(),
                },
                access_key_id: Some(key_id.clone()),
                policies: Some(policies),
            },
            access_key_id: key_id,
            secret_access_key: secret,
            session_token: token,
            expiration,
            role_arn: rec.arn.clone(),
        })
    }
}

/// `table` read again, keeping the live form of every record that did not
/// change (no policy parsed again).
fn reload<R: serde::de::DeserializeOwned + PartialEq, L>(
    store: &Store,
    table: &str,
    prev: &BTreeMap<String, Arc<L>>,
    rec_of: impl Fn(&L) -> &R,
    live: impl Fn(R) -> L,
) -> Result<BTreeMap<String, Arc<L>>, AwsError> {
    let mut m = BTreeMap::new();
    for (k, rec) in store.scan::<R>(table, "").map_err(error::store)? {
        let l = match prev.get(&k) {
            Some(p) if *rec_of(p) == rec => p.clone(),
            _ => Arc::new(live(rec)),
        };
        m.insert(k, l);
    }
    Ok(m)
}

#[cfg(test)]
impl Iam {
    /// Makes every live session expired (tests of the expiry path).
    pub(crate) fn expire_sessions_for_test(&self) {
        for s in self.write().sessions.values_mut() {
            let mut expired = (**s).clone();
            expired.expires = now() - 1;
            *s = Arc::new(expired);
        }
    }
}
