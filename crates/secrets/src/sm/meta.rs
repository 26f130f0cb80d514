//! Tags, resource policies and GetRandomPassword.

use ferry_policy::Policy;
use ferry_proto::authz::{Check, authorize};
use ferry_proto::{AwsError, RequestContext, parse_request};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::SecretsManager;
use super::errors;
use super::model::{SECRETS, SecretRecord};
use crate::util::{Tag, check_len, check_range, check_tags, merge_tags, now};

/// Changes `rec`'s stored record with `f` in one transaction (the secret
/// must still be the same one and not pending deletion).
fn change(
    sm: &SecretsManager,
    rec: &SecretRecord,
    f: impl FnOnce(&mut SecretRecord) -> Result<(), AwsError>,
) -> Result<(), AwsError> {
    sm.store.write(|w| {
        let mut cur = super::current(w, rec)?;
        if cur.deleted.is_some() {
            return Err(errors::marked_for_deletion());
        }
        f(&mut cur)?;
        w.put(SECRETS, &cur.name, &cur).map_err(errors::store)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagReq {
    secret_id: String,
    tags: Vec<Tag>,
}

pub(crate) fn tag(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: TagReq = parse_request(body)?;
    check_tags(&r.tags, "InvalidParameterException")?;
    let mut keys = vec![(
        "aws:TagKeys".to_owned(),
        r.tags.iter().map(|t| t.key.clone()).collect::<Vec<_>>(),
    )];
    for t in &r.tags {
        keys.push((format!("aws:RequestTag/{}", t.key), vec![t.value.clone()]));
    }
    let keys: Vec<(&str, Vec<String>)> =
        keys.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let rec = sm.resolve(ctx, &r.secret_id, "secretsmanager:TagResource", &keys)?;
    change(sm, &rec, |cur| {
        merge_tags(&mut cur.tags, r.tags);
        check_tags(&cur.tags, "InvalidParameterException")?;
        cur.last_changed = now();
        Ok(())
    })?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagReq {
    secret_id: String,
    tag_keys: Vec<String>,
}

pub(crate) fn untag(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: UntagReq = parse_request(body)?;
    let rec = sm.resolve(
        ctx,
        &r.secret_id,
        "secretsmanager:UntagResource",
        &[("aws:TagKeys", r.tag_keys.clone())],
    )?;
    change(sm, &rec, |cur| {
        cur.tags.retain(|t| !r.tag_keys.contains(&t.key));
        cur.last_changed = now();
        Ok(())
    })?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutPolicyReq {
    secret_id: String,
    resource_policy: String,
    block_public_policy: Option<bool>,
}

/// Whether a policy grants access to everyone: an Allow statement for the
/// principal `*` with no condition (what `BlockPublicPolicy` refuses).
fn is_public(doc: &Value) -> bool {
    let statements = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    };
    statements.iter().any(|s| {
        let anyone = match &s["Principal"] {
            Value::String(p) => p == "*",
            Value::Object(m) => m.get("AWS").is_some_and(|a| match a {
                Value::String(p) => p == "*",
                Value::Array(l) => l.iter().any(|p| p == "*"),
                _ => false,
            }),
            _ => false,
        };
        s["Effect"] == "Allow" && anyone && s.get("Condition").is_none()
    })
}

pub(crate) fn put_policy(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: PutPolicyReq = parse_request(body)?;
    check_len("resourcePolicy", &r.resource_policy, 1, 20_480)?;
    Policy::parse(&r.resource_policy)
        .map_err(|e| AwsError::client("MalformedPolicyDocumentException", e.0))?;
    let doc: Value = serde_json::from_str(&r.resource_policy).unwrap_or(Value::Null);
    if r.block_public_policy.unwrap_or(false) && is_public(&doc) {
        return Err(AwsError::client(
            "PublicPolicyException",
            "The BlockPublicPolicy parameter is set to true, and the resource policy did not \
             prevent broad access to the secret.",
        ));
    }
    let rec = sm.resolve(ctx, &r.secret_id, "secretsmanager:PutResourcePolicy", &[])?;
    change(sm, &rec, |cur| {
        cur.policy = Some(r.resource_policy);
        cur.last_changed = now();
        Ok(())
    })?;
    Ok(json!({"ARN": rec.arn, "Name": rec.name}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IdReq {
    secret_id: String,
}

pub(crate) fn get_policy(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: IdReq = parse_request(body)?;
    let rec = sm.resolve(ctx, &r.secret_id, "secretsmanager:GetResourcePolicy", &[])?;
    let mut out = json!({"ARN": rec.arn, "Name": rec.name});
    if let Some(p) = &rec.policy {
        out["ResourcePolicy"] = json!(p);
    }
    Ok(out)
}

pub(crate) fn delete_policy(
    sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    let r: IdReq = parse_request(body)?;
    let rec = sm.resolve(
        ctx,
        &r.secret_id,
        "secretsmanager:DeleteResourcePolicy",
        &[],
    )?;
    change(sm, &rec, |cur| {
        cur.policy = None;
        cur.last_changed = now();
        Ok(())
    })?;
    Ok(json!({"ARN": rec.arn, "Name": rec.name}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PasswordReq {
    password_length: Option<i64>,
    exclude_characters: Option<String>,
    exclude_numbers: bool,
    exclude_punctuation: bool,
    exclude_uppercase: bool,
    exclude_lowercase: bool,
    include_space: bool,
    require_each_included_type: Option<bool>,
}

/// The punctuation AWS draws from.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

pub(crate) fn random_password(
    _sm: &SecretsManager,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<Value, AwsError> {
    use rand::seq::IndexedRandom;

    let r: PasswordReq = parse_request(body)?;
    let len = r.password_length.unwrap_or(32);
    check_range("passwordLength", len, 1, 4096)?;
    authorize(
        &ctx.caller,
        &Check::new("secretsmanager:GetRandomPassword", "*"),
        None,
    )
    .map_err(|d| d.into_error("AccessDeniedException"))?;
    let exclude = r.exclude_characters.unwrap_or_default();
    let keep = |set: &str| -> Vec<char> { set.chars().filter(|c| !exclude.contains(*c)).collect() };
    let mut classes: Vec<Vec<char>> = Vec::new();
    if !r.exclude_lowercase {
        classes.push(keep("abcdefghijklmnopqrstuvwxyz"));
    }
    if !r.exclude_uppercase {
        classes.push(keep("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
    }
    if !r.exclude_numbers {
        classes.push(keep("0123456789"));
    }
    if !r.exclude_punctuation {
        classes.push(keep(PUNCTUATION));
    }
    if r.include_space {
        classes.push(keep(" "));
    }
    classes.retain(|c| !c.is_empty());
    let all: Vec<char> = classes.iter().flatten().copied().collect();
    let each = r.require_each_included_type.unwrap_or(true);
    let len = len as usize;
    if all.is_empty() || (each && classes.len() > len) {
        return Err(errors::invalid_parameter(
            "The password length is too short to include every required character type, or \
             every character is excluded.",
        ));
    }
    // ThreadRng: a CSPRNG (ChaCha12) seeded and reseeded from the kernel.
    let mut rng = rand::rng();
    // Draw until every class is present when required (rare retries).
    loop {
        let pw: Zeroizing<String> = Zeroizing::new(
            (0..len)
                .filter_map(|_| all.choose(&mut rng).copied())
                .collect(),
        );
        if !each || classes.iter().all(|c| pw.chars().any(|x| c.contains(&x))) {
            return Ok(json!({"RandomPassword": pw.as_str()}));
        }
    }
}
