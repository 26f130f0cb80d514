//! Security groups and their rules: CreateSecurityGroup,
//! DescribeSecurityGroups, DeleteSecurityGroup, Authorize/Revoke
//! SecurityGroupIngress/Egress, DescribeSecurityGroupRules.
//!
//! A rule is stored per peer (EC2's `SecurityGroupRule`); an
//! `IpPermission` in a request or answer groups rules of one protocol and
//! port range.

use std::net::Ipv4Addr;

use ferry_proto::AwsError;
use ferry_proto::net::Ipv4Cidr;
use ferry_proto::query::{Params, Xml};

use super::{Filterable, b, dry_run, filters, ids, int_param, matches, page, required, tag_set};
use crate::Ec2;
use crate::ec2::{State, add_rule, new_id};
use crate::error::ApiError;
use crate::model::{Group, GroupRule, RulePeer, Tag};

fn bad(msg: impl Into<String>) -> AwsError {
    ApiError::InvalidParameterValue(msg.into()).into()
}

/// The default VPC's id.
fn default_vpc(s: &State) -> Option<String> {
    s.vpcs.values().find(|v| v.is_default).map(|v| v.id.clone())
}

/// The group a request names by `GroupId` or (default VPC) `GroupName`.
fn target(s: &State, p: &Params, by_name: bool) -> Result<String, AwsError> {
    if let Some(id) = p.get("GroupId").filter(|v| !v.is_empty()) {
        return s
            .groups
            .contains_key(id)
            .then(|| id.to_owned())
            .ok_or_else(|| ApiError::GroupNotFound(id.to_owned()).into());
    }
    match p.get("GroupName").filter(|v| !v.is_empty()) {
        Some(name) if by_name => {
            let vpc = default_vpc(s).unwrap_or_default();
            s.groups
                .values()
                .find(|g| g.vpc_id == vpc && g.name == name)
                .map(|g| g.id.clone())
                .ok_or_else(|| {
                    ApiError::GroupNameNotFound {
                        name: name.to_owned(),
                        vpc,
                    }
                    .into()
                })
        }
        _ => Err(ApiError::MissingParameter(
            if by_name {
                "groupName or groupId"
            } else {
                "groupId"
            }
            .into(),
        )
        .into()),
    }
}

/// `IpProtocol` as EC2 stores it: `-1`, `tcp`, `udp`, `icmp` or a number.
fn protocol(v: &str) -> Result<String, AwsError> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "-1" | "all" => "-1".into(),
        "tcp" | "6" => "tcp".into(),
        "udp" | "17" => "udp".into(),
        "icmp" | "1" => "icmp".into(),
        n => match n.parse::<u8>() {
            Ok(n) => n.to_string(),
            Err(_) => {
                return Err(bad(format!(
                    "Invalid value '{v}' for IP protocol. Unknown protocol."
                )));
            }
        },
    })
}

/// The port range of one permission, checked for its protocol.
fn ports(proto: &str, from: Option<i64>, to: Option<i64>) -> Result<(i32, i32), AwsError> {
    match proto {
        "tcp" | "udp" => {
            let (Some(f), Some(t)) = (from, to) else {
                return Err(bad(format!(
                    "Invalid value 'Must specify both from and to ports with {}.' for portRange",
                    proto.to_ascii_uppercase()
                )));
            };
            if !(0..=65535).contains(&f) || !(0..=65535).contains(&t) || f > t {
                return Err(bad(format!(
                    "Invalid {} port range {f}-{t}: ports must be 0 to 65535 and from no greater than to",
                    proto.to_ascii_uppercase()
                )));
            }
            Ok((f as i32, t as i32))
        }
        "icmp" => {
            let (f, t) = (from.unwrap_or(-1), to.unwrap_or(-1));
            if !(-1..=255).contains(&f) || !(-1..=255).contains(&t) {
                return Err(bad(format!(
                    "Invalid value '{f}/{t}' for ICMP type/code: each must be -1 (any) or 0 to 255"
                )));
            }
            if f == -1 && t != -1 {
                return Err(bad("Invalid ICMP code: a code needs a type (not -1)"));
            }
            Ok((f as i32, t as i32))
        }
        _ => Ok((-1, -1)),
    }
}

