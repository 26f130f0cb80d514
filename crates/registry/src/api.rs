//! The ECR API (JSON 1.1, `AmazonEC2ContainerRegistry_V20150921.<Op>`),
//! shapes and errors as botocore's `ecr/2015-09-21` model has them. The
//! service authorizes itself: each operation is checked as `ecr:<Op>` on
//! the repository's ARN (GetAuthorizationToken on `*`).

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_proto::{AwsError, JsonService, RequestContext, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{ImageRecord, REPOS, RepoRecord, Tag};
use crate::{Registry, blob_error, keys, lifecycle, manifest, model, names, now};

/// The ECR JSON service.
pub struct EcrService {
    registry: Arc<Registry>,
}

impl EcrService {
    /// The service over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ImageId {
    #[serde(default)]
    image_digest: Option<String>,
    #[serde(default)]
    image_tag: Option<String>,
}

fn image_id_json(digest: Option<&str>, tag: Option<&str>) -> Value {
    let mut v = json!({});
    if let Some(d) = digest {
        v["imageDigest"] = json!(d);
    }
    if let Some(t) = tag {
        v["imageTag"] = json!(t);
    }
    v
}

fn invalid(msg: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterException", msg)
}

/// `maxResults`/`nextToken` pagination over an ordered list: the token is
/// the index to resume from.
fn page<T>(
    items: Vec<T>,
    next: Option<&str>,
    max: Option<i64>,
    limit: i64,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let start: usize = match next {
        Some(t) => t
            .parse()
            .map_err(|_| invalid("Invalid parameter at 'nextToken'"))?,
        None => 0,
    };
    let max = max.unwrap_or(limit);
    if !(1..=limit).contains(&max) {
        return Err(invalid(format!(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and {limit}'"
        )));
    }
    let max = max as usize;
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + max < total).then(|| (start + max).to_string());
    Ok((out, next))
}

impl Registry {
    fn repo_json(&self, r: &RepoRecord) -> Value {
        let mut enc = json!({"encryptionType": r.encryption_type});
        if r.customer_key {
            enc["kmsKey"] = json!(r.key_arn);
        }
        json!({
            "repositoryArn": r.arn,
            "registryId": self.account(),
            "repositoryName": r.name,
            "repositoryUri": names::repository_uri(self.region(), self.account(), &r.name),
            "createdAt": r.created_at,
            "imageTagMutability": r.mutability,
            "imageScanningConfiguration": {"scanOnPush": r.scan_on_push},
            "encryptionConfiguration": enc,
        })
    }

    fn check(&self, ctx: &RequestContext, op: &str, name: &str) -> Result<RepoRecord, AwsError> {
        names::check_repository_name(name)?;
        let arn = names::repository_arn(self.region(), self.account(), name);
        self.authorize(&ctx.caller, op, &arn)?;
        self.repository(name)
    }

    fn check_registry(&self, id: Option<&str>) -> Result<(), AwsError> {
        match id {
            Some(id) if id != self.account() => Err(invalid(format!(
                "registry {id} is not this account's registry ({})",
                self.account()
            ))),
            _ => Ok(()),
        }
    }

    /// The image an `imageId` names: by digest (and the tag must match,
    /// if given) or by tag.
    fn resolve(
        &self,
        repo: &str,
        id: &ImageId,
    ) -> Result<Result<ImageRecord, (&'static str, String)>, AwsError> {
        let found = match (&id.image_digest, &id.image_tag) {
            (None, None) => {
                return Ok(Err((
                    "MissingDigestAndTag",
                    "Missing image digest and tag".into(),
                )));
            }
            (Some(d), _) if ferry_blob::Digest::parse(d).is_err() => {
                return Ok(Err((
                    "InvalidImageDigest",
                    format!("Invalid image digest {d}"),
                )));
            }
            (Some(d), t) => {
                let img = self.find_image(repo, d)?;
                match (img, t) {
                    (Some(i), Some(t)) if !i.tags.contains(t) => {
                        return Ok(Err((
                            "ImageTagDoesNotMatchDigest",
                            "Invalid image tag for the specified digest".into(),
                        )));
                    }
                    (x, _) => x,
                }
            }
            (None, Some(t)) => self.find_image(repo, t)?,
        };
        Ok(found.ok_or(("ImageNotFound", "Requested image not found".into())))
    }

