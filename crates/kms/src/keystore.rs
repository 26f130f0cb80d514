//! The live key store: every key, alias and grant in memory (key material
//! unwrapped, in the server's locked memory), written through to the state
//! store on every change. Also: resolving `KeyId` parameters, and
//! authorization (explicit denies, the administrator, the key policy with
//! its delegation to identity policies, then grants).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use ferry_proto::authz::{self, Check, Denied, DenySource};
use ferry_proto::{AwsError, Caller, Principal, RequestContext};
use ferry_store::{Store, WriteTxn};

use crate::asym::Spec;
use crate::crypto::{self, KEY_LEN};
use crate::error::{KmsError, store_fault};
use crate::model::{
    ALIASES, AliasRecord, GRANTS, GrantRecord, KEYS, KeyRecord, KeyState, Material, now,
};
use crate::policy::{Decision, Policy};
use crate::root_key::RootKey;

/// A key with its parsed policy and unwrapped material.
pub struct LiveKey {
    /// The stored record.
    pub rec: KeyRecord,
    /// The parsed key policy.
    pub policy: Policy,
    material: HashMap<u32, zeroize::Zeroizing<Vec<u8>>>,
    spec: Spec,
}

impl LiveKey {
    /// The AES-256 material of `version` (symmetric keys only).
    pub fn material(&self, version: u32) -> Option<&[u8; KEY_LEN]> {
        if self.spec != Spec::Symmetric {
            return None;
        }
        self.material
            .get(&version)
            .and_then(|k| k.as_slice().try_into().ok())
    }
    /// The current material, whatever the spec (a PKCS#8 private key, an
    /// HMAC secret or an AES key).
    pub fn current_material(&self) -> Option<&[u8]> {
        let m = self.rec.current()?;
        self.material.get(&m.version).map(|k| k.as_slice())
    }
    /// The key spec.
    pub fn spec(&self) -> Spec {
        self.spec
    }
    /// The state now (imported material may have expired).
    pub fn state(&self) -> KeyState {
        self.rec.state_at(now())
    }
    /// Whether this is the platform-managed key.
    pub fn aws_managed(&self) -> bool {
        self.rec.key_manager == "AWS"
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub keys: HashMap<String, Arc<LiveKey>>,
    pub aliases: BTreeMap<String, AliasRecord>,
    /// By `KEYID/GRANTID`.
    pub grants: BTreeMap<String, GrantRecord>,
    /// The versions of [`TABLES`] the maps above reflect (a shared store's;
    /// unused with the embedded one, where memory is the truth).
    seen: [u64; 3],
}

/// The tables the key store keeps in memory, in the order of `State::seen`.
const TABLES: [&str; 3] = [KEYS, ALIASES, GRANTS];

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

/// The key store.
///
/// With the embedded store, memory is the truth: every change is written
/// durably, then published in memory. With a shared store (other replicas
/// write too), memory is a cache: [`KeyStore::refresh`] reloads the tables
/// whose version moved before every call, and every change re-reads its
/// records inside the (cluster-wide serialized) write transaction instead
/// of trusting memory, and is not published: the next refresh loads it.
pub struct KeyStore {
    pub(crate) store: Arc<Store>,
    pub(crate) root: RootKey,
    state: RwLock<State>,
    writer: Mutex<()>,
    /// One reload at a time (the others wait and find it done).
    reload: Mutex<()>,
    /// Whether other processes write the store ([`Store::is_shared`]).
    shared: bool,
    /// How many material versions were unwrapped under the root key (a
    /// reload must reuse what it already holds; the tests count).
    unwrapped: AtomicU64,
    pub(crate) account: String,
    pub(crate) region: String,
    arn_prefix: String,
}

/// How a `KeyId` parameter may name a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Key id or key ARN only (management operations).
    KeyOnly,
    /// Also alias name or alias ARN (cryptographic operations, DescribeKey).
    KeyOrAlias,
}

fn material_label(key_id: &str, version: u32) -> String {
    format!("kms-key/{key_id}/{version}")
}