/// The rules a request names: `IpPermissions.N` or the flat
/// `IpProtocol`/`FromPort`/`ToPort`/`CidrIp`/`SourceSecurityGroupName`,
/// each once (no id yet).
fn wanted(s: &State, group: &Group, p: &Params, egress: bool) -> Result<Vec<GroupRule>, AwsError> {
    let mut out: Vec<GroupRule> = Vec::new();
    let mut push = |proto: &str, (f, t): (i32, i32), peer: RulePeer, desc: Option<&str>| {
        let rule = GroupRule {
            id: String::new(),
            group_id: group.id.clone(),
            is_egress: egress,
            protocol: proto.to_owned(),
            from_port: f,
            to_port: t,
            peer,
            description: desc.filter(|d| !d.is_empty()).map(str::to_owned),
            tags: Vec::new(),
        };
        if !out.iter().any(|w| w.same_permission(&rule)) {
            out.push(rule);
        }
    };
    let peer_group = |id: Option<&str>, name: Option<&str>| -> Result<RulePeer, AwsError> {
        let found = match (id.filter(|v| !v.is_empty()), name.filter(|v| !v.is_empty())) {
            (Some(id), _) => s
                .groups
                .get(id)
                .ok_or_else(|| AwsError::from(ApiError::GroupNotFound(id.to_owned())))?,
            (None, Some(name)) => s
                .groups
                .values()
                .find(|g| g.vpc_id == group.vpc_id && g.name == name)
                .ok_or_else(|| {
                    AwsError::from(ApiError::GroupNameNotFound {
                        name: name.to_owned(),
                        vpc: group.vpc_id.clone(),
                    })
                })?,
            (None, None) => {
                return Err(ApiError::MissingParameter("groupId".into()).into());
            }
        };
        if found.vpc_id != group.vpc_id {
            return Err(ApiError::InvalidParameter(
                "You have specified two resources that belong to different networks.".into(),
            )
            .into());
        }
        Ok(RulePeer::Group(found.id.clone()))
    };
    let cidr = |v: &str| -> Result<RulePeer, AwsError> {
        v.parse::<Ipv4Cidr>()
            .map(RulePeer::Cidr)
            .map_err(|_| bad(format!("CIDR block {v} is malformed")))
    };
    for perm in p.indexed("IpPermissions") {
        let proto = protocol(
            perm.get("IpProtocol")
                .ok_or_else(|| AwsError::from(ApiError::MissingParameter("ipProtocol".into())))?,
        )?;
        let range = ports(
            &proto,
            int_param(&perm, "FromPort")?,
            int_param(&perm, "ToPort")?,
        )?;
        for r in perm.indexed("IpRanges") {
            let c = r
                .get("CidrIp")
                .ok_or_else(|| AwsError::from(ApiError::MissingParameter("cidrIp".into())))?;
            push(&proto, range, cidr(c)?, r.get("Description"));
        }
        for g in perm.indexed("Groups") {
            let peer = peer_group(g.get("GroupId"), g.get("GroupName"))?;
            push(&proto, range, peer, g.get("Description"));
        }
    }
    let flat_proto = p.get("IpProtocol");
    let flat_cidr = p.get("CidrIp");
    let flat_group = p.get("SourceSecurityGroupName");
    if flat_proto.is_some() || flat_cidr.is_some() || flat_group.is_some() {
        // The flat form: a source group alone means every protocol.
        let proto = protocol(flat_proto.unwrap_or("-1"))?;
        let range = ports(&proto, int_param(p, "FromPort")?, int_param(p, "ToPort")?)?;
        if let Some(c) = flat_cidr {
            push(&proto, range, cidr(c)?, None);
        }
        if let Some(name) = flat_group {
            push(&proto, range, peer_group(None, Some(name))?, None);
        }
        if flat_cidr.is_none() && flat_group.is_none() {
            push(
                &proto,
                range,
                RulePeer::Cidr(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0)),
                None,
            );
        }
    }
    if out.is_empty() {
        return Err(ApiError::MissingParameter("ipPermissions".into()).into());
    }
    Ok(out)
}

