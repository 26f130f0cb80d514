//! SSM Parameter Store (`X-Amz-Target: AmazonSSM.*`, SigV4 name `ssm`).
//!
//! String and StringList values are stored as given; each SecureString
//! version is sealed under a fresh data key from its `KeyId`
//! (`alias/aws/ssm` by default) with the encryption context
//! `{"PARAMETER_ARN": ARN}`, and opened only for `WithDecryption` (a KMS
//! Decrypt as the caller, audited); without it the sealed form is returned
//! in base64, as AWS returns the ciphertext. Operations:
//! - [`params`]: PutParameter, GetParameter, GetParameters,
//!   DeleteParameter, DeleteParameters;
//! - [`query`]: GetParametersByPath, DescribeParameters,
//!   GetParameterHistory, and the tag operations.
//!
//! Authorization: `ssm:ACTION` on the parameter's ARN (on the path's for
//! GetParametersByPath, `*` for DescribeParameters) by the caller's
//! identity policies (`ferry_proto::authz`).

mod errors;
pub(crate) mod model;
mod params;
mod query;

use std::sync::Arc;

use ferry_kms::{Kms, ManagedKey};
use ferry_proto::authz::{Check, authorize};
use ferry_proto::{AwsError, JsonService, RequestContext};
use ferry_store::Store;
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use crate::seal::{Context, Vault};
use crate::util::b64;
pub use model::ParameterType;
use model::{PARAMETERS, ParameterRecord, Stored, Version};

/// A parameter's value as [`Ssm::get_parameter`] returns it. Its `Debug`
/// prints no value.
pub struct ParameterValue {
    /// The parameter's ARN.
    pub arn: String,
    /// The parameter's name.
    pub name: String,
    /// The version read.
    pub version: u64,
    /// Its type.
    pub kind: ParameterType,
    /// The value: for a SecureString read without decryption, the sealed
    /// form in base64. Wiped on drop.
    pub value: Zeroizing<String>,
}

impl std::fmt::Debug for ParameterValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParameterValue")
            .field("arn", &self.arn)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// The Parameter Store service.
pub struct Ssm {
    pub(crate) store: Arc<Store>,
    pub(crate) vault: Vault,
    /// `arn:aws:ssm:REGION:ACCOUNT:parameter`
    pub(crate) arn_prefix: String,
}

/// One operation's handler.
type Handler = fn(&Ssm, &RequestContext, &[u8]) -> Result<Value, AwsError>;

fn handler(operation: &str) -> Option<Handler> {
    Some(match operation {
        "PutParameter" => params::put,
        "GetParameter" => params::get,
        "GetParameters" => params::get_many,
        "DeleteParameter" => params::delete,
        "DeleteParameters" => params::delete_many,
        "GetParametersByPath" => query::by_path,
        "DescribeParameters" => query::describe,
        "GetParameterHistory" => query::history,
        "AddTagsToResource" => query::add_tags,
        "RemoveTagsFromResource" => query::remove_tags,
        "ListTagsForResource" => query::list_tags,
        _ => return None,
    })
}

/// A parameter reference: a name or ARN, and an optional `:selector`.
pub(crate) struct Reference<'a> {
    /// The candidate names (an ARN's resource may name `x` or `/x`).
    pub names: Vec<String>,
    /// The selector after `:` (a version number or a label), if any.
    pub selector: Option<&'a str>,
}

impl Ssm {
    /// Parameter Store over `store`, sealing SecureStrings with `kms`
    /// (whose account and region it serves).
    pub fn new(store: Arc<Store>, kms: Arc<Kms>) -> Self {
        let arn_prefix = format!("arn:aws:ssm:{}:{}:parameter", kms.region(), kms.account());
        Self {
            store,
            vault: Vault::new(kms, ManagedKey::Ssm),
            arn_prefix,
        }
    }

    /// Reads a parameter as `ctx`'s caller: `name_or_arn` is a name or an
    /// ARN, optionally with `:VERSION`. Authorized as `ssm:GetParameter`;
    /// a SecureString read `with_decryption` is a KMS Decrypt as the
    /// caller (authorized by the key and audited). The control plane
    /// resolves a container's `secrets` with this, as the task's
    /// execution role.
    pub fn get_parameter(
        &self,
        ctx: &RequestContext,
        name_or_arn: &str,
        with_decryption: bool,
    ) -> Result<ParameterValue, AwsError> {
        params::fetch(self, ctx, "ssm:GetParameter", name_or_arn, with_decryption).map(|(v, _)| v)
    }

