//! PutParameter, GetParameter, GetParameters, DeleteParameter,
//! DeleteParameters.

use ferry_proto::{AwsError, RequestContext, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::errors;
use super::model::{
    HISTORY, MAX_VERSIONS, PARAMETERS, ParameterRecord, ParameterType, Stored, Version, check_name,
    history_key, history_prefix,
};
use super::{ParameterValue, Ssm, parameter_json};
use crate::util::{Tag, check_len, check_tags, now};

/// The value size limits of the tiers, in bytes.
const STANDARD_MAX: usize = 4096;
const ADVANCED_MAX: usize = 8192;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutReq {
    name: String,
    description: Option<String>,
    value: String,
    #[serde(rename = "Type")]
    kind: Option<String>,
    key_id: Option<String>,
    overwrite: Option<bool>,
    allowed_pattern: Option<String>,
    tags: Option<Vec<Tag>>,
    tier: Option<String>,
    policies: Option<String>,
    data_type: Option<String>,
}

/// The tier a value goes to (`Intelligent-Tiering` picks the smallest
/// that fits), or the error for one too large.
fn tier(requested: Option<&str>, current: Option<&str>, len: usize) -> Result<String, AwsError> {
    let t = match requested {
        None => current.unwrap_or("Standard"),
        Some("Intelligent-Tiering") if len <= STANDARD_MAX => current.unwrap_or("Standard"),
        Some("Intelligent-Tiering") => "Advanced",
        Some(t @ ("Standard" | "Advanced")) => t,
        Some(other) => {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{other}' at 'tier' failed to satisfy \
                 constraint: Member must satisfy enum value set: [Advanced, Intelligent-Tiering, Standard]"
            )));
        }
    };
    if t == "Standard" && len > STANDARD_MAX {
        return Err(AwsError::validation(
            "Standard tier parameters support a maximum parameter value of 4096 characters. To \
             create a larger parameter value, upgrade the parameter to use the advanced-parameter \
             tier. For more information, see \
             https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html",
        ));
    }
    if len > ADVANCED_MAX {
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'value' failed to satisfy constraint: Member \
             must have length less than or equal to 8192",
        ));
    }
    Ok(t.to_owned())
}

