//! CreateGrant, ListGrants, RetireGrant, RevokeGrant.

use std::collections::BTreeMap;

use ferry_proto::{AwsError, Principal, RequestContext};
use serde_json::{Value, json};

use super::{authorize, check_grant_tokens, with_dry_run};
use crate::crypto;
use crate::error::KmsError;
use crate::keystore::{GRANT_OPERATIONS, Names, Request, caller_is};
use crate::model::{Constraints, GrantRecord, KeyState, now};
use crate::params::{Params, check_pattern, page, paged};
use crate::service::{Kms, Operation, Trail};

fn principal_param<'a>(
    p: &Params<'a>,
    name: &str,
    required: bool,
) -> Result<Option<&'a str>, AwsError> {
    let v = if required {
        Some(p.str(name, 1, 256)?)
    } else {
        p.opt_str(name, 1, 256)?
    };
    if let Some(s) = v {
        check_pattern(
            name,
            s,
            |c| c.is_alphanumeric() || c == '_' || "+=,.@:/-".contains(c),
            "^[\\w+=,.@:/-]+$",
        )?;
    }
    Ok(v)
}

/// At most this many pairs in one grant constraint (AWS's limit).
pub const MAX_CONSTRAINT_PAIRS: usize = 8;
/// The longest value in a grant constraint, in characters (AWS's limit).
pub const MAX_CONSTRAINT_VALUE: usize = 384;

/// One grant constraint, within AWS's limits: up to 8 pairs, values up to
/// 384 characters, and (ferry's) the encryption-context size limit overall.
fn constraint(c: &Params<'_>, name: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    let Some(m) = c.opt_context(name)? else {
        return Ok(None);
    };
    let field = format!("constraints.{}", crate::params::field(name));
    if m.len() > MAX_CONSTRAINT_PAIRS {
        return Err(KmsError::invalid(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: \
             Member must have at most {MAX_CONSTRAINT_PAIRS} entries"
        )));
    }
    if m.values().any(|v| v.chars().count() > MAX_CONSTRAINT_VALUE) {
        return Err(KmsError::invalid(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: \
             Map value must have length less than or equal to {MAX_CONSTRAINT_VALUE}"
        )));
    }
    Ok(Some(m))
}

fn random_hex(n: usize) -> Result<String, AwsError> {
    let mut b = vec![0u8; n];
    crypto::random(&mut b).map_err(|_| KmsError::internal("random generation failed"))?;
    Ok(hex::encode(b))
}

fn constraints_json(c: &Constraints) -> Value {
    let mut v = json!({});
    if let Value::Object(o) = &mut v {
        if let Some(s) = &c.subset {
            o.insert("EncryptionContextSubset".into(), json!(s));
        }
        if let Some(e) = &c.equals {
            o.insert("EncryptionContextEquals".into(), json!(e));
        }
    }
    v
}

/// CreateGrant, typed: shared by the JSON handler and the platform's
/// in-process calls ([`crate::platform`]).
pub struct CreateGrant<'a> {
    /// The key (id or ARN; no alias).
    pub key_id: &'a str,
    /// Who the grant is for.
    pub grantee: &'a str,
    /// Who may retire it, besides the grantee with RetireGrant.
    pub retiring: Option<&'a str>,
    /// The operations it allows.
    pub operations: Vec<String>,
    /// Its name (CreateGrant is idempotent by name).
    pub name: Option<&'a str>,
    /// Its encryption-context constraints.
    pub constraints: Option<Constraints>,
    /// Check only.
    pub dry_run: bool,
}

/// A created grant.
pub struct GrantCreated {
    /// The grant id.
    pub grant_id: String,
    /// The grant token (never audited).
    pub grant_token: String,
}

impl std::fmt::Debug for GrantCreated {
    /// The token is a bearer credential: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantCreated")
            .field("grant_id", &self.grant_id)
            .finish_non_exhaustive()
    }
}

impl GrantCreated {
    fn to_json(&self) -> Value {
        json!({ "GrantToken": self.grant_token, "GrantId": self.grant_id })
    }
}

