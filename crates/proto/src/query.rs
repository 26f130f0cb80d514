//! The AWS query protocol (IAM, STS): form-encoded parameters in, XML out.
//!
//! A request carries `Action`, `Version` and the operation's members as
//! form fields (POST body or, for GET, the query string). Nested members are
//! flattened the way botocore's query serializer writes them: list items as
//! `Name.member.N` (1-based) and structure members of list items as
//! `Name.member.N.Field` (`Tags.member.1.Key`, `PolicyArns.member.1.arn`).
//! An empty list is sent as `Name=` with an empty value.
//!
//! A response is `<ActionResponse xmlns=NS><ActionResult>...</ActionResult>
//! <ResponseMetadata><RequestId>...</RequestId></ResponseMetadata>
//! </ActionResponse>`; an error is `<ErrorResponse xmlns=NS><Error>
//! <Type>Sender</Type><Code>...</Code><Message>...</Message></Error>
//! <RequestId>...</RequestId></ErrorResponse>` sent with the error's HTTP
//! status. Services build the inside of the result element with [`Xml`];
//! the listener wraps it in its flavour's document ([`Flavor::response`],
//! [`Flavor::error`]).
//!
//! EC2 speaks its own flavour ([`Flavor::Ec2`]): lists are `Name.N` with no
//! `.member.` (`SubnetId.1`, `Filter.1.Value.1`; read them with
//! [`Params::items`] and [`Params::indexed`]), list items in responses are
//! `<item>` ([`Xml::items`]), the response has no `ActionResult` wrapper
//! but a `<requestId>` first ([`render_ec2_response`]), and an error is
//! `<Response><Errors><Error><Code>..` ([`render_ec2_error`]).

use std::collections::BTreeMap;

use crate::{AwsError, RequestContext};

/// A service speaking the query protocol. Like [`crate::JsonService`],
/// calls run on a blocking thread unless [`QueryService::runs_inline`].
pub trait QueryService: Send + Sync {
    /// The XML namespace of responses and errors, e.g.
    /// `https://iam.amazonaws.com/doc/2010-05-08/`.
    fn xml_namespace(&self) -> &'static str;

    /// The API version (`Version` parameter), e.g. `2010-05-08`. A request
    /// naming another version is refused.
    fn api_version(&self) -> &'static str;

    /// Whether `action` is quick and never waits on I/O, so the listener may
    /// run it on its async worker. Default: no.
    fn runs_inline(&self, _action: &str) -> bool {
        false
    }

    /// Which flavour of the protocol the service speaks. Default: IAM's.
    fn flavor(&self) -> Flavor {
        Flavor::Query
    }

    /// Whether the service checks the caller's policies itself (IAM, STS).
    /// If not, the listener's gate checks `SIGNING_NAME:Action` first.
    /// Default: yes.
    fn authorizes_itself(&self) -> bool {
        true
    }

    /// Runs `action` with `params`; the result is the content of the
    /// `<ActionResult>` element (empty for actions without output), or for
    /// [`Flavor::Ec2`] of the response element after its `<requestId>`.
    fn call(&self, ctx: &RequestContext, action: &str, params: &Params) -> Result<Xml, AwsError>;
}

/// The two flavours of the query protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// IAM and STS: `Name.member.N`, `<ActionResult>`, `<ErrorResponse>`.
    Query,
    /// EC2: `Name.N`, `<item>`, `<Response><Errors>`.
    Ec2,
}

impl Flavor {
    /// The whole response document for a successful `action`.
    pub fn response(self, namespace: &str, action: &str, result: &Xml, request_id: &str) -> String {
        match self {
            Flavor::Query => render_response(namespace, action, result, request_id),
            Flavor::Ec2 => render_ec2_response(namespace, action, result, request_id),
        }
    }

    /// The error document.
    pub fn error(self, namespace: &str, error: &AwsError, request_id: &str) -> String {
        match self {
            Flavor::Query => render_error(namespace, error, request_id),
            Flavor::Ec2 => render_ec2_error(error, request_id),
        }
    }

    /// A refusal by the authorization gate in this flavour's words: EC2
    /// says `UnauthorizedOperation` (HTTP 403).
    pub fn refusal(self, mut error: AwsError) -> AwsError {
        if self == Flavor::Ec2 {
            error.code = "UnauthorizedOperation".to_owned();
            error.status = 403;
        }
        error
    }
}

