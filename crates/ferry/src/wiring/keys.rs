//! Per-task data keys from the embedded KMS.
//!
//! For every encrypted task volume, ferry does what Fargate documents for
//! ephemeral storage: as the service principal `fargate.amazonaws.com`,
//! `GenerateDataKeyWithoutPlaintext` (64 bytes) under the cluster's key with
//! the ECS encryption context, `CreateGrant` allowing that principal to
//! `Decrypt` under exactly that context, then `Decrypt` with the grant token;
//! at teardown, `RetireGrant`. Every step is a KMS call through the same
//! `JsonService` the API serves, so key policies, grants and the audit trail
//! apply to the platform exactly as to users.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_agent::plan::{KeyProvider, TaskPlan, VolumeKey};
use ferry_proto::{Caller, JsonService, RequestContext};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The principal the platform acts as towards the KMS.
pub const FARGATE_PRINCIPAL: &str = "fargate.amazonaws.com";

/// Data-key length: 512 bits, the LUKS2 passphrase (see the volume format).
const DATA_KEY_BYTES: u32 = 64;

/// `KeyProvider` over an in-process KMS.
pub struct KmsKeyProvider {
    kms: Arc<dyn JsonService>,
    region: String,
}

impl KmsKeyProvider {
    /// A provider calling `kms` (the `TrentService`) in `region`.
    pub fn new(kms: Arc<dyn JsonService>, region: String) -> Self {
        Self { kms, region }
    }

    fn call(&self, plan: &TaskPlan, op: &str, body: Value) -> Result<Value, String> {
        let ctx = RequestContext::internal(
            Caller::service(plan.account.clone(), FARGATE_PRINCIPAL),
            self.region.clone(),
        );
        self.kms
            .call(&ctx, op, body.to_string().as_bytes())
            .map_err(|e| format!("KMS {op} failed: {}: {}", e.code, e.message))
    }
}

/// The encryption context of a task's data key (the volume-format contract).
pub fn encryption_context(plan: &TaskPlan) -> Vec<(String, String)> {
    vec![
        ("aws:ecs:clusterAccount".into(), plan.account.clone()),
        ("aws:ecs:clusterName".into(), plan.cluster_name.clone()),
        ("ferry:taskArn".into(), plan.task_arn.clone()),
    ]
}

fn context_json(ctx: &[(String, String)]) -> Value {
    Value::Object(ctx.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn field<'a>(v: &'a Value, op: &str, name: &str) -> Result<&'a str, String> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("KMS {op} answered without {name}"))
}

impl KeyProvider for KmsKeyProvider {
    fn volume_key(&self, plan: &TaskPlan, kms_key_arn: &str) -> Result<VolumeKey, String> {
        let ec = encryption_context(plan);
        let ec_json = context_json(&ec);
        let generated = self.call(
            plan,
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": kms_key_arn, "NumberOfBytes": DATA_KEY_BYTES, "EncryptionContext": ec_json}),
        )?;
        let blob = field(
            &generated,
            "GenerateDataKeyWithoutPlaintext",
            "CiphertextBlob",
        )?
        .to_owned();
        let key_arn = field(&generated, "GenerateDataKeyWithoutPlaintext", "KeyId")?.to_owned();
        let wrapped = B64
            .decode(&blob)
            .map_err(|e| format!("KMS returned a malformed CiphertextBlob: {e}"))?;

        let grant = self.call(
            plan,
            "CreateGrant",
            json!({
                "KeyId": key_arn,
                "GranteePrincipal": FARGATE_PRINCIPAL,
                "RetiringPrincipal": FARGATE_PRINCIPAL,
                "Operations": ["Decrypt"],
                "Constraints": {"EncryptionContextEquals": ec_json},
                "Name": format!("ferry-task-{}", plan.task_id),
            }),
        )?;
        let grant_id = field(&grant, "CreateGrant", "GrantId")?.to_owned();
        let grant_token = field(&grant, "CreateGrant", "GrantToken")?.to_owned();

        let decrypted = self.call(
            plan,
            "Decrypt",
            json!({
                "KeyId": key_arn,
                "CiphertextBlob": blob,
                "EncryptionContext": ec_json,
                "GrantTokens": [grant_token],
            }),
        );
        let mut decrypted = match decrypted {
            Ok(v) => v,
            Err(e) => {
                // Don't leave a live grant behind for a task that won't start.
                let _ = self.release(plan, &grant_id);
                return Err(e);
            }
        };
        // Take the base64 plaintext out of the JSON tree so it can be wiped.
        let encoded = match decrypted.get_mut("Plaintext").map(Value::take) {
            Some(Value::String(s)) => Zeroizing::new(s),
            _ => {
                let _ = self.release(plan, &grant_id);
                return Err("KMS Decrypt answered without Plaintext".into());
            }
        };
        let mut passphrase = Zeroizing::new(Vec::with_capacity(DATA_KEY_BYTES as usize));
        if B64.decode_vec(encoded.as_bytes(), &mut passphrase).is_err()
            || passphrase.len() != DATA_KEY_BYTES as usize
        {
            let _ = self.release(plan, &grant_id);
            return Err("KMS Decrypt returned a malformed data key".into());
        }
        Ok(VolumeKey {
            passphrase,
            wrapped,
            key_arn,
            encryption_context: ec,
            grant_id: Some(grant_id),
        })
    }