/// How EC2 names a rule in its duplicate message.
fn describe_rule(r: &GroupRule) -> String {
    let peer = match &r.peer {
        RulePeer::Cidr(c) => c.to_string(),
        RulePeer::Group(g) => g.clone(),
    };
    let proto = match r.protocol.as_str() {
        "-1" => "ALL".to_owned(),
        p => p.to_ascii_uppercase(),
    };
    format!(
        "peer: {peer}, {proto}, from port: {}, to port: {}, ALLOW",
        r.from_port, r.to_port
    )
}

fn rule_xml(x: &mut Xml, r: &GroupRule, ec2: &Ec2) {
    x.text("securityGroupRuleId", &r.id)
        .text("groupId", &r.group_id)
        .text("groupOwnerId", ec2.account())
        .text("isEgress", b(r.is_egress))
        .text("ipProtocol", &r.protocol)
        .text("fromPort", &r.from_port.to_string())
        .text("toPort", &r.to_port.to_string());
    match &r.peer {
        RulePeer::Cidr(c) => {
            x.text("cidrIpv4", &c.to_string());
        }
        RulePeer::Group(g) => {
            x.elem("referencedGroupInfo", |i| {
                i.text("groupId", g).text("userId", ec2.account());
            });
        }
    }
    x.opt("description", r.description.as_deref()).text(
        "securityGroupRuleArn",
        &format!(
            "arn:aws:ec2:{}:{}:security-group-rule/{}",
            ec2.region(),
            ec2.account(),
            r.id
        ),
    );
    tag_set(x, &r.tags);
}

/// `IpPermission`s: the rules grouped by protocol and port range, in the
/// order first seen.
fn permissions_xml(x: &mut Xml, name: &str, rules: &[&GroupRule], account: &str) {
    type Key<'a> = (&'a str, i32, i32);
    let mut perms: Vec<(Key<'_>, Vec<&GroupRule>)> = Vec::new();
    for r in rules {
        let key = (r.protocol.as_str(), r.from_port, r.to_port);
        match perms.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => perms.push((key, vec![r])),
        }
    }
    x.items(name, perms, |i, ((proto, from, to), rs)| {
        i.text("ipProtocol", proto);
        if proto != "-1" {
            i.text("fromPort", &from.to_string())
                .text("toPort", &to.to_string());
        }
        i.items(
            "groups",
            rs.iter().filter_map(|r| match &r.peer {
                RulePeer::Group(g) => Some((g, r)),
                RulePeer::Cidr(_) => None,
            }),
            |g, (id, r)| {
                g.opt("description", r.description.as_deref())
                    .text("userId", account)
                    .text("groupId", id);
            },
        )
        .items(
            "ipRanges",
            rs.iter().filter_map(|r| match &r.peer {
                RulePeer::Cidr(c) => Some((c, r)),
                RulePeer::Group(_) => None,
            }),
            |c, (cidr, r)| {
                c.text("cidrIp", &cidr.to_string())
                    .opt("description", r.description.as_deref());
            },
        )
        .items("ipv6Ranges", std::iter::empty::<()>(), |_, ()| {})
        .items("prefixListIds", std::iter::empty::<()>(), |_, ()| {});
    });
}

struct GroupView<'a> {
    g: &'a Group,
    rules: Vec<&'a GroupRule>,
    account: &'a str,
}

