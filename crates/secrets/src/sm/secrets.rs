//! Secrets themselves: CreateSecret, UpdateSecret, DescribeSecret,
//! ListSecrets, DeleteSecret, RestoreSecret.

use std::collections::BTreeMap;

use ferry_proto::authz::{Check, authorize};
use ferry_proto::{AwsError, RequestContext, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};

use super::SecretsManager;
use super::errors;
use super::model::{
    AWSCURRENT, SECRETS, SecretRecord, StoredValue, VALUES, VersionMeta, check_name, new_arn,
    value_key,
};
use super::values::{NewValue, add_version, check_token, seal_version};
use crate::util::{Tag, check_len, check_range, check_tags, now, page, token};

const DAY: f64 = 86_400.0;

/// Refuses what ferry does not do: replication to other regions and
/// managed external secrets.
fn refuse_unsupported(replicas: Option<&Value>, kind: Option<&str>) -> Result<(), AwsError> {
    if replicas.is_some_and(|r| r.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(errors::invalid_parameter(
            "Replication to other regions is not supported: ferry serves one region.",
        ));
    }
    if kind.is_some_and(|k| !k.is_empty()) {
        return Err(errors::invalid_parameter(
            "Managed external secrets (Type) are not supported.",
        ));
    }
    Ok(())
}

/// `KmsKeyId` as given: an empty string means the default key.
fn key_param(k: Option<String>) -> Result<Option<String>, AwsError> {
    match k {
        Some(k) => {
            check_len("kmsKeyId", &k, 0, 2048)?;
            Ok((!k.is_empty()).then_some(k))
        }
        None => Ok(None),
    }
}

