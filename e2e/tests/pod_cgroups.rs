//! Pods that share a `cgroup_parent` (crictl users, many clients) are independent: each
//! pod's processes live in cgroups of its own below the parent, stopping one pod kills and
//! removes only those, and a parent that the caller made is never written, killed or
//! removed.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use e2e::cgroups::{memory_dir, KubeletParent};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::harness::BusyboxEnv;
use e2e::registry::Registry;

struct Env {
    _daemon: Daemon,
    cri: Cri,
    _reg: Registry,
    image: String,
}

async fn setup(test: &str, n: u8) -> Result<Option<Env>> {
    let network = format!("bridge = \"crtpc{n}\"\nsubnet = \"10.224.{n}.0/24\"");
    Ok(BusyboxEnv::start(test, &network).await?.map(|e| Env {
        _daemon: e.daemon,
        cri: e.cri,
        _reg: e.registry,
        image: e.image,
    }))
}

fn memory_limit_file(dir: &Path) -> PathBuf {
    if dir.join("memory.max").exists() {
        dir.join("memory.max")
    } else {
        dir.join("memory.limit_in_bytes")
    }
}

impl Env {
    fn pod_config(&self, name: &str, parent: &str) -> proto::PodSandboxConfig {
        proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "e2e".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            linux: Some(proto::LinuxPodSandboxConfig {
                cgroup_parent: parent.into(),
                // kubelet's pod resources: not ours to write into kubelet's parent.
                resources: Some(proto::LinuxContainerResources {
                    memory_limit_in_bytes: 32 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn run_pod(&mut self, config: &proto::PodSandboxConfig) -> Result<String> {
        Ok(self
            .cri
            .runtime
            .run_pod_sandbox(proto::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    /// A running `sleep` container in the pod.
    async fn sleeper(&mut self, pod: &str, pod_config: &proto::PodSandboxConfig) -> Result<String> {
        let config = proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: "sleeper".into(),
                attempt: 0,
            }),
            image: Some(spec(&self.image)),
            command: vec!["sleep".into(), "3600".into()],
            ..Default::default()
        };
        let id = self
            .cri
            .runtime
            .create_container(proto::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id;
        self.cri
            .runtime
            .start_container(proto::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        Ok(id)
    }

    async fn state(&mut self, id: &str) -> Result<i32> {
        Ok(self
            .cri
            .runtime
            .container_status(proto::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("status")?
            .state)
    }

    async fn pod_info(&mut self, id: &str) -> Result<serde_json::Value> {
        let r = self
            .cri
            .runtime
            .pod_sandbox_status(proto::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            })
            .await?
            .into_inner();
        Ok(serde_json::from_str(r.info.get("info").context("info")?)?)
    }

    async fn remove_pod(&mut self, pod: &str) -> Result<()> {
        self.cri
            .runtime
            .stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await?;
        self.cri
            .runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn pods_sharing_a_parent_are_independent() -> Result<()> {
    let Some(mut env) = setup("pods_sharing_a_parent_are_independent", 1).await? else {
        return Ok(());
    };
    let parent = format!("/corral-e2e-shared-{}", std::process::id());
    let _guard = KubeletParent::make(&parent)?;
    let parent_limit = memory_limit_file(&memory_dir(&parent));
    let limit_before = std::fs::read_to_string(&parent_limit)?;

    let (ca, cb) = (env.pod_config("a", &parent), env.pod_config("b", &parent));
    let a = env.run_pod(&ca).await?;
    let b = env.run_pod(&cb).await?;
    let ctr_a = env.sleeper(&a, &ca).await?;
    let ctr_b = env.sleeper(&b, &cb).await?;

    // Each pod's shim in the pod's own cgroup, each container in its own, all below the parent.
    for (pod, ctr) in [(&a, &ctr_a), (&b, &ctr_b)] {
        let info = env.pod_info(pod).await?;
        let own = info["cgroup"].as_str().context("cgroup")?;
        ensure!(own == format!("{parent}/{pod}"), "pod cgroup {own}");
        let shim = info["shimPid"].as_i64().context("shim pid")?;
        let procs = std::fs::read_to_string(memory_dir(own).join("cgroup.procs"))?;
        ensure!(
            procs.lines().any(|l| l.trim() == shim.to_string()),
            "shim {shim} in {own}: {procs:?}"
        );
        ensure!(memory_dir(&format!("{parent}/{ctr}")).is_dir());
    }
    ensure!(
        std::fs::read_to_string(&parent_limit)? == limit_before,
        "the caller's parent was written"
    );

    env.remove_pod(&a).await?;
    ensure!(
        env.state(&ctr_b).await? == proto::ContainerState::ContainerRunning as i32,
        "stopping pod a stopped pod b's container"
    );
    ensure!(
        memory_dir(&parent).is_dir(),
        "the shared parent was removed"
    );
    for gone in [&a, &ctr_a] {
        let dir = memory_dir(&format!("{parent}/{gone}"));
        ensure!(!dir.exists(), "{} left behind", dir.display());
    }

    env.remove_pod(&b).await?;
    ensure!(
        memory_dir(&parent).is_dir(),
        "a parent the caller made was removed"
    );
    let left = e2e::cgroups::children(&parent);
    ensure!(left.is_empty(), "cgroups left below the parent: {left:?}");
    Ok(())
}