impl Filterable for GroupView<'_> {
    fn values(&self, name: &str) -> Option<Vec<String>> {
        let g = self.g;
        let (egress, field) = match name.strip_prefix("egress.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        let rules = || self.rules.iter().filter(move |r| r.is_egress == egress);
        Some(match field {
            "group-id" if !egress => vec![g.id.clone()],
            "group-name" if !egress => vec![g.name.clone()],
            "vpc-id" if !egress => vec![g.vpc_id.clone()],
            "description" if !egress => vec![g.description.clone()],
            "owner-id" if !egress => vec![self.account.to_owned()],
            "ip-permission.protocol" => rules().map(|r| r.protocol.clone()).collect(),
            "ip-permission.from-port" => rules().map(|r| r.from_port.to_string()).collect(),
            "ip-permission.to-port" => rules().map(|r| r.to_port.to_string()).collect(),
            "ip-permission.cidr" => rules()
                .filter_map(|r| match &r.peer {
                    RulePeer::Cidr(c) => Some(c.to_string()),
                    RulePeer::Group(_) => None,
                })
                .collect(),
            "ip-permission.group-id" => rules()
                .filter_map(|r| match &r.peer {
                    RulePeer::Group(g) => Some(g.clone()),
                    RulePeer::Cidr(_) => None,
                })
                .collect(),
            _ => return None,
        })
    }

    fn tags(&self) -> &[Tag] {
        &self.g.tags
    }
}

fn group_xml(x: &mut Xml, v: &GroupView<'_>, ec2: &Ec2) {
    let g = v.g;
    let ingress: Vec<&GroupRule> = v.rules.iter().copied().filter(|r| !r.is_egress).collect();
    let egress: Vec<&GroupRule> = v.rules.iter().copied().filter(|r| r.is_egress).collect();
    x.text("ownerId", ec2.account())
        .text("groupId", &g.id)
        .text("groupName", &g.name)
        .text("groupDescription", &g.description)
        .text("vpcId", &g.vpc_id)
        .text("securityGroupArn", &group_arn(ec2, &g.id));
    permissions_xml(x, "ipPermissions", &ingress, ec2.account());
    permissions_xml(x, "ipPermissionsEgress", &egress, ec2.account());
    tag_set(x, &g.tags);
}

fn group_arn(ec2: &Ec2, id: &str) -> String {
    format!(
        "arn:aws:ec2:{}:{}:security-group/{id}",
        ec2.region(),
        ec2.account()
    )
}

/// CreateSecurityGroup: in `VpcId` or the default VPC; egress all.
pub(crate) fn create(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let name = required(p, "GroupName")?;
    let description = required(p, "GroupDescription")?;
    if name.chars().count() > 255 || description.chars().count() > 255 {
        return Err(bad(
            "Group name and description must be at most 255 characters",
        ));
    }
    if name.to_ascii_lowercase().starts_with("sg-") {
        return Err(bad("Group names may not be in the format sg-*"));
    }
    let tags = super::tag_specs(p, "security-group")?;
    let group = ec2.mutate(|s| {
        let vpc = match p.get("VpcId").filter(|v| !v.is_empty()) {
            Some(v) if s.vpcs.contains_key(v) => v.to_owned(),
            Some(v) => return Err(ApiError::VpcNotFound(v.to_owned()).into()),
            None => default_vpc(s)
                .ok_or_else(|| AwsError::from(ApiError::MissingParameter("vpcId".into())))?,
        };
        if s.groups.values().any(|g| g.vpc_id == vpc && g.name == name) {
            return Err(ApiError::GroupDuplicate {
                name: name.to_owned(),
                vpc,
            }
            .into());
        }
        let g = Group {
            id: new_id("sg"),
            vpc_id: vpc,
            name: name.to_owned(),
            description: description.to_owned(),
            tags,
        };
        s.groups.insert(g.id.clone(), g.clone());
        add_rule(
            s,
            &g.id,
            true,
            RulePeer::Cidr(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0)),
        );
        Ok::<_, AwsError>(g)
    })?;
    let mut x = Xml::new();
    x.text("return", "true")
        .text("groupId", &group.id)
        .text("securityGroupArn", &group_arn(ec2, &group.id));
    tag_set(&mut x, &group.tags);
    Ok(x)
}