pub(crate) fn put(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: PutReq = parse_request(body)?;
    let value = Zeroizing::new(r.value);
    check_name(&r.name)?;
    if value.is_empty() {
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'value' failed to satisfy constraint: Member \
             must have length greater than or equal to 1",
        ));
    }
    if let Some(d) = &r.description {
        check_len("description", d, 0, 1024)?;
    }
    let kind = match r.kind.as_deref() {
        Some(k) => Some(ParameterType::parse(k).ok_or_else(|| {
            AwsError::validation(format!(
                "1 validation error detected: Value '{k}' at 'type' failed to satisfy constraint: \
                 Member must satisfy enum value set: [SecureString, StringList, String]"
            ))
        })?),
        None => None,
    };
    if let Some(k) = &r.key_id {
        check_len("keyId", k, 1, 256)?;
    }
    let overwrite = r.overwrite.unwrap_or(false);
    let tags = r.tags.unwrap_or_default();
    if overwrite && !tags.is_empty() {
        return Err(AwsError::validation(
            "tags and overwrite can't be used together. To create a parameter with tags, please \
             remove overwrite flag. To update tags for an existing parameter, please use \
             AddTagsToResource or RemoveTagsFromResource.",
        ));
    }
    check_tags(&tags, "ValidationException")?;
    if r.policies.is_some() {
        return Err(AwsError::client(
            "InvalidPolicyTypeException",
            "Parameter policies (Expiration, ExpirationNotification, NoChangeNotification) are not supported.",
        ));
    }
    let data_type = r.data_type.unwrap_or_else(|| "text".to_owned());
    if data_type != "text" {
        return Err(AwsError::validation(format!(
            "The data type {data_type} is not supported; ferry supports the data type text."
        )));
    }
    if let Some(p) = &r.allowed_pattern {
        check_len("allowedPattern", p, 0, 1024)?;
    }

    let arn = ssm.arn(&r.name);
    let existing: Option<ParameterRecord> =
        ssm.store.get(PARAMETERS, &r.name).map_err(errors::store)?;
    ssm.authorize(
        ctx,
        "ssm:PutParameter",
        &arn,
        existing.as_ref().map_or(&[][..], |e| e.tags.as_slice()),
    )?;
    if existing.is_some() && !overwrite {
        return Err(errors::already_exists());
    }
    let cur = existing.as_ref().map(|e| &e.current);
    let kind = match (kind, cur) {
        (Some(k), _) => k,
        (None, Some(c)) => c.kind,
        (None, None) => {
            return Err(AwsError::validation(
                "A parameter type is required when you create a parameter.",
            ));
        }
    };
    let key_id = match kind {
        ParameterType::SecureString => Some(
            r.key_id
                .clone()
                // An overwrite keeps the key it was sealed under.
                .or_else(|| {
                    cur.filter(|c| c.kind == kind)
                        .and_then(|c| c.key_id.clone())
                })
                .unwrap_or_else(|| ssm.vault.default_key_alias().to_owned()),
        ),
        _ if r.key_id.is_some() => {
            return Err(AwsError::validation(
                "KeyId is required for SecureString type parameter only.",
            ));
        }
        _ => None,
    };
    let tier = tier(r.tier.as_deref(), cur.map(|c| c.tier.as_str()), value.len())?;
    let description = r
        .description
        .or_else(|| cur.and_then(|c| c.description.clone()));
    // An overwrite without a pattern is held to the parameter's pattern.
    let allowed_pattern = r
        .allowed_pattern
        .or_else(|| cur.and_then(|c| c.allowed_pattern.clone()));
    if let Some(p) = &allowed_pattern {
        check_pattern(p, &value)?;
    }
    let stored = match &key_id {
        Some(k) => {
            // The AWS managed key is made on first use, then named by
            // its alias like any other.
            if k == ssm.vault.default_key_alias() {
                ssm.vault.default_key_arn().map_err(errors::kms)?;
            }
            let (sealed, _) = ssm
                .vault
                .seal(
                    ctx,
                    k,
                    &Ssm::context(&arn),
                    "SecureString",
                    value.as_bytes(),
                )
                .map_err(errors::kms)?;
            Stored::Sealed { sealed }
        }
        None => Stored::Plain {
            value: value.to_string(),
        },
    };
    let t = now();
    let user = ctx.caller.arn();
    let version = ssm.store.write(|w| {
        let prev: Option<ParameterRecord> = w.get(PARAMETERS, &r.name).map_err(errors::store)?;
        if prev.is_some() && !overwrite {
            return Err(errors::already_exists());
        }
        let n = prev.as_ref().map_or(0, |p| p.current.version) + 1;
        let v = Version {
            version: n,
            kind,
            key_id,
            description,
            allowed_pattern,
            tier: tier.clone(),
            data_type,
            last_modified: t,
            last_modified_user: user,
            value: stored,
        };
        if n > MAX_VERSIONS {
            w.delete(HISTORY, &history_key(&r.name, n - MAX_VERSIONS))
                .map_err(errors::store)?;
        }
        w.put(HISTORY, &history_key(&r.name, n), &v)
            .map_err(errors::store)?;
        let rec = ParameterRecord {
            name: r.name.clone(),
            arn: arn.clone(),
            tags: prev.map_or(tags, |p| p.tags),
            current: v,
        };
        w.put(PARAMETERS, &rec.name, &rec).map_err(errors::store)?;
        Ok(n)
    })?;
    Ok(json!({"Version": version, "Tier": tier}))
}

/// Checks `value` against an `AllowedPattern` (a regular expression that
/// must match the whole value).
fn check_pattern(pattern: &str, value: &str) -> Result<(), AwsError> {
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|_| {
        AwsError::client(
            "InvalidAllowedPatternException",
            "The parameter value is not a valid regular expression.",
        )
    })?;
    if !re.is_match(value) {
        return Err(AwsError::client(
            "ParameterPatternMismatchException",
            format!("Parameter value, cannot be validated against allowedPattern: {pattern}"),
        ));
    }
    Ok(())
}

