//! The tonic trait impls: one delegating line per RPC. Each RPC's body lives in its own file
//! under `runtime/` or `image/`, named `<object>_<verb>.rs`.

mod image;
mod runtime;
mod streaming;

use std::pin::Pin;
use std::sync::Arc;

use ::runtime::container::Containers;
use ::runtime::image::ImageStore;
use ::runtime::sandbox::Sandboxes;
use proto::server::{ImageService, RuntimeService};
use tonic::{Request, Response, Status};
use tracing::info_span;

use crate::config::Config;
use crate::instrument::unary;
use crate::status::CriError;

/// Shared by both gRPC services.
#[derive(Clone)]
pub struct CriService {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    images: ImageStore,
    sandboxes: Sandboxes,
    containers: Containers,
    /// The stats calls' CPU samples and writable-layer cache (one per daemon).
    stats: ::runtime::stats::Collector,
    /// The streaming server, once started (it needs this service as its backend).
    streaming: std::sync::OnceLock<cri_server::streaming::StreamingServer>,
}

impl CriService {
    pub fn new(
        config: Config,
        images: ImageStore,
        sandboxes: Sandboxes,
        containers: Containers,
    ) -> Self {
        CriService {
            inner: Arc::new(Inner {
                config,
                images,
                sandboxes,
                containers,
                stats: Default::default(),
                streaming: std::sync::OnceLock::new(),
            }),
        }
    }

    pub(crate) fn stats_collector(&self) -> &::runtime::stats::Collector {
        &self.inner.stats
    }

    pub(crate) fn containers(&self) -> &Containers {
        &self.inner.containers
    }

    pub(crate) fn sandboxes(&self) -> &Sandboxes {
        &self.inner.sandboxes
    }

    fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }
}

type R<T> = Result<Response<T>, Status>;

/// RPCs whose capability has not landed: they say so instead of faking success. Written in
/// the shape `async_trait` expands to, because an attribute macro cannot see into a
/// `macro_rules!` invocation.
macro_rules! not_yet {
    ($($name:ident($req:ty) -> $resp:ty = $method:literal;)*) => {
        $(
            fn $name<'life0, 'async_trait>(
                &'life0 self,
                _request: Request<$req>,
            ) -> Pin<Box<dyn std::future::Future<Output = R<$resp>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(unary($method, info_span!("cri", method = $method), async {
                    Err(CriError::Unimplemented($method))
                }))
            }
        )*
    };
}

#[tonic::async_trait]
impl RuntimeService for CriService {
    async fn version(&self, request: Request<proto::VersionRequest>) -> R<proto::VersionResponse> {
        unary(
            "Version",
            info_span!("cri", method = "Version"),
            self.version(request.into_inner()),
        )
        .await
    }

    async fn status(&self, request: Request<proto::StatusRequest>) -> R<proto::StatusResponse> {
        unary(
            "Status",
            info_span!("cri", method = "Status"),
            self.runtime_status(request.into_inner()),
        )
        .await
    }

