use crate::convert::resources::{oom_score_adj, resources};
use crate::service::CriService;
use crate::status::CriError;

/// Where UpdateContainerResourcesRequest keeps the Linux limits; errors name `linux.<field>`.
const LINUX: &str = "linux";

impl CriService {
    /// New limits for a created or running container, applied to its cgroup at once and
    /// reported by ContainerStatus. The `windows` part is ignored (a request with only that
    /// changes nothing, but still answers NotFound or FailedPrecondition as one with
    /// `linux` would); a request with neither part is refused.
    pub(crate) async fn update_container_resources(
        &self,
        req: proto::UpdateContainerResourcesRequest,
    ) -> Result<proto::UpdateContainerResourcesResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        let update = match (&req.linux, &req.windows) {
            (Some(linux), _) => runtime::container::ResourceUpdate {
                resources: resources(linux, LINUX)?,
                oom_score_adj: oom_score_adj(linux.oom_score_adj, LINUX)?,
            },
            (None, Some(_)) => runtime::container::ResourceUpdate::default(),
            (None, None) => {
                return Err(CriError::invalid(
                    LINUX,
                    "required: the request has neither linux nor windows resources",
                ))
            }
        };
        self.containers()
            .update_resources(&req.container_id, update)
            .await?;
        Ok(proto::UpdateContainerResourcesResponse {})
    }
}
