//! ListAccountSettings, PutAccountSetting, PutAccountSettingDefault,
//! DeleteAccountSetting.
//!
//! A setting is either the account default (set with
//! PutAccountSettingDefault, or with PutAccountSetting by the root user)
//! or a principal's override (an IAM user or role). A principal's
//! effective value is its override, else the account default, else AWS's
//! default (`type: aws_managed`). What each setting does in ferry is in
//! docs/control-plane.md ("Account settings").

use std::sync::Arc;

use ferry_proto::{Principal, RequestContext};
use serde::{Deserialize, Serialize};

use crate::error::EcsError;
use crate::paging;
use crate::service::Core;

/// Store table: key `PRINCIPAL_ARN NAME` (`*` for the account default).
pub const TABLE: &str = "ecs_account_settings";

const DEFAULT: &str = "*";

/// Every setting name of the model, its allowed values and AWS's default.
const SETTINGS: &[(&str, &[&str], &str)] = &[
    ("serviceLongArnFormat", &["enabled", "disabled"], "enabled"),
    ("taskLongArnFormat", &["enabled", "disabled"], "enabled"),
    (
        "containerInstanceLongArnFormat",
        &["enabled", "disabled"],
        "enabled",
    ),
    ("awsvpcTrunking", &["enabled", "disabled"], "disabled"),
    (
        "containerInsights",
        &["enabled", "disabled", "enhanced"],
        "disabled",
    ),
    ("fargateFIPSMode", &["enabled", "disabled"], "disabled"),
    ("tagResourceAuthorization", &["on", "off"], "on"),
    ("fargateTaskRetirementWaitPeriod", &["0", "7", "14"], "7"),
    ("guardDutyActivate", &["on", "off"], "off"),
    (
        "defaultLogDriverMode",
        &["blocking", "non-blocking"],
        "non-blocking",
    ),
    ("fargateEventWindows", &["enabled", "disabled"], "disabled"),
];

/// Settings only the account default holds (ECS refuses them per principal).
const DEFAULT_ONLY: &[&str] = &["fargateFIPSMode", "fargateTaskRetirementWaitPeriod"];

/// `Setting`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    /// `SettingName`.
    pub name: String,
    /// The value.
    pub value: String,
    /// Whose setting it is (the root user's ARN for the account default).
    pub principal_arn: String,
    /// `user` (set by someone) or `aws_managed` (AWS's default).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `ListAccountSettingsRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAccountSettingsRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    principal_arn: Option<String>,
    #[serde(default)]
    effective_settings: bool,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
}

/// `ListAccountSettingsResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAccountSettingsResponse {
    settings: Vec<Setting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// `PutAccountSettingRequest` / `PutAccountSettingDefaultRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutAccountSettingRequest {
    name: String,
    value: String,
    #[serde(default)]
    principal_arn: Option<String>,
}

/// `PutAccountSettingDefaultRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutAccountSettingDefaultRequest {
    name: String,
    value: String,
}

/// `DeleteAccountSettingRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteAccountSettingRequest {
    name: String,
    #[serde(default)]
    principal_arn: Option<String>,
}

/// `{"setting": Setting}`.
#[derive(Debug, Serialize)]
pub struct SettingResponse {
    setting: Setting,
}

fn root(core: &Core) -> String {
    format!("arn:aws:iam::{}:root", core.cfg.account)
}

fn spec(
    name: &str,
) -> Result<&'static (&'static str, &'static [&'static str], &'static str), EcsError> {
    SETTINGS.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
        EcsError::InvalidParameter(format!(
            "The specified setting name '{name}' is invalid. Valid names: {}.",
            SETTINGS.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
        ))
    })
}

fn check_value(name: &str, value: &str) -> Result<(), EcsError> {
    let (_, values, _) = spec(name)?;
    if !values.contains(&value) {
        return Err(EcsError::InvalidParameter(format!(
            "The specified value '{value}' for setting '{name}' is invalid. Valid values: {}.",
            values.join(", ")
        )));
    }
    Ok(())
}

/// The principal a request is about: `principalArn` as given, else the
/// caller. The root user is the account default.
fn principal(core: &Core, ctx: &RequestContext, given: Option<&str>) -> Result<String, EcsError> {
    let p = given.map_or_else(|| caller(ctx), str::to_owned);
    let ok = p.starts_with("arn:aws:iam::") || p.starts_with("arn:aws:sts::");
    if !ok || p.split(':').nth(4) != Some(core.cfg.account.as_str()) {
        return Err(EcsError::InvalidParameter(format!(
            "principalArn '{p}' is invalid: give the ARN of an IAM user, IAM role or the root user of this account."
        )));
    }
    Ok(if p == root(core) { DEFAULT.into() } else { p })
}

/// Whose settings a caller's own requests are about: a role session's
/// are its role's, as in ECS.
fn caller(ctx: &RequestContext) -> String {
    match &ctx.caller.principal {
        Principal::AssumedRole { role_arn, .. } => role_arn.clone(),
        _ => ctx.caller.arn(),
    }
}

