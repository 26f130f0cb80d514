//! ferry's ECR-compatible registry: the ECR API (JSON 1.1, [`api`]) and the
//! OCI distribution API under `/v2/` ([`dist`]) over one image model, every
//! blob (layers, configs, manifests) sealed under a data key of the
//! repository's KMS key (docs/registry.md).
//!
//! Module map:
//! - this file: [`Registry`], the repositories, images, tags and their
//!   storage, login tokens, lifecycle application and garbage collection.
//! - [`api`]: the ECR JSON 1.1 operations.
//! - [`dist`]: the distribution API (a raw HTTP service of the listener).
//! - [`uploads`]: blob upload sessions and their byte ranges.
//! - [`keys`]: data keys as `ecr.amazonaws.com` under the repository's grant.
//! - [`token`]: the login tokens' MAC and expiry.
//! - [`lifecycle`]: lifecycle policies, parsed and evaluated.
//! - [`manifest`], [`names`], [`model`]: manifests, names, records.
//! - The lifecycle sweep runs on one replica at a time
//!   ([`ferry_store::singleton`]).
//!
//! Replicas (a shared store, issue 19): the records (repositories, images,
//! tags, the token key) are in the store and read from it on every call;
//! every change reads and writes them in one transaction. The sealed blobs
//! are files under each server's data directory: they are not shared, so a
//! push and the pulls of its image must reach the same replica (or the
//! replicas must share `DATA/registry`). Upload sessions in progress are in
//! memory, per replica.

#![forbid(unsafe_code)]

pub mod api;
pub mod dist;
pub mod keys;
pub mod lifecycle;
pub mod manifest;
pub mod model;
pub mod names;
pub mod token;
pub mod uploads;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ferry_blob::{BlobError, BlobStore, Digest};
use ferry_kms::{Kms, ManagedKey};
use ferry_proto::authz::{self, Check};
use ferry_proto::{AwsError, Caller, Principal, RequestContext};
use ferry_store::Store;
use zeroize::Zeroizing;

use crate::keys::{ECR_PRINCIPAL, RepoKeys};
use crate::model::{IMAGES, ImageRecord, REPOS, RepoRecord, SETTINGS};
use crate::token::{Claims, TokenKey};

/// The largest manifest the registry accepts (ECR: 4 MiB).
pub const MANIFEST_LIMIT: u64 = 4 << 20;

/// Blobs younger than this are never garbage-collected: they may belong
/// to a push whose manifest has not arrived yet.
const GC_GRACE_SECS: u64 = 15 * 60;

/// Who the principals behind login tokens are now: the composition root
/// answers from the administrator's key and the IAM store.
pub trait Principals: Send + Sync {
    /// The caller (with its current policies) that `access_key_id`
    /// belongs to, if it is still usable and is `principal_arn`; `None`
    /// once the user, key or session is gone.
    fn current(&self, principal_arn: &str, access_key_id: &str) -> Option<Caller>;
}

/// A login to the registry: what GetAuthorizationToken gives a caller.
/// No `Debug`: it holds the password.
pub struct RegistryLogin {
    /// `AWS`.
    pub username: String,
    /// The token.
    pub password: Zeroizing<String>,
    /// Expiry, seconds since the epoch.
    pub expires_at: f64,
}

/// The registry. Cheap to share behind an `Arc`.
pub struct Registry {
    store: Arc<Store>,
    kms: Arc<Kms>,
    root: PathBuf,
    account: String,
    region: String,
    endpoint: std::sync::OnceLock<String>,
    token_key: TokenKey,
    principals: Arc<dyn Principals>,
    pub(crate) uploads: uploads::Sessions,
    /// Serializes changes of image records and blob collection (pushes
    /// are rare next to pulls; one lock keeps tag moves and GC simple).
    write_lock: Mutex<()>,
    open_stores: Mutex<std::collections::HashMap<String, Arc<BlobStore>>>,
    /// Who this process is when it takes the sweep's lease (replicas).
    holder: std::sync::RwLock<String>,
}

/// The lifecycle sweep's lease: one replica applies lifecycle policies at
/// a time.
pub const SWEEP_LEASE: &str = "registry/lifecycle";