    fn release(&self, plan: &TaskPlan, grant_id: &str) -> Result<(), String> {
        // RetireGrant needs the key; the grant id alone is enough for our
        // KMS, which looks the grant up by id, but send what AWS requires.
        let key = match &plan.storage {
            ferry_agent::plan::StoragePlan::Encrypted { kms_key_arn } => kms_key_arn.clone(),
            ferry_agent::plan::StoragePlan::Unencrypted => return Ok(()),
        };
        self.call(
            plan,
            "RetireGrant",
            json!({"KeyId": key, "GrantId": grant_id}),
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_agent::plan::StoragePlan;
    use ferry_proto::AwsError;
    use std::sync::Mutex;

    /// A scripted KMS: records calls, answers from a table. Unit-test only;
    /// the end-to-end tests use the real KMS.
    struct Scripted {
        calls: Mutex<Vec<(String, Value, String)>>,
        fail: Option<&'static str>,
    }

    impl JsonService for Scripted {
        fn target_prefix(&self) -> &'static str {
            "TrentService"
        }
        fn call(&self, ctx: &RequestContext, op: &str, body: &[u8]) -> Result<Value, AwsError> {
            let body: Value = serde_json::from_slice(body).unwrap();
            self.calls
                .lock()
                .unwrap()
                .push((op.to_owned(), body, ctx.caller.arn()));
            if self.fail == Some(op) {
                return Err(AwsError::client("DisabledException", "key is disabled"));
            }
            Ok(match op {
                "GenerateDataKeyWithoutPlaintext" => {
                    json!({"CiphertextBlob": B64.encode([9u8; 100]), "KeyId": "arn:k"})
                }
                "CreateGrant" => json!({"GrantId": "g1", "GrantToken": "t1"}),
                "Decrypt" => json!({"Plaintext": B64.encode([7u8; 64]), "KeyId": "arn:k"}),
                _ => json!({}),
            })
        }
    }

    fn plan() -> TaskPlan {
        TaskPlan {
            task_arn: "arn:aws:ecs:us-east-1:123456789012:task/default/abc".into(),
            task_id: "abc".into(),
            cluster_name: "default".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            cpu_units: 256,
            memory_mib: 512,
            ephemeral_storage_gib: 20,
            storage: StoragePlan::Encrypted {
                kms_key_arn: "arn:k".into(),
            },
            containers: vec![],
            volumes: vec![],
        }
    }

    #[test]
    fn fargate_flow_order_principal_and_context() {
        let kms = Arc::new(Scripted {
            calls: Mutex::default(),
            fail: None,
        });
        let p = KmsKeyProvider::new(kms.clone(), "us-east-1".into());
        let k = p.volume_key(&plan(), "arn:k").unwrap();
        assert_eq!(k.passphrase.as_slice(), &[7u8; 64]);
        assert_eq!(k.wrapped, vec![9u8; 100]);
        assert_eq!(k.grant_id.as_deref(), Some("g1"));
        let calls = kms.calls.lock().unwrap();
        let ops: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            ops,
            ["GenerateDataKeyWithoutPlaintext", "CreateGrant", "Decrypt"]
        );
        assert!(calls.iter().all(|c| c.2 == FARGATE_PRINCIPAL));
        assert_eq!(calls[0].1["NumberOfBytes"], 64);
        assert_eq!(
            calls[0].1["EncryptionContext"]["ferry:taskArn"],
            plan().task_arn
        );
        assert_eq!(
            calls[0].1["EncryptionContext"]["aws:ecs:clusterName"],
            "default"
        );
        assert_eq!(calls[1].1["Operations"], json!(["Decrypt"]));
        assert_eq!(calls[2].1["GrantTokens"], json!(["t1"]));
    }

    #[test]
    fn failed_decrypt_retires_the_grant_and_says_why() {
        let kms = Arc::new(Scripted {
            calls: Mutex::default(),
            fail: Some("Decrypt"),
        });
        let p = KmsKeyProvider::new(kms.clone(), "us-east-1".into());
        let err = p.volume_key(&plan(), "arn:k").err().unwrap();
        assert!(err.contains("DisabledException"), "{err}");
        let calls = kms.calls.lock().unwrap();
        assert_eq!(calls.last().unwrap().0, "RetireGrant");
    }
}