/// The store key of a grant.
fn grant_key(key_id: &str, grant_id: &str) -> String {
    format!("{key_id}/{grant_id}")
}

impl KeyStore {
    /// Loads every record and unwraps all key material.
    pub fn open(
        store: Arc<Store>,
        root: RootKey,
        account: &str,
        region: &str,
    ) -> Result<Self, AwsError> {
        let ks = Self {
            shared: store.is_shared(),
            store,
            root,
            state: RwLock::new(State::default()),
            writer: Mutex::new(()),
            reload: Mutex::new(()),
            unwrapped: AtomicU64::new(0),
            account: account.to_owned(),
            region: region.to_owned(),
            arn_prefix: format!("arn:aws:kms:{region}:{account}:"),
        };
        if ks.shared {
            ks.refresh()?;
            return Ok(ks);
        }
        let keys: Vec<(String, KeyRecord)> = ks.store.scan(KEYS, "").map_err(store_fault)?;
        let aliases: Vec<(String, AliasRecord)> =
            ks.store.scan(ALIASES, "").map_err(store_fault)?;
        let grants: Vec<(String, GrantRecord)> = ks.store.scan(GRANTS, "").map_err(store_fault)?;
        {
            let mut st = ks.state_mut();
            for (id, rec) in keys {
                let live = ks.make_live(rec, None)?;
                st.keys.insert(id, Arc::new(live));
            }
            st.aliases = aliases.into_iter().collect();
            st.grants = grants.into_iter().collect();
        }
        Ok(ks)
    }

    /// With a shared store, reloads the tables another process (or a change
    /// of this one, which is not published) wrote since they were loaded:
    /// one round trip when nothing changed. Key material already unwrapped
    /// is reused (a material version never changes), and so is the parsed
    /// policy of a key whose record is unchanged. A no-op with the embedded
    /// store.
    pub fn refresh(&self) -> Result<(), AwsError> {
        if !self.shared {
            return Ok(());
        }
        let now = self.store.versions(&TABLES).map_err(store_fault)?;
        if self.state().seen[..] == now[..] {
            return Ok(());
        }
        let _one = self
            .reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another caller may have reloaded while this one waited.
        let now = self.store.versions(&TABLES).map_err(store_fault)?;
        let seen = self.state().seen;
        if seen[..] == now[..] {
            return Ok(());
        }
        // Each scan starts after its version was read: what it loads is at
        // least that version (a newer one is loaded again next time).
        let keys = if seen[0] != now[0] {
            let recs: Vec<(String, KeyRecord)> = self.store.scan(KEYS, "").map_err(store_fault)?;
            let prev = self.state().keys.clone();
            let mut live = HashMap::with_capacity(recs.len());
            for (id, rec) in recs {
                let k = match prev.get(&id) {
                    Some(p) if p.rec == rec => p.clone(),
                    p => Arc::new(self.make_live(rec, p.map(|p| &**p))?),
                };
                live.insert(id, k);
            }
            Some(live)
        } else {
            None
        };
        let aliases = if seen[1] != now[1] {
            let recs: Vec<(String, AliasRecord)> =
                self.store.scan(ALIASES, "").map_err(store_fault)?;
            Some(recs.into_iter().collect())
        } else {
            None
        };
        let grants = if seen[2] != now[2] {
            let recs: Vec<(String, GrantRecord)> =
                self.store.scan(GRANTS, "").map_err(store_fault)?;
            Some(recs.into_iter().collect())
        } else {
            None
        };
        let mut st = self.state_mut();
        if let Some(k) = keys {
            st.keys = k;
        }
        if let Some(a) = aliases {
            st.aliases = a;
        }
        if let Some(g) = grants {
            st.grants = g;
        }
        for (s, n) in st.seen.iter_mut().zip(now) {
            *s = n;
        }
        Ok(())
    }

    /// Whether other processes write the store too.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// How many material versions were unwrapped so far.
    pub fn unwrapped_count(&self) -> u64 {
        self.unwrapped.load(Ordering::Relaxed)
    }

