//! The KMS as a `JsonService` (`TrentService`): dispatch by operation, and
//! the audit record every call leaves, success or failure.

use std::path::Path;
use std::sync::Arc;

use ferry_proto::{AwsError, JsonService, RequestContext};
use ferry_store::Store;
use serde_json::{Value, json};

use crate::audit::{self, AuditSink, FileSink};
use crate::error::KmsError;
use crate::keystore::KeyStore;
use crate::ops;
use crate::params::Params;
use crate::root_key::RootKey;

/// The audit file's name in the data directory.
pub const AUDIT_FILE: &str = "kms-audit.jsonl";

/// Errors opening the KMS.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The audit file could not be opened.
    #[error("opening the KMS audit trail {path}: {source}")]
    Audit {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key store could not be loaded.
    #[error("loading the KMS key store: {0}")]
    Keys(AwsError),
}

/// The key management service.
pub struct Kms {
    pub(crate) keys: KeyStore,
    audit: Box<dyn AuditSink>,
}

/// One operation's handler.
type Handler = fn(&Kms, &RequestContext, &Params<'_>, &mut Vec<String>) -> Result<Value, AwsError>;

fn handler(op: &str) -> Option<Handler> {
    Some(match op {
        "CreateKey" => ops::keys::create_key,
        "DescribeKey" => ops::keys::describe_key,
        "ListKeys" => ops::keys::list_keys,
        "EnableKey" => ops::keys::enable_key,
        "DisableKey" => ops::keys::disable_key,
        "ScheduleKeyDeletion" => ops::keys::schedule_key_deletion,
        "CancelKeyDeletion" => ops::keys::cancel_key_deletion,
        "CreateAlias" => ops::aliases::create_alias,
        "UpdateAlias" => ops::aliases::update_alias,
        "DeleteAlias" => ops::aliases::delete_alias,
        "ListAliases" => ops::aliases::list_aliases,
        "Encrypt" => ops::data::encrypt,
        "Decrypt" => ops::data::decrypt,
        "GenerateDataKey" => ops::data::generate_data_key,
        "GenerateDataKeyWithoutPlaintext" => ops::data::generate_data_key_without_plaintext,
        "GenerateRandom" => ops::data::generate_random,
        "ReEncrypt" => ops::data::re_encrypt,
        "EnableKeyRotation" => ops::rotation::enable_key_rotation,
        "DisableKeyRotation" => ops::rotation::disable_key_rotation,
        "GetKeyRotationStatus" => ops::rotation::get_key_rotation_status,
        "RotateKeyOnDemand" => ops::rotation::rotate_key_on_demand,
        "ListKeyRotations" => ops::rotation::list_key_rotations,
        "CreateGrant" => ops::grants::create_grant,
        "ListGrants" => ops::grants::list_grants,
        "RetireGrant" => ops::grants::retire_grant,
        "RevokeGrant" => ops::grants::revoke_grant,
        "GetKeyPolicy" => ops::policies::get_key_policy,
        "PutKeyPolicy" => ops::policies::put_key_policy,
        "ListKeyPolicies" => ops::policies::list_key_policies,
        "TagResource" => ops::tags::tag_resource,
        "UntagResource" => ops::tags::untag_resource,
        "ListResourceTags" => ops::tags::list_resource_tags,
        _ => return None,
    })
}

impl Kms {
    /// Opens the KMS: loads the key store, opens the audit trail in
    /// `data_dir`, and creates the platform-managed key on first start.
    pub fn open(
        store: Arc<Store>,
        root: RootKey,
        data_dir: &Path,
        account: &str,
        region: &str,
    ) -> Result<Self, OpenError> {
        let path = data_dir.join(AUDIT_FILE);
        let sink = FileSink::open(&path).map_err(|source| OpenError::Audit {
            path: path.display().to_string(),
            source,
        })?;
        Self::with_sink(store, root, Box::new(sink), account, region)
    }

    /// Like [`Kms::open`] with another audit sink (tests).
    pub fn with_sink(
        store: Arc<Store>,
        root: RootKey,
        audit: Box<dyn AuditSink>,
        account: &str,
        region: &str,
    ) -> Result<Self, OpenError> {
        let keys = KeyStore::open(store, root, account, region).map_err(OpenError::Keys)?;
        let kms = Self { keys, audit };
        kms.keys.purge_due().map_err(OpenError::Keys)?;
        ops::platform::ensure_platform_key(&kms).map_err(OpenError::Keys)?;
        Ok(kms)
    }

    /// The account this KMS serves.
    pub fn account(&self) -> &str {
        &self.keys.account
    }

    /// The region this KMS serves.
    pub fn region(&self) -> &str {
        &self.keys.region
    }

    /// Runs one operation with a parsed request, and audits it.
    pub fn call_json(
        &self,
        ctx: &RequestContext,
        operation: &str,
        request: &Value,
    ) -> Result<Value, AwsError> {
        let mut resources = Vec::new();
        let result = match handler(operation) {
            None => Err(AwsError::unknown_operation(operation)),
            Some(h) => Params::new(request).and_then(|p| h(self, ctx, &p, &mut resources)),
        };
        self.audit_and_return(ctx, operation, Some(request), result, &resources)
    }

    fn audit_and_return(
        &self,
        ctx: &RequestContext,
        operation: &str,
        request: Option<&Value>,
        result: Result<Value, AwsError>,
        resources: &[String],
    ) -> Result<Value, AwsError> {
        let err = result
            .as_ref()
            .err()
            .map(|e| (e.code.as_str(), e.message.as_str()));
        // As in CloudTrail, the cryptographic operations log no response
        // elements (their responses are mostly secrets anyway).
        let crypto_op = matches!(
            operation,
            "Encrypt"
                | "Decrypt"
                | "GenerateDataKey"
                | "GenerateDataKeyWithoutPlaintext"
                | "GenerateRandom"
                | "ReEncrypt"
        );
        let line = audit::line(&audit::Event {
            ctx,
            operation,
            request,
            response: if crypto_op {
                None
            } else {
                result.as_ref().ok()
            },
            error: err,
            resources,
        });
        if let Err(e) = self.audit.append(&line) {
            tracing::error!(error = %e, "KMS audit append failed; failing the call");
            return Err(KmsError::internal(
                "The audit trail could not be written; the operation was not completed.",
            ));
        }
        result
    }
}

impl JsonService for Kms {
    fn target_prefix(&self) -> &'static str {
        "TrentService"
    }

    /// The cryptographic operations and DescribeKey read in-memory state and
    /// append one audit line (no fsync): they run inline. (A key whose yearly
    /// automatic rotation falls due is rotated, and stored, by the first
    /// such call; that rare write is accepted on the async worker.)
    fn runs_inline(&self, operation: &str) -> bool {
        matches!(
            operation,
            "Encrypt"
                | "Decrypt"
                | "GenerateDataKey"
                | "GenerateDataKeyWithoutPlaintext"
                | "GenerateRandom"
                | "ReEncrypt"
                | "DescribeKey"
        )
    }

    fn call(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> Result<Value, AwsError> {
        let parsed: Result<Value, _> = if body.iter().all(u8::is_ascii_whitespace) {
            Ok(json!({}))
        } else {
            serde_json::from_slice(body)
        };
        match parsed {
            Ok(v) => self.call_json(ctx, operation, &v),
            Err(_) => self.audit_and_return(
                ctx,
                operation,
                None,
                Err(KmsError::serialization(
                    "The request body is not valid JSON.",
                )),
                &[],
            ),
        }
    }
}
