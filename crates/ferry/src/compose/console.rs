//! The console's data ([`ConsoleData`]) over the host's task volumes
//! (`ferry_host::TaskVolumes::describe`) and the KMS audit trail
//! (`ferry_kms::audit_read`): adapters between their types only.

use std::sync::Arc;

use ferry_console::data::{
    AuditError, AuditPage, AuditQuery, ConsoleData, MAX_AUDIT_PAGE, TaskStorage,
};
use ferry_host::TaskVolumes;
use ferry_kms::audit_read::{self, AuditReader};

// The console's page bound and the reader's are one limit.
const _: () = assert!(MAX_AUDIT_PAGE == audit_read::MAX_PAGE);

struct Data {
    volumes: Arc<TaskVolumes>,
    audit: AuditReader,
    require_encrypted_storage: bool,
}

/// The console's data for this server: its task volumes, the KMS audit
/// trail in its data directory, its storage policy.
pub(crate) fn console_data(
    shared: &super::Shared,
    runtime: &ferry_host::HostRuntime,
) -> anyhow::Result<Arc<dyn ConsoleData>> {
    Ok(Arc::new(Data {
        volumes: runtime.volumes().clone(),
        audit: AuditReader::new(shared.data_dir.join(ferry_kms::service::AUDIT_FILE)),
        require_encrypted_storage: shared.require_encrypted_storage,
    }))
}

impl ConsoleData for Data {
    fn task_storage(&self, task_id: &str) -> Option<TaskStorage> {
        let f = self.volumes.describe(task_id)?;
        Some(TaskStorage {
            size_bytes: f.size_bytes,
            used_bytes: f.used_bytes,
            encrypted: f.encrypted,
            cipher: f.cipher,
            key_bits: f.key_bits,
            key_arn: f.key_arn,
            grant_id: f.grant_id,
            token: f.token,
        })
    }

    fn audit(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        let page = self.audit.page(&query(q)).map_err(|e| match e {
            audit_read::ReadError::BadCursor(m) => AuditError::BadCursor(m),
            audit_read::ReadError::BadQuery(m) => AuditError::BadQuery(m),
            audit_read::ReadError::Io(e) => AuditError::Io(e.to_string()),
        })?;
        Ok(AuditPage {
            records: page.records,
            next: page.next,
            head: page.head,
        })
    }

    fn require_encrypted_storage(&self) -> bool {
        self.require_encrypted_storage
    }
}

fn query(q: &AuditQuery) -> audit_read::Query {
    audit_read::Query {
        before: q.before,
        after: q.after,
        limit: q.limit,
        key: q.key.clone(),
        principal: q.principal.clone(),
        event_name: q.event_name.clone(),
        from: q.from,
        to: q.to,
        errors_only: q.errors_only,
        task_arn: q.task_arn.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every member crosses: a field added on one side and not mapped
    /// fails here rather than being silently dropped.
    #[test]
    fn a_console_query_maps_member_for_member() {
        let q = AuditQuery {
            before: Some(10),
            after: Some(2),
            limit: 7,
            key: Some("k".into()),
            principal: Some("p".into()),
            event_name: Some("Decrypt".into()),
            from: Some(1.5),
            to: Some(2.5),
            errors_only: true,
            task_arn: Some("arn:aws:ecs:r:1:task/c/t".into()),
        };
        let AuditQuery {
            before,
            after,
            limit,
            key,
            principal,
            event_name,
            from,
            to,
            errors_only,
            task_arn,
        } = q.clone();
        assert_eq!(
            query(&q),
            audit_read::Query {
                before,
                after,
                limit,
                key,
                principal,
                event_name,
                from,
                to,
                errors_only,
                task_arn,
            }
        );
    }
}
