//! The KMS as a `JsonService` (`TrentService`): dispatch by operation, and
//! the audit record every call leaves, success or failure.

use std::path::Path;
use std::sync::Arc;

use ferry_proto::{AwsError, Deferred, JsonService, RequestContext};
use ferry_store::Store;
use serde_json::{Map, Value, json};

use crate::audit::{self, AuditSink};
use crate::audit_file::FileSink;
use crate::error::KmsError;
use crate::keystore::KeyStore;
use crate::ops;
use crate::params::Params;
use crate::platform;
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

/// What a call leaves for its audit record besides its request: the key
/// ARNs it touched (`resources`), and request parameters it learned while
/// running (RetireGrant by token names its grant only once the token is
/// looked up). Derefs to the resource list, which is what most handlers add.
#[derive(Debug, Default)]
pub struct Trail {
    /// The key ARNs the call touched.
    pub resources: Vec<String>,
    /// Request members to add to the record when the request lacks them
    /// (PascalCase, as in the request).
    pub resolved: Map<String, Value>,
}

impl std::ops::Deref for Trail {
    type Target = Vec<String>;
    fn deref(&self) -> &Vec<String> {
        &self.resources
    }
}

impl std::ops::DerefMut for Trail {
    fn deref_mut(&mut self) -> &mut Vec<String> {
        &mut self.resources
    }
}

/// The key management service.
pub struct Kms {
    pub(crate) keys: KeyStore,
    audit: Box<dyn AuditSink>,
    /// The platform-managed key's ARN (see [`crate::platform`]).
    platform_key_arn: String,
}

/// An operation with a typed request and response, callable in-process
/// through [`Kms::execute`] with the same authorization and audit record as
/// its JSON form (see [`crate::ops`]).
pub trait Operation {
    /// The operation's name (`X-Amz-Target` suffix, audit `eventName`).
    const NAME: &'static str;
    /// The typed response.
    type Output;
    /// The request as its JSON form would carry it, for the audit trail
    /// (secret members are dropped there, as for JSON calls).
    fn audit_request(&self) -> Value;
    /// Runs it; `res` collects the key ARNs the audit record names.
    fn run(
        &self,
        kms: &Kms,
        ctx: &RequestContext,
        res: &mut Trail,
    ) -> Result<Self::Output, AwsError>;
    /// The response as the audit trail records it; `None` for the
    /// cryptographic operations, whose responses CloudTrail does not log.
    fn audit_response(_out: &Self::Output) -> Option<Value> {
        None
    }
}

/// The cryptographic operations: their responses are never audited, and
/// they run inline (in-memory state, one queued audit line).
fn is_crypto_op(operation: &str) -> bool {
    matches!(
        operation,
        "Encrypt"
            | "Decrypt"
            | "GenerateDataKey"
            | "GenerateDataKeyWithoutPlaintext"
            | "GenerateRandom"
            | "ReEncrypt"
            | "Sign"
            | "Verify"
            | "GenerateMac"
            | "VerifyMac"
            | "GenerateDataKeyPair"
            | "GenerateDataKeyPairWithoutPlaintext"
            | "GetPublicKey"
    )
}

/// The operations cheap enough to run on the async worker: the symmetric
/// ones and the HMAC ones (microseconds). RSA and ECC private-key
/// operations and key-pair generation (up to seconds for RSA-4096) go to
/// the blocking pool. (An RSA Decrypt is the exception: Decrypt runs
/// inline, so an RSA decryption, about a millisecond, runs there too.)
fn is_inline_op(operation: &str) -> bool {
    matches!(
        operation,
        "Encrypt"
            | "Decrypt"
            | "GenerateDataKey"
            | "GenerateDataKeyWithoutPlaintext"
            | "GenerateRandom"
            | "ReEncrypt"
            | "GenerateMac"
            | "VerifyMac"
            | "DescribeKey"
    )
}

