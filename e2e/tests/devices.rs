//! The device cgroup end to end: what a container may open, as its cgroup's
//! `devices.list` says and as the container finds when it tries; CRI devices, privileged
//! containers and CDI devices. Bridge `crtdv<n>`, subnet `10.221.<n>.0/24`.
//!
//! This VM's cgroup v1 `devices` hierarchy is what enforces here; a host without one
//! (cgroup v2) gets the BPF filter, whose kernel test is `runtime/tests/devices.rs`.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::images::{Image, ImageConfig};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use tonic::Code;

/// What a default container's `devices.list` holds: containerd's (runc's) defaults after
/// a deny-all, in the order they were written.
const DEFAULT_LIST: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

const CDI_SPEC: &str = r#"
cdiVersion: "0.6.0"
kind: vendor.test/dev
containerEdits:
  env: ["CDI_SPEC=1"]
devices:
  - name: one
    containerEdits:
      env: ["CDI_ONE=yes"]
      deviceNodes:
        - path: /dev/cdi-null
          hostPath: /dev/null
        - path: /dev/cdi-loop
          hostPath: /dev/loop-control
          permissions: r
  - name: two
    containerEdits:
      env: ["CDI_TWO=yes"]
"#;

struct Env {
    daemon: Daemon,
    cri: Cri,
    _reg: Registry,
    image: String,
    _cdi: tempfile::TempDir,
}

async fn setup(test: &str, n: u8) -> Result<Option<Env>> {
    if !have_root(test) {
        return Ok(None);
    }
    if let Some(why) = skip_reason(&RegistryOptions::default()) {
        eprintln!("skipping {test}: {why}");
        return Ok(None);
    }
    if !Path::new("/dev/loop-control").exists() {
        eprintln!("skipping {test}: the host has no /dev/loop-control to map");
        return Ok(None);
    }
    if !Path::new("/sys/fs/cgroup/devices").is_dir() {
        eprintln!(
            "skipping {test}: no cgroup v1 devices hierarchy (the v2 filter has its kernel test)"
        );
        return Ok(None);
    }
    let reg = Registry::start(RegistryOptions::default()).await?;
    Image::busybox(ImageConfig::default())?
        .push(&reg, "e2e/busybox", &["latest"])
        .await?;
    let cdi = tempfile::Builder::new()
        .prefix("corral-e2e-cdi-")
        .tempdir()?;
    std::fs::write(cdi.path().join("vendor.yaml"), CDI_SPEC)?;
    let daemon = Daemon::start(&format!(
        "cdi_spec_dirs = [{:?}]\n[network]\nbridge = \"crtdv{n}\"\nsubnet = \"10.221.{n}.0/24\"\n",
        cdi.path().display().to_string()
    ))
    .await?;
    let mut cri = daemon.client().await?;
    let image = format!("{}/e2e/busybox:latest", reg.host());
    cri.pull(&image, None).await?;
    Ok(Some(Env {
        daemon,
        cri,
        _reg: reg,
        image,
        _cdi: cdi,
    }))
}

