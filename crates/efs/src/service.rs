//! The EFS operations over the store and the [`Backend`].

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_proto::{AwsError, RequestContext};
use ferry_proto::{RestOperation, RestRequest, RestResponse, RestService};
use ferry_store::Store;
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::error::EfsError;
use crate::model::{AP_TABLE, AccessPoint, FS_TABLE, FileSystem, MT_TABLE, MountTarget, Tag};
use crate::network::Network;
use crate::route::{self, Op};

mod mount_targets;
mod settings;

/// Largest page DescribeFileSystems / DescribeAccessPoints return.
const MAX_PAGE: usize = 100;

/// The EFS service.
pub struct EfsService {
    store: Arc<Store>,
    backend: Arc<dyn Backend>,
    /// Where mount targets get their addresses (None: CreateMountTarget
    /// is refused; unit tests of other operations).
    network: Option<Arc<dyn Network>>,
    /// This replica's host (its `--name`): the host a file system made
    /// here lives on. `None`: a replica without an agent, which makes file
    /// systems only on an embedded store (where it is the only process).
    host: Option<String>,
    account: String,
    region: String,
    /// Serializes creates and deletes within this process (volume creation
    /// happens outside the store transaction). Across replicas, the checks
    /// that matter (a creation token, a mount target per zone, a file
    /// system without mount targets) are made again in the write
    /// transaction that records the change.
    lock: Mutex<()>,
}

type R = Result<RestResponse, EfsError>;

fn ok(status: u16, body: Value) -> R {
    Ok(RestResponse { status, body })
}

fn bad(msg: impl Into<String>) -> EfsError {
    EfsError::BadRequest(msg.into())
}

fn new_id(prefix: &str) -> String {
    let n: u128 = rand::random::<u128>() & ((1u128 << 68) - 1);
    format!("{prefix}{n:017x}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn parse_body(body: &[u8]) -> Result<Value, EfsError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    if !v.is_object() {
        return Err(bad("the request body must be a JSON object"));
    }
    Ok(v)
}

fn opt_str<'a>(v: &'a Value, name: &str) -> Result<Option<&'a str>, EfsError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{name} must be a string"))),
    }
}

fn req_str<'a>(v: &'a Value, name: &str) -> Result<&'a str, EfsError> {
    match opt_str(v, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(bad(format!("{name} is required"))),
    }
}

fn parse_tags(v: &Value) -> Result<Vec<Tag>, EfsError> {
    match v.get("Tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(t) => {
            let tags: Vec<Tag> = serde_json::from_value(t.clone())
                .map_err(|_| bad("Tags must be a list of {Key, Value}"))?;
            for t in &tags {
                if t.key.is_empty() || t.key.len() > 128 || t.value.len() > 256 {
                    return Err(bad(format!("invalid tag key or value: {:?}", t.key)));
                }
            }
            Ok(tags)
        }
    }
}

/// `TagKeys` of DeleteTags: 1 to 50 keys.
fn tag_keys(v: &Value) -> Result<Vec<String>, EfsError> {
    let keys: Vec<String> = match v.get("TagKeys") {
        None | Some(Value::Null) => Vec::new(),
        Some(k) => serde_json::from_value(k.clone())
            .map_err(|_| bad("TagKeys must be a list of strings"))?,
    };
    if keys.is_empty() || keys.len() > 50 {
        return Err(bad("TagKeys must name 1 to 50 keys"));
    }
    Ok(keys)
}

fn merge_tags(into: &mut Vec<Tag>, new: Vec<Tag>) {
    for t in new {
        match into.iter_mut().find(|x| x.key == t.key) {
            Some(x) => x.value = t.value,
            None => into.push(t),
        }
    }
}

fn page_size(q: &[(String, String)], name: &str) -> Result<usize, EfsError> {
    match q.iter().find(|(k, _)| k == name) {
        None => Ok(MAX_PAGE),
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(MAX_PAGE)),
            _ => Err(bad(format!("{name} must be a positive integer"))),
        },
    }
}