/// One operation's handler.
type Handler = fn(&Kms, &RequestContext, &Params<'_>, &mut Trail) -> Result<Value, AwsError>;

fn handler(op: &str) -> Option<Handler> {
    Some(match op {
        "CreateKey" => ops::keys::create_key,
        "DescribeKey" => ops::keys::describe_key,
        "ListKeys" => ops::keys::list_keys,
        "UpdateKeyDescription" => ops::keys::update_key_description,
        "Sign" => ops::asymmetric::sign,
        "Verify" => ops::asymmetric::verify,
        "GetPublicKey" => ops::asymmetric::get_public_key,
        "GenerateMac" => ops::asymmetric::generate_mac,
        "VerifyMac" => ops::asymmetric::verify_mac,
        "GenerateDataKeyPair" => ops::asymmetric::generate_data_key_pair,
        "GenerateDataKeyPairWithoutPlaintext" => {
            ops::asymmetric::generate_data_key_pair_without_plaintext
        }
        "GetParametersForImport" => ops::import::get_parameters_for_import,
        "ImportKeyMaterial" => ops::import::import_key_material,
        "DeleteImportedKeyMaterial" => ops::import::delete_imported_key_material,
        "ListRetirableGrants" => ops::grants::list_retirable_grants,
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
    /// Opens the KMS: loads the key store, opens the audit trail, and
    /// creates the platform-managed key on first start. The trail is the
    /// file [`AUDIT_FILE`] in `data_dir`, or, with a shared store (several
    /// replicas), the store's one append-only table
    /// ([`crate::audit_store`]).
    pub fn open(
        store: Arc<Store>,
        root: RootKey,
        data_dir: &Path,
        account: &str,
        region: &str,
    ) -> Result<Self, OpenError> {
        if store.is_shared() {
            let sink = crate::audit_store::StoreSink::new(store.clone());
            return Self::with_sink(store, root, Box::new(sink), account, region);
        }
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
        let mut kms = Self {
            keys,
            audit,
            platform_key_arn: String::new(),
        };
        kms.keys.purge_due().map_err(OpenError::Keys)?;
        kms.platform_key_arn = platform::ensure_platform_key(&kms).map_err(OpenError::Keys)?;
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

    /// The platform-managed key's ARN.
    pub fn platform_key_arn(&self) -> &str {
        &self.platform_key_arn
    }

    /// How many key material versions this KMS unwrapped under the root
    /// key so far: a replica's reload unwraps only material it has not
    /// seen (what the tests check).
    pub fn unwrapped_count(&self) -> u64 {
        self.keys.unwrapped_count()
    }

    /// Runs a typed operation in-process and audits it exactly as its JSON
    /// form: the platform's path to its keys ([`crate::platform`]).
    pub fn execute<O: Operation>(
        &self,
        ctx: &RequestContext,
        op: &O,
    ) -> Result<O::Output, AwsError> {
        let mut trail = Trail::default();
        let result = self
            .keys
            .refresh()
            .and_then(|()| op.run(self, ctx, &mut trail));
        let request = op.audit_request();
        let response = result.as_ref().ok().and_then(O::audit_response);
        let ticket = self.audit(
            ctx,
            O::NAME,
            Some(&request),
            result.as_ref().map(|_| response.as_ref()),
            &trail,
        );
        let written = ticket.wait();
        if let Err(e) = written {
            return Err(Self::audit_failed(&e));
        }
        result
    }

    /// Parses `body`, runs the operation and queues its audit record:
    /// returns the result and the record's ticket. The result may only be
    /// given out once the ticket says the record is written.
    fn run_and_audit(
        &self,
        ctx: &RequestContext,
        operation: &str,
        request: Option<&Value>,
    ) -> (Result<Value, AwsError>, audit::Ticket) {
        let mut trail = Trail::default();
        let result = match (handler(operation), request) {
            (_, None) => Err(KmsError::serialization(
                "The request body is not valid JSON.",
            )),
            (None, Some(_)) => Err(AwsError::unknown_operation(operation)),
            (Some(h), Some(r)) => Params::new(r)
                .and_then(|p| self.keys.refresh().map(|()| p))
                .and_then(|p| h(self, ctx, &p, &mut trail)),
        };
        // As in CloudTrail, the cryptographic operations log no response
        // elements (their responses are mostly secrets anyway).
        let response = result
            .as_ref()
            .map(|v| (!is_crypto_op(operation)).then_some(v));
        let ticket = self.audit(ctx, operation, request, response, &trail);
        (result, ticket)
    }

    fn audit(
        &self,
        ctx: &RequestContext,
        operation: &str,
        request: Option<&Value>,
        response: Result<Option<&Value>, &AwsError>,
        trail: &Trail,
    ) -> audit::Ticket {
        // What the call resolved completes the request as recorded, without
        // overriding what the caller sent.
        let completed = match request {
            Some(Value::Object(m)) if !trail.resolved.is_empty() => {
                let mut m = m.clone();
                for (k, v) in &trail.resolved {
                    m.entry(k.clone()).or_insert_with(|| v.clone());
                }
                Some(Value::Object(m))
            }
            _ => None,
        };
        let line = audit::line(&audit::Event {
            ctx,
            operation,
            request: completed.as_ref().or(request),
            response: response.unwrap_or(None),
            error: response
                .err()
                .map(|e| (e.code.as_str(), e.message.as_str())),
            resources: &trail.resources,
        });
        self.audit.submit(&line)
    }

    /// The call's result once its audit record's fate is known: if the
    /// record could not be written, the call fails.
    fn after_audit(
        written: std::io::Result<()>,
        result: Result<Value, AwsError>,
    ) -> Result<Value, AwsError> {
        if let Err(e) = written {
            return Err(Self::audit_failed(&e));
        }
        result
    }

    fn audit_failed(e: &std::io::Error) -> AwsError {
        tracing::error!(error = %e, "KMS audit append failed; failing the call");
        if e.kind() == std::io::ErrorKind::StorageFull {
            // The operator's cue: the message says what to free.
            return KmsError::internal(format!(
                "The audit trail could not be written ({e}); the operation was not completed."
            ));
        }
        KmsError::internal("The audit trail could not be written; the operation was not completed.")
    }

    fn parse(body: &[u8]) -> Option<Value> {
        if body.iter().all(u8::is_ascii_whitespace) {
            Some(json!({}))
        } else {
            serde_json::from_slice(body).ok()
        }
    }
}

/// The KMS's `X-Amz-Target` prefix.
pub const TARGET_PREFIX: &str = "TrentService";

impl JsonService for Kms {
    fn target_prefix(&self) -> &'static str {
        TARGET_PREFIX
    }

    /// The cryptographic operations and DescribeKey read in-memory state and
    /// queue one audit line (no fsync; see `call_inline`): they run inline.
    /// (A key whose yearly
    /// automatic rotation falls due is rotated, and stored, by the first
    /// such call; that rare write is accepted on the async worker.)
    ///
    /// With a shared store every call asks the store first (is the copy in
    /// memory current?) and audits through it: a round trip, so nothing
    /// runs inline then.
    fn runs_inline(&self, operation: &str) -> bool {
        !self.keys.is_shared() && is_inline_op(operation)
    }

    /// Every operation is authorized per key, by key policy, identity
    /// policies and grants (see [`crate::keystore`]), or, for operations on
    /// no key, against the caller's identity policies: the API listener's
    /// gate is not needed.
    fn authorizes_itself(&self) -> bool {
        true
    }

    fn call(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> Result<Value, AwsError> {
        let request = Self::parse(body);
        let (result, ticket) = self.run_and_audit(ctx, operation, request.as_ref());
        Self::after_audit(ticket.wait(), result)
    }

    /// The response waits for its audit record without holding the async
    /// worker: records of concurrent calls share one write (group commit).
    fn call_inline(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> Deferred {
        let request = Self::parse(body);
        let (result, ticket) = self.run_and_audit(ctx, operation, request.as_ref());
        Box::pin(async move { Self::after_audit(ticket.await, result) })
    }
}