    pub(crate) fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serializes read-modify-write changes within this process (across
    /// processes, the store's write transactions are serialized).
    pub(crate) fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` in one write transaction; its refusal (an `AwsError`) rolls
    /// it back and is returned as is, a store failure as the KMS's fault.
    pub(crate) fn write<R>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<R, AwsError>,
    ) -> Result<R, AwsError> {
        self.store
            .write(|w| f(w).map_err(Txn::Refused))
            .map_err(|e| match e {
                Txn::Store(s) => store_fault(s),
                Txn::Refused(a) => a,
            })
    }

    /// Publishes a committed change in memory, with the embedded store
    /// only: with a shared store the next refresh loads it (publishing
    /// could put back an older record over a newer one a concurrent refresh
    /// loaded).
    fn publish(&self, f: impl FnOnce(&mut State)) {
        if !self.shared {
            f(&mut self.state_mut());
        }
    }

    /// Builds the live form of a record, reusing material already unwrapped
    /// (the same version with the same wrapped bytes).
    fn make_live(&self, rec: KeyRecord, prev: Option<&LiveKey>) -> Result<LiveKey, AwsError> {
        let policy = match prev {
            Some(p) if p.rec.policy == rec.policy => p.policy.clone(),
            _ => Policy::parse(&rec.policy).map_err(|_| {
                KmsError::internal(format!(
                    "the stored policy of {} does not parse",
                    rec.key_id
                ))
            })?,
        };
        let mut material = HashMap::new();
        for m in &rec.materials {
            let known = prev.and_then(|p| {
                p.rec
                    .materials
                    .iter()
                    .any(|pm| pm.version == m.version && pm.wrapped == m.wrapped)
                    .then(|| p.material.get(&m.version))
                    .flatten()
            });
            if let Some(k) = known {
                material.insert(m.version, k.clone());
                continue;
            }
            let raw = self
                .root
                .unwrap_material(&material_label(&rec.key_id, m.version), &m.wrapped)
                .map_err(|_| {
                    KmsError::internal(format!(
                        "key material of {} does not unwrap under the root key",
                        rec.key_id
                    ))
                })?;
            self.unwrapped.fetch_add(1, Ordering::Relaxed);
            material.insert(m.version, raw);
        }
        let spec = Spec::parse(&rec.key_spec).ok_or_else(|| {
            KmsError::internal(format!("the stored key spec of {} is unknown", rec.key_id))
        })?;
        if spec == Spec::Symmetric && material.values().any(|k| k.len() != KEY_LEN) {
            return Err(KmsError::internal(
                "stored key material has the wrong length",
            ));
        }
        Ok(LiveKey {
            rec,
            policy,
            material,
            spec,
        })
    }

    /// New material (version `version`) for `key_id`, wrapped for storage.
    pub(crate) fn new_material(
        &self,
        key_id: &str,
        version: u32,
        rotation_type: Option<&str>,
    ) -> Result<Material, AwsError> {
        let k = crypto::random_key().map_err(|_| KmsError::internal("random generation failed"))?;
        let mut id = [0u8; 32];
        crypto::random(&mut id).map_err(|_| KmsError::internal("random generation failed"))?;
        self.seal_material(
            key_id,
            version,
            rotation_type,
            k.as_slice(),
            hex::encode(id),
        )
    }

    /// Material the caller made (an asymmetric or HMAC key, imported
    /// material), sealed under the root key exactly as symmetric material
    /// is (label `kms-key/ID/VERSION`).
    pub(crate) fn seal_material(
        &self,
        key_id: &str,
        version: u32,
        rotation_type: Option<&str>,
        raw: &[u8],
        id: String,
    ) -> Result<Material, AwsError> {
        let wrapped = self
            .root
            .wrap(&material_label(key_id, version), raw)
            .map_err(|_| KmsError::internal("wrapping key material failed"))?;
        Ok(Material {
            version,
            id,
            created: now(),
            rotation_type: rotation_type.map(str::to_owned),
            wrapped,
        })
    }

    /// Inserts a new key (and optionally an alias for it) durably. An alias
    /// that exists already (checked in the transaction) is an
    /// `AlreadyExistsException` and nothing is written.
    pub(crate) fn insert_key(
        &self,
        rec: KeyRecord,
        alias: Option<AliasRecord>,
    ) -> Result<Arc<LiveKey>, AwsError> {
        let live = Arc::new(self.make_live(rec, None)?);
        self.write(|w| {
            if let Some(a) = &alias {
                if w.get::<AliasRecord>(ALIASES, &a.name)
                    .map_err(store_fault)?
                    .is_some()
                {
                    return Err(alias_exists(&a.arn));
                }
                w.put(ALIASES, &a.name, a).map_err(store_fault)?;
            }
            w.put(KEYS, &live.rec.key_id, &live.rec)
                .map_err(store_fault)
        })?;
        self.publish(|st| {
            st.keys.insert(live.rec.key_id.clone(), live.clone());
            if let Some(a) = alias {
                st.aliases.insert(a.name.clone(), a);
            }
        });
        Ok(live)
    }

    /// Changes one key: `f` edits its record as the write transaction reads
    /// it (not the copy in memory, which another replica may have
    /// outdated); the result is written (if it changed) and published.
    pub(crate) fn update_key<R>(
        &self,
        key_id: &str,
        f: impl FnOnce(&mut KeyRecord) -> Result<R, AwsError>,
    ) -> Result<(Arc<LiveKey>, R), AwsError> {
        let prev = self.state().keys.get(key_id).cloned();
        let (live, r, changed) = self.write(|w| {
            let mut rec: KeyRecord = w
                .get(KEYS, key_id)
                .map_err(store_fault)?
                .ok_or_else(|| KmsError::key_not_found(key_id))?;
            let before = rec.clone();
            let r = f(&mut rec)?;
            let changed = rec != before;
            let live = match &prev {
                Some(p) if !changed && p.rec == rec => p.clone(),
                p => Arc::new(self.make_live(rec, p.as_deref())?),
            };
            if changed {
                w.put(KEYS, key_id, &live.rec).map_err(store_fault)?;
            }
            Ok((live, r, changed))
        })?;
        if changed {
            self.publish(|st| {
                st.keys.insert(key_id.to_owned(), live.clone());
            });
        }
        Ok((live, r))
    }

    /// Creates an alias; `AlreadyExistsException` if the name is taken.
    pub(crate) fn create_alias(&self, alias: AliasRecord) -> Result<(), AwsError> {
        self.write(|w| {
            if w.get::<AliasRecord>(ALIASES, &alias.name)
                .map_err(store_fault)?
                .is_some()
            {
                return Err(alias_exists(&alias.arn));
            }
            w.put(ALIASES, &alias.name, &alias).map_err(store_fault)
        })?;
        self.publish(|st| {
            st.aliases.insert(alias.name.clone(), alias);
        });
        Ok(())
    }

    /// Points the alias `name` at `target_key_id`; `NotFoundException` if
    /// it no longer exists.
    pub(crate) fn retarget_alias(&self, name: &str, target_key_id: &str) -> Result<(), AwsError> {
        let alias = self.write(|w| {
            let mut a: AliasRecord = w
                .get(ALIASES, name)
                .map_err(store_fault)?
                .ok_or_else(|| KmsError::alias_not_found(&format!("{}{name}", self.arn_prefix)))?;
            a.target_key_id = target_key_id.to_owned();
            a.updated = now();
            w.put(ALIASES, name, &a).map_err(store_fault)?;
            Ok(a)
        })?;
        self.publish(|st| {
            st.aliases.insert(name.to_owned(), alias);
        });
        Ok(())
    }

    /// Deletes an alias; `NotFoundException` if it no longer exists.
    pub(crate) fn delete_alias(&self, name: &str) -> Result<(), AwsError> {
        self.write(|w| {
            if w.delete(ALIASES, name).map_err(store_fault)? {
                Ok(())
            } else {
                Err(KmsError::alias_not_found(&format!(
                    "{}{name}",
                    self.arn_prefix
                )))
            }
        })?;
        self.publish(|st| {
            st.aliases.remove(name);
        });
        Ok(())
    }

    /// Stores a new grant on an enabled key, unless a grant of the same key
    /// for which `same` holds exists (CreateGrant is idempotent by name):
    /// then that one is returned. Both checked in the transaction.
    pub(crate) fn insert_grant(
        &self,
        g: GrantRecord,
        same: impl Fn(&GrantRecord) -> bool,
    ) -> Result<GrantRecord, AwsError> {
        let (g, new) = self.write(|w| {
            let rec: KeyRecord = w
                .get(KEYS, &g.key_id)
                .map_err(store_fault)?
                .ok_or_else(|| KmsError::key_not_found(&g.key_id))?;
            match rec.state_at(now()) {
                KeyState::Enabled => {}
                KeyState::Disabled => return Err(KmsError::disabled(&rec.arn)),
                KeyState::PendingDeletion => return Err(KmsError::pending_deletion(&rec.arn)),
                KeyState::PendingImport => return Err(KmsError::pending_import(&rec.arn)),
            }
            let prefix = format!("{}/", g.key_id);
            let existing: Vec<(String, GrantRecord)> =
                w.scan(GRANTS, &prefix).map_err(store_fault)?;
            if let Some((_, e)) = existing.into_iter().find(|(_, e)| same(e)) {
                return Ok((e, false));
            }
            w.put(GRANTS, &grant_key(&g.key_id, &g.grant_id), &g)
                .map_err(store_fault)?;
            Ok((g, true))
        })?;
        if new {
            self.publish(|st| {
                st.grants
                    .insert(grant_key(&g.key_id, &g.grant_id), g.clone());
            });
        }
        Ok(g)
    }

    pub(crate) fn delete_grant(&self, key_id: &str, grant_id: &str) -> Result<bool, AwsError> {
        let k = grant_key(key_id, grant_id);
        let existed = self.write(|w| w.delete(GRANTS, &k).map_err(store_fault))?;
        self.publish(|st| {
            st.grants.remove(&k);
        });
        Ok(existed)
    }

    /// Deletes keys whose deletion date has passed, with their aliases and
    /// grants. Runs lazily (at start, ListKeys, ListAliases) on whichever
    /// replica is asked: each key's due date is checked again inside the
    /// one write transaction that deletes it, so replicas racing delete it
    /// once.
    pub(crate) fn purge_due(&self) -> Result<(), AwsError> {
        let t = now();
        self.purge_expired_material(t)?;
        let due_at = |k: &KeyRecord| {
            k.state == KeyState::PendingDeletion && k.deletion_date.is_some_and(|d| d <= t)
        };
        let due: Vec<String> = self
            .state()
            .keys
            .values()
            .filter(|k| due_at(&k.rec))
            .map(|k| k.rec.key_id.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let _w = self.writer();
        let (keys, aliases, grants) = self.write(|w| {
            let mut keys = Vec::new();
            for k in &due {
                let rec: Option<KeyRecord> = w.get(KEYS, k).map_err(store_fault)?;
                if rec.is_some_and(|r| due_at(&r)) {
                    w.delete(KEYS, k).map_err(store_fault)?;
                    keys.push(k.clone());
                }
            }
            let mut aliases = Vec::new();
            if !keys.is_empty() {
                let all: Vec<(String, AliasRecord)> = w.scan(ALIASES, "").map_err(store_fault)?;
                for (name, a) in all {
                    if keys.contains(&a.target_key_id) {
                        w.delete(ALIASES, &name).map_err(store_fault)?;
                        aliases.push(name);
                    }
                }
            }
            let mut grants = Vec::new();
            for k in &keys {
                let of: Vec<(String, GrantRecord)> =
                    w.scan(GRANTS, &format!("{k}/")).map_err(store_fault)?;
                for (gk, _) in of {
                    w.delete(GRANTS, &gk).map_err(store_fault)?;
                    grants.push(gk);
                }
            }
            Ok((keys, aliases, grants))
        })?;
        self.publish(|st| {
            for k in &keys {
                st.keys.remove(k);
            }
            for a in &aliases {
                st.aliases.remove(a);
            }
            for g in &grants {
                st.grants.remove(g);
            }
        });
        Ok(())
    }

    /// Deletes imported material whose `ValidTo` has passed: the key is
    /// `PendingImport` until material is imported again, as in AWS. (Its
    /// state already reads `PendingImport` from the moment of expiry; see
    /// [`KeyRecord::state_at`].) Checked again on the record the write
    /// transaction reads, so a replica racing changes nothing twice.
    fn purge_expired_material(&self, t: f64) -> Result<(), AwsError> {
        let expired: Vec<String> = self
            .state()
            .keys
            .values()
            .filter(|k| k.rec.material_expired(t))
            .map(|k| k.rec.key_id.clone())
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let _w = self.writer();
        for id in expired {
            let r = self.update_key(&id, |rec| {
                if rec.material_expired(t) {
                    delete_imported(rec);
                }
                Ok(())
            });
            match r {
                Ok(_) => {}
                // Deleted meanwhile (another replica's purge).
                Err(e) if e.code == "NotFoundException" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The ARN prefix of this account and region.
    pub fn arn_prefix(&self) -> &str {
        &self.arn_prefix
    }

    /// Resolves a `KeyId` parameter to a live key.
    pub fn resolve(&self, key: &str, names: Names) -> Result<Arc<LiveKey>, AwsError> {
        let prefix = self.arn_prefix.as_str();
        let st = self.state();
        let key_id = if key.starts_with("arn:") {
            let Some(resource) = key.strip_prefix(prefix) else {
                // A well-formed ARN of another account or region names no key here.
                if key.split(':').count() >= 6 && key.starts_with("arn:aws:kms:") {
                    return Err(KmsError::key_not_found(key));
                }
                return Err(KmsError::invalid_arn(key));
            };
            if let Some(id) = resource.strip_prefix("key/") {
                id.to_owned()
            } else if resource.starts_with("alias/") {
                if names == Names::KeyOnly {
                    return Err(KmsError::invalid_key_id(key));
                }
                st.aliases
                    .get(resource)
                    .map(|a| a.target_key_id.clone())
                    .ok_or_else(|| KmsError::alias_not_found(key))?
            } else {
                return Err(KmsError::invalid_arn(key));
            }
        } else if key.starts_with("alias/") {
            if names == Names::KeyOnly {
                return Err(KmsError::invalid_key_id(key));
            }
            st.aliases
                .get(key)
                .map(|a| a.target_key_id.clone())
                .ok_or_else(|| KmsError::alias_not_found(&format!("{prefix}{key}")))?
        } else if uuid::Uuid::parse_str(key).is_ok() {
            key.to_owned()
        } else {
            return Err(KmsError::invalid_key_id(key));
        };
        let live = st
            .keys
            .get(&key_id)
            .cloned()
            .ok_or_else(|| KmsError::key_not_found(&format!("{prefix}key/{key_id}")))?;
        if live.rec.state == KeyState::PendingDeletion
            && live.rec.deletion_date.is_some_and(|d| d <= now())
        {
            return Err(KmsError::key_not_found(&live.rec.arn));
        }
        Ok(live)
    }

    /// Fails unless `key` is usable for cryptographic operations.
    pub fn check_usable(key: &LiveKey) -> Result<(), AwsError> {
        match key.state() {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::disabled(&key.rec.arn)),
            KeyState::PendingDeletion => Err(KmsError::pending_deletion(&key.rec.arn)),
            KeyState::PendingImport => Err(KmsError::pending_import(&key.rec.arn)),
        }
    }

    /// Fails if `key` is pending deletion (for management operations that
    /// AWS refuses in that state).
    pub fn check_not_pending(key: &LiveKey) -> Result<(), AwsError> {
        if key.rec.state == KeyState::PendingDeletion {
            return Err(KmsError::pending_deletion(&key.rec.arn));
        }
        Ok(())
    }
}

/// `AlreadyExistsException` for an alias name that is taken.
fn alias_exists(alias_arn: &str) -> AwsError {
    AwsError::client(
        "AlreadyExistsException",
        format!("An alias with the name {alias_arn} already exists"),
    )
}

/// Forgets an imported key's material: the key waits for an import.
pub(crate) fn delete_imported(rec: &mut KeyRecord) {
    rec.materials.clear();
    rec.valid_to = None;
    rec.expiration_model = None;
    if rec.state != KeyState::PendingDeletion {
        rec.state = KeyState::PendingImport;
    }
}

/// The operations a grant may permit.
pub const GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
];

/// Extra facts of one authorization request.
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// The encryption context of the request (or of the grant constraints,
    /// for CreateGrant).
    pub context: Option<&'a BTreeMap<String, String>>,
    /// More condition keys (lowercase names).
    pub keys: Vec<(&'static str, Vec<String>)>,
}

/// Whether the caller is the principal named `p` (grantee/retiree forms).
pub fn caller_is(caller: &Caller, p: &str) -> bool {
    match &caller.principal {
        Principal::AccountAdmin => p == caller.arn() || p == caller.account,
        Principal::Service(s) => p == s,
        Principal::Iam(arn) => p == arn,
        Principal::AssumedRole { role_arn, .. } => p == role_arn || p == caller.arn(),
    }
}

/// The KMS condition keys of one request (the caller's global keys are
/// added by [`authz::decisions`]).
fn condition_keys(
    ctx: &RequestContext,
    key: Option<&KeyRecord>,
    req: &Request<'_>,
) -> BTreeMap<String, Vec<String>> {
    let caller = &ctx.caller;
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    keys.insert("kms:calleraccount".into(), vec![caller.account.clone()]);
    let (spec, usage, origin) = key
        .map_or(("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "AWS_KMS"), |k| {
            (&*k.key_spec, &*k.key_usage, &*k.origin)
        });
    keys.insert("kms:keyspec".into(), vec![spec.into()]);
    keys.insert("kms:keyusage".into(), vec![usage.into()]);
    keys.insert("kms:keyorigin".into(), vec![origin.into()]);
    if let Principal::Service(_) = caller.principal {
        keys.insert("aws:sourceaccount".into(), vec![caller.account.clone()]);
    }
    // A request a ferry service makes on its caller's behalf (Secrets
    // Manager, SSM decrypting for the caller) says which service it is.
    keys.insert(
        "aws:viaawsservice".into(),
        vec![ctx.via_service.is_some().to_string()],
    );
    if let Some(via) = &ctx.via_service {
        keys.insert("kms:viaservice".into(), vec![via.clone()]);
    }
    if let Some(c) = req.context {
        for (k, v) in c {
            keys.insert(format!("kms:encryptioncontext:{k}"), vec![v.clone()]);
        }
        keys.insert(
            "kms:encryptioncontextkeys".into(),
            c.keys().cloned().collect(),
        );
    }
    for (k, v) in &req.keys {
        keys.insert((*k).to_owned(), v.clone());
    }
    keys
}

impl KeyStore {
    /// Authorizes `action` (without `kms:`) on `key` for the caller, by
    /// AWS's rules for KMS keys:
    ///
    /// 1. an explicit `Deny` in the key policy or in the caller's identity
    ///    policies denies, whoever asks: the administrator too;
    /// 2. otherwise the administrator may do anything to customer-managed
    ///    keys (ferry's administrator is the one who can repair a key
    ///    policy; see docs/kms.md), but needs the policy on the platform
    ///    key, like an AWS managed key;
    /// 3. otherwise the key policy must allow the caller: by its ARN, its
    ///    role's ARN, `*` or its service name; or by naming the account
    ///    (`arn:aws:iam::ACCOUNT:root`), which delegates to identity
    ///    policies: one of them must then allow `kms:ACTION` on the key;
    /// 4. otherwise, for grantable operations, a grant for the caller.
    pub fn authorize(
        &self,
        ctx: &RequestContext,
        key: &LiveKey,
        action: &str,
        req: &Request<'_>,
    ) -> Result<(), AwsError> {
        let caller = &ctx.caller;
        let full_action = format!("kms:{action}");
        let mut check = Check::new(&full_action, &key.rec.arn);
        let refuse = |d: Denied| d.into_error("AccessDeniedException");
        if caller.account != key.rec.account {
            return Err(refuse(Denied::implicit(
                caller,
                &check,
                DenySource::Resource,
            )));
        }
        let admin_override = caller.principal == Principal::AccountAdmin && !key.aws_managed();
        // Nothing can deny the administrator on a customer-managed key
        // whose policy has no Deny (it has no identity policies): skip
        // building the condition keys on this common path.
        if admin_override && caller.policies.is_none() && !key.policy.has_deny() {
            return Ok(());
        }
        check.keys = condition_keys(ctx, Some(&key.rec), req);
        let d = authz::decisions(caller, &check, Some(&key.policy));
        if d.identity == Decision::Deny {
            return Err(refuse(Denied::explicit(
                caller,
                &check,
                DenySource::Identity,
            )));
        }
        if d.resource.decision == Decision::Deny {
            return Err(refuse(Denied::explicit(
                caller,
                &check,
                DenySource::Resource,
            )));
        }
        if admin_override {
            return Ok(());
        }
        let Err(missing) = authz::required_policy_allows(&d) else {
            return Ok(());
        };
        if GRANT_OPERATIONS.contains(&action) && self.grant_allows(caller, key, action, req.context)
        {
            return Ok(());
        }
        Err(refuse(Denied::implicit(caller, &check, missing)))
    }

    /// The policy lockout safety check of CreateKey and PutKeyPolicy: a new
    /// key policy must still let the caller change it later. Explicit
    /// denies bind the administrator too, so a policy denying it
    /// `kms:PutKeyPolicy` would otherwise make the key unrepairable.
    /// Skipped with `BypassPolicyLockoutSafetyCheck`, as in AWS.
    pub fn lockout_check(
        &self,
        ctx: &RequestContext,
        policy: &Policy,
        key_arn: &str,
    ) -> Result<(), AwsError> {
        let caller = &ctx.caller;
        let mut check = Check::new("kms:PutKeyPolicy", key_arn);
        check.keys = condition_keys(ctx, None, &Request::default());
        let d = authz::decisions(caller, &check, Some(policy));
        let denied = d.identity == Decision::Deny || d.resource.decision == Decision::Deny;
        let allowed = caller.principal == Principal::AccountAdmin
            || authz::required_policy_allows(&d).is_ok();
        if denied || !allowed {
            return Err(AwsError::client(
                "MalformedPolicyDocumentException",
                "The new key policy will not allow you to update the key policy in the future.",
            ));
        }
        Ok(())
    }

    fn grant_allows(
        &self,
        caller: &Caller,
        key: &LiveKey,
        action: &str,
        context: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let st = self.state();
        let prefix = format!("{}/", key.rec.key_id);
        st.grants
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .any(|(_, g)| {
                caller_is(caller, &g.grantee)
                    && g.operations.iter().any(|o| o == action)
                    && constraints_hold(g, context)
            })
    }
}

/// Whether a request's encryption context satisfies a grant's constraints.
pub fn constraints_hold(g: &GrantRecord, context: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let ctx = context.unwrap_or(&empty);
    let Some(c) = &g.constraints else { return true };
    if let Some(eq) = &c.equals
        && eq != ctx
    {
        return false;
    }
    if let Some(sub) = &c.subset
        && !sub.iter().all(|(k, v)| ctx.get(k) == Some(v))
    {
        return false;
    }
    true
}
