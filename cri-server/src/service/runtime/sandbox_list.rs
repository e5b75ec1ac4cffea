use crate::convert::sandbox::{state, to_list_item};
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Filters: id (full or prefix), state, label selector (all labels must match).
    pub(crate) async fn list_pod_sandbox(
        &self,
        req: proto::ListPodSandboxRequest,
    ) -> Result<proto::ListPodSandboxResponse, CriError> {
        let filter = req.filter.unwrap_or_default();
        let items = self
            .sandboxes()
            .list()?
            .into_iter()
            .filter(|r| filter.id.is_empty() || r.id.starts_with(&filter.id))
            .filter(|r| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|s| s.state == state(r.state))
            })
            .filter(|r| {
                filter
                    .label_selector
                    .iter()
                    .all(|(k, v)| r.config.labels.get(k) == Some(v))
            })
            .map(|r| to_list_item(&r))
            .collect();
        Ok(proto::ListPodSandboxResponse { items })
    }
}