impl Operation for CreateGrant<'_> {
    const NAME: &'static str = "CreateGrant";
    type Output = GrantCreated;

    fn audit_request(&self) -> Value {
        let mut v = json!({
            "KeyId": self.key_id,
            "GranteePrincipal": self.grantee,
            "Operations": self.operations,
        });
        if let Some(r) = self.retiring {
            v["RetiringPrincipal"] = json!(r);
        }
        if let Some(n) = self.name {
            v["Name"] = json!(n);
        }
        if let Some(c) = &self.constraints {
            v["Constraints"] = constraints_json(c);
        }
        with_dry_run(v, self.dry_run)
    }

    fn audit_response(out: &GrantCreated) -> Option<Value> {
        Some(out.to_json())
    }

    fn run(
        &self,
        kms: &Kms,
        ctx: &RequestContext,
        res: &mut Trail,
    ) -> Result<GrantCreated, AwsError> {
        let key = kms.keys.resolve(self.key_id, Names::KeyOnly)?;
        res.push(key.rec.arn.clone());
        let (grantee, retiring, operations) = (self.grantee, self.retiring, &self.operations);
        let constraints = &self.constraints;

        // The grant's context constraints are the encryption context that
        // kms:EncryptionContext:* conditions see (as in AWS).
        let mut cond_ctx = BTreeMap::new();
        if let Some(c) = constraints {
            for m in [&c.subset, &c.equals].into_iter().flatten() {
                cond_ctx.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let mut keys = vec![
            ("kms:grantoperations", operations.clone()),
            ("kms:granteeprincipal", vec![grantee.to_owned()]),
            (
                "kms:grantisforawsresource",
                vec![matches!(ctx.caller.principal, Principal::Service(_)).to_string()],
            ),
        ];
        if let Some(r) = retiring {
            keys.push(("kms:retiringprincipal", vec![r.to_owned()]));
        }
        kms.keys.authorize(
            ctx,
            &key,
            "CreateGrant",
            &Request {
                context: constraints.as_ref().map(|_| &cond_ctx),
                keys,
            },
        )?;
        match key.state() {
            KeyState::PendingDeletion => return Err(KmsError::pending_deletion(&key.rec.arn)),
            KeyState::Disabled => return Err(KmsError::disabled(&key.rec.arn)),
            KeyState::PendingImport => return Err(KmsError::pending_import(&key.rec.arn)),
            KeyState::Enabled => {}
        }
        if self.dry_run {
            return Err(KmsError::dry_run());
        }
        let _w = kms.keys.writer();
        let g = GrantRecord {
            key_id: key.rec.key_id.clone(),
            grant_id: random_hex(32)?,
            token: format!("FGT1{}", random_hex(48)?),
            name: self.name.map(str::to_owned),
            created: now(),
            grantee: grantee.to_owned(),
            retiring: retiring.map(str::to_owned),
            issuing_account: format!("arn:aws:iam::{}:root", key.rec.account),
            operations: operations.clone(),
            constraints: constraints.clone(),
        };
        // A grant with the same name and parameters is returned again, not
        // duplicated (CreateGrant is idempotent by name); both that and the
        // key's state are checked in the write transaction.
        let g = kms.keys.insert_grant(g, |e| {
            self.name.is_some()
                && e.name.as_deref() == self.name
                && e.grantee == grantee
                && e.retiring.as_deref() == retiring
                && &e.operations == operations
                && &e.constraints == constraints
        })?;
        Ok(GrantCreated {
            grant_id: g.grant_id,
            grant_token: g.token,
        })
    }
}

pub fn create_grant(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key_id = p.key_id("KeyId")?;
    let grantee = principal_param(p, "GranteePrincipal", true)?.unwrap_or_default();
    let retiring = principal_param(p, "RetiringPrincipal", false)?;
    let operations = p
        .opt_list("Operations", 0, 64)?
        .ok_or_else(|| crate::params::missing("Operations"))?;
    if operations.is_empty() {
        return Err(KmsError::invalid(
            "1 validation error detected: Value '[]' at 'operations' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    for o in &operations {
        if !GRANT_OPERATIONS.contains(&o.as_str()) {
            return Err(KmsError::validation(
                "operations",
                o,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    GRANT_OPERATIONS.join(", ")
                ),
            ));
        }
    }
    let name = p.opt_str("Name", 1, 256)?;
    if let Some(n) = name {
        check_pattern(
            "Name",
            n,
            |c| c.is_ascii_alphanumeric() || ":/_-".contains(c),
            "^[a-zA-Z0-9:/_-]+$",
        )?;
    }
    let constraints = match p.opt_object("Constraints")? {
        Some(c) => Some(Constraints {
            subset: constraint(&c, "EncryptionContextSubset")?,
            equals: constraint(&c, "EncryptionContextEquals")?,
        }),
        None => None,
    };
    check_grant_tokens(kms, p)?;
    let req = CreateGrant {
        key_id,
        grantee,
        retiring,
        operations,
        name,
        constraints,
        dry_run: p.dry_run()?,
    };
    Ok(req.run(kms, ctx, res)?.to_json())
}

fn grant_json(arn: &str, g: &GrantRecord) -> Value {
    let mut v = json!({
        "KeyId": arn,
        "GrantId": g.grant_id,
        "CreationDate": g.created,
        "GranteePrincipal": g.grantee,
        "IssuingAccount": g.issuing_account,
        "Operations": g.operations,
    });
    if let Value::Object(o) = &mut v {
        if let Some(n) = &g.name {
            o.insert("Name".into(), json!(n));
        }
        if let Some(r) = &g.retiring {
            o.insert("RetiringPrincipal".into(), json!(r));
        }
        if let Some(c) = &g.constraints {
            o.insert("Constraints".into(), constraints_json(c));
        }
    }
    v
}

pub fn list_grants(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let grant_id = p.opt_str("GrantId", 1, 128)?;
    let grantee = principal_param(p, "GranteePrincipal", false)?;
    let limit = p.limit(50)?;
    let offset = p.marker()?;
    authorize(kms, ctx, res, &key, "ListGrants")?;
    let prefix = format!("{}/", key.rec.key_id);
    let all: Vec<Value> = kms
        .keys
        .state()
        .grants
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(_, g)| g)
        .filter(|g| {
            grant_id.is_none_or(|id| g.grant_id == id) && grantee.is_none_or(|x| g.grantee == x)
        })
        .map(|g| grant_json(&key.rec.arn, g))
        .collect();
    let (items, next) = page(&all, offset, limit)?;
    Ok(paged(json!({ "Grants": items }), next))
}

/// ListRetirableGrants: the grants, on any key of the account, that name
/// `RetiringPrincipal` as their retiring principal. Authorized like the
/// other operations on no key (identity policies, resource `*`).
pub fn list_retirable_grants(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    _res: &mut Trail,
) -> Result<Value, AwsError> {
    let retiring = principal_param(p, "RetiringPrincipal", true)?.unwrap_or_default();
    let limit = p.limit(50)?;
    let offset = p.marker()?;
    super::authorize_account_op(ctx, "ListRetirableGrants")?;
    let st = kms.keys.state();
    let all: Vec<Value> = st
        .grants
        .values()
        .filter(|g| g.retiring.as_deref() == Some(retiring))
        .filter_map(|g| {
            let key = st.keys.get(&g.key_id)?;
            (key.rec.account == ctx.caller.account).then(|| grant_json(&key.rec.arn, g))
        })
        .collect();
    drop(st);
    let (items, next) = page(&all, offset, limit)?;
    Ok(paged(json!({ "Grants": items }), next))
}

/// RetireGrant, typed: shared by the JSON handler and the platform's
/// in-process calls ([`crate::platform`]). Names the grant by token, or by
/// key and grant id.
#[derive(Default)]
pub struct RetireGrant<'a> {
    /// The grant token.
    pub grant_token: Option<&'a str>,
    /// The key (id or ARN), with `grant_id`.
    pub key_id: Option<&'a str>,
    /// The grant id.
    pub grant_id: Option<&'a str>,
    /// Check only.
    pub dry_run: bool,
}

