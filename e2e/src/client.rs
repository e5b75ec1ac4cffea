//! A CRI client over the daemon's unix socket.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hyper_util::rt::TokioIo;
use proto::client::{ImageServiceClient, RuntimeServiceClient};
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    pub async fn connect(socket: &Path) -> anyhow::Result<Cri> {
        let path: PathBuf = socket.to_path_buf();
        // The URI is required by tonic but unused: the connector dials the socket.
        let channel = Endpoint::try_from("http://[::1]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// RunPodSandbox with the default handler; the pod's id.
    pub async fn run_pod(
        &mut self,
        config: &proto::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        Ok(self
            .runtime
            .run_pod_sandbox(proto::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    /// CreateContainer in `pod`; the container's id.
    pub async fn create_container(
        &mut self,
        pod: &str,
        pod_config: &proto::PodSandboxConfig,
        config: proto::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        Ok(self
            .runtime
            .create_container(proto::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .start_container(proto::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn stop_pod(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn remove_pod(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    /// PullImage with optional credentials; returns the image id.
    pub async fn pull(
        &mut self,
        image: &str,
        auth: Option<proto::AuthConfig>,
    ) -> Result<String, tonic::Status> {
        let resp = self
            .images
            .pull_image(proto::PullImageRequest {
                image: Some(spec(image)),
                auth,
                sandbox_config: None,
            })
            .await?;
        Ok(resp.into_inner().image_ref)
    }

    pub async fn image_status(
        &mut self,
        image: &str,
    ) -> Result<Option<proto::Image>, tonic::Status> {
        let resp = self
            .images
            .image_status(proto::ImageStatusRequest {
                image: Some(spec(image)),
                verbose: false,
            })
            .await?;
        Ok(resp.into_inner().image)
    }

    /// ImageStatus with verbose info, parsed.
    pub async fn image_info(&mut self, image: &str) -> anyhow::Result<serde_json::Value> {
        let resp = self
            .images
            .image_status(proto::ImageStatusRequest {
                image: Some(spec(image)),
                verbose: true,
            })
            .await?
            .into_inner();
        let info = resp.info.get("info").context("no verbose info")?;
        Ok(serde_json::from_str(info)?)
    }

    pub async fn list_images(&mut self) -> Result<Vec<proto::Image>, tonic::Status> {
        let resp = self
            .images
            .list_images(proto::ListImagesRequest { filter: None })
            .await?;
        Ok(resp.into_inner().images)
    }

    pub async fn remove_image(&mut self, image: &str) -> Result<(), tonic::Status> {
        self.images
            .remove_image(proto::RemoveImageRequest {
                image: Some(spec(image)),
            })
            .await?;
        Ok(())
    }
}

pub fn spec(image: &str) -> proto::ImageSpec {
    proto::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