fn check_description(d: Option<&str>) -> Result<(), AwsError> {
    d.map_or(Ok(()), |d| check_len("description", d, 0, 2048))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateReq {
    name: String,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    tags: Option<Vec<Tag>>,
    add_replica_regions: Option<Value>,
    #[allow(dead_code, reason = "accepted; no replicas to overwrite")]
    force_overwrite_replica_secret: Option<bool>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

pub(crate) fn create(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: CreateReq = parse_request(body)?;
    check_name(&r.name)?;
    check_token(r.client_request_token.as_deref())?;
    check_description(r.description.as_deref())?;
    let kms_key_id = key_param(r.kms_key_id)?;
    let tags = r.tags.unwrap_or_default();
    check_tags(&tags, "InvalidParameterException")?;
    refuse_unsupported(r.add_replica_regions.as_ref(), r.kind.as_deref())?;
    let value = NewValue::from_members(r.secret_string, r.secret_binary)?;

    let mut keys: Vec<(String, Vec<String>)> = vec![
        ("secretsmanager:Name".into(), vec![r.name.clone()]),
        (
            "aws:TagKeys".into(),
            tags.iter().map(|t| t.key.clone()).collect(),
        ),
    ];
    if let Some(d) = &r.description {
        keys.push(("secretsmanager:Description".into(), vec![d.clone()]));
    }
    if let Some(k) = &kms_key_id {
        keys.push(("secretsmanager:KmsKeyId".into(), vec![k.clone()]));
    }
    for t in &tags {
        keys.push((format!("aws:RequestTag/{}", t.key), vec![t.value.clone()]));
    }
    let keys: Vec<(&str, Vec<String>)> =
        keys.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();

    if let Some(existing) = sm.find(&r.name)? {
        sm.authorize(ctx, "secretsmanager:CreateSecret", &existing, &keys)?;
        return already(
            sm,
            ctx,
            &existing,
            r.client_request_token.as_deref(),
            value.as_ref(),
        );
    }
    let arn = new_arn(&sm.arn_prefix, &r.name);
    let mut check = Check::new("secretsmanager:CreateSecret", &arn);
    for (k, v) in &keys {
        check = check.key(k, v.clone());
    }
    authorize(&ctx.caller, &check, None).map_err(|d| d.into_error("AccessDeniedException"))?;

    let t = now();
    let mut rec = SecretRecord {
        arn,
        name: r.name,
        description: r.description,
        kms_key_id,
        tags,
        created: t,
        last_changed: t,
        last_accessed: None,
        deleted: None,
        delete_after: None,
        policy: None,
        versions: BTreeMap::new(),
    };
    let mut sealed_value = None;
    if let Some(v) = &value {
        let version_id = r
            .client_request_token
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let (sealed, key_arn) =
            seal_version(sm, ctx, &rec.arn, rec.kms_key_id.as_deref(), &version_id, v)?;
        rec.versions.insert(
            version_id.clone(),
            VersionMeta {
                created: t,
                stages: vec![AWSCURRENT.to_owned()],
                kind: v.kind,
                key_arn,
            },
        );
        sealed_value = Some((version_id, sealed));
    }
    sm.store.write(|w| {
        if let Some(cur) = w
            .get::<SecretRecord>(SECRETS, &rec.name)
            .map_err(errors::store)?
        {
            // Created concurrently.
            return Err(if cur.deleted.is_some() {
                scheduled()
            } else {
                errors::exists(&rec.name)
            });
        }
        if let Some((v, sealed)) = &sealed_value {
            w.put(
                VALUES,
                &value_key(&rec.arn, v),
                &StoredValue {
                    sealed: sealed.clone(),
                },
            )
            .map_err(errors::store)?;
        }
        w.put(SECRETS, &rec.name, &rec).map_err(errors::store)
    })?;
    let mut out = json!({"ARN": rec.arn, "Name": rec.name});
    if let Some((v, _)) = sealed_value {
        out["VersionId"] = json!(v);
    }
    Ok(out)
}

fn scheduled() -> AwsError {
    errors::invalid_request(
        "You can't create this secret because a secret with this name is already scheduled for deletion.",
    )
}

/// CreateSecret for a name that exists: a retry of the same request
/// (same `ClientRequestToken` and value) gets the first answer again;
/// anything else is an error.
fn already(
    sm: &SecretsManager,
    ctx: &RequestContext,
    existing: &SecretRecord,
    token: Option<&str>,
    value: Option<&NewValue>,
) -> Result<Value, AwsError> {
    if existing.deleted.is_some() {
        return Err(scheduled());
    }
    if let (Some(t), Some(v)) = (token, value)
        && existing.versions.contains_key(t)
    {
        // add_version finds the version and compares the values: equal
        // means nothing to do, different is ResourceExistsException.
        add_version(sm, ctx, existing, Some(t), v, vec![], None)?;
        return Ok(json!({"ARN": existing.arn, "Name": existing.name, "VersionId": t}));
    }
    Err(errors::exists(&existing.name))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateReq {
    secret_id: String,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

pub(crate) fn update(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: UpdateReq = parse_request(body)?;
    check_token(r.client_request_token.as_deref())?;
    check_description(r.description.as_deref())?;
    refuse_unsupported(None, r.kind.as_deref())?;
    let new_key = r.kms_key_id.is_some();
    let kms_key_id = key_param(r.kms_key_id)?;
    let value = NewValue::from_members(r.secret_string, r.secret_binary)?;
    let mut keys = Vec::new();
    if let Some(d) = &r.description {
        keys.push(("secretsmanager:Description", vec![d.clone()]));
    }
    if let Some(k) = &kms_key_id {
        keys.push(("secretsmanager:KmsKeyId", vec![k.clone()]));
    }
    let rec = sm.resolve(ctx, &r.secret_id, "secretsmanager:UpdateSecret", &keys)?;
    if rec.deleted.is_some() {
        return Err(errors::marked_for_deletion());
    }
    // The new value is sealed under the new key, if one is given.
    let added = match &value {
        Some(v) => {
            let key = if new_key {
                Some(match &kms_key_id {
                    Some(k) => k.clone(),
                    None => sm.vault.default_key_arn().map_err(errors::encryption)?,
                })
            } else {
                None
            };
            Some(add_version(
                sm,
                ctx,
                &rec,
                r.client_request_token.as_deref(),
                v,
                vec![AWSCURRENT.to_owned()],
                key.as_deref(),
            )?)
        }
        None => None,
    };
    if r.description.is_some() || new_key {
        sm.store.write(|w| {
            let mut cur = super::current(w, &rec)?;
            if let Some(d) = &r.description {
                cur.description = Some(d.clone());
            }
            if new_key {
                cur.kms_key_id.clone_from(&kms_key_id);
            }
            cur.last_changed = now();
            w.put(SECRETS, &cur.name, &cur).map_err(errors::store)
        })?;
    }
    let mut out = json!({"ARN": rec.arn, "Name": rec.name});
    if let Some(a) = added {
        out["VersionId"] = json!(a.version_id);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IdReq {
    secret_id: String,
}

/// DescribeSecret's document (ListSecrets' entries differ in one member
/// name, `SecretVersionsToStages`).
fn metadata(rec: &SecretRecord, list_entry: bool) -> Value {
    let mut out = json!({
        "ARN": rec.arn,
        "Name": rec.name,
        "RotationEnabled": false,
        "LastChangedDate": rec.last_changed,
        "CreatedDate": rec.created,
    });
    let stages = if list_entry {
        "SecretVersionsToStages"
    } else {
        "VersionIdsToStages"
    };
    out[stages] = json!(rec.stages_map());
    if let Some(d) = &rec.description {
        out["Description"] = json!(d);
    }
    if let Some(k) = &rec.kms_key_id {
        out["KmsKeyId"] = json!(k);
    }
    if let Some(d) = rec.last_accessed {
        out["LastAccessedDate"] = json!(d);
    }
    if let Some(d) = rec.deleted {
        out["DeletedDate"] = json!(d);
    }
    if !rec.tags.is_empty() {
        out["Tags"] = json!(rec.tags);
    }
    out
}

pub(crate) fn describe(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: IdReq = parse_request(body)?;
    let rec = sm.resolve(ctx, &r.secret_id, "secretsmanager:DescribeSecret", &[])?;
    Ok(metadata(&rec, false))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Filter {
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListReq {
    include_planned_deletion: Option<bool>,
    max_results: Option<i64>,
    next_token: Option<String>,
    #[serde(default)]
    filters: Vec<Filter>,
    sort_order: Option<String>,
    sort_by: Option<String>,
}

/// Whether `rec` passes one filter: any of its values matches (a value
/// starting with `!` matches when the attribute does not).
fn passes(rec: &SecretRecord, f: &Filter) -> bool {
    let lower = |s: &str| s.to_lowercase();
    f.values.iter().any(|raw| {
        let (negate, v) = match raw.strip_prefix('!') {
            Some(v) => (true, v),
            None => (false, raw.as_str()),
        };
        let hit = match f.key.as_str() {
            "name" => rec.name.starts_with(v),
            "description" => rec
                .description
                .as_deref()
                .is_some_and(|d| lower(d).starts_with(&lower(v))),
            "tag-key" => rec.tags.iter().any(|t| t.key.starts_with(v)),
            "tag-value" => rec.tags.iter().any(|t| t.value.starts_with(v)),
            "primary-region" | "owning-service" => false,
            // "all": every word of the value in some attribute.
            _ => v.split_whitespace().all(|word| {
                let w = lower(word);
                lower(&rec.name).contains(&w)
                    || rec
                        .description
                        .as_deref()
                        .is_some_and(|d| lower(d).contains(&w))
                    || rec
                        .tags
                        .iter()
                        .any(|t| lower(&t.key).contains(&w) || lower(&t.value).contains(&w))
            }),
        };
        hit != negate
    })
}

const FILTER_KEYS: &[&str] = &[
    "description",
    "name",
    "tag-key",
    "tag-value",
    "primary-region",
    "owning-service",
    "all",
];

pub(crate) fn list(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: ListReq = parse_request(body)?;
    if let Some(n) = r.max_results {
        check_range("maxResults", n, 1, 100)?;
    }
    for f in &r.filters {
        if !FILTER_KEYS.contains(&f.key.as_str()) {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{}' at 'filters.member.key' failed to satisfy \
                 constraint: Member must satisfy enum value set: [{}]",
                f.key,
                FILTER_KEYS.join(", ")
            )));
        }
        if f.values.is_empty() || f.values.len() > 10 {
            return Err(errors::invalid_parameter(
                "A filter must have between 1 and 10 values.",
            ));
        }
        for v in &f.values {
            check_len("filters.member.values.member", v, 0, 512)?;
        }
    }
    let desc = match r.sort_order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{o}' at 'sortOrder' failed to satisfy \
                 constraint: Member must satisfy enum value set: [asc, desc]"
            )));
        }
    };
    authorize(
        &ctx.caller,
        &Check::new("secretsmanager:ListSecrets", "*"),
        None,
    )
    .map_err(|d| d.into_error("AccessDeniedException"))?;
    sm.purge_due()?;
    let include_deleted = r.include_planned_deletion.unwrap_or(false);
    let all: Vec<(String, SecretRecord)> = sm.store.scan(SECRETS, "").map_err(errors::store)?;
    let mut recs: Vec<SecretRecord> = all
        .into_iter()
        .map(|(_, r)| r)
        .filter(|rec| include_deleted || rec.deleted.is_none())
        .filter(|rec| r.filters.iter().all(|f| passes(rec, f)))
        .collect();
    match r.sort_by.as_deref() {
        Some("name") => recs.sort_by(|a, b| a.name.cmp(&b.name)),
        Some("last-changed-date") => {
            recs.sort_by(|a, b| a.last_changed.total_cmp(&b.last_changed));
        }
        Some("last-accessed-date") => recs.sort_by(|a, b| {
            a.last_accessed
                .unwrap_or(0.0)
                .total_cmp(&b.last_accessed.unwrap_or(0.0))
        }),
        _ => recs.sort_by(|a, b| a.created.total_cmp(&b.created).then(a.name.cmp(&b.name))),
    }
    if desc {
        recs.reverse();
    }
    let start = token::parse(r.next_token.as_deref(), errors::bad_token)?;
    let limit = r.max_results.map_or(100, |n| n as usize);
    let (items, next) = page(recs, start, limit);
    let mut out = json!({
        "SecretList": items.iter().map(|r| metadata(r, true)).collect::<Vec<_>>(),
    });
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteReq {
    secret_id: String,
    recovery_window_in_days: Option<i64>,
    force_delete_without_recovery: Option<bool>,
}

pub(crate) fn delete(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: DeleteReq = parse_request(body)?;
    let force = r.force_delete_without_recovery.unwrap_or(false);
    if force && r.recovery_window_in_days.is_some() {
        return Err(errors::invalid_parameter(
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        ));
    }
    let days = r.recovery_window_in_days.unwrap_or(30);
    if !(7..=30).contains(&days) {
        return Err(errors::invalid_parameter(
            "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
        ));
    }
    let rec = sm.resolve(ctx, &r.secret_id, "secretsmanager:DeleteSecret", &[])?;
    let t = now();
    if force {
        sm.purge(&rec)?;
        return Ok(json!({"ARN": rec.arn, "Name": rec.name, "DeletionDate": t}));
    }
    if rec.deleted.is_some() {
        return Err(errors::marked_for_deletion());
    }
    let due = t + days as f64 * DAY;
    sm.store.write(|w| {
        let mut cur = super::current(w, &rec)?;
        if cur.deleted.is_some() {
            return Err(errors::marked_for_deletion());
        }
        cur.deleted = Some(t);
        cur.delete_after = Some(due);
        w.put(SECRETS, &cur.name, &cur).map_err(errors::store)
    })?;
    Ok(json!({"ARN": rec.arn, "Name": rec.name, "DeletionDate": due}))
}

pub(crate) fn restore(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: IdReq = parse_request(body)?;
    let rec = sm.resolve(ctx, &r.secret_id, "secretsmanager:RestoreSecret", &[])?;
    if rec.deleted.is_some() {
        sm.store.write(|w| {
            let mut cur = super::current(w, &rec)?;
            cur.deleted = None;
            cur.delete_after = None;
            w.put(SECRETS, &cur.name, &cur).map_err(errors::store)
        })?;
    }
    Ok(json!({"ARN": rec.arn, "Name": rec.name}))
}
