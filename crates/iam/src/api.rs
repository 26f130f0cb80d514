//! The IAM query service (`Version=2010-05-08`): roles, users, access keys,
//! inline and (built-in) managed policies, tags. Every action is
//! authorized for the caller (`iam:ACTION` on the role's or user's ARN, `*`
//! for the List actions without one) before it runs; the administrator
//! passes unless a policy explicitly denies it.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_policy::Policy;
use ferry_proto::authz::{self, Check};
use ferry_proto::query::{Params, QueryService, Xml, encode_policy_document};
use ferry_proto::{AwsError, Principal, RequestContext};

use crate::error::{self, validation};
use crate::iam::{Iam, NewRole, NewUser};
use crate::managed;
use crate::model::{AccessKeyRecord, RoleRecord, Tag, UserRecord};
use crate::{trust, validate};

/// The IAM API's XML namespace.
pub const NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
/// The IAM API version.
pub const VERSION: &str = "2010-05-08";

/// The IAM query service over the identity store.
pub struct IamService {
    iam: Arc<Iam>,
}

impl IamService {
    /// The service over `iam`.
    pub fn new(iam: Arc<Iam>) -> Self {
        Self { iam }
    }
}

type Handler = fn(&IamService, &RequestContext, &Params) -> Result<Xml, AwsError>;

fn handler(action: &str) -> Option<Handler> {
    Some(match action {
        "CreateRole" => IamService::create_role,
        "GetRole" => IamService::get_role,
        "ListRoles" => IamService::list_roles,
        "DeleteRole" => IamService::delete_role,
        "UpdateRole" => IamService::update_role,
        "UpdateAssumeRolePolicy" => IamService::update_assume_role_policy,
        "TagRole" => |s, c, p| s.tag(Kind::Role, c, p),
        "UntagRole" => |s, c, p| s.untag(Kind::Role, c, p),
        "ListRoleTags" => |s, c, p| s.list_tags(Kind::Role, c, p),
        "PutRolePolicy" => |s, c, p| s.put_policy(Kind::Role, c, p),
        "GetRolePolicy" => |s, c, p| s.get_policy(Kind::Role, c, p),
        "DeleteRolePolicy" => |s, c, p| s.delete_policy(Kind::Role, c, p),
        "ListRolePolicies" => |s, c, p| s.list_policies(Kind::Role, c, p),
        "AttachRolePolicy" => |s, c, p| s.attach(Kind::Role, c, p),
        "DetachRolePolicy" => |s, c, p| s.detach(Kind::Role, c, p),
        "ListAttachedRolePolicies" => |s, c, p| s.list_attached(Kind::Role, c, p),
        "CreateUser" => IamService::create_user,
        "GetUser" => IamService::get_user,
        "ListUsers" => IamService::list_users,
        "DeleteUser" => IamService::delete_user,
        "TagUser" => |s, c, p| s.tag(Kind::User, c, p),
        "UntagUser" => |s, c, p| s.untag(Kind::User, c, p),
        "ListUserTags" => |s, c, p| s.list_tags(Kind::User, c, p),
        "PutUserPolicy" => |s, c, p| s.put_policy(Kind::User, c, p),
        "GetUserPolicy" => |s, c, p| s.get_policy(Kind::User, c, p),
        "DeleteUserPolicy" => |s, c, p| s.delete_policy(Kind::User, c, p),
        "ListUserPolicies" => |s, c, p| s.list_policies(Kind::User, c, p),
        "AttachUserPolicy" => |s, c, p| s.attach(Kind::User, c, p),
        "DetachUserPolicy" => |s, c, p| s.detach(Kind::User, c, p),
        "ListAttachedUserPolicies" => |s, c, p| s.list_attached(Kind::User, c, p),
        "CreateAccessKey" => IamService::create_access_key,
        "DeleteAccessKey" => IamService::delete_access_key,
        "ListAccessKeys" => IamService::list_access_keys,
        "UpdateAccessKey" => IamService::update_access_key,
        _ => return None,
    })
}