/// The parameters of one query request, by their flattened names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Parses form-encoded fields (`a=1&b=x%20y`); a later field of the same
    /// name replaces an earlier one.
    pub fn parse(form: &[u8]) -> Self {
        let mut p = Self::default();
        p.extend(form);
        p
    }

    /// Adds the form-encoded fields of `form` (e.g. the query string of a
    /// POST whose body holds the rest).
    pub fn extend(&mut self, form: &[u8]) {
        for (k, v) in form_urlencoded::parse(form) {
            self.map.insert(k.into_owned(), v.into_owned());
        }
    }

    /// Sets one parameter (tests, internal callers).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.map.insert(name.into(), value.into());
    }

    /// The `Action` parameter.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// One parameter by its flattened name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A required parameter; its absence is a `ValidationError` worded as
    /// AWS words it.
    pub fn required(&self, name: &str) -> Result<&str, AwsError> {
        self.get(name).ok_or_else(|| {
            validation_error(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                member_name(name)
            ))
        })
    }

    /// An optional integer parameter.
    pub fn int(&self, name: &str) -> Result<Option<i64>, AwsError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                validation_error(format!(
                    "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must be a number",
                    member_name(name)
                ))
            }),
        }
    }

    /// An optional boolean parameter (`true`/`false`).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, AwsError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(validation_error(format!(
                "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must be a boolean",
                member_name(name)
            ))),
        }
    }

    /// Whether any parameter of the list or structure `name` was sent
    /// (`name` itself, or `name.` anything).
    pub fn has(&self, name: &str) -> bool {
        let dotted = format!("{name}.");
        self.map.contains_key(name)
            || self
                .map
                .range(dotted.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&dotted))
    }

    /// The items of a list of strings (`name.member.N`), in index order.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.items(&format!("{name}.member"))
    }

    /// The items of a list of structures (`name.member.N.Field`), in index
    /// order, each as its fields by name.
    pub fn structs(&self, name: &str) -> Vec<BTreeMap<&str, &str>> {
        let prefix = format!("{name}.member.");
        let mut items: BTreeMap<u32, BTreeMap<&str, &str>> = BTreeMap::new();
        for (rest, v) in self.with_prefix(&prefix) {
            if let Some((n, field)) = rest.split_once('.')
                && let Ok(n) = n.parse::<u32>()
            {
                items.entry(n).or_default().insert(field, v);
            }
        }
        items.into_values().collect()
    }

    /// The items of an EC2-style list of strings (`name.N`), in index
    /// order.
    pub fn items(&self, name: &str) -> Vec<&str> {
        let prefix = format!("{name}.");
        let mut items: Vec<(u32, &str)> = self
            .with_prefix(&prefix)
            .into_iter()
            .filter_map(|(rest, v)| rest.parse::<u32>().ok().map(|n| (n, v)))
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// The items of an EC2-style list of structures (`name.N.Field...`), in
    /// index order, each as its own parameters with `name.N.` cut off (so
    /// nested lists read the same way: `IpPermissions.1.IpRanges.1.CidrIp`
    /// is `IpRanges.1.CidrIp` of the first item).
    pub fn indexed(&self, name: &str) -> Vec<Params> {
        let prefix = format!("{name}.");
        let mut items: BTreeMap<u32, Params> = BTreeMap::new();
        for (rest, v) in self.with_prefix(&prefix) {
            if let Some((n, field)) = rest.split_once('.')
                && let Ok(n) = n.parse::<u32>()
            {
                items.entry(n).or_default().insert(field, v);
            }
        }
        items.into_values().collect()
    }

    fn with_prefix(&self, prefix: &str) -> Vec<(&str, &str)> {
        self.map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (&k[prefix.len()..], v.as_str()))
            .collect()
    }
}