    fn image_json(&self, repo: &str, i: &ImageRecord) -> Value {
        let mut v = json!({
            "registryId": self.account(),
            "repositoryName": repo,
            "imageDigest": i.digest,
            "imageSizeInBytes": i.size,
            "imagePushedAt": i.pushed_at,
            "imageManifestMediaType": i.media_type,
        });
        if !i.tags.is_empty() {
            v["imageTags"] = json!(i.tags);
        }
        if let Some(a) = &i.artifact_media_type {
            v["artifactMediaType"] = json!(a);
        }
        v
    }
}

impl JsonService for EcrService {
    fn target_prefix(&self) -> &'static str {
        "AmazonEC2ContainerRegistry_V20150921"
    }

    fn authorizes_itself(&self) -> bool {
        true
    }

    fn call(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> Result<Value, AwsError> {
        let reg = &*self.registry;
        match operation {
            "CreateRepository" => create_repository(reg, ctx, body),
            "DescribeRepositories" => describe_repositories(reg, ctx, body),
            "DeleteRepository" => delete_repository(reg, ctx, body),
            "PutImageTagMutability" => put_image_tag_mutability(reg, ctx, body),
            "GetAuthorizationToken" => get_authorization_token(reg, ctx, body),
            "ListImages" => list_images(reg, ctx, body),
            "DescribeImages" => describe_images(reg, ctx, body),
            "BatchGetImage" => batch_get_image(reg, ctx, body),
            "BatchDeleteImage" => batch_delete_image(reg, ctx, body),
            "PutImage" => put_image(reg, ctx, body),
            "BatchCheckLayerAvailability" => batch_check_layer_availability(reg, ctx, body),
            "GetDownloadUrlForLayer" => get_download_url_for_layer(reg, ctx, body),
            "InitiateLayerUpload" => initiate_layer_upload(reg, ctx, body),
            "UploadLayerPart" => upload_layer_part(reg, ctx, body),
            "CompleteLayerUpload" => complete_layer_upload(reg, ctx, body),
            "PutLifecyclePolicy" => put_lifecycle_policy(reg, ctx, body),
            "GetLifecyclePolicy" => get_lifecycle_policy(reg, ctx, body),
            "DeleteLifecyclePolicy" => delete_lifecycle_policy(reg, ctx, body),
            "TagResource" => tag_resource(reg, ctx, body),
            "UntagResource" => untag_resource(reg, ctx, body),
            "ListTagsForResource" => list_tags_for_resource(reg, ctx, body),
            _ => Err(AwsError::unknown_operation(operation)),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepoReq {
    #[serde(default)]
    registry_id: Option<String>,
    repository_name: String,
}

fn create_repository(reg: &Registry, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Enc {
        encryption_type: String,
        #[serde(default)]
        kms_key: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Scan {
        #[serde(default)]
        scan_on_push: bool,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        #[serde(default)]
        tags: Vec<Tag>,
        #[serde(default)]
        image_tag_mutability: Option<String>,
        #[serde(default)]
        image_scanning_configuration: Option<Scan>,
        #[serde(default)]
        encryption_configuration: Option<Enc>,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    names::check_repository_name(&r.repository_name)?;
    let arn = names::repository_arn(reg.region(), reg.account(), &r.repository_name);
    reg.authorize(&ctx.caller, "CreateRepository", &arn)?;
    let mutability = r.image_tag_mutability.unwrap_or_else(|| "MUTABLE".into());
    if !matches!(mutability.as_str(), "MUTABLE" | "IMMUTABLE") {
        return Err(invalid(format!(
            "Invalid parameter at 'imageTagMutability': {mutability}"
        )));
    }
    let (enc_type, kms_key) = match r.encryption_configuration {
        None => ("AES256".to_owned(), None),
        Some(e) => match (e.encryption_type.as_str(), e.kms_key) {
            ("AES256", None) => ("AES256".to_owned(), None),
            ("AES256", Some(_)) => {
                return Err(invalid(
                    "Invalid parameter at 'encryptionConfiguration': kmsKey can only be specified with encryptionType KMS",
                ));
            }
            ("KMS", k) => ("KMS".to_owned(), k),
            (other, _) => {
                return Err(invalid(format!(
                    "Invalid parameter at 'encryptionType': {other}"
                )));
            }
        },
    };
    check_tags(&r.tags)?;
    if reg
        .store()
        .get::<RepoRecord>(REPOS, &r.repository_name)?
        .is_some()
    {
        return Err(already_exists(reg, &r.repository_name));
    }
    // ECR checks the caller may use the key and makes a grant for itself.
    let (key_arn, grant_id) = reg.grant_for_repository(ctx, kms_key.as_deref(), &arn)?;
    let rec = RepoRecord {
        name: r.repository_name.clone(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        arn,
        created_at: now(),
        mutability,
        encryption_type: enc_type,
        customer_key: kms_key.is_some(),
        key_arn,
        grant_id,
        scan_on_push: r
            .image_scanning_configuration
            .is_some_and(|s| s.scan_on_push),
        tags: r.tags,
        lifecycle_policy: None,
        lifecycle_evaluated_at: None,
    };
    let created = reg.store().write(|w| -> Result<bool, AwsError> {
        if w.get::<RepoRecord>(REPOS, &rec.name)?.is_some() {
            return Ok(false);
        }
        w.put(REPOS, &rec.name, &rec)?;
        Ok(true)
    })?;
    if !created {
        reg.retire_grant(&rec);
        return Err(already_exists(reg, &rec.name));
    }
    reg.create_repo_dir(&rec)?;
    Ok(json!({ "repository": reg.repo_json(&rec) }))
}

fn already_exists(reg: &Registry, name: &str) -> AwsError {
    AwsError::client(
        "RepositoryAlreadyExistsException",
        format!(
            "The repository with name '{name}' already exists in the registry with id '{}'",
            reg.account()
        ),
    )
}

fn check_tags(tags: &[Tag]) -> Result<(), AwsError> {
    if tags.len() > 200
        || tags
            .iter()
            .any(|t| t.key.is_empty() || t.key.len() > 128 || t.value.len() > 256)
    {
        return Err(invalid(
            "Invalid parameter at 'tags': keys must be 1-128 characters, values at most 256, at most 200 tags",
        ));
    }
    Ok(())
}

fn describe_repositories(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        #[serde(default)]
        repository_names: Option<Vec<String>>,
        #[serde(default)]
        next_token: Option<String>,
        #[serde(default)]
        max_results: Option<i64>,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    let repos = match &r.repository_names {
        Some(names) => {
            if r.max_results.is_some() {
                return Err(invalid("maxResults cannot be used with repositoryNames"));
            }
            let mut out = Vec::new();
            for n in names {
                out.push(reg.check(ctx, "DescribeRepositories", n)?);
            }
            out
        }
        None => reg
            .repositories()?
            .into_iter()
            .filter(|x| {
                reg.authorize(&ctx.caller, "DescribeRepositories", &x.arn)
                    .is_ok()
            })
            .collect(),
    };
    let (items, next) = page(repos, r.next_token.as_deref(), r.max_results, 1000)?;
    let mut out =
        json!({ "repositories": items.iter().map(|x| reg.repo_json(x)).collect::<Vec<_>>() });
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

fn delete_repository(reg: &Registry, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        #[serde(default)]
        force: bool,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    let repo = reg.check(ctx, "DeleteRepository", &r.repository_name)?;
    let images = reg.images(&repo.name)?;
    if !images.is_empty() && !r.force {
        return Err(AwsError::client(
            "RepositoryNotEmptyException",
            format!(
                "The repository with name '{}' in registry with id '{}' cannot be deleted because it still contains images",
                repo.name,
                reg.account()
            ),
        ));
    }
    reg.store().write(|w| -> Result<(), AwsError> {
        for i in &images {
            w.delete(model::IMAGES, &model::image_key(&repo.name, &i.digest))?;
        }
        w.delete(REPOS, &repo.name)?;
        Ok(())
    })?;
    // Every sealed blob goes with the directory; then ECR gives up its grant.
    reg.remove_repo_dir(&repo);
    reg.retire_grant(&repo);
    Ok(json!({ "repository": reg.repo_json(&repo) }))
}

fn put_image_tag_mutability(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        image_tag_mutability: String,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    reg.check(ctx, "PutImageTagMutability", &r.repository_name)?;
    if !matches!(r.image_tag_mutability.as_str(), "MUTABLE" | "IMMUTABLE") {
        return Err(invalid(format!(
            "Invalid parameter at 'imageTagMutability': {}",
            r.image_tag_mutability
        )));
    }
    update_repo(reg, &r.repository_name, |x| {
        x.mutability.clone_from(&r.image_tag_mutability)
    })?;
    Ok(json!({
        "registryId": reg.account(),
        "repositoryName": r.repository_name,
        "imageTagMutability": r.image_tag_mutability,
    }))
}

fn update_repo(
    reg: &Registry,
    name: &str,
    f: impl FnOnce(&mut RepoRecord),
) -> Result<RepoRecord, AwsError> {
    reg.store().write(|w| -> Result<RepoRecord, AwsError> {
        let mut rec: RepoRecord = w
            .get(REPOS, name)?
            .ok_or_else(|| reg.repo_not_found(name))?;
        f(&mut rec);
        w.put(REPOS, name, &rec)?;
        Ok(rec)
    })
}

fn get_authorization_token(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_ids: Option<Vec<String>>,
    }
    let r: Req = parse_request(body)?;
    for id in r.registry_ids.iter().flatten() {
        reg.check_registry(Some(id))?;
    }
    reg.authorize(&ctx.caller, "GetAuthorizationToken", "*")?;
    let login = reg.login(ctx)?;
    let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(4 + login.password.len()));
    let _ = raw.write_all(b"AWS:");
    let _ = raw.write_all(login.password.as_bytes());
    let token = zeroize::Zeroizing::new(B64.encode(&*raw));
    Ok(json!({ "authorizationData": [{
        "authorizationToken": &*token,
        "expiresAt": login.expires_at,
        "proxyEndpoint": reg.endpoint(),
    }]}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    tag_status: Option<String>,
}

fn status_filter(f: Option<&Filter>) -> Result<Option<String>, AwsError> {
    match f.and_then(|f| f.tag_status.clone()) {
        None => Ok(None),
        Some(s) if matches!(s.as_str(), "TAGGED" | "UNTAGGED" | "ANY") => Ok(Some(s)),
        Some(s) => Err(invalid(format!(
            "Invalid parameter at 'filter.tagStatus': {s}"
        ))),
    }
}

fn keep(status: Option<&str>, i: &ImageRecord) -> bool {
    match status {
        Some("TAGGED") => !i.tags.is_empty(),
        Some("UNTAGGED") => i.tags.is_empty(),
        _ => true,
    }
}

fn list_images(reg: &Registry, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        #[serde(default)]
        next_token: Option<String>,
        #[serde(default)]
        max_results: Option<i64>,
        #[serde(default)]
        filter: Option<Filter>,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    reg.check(ctx, "ListImages", &r.repository_name)?;
    let status = status_filter(r.filter.as_ref())?;
    let mut ids = Vec::new();
    for i in reg.images(&r.repository_name)? {
        if !keep(status.as_deref(), &i) {
            continue;
        }
        if i.tags.is_empty() {
            ids.push(image_id_json(Some(&i.digest), None));
        }
        for t in &i.tags {
            ids.push(image_id_json(Some(&i.digest), Some(t)));
        }
    }
    let (items, next) = page(ids, r.next_token.as_deref(), r.max_results, 1000)?;
    let mut out = json!({ "imageIds": items });
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

fn describe_images(reg: &Registry, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        #[serde(default)]
        image_ids: Option<Vec<ImageId>>,
        #[serde(default)]
        next_token: Option<String>,
        #[serde(default)]
        max_results: Option<i64>,
        #[serde(default)]
        filter: Option<Filter>,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    reg.check(ctx, "DescribeImages", &r.repository_name)?;
    let status = status_filter(r.filter.as_ref())?;
    let images = match &r.image_ids {
        Some(ids) => {
            let mut out = Vec::new();
            for id in ids {
                match reg.resolve(&r.repository_name, id)? {
                    Ok(i) => out.push(i),
                    Err((_, _)) => {
                        let what = match (&id.image_digest, &id.image_tag) {
                            (Some(d), _) => format!("imageDigest={d}"),
                            (None, Some(t)) => format!("imageTag={t}"),
                            (None, None) => String::new(),
                        };
                        return Err(reg.image_not_found(&r.repository_name, &what));
                    }
                }
            }
            out
        }
        None => reg
            .images(&r.repository_name)?
            .into_iter()
            .filter(|i| keep(status.as_deref(), i))
            .collect(),
    };
    let (items, next) = page(images, r.next_token.as_deref(), r.max_results, 1000)?;
    let mut out = json!({ "imageDetails": items.iter().map(|i| reg.image_json(&r.repository_name, i)).collect::<Vec<_>>() });
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

fn failure(id: &ImageId, code: &str, reason: &str) -> Value {
    json!({
        "imageId": image_id_json(id.image_digest.as_deref(), id.image_tag.as_deref()),
        "failureCode": code,
        "failureReason": reason,
    })
}

fn batch_get_image(reg: &Registry, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        image_ids: Vec<ImageId>,
        #[serde(default)]
        accepted_media_types: Option<Vec<String>>,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    let repo = reg.check(ctx, "BatchGetImage", &r.repository_name)?;
    if r.image_ids.is_empty() || r.image_ids.len() > 100 {
        return Err(invalid(
            "Invalid parameter at 'imageIds': between 1 and 100 image ids",
        ));
    }
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    for id in &r.image_ids {
        let img = match reg.resolve(&repo.name, id)? {
            Ok(i) => i,
            Err((code, reason)) => {
                failures.push(failure(id, code, &reason));
                continue;
            }
        };
        if let Some(accepted) = &r.accepted_media_types
            && !accepted.contains(&img.media_type)
        {
            failures.push(failure(
                id,
                "UnsupportedImageType",
                "Image manifest media type is not accepted",
            ));
            continue;
        }
        let bytes = match reg.manifest_bytes(&repo, &img) {
            Ok(b) => b,
            Err(e) if e.code == "KmsException" => {
                failures.push(failure(id, "KmsError", &e.message));
                continue;
            }
            Err(e) => return Err(e),
        };
        images.push(json!({
            "registryId": reg.account(),
            "repositoryName": repo.name,
            "imageId": image_id_json(Some(&img.digest), id.image_tag.as_deref()),
            "imageManifest": String::from_utf8_lossy(&bytes),
            "imageManifestMediaType": img.media_type,
        }));
    }
    Ok(json!({ "images": images, "failures": failures }))
}

fn batch_delete_image(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        image_ids: Vec<ImageId>,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    let repo = reg.check(ctx, "BatchDeleteImage", &r.repository_name)?;
    if r.image_ids.is_empty() || r.image_ids.len() > 100 {
        return Err(invalid(
            "Invalid parameter at 'imageIds': between 1 and 100 image ids",
        ));
    }
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for id in &r.image_ids {
        let img = match reg.resolve(&repo.name, id)? {
            Ok(i) => i,
            Err((code, reason)) => {
                failures.push(failure(id, code, &reason));
                continue;
            }
        };
        match (&id.image_digest, &id.image_tag) {
            // By tag alone: the tag goes; the image too if it was its last.
            (None, Some(t)) => {
                reg.untag(&repo, t)?;
                deleted.push(image_id_json(Some(&img.digest), Some(t)));
            }
            _ => {
                reg.delete_image(&repo, &img.digest)?;
                if img.tags.is_empty() {
                    deleted.push(image_id_json(Some(&img.digest), None));
                }
                for t in &img.tags {
                    deleted.push(image_id_json(Some(&img.digest), Some(t)));
                }
            }
        }
    }
    Ok(json!({ "imageIds": deleted, "failures": failures }))
}

fn put_image(reg: &Registry, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        image_manifest: String,
        #[serde(default)]
        image_manifest_media_type: Option<String>,
        #[serde(default)]
        image_tag: Option<String>,
        #[serde(default)]
        image_digest: Option<String>,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    reg.check(ctx, "PutImage", &r.repository_name)?;
    if let Some(mt) = &r.image_manifest_media_type
        && !manifest::supported(mt)
    {
        return Err(invalid(format!(
            "Invalid parameter at 'imageManifestMediaType': unsupported media type {mt}"
        )));
    }
    // ECR refuses to store the same manifest under the same tag again.
    if let Some(t) = &r.image_tag {
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                r.image_manifest.as_bytes()
            ))
        );
        if reg
            .find_image(&r.repository_name, t)?
            .is_some_and(|i| i.digest == digest)
        {
            return Err(AwsError::client(
                "ImageAlreadyExistsException",
                format!(
                    "Image with digest '{digest}' and tag '{t}' already exists in the repository with name '{}' in registry with id '{}'",
                    r.repository_name,
                    reg.account()
                ),
            ));
        }
    }
    let img = reg.put_manifest(
        &r.repository_name,
        r.image_manifest.as_bytes(),
        r.image_manifest_media_type.as_deref(),
        r.image_tag.as_deref(),
        r.image_digest.as_deref(),
    )?;
    Ok(json!({ "image": {
        "registryId": reg.account(),
        "repositoryName": r.repository_name,
        "imageId": image_id_json(Some(&img.digest), r.image_tag.as_deref()),
        "imageManifest": r.image_manifest,
        "imageManifestMediaType": img.media_type,
    }}))
}

fn batch_check_layer_availability(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        layer_digests: Vec<String>,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    let repo = reg.check(ctx, "BatchCheckLayerAvailability", &r.repository_name)?;
    if r.layer_digests.is_empty() || r.layer_digests.len() > 100 {
        return Err(invalid(
            "Invalid parameter at 'layerDigests': between 1 and 100 digests",
        ));
    }
    let blobs = reg.blobs(&repo)?;
    let (mut layers, mut failures) = (Vec::new(), Vec::new());
    for d in &r.layer_digests {
        let Ok(dg) = ferry_blob::Digest::parse(d) else {
            failures.push(json!({"layerDigest": d, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"}));
            continue;
        };
        if blobs.contains(&dg) {
            // The size from the manifests that name it (no unsealing).
            let size = layer_size(reg, &repo, d)?;
            let mut l = json!({"layerDigest": d, "layerAvailability": "AVAILABLE"});
            if let Some(s) = size {
                l["layerSize"] = json!(s);
            }
            layers.push(l);
        } else {
            failures.push(json!({"layerDigest": d, "failureCode": "MissingLayerDigest", "failureReason": "Requested layer digest is missing"}));
        }
    }
    Ok(json!({ "layers": layers, "failures": failures }))
}

/// A layer's size as a manifest of the repository declares it.
fn layer_size(reg: &Registry, repo: &RepoRecord, digest: &str) -> Result<Option<u64>, AwsError> {
    for img in reg.images(&repo.name)? {
        if !img.refs.iter().any(|r| r == digest) {
            continue;
        }
        let bytes = reg.manifest_bytes(repo, &img)?;
        if let Some(p) = manifest::parse(&bytes, Some(&img.media_type))
            && let Some((_, s)) = p.blobs.iter().find(|(d, _)| d == digest)
        {
            return Ok(Some(*s));
        }
    }
    Ok(None)
}

fn get_download_url_for_layer(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        layer_digest: String,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    let repo = reg.check(ctx, "GetDownloadUrlForLayer", &r.repository_name)?;
    let d = ferry_blob::Digest::parse(&r.layer_digest).map_err(|_| {
        invalid(format!(
            "Invalid parameter at 'layerDigest': {}",
            r.layer_digest
        ))
    })?;
    if !reg.blobs(&repo)?.contains(&d) {
        return Err(AwsError::client(
            "LayersNotFoundException",
            format!("The specified layer {d} does not exist"),
        ));
    }
    // The distribution API's blob URL; it takes the same login (Basic AWS:token).
    Ok(json!({
        "downloadUrl": format!("{}/v2/{}/blobs/{d}", reg.endpoint(), repo.name),
        "layerDigest": d.as_str(),
    }))
}

fn initiate_layer_upload(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: RepoReq = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    let repo = reg.check(ctx, "InitiateLayerUpload", &r.repository_name)?;
    let up = reg
        .blobs(&repo)?
        .create(&reg.repo_keys(&repo), &keys::context(&repo.arn))
        .map_err(blob_error)?;
    let id = reg.uploads.start(&repo.name, up);
    Ok(json!({ "uploadId": id, "partSize": 10 * 1024 * 1024 }))
}

fn upload_layer_part(reg: &Registry, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        upload_id: String,
        part_first_byte: u64,
        part_last_byte: u64,
        layer_part_blob: String,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    reg.check(ctx, "UploadLayerPart", &r.repository_name)?;
    let s = reg
        .uploads
        .get(&r.repository_name, &r.upload_id)
        .ok_or_else(|| upload_not_found(&r.upload_id))?;
    let data = B64
        .decode(&r.layer_part_blob)
        .map_err(|_| invalid("Invalid parameter at 'layerPartBlob': not base64"))?;
    let mut s = s
        .lock()
        .map_err(|_| AwsError::server("ServerException", "upload lock poisoned"))?;
    if r.part_first_byte != s.offset || r.part_last_byte + 1 != s.offset + data.len() as u64 {
        return Err(AwsError::client(
            "InvalidLayerPartException",
            format!(
                "The part must start at byte {} and end at its last byte",
                s.offset
            ),
        ));
    }
    let up = s
        .upload
        .as_mut()
        .ok_or_else(|| upload_not_found(&r.upload_id))?;
    up.write_all(&data).map_err(|e| {
        AwsError::server(
            "ServerException",
            format!("writing the layer part failed: {e}"),
        )
    })?;
    s.offset += data.len() as u64;
    s.touched = std::time::Instant::now();
    Ok(json!({
        "registryId": reg.account(),
        "repositoryName": r.repository_name,
        "uploadId": r.upload_id,
        "lastByteReceived": s.offset.saturating_sub(1),
    }))
}

fn upload_not_found(id: &str) -> AwsError {
    AwsError::client(
        "UploadNotFoundException",
        format!("The upload {id} could not be found"),
    )
}

fn complete_layer_upload(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        upload_id: String,
        layer_digests: Vec<String>,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    reg.check(ctx, "CompleteLayerUpload", &r.repository_name)?;
    let [digest] = r.layer_digests.as_slice() else {
        return Err(invalid(
            "Invalid parameter at 'layerDigests': exactly one digest",
        ));
    };
    let d = ferry_blob::Digest::parse(digest).map_err(|_| {
        AwsError::client("InvalidLayerException", format!("invalid digest {digest}"))
    })?;
    let s = reg
        .uploads
        .get(&r.repository_name, &r.upload_id)
        .ok_or_else(|| upload_not_found(&r.upload_id))?;
    reg.uploads.remove(&r.upload_id);
    let up = s
        .lock()
        .map_err(|_| AwsError::server("ServerException", "upload lock poisoned"))?
        .upload
        .take()
        .ok_or_else(|| upload_not_found(&r.upload_id))?;
    if up.size() == 0 {
        return Err(AwsError::client(
            "EmptyUploadException",
            "The upload is empty",
        ));
    }
    up.commit(Some(&d)).map_err(blob_error)?;
    Ok(json!({
        "registryId": reg.account(),
        "repositoryName": r.repository_name,
        "uploadId": r.upload_id,
        "layerDigest": digest,
    }))
}

fn put_lifecycle_policy(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        #[serde(default)]
        registry_id: Option<String>,
        repository_name: String,
        lifecycle_policy_text: String,
    }
    let r: Req = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    reg.check(ctx, "PutLifecyclePolicy", &r.repository_name)?;
    lifecycle::Policy::parse(&r.lifecycle_policy_text)?;
    update_repo(reg, &r.repository_name, |x| {
        x.lifecycle_policy = Some(r.lifecycle_policy_text.clone())
    })?;
    // ECR applies a policy within 24 hours; ferry at once.
    reg.apply_lifecycle(&r.repository_name)?;
    Ok(json!({
        "registryId": reg.account(),
        "repositoryName": r.repository_name,
        "lifecyclePolicyText": r.lifecycle_policy_text,
    }))
}

fn policy_not_found(reg: &Registry, name: &str) -> AwsError {
    AwsError::client(
        "LifecyclePolicyNotFoundException",
        format!(
            "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{}'",
            reg.account()
        ),
    )
}

fn get_lifecycle_policy(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: RepoReq = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    let repo = reg.check(ctx, "GetLifecyclePolicy", &r.repository_name)?;
    let text = repo
        .lifecycle_policy
        .clone()
        .ok_or_else(|| policy_not_found(reg, &repo.name))?;
    let mut out = json!({
        "registryId": reg.account(),
        "repositoryName": repo.name,
        "lifecyclePolicyText": text,
    });
    if let Some(t) = repo.lifecycle_evaluated_at {
        out["lastEvaluatedAt"] = json!(t);
    }
    Ok(out)
}

fn delete_lifecycle_policy(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: RepoReq = parse_request(body)?;
    reg.check_registry(r.registry_id.as_deref())?;
    let repo = reg.check(ctx, "DeleteLifecyclePolicy", &r.repository_name)?;
    let text = repo
        .lifecycle_policy
        .clone()
        .ok_or_else(|| policy_not_found(reg, &repo.name))?;
    let rec = update_repo(reg, &repo.name, |x| x.lifecycle_policy = None)?;
    let mut out = json!({
        "registryId": reg.account(),
        "repositoryName": repo.name,
        "lifecyclePolicyText": text,
    });
    if let Some(t) = rec.lifecycle_evaluated_at {
        out["lastEvaluatedAt"] = json!(t);
    }
    Ok(out)
}

fn repo_of_arn(
    reg: &Registry,
    ctx: &RequestContext,
    op: &str,
    arn: &str,
) -> Result<RepoRecord, AwsError> {
    let name = names::name_of_arn(arn, reg.region(), reg.account()).ok_or_else(|| {
        invalid(format!(
            "Invalid parameter at 'resourceArn': {arn} is not a repository of this registry"
        ))
    })?;
    reg.check(ctx, op, name)
}

fn tag_resource(reg: &Registry, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        resource_arn: String,
        tags: Vec<Tag>,
    }
    let r: Req = parse_request(body)?;
    let repo = repo_of_arn(reg, ctx, "TagResource", &r.resource_arn)?;
    check_tags(&r.tags)?;
    let mut merged = repo.tags.clone();
    for t in r.tags {
        merged.retain(|x| x.key != t.key);
        merged.push(t);
    }
    check_tags(&merged)?;
    update_repo(reg, &repo.name, |x| x.tags = merged)?;
    Ok(json!({}))
}

fn untag_resource(reg: &Registry, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        resource_arn: String,
        tag_keys: Vec<String>,
    }
    let r: Req = parse_request(body)?;
    let repo = repo_of_arn(reg, ctx, "UntagResource", &r.resource_arn)?;
    update_repo(reg, &repo.name, |x| {
        x.tags.retain(|t| !r.tag_keys.contains(&t.key))
    })?;
    Ok(json!({}))
}

fn list_tags_for_resource(
    reg: &Registry,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        resource_arn: String,
    }
    let r: Req = parse_request(body)?;
    let repo = repo_of_arn(reg, ctx, "ListTagsForResource", &r.resource_arn)?;
    Ok(json!({ "tags": repo.tags }))
}