impl QueryService for IamService {
    fn xml_namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn api_version(&self) -> &'static str {
        VERSION
    }

    fn call(&self, ctx: &RequestContext, action: &str, params: &Params) -> Result<Xml, AwsError> {
        let h = handler(action).ok_or_else(|| {
            AwsError::client(
                "InvalidAction",
                format!("Could not find operation {action} for version {VERSION}"),
            )
        })?;
        // Replicas: what another process changed is loaded first.
        self.iam.refresh()?;
        h(self, ctx, params)
    }
}

/// Whether the caller may do `action` on `resource` (403 `AccessDenied`).
fn allow(ctx: &RequestContext, action: &str, resource: &str) -> Result<(), AwsError> {
    authz::authorize(&ctx.caller, &Check::new(action, resource), None)
        .map_err(|d| d.into_error("AccessDenied").with_status(403))
}

/// A timestamp as IAM and STS answer it (`2024-05-01T12:00:00Z`).
pub fn fmt_time(unix: i64) -> String {
    const F: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(F).ok())
        .unwrap_or_default()
}

/// One page of `items` (sorted by their marker keys) after `Marker`, at
/// most `MaxItems` (1..=1000, default 100); the marker of the next page.
fn page<T>(items: Vec<(String, T)>, p: &Params) -> Result<(Vec<T>, Option<String>), AwsError> {
    let max = p.int("MaxItems")?.unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Err(validation(format!(
            "1 validation error detected: Value '{max}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000"
        )));
    }
    let marker = p.get("Marker");
    let mut rest = items
        .into_iter()
        .filter(|(k, _)| marker.is_none_or(|m| k.as_str() >= m));
    let max = usize::try_from(max).unwrap_or(100);
    let out: Vec<T> = rest.by_ref().take(max).map(|(_, v)| v).collect();
    Ok((out, rest.next().map(|(k, _)| k)))
}

fn page_end(x: &mut Xml, next: Option<String>) {
    x.text("IsTruncated", if next.is_some() { "true" } else { "false" })
        .opt("Marker", next.as_deref());
}

fn tags_param(p: &Params, required: bool) -> Result<Vec<Tag>, AwsError> {
    if required && !p.has("Tags") {
        p.required("Tags")?;
    }
    let mut tags = Vec::new();
    for t in p.structs("Tags") {
        let (Some(k), Some(v)) = (t.get("Key"), t.get("Value")) else {
            return Err(validation(
                "1 validation error detected: Value null at 'tags.member.key' failed to satisfy constraint: Member must not be null",
            ));
        };
        tags.push(Tag {
            key: (*k).to_owned(),
            value: (*v).to_owned(),
        });
    }
    if tags.len() > validate::MAX_TAGS {
        return Err(validation(format!(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to {}",
            validate::MAX_TAGS
        )));
    }
    validate::tags(&tags)?;
    Ok(tags)
}

fn write_tags(x: &mut Xml, tags: &[Tag]) {
    x.list("Tags", tags, |m, t| {
        m.text("Key", &t.key).text("Value", &t.value);
    });
}

fn write_role(x: &mut Xml, r: &RoleRecord, detail: bool) {
    x.text("Path", &r.path)
        .text("RoleName", &r.name)
        .text("RoleId", &r.id)
        .text("Arn", &r.arn)
        .text("CreateDate", &fmt_time(r.created))
        .text(
            "AssumeRolePolicyDocument",
            &encode_policy_document(&r.trust),
        )
        .opt("Description", r.description.as_deref())
        .text("MaxSessionDuration", &r.max_session.to_string());
    if detail && !r.tags.is_empty() {
        write_tags(x, &r.tags);
    }
}

fn write_user(x: &mut Xml, u: &UserRecord, detail: bool) {
    x.text("Path", &u.path)
        .text("UserName", &u.name)
        .text("UserId", &u.id)
        .text("Arn", &u.arn)
        .text("CreateDate", &fmt_time(u.created));
    if detail && !u.tags.is_empty() {
        write_tags(x, &u.tags);
    }
}

