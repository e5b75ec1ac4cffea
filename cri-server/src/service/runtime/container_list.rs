use crate::convert::container_status::{state, to_list_item};
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Filters: id (full or prefix), state, pod id (full or prefix), label selector (all
    /// labels must match).
    pub(crate) async fn list_containers(
        &self,
        req: proto::ListContainersRequest,
    ) -> Result<proto::ListContainersResponse, CriError> {
        let filter = req.filter.unwrap_or_default();
        let containers = self
            .containers()
            .list()?
            .into_iter()
            .filter(|c| filter.id.is_empty() || c.id.starts_with(&filter.id))
            .filter(|c| {
                filter.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&filter.pod_sandbox_id)
            })
            .filter(|c| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|s| s.state == state(c.state) as i32)
            })
            .filter(|c| {
                filter
                    .label_selector
                    .iter()
                    .all(|(k, v)| c.config.labels.get(k) == Some(v))
            })
            .map(|c| to_list_item(&c))
            .collect();
        Ok(proto::ListContainersResponse { containers })
    }
}