/// The model's member name as AWS validation messages spell it
/// (`RoleName` -> `roleName`).
fn member_name(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The query protocol's generic bad-input error (`ValidationError`, 400).
pub fn validation_error(message: impl Into<String>) -> AwsError {
    AwsError::client("ValidationError", message)
}

/// The content of an XML element, built in document order. Text is
/// escaped; element names are the model's member names (never user input).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xml(String);

impl Xml {
    /// An empty fragment.
    pub fn new() -> Self {
        Self::default()
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
        escape_into(&mut self.0, text);
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
        self
    }

    /// Escaped text as the enclosing element's content (a member of a
    /// list of strings: `<member>text</member>`).
    pub fn content(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.0, text);
        self
    }

    /// `<name>text</name>` when `text` is `Some`.
    pub fn opt(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.text(name, t);
        }
        self
    }

    /// `<name>...</name>` with the content `f` writes.
    pub fn elem(&mut self, name: &str, f: impl FnOnce(&mut Xml)) -> &mut Self {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
        f(self);
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
        self
    }

    /// `<name><member>...</member>...</name>`, one `member` per item.
    pub fn list<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.elem(name, |x| {
            for item in items {
                x.elem("member", |m| f(m, item));
            }
        })
    }

    /// `<name><item>...</item>...</name>`, one `item` per entry (EC2).
    pub fn items<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.elem(name, |x| {
            for item in items {
                x.elem("item", |m| f(m, item));
            }
        })
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fragment's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Escapes XML text (element content and attribute values).
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab/CR/LF are not allowed in
            // XML 1.0 at all, not even escaped: replace them.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// The whole response document for a successful `action`.
pub fn render_response(namespace: &str, action: &str, result: &Xml, request_id: &str) -> String {
    let mut out = String::with_capacity(result.0.len() + 256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    out.push_str(action);
    out.push_str("Response xmlns=\"");
    escape_into(&mut out, namespace);
    out.push_str("\">");
    if !result.is_empty() {
        out.push('<');
        out.push_str(action);
        out.push_str("Result>");
        out.push_str(&result.0);
        out.push_str("</");
        out.push_str(action);
        out.push_str("Result>");
    }
    out.push_str("<ResponseMetadata><RequestId>");
    escape_into(&mut out, request_id);
    out.push_str("</RequestId></ResponseMetadata></");
    out.push_str(action);
    out.push_str("Response>");
    out
}

/// The error document; `Type` is `Receiver` for server faults (5xx).
pub fn render_error(namespace: &str, error: &AwsError, request_id: &str) -> String {
    let mut x = Xml::new();
    x.elem("Error", |e| {
        e.text(
            "Type",
            if error.status >= 500 {
                "Receiver"
            } else {
                "Sender"
            },
        )
        .text("Code", &error.code)
        .text("Message", &error.message);
    })
    .text("RequestId", request_id);
    let mut out = String::with_capacity(x.0.len() + 128);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"");
    escape_into(&mut out, namespace);
    out.push_str("\">");
    out.push_str(&x.0);
    out.push_str("</ErrorResponse>");
    out
}

/// The whole EC2 response document for a successful `action`:
/// `<ActionResponse xmlns=NS><requestId>..</requestId>RESULT</ActionResponse>`.
pub fn render_ec2_response(
    namespace: &str,
    action: &str,
    result: &Xml,
    request_id: &str,
) -> String {
    let mut out = String::with_capacity(result.0.len() + 192);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    out.push_str(action);
    out.push_str("Response xmlns=\"");
    escape_into(&mut out, namespace);
    out.push_str("\"><requestId>");
    escape_into(&mut out, request_id);
    out.push_str("</requestId>");
    out.push_str(&result.0);
    out.push_str("</");
    out.push_str(action);
    out.push_str("Response>");
    out
}

/// The EC2 error document: `<Response><Errors><Error><Code>..</Code>
/// <Message>..</Message></Error></Errors><RequestID>..</RequestID></Response>`.
pub fn render_ec2_error(error: &AwsError, request_id: &str) -> String {
    let mut x = Xml::new();
    x.elem("Errors", |e| {
        e.elem("Error", |e| {
            e.text("Code", &error.code).text("Message", &error.message);
        });
    })
    .text("RequestID", request_id);
    let mut out = String::with_capacity(x.0.len() + 64);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>");
    out.push_str(&x.0);
    out.push_str("</Response>");
    out
}