/// The effective value of `name` for the caller of `ctx`.
pub fn effective_for_caller(
    core: &Core,
    ctx: &RequestContext,
    name: &str,
) -> Result<Setting, EcsError> {
    let p = caller(ctx);
    let p = if p == root(core) {
        DEFAULT.to_owned()
    } else {
        p
    };
    effective(core, &p, name)
}

fn key(principal: &str, name: &str) -> String {
    format!("{principal} {name}")
}

fn stored(core: &Core, principal: &str, name: &str) -> Result<Option<Setting>, EcsError> {
    Ok(core.store.get(TABLE, &key(principal, name))?)
}

/// The effective value of `name` for `principal` (`*`: the account).
pub fn effective(core: &Core, principal: &str, name: &str) -> Result<Setting, EcsError> {
    if principal != DEFAULT
        && let Some(s) = stored(core, principal, name)?
    {
        return Ok(s);
    }
    if let Some(s) = stored(core, DEFAULT, name)? {
        return Ok(s);
    }
    let (_, _, aws) = spec(name)?;
    Ok(Setting {
        name: name.into(),
        value: (*aws).into(),
        principal_arn: root(core),
        kind: "aws_managed".into(),
    })
}

fn put(core: &Core, principal: &str, name: &str, value: &str) -> Result<Setting, EcsError> {
    check_value(name, value)?;
    if principal != DEFAULT && DEFAULT_ONLY.contains(&name) {
        return Err(EcsError::InvalidParameter(format!(
            "The '{name}' setting can only be changed for the account: use PutAccountSettingDefault (or PutAccountSetting as the root user)."
        )));
    }
    let s = Setting {
        name: name.into(),
        value: value.into(),
        principal_arn: if principal == DEFAULT {
            root(core)
        } else {
            principal.into()
        },
        kind: "user".into(),
    };
    core.store
        .write(|w| w.put(TABLE, &key(principal, name), &s))?;
    Ok(s)
}

/// PutAccountSetting.
pub fn put_setting(
    core: &Arc<Core>,
    ctx: &RequestContext,
    req: PutAccountSettingRequest,
) -> Result<SettingResponse, EcsError> {
    let p = principal(core, ctx, req.principal_arn.as_deref())?;
    Ok(SettingResponse {
        setting: put(core, &p, &req.name, &req.value)?,
    })
}

/// PutAccountSettingDefault.
pub fn put_default(
    core: &Arc<Core>,
    _ctx: &RequestContext,
    req: PutAccountSettingDefaultRequest,
) -> Result<SettingResponse, EcsError> {
    Ok(SettingResponse {
        setting: put(core, DEFAULT, &req.name, &req.value)?,
    })
}

/// DeleteAccountSetting: removes the principal's override (or the account
/// default, for the root user); answers the setting that was removed.
pub fn delete(
    core: &Arc<Core>,
    ctx: &RequestContext,
    req: DeleteAccountSettingRequest,
) -> Result<SettingResponse, EcsError> {
    spec(&req.name)?;
    let p = principal(core, ctx, req.principal_arn.as_deref())?;
    let k = key(&p, &req.name);
    let removed = core.store.write(|w| {
        let s: Option<Setting> = w.get(TABLE, &k)?;
        if s.is_some() {
            w.delete(TABLE, &k)?;
        }
        Ok::<_, EcsError>(s)
    })?;
    let setting = removed.ok_or_else(|| {
        EcsError::InvalidParameter(format!(
            "The account setting '{}' is not set for {}.",
            req.name,
            if p == DEFAULT { root(core) } else { p.clone() }
        ))
    })?;
    Ok(SettingResponse { setting })
}

/// ListAccountSettings. Without `effectiveSettings`, the settings set for
/// the principal (the caller unless `principalArn`; the root user's are
/// the account defaults); with it, every setting's effective value.
pub fn list(
    core: &Arc<Core>,
    ctx: &RequestContext,
    req: ListAccountSettingsRequest,
) -> Result<ListAccountSettingsResponse, EcsError> {
    if let Some(n) = &req.name {
        spec(n)?;
    }
    if req.value.is_some() && req.name.is_none() {
        return Err(EcsError::InvalidParameter(
            "value can only be given with name.".into(),
        ));
    }
    let max = match req.max_results {
        None => 10,
        Some(n) if (1..=10).contains(&n) => n as usize,
        Some(n) => {
            return Err(EcsError::InvalidParameter(format!(
                "maxResults must be between 1 and 10 (got {n})."
            )));
        }
    };
    let p = principal(core, ctx, req.principal_arn.as_deref())?;
    let mut all = Vec::new();
    for (i, (name, _, _)) in SETTINGS.iter().enumerate() {
        if req.name.as_deref().is_some_and(|n| n != *name) {
            continue;
        }
        let s = if req.effective_settings {
            Some(effective(core, &p, name)?)
        } else {
            stored(core, &p, name)?
        };
        if let Some(s) = s.filter(|s| req.value.as_deref().is_none_or(|v| v == s.value)) {
            all.push((format!("{i:02}"), s));
        }
    }
    let (settings, next_token) = paging::page(all, req.next_token.as_deref(), max)?;
    Ok(ListAccountSettingsResponse {
        settings,
        next_token,
    })
}
