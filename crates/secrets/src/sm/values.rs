//! Versions and their values: GetSecretValue, PutSecretValue,
//! ListSecretVersionIds, UpdateSecretVersionStage, and the one way a new
//! version is made ([`add_version`], also used by CreateSecret and
//! UpdateSecret).

use ferry_proto::{AwsError, RequestContext, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use super::errors;
use super::model::{
    AWSCURRENT, SECRETS, SecretRecord, StoredValue, VALUES, ValueKind, VersionMeta, value_key,
};
use super::{SecretValue, SecretsManager};
use crate::seal::Context;
use crate::util::{b64, check_count, check_len, check_range, day_of, now, page, token, unb64};

/// A value read, with what GetSecretValue also returns about its version.
pub(crate) struct Fetched {
    pub value: SecretValue,
    pub stages: Vec<String>,
    pub created: f64,
}

/// The encryption context of a version, as AWS Secrets Manager uses it.
pub(crate) fn context(arn: &str, version_id: &str) -> Context {
    [
        ("SecretARN".to_owned(), arn.to_owned()),
        ("SecretVersionId".to_owned(), version_id.to_owned()),
    ]
    .into()
}

/// The one read path (the JSON handler and the in-process API).
pub(crate) fn fetch(
    sm: &SecretsManager,
    ctx: &RequestContext,
    secret_id: &str,
    version_id: Option<&str>,
    version_stage: Option<&str>,
) -> Result<Fetched, AwsError> {
    if let Some(v) = version_id {
        check_len("versionId", v, 32, 64)?;
    }
    if let Some(s) = version_stage {
        check_len("versionStage", s, 1, 256)?;
    }
    let mut keys = Vec::new();
    if let Some(v) = version_id {
        keys.push(("secretsmanager:VersionId", vec![v.to_owned()]));
    }
    if let Some(s) = version_stage {
        keys.push(("secretsmanager:VersionStage", vec![s.to_owned()]));
    }
    let rec = sm.resolve(ctx, secret_id, "secretsmanager:GetSecretValue", &keys)?;
    if rec.deleted.is_some() {
        return Err(errors::marked_for_deletion());
    }
    let (vid, meta) = match (version_id, version_stage) {
        (Some(v), stage) => {
            let meta = rec.versions.get(v).ok_or_else(|| errors::no_version(v))?;
            if let Some(s) = stage
                && !meta.stages.iter().any(|x| x == s)
            {
                return Err(errors::no_version(v));
            }
            (v.to_owned(), meta)
        }
        (None, stage) => {
            let stage = stage.unwrap_or(AWSCURRENT);
            let (v, meta) = rec
                .with_stage(stage)
                .ok_or_else(|| errors::no_stage(stage))?;
            (v.clone(), meta)
        }
    };
    let stored: StoredValue = sm
        .store
        .get(VALUES, &value_key(&rec.arn, &vid))
        .map_err(errors::store)?
        // Removed since the record was read (pruned or deleted).
        .ok_or_else(|| errors::no_version(&vid))?;
    let mut plain = sm
        .vault
        .open(
            ctx,
            &stored.sealed,
            &context(&rec.arn, &vid),
            meta.kind.label(),
        )
        .map_err(errors::decryption)?;
    let (string, binary) = match meta.kind {
        ValueKind::Binary => (None, Some(plain)),
        ValueKind::String => {
            let bytes = std::mem::take(&mut *plain);
            match String::from_utf8(bytes) {
                Ok(s) => (Some(Zeroizing::new(s)), None),
                Err(e) => {
                    e.into_bytes().zeroize();
                    return Err(errors::decryption(crate::seal::SealError::Malformed));
                }
            }
        }
    };
    touch(sm, &rec);
    Ok(Fetched {
        stages: meta.stages.clone(),
        created: meta.created,
        value: SecretValue {
            arn: rec.arn.clone(),
            name: rec.name.clone(),
            version_id: vid,
            string,
            binary,
        },
    })
}

/// Records the day of this read (`LastAccessedDate`), at most one write
/// per secret and day. Best effort: a failed write does not fail the read.
fn touch(sm: &SecretsManager, rec: &SecretRecord) {
    let today = day_of(now());
    if rec.last_accessed == Some(today) {
        return;
    }
    let r = sm.store.write(|w| {
        if let Some(mut cur) = w.get::<SecretRecord>(SECRETS, &rec.name)?
            && cur.arn == rec.arn
            && cur.last_accessed != Some(today)
        {
            cur.last_accessed = Some(today);
            w.put(SECRETS, &cur.name, &cur)?;
        }
        Ok::<_, ferry_store::StoreError>(())
    });
    if let Err(e) = r {
        tracing::warn!(error = %e, "recording a secret's last access failed");
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetReq {
    secret_id: String,
    version_id: Option<String>,
    version_stage: Option<String>,
}

pub(crate) fn get(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: GetReq = parse_request(body)?;
    let f = fetch(
        sm,
        ctx,
        &r.secret_id,
        r.version_id.as_deref(),
        r.version_stage.as_deref(),
    )?;
    let mut out = json!({
        "ARN": f.value.arn,
        "Name": f.value.name,
        "VersionId": f.value.version_id,
        "VersionStages": f.stages,
        "CreatedDate": f.created,
    });
    // The value goes into the response document; the JSON layer cannot
    // wipe it, but nothing keeps it after the response is written.
    if let Some(s) = &f.value.string {
        out["SecretString"] = Value::String(s.as_str().to_owned());
    }
    if let Some(b) = &f.value.binary {
        out["SecretBinary"] = Value::String(b64(b));
    }
    Ok(out)
}

/// A new version's value, as parsed from `SecretString`/`SecretBinary`.
pub(crate) struct NewValue {
    pub kind: ValueKind,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl NewValue {
    /// The value of a request with both members optional: `None` if
    /// neither is set; both is an error.
    pub(crate) fn from_members(
        string: Option<String>,
        binary: Option<String>,
    ) -> Result<Option<Self>, AwsError> {
        let string = string.map(Zeroizing::new);
        let binary = binary.map(Zeroizing::new);
        match (string, binary) {
            (Some(_), Some(_)) => Err(errors::invalid_parameter(
                "You can't specify both a binary secret value and a string secret value in the same secret.",
            )),
            (Some(s), None) => {
                check_len("secretString", &s, 1, 65_536)?;
                Ok(Some(Self {
                    kind: ValueKind::String,
                    bytes: Zeroizing::new(s.as_bytes().to_vec()),
                }))
            }
            (None, Some(b)) => {
                let bytes = Zeroizing::new(unb64("SecretBinary", &b)?);
                check_count("secretBinary", bytes.len(), 1, 65_536)?;
                Ok(Some(Self {
                    kind: ValueKind::Binary,
                    bytes,
                }))
            }
            (None, None) => Ok(None),
        }
    }
}

/// Checks a `ClientRequestToken` (it becomes the version id).
pub(crate) fn check_token(token: Option<&str>) -> Result<(), AwsError> {
    match token {
        Some(t) => check_len("clientRequestToken", t, 32, 64),
        None => Ok(()),
    }
}

/// Seals version `version_id` of secret `arn` as the caller, under
/// `kms_key_id` or the AWS-managed `aws/secretsmanager` key: the sealed
/// value and the ARN of the key that sealed it.
pub(crate) fn seal_version(
    sm: &SecretsManager,
    ctx: &RequestContext,
    arn: &str,
    kms_key_id: Option<&str>,
    version_id: &str,
    value: &NewValue,
) -> Result<(Vec<u8>, String), AwsError> {
    let key = match kms_key_id {
        Some(k) => k.to_owned(),
        None => sm.vault.default_key_arn().map_err(errors::encryption)?,
    };
    sm.vault
        .seal(
            ctx,
            &key,
            &context(arn, version_id),
            value.kind.label(),
            &value.bytes,
        )
        .map_err(errors::encryption)
}

/// What [`add_version`] did.
pub(crate) struct Added {
    pub version_id: String,
    pub stages: Vec<String>,
}

/// Adds a version to `rec` (as read and authorized by the caller): seals
/// `value` under the secret's key as the caller, then, in one
/// transaction, records it with `stages` (moving them from other
/// versions; AWSCURRENT's previous holder becomes AWSPREVIOUS) and prunes
/// old unlabelled versions.
///
/// `token` is the version id. A version with that id already holding the
/// same value is not an error (a retried request): nothing changes. With
/// another value it is `ResourceExistsException`.
pub(crate) fn add_version(
    sm: &SecretsManager,
    ctx: &RequestContext,
    rec: &SecretRecord,
    token: Option<&str>,
    value: &NewValue,
    stages: Vec<String>,
    kms_key_id: Option<&str>,
) -> Result<Added, AwsError> {
    let version_id = token.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    if let Some(meta) = rec.versions.get(&version_id) {
        return same_value(sm, ctx, rec, &version_id, meta, value).map(|()| Added {
            version_id,
            stages: meta.stages.clone(),
        });
    }
    let (sealed, key_arn) = seal_version(
        sm,
        ctx,
        &rec.arn,
        kms_key_id.or(rec.kms_key_id.as_deref()),
        &version_id,
        value,
    )?;
    let t = now();
    let out_stages = sm.store.write(|w| {
        let mut cur = super::current(w, rec)?;
        if cur.deleted.is_some() {
            return Err(errors::marked_for_deletion());
        }
        if cur.versions.contains_key(&version_id) {
            // A concurrent retry of the same request got here first.
            return Err(errors::version_exists());
        }
        cur.versions.insert(
            version_id.clone(),
            VersionMeta {
                created: t,
                stages: Vec::new(),
                kind: value.kind,
                key_arn,
            },
        );
        cur.move_stages(&version_id, &stages);
        cur.last_changed = t;
        for gone in cur.prune() {
            w.delete(VALUES, &value_key(&cur.arn, &gone))
                .map_err(errors::store)?;
        }
        w.put(
            VALUES,
            &value_key(&cur.arn, &version_id),
            &StoredValue { sealed },
        )
        .map_err(errors::store)?;
        w.put(SECRETS, &cur.name, &cur).map_err(errors::store)?;
        Ok(cur
            .versions
            .get(&version_id)
            .map(|v| v.stages.clone())
            .unwrap_or_default())
    })?;
    Ok(Added {
        version_id,
        stages: out_stages,
    })
}

/// Whether the existing version holds `value` (opening it as the caller).
fn same_value(
    sm: &SecretsManager,
    ctx: &RequestContext,
    rec: &SecretRecord,
    version_id: &str,
    meta: &VersionMeta,
    value: &NewValue,
) -> Result<(), AwsError> {
    let stored: StoredValue = sm
        .store
        .get(VALUES, &value_key(&rec.arn, version_id))
        .map_err(errors::store)?
        .ok_or_else(errors::version_exists)?;
    let old = sm
        .vault
        .open(
            ctx,
            &stored.sealed,
            &context(&rec.arn, version_id),
            meta.kind.label(),
        )
        .map_err(errors::decryption)?;
    if meta.kind == value.kind && old.as_slice() == value.bytes.as_slice() {
        Ok(())
    } else {
        Err(errors::version_exists())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutReq {
    secret_id: String,
    client_request_token: Option<String>,
    secret_string: Option<String>,
    secret_binary: Option<String>,
    version_stages: Option<Vec<String>>,
    rotation_token: Option<String>,
}

pub(crate) fn put(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: PutReq = parse_request(body)?;
    check_token(r.client_request_token.as_deref())?;
    if r.rotation_token.is_some() {
        return Err(errors::invalid_parameter(
            "RotationToken is only valid in a rotation function; ferry does not rotate secrets.",
        ));
    }
    let stages = check_stages(r.version_stages)?;
    let value = NewValue::from_members(r.secret_string, r.secret_binary)?.ok_or_else(|| {
        errors::invalid_request("You must provide either SecretString or SecretBinary.")
    })?;
    let rec = sm.resolve(ctx, &r.secret_id, "secretsmanager:PutSecretValue", &[])?;
    if rec.deleted.is_some() {
        return Err(errors::marked_for_deletion());
    }
    let added = add_version(
        sm,
        ctx,
        &rec,
        r.client_request_token.as_deref(),
        &value,
        stages,
        None,
    )?;
    Ok(json!({
        "ARN": rec.arn,
        "Name": rec.name,
        "VersionId": added.version_id,
        "VersionStages": added.stages,
    }))
}

/// `VersionStages` (1..=20 labels of 1..=256 characters); AWSCURRENT when
/// absent.
fn check_stages(stages: Option<Vec<String>>) -> Result<Vec<String>, AwsError> {
    let Some(stages) = stages else {
        return Ok(vec![AWSCURRENT.to_owned()]);
    };
    if stages.is_empty() || stages.len() > 20 {
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'versionStages' failed to satisfy constraint: \
             Member must have length less than or equal to 20 and greater than or equal to 1",
        ));
    }
    for s in &stages {
        check_len("versionStages.member", s, 1, 256)?;
    }
    let mut out: Vec<String> = Vec::new();
    for s in stages {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListVersionsReq {
    secret_id: String,
    max_results: Option<i64>,
    next_token: Option<String>,
    include_deprecated: Option<bool>,
}

pub(crate) fn list_versions(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: ListVersionsReq = parse_request(body)?;
    if let Some(n) = r.max_results {
        check_range("maxResults", n, 1, 100)?;
    }
    let rec = sm.resolve(
        ctx,
        &r.secret_id,
        "secretsmanager:ListSecretVersionIds",
        &[],
    )?;
    if rec.deleted.is_some() {
        return Err(errors::marked_for_deletion());
    }
    let deprecated = r.include_deprecated.unwrap_or(false);
    let mut versions: Vec<(&String, &VersionMeta)> = rec
        .versions
        .iter()
        .filter(|(_, v)| deprecated || !v.stages.is_empty())
        .collect();
    versions.sort_by(|a, b| b.1.created.total_cmp(&a.1.created).then(a.0.cmp(b.0)));
    let start = token::parse(r.next_token.as_deref(), errors::bad_token)?;
    let limit = r.max_results.map_or(100, |n| n as usize);
    let (items, next) = page(versions, start, limit);
    let list: Vec<Value> = items
        .into_iter()
        .map(|(id, v)| {
            let mut e = json!({
                "VersionId": id,
                "CreatedDate": v.created,
                "KmsKeyIds": [v.key_arn],
            });
            if !v.stages.is_empty() {
                e["VersionStages"] = json!(v.stages);
            }
            if let Some(d) = rec.last_accessed {
                e["LastAccessedDate"] = json!(d);
            }
            e
        })
        .collect();
    let mut out = json!({"ARN": rec.arn, "Name": rec.name, "Versions": list});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStageReq {
    secret_id: String,
    version_stage: String,
    remove_from_version_id: Option<String>,
    move_to_version_id: Option<String>,
}

pub(crate) fn update_stage(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: UpdateStageReq = parse_request(body)?;
    check_len("versionStage", &r.version_stage, 1, 256)?;
    let rec = sm.resolve(
        ctx,
        &r.secret_id,
        "secretsmanager:UpdateSecretVersionStage",
        &[("secretsmanager:VersionStage", vec![r.version_stage.clone()])],
    )?;
    if rec.deleted.is_some() {
        return Err(errors::marked_for_deletion());
    }
    let stage = r.version_stage;
    sm.store.write(|w| {
        let mut cur = super::current(w, &rec)?;
        let holder = cur.with_stage(&stage).map(|(k, _)| k.clone());
        for id in [&r.remove_from_version_id, &r.move_to_version_id]
            .into_iter()
            .flatten()
        {
            if !cur.versions.contains_key(id) {
                return Err(errors::no_version(id));
            }
        }
        if let Some(h) = &holder
            && r.remove_from_version_id.as_ref() != Some(h)
            && r.move_to_version_id.as_ref() != Some(h)
        {
            return Err(errors::invalid_parameter(format!(
                "The staging label {stage} is currently attached to version {h}. You must specify \
                 that version in RemoveFromVersionId."
            )));
        }
        if let Some(from) = &r.remove_from_version_id {
            if holder.as_ref() != Some(from) {
                return Err(errors::invalid_parameter(format!(
                    "The staging label {stage} is not attached to version {from}."
                )));
            }
            if stage == AWSCURRENT && r.move_to_version_id.is_none() {
                return Err(errors::invalid_parameter(
                    "You can't remove the AWSCURRENT staging label without moving it to another version.",
                ));
            }
            if let Some(v) = cur.versions.get_mut(from) {
                v.stages.retain(|s| *s != stage);
            }
        }
        if let Some(to) = &r.move_to_version_id {
            // Put the label back where it was so that move_stages sees the
            // previous holder (AWSCURRENT's becomes AWSPREVIOUS).
            if let Some(from) = &holder
                && let Some(v) = cur.versions.get_mut(from)
                && !v.stages.contains(&stage)
            {
                v.stages.push(stage.clone());
            }
            cur.move_stages(to, std::slice::from_ref(&stage));
        }
        cur.last_changed = now();
        w.put(SECRETS, &cur.name, &cur).map_err(errors::store)?;
        Ok(json!({"ARN": cur.arn, "Name": cur.name}))
    })
}