    async fn runtime_config(
        &self,
        request: Request<proto::RuntimeConfigRequest>,
    ) -> R<proto::RuntimeConfigResponse> {
        unary(
            "RuntimeConfig",
            info_span!("cri", method = "RuntimeConfig"),
            self.runtime_config(request.into_inner()),
        )
        .await
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<proto::RunPodSandboxRequest>,
    ) -> R<proto::RunPodSandboxResponse> {
        let req = request.into_inner();
        let name = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        let span = info_span!("cri", method = "RunPodSandbox", pod_name = %name);
        unary("RunPodSandbox", span, self.run_pod_sandbox(req)).await
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<proto::StopPodSandboxRequest>,
    ) -> R<proto::StopPodSandboxResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "StopPodSandbox", pod = %req.pod_sandbox_id);
        unary("StopPodSandbox", span, self.stop_pod_sandbox(req)).await
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<proto::RemovePodSandboxRequest>,
    ) -> R<proto::RemovePodSandboxResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "RemovePodSandbox", pod = %req.pod_sandbox_id);
        unary("RemovePodSandbox", span, self.remove_pod_sandbox(req)).await
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<proto::PodSandboxStatusRequest>,
    ) -> R<proto::PodSandboxStatusResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "PodSandboxStatus", pod = %req.pod_sandbox_id);
        unary("PodSandboxStatus", span, self.pod_sandbox_status(req)).await
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<proto::ListPodSandboxRequest>,
    ) -> R<proto::ListPodSandboxResponse> {
        let span = info_span!("cri", method = "ListPodSandbox");
        unary(
            "ListPodSandbox",
            span,
            self.list_pod_sandbox(request.into_inner()),
        )
        .await
    }

    async fn update_runtime_config(
        &self,
        request: Request<proto::UpdateRuntimeConfigRequest>,
    ) -> R<proto::UpdateRuntimeConfigResponse> {
        let span = info_span!("cri", method = "UpdateRuntimeConfig");
        unary(
            "UpdateRuntimeConfig",
            span,
            self.update_runtime_config(request.into_inner()),
        )
        .await
    }

    type GetContainerEventsStream =
        Pin<Box<dyn futures::Stream<Item = Result<proto::ContainerEventResponse, Status>> + Send>>;

    async fn get_container_events(
        &self,
        _request: Request<proto::GetEventsRequest>,
    ) -> R<Self::GetContainerEventsStream> {
        tracing::debug!(method = "GetContainerEvents", "subscribed");
        Ok(tonic::Response::new(self.container_events()))
    }

    async fn create_container(
        &self,
        request: Request<proto::CreateContainerRequest>,
    ) -> R<proto::CreateContainerResponse> {
        let req = request.into_inner();
        let name = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let span =
            info_span!("cri", method = "CreateContainer", pod = %req.pod_sandbox_id, name = %name);
        unary("CreateContainer", span, self.create_container(req)).await
    }

    async fn start_container(
        &self,
        request: Request<proto::StartContainerRequest>,
    ) -> R<proto::StartContainerResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "StartContainer", container = %req.container_id);
        unary("StartContainer", span, self.start_container(req)).await
    }

    async fn stop_container(
        &self,
        request: Request<proto::StopContainerRequest>,
    ) -> R<proto::StopContainerResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "StopContainer", container = %req.container_id);
        unary("StopContainer", span, self.stop_container(req)).await
    }

    async fn remove_container(
        &self,
        request: Request<proto::RemoveContainerRequest>,
    ) -> R<proto::RemoveContainerResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "RemoveContainer", container = %req.container_id);
        unary("RemoveContainer", span, self.remove_container(req)).await
    }

    async fn list_containers(
        &self,
        request: Request<proto::ListContainersRequest>,
    ) -> R<proto::ListContainersResponse> {
        let span = info_span!("cri", method = "ListContainers");
        unary(
            "ListContainers",
            span,
            self.list_containers(request.into_inner()),
        )
        .await
    }

    async fn container_status(
        &self,
        request: Request<proto::ContainerStatusRequest>,
    ) -> R<proto::ContainerStatusResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "ContainerStatus", container = %req.container_id);
        unary("ContainerStatus", span, self.container_status(req)).await
    }

    async fn reopen_container_log(
        &self,
        request: Request<proto::ReopenContainerLogRequest>,
    ) -> R<proto::ReopenContainerLogResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "ReopenContainerLog", container = %req.container_id);
        unary("ReopenContainerLog", span, self.reopen_container_log(req)).await
    }

    async fn exec_sync(
        &self,
        request: Request<proto::ExecSyncRequest>,
    ) -> R<proto::ExecSyncResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "ExecSync", container = %req.container_id);
        unary("ExecSync", span, self.exec_sync(req)).await
    }

    async fn container_stats(
        &self,
        request: Request<proto::ContainerStatsRequest>,
    ) -> R<proto::ContainerStatsResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "ContainerStats", container = %req.container_id);
        unary("ContainerStats", span, self.container_stats(req)).await
    }

    async fn list_container_stats(
        &self,
        request: Request<proto::ListContainerStatsRequest>,
    ) -> R<proto::ListContainerStatsResponse> {
        let span = info_span!("cri", method = "ListContainerStats");
        unary(
            "ListContainerStats",
            span,
            self.list_container_stats(request.into_inner()),
        )
        .await
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<proto::PodSandboxStatsRequest>,
    ) -> R<proto::PodSandboxStatsResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "PodSandboxStats", pod = %req.pod_sandbox_id);
        unary("PodSandboxStats", span, self.pod_sandbox_stats(req)).await
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<proto::ListPodSandboxStatsRequest>,
    ) -> R<proto::ListPodSandboxStatsResponse> {
        let span = info_span!("cri", method = "ListPodSandboxStats");
        unary(
            "ListPodSandboxStats",
            span,
            self.list_pod_sandbox_stats(request.into_inner()),
        )
        .await
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<proto::ListMetricDescriptorsRequest>,
    ) -> R<proto::ListMetricDescriptorsResponse> {
        let span = info_span!("cri", method = "ListMetricDescriptors");
        unary(
            "ListMetricDescriptors",
            span,
            self.list_metric_descriptors(request.into_inner()),
        )
        .await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        request: Request<proto::ListPodSandboxMetricsRequest>,
    ) -> R<proto::ListPodSandboxMetricsResponse> {
        let span = info_span!("cri", method = "ListPodSandboxMetrics");
        unary(
            "ListPodSandboxMetrics",
            span,
            self.list_pod_sandbox_metrics(request.into_inner()),
        )
        .await
    }

    async fn update_container_resources(
        &self,
        request: Request<proto::UpdateContainerResourcesRequest>,
    ) -> R<proto::UpdateContainerResourcesResponse> {
        let req = request.into_inner();
        let span =
            info_span!("cri", method = "UpdateContainerResources", container = %req.container_id);
        unary(
            "UpdateContainerResources",
            span,
            self.update_container_resources(req),
        )
        .await
    }

    async fn exec(&self, request: Request<proto::ExecRequest>) -> R<proto::ExecResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "Exec", container = %req.container_id);
        unary("Exec", span, self.exec(req)).await
    }

    async fn attach(&self, request: Request<proto::AttachRequest>) -> R<proto::AttachResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "Attach", container = %req.container_id);
        unary("Attach", span, self.attach(req)).await
    }

    async fn port_forward(
        &self,
        request: Request<proto::PortForwardRequest>,
    ) -> R<proto::PortForwardResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "PortForward", pod = %req.pod_sandbox_id);
        unary("PortForward", span, self.port_forward(req)).await
    }

    not_yet! {
        checkpoint_container(proto::CheckpointContainerRequest) -> proto::CheckpointContainerResponse = "CheckpointContainer";
    }
}