/// DescribeSecurityGroups.
pub(crate) fn describe(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let filters = filters(p)?;
    let s = ec2.snapshot();
    let by_id = ids(
        p,
        "GroupId",
        |id| s.groups.contains_key(id),
        ApiError::GroupNotFound,
    )?;
    let dvpc = default_vpc(&s).unwrap_or_default();
    let by_name = p.items("GroupName");
    if let Some(n) = by_name
        .iter()
        .find(|n| !s.groups.values().any(|g| g.vpc_id == dvpc && g.name == **n))
    {
        return Err(ApiError::GroupNameNotFound {
            name: (*n).to_owned(),
            vpc: dvpc,
        }
        .into());
    }
    let mut items = Vec::new();
    for g in s.groups.values() {
        let picked = (by_id.is_empty() && by_name.is_empty())
            || by_id.contains(&g.id.as_str())
            || (g.vpc_id == dvpc && by_name.contains(&g.name.as_str()));
        let v = GroupView {
            g,
            rules: s.rules.values().filter(|r| r.group_id == g.id).collect(),
            account: ec2.account(),
        };
        if picked && matches(&v, &filters)? {
            items.push((g.id.clone(), v));
        }
    }
    let (items, next) = page(items, p, 5, !by_id.is_empty() || !by_name.is_empty())?;
    let mut x = Xml::new();
    x.items("securityGroupInfo", items, |i, v| group_xml(i, &v, ec2));
    super::next_token(&mut x, next);
    Ok(x)
}

/// DeleteSecurityGroup: not the default group, not one an ENI uses or
/// another group's rule names.
pub(crate) fn delete(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let id = ec2.mutate(|s| {
        let id = target(s, p, true)?;
        let Some(g) = s.groups.get(&id) else {
            return Err(ApiError::GroupNotFound(id).into());
        };
        if g.name == "default" {
            return Err(ApiError::CannotDelete(id).into());
        }
        let used = s.enis.values().any(|e| e.groups.contains(&id))
            || s.rules
                .values()
                .any(|r| r.group_id != id && r.peer == RulePeer::Group(id.clone()));
        if used {
            return Err(ApiError::DependencyViolation(format!(
                "resource {id} has a dependent object"
            ))
            .into());
        }
        s.rules.retain(|_, r| r.group_id != id);
        s.groups.remove(&id);
        Ok::<_, AwsError>(id)
    })?;
    let mut x = Xml::new();
    x.text("return", "true").text("groupId", &id);
    Ok(x)
}

/// AuthorizeSecurityGroupIngress / Egress: every rule is new (else
/// `InvalidPermission.Duplicate` and nothing changes).
pub(crate) fn authorize(ec2: &Ec2, p: &Params, egress: bool) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let tags = super::tag_specs(p, "security-group-rule")?;
    let added = ec2.mutate(|s| {
        let id = target(s, p, !egress)?;
        let group = s
            .groups
            .get(&id)
            .cloned()
            .ok_or_else(|| AwsError::from(ApiError::GroupNotFound(id.clone())))?;
        let mut added = Vec::new();
        for mut rule in wanted(s, &group, p, egress)? {
            if s.rules.values().any(|r| r.same_permission(&rule)) {
                return Err(ApiError::PermissionDuplicate(describe_rule(&rule)).into());
            }
            rule.id = new_id("sgr");
            rule.tags.clone_from(&tags);
            s.rules.insert(rule.id.clone(), rule.clone());
            added.push(rule);
        }
        Ok::<_, AwsError>(added)
    })?;
    let mut x = Xml::new();
    x.text("return", "true")
        .items("securityGroupRuleSet", &added, |i, r| rule_xml(i, r, ec2));
    Ok(x)
}