fn qget<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Pages `items` (sorted by id) starting at id `from`; returns the page and
/// the id of the next item.
fn page<T, F: Fn(&T) -> &str>(
    items: Vec<T>,
    from: Option<&str>,
    n: usize,
    id: F,
) -> Result<(Vec<T>, Option<String>), EfsError> {
    let start = match from {
        None => 0,
        Some(m) => items
            .iter()
            .position(|x| id(x) == m)
            .ok_or_else(|| bad("invalid pagination token"))?,
    };
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let next = rest.get(n).map(|x| id(x).to_owned());
    rest.truncate(n);
    Ok((rest, next))
}

/// A mount path (RootDirectory.Path or rootDirectory): absolute, no `..`.
pub fn check_path(p: &str) -> Result<(), EfsError> {
    if !p.starts_with('/') || p.len() > 100 || p.split('/').any(|c| c == ".." || c == ".") {
        return Err(bad(format!(
            "invalid path {p:?}: must be absolute, at most 100 characters, without . or .."
        )));
    }
    Ok(())
}

impl EfsService {
    /// The service over `store`, creating volumes through `backend`.
    pub fn new(
        store: Arc<Store>,
        backend: Arc<dyn Backend>,
        account: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            store,
            backend,
            network: None,
            host: None,
            account: account.into(),
            region: region.into(),
            lock: Mutex::new(()),
        }
    }

    /// Gives mount targets their addresses through `network`.
    pub fn with_network(mut self, network: Arc<dyn Network>) -> Self {
        self.network = Some(network);
        self
    }

    /// File systems made through this service live on host `name`'s disk.
    pub fn with_host(mut self, name: Option<String>) -> Self {
        self.host = name;
        self
    }

    /// A file system record (for the task runtime).
    pub fn file_system(&self, id: &str) -> Result<Option<FileSystem>, EfsError> {
        Ok(self.store.get(FS_TABLE, id)?)
    }

    /// An access point record (for the task runtime).
    pub fn access_point(&self, id: &str) -> Result<Option<AccessPoint>, EfsError> {
        Ok(self.store.get(AP_TABLE, id)?)
    }

    fn arn(&self, kind: &str, id: &str) -> String {
        format!(
            "arn:aws:elasticfilesystem:{}:{}:{kind}/{id}",
            self.region, self.account
        )
    }

    fn all_fs(&self) -> Result<Vec<FileSystem>, EfsError> {
        Ok(self
            .store
            .scan::<FileSystem>(FS_TABLE, "")?
            .into_iter()
            .map(|(_, f)| f)
            .collect())
    }

    fn all_mt(&self) -> Result<Vec<MountTarget>, EfsError> {
        Ok(self
            .store
            .scan::<MountTarget>(MT_TABLE, "")?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }

    /// The file system's description with its size and mount targets.
    fn describe_fs(&self, f: &FileSystem) -> Result<Value, EfsError> {
        let mts = self
            .all_mt()?
            .iter()
            .filter(|m| m.file_system_id == f.id)
            .count();
        Ok(f.describe(self.backend.size(&f.id), mts))
    }

    /// The file system `id`, or FileSystemNotFound.
    fn fs_or_404(&self, id: &str) -> Result<FileSystem, EfsError> {
        self.file_system(id)?
            .ok_or_else(|| EfsError::FileSystemNotFound(id.to_owned()))
    }

    /// Applies `f` to file system `id` as the write transaction reads it,
    /// and stores it: no replica's change is lost.
    fn update_fs<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut FileSystem) -> Result<T, EfsError>,
    ) -> Result<(FileSystem, T), EfsError> {
        let _g = self.guard();
        self.store.write(|w| {
            let mut fs: FileSystem = w
                .get(FS_TABLE, id)?
                .ok_or_else(|| EfsError::FileSystemNotFound(id.to_owned()))?;
            let out = f(&mut fs)?;
            w.put(FS_TABLE, id, &fs)?;
            Ok((fs, out))
        })
    }

    fn all_ap(&self) -> Result<Vec<AccessPoint>, EfsError> {
        Ok(self
            .store
            .scan::<AccessPoint>(AP_TABLE, "")?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch(&self, ctx: &RequestContext, op: Op, req: &RestRequest) -> R {
        let q = route::query(&req.query);
        match op {
            Op::CreateFileSystem => self.create_file_system(ctx, &parse_body(&req.body)?),
            Op::DescribeFileSystems => self.describe_file_systems(&q),
            Op::DeleteFileSystem(id) => self.delete_file_system(&id),
            Op::UpdateFileSystem(id) => self.update_file_system(&id, &parse_body(&req.body)?),
            Op::UpdateFileSystemProtection(id) => {
                self.update_protection(&id, &parse_body(&req.body)?)
            }
            Op::PutFileSystemPolicy(id) => self.put_policy(ctx, &id, &parse_body(&req.body)?),
            Op::DescribeFileSystemPolicy(id) => self.describe_policy(&id),
            Op::DeleteFileSystemPolicy(id) => self.delete_policy(&id),
            Op::PutLifecycleConfiguration(id) => self.put_lifecycle(&id, &parse_body(&req.body)?),
            Op::DescribeLifecycleConfiguration(id) => self.describe_lifecycle(&id),
            Op::PutBackupPolicy(id) => self.put_backup_policy(&id, &parse_body(&req.body)?),
            Op::DescribeBackupPolicy(id) => self.describe_backup_policy(&id),
            Op::CreateMountTarget => self.create_mount_target(&parse_body(&req.body)?),
            Op::DescribeMountTargets => self.describe_mount_targets(&q),
            Op::DeleteMountTarget(id) => self.delete_mount_target(&id),
            Op::DescribeMountTargetSecurityGroups(id) => self.mount_target_groups(&id),
            Op::ModifyMountTargetSecurityGroups(id) => {
                self.modify_mount_target_groups(&id, &parse_body(&req.body)?)
            }
            Op::CreateTags(id) => {
                let tags = parse_tags(&parse_body(&req.body)?)?;
                if tags.is_empty() {
                    return Err(bad("Tags is required"));
                }
                self.fs_or_404(&id)?;
                self.retag(&id, |t| merge_tags(t, tags))?;
                ok(204, Value::Null)
            }
            Op::DeleteTags(id) => {
                let keys = tag_keys(&parse_body(&req.body)?)?;
                self.fs_or_404(&id)?;
                self.retag(&id, |t| t.retain(|x| !keys.contains(&x.key)))?;
                ok(204, Value::Null)
            }
            Op::DescribeTags(id) => {
                let n = page_size(&q, "MaxItems")?;
                let tags = self.fs_or_404(&id)?.tags;
                let marker = qget(&q, "Marker");
                let (items, next) = page(tags, marker, n, |t| t.key.as_str())?;
                let mut out = json!({"Tags": items});
                if let Some(m) = marker {
                    out["Marker"] = json!(m);
                }
                if let Some(nm) = next {
                    out["NextMarker"] = json!(nm);
                }
                ok(200, out)
            }
            Op::CreateAccessPoint => self.create_access_point(&parse_body(&req.body)?),
            Op::DescribeAccessPoints => self.describe_access_points(&q),
            Op::DeleteAccessPoint(id) => self.delete_access_point(&id),
            Op::TagResource(id) => {
                let tags = parse_tags(&parse_body(&req.body)?)?;
                if tags.is_empty() {
                    return Err(bad("Tags is required"));
                }
                self.retag(&id, |t| merge_tags(t, tags))?;
                ok(200, Value::Null)
            }
            Op::UntagResource(id) => {
                let keys: Vec<String> = q
                    .iter()
                    .filter(|(k, _)| k == "tagKeys")
                    .map(|(_, v)| v.clone())
                    .collect();
                if keys.is_empty() {
                    return Err(bad("tagKeys is required"));
                }
                self.retag(&id, |t| t.retain(|x| !keys.contains(&x.key)))?;
                ok(200, Value::Null)
            }
            Op::ListTagsForResource(id) => {
                let tags = if id.starts_with("fsap-") {
                    self.access_point(&id)?
                        .ok_or(EfsError::AccessPointNotFound(id))?
                        .tags
                } else {
                    self.file_system(&id)?
                        .ok_or(EfsError::FileSystemNotFound(id))?
                        .tags
                };
                ok(200, json!({"Tags": tags}))
            }
        }
    }

    fn create_file_system(&self, ctx: &RequestContext, b: &Value) -> R {
        let token = req_str(b, "CreationToken")?;
        if token.len() > 64 {
            return Err(bad("CreationToken must be 1 to 64 characters"));
        }
        let encrypted = match b.get("Encrypted") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(e)) => *e,
            Some(_) => return Err(bad("Encrypted must be a boolean")),
        };
        let kms_key = opt_str(b, "KmsKeyId")?;
        if kms_key.is_some() && !encrypted {
            return Err(bad("KmsKeyId requires Encrypted to be true"));
        }
        let perf = opt_str(b, "PerformanceMode")?.unwrap_or("generalPurpose");
        if !matches!(perf, "generalPurpose" | "maxIO") {
            return Err(bad(format!("invalid PerformanceMode {perf:?}")));
        }
        let thr = opt_str(b, "ThroughputMode")?.unwrap_or("bursting");
        if !matches!(thr, "bursting" | "provisioned" | "elastic") {
            return Err(bad(format!("invalid ThroughputMode {thr:?}")));
        }
        let provisioned = settings::provisioned_throughput(b, thr)?;
        let zone = opt_str(b, "AvailabilityZoneName")?.map(str::to_owned);
        if let Some(z) = &zone
            && !z.starts_with(&self.region)
        {
            return Err(EfsError::Validation(format!(
                "AvailabilityZoneName {z:?} is not a zone of region {}",
                self.region
            )));
        }
        let backup = match b.get("Backup") {
            None | Some(Value::Null) => zone.is_some(),
            Some(Value::Bool(v)) => *v,
            Some(_) => return Err(bad("Backup must be a boolean")),
        };
        let tags = parse_tags(b)?;
        let _g = self.guard();
        if let Some(f) = self
            .all_fs()?
            .into_iter()
            .find(|f| f.creation_token == token)
        {
            return Err(EfsError::FileSystemAlreadyExists(f.id, token.to_owned()));
        }
        if self.host.is_none() && self.store.is_shared() {
            return Err(bad(
                "this ferry server runs no agent (--no-agent), so no file system can live on its disk: create file systems through a replica that is a host",
            ));
        }
        let id = new_id("fs-");
        let created = self
            .backend
            .create(ctx, &id, encrypted, kms_key)
            .map_err(|e| match e.code.as_str() {
                "InternalServerError" => EfsError::Internal(e.message),
                // The KMS's reason (key missing, disabled, policy) for the caller.
                _ => bad(format!("{}: {}", e.code, e.message)),
            })?;
        let fs = FileSystem {
            arn: self.arn("file-system", &id),
            id: id.clone(),
            owner: self.account.clone(),
            creation_token: token.to_owned(),
            created: now(),
            encrypted,
            kms_key_arn: created.kms_key_arn,
            performance_mode: perf.to_owned(),
            throughput_mode: thr.to_owned(),
            tags,
            provisioned_throughput: provisioned,
            availability_zone: zone,
            policy: None,
            lifecycle_policies: Vec::new(),
            backup_status: if backup { "ENABLED" } else { "DISABLED" }.into(),
            overwrite_protection: "ENABLED".into(),
            host: self.host.clone(),
        };
        // The token is checked again where it counts: another replica may
        // have made a file system with it meanwhile.
        let stored = self.store.write(|w| {
            let all: Vec<(String, FileSystem)> = w.scan(FS_TABLE, "")?;
            if let Some((_, f)) = all.into_iter().find(|(_, f)| f.creation_token == token) {
                return Err(EfsError::FileSystemAlreadyExists(f.id, token.to_owned()));
            }
            w.put(FS_TABLE, &id, &fs)?;
            Ok(())
        });
        if let Err(e) = stored {
            let _ = self.backend.destroy(&id);
            return Err(e);
        }
        ok(201, fs.describe(self.backend.size(&id), 0))
    }

    fn describe_file_systems(&self, q: &[(String, String)]) -> R {
        let n = page_size(q, "MaxItems")?;
        let mut all = self.all_fs()?;
        if let Some(id) = qget(q, "FileSystemId") {
            all.retain(|f| f.id == id);
            if all.is_empty() {
                return Err(EfsError::FileSystemNotFound(id.to_owned()));
            }
        }
        if let Some(t) = qget(q, "CreationToken") {
            all.retain(|f| f.creation_token == t);
        }
        let marker = qget(q, "Marker");
        let (items, next) = page(all, marker, n, |f| f.id.as_str())?;
        let described = items
            .iter()
            .map(|f| self.describe_fs(f))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = json!({ "FileSystems": described });
        if let Some(m) = marker {
            out["Marker"] = json!(m);
        }
        if let Some(nm) = next {
            out["NextMarker"] = json!(nm);
        }
        ok(200, out)
    }

    fn delete_file_system(&self, id: &str) -> R {
        let _g = self.guard();
        if self.file_system(id)?.is_none() {
            return Err(EfsError::FileSystemNotFound(id.to_owned()));
        }
        if self.backend.in_use(id) {
            return Err(EfsError::FileSystemInUse(format!(
                "File system '{id}' is in use by a running task."
            )));
        }
        // As EFS: mount targets are deleted first, explicitly.
        if self.all_mt()?.iter().any(|m| m.file_system_id == id) {
            return Err(EfsError::FileSystemInUse(format!(
                "File system '{id}' has mount targets; delete them first."
            )));
        }
        // The backend re-checks under its own lock (a task may have
        // mounted it since the check above).
        self.backend
            .destroy(id)
            .map_err(|e| EfsError::Internal(format!("shredding {id}: {e}")))?;
        self.store.write(|w| {
            let aps: Vec<(String, AccessPoint)> = w.scan(AP_TABLE, "")?;
            for (a, ap) in &aps {
                if ap.file_system_id == id {
                    w.delete(AP_TABLE, a)?;
                }
            }
            w.delete(FS_TABLE, id)?;
            Ok::<_, EfsError>(())
        })?;
        ok(204, Value::Null)
    }

    fn create_access_point(&self, b: &Value) -> R {
        let token = req_str(b, "ClientToken")?;
        let fs_id = req_str(b, "FileSystemId")?;
        let posix_user = match b.get("PosixUser") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let num = |k: &str| {
                    p.get(k)
                        .and_then(Value::as_u64)
                        .filter(|n| *n <= 4_294_967_295)
                };
                if num("Uid").is_none() || num("Gid").is_none() {
                    return Err(bad("PosixUser needs Uid and Gid (0..=4294967295)"));
                }
                Some(p.clone())
            }
        };
        let mut root = match b.get("RootDirectory") {
            None | Some(Value::Null) => json!({"Path": "/"}),
            Some(r) if r.is_object() => r.clone(),
            Some(_) => return Err(bad("RootDirectory must be an object")),
        };
        if root.get("Path").is_none() {
            root["Path"] = json!("/");
        }
        check_path(
            root["Path"]
                .as_str()
                .ok_or_else(|| bad("RootDirectory.Path must be a string"))?,
        )?;
        if let Some(ci) = root.get("CreationInfo") {
            let num = |k: &str| ci.get(k).and_then(Value::as_u64).is_some();
            let perm = ci
                .get("Permissions")
                .and_then(Value::as_str)
                .is_some_and(|p| (3..=4).contains(&p.len()) && u32::from_str_radix(p, 8).is_ok());
            if !num("OwnerUid") || !num("OwnerGid") || !perm {
                return Err(bad(
                    "CreationInfo needs OwnerUid, OwnerGid and octal Permissions (e.g. \"0755\")",
                ));
            }
        }
        let tags = parse_tags(b)?;
        let _g = self.guard();
        let id = new_id("fsap-");
        let ap = AccessPoint {
            arn: self.arn("access-point", &id),
            id: id.clone(),
            owner: self.account.clone(),
            client_token: token.to_owned(),
            file_system_id: fs_id.to_owned(),
            posix_user,
            root_directory: root,
            tags,
        };
        // Checked in the transaction that records it (replicas).
        self.store.write(|w| {
            if w.get::<FileSystem>(FS_TABLE, fs_id)?.is_none() {
                return Err(EfsError::FileSystemNotFound(fs_id.to_owned()));
            }
            let all: Vec<(String, AccessPoint)> = w.scan(AP_TABLE, "")?;
            if let Some((_, a)) = all.into_iter().find(|(_, a)| a.client_token == token) {
                return Err(EfsError::AccessPointAlreadyExists(a.id, token.to_owned()));
            }
            w.put(AP_TABLE, &id, &ap)?;
            Ok(())
        })?;
        ok(200, ap.describe())
    }

    fn describe_access_points(&self, q: &[(String, String)]) -> R {
        let n = page_size(q, "MaxResults")?;
        let mut all = self.all_ap()?;
        match (qget(q, "AccessPointId"), qget(q, "FileSystemId")) {
            (Some(_), Some(_)) => {
                return Err(bad("give AccessPointId or FileSystemId, not both"));
            }
            (Some(id), None) => {
                all.retain(|a| a.id == id);
                if all.is_empty() {
                    return Err(EfsError::AccessPointNotFound(id.to_owned()));
                }
            }
            (None, Some(fs)) => {
                if self.file_system(fs)?.is_none() {
                    return Err(EfsError::FileSystemNotFound(fs.to_owned()));
                }
                all.retain(|a| a.file_system_id == fs);
            }
            (None, None) => {}
        }
        let (items, next) = page(all, qget(q, "NextToken"), n, |a| a.id.as_str())?;
        let mut out =
            json!({"AccessPoints": items.iter().map(AccessPoint::describe).collect::<Vec<_>>()});
        if let Some(t) = next {
            out["NextToken"] = json!(t);
        }
        ok(200, out)
    }

    fn delete_access_point(&self, id: &str) -> R {
        let _g = self.guard();
        if !self.store.delete(AP_TABLE, id)? {
            return Err(EfsError::AccessPointNotFound(id.to_owned()));
        }
        ok(204, Value::Null)
    }

    fn retag(&self, id: &str, f: impl FnOnce(&mut Vec<Tag>)) -> Result<(), EfsError> {
        let _g = self.guard();
        // Read and written in one transaction: no replica's change is lost.
        self.store.write(|w| {
            if id.starts_with("fsap-") {
                let mut a: AccessPoint = w
                    .get(AP_TABLE, id)?
                    .ok_or_else(|| EfsError::AccessPointNotFound(id.to_owned()))?;
                f(&mut a.tags);
                w.put(AP_TABLE, id, &a)?;
            } else {
                let mut fs: FileSystem = w
                    .get(FS_TABLE, id)?
                    .ok_or_else(|| EfsError::FileSystemNotFound(id.to_owned()))?;
                f(&mut fs.tags);
                w.put(FS_TABLE, id, &fs)?;
            }
            Ok(())
        })
    }
}

impl RestService for EfsService {
    fn matches(&self, path: &str) -> bool {
        path.starts_with(route::PREFIX)
    }

    fn call(&self, ctx: &RequestContext, req: &RestRequest) -> Result<RestResponse, AwsError> {
        let Some(op) = route::route(&req.method, &req.path) else {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("no EFS operation is served at {} {}", req.method, req.path),
            )
            .with_status(404));
        };
        Ok(self.dispatch(ctx, op, req)?)
    }

    fn operation(&self, method: &http::Method, path: &str) -> Option<RestOperation> {
        let op = route::route(method, path)?;
        Some(RestOperation {
            name: op.name(),
            resource: op.resource().map(|(kind, id)| self.arn(kind, id)),
        })
    }
}

#[cfg(test)]
mod tests;
