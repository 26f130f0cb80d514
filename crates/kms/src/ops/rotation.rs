//! EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
//! RotateKeyOnDemand, ListKeyRotations. Rotation adds a material version;
//! old versions stay, so old ciphertexts keep decrypting.

use std::sync::Arc;

use ferry_proto::{AwsError, RequestContext};
use serde_json::{Value, json};

use super::{authorize, refuse_aws_managed};
use crate::error::KmsError;
use crate::keystore::{KeyStore, LiveKey, Names, Request};
use crate::model::{KeyRecord, KeyState, now};
use crate::params::{Params, page, paged};
use crate::service::{Kms, Trail};

const DAY: f64 = 86_400.0;
/// AWS allows 25 on-demand rotations per key (10 in older docs).
const MAX_ON_DEMAND: usize = 25;

/// Whether `rec`'s automatic rotation is due at `t`.
fn due(rec: &KeyRecord, t: f64) -> bool {
    rec.rotation_enabled && rec.next_rotation.is_some_and(|n| n <= t)
}

/// Adds a new material version to `key_id`, deciding on the record the
/// write transaction reads: an `AUTOMATIC` rotation only if it is still due
/// (another request, or another replica, may have rotated the key since),
/// an `ON_DEMAND` one only below the limit. Call with the writer lock held.
fn rotate(kms: &Kms, key_id: &str, rotation_type: &str) -> Result<Arc<LiveKey>, AwsError> {
    let (live, _) = kms.keys.update_key(key_id, |rec| {
        let t = now();
        if rotation_type == "AUTOMATIC" && !due(rec, t) {
            return Ok(());
        }
        if rotation_type == "ON_DEMAND" {
            let on_demand = rec
                .materials
                .iter()
                .filter(|m| m.rotation_type.as_deref() == Some("ON_DEMAND"))
                .count();
            if on_demand >= MAX_ON_DEMAND {
                return Err(AwsError::client(
                    "LimitExceededException",
                    format!(
                        "{} has reached the limit of {MAX_ON_DEMAND} on-demand rotations.",
                        rec.arn
                    ),
                ));
            }
            rec.on_demand_rotation = Some(t);
        }
        let version = rec.materials.last().map_or(1, |m| m.version + 1);
        let m = kms
            .keys
            .new_material(&rec.key_id, version, Some(rotation_type))?;
        rec.materials.push(m);
        if rotation_type == "AUTOMATIC" || rec.rotation_enabled {
            rec.next_rotation = rec
                .rotation_enabled
                .then(|| t + f64::from(rec.rotation_period_days) * DAY);
        }
        Ok(())
    })?;
    Ok(live)
}

/// Rotates `key` now if its automatic rotation is due; returns the key to
/// use. Lazy, on the first use after the due date, on whichever replica
/// serves it: [`rotate`] decides again inside the serialized write, so the
/// key is rotated once.
pub fn rotate_if_due(kms: &Kms, key: Arc<LiveKey>) -> Result<Arc<LiveKey>, AwsError> {
    if !due(&key.rec, now()) {
        return Ok(key);
    }
    let _w = kms.keys.writer();
    rotate(kms, &key.rec.key_id, "AUTOMATIC")
}

/// AWS rotates only symmetric encryption keys with KMS-made material:
/// asymmetric, HMAC and imported keys are refused.
fn refuse_unrotatable(key: &LiveKey) -> Result<(), AwsError> {
    if key.spec() != crate::asym::Spec::Symmetric {
        return Err(KmsError::unsupported(format!(
            "{} is not a symmetric encryption KMS key; key rotation is not supported for {} keys.",
            key.rec.arn, key.rec.key_spec
        )));
    }
    if key.rec.origin != "AWS_KMS" {
        return Err(KmsError::unsupported(format!(
            "{} has imported key material; ferry does not rotate keys with imported material.",
            key.rec.arn
        )));
    }
    Ok(())
}

fn set_rotation(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
    enable: bool,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let period = if enable {
        p.opt_int("RotationPeriodInDays", 90, 2560)?.unwrap_or(365)
    } else {
        0
    };
    res.push(key.rec.arn.clone());
    let action = if enable {
        "EnableKeyRotation"
    } else {
        "DisableKeyRotation"
    };
    kms.keys.authorize(ctx, &key, action, &Request::default())?;
    refuse_aws_managed(&key, "change the rotation of")?;
    refuse_unrotatable(&key)?;
    KeyStore::check_usable(&key)?;
    let _w = kms.keys.writer();
    kms.keys.update_key(&key.rec.key_id, |rec| {
        rec.rotation_enabled = enable;
        if enable {
            rec.rotation_period_days = period as u32;
            rec.next_rotation = Some(now() + period as f64 * DAY);
        } else {
            rec.next_rotation = None;
        }
        Ok(())
    })?;
    Ok(json!({}))
}

pub fn enable_key_rotation(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    set_rotation(kms, ctx, p, res, true)
}

pub fn disable_key_rotation(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    set_rotation(kms, ctx, p, res, false)
}

pub fn get_key_rotation_status(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    authorize(kms, ctx, res, &key, "GetKeyRotationStatus")?;
    KeyStore::check_not_pending(&key)?;
    let mut v = json!({ "KeyRotationEnabled": key.rec.rotation_enabled, "KeyId": key.rec.arn });
    if key.rec.rotation_enabled
        && let Value::Object(o) = &mut v
    {
        o.insert(
            "RotationPeriodInDays".into(),
            json!(key.rec.rotation_period_days),
        );
        if let Some(t) = key.rec.next_rotation {
            o.insert("NextRotationDate".into(), json!(t));
        }
    }
    Ok(v)
}

pub fn rotate_key_on_demand(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    authorize(kms, ctx, res, &key, "RotateKeyOnDemand")?;
    refuse_aws_managed(&key, "rotate on demand")?;
    refuse_unrotatable(&key)?;
    match key.state() {
        KeyState::Enabled => {}
        KeyState::Disabled => return Err(KmsError::disabled(&key.rec.arn)),
        KeyState::PendingDeletion => return Err(KmsError::pending_deletion(&key.rec.arn)),
        KeyState::PendingImport => return Err(KmsError::pending_import(&key.rec.arn)),
    }
    let _w = kms.keys.writer();
    let live = rotate(kms, &key.rec.key_id, "ON_DEMAND")?;
    Ok(json!({ "KeyId": live.rec.arn }))
}

pub fn list_key_rotations(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let include_all = p.opt_enum(
        "IncludeKeyMaterial",
        &["ALL_KEY_MATERIAL", "ROTATIONS_ONLY"],
    )? == Some("ALL_KEY_MATERIAL");
    let limit = p.limit(100)?;
    let offset = p.marker()?;
    authorize(kms, ctx, res, &key, "ListKeyRotations")?;
    KeyStore::check_not_pending(&key)?;
    let current = key.rec.current().map(|m| m.version);
    let all: Vec<Value> = key
        .rec
        .materials
        .iter()
        .filter(|m| include_all || m.rotation_type.is_some())
        .map(|m| {
            let mut v = json!({
                "KeyId": key.rec.arn,
                "KeyMaterialId": m.id,
                "KeyMaterialState": if Some(m.version) == current { "CURRENT" } else { "NON_CURRENT" },
            });
            if let (Some(t), Value::Object(o)) = (&m.rotation_type, &mut v) {
                o.insert("RotationDate".into(), json!(m.created));
                o.insert("RotationType".into(), json!(t));
            }
            v
        })
        .collect();
    let (items, next) = page(&all, offset, limit)?;
    Ok(paged(json!({ "Rotations": items }), next))
}