/// RevokeSecurityGroupIngress / Egress, by `SecurityGroupRuleId.N` or by
/// permission. Permissions that match no rule are answered in
/// `unknownIpPermissionSet`; if none matches, `InvalidPermission.NotFound`.
pub(crate) fn revoke(ec2: &Ec2, p: &Params, egress: bool) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let (removed, unknown) = ec2.mutate(|s| {
        let id = target(s, p, !egress)?;
        let mut removed: Vec<GroupRule> = Vec::new();
        let mut unknown: Vec<GroupRule> = Vec::new();
        let rule_ids = p.items("SecurityGroupRuleId");
        if !rule_ids.is_empty() {
            for rid in rule_ids {
                match s.rules.get(rid) {
                    Some(r) if r.group_id == id && r.is_egress == egress => {
                        removed.push(r.clone());
                    }
                    _ => return Err(ApiError::RuleNotFound(rid.to_owned()).into()),
                }
            }
        } else {
            let group = s
                .groups
                .get(&id)
                .cloned()
                .ok_or_else(|| AwsError::from(ApiError::GroupNotFound(id.clone())))?;
            for w in wanted(s, &group, p, egress)? {
                match s.rules.values().find(|r| r.same_permission(&w)) {
                    Some(r) => removed.push(r.clone()),
                    None => unknown.push(w),
                }
            }
            if removed.is_empty() {
                return Err(ApiError::PermissionNotFound.into());
            }
        }
        for r in &removed {
            s.rules.remove(&r.id);
        }
        Ok::<_, AwsError>((removed, unknown))
    })?;
    let mut x = Xml::new();
    x.text("return", "true");
    if !unknown.is_empty() {
        let refs: Vec<&GroupRule> = unknown.iter().collect();
        permissions_xml(&mut x, "unknownIpPermissionSet", &refs, ec2.account());
    }
    x.items("revokedSecurityGroupRuleSet", &removed, |i, r| {
        i.text("securityGroupRuleId", &r.id)
            .text("groupId", &r.group_id)
            .text("isEgress", b(r.is_egress))
            .text("ipProtocol", &r.protocol)
            .text("fromPort", &r.from_port.to_string())
            .text("toPort", &r.to_port.to_string());
        match &r.peer {
            RulePeer::Cidr(c) => i.text("cidrIpv4", &c.to_string()),
            RulePeer::Group(g) => i.text("referencedGroupId", g),
        };
        i.opt("description", r.description.as_deref());
    });
    Ok(x)
}

struct RuleView<'a>(&'a GroupRule);

impl Filterable for RuleView<'_> {
    fn values(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![match name {
            "group-id" => self.0.group_id.clone(),
            "security-group-rule-id" => self.0.id.clone(),
            _ => return None,
        }])
    }

    fn tags(&self) -> &[Tag] {
        &self.0.tags
    }
}

/// DescribeSecurityGroupRules.
pub(crate) fn describe_rules(ec2: &Ec2, p: &Params) -> Result<Xml, AwsError> {
    dry_run(p)?;
    let filters = filters(p)?;
    let s = ec2.snapshot();
    let wanted = ids(
        p,
        "SecurityGroupRuleId",
        |id| s.rules.contains_key(id),
        ApiError::RuleNotFound,
    )?;
    let mut items = Vec::new();
    for r in s.rules.values() {
        if (wanted.is_empty() || wanted.contains(&r.id.as_str()))
            && matches(&RuleView(r), &filters)?
        {
            items.push((r.id.clone(), r));
        }
    }
    let (items, next) = page(items, p, 5, !wanted.is_empty())?;
    let mut x = Xml::new();
    x.items("securityGroupRuleSet", items, |i, r| rule_xml(i, r, ec2));
    super::next_token(&mut x, next);
    Ok(x)
}