/// Non-whitespace characters: how IAM measures policy size quotas.
fn policy_size(doc: &str) -> usize {
    doc.chars().filter(|c| !c.is_whitespace()).count()
}

/// Roles and users share the policy and tag actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Role,
    User,
}

/// The parts of a role or user the shared actions change.
struct Parts<'a> {
    name: &'a str,
    inline: &'a mut BTreeMap<String, String>,
    attached: &'a mut Vec<String>,
    tags: &'a mut Vec<Tag>,
}

impl Kind {
    /// `Role` or `User`, as action and member names spell it.
    fn title(self) -> &'static str {
        match self {
            Kind::Role => "Role",
            Kind::User => "User",
        }
    }

    fn lower(self) -> &'static str {
        match self {
            Kind::Role => "role",
            Kind::User => "user",
        }
    }

    /// The name member (`RoleName`, `UserName`), validated.
    fn name(self, p: &Params) -> Result<&str, AwsError> {
        let member = match self {
            Kind::Role => "RoleName",
            Kind::User => "UserName",
        };
        let name = p.required(member)?;
        let max = match self {
            Kind::Role => 64,
            Kind::User => 128,
        };
        validate::name(&format!("{}Name", self.lower()), name, max)?;
        Ok(name)
    }

    fn arn(self, iam: &Iam, name: &str) -> String {
        match self {
            Kind::Role => iam.role_arn(name),
            Kind::User => iam.user_arn(name),
        }
    }

    /// The inline policies, attached ARNs and tags.
    #[allow(clippy::type_complexity)]
    fn read(
        self,
        iam: &Iam,
        name: &str,
    ) -> Result<(String, BTreeMap<String, String>, Vec<String>, Vec<Tag>), AwsError> {
        match self {
            Kind::Role => iam
                .role(name)
                .map(|r| (r.name, r.inline, r.attached, r.tags)),
            Kind::User => iam
                .user(name)
                .map(|u| (u.name, u.inline, u.attached, u.tags)),
        }
    }

    fn update<R>(
        self,
        iam: &Iam,
        name: &str,
        f: impl FnOnce(Parts<'_>) -> Result<R, AwsError>,
    ) -> Result<R, AwsError> {
        match self {
            Kind::Role => iam.update_role(name, |r| {
                f(Parts {
                    name: &r.name,
                    inline: &mut r.inline,
                    attached: &mut r.attached,
                    tags: &mut r.tags,
                })
            }),
            Kind::User => iam.update_user(name, |u| {
                f(Parts {
                    name: &u.name,
                    inline: &mut u.inline,
                    attached: &mut u.attached,
                    tags: &mut u.tags,
                })
            }),
        }
    }

    /// The total size of inline policies one role or user may have.
    fn inline_quota(self) -> usize {
        match self {
            Kind::Role => 10_240,
            Kind::User => 2_048,
        }
    }
}

/// The most managed policies one role or user may have attached.
const MAX_ATTACHED: usize = 10;

impl IamService {
    // ---- roles ---------------------------------------------------------

    fn create_role(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = Kind::Role.name(p)?;
        let path = p.get("Path").unwrap_or("/");
        validate::path(path)?;
        let doc = p.required("AssumeRolePolicyDocument")?;
        validate::policy_document("assumeRolePolicyDocument", doc)?;
        let description = p.get("Description");
        if let Some(d) = description {
            validate::description(d)?;
        }
        let max_session = match p.int("MaxSessionDuration")? {
            Some(v) => validate::max_session_duration(v)?,
            None => 3600,
        };
        let tags = tags_param(p, false)?;
        refuse_boundary(p)?;
        allow(ctx, "iam:CreateRole", &self.iam.arn("role", path, name))?;
        trust::parse(doc)?;
        trust_size(doc)?;
        let rec = self.iam.create_role(NewRole {
            name: name.to_owned(),
            path: path.to_owned(),
            trust: doc.to_owned(),
            description: description.map(str::to_owned),
            max_session,
            tags,
        })?;
        let mut x = Xml::new();
        x.elem("Role", |r| write_role(r, &rec, true));
        Ok(x)
    }