    /// The ARN of the parameter `name`: `parameter/x` for `x` and `/x`.
    pub(crate) fn arn(&self, name: &str) -> String {
        if name.starts_with('/') {
            format!("{}{name}", self.arn_prefix)
        } else {
            format!("{}/{name}", self.arn_prefix)
        }
    }

    /// Splits a reference into candidate names and a selector.
    pub(crate) fn reference<'a>(&self, input: &'a str) -> Reference<'a> {
        let (resource, arn) = match input.strip_prefix(&self.arn_prefix) {
            Some(rest) => (rest, true),
            None => (input, false),
        };
        let (base, selector) = match resource.split_once(':') {
            Some((b, s)) => (b, Some(s)),
            None => (resource, None),
        };
        let names = if !arn {
            vec![base.to_owned()]
        } else {
            let r = base.trim_start_matches('/');
            if r.contains('/') {
                vec![format!("/{r}")]
            } else {
                vec![r.to_owned(), format!("/{r}")]
            }
        };
        Reference { names, selector }
    }

    /// The parameter `r` names, if it exists.
    pub(crate) fn find(&self, r: &Reference<'_>) -> Result<Option<ParameterRecord>, AwsError> {
        for n in &r.names {
            if let Some(p) = self.store.get(PARAMETERS, n).map_err(errors::store)? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// Authorizes `action` on `arn` with the parameter's tags as
    /// `aws:ResourceTag/KEY`. Parameter Store has no resource policies.
    pub(crate) fn authorize(
        &self,
        ctx: &RequestContext,
        action: &str,
        arn: &str,
        tags: &[crate::util::Tag],
    ) -> Result<(), AwsError> {
        let mut check = Check::new(action, arn);
        for t in tags {
            check = check.key(&format!("aws:ResourceTag/{}", t.key), vec![t.value.clone()]);
        }
        authorize(&ctx.caller, &check, None).map_err(|d| d.into_error("AccessDeniedException"))
    }

    /// The encryption context of a parameter's SecureString values.
    pub(crate) fn context(arn: &str) -> Context {
        [("PARAMETER_ARN".to_owned(), arn.to_owned())].into()
    }

    /// A version's value: plain, opened (SecureString `with_decryption`,
    /// as the caller) or the sealed form in base64.
    pub(crate) fn value(
        &self,
        ctx: &RequestContext,
        arn: &str,
        v: &Version,
        with_decryption: bool,
    ) -> Result<Zeroizing<String>, AwsError> {
        match &v.value {
            Stored::Plain { value } => Ok(Zeroizing::new(value.clone())),
            Stored::Sealed { sealed } if !with_decryption => Ok(Zeroizing::new(b64(sealed))),
            Stored::Sealed { sealed } => {
                let mut plain = self
                    .vault
                    .open(ctx, sealed, &Self::context(arn), "SecureString")
                    .map_err(errors::kms)?;
                let bytes = std::mem::take(&mut *plain);
                String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
                    e.into_bytes().zeroize();
                    errors::kms(crate::seal::SealError::Malformed)
                })
            }
        }
    }
}

/// The `Parameter` document of GetParameter(s) and GetParametersByPath.
pub(crate) fn parameter_json(p: &ParameterValue, v: &Version, selector: Option<&str>) -> Value {
    let mut out = json!({
        "Name": p.name,
        "Type": p.kind.as_str(),
        "Value": p.value.as_str(),
        "Version": p.version,
        "LastModifiedDate": v.last_modified,
        "ARN": p.arn,
        "DataType": v.data_type,
    });
    if let Some(s) = selector {
        out["Selector"] = json!(format!(":{s}"));
    }
    out
}

impl JsonService for Ssm {
    fn target_prefix(&self) -> &'static str {
        "AmazonSSM"
    }

    // Every operation is authorized per parameter ARN (`ferry_proto::authz`),
    // not by the listener's action gate.
    fn authorizes_itself(&self) -> bool {
        true
    }

    fn call(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> Result<Value, AwsError> {
        match handler(operation) {
            Some(h) => h(self, ctx, body),
            None => Err(AwsError::unknown_operation(&format!(
                "AmazonSSM.{operation}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