impl Operation for RetireGrant<'_> {
    const NAME: &'static str = "RetireGrant";
    type Output = ();

    fn audit_request(&self) -> Value {
        let mut v = json!({});
        if let Some(k) = self.key_id {
            v["KeyId"] = json!(k);
        }
        if let Some(g) = self.grant_id {
            v["GrantId"] = json!(g);
        }
        // The token is never audited (audit::SECRET_FIELDS).
        with_dry_run(v, self.dry_run)
    }

    fn audit_response(_: &()) -> Option<Value> {
        Some(json!({}))
    }

    fn run(&self, kms: &Kms, ctx: &RequestContext, res: &mut Trail) -> Result<(), AwsError> {
        let grant_id = self.grant_id;
        let grant = match (self.grant_token, self.key_id, grant_id) {
            (Some(t), _, _) => {
                let found = kms
                    .keys
                    .state()
                    .grants
                    .values()
                    .find(|g| g.token == t)
                    .cloned();
                let g = found.ok_or_else(KmsError::invalid_grant_token)?;
                if let Some(id) = grant_id
                    && id != g.grant_id
                {
                    return Err(KmsError::invalid_grant_id(id));
                }
                g
            }
            (None, Some(k), Some(id)) => {
                let key = kms.keys.resolve(k, Names::KeyOnly)?;
                let found = kms
                    .keys
                    .state()
                    .grants
                    .get(&format!("{}/{id}", key.rec.key_id))
                    .cloned();
                found.ok_or_else(|| {
                    AwsError::client(
                        "NotFoundException",
                        format!("Grant ID {id} not found for key {}", key.rec.arn),
                    )
                })?
            }
            _ => {
                return Err(KmsError::invalid(
                    "Either GrantToken, or both KeyId and GrantId, must be specified.",
                ));
            }
        };
        // The record names the grant however it was named (a token is never
        // recorded, but it identifies one grant), as CloudTrail's does.
        res.resolved
            .insert("GrantId".into(), json!(grant.grant_id.clone()));
        let key = kms
            .keys
            .state()
            .keys
            .get(&grant.key_id)
            .cloned()
            .ok_or_else(|| KmsError::key_not_found(&grant.key_id))?;
        res.resolved
            .insert("KeyId".into(), json!(key.rec.arn.clone()));
        res.push(key.rec.arn.clone());
        // Who may retire: the retiring principal, the grantee if the grant
        // includes RetireGrant, the issuing account's administrator, or anyone
        // the key policy allows kms:RetireGrant.
        let c = &ctx.caller;
        let by_grant = grant.retiring.as_deref().is_some_and(|r| caller_is(c, r))
            || (caller_is(c, &grant.grantee)
                && grant.operations.iter().any(|o| o == "RetireGrant"))
            || (c.principal == Principal::AccountAdmin && grant.issuing_account == c.arn());
        if !by_grant {
            kms.keys
                .authorize(ctx, &key, "RetireGrant", &Request::default())?;
        }
        if self.dry_run {
            return Err(KmsError::dry_run());
        }
        let _w = kms.keys.writer();
        kms.keys
            .delete_grant(&grant.key_id, &grant.grant_id)
            .map(|_| ())
    }
}