    fn get_role(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = Kind::Role.name(p)?;
        allow(ctx, "iam:GetRole", &self.iam.role_arn(name))?;
        let rec = self.iam.role(name)?;
        let mut x = Xml::new();
        x.elem("Role", |r| {
            write_role(r, &rec, true);
            r.elem("RoleLastUsed", |_| {});
        });
        Ok(x)
    }

    fn list_roles(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let prefix = p.get("PathPrefix").unwrap_or("/");
        validate::path_prefix(prefix)?;
        allow(ctx, "iam:ListRoles", "*")?;
        let (roles, next) = page(self.iam.roles(prefix), p)?;
        let mut x = Xml::new();
        x.list("Roles", &roles, |m, r| write_role(m, r, false));
        page_end(&mut x, next);
        Ok(x)
    }

    fn delete_role(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = Kind::Role.name(p)?;
        allow(ctx, "iam:DeleteRole", &self.iam.role_arn(name))?;
        self.iam.delete_role(name)?;
        Ok(Xml::new())
    }

    fn update_role(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = Kind::Role.name(p)?;
        let description = p.get("Description");
        if let Some(d) = description {
            validate::description(d)?;
        }
        let max_session = p
            .int("MaxSessionDuration")?
            .map(validate::max_session_duration)
            .transpose()?;
        allow(ctx, "iam:UpdateRole", &self.iam.role_arn(name))?;
        self.iam.update_role(name, |r| {
            if let Some(d) = description {
                r.description = Some(d.to_owned());
            }
            if let Some(m) = max_session {
                r.max_session = m;
            }
            Ok(())
        })?;
        Ok(Xml::new())
    }

    fn update_assume_role_policy(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = Kind::Role.name(p)?;
        let doc = p.required("PolicyDocument")?;
        validate::policy_document("policyDocument", doc)?;
        allow(ctx, "iam:UpdateAssumeRolePolicy", &self.iam.role_arn(name))?;
        self.iam.role(name)?;
        trust::parse(doc)?;
        trust_size(doc)?;
        self.iam.update_role(name, |r| {
            r.trust = doc.to_owned();
            Ok(())
        })?;
        Ok(Xml::new())
    }

    // ---- shared: tags ----------------------------------------------------