/// Seconds since the epoch, as ECR's timestamps.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn internal(what: impl std::fmt::Display) -> AwsError {
    AwsError::server("ServerException", what.to_string())
}

/// A blob error in ECR's terms; KMS refusals name the KMS.
pub(crate) fn blob_error(e: BlobError) -> AwsError {
    match e {
        BlobError::Key(k) => AwsError::client(
            "KmsException",
            format!(
                "KMS {} failed: {}: {}",
                k.operation, k.error.code, k.error.message
            ),
        ),
        BlobError::NotFound(d) => AwsError::client(
            "LayersNotFoundException",
            format!("The layer {d} does not exist"),
        ),
        BlobError::DigestMismatch { expected, actual } => AwsError::client(
            "InvalidLayerException",
            format!("digest mismatch: expected {expected}, got {actual}"),
        ),
        BlobError::BadDigest(d) => {
            AwsError::client("InvalidParameterException", format!("invalid digest {d:?}"))
        }
        other => internal(other),
    }
}

impl Registry {
    /// Opens the registry: its blobs under `data_dir/registry`, its records
    /// in `store`, its token key sealed under the KMS root key (made on
    /// first start). Set the listener's URL with [`Registry::set_endpoint`]
    /// once it is bound.
    pub fn open(
        store: Arc<Store>,
        kms: Arc<Kms>,
        data_dir: &std::path::Path,
        principals: Arc<dyn Principals>,
    ) -> Result<Self, AwsError> {
        let root = data_dir.join("registry");
        std::fs::create_dir_all(&root)
            .map_err(|e| internal(format!("creating {}: {e}", root.display())))?;
        let token_key = load_token_key(&store, &kms)?;
        Ok(Self {
            account: kms.account().to_owned(),
            region: kms.region().to_owned(),
            store,
            kms,
            root,
            endpoint: std::sync::OnceLock::new(),
            token_key,
            principals,
            uploads: uploads::Sessions::default(),
            write_lock: Mutex::new(()),
            open_stores: Mutex::new(std::collections::HashMap::new()),
            holder: std::sync::RwLock::new(ferry_store::singleton::default_holder()),
        })
    }

    /// Names this process for the sweep's lease (unique per process among
    /// the replicas sharing a store).
    pub fn set_holder(&self, holder: impl Into<String>) {
        *self
            .holder
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = holder.into();
    }

