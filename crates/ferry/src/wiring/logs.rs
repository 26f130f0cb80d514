//! Container logs into the CloudWatch Logs service, sealed at rest under a
//! data key from the KMS.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_agent::logs::{LogEvent as AgentEvent, LogSink};
use ferry_kms::{FARGATE_PRINCIPAL, Kms, PLATFORM_KEY_ALIAS};
use ferry_logs::{LogEvent, LogsService};
use ferry_proto::{Caller, RequestContext};
use ferry_store::Store;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The agent's log sink: appends to the Logs service.
pub struct LogsSink(pub Arc<LogsService>);

impl LogSink for LogsSink {
    fn put(&self, group: &str, stream: &str, events: &[AgentEvent]) {
        let events: Vec<LogEvent> = events
            .iter()
            .map(|e| LogEvent {
                timestamp: e.timestamp_ms,
                message: e.message.clone(),
            })
            .collect();
        if let Err(e) = self.0.append(group, stream, &events) {
            // Never the log line itself: it is task data.
            eprintln!(
                "ferry: dropping {} log events for {group}/{stream}: {}",
                events.len(),
                e.code
            );
        }
    }
}

const TABLE: &str = "server";
const KEY: &str = "logs-data-key";

#[derive(Serialize, Deserialize)]
struct WrappedLogsKey {
    ciphertext_blob: String,
}

fn context(account: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("aws:ecs:clusterAccount".to_owned(), account.to_owned()),
        ("ferry:purpose".to_owned(), "container-logs".to_owned()),
    ])
}

/// The 256-bit key that seals log batches: generated once under the
/// platform key (`GenerateDataKeyWithoutPlaintext` as the Fargate service
/// principal, as for task volumes), kept only wrapped in the store, and
/// unwrapped with `Decrypt` by the account at every start, which the
/// platform key's policy allows for this account's ECS contexts. Both calls
/// are audited.
pub fn logs_key(
    kms: &Kms,
    store: &Store,
    account: &str,
    region: &str,
) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let ec = context(account);
    let blob = match store
        .get::<WrappedLogsKey>(TABLE, KEY)
        .context("reading the logs key")?
    {
        Some(w) => B64
            .decode(&w.ciphertext_blob)
            .context("stored logs key is malformed")?,
        None => {
            let fargate =
                RequestContext::internal(Caller::service(account, FARGATE_PRINCIPAL), region);
            let dk = kms
                .generate_data_key_without_plaintext(&fargate, PLATFORM_KEY_ALIAS, &ec, 32)
                .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))
                .context("creating the logs key")?;
            let w = WrappedLogsKey {
                ciphertext_blob: B64.encode(&dk.ciphertext_blob),
            };
            store.put(TABLE, KEY, &w).context("storing the logs key")?;
            dk.ciphertext_blob
        }
    };
    let admin = RequestContext::internal(Caller::admin(account), region);
    let plaintext = kms
        .decrypt(&admin, &blob, &ec)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))
        .context("unwrapping the logs key")?;
    let key: [u8; 32] = plaintext
        .as_slice()
        .try_into()
        .context("logs key has the wrong length")?;
    Ok(Zeroizing::new(key))
}