/// The one read path: the parameter, the version (current, or the
/// selector's), its value (decrypted as the caller if asked).
pub(crate) fn fetch(
    ssm: &Ssm,
    ctx: &RequestContext,
    action: &str,
    name_or_arn: &str,
    with_decryption: bool,
) -> Result<(ParameterValue, Version), AwsError> {
    check_len("name", name_or_arn, 1, 2048)?;
    let r = ssm.reference(name_or_arn);
    let shown = r.names.first().cloned().unwrap_or_default();
    let Some(rec) = ssm.find(&r)? else {
        ssm.authorize(ctx, action, &ssm.arn(&shown), &[])?;
        return Err(errors::not_found(&shown));
    };
    ssm.authorize(ctx, action, &rec.arn, &rec.tags)?;
    let v = match r.selector {
        None => rec.current,
        Some(s) => {
            let n: u64 = s
                .parse()
                .map_err(|_| errors::version_not_found(&rec.name, s))?;
            if n == rec.current.version {
                rec.current
            } else {
                ssm.store
                    .get(HISTORY, &history_key(&rec.name, n))
                    .map_err(errors::store)?
                    .ok_or_else(|| errors::version_not_found(&rec.name, s))?
            }
        }
    };
    let value = ssm.value(ctx, &rec.arn, &v, with_decryption)?;
    Ok((
        ParameterValue {
            arn: rec.arn,
            name: rec.name,
            version: v.version,
            kind: v.kind,
            value,
        },
        v,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetReq {
    name: String,
    with_decryption: Option<bool>,
}

pub(crate) fn get(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: GetReq = parse_request(body)?;
    let (p, v) = fetch(
        ssm,
        ctx,
        "ssm:GetParameter",
        &r.name,
        r.with_decryption.unwrap_or(false),
    )?;
    let selector = ssm.reference(&r.name).selector;
    Ok(json!({"Parameter": parameter_json(&p, &v, selector)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetManyReq {
    names: Vec<String>,
    with_decryption: Option<bool>,
}

fn check_names(names: &[String]) -> Result<(), AwsError> {
    if names.is_empty() || names.len() > 10 {
        return Err(AwsError::validation(
            "1 validation error detected: Value at 'names' failed to satisfy constraint: Member \
             must have length less than or equal to 10 and greater than or equal to 1",
        ));
    }
    Ok(())
}

pub(crate) fn get_many(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: GetManyReq = parse_request(body)?;
    check_names(&r.names)?;
    let mut found = Vec::new();
    let mut invalid = Vec::new();
    for name in &r.names {
        match fetch(
            ssm,
            ctx,
            "ssm:GetParameters",
            name,
            r.with_decryption.unwrap_or(false),
        ) {
            Ok((p, v)) => {
                let selector = ssm.reference(name).selector;
                found.push(parameter_json(&p, &v, selector));
            }
            Err(e) if e.code == "ParameterNotFound" || e.code == "ParameterVersionNotFound" => {
                invalid.push(name.clone());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(json!({"Parameters": found, "InvalidParameters": invalid}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteReq {
    name: String,
}

/// Deletes the parameter `name` names (with its history) as the caller;
/// `Ok(false)` if there is none.
fn delete_one(ssm: &Ssm, ctx: &RequestContext, action: &str, name: &str) -> Result<bool, AwsError> {
    let r = ssm.reference(name);
    let shown = r.names.first().cloned().unwrap_or_default();
    let Some(rec) = ssm.find(&r)? else {
        ssm.authorize(ctx, action, &ssm.arn(&shown), &[])?;
        return Ok(false);
    };
    ssm.authorize(ctx, action, &rec.arn, &rec.tags)?;
    ssm.store.write(|w| {
        let existed = w.delete(PARAMETERS, &rec.name).map_err(errors::store)?;
        for (k, _) in w
            .scan::<Value>(HISTORY, &history_prefix(&rec.name))
            .map_err(errors::store)?
        {
            w.delete(HISTORY, &k).map_err(errors::store)?;
        }
        Ok(existed)
    })
}

pub(crate) fn delete(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: DeleteReq = parse_request(body)?;
    check_len("name", &r.name, 1, 2048)?;
    if !delete_one(ssm, ctx, "ssm:DeleteParameter", &r.name)? {
        return Err(errors::not_found(&r.name));
    }
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteManyReq {
    names: Vec<String>,
}

pub(crate) fn delete_many(ssm: &Ssm, ctx: &RequestContext, body: &[u8]) -> Result<Value, AwsError> {
    let r: DeleteManyReq = parse_request(body)?;
    check_names(&r.names)?;
    let mut deleted = Vec::new();
    let mut invalid = Vec::new();
    for n in r.names {
        if delete_one(ssm, ctx, "ssm:DeleteParameters", &n)? {
            deleted.push(n);
        } else {
            invalid.push(n);
        }
    }
    Ok(json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
}