    fn holder(&self) -> String {
        self.holder
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs [`Registry::sweep`] every `every` on a background thread for as
    /// long as the registry lives: with a shared store, the lifecycle part
    /// on the one replica holding [`SWEEP_LEASE`]; what is this host's own
    /// (idle uploads, unreferenced blobs) on every replica.
    pub fn spawn_sweep(self: &Arc<Self>, every: std::time::Duration) -> std::io::Result<()> {
        let weak = Arc::downgrade(self);
        let named = weak.clone();
        let shared = self.store.is_shared();
        ferry_store::singleton::spawn(
            "registry-sweep",
            self.store.clone(),
            SWEEP_LEASE,
            move || named.upgrade().map(|r| r.holder()),
            every,
            move |lease| {
                let Some(r) = weak.upgrade() else {
                    return false;
                };
                r.sweep_lifecycle(lease);
                // With a shared store the thread below does this host's part.
                if !shared {
                    r.sweep_local();
                }
                true
            },
        )?;
        if shared {
            // The holder's thread above runs only while it holds the lease:
            // this host's own part runs on every replica.
            let weak = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("registry-local".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(every);
                        let Some(r) = weak.upgrade() else { return };
                        r.sweep_local();
                    }
                })?;
        }
        Ok(())
    }

    /// The account.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Sets the listener's URL (`http://HOST:PORT`): GetAuthorizationToken's
    /// `proxyEndpoint` and the download URLs name it. Set once.
    pub fn set_endpoint(&self, url: String) {
        let _ = self.endpoint.set(url);
    }

    /// The listener's URL (empty until set).
    pub fn endpoint(&self) -> &str {
        self.endpoint.get().map_or("", String::as_str)
    }

    // ---- login -----------------------------------------------------------

    /// A login for `ctx`'s caller: exactly what GetAuthorizationToken gives
    /// it (user `AWS`, a token valid 12 hours).
    pub fn login(&self, ctx: &RequestContext) -> Result<RegistryLogin, AwsError> {
        let expires = now() as i64 + token::TOKEN_LIFETIME_SECS;
        let claims = Claims {
            account: ctx.caller.account.clone(),
            principal: ctx.caller.arn(),
            access_key_id: ctx.caller.access_key_id.clone().unwrap_or_default(),
            expires,
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        };
        let password = self
            .token_key
            .issue(&claims)
            .map_err(|_| internal("issuing a token failed"))?;
        Ok(RegistryLogin {
            username: "AWS".into(),
            password,
            expires_at: expires as f64,
        })
    }

    /// The caller a `user:password` login stands for, if the password is a
    /// live token of a principal that still exists.
    pub fn authenticate(&self, user: &str, password: &str) -> Option<Caller> {
        if user != "AWS" {
            return None;
        }
        let claims = self.token_key.verify(password, now() as i64).ok()?;
        if claims.account != self.account {
            return None;
        }
        // Services acting in-process (no key) keep their identity.
        if claims.access_key_id.is_empty() {
            return match claims.principal.as_str() {
                p if p == Caller::admin(&self.account).arn() => Some(Caller::admin(&self.account)),
                _ => None,
            };
        }
        self.principals
            .current(&claims.principal, &claims.access_key_id)
            .filter(|c| c.arn() == claims.principal)
    }

    // ---- authorization -------------------------------------------------

    /// Checks `ecr:ACTION` on `resource` for the caller (identity
    /// policies; the administrator passes unless explicitly denied).
    pub fn authorize(&self, caller: &Caller, action: &str, resource: &str) -> Result<(), AwsError> {
        if matches!(caller.principal, Principal::Service(_)) {
            return Ok(());
        }
        let action = format!("ecr:{action}");
        authz::authorize(caller, &Check::new(&action, resource), None).map_err(|d| {
            tracing::info!(principal = %d.principal, action = %d.action, resource = %d.resource, "registry request refused by policy");
            d.into_error("AccessDeniedException")
        })
    }

    // ---- repositories ----------------------------------------------------

    /// The repository `name`, or `RepositoryNotFoundException`.
    pub fn repository(&self, name: &str) -> Result<RepoRecord, AwsError> {
        self.store
            .get::<RepoRecord>(REPOS, name)?
            .ok_or_else(|| self.repo_not_found(name))
    }

    pub(crate) fn repo_not_found(&self, name: &str) -> AwsError {
        AwsError::client(
            "RepositoryNotFoundException",
            format!(
                "The repository with name '{name}' does not exist in the registry with id '{}'",
                self.account
            ),
        )
    }

    /// Every repository, by name.
    pub fn repositories(&self) -> Result<Vec<RepoRecord>, AwsError> {
        Ok(self
            .store
            .scan::<RepoRecord>(REPOS, "")?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// The KMS key a new repository uses, checked as the caller (through
    /// ECR), and the grant for `ecr.amazonaws.com` on it.
    pub(crate) fn grant_for_repository(
        &self,
        ctx: &RequestContext,
        kms_key: Option<&str>,
        arn: &str,
    ) -> Result<(String, String), AwsError> {
        use ferry_kms::ops::grants::{CreateGrant, GrantCreated};
        use ferry_kms::ops::keys::DescribeKey;
        let via = self.on_behalf(ctx);
        let kms_err = |e: AwsError| {
            AwsError::client(
                "KmsException",
                format!(
                    "KMS refused the repository's key: {}: {}",
                    e.code, e.message
                ),
            )
        };
        let key_arn = match kms_key {
            Some(k) => {
                self.kms
                    .execute(&via, &DescribeKey { key_id: k })
                    .map_err(kms_err)?
                    .arn
            }
            None => self.kms.aws_managed_key(ManagedKey::Ecr).map_err(kms_err)?,
        };
        let constraints = ferry_kms::model::Constraints {
            subset: Some(keys::context(arn)),
            equals: None,
        };
        let name = format!("ecr-{}", uuid::Uuid::new_v4().simple());
        let g: GrantCreated = self
            .kms
            .execute(
                &via,
                &CreateGrant {
                    key_id: &key_arn,
                    grantee: ECR_PRINCIPAL,
                    retiring: Some(ECR_PRINCIPAL),
                    operations: vec![
                        "GenerateDataKey".into(),
                        "Decrypt".into(),
                        "DescribeKey".into(),
                    ],
                    name: Some(&name),
                    constraints: Some(constraints),
                    dry_run: false,
                },
            )
            .map_err(kms_err)?;
        Ok((key_arn, g.grant_id))
    }

    /// Retires a deleted repository's grant, as ECR itself.
    pub(crate) fn retire_grant(&self, repo: &RepoRecord) {
        use ferry_kms::ops::grants::RetireGrant;
        let keys = self.repo_keys(repo);
        if let Err(e) = self.kms.execute(
            &keys.ctx,
            &RetireGrant {
                grant_token: None,
                key_id: Some(&repo.key_arn),
                grant_id: Some(&repo.grant_id),
                dry_run: false,
            },
        ) {
            tracing::warn!(repository = %repo.name, code = %e.code, "retiring the repository's grant failed");
        }
    }

    fn on_behalf(&self, ctx: &RequestContext) -> RequestContext {
        let svc = ManagedKey::Ecr.via_service(&self.region);
        let mut c = ctx.clone().with_via_service(svc);
        c.source_ip = ECR_PRINCIPAL.to_owned();
        c.user_agent = ECR_PRINCIPAL.to_owned();
        c
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn repo_dir(&self, repo: &RepoRecord) -> PathBuf {
        self.root.join(&repo.id)
    }

    /// The repository's blob store, opened once per process (opening
    /// clears a previous process's unfinished uploads).
    pub(crate) fn blobs(&self, repo: &RepoRecord) -> Result<Arc<BlobStore>, AwsError> {
        let mut open = self
            .open_stores
            .lock()
            .map_err(|_| internal("registry lock poisoned"))?;
        if let Some(s) = open.get(&repo.id) {
            return Ok(s.clone());
        }
        let s = Arc::new(BlobStore::open(self.repo_dir(repo)).map_err(blob_error)?);
        open.insert(repo.id.clone(), s.clone());
        Ok(s)
    }

    pub(crate) fn repo_keys(&self, repo: &RepoRecord) -> RepoKeys {
        RepoKeys::new(
            self.kms.clone(),
            repo.key_arn.clone(),
            &self.account,
            &self.region,
        )
    }

    pub(crate) fn create_repo_dir(&self, repo: &RepoRecord) -> Result<(), AwsError> {
        self.blobs(repo).map(|_| ())
    }

    /// Removes a deleted repository's directory: every sealed blob of it.
    pub(crate) fn remove_repo_dir(&self, repo: &RepoRecord) {
        if let Ok(mut open) = self.open_stores.lock() {
            open.remove(&repo.id);
        }
        let dir = self.repo_dir(repo);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a repository's blobs failed");
        }
    }

    // ---- images ----------------------------------------------------------

    /// The repository's images.
    pub fn images(&self, repo: &str) -> Result<Vec<ImageRecord>, AwsError> {
        Ok(self
            .store
            .scan::<ImageRecord>(IMAGES, &model::image_prefix(repo))?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// The image `reference` (a tag or a digest) names, if any.
    pub fn find_image(&self, repo: &str, reference: &str) -> Result<Option<ImageRecord>, AwsError> {
        if reference.contains(':') {
            return Ok(self.store.get(IMAGES, &model::image_key(repo, reference))?);
        }
        Ok(self
            .images(repo)?
            .into_iter()
            .find(|i| i.tags.iter().any(|t| t == reference)))
    }

    pub(crate) fn image_not_found(&self, repo: &str, what: &str) -> AwsError {
        AwsError::client(
            "ImageNotFoundException",
            format!(
                "The image with imageId {{{what}}} does not exist within the repository with name '{repo}' in the registry with id '{}'",
                self.account
            ),
        )
    }

    /// The manifest of `image`, unsealed.
    pub fn manifest_bytes(
        &self,
        repo: &RepoRecord,
        image: &ImageRecord,
    ) -> Result<Vec<u8>, AwsError> {
        let digest = Digest::parse(&image.digest).map_err(blob_error)?;
        self.blobs(repo)?
            .read_all(
                &digest,
                &self.repo_keys(repo),
                &keys::context(&repo.arn),
                MANIFEST_LIMIT,
            )
            .map_err(blob_error)
    }

    /// Stores a manifest under `tag` (if any): its blobs (or, for an
    /// index, its manifests) must be in the repository; an IMMUTABLE
    /// repository refuses to move a tag. Then applies the lifecycle policy.
    pub fn put_manifest(
        &self,
        repo_name: &str,
        bytes: &[u8],
        declared_type: Option<&str>,
        tag: Option<&str>,
        expected_digest: Option<&str>,
    ) -> Result<ImageRecord, AwsError> {
        let repo = self.repository(repo_name)?;
        if bytes.len() as u64 > MANIFEST_LIMIT {
            return Err(AwsError::client(
                "InvalidParameterException",
                "the manifest is larger than 4 MiB",
            ));
        }
        if let Some(t) = tag
            && !names::valid_tag(t)
        {
            return Err(AwsError::client(
                "InvalidParameterException",
                format!("invalid tag {t:?}"),
            ));
        }
        let parsed = manifest::parse(bytes, declared_type).ok_or_else(|| {
            AwsError::client(
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax' (or an unsupported manifest media type)",
            )
        })?;
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        );
        if let Some(want) = expected_digest
            && want != digest
        {
            return Err(AwsError::client(
                "ImageDigestDoesNotMatchException",
                format!("The digest {want} does not match the manifest's digest {digest}"),
            ));
        }
        let blobs = self.blobs(&repo)?;
        let mut missing = Vec::new();
        for (d, _) in &parsed.blobs {
            match Digest::parse(d) {
                Ok(dg) if blobs.contains(&dg) => {}
                _ => missing.push(d.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(AwsError::client(
                "LayersNotFoundException",
                format!(
                    "The following layers referenced by the manifest do not exist: {}",
                    missing.join(", ")
                ),
            ));
        }
        for m in &parsed.manifests {
            if self
                .store
                .get::<ImageRecord>(IMAGES, &model::image_key(repo_name, m))?
                .is_none()
            {
                return Err(AwsError::client(
                    "ReferencedImagesNotFoundException",
                    format!(
                        "The manifest {m} referenced by the index does not exist in the repository"
                    ),
                ));
            }
        }
        let _w = self
            .write_lock
            .lock()
            .map_err(|_| internal("registry lock poisoned"))?;
        // The manifest itself, sealed like every blob.
        let stored = blobs
            .put(
                &self.repo_keys(&repo),
                &keys::context(&repo.arn),
                bytes,
                None,
                None,
            )
            .map_err(blob_error)?;
        debug_assert_eq!(stored.digest.as_str(), digest);
        let size: u64 = parsed.blobs.iter().skip(1).map(|(_, s)| s).sum();
        let mut refs: Vec<String> = parsed.blobs.iter().map(|(d, _)| d.clone()).collect();
        refs.extend(parsed.manifests.iter().cloned());
        let immutable = repo.mutability == "IMMUTABLE";
        let record = self.store.write(|w| -> Result<ImageRecord, AwsError> {
            let key = model::image_key(repo_name, &digest);
            let existing: Option<ImageRecord> = w.get(IMAGES, &key)?;
            if let Some(t) = tag {
                for (k, mut other) in w.scan::<ImageRecord>(IMAGES, &model::image_prefix(repo_name))? {
                    if other.digest == digest || !other.tags.iter().any(|x| x == t) {
                        continue;
                    }
                    if immutable {
                        return Err(AwsError::client(
                            "ImageTagAlreadyExistsException",
                            format!(
                                "The image tag '{t}' already exists in the '{repo_name}' repository and cannot be overwritten because the repository is immutable."
                            ),
                        ));
                    }
                    other.tags.retain(|x| x != t);
                    w.put(IMAGES, &k, &other)?;
                }
            }
            let mut rec = existing.unwrap_or(ImageRecord {
                digest: digest.clone(),
                media_type: parsed.media_type.clone(),
                artifact_media_type: parsed.config_media_type.clone(),
                manifest_size: bytes.len() as u64,
                size,
                pushed_at: now(),
                tags: Vec::new(),
                refs,
            });
            if let Some(t) = tag
                && !rec.tags.iter().any(|x| x == t)
            {
                rec.tags.push(t.to_owned());
            }
            w.put(IMAGES, &key, &rec)?;
            Ok(rec)
        })?;
        drop(_w);
        self.apply_lifecycle(repo_name)?;
        Ok(record)
    }

    /// Deletes the image `digest` (its manifest), then collects blobs no
    /// remaining image references.
    pub fn delete_image(&self, repo: &RepoRecord, digest: &str) -> Result<bool, AwsError> {
        let existed = self
            .store
            .delete(IMAGES, &model::image_key(&repo.name, digest))?;
        if existed {
            self.collect_garbage(repo)?;
        }
        Ok(existed)
    }

    /// Removes `tag` from whatever image has it; an image left with no
    /// tags stays, untagged (as ECR's BatchDeleteImage by tag does for an
    /// image with other tags; alone, the image itself goes).
    pub fn untag(&self, repo: &RepoRecord, tag: &str) -> Result<Option<ImageRecord>, AwsError> {
        // Read and changed in one transaction: a tag moved or an image
        // changed through another replica meanwhile is not written back.
        let untagged = self.store.write(|w| -> Result<_, AwsError> {
            let found = w
                .scan::<ImageRecord>(IMAGES, &model::image_prefix(&repo.name))?
                .into_iter()
                .find(|(_, i)| i.tags.iter().any(|t| t == tag));
            let Some((key, mut img)) = found else {
                return Ok(None);
            };
            img.tags.retain(|t| t != tag);
            if img.tags.is_empty() {
                w.delete(IMAGES, &key)?;
            } else {
                w.put(IMAGES, &key, &img)?;
            }
            Ok(Some(img))
        })?;
        if untagged.as_ref().is_some_and(|i| i.tags.is_empty()) {
            self.collect_garbage(repo)?;
        }
        Ok(untagged)
    }

    /// Removes the repository's blobs that no image references (and that
    /// are older than the push grace period).
    pub fn collect_garbage(&self, repo: &RepoRecord) -> Result<usize, AwsError> {
        let _w = self
            .write_lock
            .lock()
            .map_err(|_| internal("registry lock poisoned"))?;
        let mut keep = BTreeSet::new();
        for img in self.images(&repo.name)? {
            keep.insert(img.digest.clone());
            keep.extend(img.refs);
        }
        let blobs = self.blobs(repo)?;
        let mut removed = 0;
        for (d, _) in blobs.list().map_err(blob_error)? {
            if keep.contains(d.as_str()) {
                continue;
            }
            let young = std::fs::metadata(blobs.path(&d))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age.as_secs() < GC_GRACE_SECS);
            // An unreferenced young blob may be a push in progress.
            if young {
                continue;
            }
            if blobs.remove(&d).map_err(blob_error)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Applies the repository's lifecycle policy now: expired images are
    /// deleted and their blobs collected. Decided and deleted in one write
    /// transaction, on the images it reads: replicas applying it at once
    /// (after a push, the sweep) delete each image once and never one a
    /// newer push saved.
    pub fn apply_lifecycle(&self, repo_name: &str) -> Result<Vec<String>, AwsError> {
        self.apply_lifecycle_as(repo_name, None)
    }

    fn apply_lifecycle_as(
        &self,
        repo_name: &str,
        lease: Option<&ferry_store::singleton::Held>,
    ) -> Result<Vec<String>, AwsError> {
        let repo = self.repository(repo_name)?;
        let Some(text) = &repo.lifecycle_policy else {
            return Ok(Vec::new());
        };
        let policy = lifecycle::Policy::parse(text)?;
        let expired = self.store.write(|w| -> Result<Vec<String>, AwsError> {
            if let Some(l) = lease
                && !l.holds(w)?
            {
                return Err(internal(
                    "the lifecycle sweep's lease was lost; another replica sweeps now",
                ));
            }
            let images: Vec<ImageRecord> = w
                .scan::<ImageRecord>(IMAGES, &model::image_prefix(repo_name))?
                .into_iter()
                .map(|(_, i)| i)
                .collect();
            let candidates: Vec<lifecycle::Candidate<'_>> = images
                .iter()
                .map(|i| lifecycle::Candidate {
                    digest: &i.digest,
                    tags: &i.tags,
                    pushed_at: i.pushed_at,
                })
                .collect();
            let expired = policy.expired(&candidates, now());
            for d in &expired {
                w.delete(IMAGES, &model::image_key(repo_name, d))?;
            }
            if let Some(mut r) = w.get::<RepoRecord>(REPOS, repo_name)? {
                r.lifecycle_evaluated_at = Some(now());
                w.put(REPOS, repo_name, &r)?;
            }
            Ok(expired)
        })?;
        for d in &expired {
            tracing::info!(repository = repo_name, digest = %d, "lifecycle policy expired an image");
        }
        if !expired.is_empty() {
            self.collect_garbage(&repo)?;
        }
        Ok(expired)
    }

    /// The periodic sweep: every repository's lifecycle policy (ECR
    /// applies policies within 24 hours; ferry also right after a push),
    /// then what is this host's own.
    pub fn sweep(&self) {
        self.sweep_lifecycle(None);
        self.sweep_local();
    }

    /// Every repository's lifecycle policy; with a lease, only while it is
    /// held.
    fn sweep_lifecycle(&self, lease: Option<&ferry_store::singleton::Held>) {
        let Ok(repos) = self.repositories() else {
            return;
        };
        for r in repos {
            if lease.is_some_and(|l| !l.renew()) {
                return;
            }
            if let Err(e) = self.apply_lifecycle_as(&r.name, lease) {
                tracing::warn!(repository = %r.name, code = %e.code, "lifecycle sweep failed");
            }
        }
    }

    /// This host's own part of the sweep: idle uploads; with a shared
    /// store also the blobs of this host no image references any more
    /// (images deleted through another replica collected nothing here).
    fn sweep_local(&self) {
        self.uploads.expire();
        if !self.store.is_shared() {
            return;
        }
        let Ok(repos) = self.repositories() else {
            return;
        };
        for r in repos {
            if let Err(e) = self.collect_garbage(&r) {
                tracing::warn!(repository = %r.name, code = %e.code, "collecting unreferenced blobs failed");
            }
        }
    }
}

/// The token key: sealed under the KMS root key in the store; made on
/// first start.
fn load_token_key(store: &Store, kms: &Kms) -> Result<TokenKey, AwsError> {
    const LABEL: &str = "ecr/token-key";
    let open = |sealed: String| -> Result<TokenKey, AwsError> {
        let bytes =
            hex::decode(sealed).map_err(|_| internal("the sealed token key is malformed"))?;
        let plain = kms.unseal_secret(LABEL, &bytes)?;
        TokenKey::from_slice(&plain).ok_or_else(|| internal("the token key is malformed"))
    };
    if let Some(sealed) = store.get::<String>(SETTINGS, "token-key")? {
        return open(sealed);
    }
    let key = TokenKey::generate();
    let sealed = hex::encode(kms.seal_secret(LABEL, key.bytes())?);
    // Made once: a replica starting at the same time may have stored its
    // key first; then every replica uses that one (tokens issued by one
    // must verify on all).
    let stored = store.write(|w| -> Result<Option<String>, AwsError> {
        if let Some(theirs) = w.get::<String>(SETTINGS, "token-key")? {
            return Ok(Some(theirs));
        }
        w.put(SETTINGS, "token-key", &sealed)?;
        Ok(None)
    })?;
    match stored {
        Some(theirs) => open(theirs),
        None => Ok(key),
    }
}
