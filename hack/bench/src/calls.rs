//! The CRI client, the pod and container configs every mode sends (the same to every
//! runtime), one helper per CRI call, and cleanup.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use proto::client::{ImageServiceClient, RuntimeServiceClient};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::cgroups;

/// The label every pod of ours carries, valued with the run's id: cleanup finds them by it.
pub const LABEL: &str = "corral-bench";

/// How long one CRI call may take before the bench gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct Cri {
    pub rt: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

pub async fn connect(endpoint: &str) -> anyhow::Result<Cri> {
    let path = PathBuf::from(
        endpoint
            .strip_prefix("unix://")
            .context("endpoint must be unix:///path")?,
    );
    let shown = path.display().to_string();
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = Endpoint::try_from("http://[::1]:50051")?
        .timeout(CALL_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
        .with_context(|| format!("connecting to {shown}"))?;
    Ok(Cri {
        rt: RuntimeServiceClient::new(channel.clone()),
        images: ImageServiceClient::new(channel),
    })
}

/// What every pod and container of one run shares.
#[derive(Clone)]
pub struct Bench {
    pub cri: Cri,
    /// The runtime's label in the output.
    pub name: String,
    /// Unique to this run: in pod uids, labels and cgroup paths.
    pub run_id: String,
    /// Pods' cgroup parents are `<cgroup_root>/<run_id>-<tag><i>`.
    pub cgroup_root: String,
    /// Pods' log directories are `<log_dir>/<tag><i>`.
    pub log_dir: PathBuf,
    /// Every pod gets its own user namespace (`hostUsers: false`) with these maps
    /// (container 0 → host `userns_host_id`, 65536 ids).
    pub userns_host_id: Option<u32>,
}

/// A pod of this run: `tag` names the mode that made it, `i` its index.
#[derive(Clone, Debug)]
pub struct PodRef {
    pub tag: &'static str,
    pub i: usize,
}

impl Bench {
    pub fn cgroup_parent(&self, pod: &PodRef) -> String {
        format!(
            "{}/{}-{}{}",
            self.cgroup_root.trim_end_matches('/'),
            self.run_id,
            pod.tag,
            pod.i
        )
    }

    fn pod_log_dir(&self, pod: &PodRef) -> PathBuf {
        self.log_dir.join(format!("{}{}", pod.tag, pod.i))
    }

    /// What kubelet sends for an ordinary pod: a cgroup parent, its own net and IPC, a PID
    /// namespace per container (shareProcessNamespace off), a log directory.
    pub fn pod_config(&self, pod: &PodRef) -> proto::PodSandboxConfig {
        let name = format!("bench-{}{}", pod.tag, pod.i);
        proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.clone(),
                uid: format!("{}-{}{}", self.run_id, pod.tag, pod.i),
                namespace: "bench".into(),
                attempt: 0,
            }),
            hostname: name,
            log_directory: self.pod_log_dir(pod).display().to_string(),
            labels: HashMap::from([(LABEL.to_string(), self.run_id.clone())]),
            linux: Some(proto::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(pod),
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: Some(self.namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A busybox-like `sleep 3600`, logging under the pod's log directory, with the
    /// namespace options kubelet sends for a container of such a pod.
    pub fn container_config(&self, image: &str) -> proto::ContainerConfig {
        proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: "sleep".into(),
                attempt: 0,
            }),
            image: Some(spec(image)),
            command: vec!["sleep".into()],
            args: vec!["3600".into()],
            log_path: "sleep_0.log".into(),
            labels: HashMap::from([(LABEL.to_string(), self.run_id.clone())]),
            linux: Some(proto::LinuxContainerConfig {
                security_context: Some(proto::LinuxContainerSecurityContext {
                    namespace_options: Some(self.namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Creates the pod's log directory (kubelet does that, not the runtime), then
    /// RunPodSandbox. Returns the config sent, which CreateContainer wants again.
    pub async fn run_pod(
        &mut self,
        pod: &PodRef,
    ) -> anyhow::Result<(String, proto::PodSandboxConfig)> {
        let config = self.pod_config(pod);
        let dir = self.pod_log_dir(pod);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let id = run_pod(&mut self.cri, &config).await?;
        Ok((id, config))
    }

    /// Removes the pod's cgroup parent and log directory, once the pod is removed.
    pub fn forget_pod(&self, pod: &PodRef) -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(self.pod_log_dir(pod));
        cgroups::remove_tree(&self.cgroup_parent(pod))
    }

    /// Stops and removes every pod labelled with this run's id, then removes the cgroups
    /// this run named. Used after each mode, whether it succeeded or not.
    pub async fn cleanup_run(&mut self) -> anyhow::Result<usize> {
        let run_id = self.run_id.clone();
        let n = remove_pods(&mut self.cri, |v| v == run_id).await?;
        let prefix = format!("{}-", self.run_id);
        for child in cgroups::children(&self.cgroup_root) {
            if child.starts_with(&prefix) {
                cgroups::remove_tree(&format!("{}/{child}", self.cgroup_root))?;
            }
        }
        // The root too, unless another run still has pods under it.
        cgroups::remove_if_empty(&self.cgroup_root);
        Ok(n)
    }
}

/// Network and IPC of the pod, a PID namespace per container: kubelet's defaults.
impl Bench {
    /// What kubelet sends for a pod without shareProcessNamespace (and, with
    /// `--userns-host-id`, with `hostUsers: false`).
    fn namespaces(&self) -> proto::NamespaceOption {
        let userns_options = self.userns_host_id.map(|host_id| {
            let map = vec![proto::IdMapping {
                container_id: 0,
                host_id,
                length: 65536,
            }];
            proto::UserNamespace {
                mode: proto::NamespaceMode::Pod as i32,
                uids: map.clone(),
                gids: map,
            }
        });
        proto::NamespaceOption {
            network: proto::NamespaceMode::Pod as i32,
            pid: proto::NamespaceMode::Container as i32,
            ipc: proto::NamespaceMode::Pod as i32,
            userns_options,
            ..Default::default()
        }
    }
}

pub fn spec(image: &str) -> proto::ImageSpec {
    proto::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

pub async fn run_pod(cri: &mut Cri, config: &proto::PodSandboxConfig) -> anyhow::Result<String> {
    Ok(cri
        .rt
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id)
}

pub async fn stop_pod(cri: &mut Cri, id: &str) -> anyhow::Result<()> {
    cri.rt
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .with_context(|| format!("StopPodSandbox {id}"))?;
    Ok(())
}

pub async fn remove_pod(cri: &mut Cri, id: &str) -> anyhow::Result<()> {
    cri.rt
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .with_context(|| format!("RemovePodSandbox {id}"))?;
    Ok(())
}

pub async fn create_container(
    cri: &mut Cri,
    pod_id: &str,
    pod_config: &proto::PodSandboxConfig,
    config: &proto::ContainerConfig,
) -> anyhow::Result<String> {
    Ok(cri
        .rt
        .create_container(proto::CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .context("CreateContainer")?
        .into_inner()
        .container_id)
}

pub async fn start_container(cri: &mut Cri, id: &str) -> anyhow::Result<()> {
    cri.rt
        .start_container(proto::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .with_context(|| format!("StartContainer {id}"))?;
    Ok(())
}

/// ExecSync; an exit status other than 0 is an error carrying the command's stderr.
pub async fn exec_sync(cri: &mut Cri, id: &str, cmd: &[&str]) -> anyhow::Result<()> {
    let r = cri
        .rt
        .exec_sync(proto::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .with_context(|| format!("ExecSync {cmd:?} in {id}"))?
        .into_inner();
    if r.exit_code != 0 {
        anyhow::bail!(
            "ExecSync {cmd:?} in {id}: exit status {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr).trim()
        );
    }
    Ok(())
}

pub async fn stop_container(cri: &mut Cri, id: &str, timeout: i64) -> anyhow::Result<()> {
    cri.rt
        .stop_container(proto::StopContainerRequest {
            container_id: id.into(),
            timeout,
        })
        .await
        .with_context(|| format!("StopContainer {id}"))?;
    Ok(())
}

pub async fn remove_container(cri: &mut Cri, id: &str) -> anyhow::Result<()> {
    cri.rt
        .remove_container(proto::RemoveContainerRequest {
            container_id: id.into(),
        })
        .await
        .with_context(|| format!("RemoveContainer {id}"))?;
    Ok(())
}

pub async fn container_status(cri: &mut Cri, id: &str) -> anyhow::Result<proto::ContainerStatus> {
    cri.rt
        .container_status(proto::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .with_context(|| format!("ContainerStatus {id}"))?
        .into_inner()
        .status
        .with_context(|| format!("ContainerStatus {id}: no status"))
}

/// `pid` from a verbose status's `info` JSON (both corrald and containerd put it there).
fn info_pid(info: &HashMap<String, String>) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    let pid = v.get("pid")?.as_i64()?;
    i32::try_from(pid).ok().filter(|p| *p > 0)
}

/// The host pid of a container's process, from its verbose status.
pub async fn container_pid(cri: &mut Cri, id: &str) -> anyhow::Result<Option<i32>> {
    let r = cri
        .rt
        .container_status(proto::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .with_context(|| format!("ContainerStatus {id}"))?
        .into_inner();
    Ok(info_pid(&r.info))
}

/// The pid a runtime gives for a pod in its verbose status (a pause, or a shim).
pub async fn sandbox_pid(cri: &mut Cri, id: &str) -> anyhow::Result<Option<i32>> {
    let r = cri
        .rt
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await
        .with_context(|| format!("PodSandboxStatus {id}"))?
        .into_inner();
    Ok(info_pid(&r.info))
}

pub async fn list_pods(cri: &mut Cri) -> anyhow::Result<Vec<proto::PodSandbox>> {
    Ok(cri
        .rt
        .list_pod_sandbox(proto::ListPodSandboxRequest { filter: None })
        .await
        .context("ListPodSandbox")?
        .into_inner()
        .items)
}

pub async fn list_containers(cri: &mut Cri) -> anyhow::Result<Vec<proto::Container>> {
    Ok(cri
        .rt
        .list_containers(proto::ListContainersRequest { filter: None })
        .await
        .context("ListContainers")?
        .into_inner()
        .containers)
}

pub async fn list_container_stats(cri: &mut Cri) -> anyhow::Result<Vec<proto::ContainerStats>> {
    Ok(cri
        .rt
        .list_container_stats(proto::ListContainerStatsRequest { filter: None })
        .await
        .context("ListContainerStats")?
        .into_inner()
        .stats)
}

pub async fn pull(cri: &mut Cri, image: &str) -> anyhow::Result<()> {
    cri.images
        .pull_image(proto::PullImageRequest {
            image: Some(spec(image)),
            auth: None,
            sandbox_config: None,
        })
        .await
        .with_context(|| format!("PullImage {image}"))?;
    Ok(())
}

pub async fn remove_image(cri: &mut Cri, image: &str) -> anyhow::Result<()> {
    cri.images
        .remove_image(proto::RemoveImageRequest {
            image: Some(spec(image)),
        })
        .await
        .with_context(|| format!("RemoveImage {image}"))?;
    Ok(())
}

/// Tears a pod down as kubelet does: its running containers stopped first (timeout 0:
/// `sleep` as PID 1 ignores SIGTERM, and a runtime may give a grace period to containers
/// that StopPodSandbox finds running), then StopPodSandbox and RemovePodSandbox.
pub async fn teardown_pod(cri: &mut Cri, pod_id: &str) -> anyhow::Result<()> {
    let containers = cri
        .rt
        .list_containers(proto::ListContainersRequest {
            filter: Some(proto::ContainerFilter {
                pod_sandbox_id: pod_id.into(),
                ..Default::default()
            }),
        })
        .await
        .with_context(|| format!("ListContainers of pod {pod_id}"))?
        .into_inner()
        .containers;
    for c in containers {
        if c.state == proto::ContainerState::ContainerRunning as i32 {
            stop_container(cri, &c.id, 0).await?;
        }
    }
    stop_pod(cri, pod_id).await?;
    remove_pod(cri, pod_id).await
}

/// Tears down every pod whose `corral-bench` label value passes `matches`; returns how
/// many. Every pod is tried; the first failure is returned after.
pub async fn remove_pods(cri: &mut Cri, matches: impl Fn(&str) -> bool) -> anyhow::Result<usize> {
    let pods = list_pods(cri).await?;
    let mut first_err = None;
    let mut n = 0;
    for p in pods {
        if !p.labels.get(LABEL).is_some_and(|v| matches(v)) {
            continue;
        }
        n += 1;
        if let Err(e) = teardown_pod(cri, &p.id).await {
            eprintln!("cleanup: pod {}: {e:#}", p.id);
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// Every pod any run of the bench left (label `corral-bench`, any value), then every cgroup
/// under `cgroup_root`, and `cgroup_root` itself.
pub async fn cleanup_all(cri: &mut Cri, cgroup_root: &str) -> anyhow::Result<usize> {
    let n = remove_pods(cri, |_| true).await?;
    cgroups::remove_tree(cgroup_root)?;
    Ok(n)
}

/// Makes `dir` (and parents); returns whether it did not exist before.
pub fn make_dir(dir: &Path) -> anyhow::Result<bool> {
    let existed = dir.exists();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(!existed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_from_verbose_info() {
        let info = HashMap::from([("info".to_string(), r#"{"pid": 42, "x": 1}"#.to_string())]);
        assert_eq!(info_pid(&info), Some(42));
        let none = HashMap::from([("info".to_string(), r#"{"pid": null}"#.to_string())]);
        assert_eq!(info_pid(&none), None);
        let zero = HashMap::from([("info".to_string(), r#"{"pid": 0}"#.to_string())]);
        assert_eq!(info_pid(&zero), None);
        assert_eq!(info_pid(&HashMap::new()), None);
    }
}