pub fn retire_grant(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let req = RetireGrant {
        grant_token: p.opt_str("GrantToken", 1, 8192)?,
        key_id: p.opt_str("KeyId", 1, 2048)?,
        grant_id: p.opt_str("GrantId", 1, 128)?,
        dry_run: p.dry_run()?,
    };
    req.run(kms, ctx, res)?;
    Ok(json!({}))
}

pub fn revoke_grant(
    kms: &Kms,
    ctx: &RequestContext,
    p: &Params<'_>,
    res: &mut Trail,
) -> Result<Value, AwsError> {
    let key = kms.keys.resolve(p.key_id("KeyId")?, Names::KeyOnly)?;
    let grant_id = p.str("GrantId", 1, 128)?;
    let dry = p.dry_run()?;
    authorize(kms, ctx, res, &key, "RevokeGrant")?;
    let exists = kms
        .keys
        .state()
        .grants
        .contains_key(&format!("{}/{grant_id}", key.rec.key_id));
    if !exists {
        return Err(AwsError::client(
            "NotFoundException",
            format!("Grant ID {grant_id} not found for key {}", key.rec.arn),
        ));
    }
    if dry {
        return Err(KmsError::dry_run());
    }
    let _w = kms.keys.writer();
    kms.keys.delete_grant(&key.rec.key_id, grant_id)?;
    Ok(json!({}))
}