/// The image named in a request, for the span.
fn image_name(spec: &Option<proto::ImageSpec>) -> &str {
    spec.as_ref().map_or("", |s| s.image.as_str())
}

#[tonic::async_trait]
impl ImageService for CriService {
    async fn list_images(
        &self,
        request: Request<proto::ListImagesRequest>,
    ) -> R<proto::ListImagesResponse> {
        unary(
            "ListImages",
            info_span!("cri", method = "ListImages"),
            self.list_images(request.into_inner()),
        )
        .await
    }

    async fn image_status(
        &self,
        request: Request<proto::ImageStatusRequest>,
    ) -> R<proto::ImageStatusResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "ImageStatus", image = %image_name(&req.image));
        unary("ImageStatus", span, self.image_status(req)).await
    }

    async fn pull_image(
        &self,
        request: Request<proto::PullImageRequest>,
    ) -> R<proto::PullImageResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "PullImage", image = %image_name(&req.image));
        unary("PullImage", span, self.pull_image(req)).await
    }

    async fn remove_image(
        &self,
        request: Request<proto::RemoveImageRequest>,
    ) -> R<proto::RemoveImageResponse> {
        let req = request.into_inner();
        let span = info_span!("cri", method = "RemoveImage", image = %image_name(&req.image));
        unary("RemoveImage", span, self.remove_image(req)).await
    }

    async fn image_fs_info(
        &self,
        request: Request<proto::ImageFsInfoRequest>,
    ) -> R<proto::ImageFsInfoResponse> {
        unary(
            "ImageFsInfo",
            info_span!("cri", method = "ImageFsInfo"),
            self.image_fs_info(request.into_inner()),
        )
        .await
    }
}
