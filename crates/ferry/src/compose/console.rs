//! The console's data ([`ConsoleData`]) over the host's task volumes
//! (`ferry_host::TaskVolumes::describe`) and the KMS audit trail
//! (`ferry_kms::audit_read`). Both speak `ferry_proto`'s types, so this is
//! wiring only.

use std::sync::Arc;

use ferry_console::data::{AuditError, AuditPage, AuditQuery, ConsoleData, VolumeFacts};
use ferry_host::TaskVolumes;
use ferry_kms::audit_read::AuditReader;

struct Data {
    /// The local agent's task volumes (none on an API replica).
    volumes: Option<Arc<TaskVolumes>>,
    audit: AuditReader,
    require_encrypted_storage: bool,
}

/// The console's data for this server: its task volumes, the KMS audit
/// trail (the file in its data directory, or a shared store's table), its
/// storage policy.
pub(crate) fn console_data(
    shared: &super::Shared,
    runtime: Option<&ferry_host::HostRuntime>,
) -> anyhow::Result<Arc<dyn ConsoleData>> {
    Ok(Arc::new(Data {
        volumes: runtime.map(|r| r.volumes().clone()),
        audit: AuditReader::for_kms(&shared.store, &shared.data_dir),
        require_encrypted_storage: shared.require_encrypted_storage,
    }))
}

impl ConsoleData for Data {
    fn task_storage(&self, task_id: &str) -> Option<VolumeFacts> {
        self.volumes.as_ref()?.describe(task_id)
    }

    fn audit(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        self.audit.page(q)
    }

    fn require_encrypted_storage(&self) -> bool {
        self.require_encrypted_storage
    }
}