fn pod_config(name: &str) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        linux: Some(proto::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

impl Env {
    fn container(&self, name: &str) -> proto::ContainerConfig {
        proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(spec(&self.image)),
            command: vec!["sleep".into(), "1000".into()],
            linux: Some(proto::LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    async fn create(
        &mut self,
        pod: &str,
        pod_config: &proto::PodSandboxConfig,
        config: proto::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        Ok(self
            .cri
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

    async fn run(
        &mut self,
        pod: &str,
        pod_config: &proto::PodSandboxConfig,
        config: proto::ContainerConfig,
    ) -> Result<String> {
        let id = self.create(pod, pod_config, config).await?;
        self.cri
            .runtime
            .start_container(proto::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        Ok(id)
    }

    /// The container's cgroup path, from ContainerStatus's verbose info.
    async fn cgroup(&mut self, id: &str) -> Result<String> {
        let r = self
            .cri
            .runtime
            .container_status(proto::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await?
            .into_inner();
        let info: serde_json::Value =
            serde_json::from_str(r.info.get("info").context("no verbose info")?)?;
        Ok(info["cgroup"]
            .as_str()
            .context("no cgroup in info")?
            .to_string())
    }

    async fn devices_list(&mut self, id: &str) -> Result<Vec<String>> {
        let cg = self.cgroup(id).await?;
        let file = PathBuf::from(format!("/sys/fs/cgroup/devices{cg}/devices.list"));
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// ExecSync of `sh -c script`: (exit code, stdout + stderr).
    async fn sh(&mut self, id: &str, script: &str) -> Result<(i32, String)> {
        let r = self
            .cri
            .runtime
            .exec_sync(proto::ExecSyncRequest {
                container_id: id.into(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                timeout: 10,
            })
            .await?
            .into_inner();
        Ok((
            r.exit_code,
            format!(
                "{}{}",
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            ),
        ))
    }

    /// The script must succeed; its output.
    async fn ok(&mut self, id: &str, script: &str) -> Result<String> {
        let (code, out) = self.sh(id, script).await?;
        ensure!(code == 0, "{script:?} exited {code}: {out}");
        Ok(out)
    }

    /// The script must fail for want of the device cgroup's permission.
    async fn refused(&mut self, id: &str, script: &str) -> Result<()> {
        let (code, out) = self.sh(id, script).await?;
        ensure!(code != 0, "{script:?} succeeded: {out}");
        ensure!(
            out.contains("Operation not permitted"),
            "{script:?} failed, but not with EPERM: {out}"
        );
        Ok(())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_cgroup_end_to_end() -> Result<()> {
    let Some(mut env) = setup("device_cgroup_end_to_end", 1).await? else {
        return Ok(());
    };
    let pod_cfg = pod_config("devices");
    let pod = env
        .cri
        .runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let result = scenarios(&mut env, &pod, &pod_cfg).await;
    // The pod (and its containers) go whatever happened.
    let removed = env.remove_pod(&pod).await;
    result?;
    removed?;
    drop(env.daemon);
    Ok(())
}

async fn scenarios(env: &mut Env, pod: &str, pod_cfg: &proto::PodSandboxConfig) -> Result<()> {
    // A default container: deny-all plus the defaults, nothing else.
    let plain = env.run(pod, pod_cfg, env.container("plain")).await?;
    let list = env.devices_list(&plain).await?;
    ensure!(list == DEFAULT_LIST, "default devices.list: {list:?}");
    // The host's disk (vda, 254:0 here; any block device will do) may be made but not
    // opened; nor /dev/mem.
    env.ok(
        &plain,
        "busybox mknod /tmp/disk b 254 0 && busybox mknod /tmp/mem c 1 1",
    )
    .await?;
    env.refused(&plain, "head -c1 /tmp/disk").await?;
    env.refused(&plain, "head -c1 /tmp/mem").await?;
    ensure!(!list
        .iter()
        .any(|l| l.starts_with("b 254:") || l.starts_with("c 1:1 ")));
    // The defaults work.
    env.ok(
        &plain,
        "head -c1 /dev/zero >/dev/null && head -c1 /dev/urandom >/dev/null",
    )
    .await?;
    // An exec'd process is in the same cgroup, so under the same rules.
    let cg = env.cgroup(&plain).await?;
    let own = env.ok(&plain, "cat /proc/self/cgroup").await?;
    let devices_line = own
        .lines()
        .find(|l| l.split(':').nth(1) == Some("devices"))
        .context("no devices line")?;
    ensure!(
        devices_line.ends_with(&cg),
        "exec in {devices_line}, container in {cg}"
    );

    // Privileged: every host device, all allowed.
    let mut priv_cfg = env.container("privileged");
    priv_cfg.linux = Some(proto::LinuxContainerConfig {
        security_context: Some(proto::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut priv_pod_cfg = pod_cfg.clone();
    if let Some(l) = priv_pod_cfg.linux.as_mut() {
        l.security_context = Some(proto::LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        });
    }
    let privileged = env.run(pod, &priv_pod_cfg, priv_cfg).await?;
    let list = env.devices_list(&privileged).await?;
    ensure!(list == ["a *:* rwm"], "privileged devices.list: {list:?}");
    env.ok(
        &privileged,
        "test -c /dev/kmsg && test -b /dev/loop0 && exec 3<>/dev/loop-control",
    )
    .await?;

    // A CRI device, read-only: the node is there, reading works, writing is refused.
    // Not /dev/null, whose default `c 1:3 rwm` would absorb an `r` (the kernel merges
    // rules for one device); /dev/loop-control (c 10:237) opens with no check of its own.
    let mut dev_cfg = env.container("device");
    dev_cfg.devices = vec![proto::Device {
        host_path: "/dev/loop-control".into(),
        container_path: "/dev/myloop".into(),
        permissions: "r".into(),
    }];
    let with_dev = env.run(pod, pod_cfg, dev_cfg).await?;
    let list = env.devices_list(&with_dev).await?;
    ensure!(
        list.iter().any(|l| l == "c 10:237 r"),
        "devices.list: {list:?}"
    );
    let stat = env.ok(&with_dev, "stat -c '%F %t:%T' /dev/myloop").await?;
    ensure!(stat.trim() == "character special file a:ed", "{stat}");
    env.ok(&with_dev, "exec 3</dev/myloop").await?;
    env.refused(&with_dev, "exec 3>/dev/myloop").await?;

    // CDI, by the CRI field and by annotation: env and nodes from the spec, the rules.
    let mut cdi_cfg = env.container("cdi");
    cdi_cfg.cdi_devices = vec![proto::CdiDevice {
        name: "vendor.test/dev=one".into(),
    }];
    cdi_cfg
        .annotations
        .insert("cdi.k8s.io/e2e".into(), "vendor.test/dev=two".into());
    let cdi = env.run(pod, pod_cfg, cdi_cfg).await?;
    let out = env
        .ok(
            &cdi,
            "echo $CDI_SPEC $CDI_ONE $CDI_TWO; stat -c '%t:%T' /dev/cdi-null /dev/cdi-loop",
        )
        .await?;
    ensure!(out == "1 yes yes\n1:3\na:ed\n", "{out:?}");
    let list = env.devices_list(&cdi).await?;
    ensure!(
        list.iter().any(|l| l == "c 10:237 r"),
        "devices.list: {list:?}"
    );
    env.ok(&cdi, "echo hi > /dev/cdi-null").await?;
    env.refused(&cdi, "exec 3>/dev/cdi-loop").await?;

    // An unknown CDI device: InvalidArgument naming the field and the name.
    let mut unknown = env.container("unknown");
    unknown.cdi_devices = vec![proto::CdiDevice {
        name: "vendor.test/dev=nope".into(),
    }];
    let err = env
        .create(pod, pod_cfg, unknown)
        .await
        .expect_err("unknown CDI device");
    ensure!(err.code() == Code::InvalidArgument, "{err:?}");
    ensure!(
        err.message().contains("config.cdi_devices[0]")
            && err.message().contains("vendor.test/dev=nope"),
        "{}",
        err.message()
    );
    Ok(())
}