    fn tag(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        let tags = tags_param(p, true)?;
        allow(
            ctx,
            &format!("iam:Tag{}", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        kind.update(&self.iam, name, |e| {
            for t in tags {
                match e
                    .tags
                    .iter_mut()
                    .find(|o| o.key.eq_ignore_ascii_case(&t.key))
                {
                    Some(o) => o.value = t.value,
                    None => e.tags.push(t),
                }
            }
            if e.tags.len() > validate::MAX_TAGS {
                return Err(error::limit_exceeded(format!(
                    "Cannot exceed quota for TagsPer{}: {}",
                    kind.title(),
                    validate::MAX_TAGS
                )));
            }
            Ok(())
        })?;
        Ok(Xml::new())
    }

    fn untag(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        if !p.has("TagKeys") {
            p.required("TagKeys")?;
        }
        let keys = p.list("TagKeys");
        allow(
            ctx,
            &format!("iam:Untag{}", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        kind.update(&self.iam, name, |e| {
            e.tags
                .retain(|t| !keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)));
            Ok(())
        })?;
        Ok(Xml::new())
    }

    fn list_tags(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        allow(
            ctx,
            &format!("iam:List{}Tags", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        let (_, _, _, tags) = kind.read(&self.iam, name)?;
        let keyed = tags
            .into_iter()
            .enumerate()
            .map(|(i, t)| (format!("{i:05}"), t))
            .collect();
        let (tags, next) = page(keyed, p)?;
        let mut x = Xml::new();
        write_tags(&mut x, &tags);
        page_end(&mut x, next);
        Ok(x)
    }

    // ---- shared: inline policies -----------------------------------------

    fn policy_name(p: &Params) -> Result<&str, AwsError> {
        let name = p.required("PolicyName")?;
        validate::name("policyName", name, 128)?;
        Ok(name)
    }

    fn put_policy(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        let policy = Self::policy_name(p)?;
        let doc = p.required("PolicyDocument")?;
        validate::policy_document("policyDocument", doc)?;
        allow(
            ctx,
            &format!("iam:Put{}Policy", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        kind.read(&self.iam, name)?;
        Policy::parse_identity(doc).map_err(|e| error::malformed_policy(e.0))?;
        kind.update(&self.iam, name, |e| {
            e.inline.insert(policy.to_owned(), doc.to_owned());
            let total: usize = e.inline.values().map(|d| policy_size(d)).sum();
            if total > kind.inline_quota() {
                return Err(error::limit_exceeded(format!(
                    "Maximum policy size of {} bytes exceeded for {} {}",
                    kind.inline_quota(),
                    kind.lower(),
                    e.name
                )));
            }
            Ok(())
        })?;
        Ok(Xml::new())
    }

    fn get_policy(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        let policy = Self::policy_name(p)?;
        allow(
            ctx,
            &format!("iam:Get{}Policy", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        let (display, inline, _, _) = kind.read(&self.iam, name)?;
        let doc = inline
            .get(policy)
            .ok_or_else(|| no_such_policy(kind, policy))?;
        let mut x = Xml::new();
        x.text(&format!("{}Name", kind.title()), &display)
            .text("PolicyName", policy)
            .text("PolicyDocument", &encode_policy_document(doc));
        Ok(x)
    }

    fn delete_policy(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        let policy = Self::policy_name(p)?;
        allow(
            ctx,
            &format!("iam:Delete{}Policy", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        kind.update(&self.iam, name, |e| {
            e.inline
                .remove(policy)
                .map(drop)
                .ok_or_else(|| no_such_policy(kind, policy))
        })?;
        Ok(Xml::new())
    }

    fn list_policies(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        allow(
            ctx,
            &format!("iam:List{}Policies", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        let (_, inline, _, _) = kind.read(&self.iam, name)?;
        let names = inline.into_keys().map(|n| (n.clone(), n)).collect();
        let (names, next) = page(names, p)?;
        let mut x = Xml::new();
        x.list("PolicyNames", &names, |m, n| {
            // A list of strings: each member is the text itself.
            m.content(n);
        });
        page_end(&mut x, next);
        Ok(x)
    }

    // ---- shared: managed policies ----------------------------------------

    fn policy_arn(p: &Params) -> Result<&str, AwsError> {
        let arn = p.required("PolicyArn")?;
        if !(20..=2048).contains(&arn.len()) {
            return Err(validation(format!(
                "1 validation error detected: Value '{arn}' at 'policyArn' failed to satisfy constraint: Member must have length greater than or equal to 20"
            )));
        }
        if !arn.starts_with("arn:") {
            return Err(error::invalid_input(format!("ARN {arn} is not valid.")));
        }
        Ok(arn)
    }

    fn attach(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        let arn = Self::policy_arn(p)?;
        allow(
            ctx,
            &format!("iam:Attach{}Policy", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        kind.read(&self.iam, name)?;
        if managed::find(arn).is_none() {
            return Err(error::no_such_entity(format!(
                "Policy {arn} does not exist or is not attachable."
            )));
        }
        kind.update(&self.iam, name, |e| {
            if e.attached.iter().any(|a| a == arn) {
                return Ok(());
            }
            if e.attached.len() >= MAX_ATTACHED {
                return Err(error::limit_exceeded(format!(
                    "Cannot exceed quota for PoliciesPer{}: {MAX_ATTACHED}",
                    kind.title()
                )));
            }
            e.attached.push(arn.to_owned());
            Ok(())
        })?;
        Ok(Xml::new())
    }

    fn detach(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        let arn = Self::policy_arn(p)?;
        allow(
            ctx,
            &format!("iam:Detach{}Policy", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        kind.update(&self.iam, name, |e| {
            let before = e.attached.len();
            e.attached.retain(|a| a != arn);
            if e.attached.len() == before {
                return Err(error::no_such_entity(format!(
                    "Policy {arn} was not found."
                )));
            }
            Ok(())
        })?;
        Ok(Xml::new())
    }

    fn list_attached(&self, kind: Kind, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = kind.name(p)?;
        let prefix = p.get("PathPrefix").unwrap_or("/");
        allow(
            ctx,
            &format!("iam:ListAttached{}Policies", kind.title()),
            &kind.arn(&self.iam, name),
        )?;
        let (_, _, attached, _) = kind.read(&self.iam, name)?;
        let items = attached
            .iter()
            .filter_map(|a| managed::find(a))
            .filter(|m| m.path.starts_with(prefix))
            .map(|m| (m.arn.to_owned(), m))
            .collect();
        let (items, next) = page(items, p)?;
        let mut x = Xml::new();
        x.list("AttachedPolicies", items, |m, pol| {
            m.text("PolicyName", pol.name).text("PolicyArn", pol.arn);
        });
        page_end(&mut x, next);
        Ok(x)
    }

    // ---- users ---------------------------------------------------------

    fn create_user(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = p.required("UserName")?;
        validate::name("userName", name, 64)?;
        let path = p.get("Path").unwrap_or("/");
        validate::path(path)?;
        let tags = tags_param(p, false)?;
        refuse_boundary(p)?;
        allow(ctx, "iam:CreateUser", &self.iam.arn("user", path, name))?;
        let rec = self.iam.create_user(NewUser {
            name: name.to_owned(),
            path: path.to_owned(),
            tags,
        })?;
        let mut x = Xml::new();
        x.elem("User", |u| write_user(u, &rec, true));
        Ok(x)
    }

    fn get_user(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = match p.get("UserName") {
            Some(n) => {
                validate::name("userName", n, 128)?;
                n.to_owned()
            }
            None => match &ctx.caller.principal {
                // The root user: as AWS answers it, without a name or path.
                Principal::AccountAdmin => {
                    allow(ctx, "iam:GetUser", &ctx.caller.arn())?;
                    let mut x = Xml::new();
                    x.elem("User", |u| {
                        u.text("UserId", &ctx.caller.account)
                            .text("Arn", &ctx.caller.arn())
                            .text("CreateDate", &fmt_time(self.iam.created()));
                    });
                    return Ok(x);
                }
                _ => self.own_user(ctx)?,
            },
        };
        allow(ctx, "iam:GetUser", &self.iam.user_arn(&name))?;
        let rec = self.iam.user(&name)?;
        let mut x = Xml::new();
        x.elem("User", |u| write_user(u, &rec, true));
        Ok(x)
    }

    fn list_users(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let prefix = p.get("PathPrefix").unwrap_or("/");
        validate::path_prefix(prefix)?;
        allow(ctx, "iam:ListUsers", "*")?;
        let (users, next) = page(self.iam.users(prefix), p)?;
        let mut x = Xml::new();
        x.list("Users", &users, |m, u| write_user(m, u, false));
        page_end(&mut x, next);
        Ok(x)
    }

    fn delete_user(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let name = Kind::User.name(p)?;
        allow(ctx, "iam:DeleteUser", &self.iam.user_arn(name))?;
        self.iam.delete_user(name)?;
        Ok(Xml::new())
    }

    // ---- access keys ---------------------------------------------------

    /// The caller's own user (access-key actions without `UserName`).
    fn own_user(&self, ctx: &RequestContext) -> Result<String, AwsError> {
        match &ctx.caller.principal {
            Principal::Iam(arn) => self.iam.user_name_of(arn).ok_or_else(|| {
                error::no_such_entity(format!("The user with ARN {arn} cannot be found."))
            }),
            _ => Err(validation(
                "Must specify userName when calling with non-User credentials",
            )),
        }
    }

    fn target_user(&self, ctx: &RequestContext, p: &Params) -> Result<String, AwsError> {
        match p.get("UserName") {
            Some(n) => {
                validate::name("userName", n, 128)?;
                Ok(n.to_owned())
            }
            None => self.own_user(ctx),
        }
    }

    fn access_key_id(p: &Params) -> Result<&str, AwsError> {
        let id = p.required("AccessKeyId")?;
        if !(16..=128).contains(&id.len())
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(validation(format!(
                "1 validation error detected: Value '{id}' at 'accessKeyId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w]+"
            )));
        }
        Ok(id)
    }

    fn create_access_key(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let user = self.target_user(ctx, p)?;
        allow(ctx, "iam:CreateAccessKey", &self.iam.user_arn(&user))?;
        let (rec, secret) = self.iam.create_access_key(&user)?;
        let display = self.iam.user(&user)?.name;
        let mut x = Xml::new();
        x.elem("AccessKey", |k| {
            k.text("UserName", &display)
                .text("AccessKeyId", &rec.key_id)
                .text("Status", &rec.status)
                .text("SecretAccessKey", &secret)
                .text("CreateDate", &fmt_time(rec.created));
        });
        Ok(x)
    }

    fn delete_access_key(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let id = Self::access_key_id(p)?;
        let user = self.target_user(ctx, p)?;
        allow(ctx, "iam:DeleteAccessKey", &self.iam.user_arn(&user))?;
        self.iam.delete_access_key(&user, id)?;
        Ok(Xml::new())
    }

    fn update_access_key(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let id = Self::access_key_id(p)?;
        let status = p.required("Status")?;
        if !matches!(status, "Active" | "Inactive") {
            return Err(validation(format!(
                "1 validation error detected: Value '{status}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
            )));
        }
        let user = self.target_user(ctx, p)?;
        allow(ctx, "iam:UpdateAccessKey", &self.iam.user_arn(&user))?;
        self.iam.set_access_key_status(&user, id, status)?;
        Ok(Xml::new())
    }

    fn list_access_keys(&self, ctx: &RequestContext, p: &Params) -> Result<Xml, AwsError> {
        let user = self.target_user(ctx, p)?;
        allow(ctx, "iam:ListAccessKeys", &self.iam.user_arn(&user))?;
        let display = self.iam.user(&user)?.name;
        let keys: Vec<(String, AccessKeyRecord)> = self
            .iam
            .access_keys(&user)?
            .into_iter()
            .map(|k| (k.key_id.clone(), k))
            .collect();
        let (keys, next) = page(keys, p)?;
        let mut x = Xml::new();
        x.list("AccessKeyMetadata", &keys, |m, k| {
            m.text("UserName", &display)
                .text("AccessKeyId", &k.key_id)
                .text("Status", &k.status)
                .text("CreateDate", &fmt_time(k.created));
        });
        page_end(&mut x, next);
        Ok(x)
    }
}

fn no_such_policy(kind: Kind, policy: &str) -> AwsError {
    error::no_such_entity(format!(
        "The {} policy with name {policy} cannot be found.",
        kind.lower()
    ))
}

/// Permissions boundaries are not supported: refusing them is safer than
/// ignoring a limit the caller meant to set.
fn refuse_boundary(p: &Params) -> Result<(), AwsError> {
    if p.get("PermissionsBoundary").is_some() {
        return Err(error::invalid_input(
            "PermissionsBoundary is not supported by ferry.",
        ));
    }
    Ok(())
}

/// A trust policy's size quota (ACLSizePerRole, 2048 by default).
fn trust_size(doc: &str) -> Result<(), AwsError> {
    if policy_size(doc) > 2048 {
        return Err(error::limit_exceeded(
            "Cannot exceed quota for ACLSizePerRole: 2048",
        ));
    }
    Ok(())
}