/// A policy document as IAM returns it: URL-encoded (RFC 3986, `%20` for
/// spaces), which botocore's `json_decode_policies` handler decodes with
/// `urllib.parse.unquote` and parses as JSON.
pub fn encode_policy_document(document: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(document.len() * 2);
    for &b in document.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_members_and_lists_parse_as_botocore_writes_them() {
        let p = Params::parse(
            b"Action=CreateRole&Version=2010-05-08&RoleName=r1&Tags.member.2.Key=b&Tags.member.2.Value=2\
              &Tags.member.1.Key=a&Tags.member.1.Value=x%20y&TagKeys.member.10=k10&TagKeys.member.2=k2\
              &PolicyArns.member.1.arn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FReadOnlyAccess&Empty=",
        );
        assert_eq!(p.action(), Some("CreateRole"));
        assert_eq!(p.required("RoleName").unwrap(), "r1");
        let e = p.required("Path").unwrap_err();
        assert_eq!(e.code, "ValidationError");
        assert!(e.message.contains("'path'"), "{}", e.message);
        let tags = p.structs("Tags");
        assert_eq!(tags.len(), 2);
        assert_eq!((tags[0]["Key"], tags[0]["Value"]), ("a", "x y"));
        assert_eq!(tags[1]["Key"], "b");
        assert_eq!(p.list("TagKeys"), vec!["k2", "k10"]);
        assert_eq!(
            p.structs("PolicyArns")[0]["arn"],
            "arn:aws:iam::aws:policy/ReadOnlyAccess"
        );
        assert!(p.has("Empty") && p.list("Empty").is_empty());
        assert!(p.has("Tags") && !p.has("Tag") && !p.has("Nope"));
        assert_eq!(Params::parse(b"N=12").int("N").unwrap(), Some(12));
        assert!(Params::parse(b"N=x").int("N").is_err());
    }

    #[test]
    fn responses_and_errors_are_escaped_and_shaped() {
        let mut x = Xml::new();
        x.elem("Role", |r| {
            r.text("RoleName", "a<b&c").list("Tags", ["k"], |m, k| {
                m.text("Key", k);
            });
        });
        let doc = render_response(
            "https://iam.amazonaws.com/doc/2010-05-08/",
            "GetRole",
            &x,
            "r-1",
        );
        assert!(doc.contains(
            "<GetRoleResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><GetRoleResult><Role><RoleName>a&lt;b&amp;c</RoleName><Tags><member><Key>k</Key></member></Tags></Role></GetRoleResult><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></GetRoleResponse>"
        ), "{doc}");
        let empty = render_response("ns", "DeleteRole", &Xml::new(), "r");
        assert!(!empty.contains("DeleteRoleResult"), "{empty}");
        let e = AwsError::client("NoSuchEntity", "The role with name x cannot be found.")
            .with_status(404);
        let doc = render_error("ns", &e, "r-2");
        assert!(doc.ends_with("<ErrorResponse xmlns=\"ns\"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The role with name x cannot be found.</Message></Error><RequestId>r-2</RequestId></ErrorResponse>"), "{doc}");
        assert!(
            render_error("ns", &AwsError::server("ServiceFailure", "x"), "r")
                .contains("<Type>Receiver</Type>")
        );
    }

    #[test]
    fn ec2_lists_and_documents_have_their_own_shape() {
        let p = Params::parse(
            b"SubnetId.2=b&SubnetId.1=a&SubnetId.10=c&Filter.1.Name=vpc-id&Filter.1.Value.1=v1\
              &Filter.1.Value.2=v2&Filter.2.Name=tag%3AName&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F8",
        );
        assert_eq!(p.items("SubnetId"), vec!["a", "b", "c"]);
        let f = p.indexed("Filter");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].get("Name"), Some("vpc-id"));
        assert_eq!(f[0].items("Value"), vec!["v1", "v2"]);
        assert_eq!(f[1].get("Name"), Some("tag:Name"));
        assert!(f[1].items("Value").is_empty());
        let perms = p.indexed("IpPermissions");
        assert_eq!(
            perms[0].indexed("IpRanges")[0].get("CidrIp"),
            Some("10.0.0.0/8")
        );
        let mut x = Xml::new();
        x.items("vpcSet", ["vpc-1"], |i, v| {
            i.text("vpcId", v);
        });
        let doc = render_ec2_response("ns", "DescribeVpcs", &x, "r-1");
        assert!(doc.ends_with("<DescribeVpcsResponse xmlns=\"ns\"><requestId>r-1</requestId><vpcSet><item><vpcId>vpc-1</vpcId></item></vpcSet></DescribeVpcsResponse>"), "{doc}");
        let e = AwsError::client("InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist");
        let doc = render_ec2_error(&e, "r-2");
        assert!(doc.ends_with("<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>The vpc ID &apos;vpc-1&apos; does not exist</Message></Error></Errors><RequestID>r-2</RequestID></Response>"), "{doc}");
    }

    #[test]
    fn policy_documents_are_url_encoded_for_unquote() {
        assert_eq!(
            encode_policy_document(r#"{"A": "b*"}"#),
            "%7B%22A%22%3A%20%22b%2A%22%7D"
        );
    }
}
