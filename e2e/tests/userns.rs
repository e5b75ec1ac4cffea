//! Pods with their own user namespace (`hostUsers: false`) end to end: root inside is an
//! unprivileged id on the host, the image and the volumes keep their owners through
//! idmapped mounts, what needs the host's root is refused, bad requests name the field,
//! and the pinned namespace survives a corrald restart and goes with the pod.
//!
//! Bridges `crtun<n>`, subnets in 10.235.0.0/16.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use anyhow::{bail, ensure, Context, Result};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::images::{Image, ImageConfig};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use tonic::Code;

/// The pod's maps: container ids 0..65536 are host ids 200000.. (kubelet hands out
/// multiples of 65536 the same way).
const HOST_ID: u32 = 200_000;
const LENGTH: u32 = 65_536;

struct Env {
    // Field order is drop order: pods go (daemon) before the registry.
    daemon: Daemon,
    cri: Cri,
    _reg: Registry,
    image: String,
    logs: tempfile::TempDir,
}

async fn setup(test: &str, n: u8) -> Result<Option<Env>> {
    if !have_root(test) {
        return Ok(None);
    }
    if let Some(why) = skip_reason(&RegistryOptions::default()) {
        eprintln!("skipping {test}: {why}");
        return Ok(None);
    }
    let reg = Registry::start(RegistryOptions::default()).await?;
    Image::busybox(ImageConfig::default())?
        .push(&reg, "e2e/busybox", &["latest"])
        .await?;
    let daemon = Daemon::start(&format!(
        "[network]\nbridge = \"crtun{n}\"\nsubnet = \"10.235.{n}.0/24\"\n"
    ))
    .await?;
    let mut cri = daemon.client().await?;
    let image = format!("{}/e2e/busybox:latest", reg.host());
    cri.pull(&image, None).await?;
    let env = Env {
        daemon,
        cri,
        _reg: reg,
        image,
        logs: tempfile::Builder::new()
            .prefix("corral-e2e-logs-")
            .tempdir()?,
    };
    Ok(Some(env))
}

fn mapping(container_id: u32, host_id: u32, length: u32) -> proto::IdMapping {
    proto::IdMapping {
        container_id,
        host_id,
        length,
    }
}

/// What kubelet sends for `hostUsers: false`.
fn pod_userns() -> proto::UserNamespace {
    proto::UserNamespace {
        mode: proto::NamespaceMode::Pod as i32,
        uids: vec![mapping(0, HOST_ID, LENGTH)],
        gids: vec![mapping(0, HOST_ID, LENGTH)],
    }
}

/// Namespace options with `userns`; PID shared by the pod (the CRI default, with a
/// pause, as critest's user namespace specs run it).
fn ns_options(userns: Option<proto::UserNamespace>) -> proto::NamespaceOption {
    proto::NamespaceOption {
        userns_options: userns,
        ..Default::default()
    }
}

impl Env {
    fn pod_config(&self, name: &str, ns: proto::NamespaceOption) -> proto::PodSandboxConfig {
        proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "e2e".into(),
                attempt: 0,
            }),
            hostname: format!("{name}-host"),
            log_directory: self.logs.path().join(name).display().to_string(),
            linux: Some(proto::LinuxPodSandboxConfig {
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: Some(ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn run_pod(&mut self, config: &proto::PodSandboxConfig) -> Result<String, tonic::Status> {
        self.cri.run_pod(config).await
    }

    fn container_config(
        &self,
        name: &str,
        ns: proto::NamespaceOption,
        mounts: Vec<proto::Mount>,
    ) -> proto::ContainerConfig {
        proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(spec(&self.image)),
            command: vec!["sleep".into(), "3600".into()],
            log_path: format!("{name}.log"),
            mounts,
            linux: Some(proto::LinuxContainerConfig {
                security_context: Some(proto::LinuxContainerSecurityContext {
                    namespace_options: Some(ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn create(
        &mut self,
        pod: &str,
        pod_config: &proto::PodSandboxConfig,
        config: proto::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.cri.create_container(pod, pod_config, config).await
    }

    async fn start(&mut self, id: &str) -> Result<()> {
        Ok(self.cri.start_container(id).await?)
    }

    /// ExecSync: (exit code, stdout, stderr).
    async fn exec(&mut self, id: &str, script: &str) -> Result<(i32, String, String)> {
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
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        ))
    }

    /// ExecSync that must exit 0: its stdout, trimmed.
    async fn sh(&mut self, id: &str, script: &str) -> Result<String> {
        let (code, out, err) = self.exec(id, script).await?;
        ensure!(code == 0, "{script:?} exited {code}: {err}");
        Ok(out.trim().to_string())
    }

    async fn verbose_status(&mut self, id: &str) -> Result<serde_json::Value> {
        let r = self
            .cri
            .runtime
            .container_status(proto::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await?
            .into_inner();
        let info = r.info.get("info").context("no verbose info")?;
        Ok(serde_json::from_str(info)?)
    }

    async fn remove_pod(&mut self, pod: &str) -> Result<()> {
        self.cri.stop_pod(pod).await?;
        Ok(self.cri.remove_pod(pod).await?)
    }

    /// Whether the daemon advertises user namespaces; the reason when it does not.
    async fn userns_supported(&mut self) -> Result<Result<(), String>> {
        let r = self
            .cri
            .runtime
            .status(proto::StatusRequest { verbose: true })
            .await?
            .into_inner();
        let advertised = r
            .runtime_handlers
            .iter()
            .any(|h| h.features.as_ref().is_some_and(|f| f.user_namespaces));
        let info = r.info.get("userNamespaces").cloned().unwrap_or_default();
        Ok(if advertised { Ok(()) } else { Err(info) })
    }
}

/// The three numbers of each line of a uid_map/gid_map.
fn map_lines(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .filter(|l: &Vec<String>| !l.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn userns_pod_root_inside_nobody_outside() -> Result<()> {
    let Some(mut env) = setup("userns_pod_root_inside_nobody_outside", 0).await? else {
        return Ok(());
    };
    if let Err(why) = env.userns_supported().await? {
        eprintln!("skipping userns_pod_root_inside_nobody_outside: this node has no user namespaces for pods: {why}");
        return Ok(());
    }
    let pod_config = env.pod_config("un-pod", ns_options(Some(pod_userns())));
    let pod = env.run_pod(&pod_config).await?;
    let result = pod_checks(&mut env, &pod, &pod_config).await;
    let removed = env.remove_pod(&pod).await;
    result?;
    removed?;
    // The pinned user namespace went with the pod: nothing of the daemon's is mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let ours = env.daemon.dir().display().to_string();
    let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&ours)).collect();
    ensure!(leaked.is_empty(), "mounts left: {leaked:?}");
    Ok(())
}

async fn pod_checks(env: &mut Env, pod: &str, pod_config: &proto::PodSandboxConfig) -> Result<()> {
    // The pod's status reports its user namespace.
    let status = env
        .cri
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("no pod status")?;
    let reported = status
        .linux
        .and_then(|l| l.namespaces)
        .and_then(|n| n.options)
        .and_then(|o| o.userns_options)
        .context("no userns_options in the pod's status")?;
    ensure!(reported == pod_userns(), "pod status says {reported:?}");
    let pinned = env.daemon.state.join("pods").join(&pod[..16]).join("user");
    ensure!(
        pinned.exists(),
        "no pinned user namespace at {}",
        pinned.display()
    );

    // A volume (an emptyDir's host dir) with a file of the host's root, and one of an id
    // outside the pod's range, readable only by its owner.
    let volume = tempfile::Builder::new()
        .prefix("corral-e2e-vol-")
        .tempdir()?;
    std::fs::write(volume.path().join("from-host"), "host\n")?;
    let unmapped = volume.path().join("unmapped");
    std::fs::write(&unmapped, "secret\n")?;
    std::os::unix::fs::chown(&unmapped, Some(70_000), Some(70_000))?;
    std::fs::set_permissions(&unmapped, std::fs::Permissions::from_mode(0o600))?;
    let mounts = vec![proto::Mount {
        container_path: "/data".into(),
        host_path: volume.path().display().to_string(),
        ..Default::default()
    }];

    // A container's mappings must be its pod's.
    let mut other = pod_userns();
    other.uids = vec![mapping(0, HOST_ID + LENGTH, LENGTH)];
    let wrong = env.container_config("wrong", ns_options(Some(other)), mounts.clone());
    let err = env
        .create(pod, pod_config, wrong)
        .await
        .expect_err("a container with other mappings than its pod's");
    ensure!(
        err.code() == Code::InvalidArgument && err.message().contains("userns_options"),
        "mismatched mappings: {err:?}"
    );

    let config = env.container_config("app", ns_options(Some(pod_userns())), mounts);
    let id = env.create(pod, pod_config, config).await?;
    env.start(&id).await?;

    // Root inside, with the pod's maps.
    ensure!(env.sh(&id, "id -u").await? == "0", "uid inside");
    ensure!(env.sh(&id, "id -g").await? == "0", "gid inside");
    let expected = vec![vec![
        "0".to_string(),
        HOST_ID.to_string(),
        LENGTH.to_string(),
    ]];
    let uid_map = env.sh(&id, "cat /proc/self/uid_map").await?;
    ensure!(
        map_lines(&uid_map) == expected,
        "uid_map inside: {uid_map:?}"
    );
    let gid_map = env.sh(&id, "cat /proc/1/gid_map").await?;
    ensure!(
        map_lines(&gid_map) == expected,
        "gid_map of PID 1: {gid_map:?}"
    );

    // The image's files are root's inside (idmapped layers; nothing was chowned on disk).
    ensure!(
        env.sh(&id, "stat -c %u:%g /bin/busybox /etc").await? == "0:0\n0:0",
        "image files' owners inside"
    );

    // The container's process, seen from the host, runs as the mapped id.
    let info = env.verbose_status(&id).await?;
    let pid = info["pid"].as_i64().context("no pid in the verbose info")?;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid_line = proc_status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .context("no Uid line")?;
    let host = HOST_ID.to_string();
    ensure!(
        uid_line.split_whitespace().skip(1).all(|u| u == host),
        "the container's init on the host: {uid_line:?}"
    );
    ensure!(
        info["userNamespace"]["uidMappings"][0]["hostID"] == HOST_ID,
        "verbose info: {}",
        info["userNamespace"]
    );

    // What the container writes in its own layer is the mapped id's on the host.
    env.sh(&id, "echo x > /made-inside && mkdir /dir-inside")
        .await?;
    let upper = env.daemon.root.join("containers").join(&id).join("upper");
    for name in ["made-inside", "dir-inside"] {
        let meta = std::fs::metadata(upper.join(name))
            .with_context(|| format!("{name} in the writable layer"))?;
        ensure!(
            (meta.uid(), meta.gid()) == (HOST_ID, HOST_ID),
            "{name} is {}:{} on the host",
            meta.uid(),
            meta.gid()
        );
    }

    // The volume: the host's owners inside (idmapped bind: the host's root is root
    // inside), and the container's root writes as the host's root would without a user
    // namespace (Kubernetes' model for volumes of such pods).
    ensure!(
        env.sh(&id, "stat -c %u:%g /data/from-host && cat /data/from-host")
            .await?
            == "0:0\nhost",
        "a host file in the volume"
    );
    env.sh(&id, "echo inside > /data/from-inside").await?;
    let meta = std::fs::metadata(volume.path().join("from-inside"))?;
    ensure!(
        (meta.uid(), meta.gid()) == (0, 0),
        "a file made in the volume is {}:{} on the host",
        meta.uid(),
        meta.gid()
    );
    // An id outside the range is nobody inside, and root there may not read its file.
    ensure!(
        env.sh(&id, "stat -c %u:%g /data/unmapped").await? == "65534:65534",
        "an unmapped owner inside"
    );
    let (code, _, err) = env.exec(&id, "cat /data/unmapped").await?;
    ensure!(
        code != 0 && err.contains("Permission denied"),
        "root inside read a file of an unmapped id: {code} {err:?}"
    );

    // What needs the host's root fails, although the default capabilities include MKNOD
    // (a container without a user namespace may make this node).
    let (code, _, err) = env.exec(&id, "mknod /tmp/null2 c 1 3").await?;
    ensure!(
        code != 0 && err.contains("not permitted"),
        "mknod in a user namespace: {code} {err:?}"
    );
    // CHOWN holds over the pod's ids only: a file of an unmapped id cannot be taken.
    let (code, _, err) = env.exec(&id, "chown 0:0 /data/unmapped").await?;
    ensure!(
        code != 0 && err.contains("not permitted"),
        "chown of an unmapped file: {code} {err:?}"
    );
    ensure!(
        std::fs::metadata(&unmapped)?.uid() == 70_000,
        "the unmapped file changed owner"
    );

    // A container with a PID namespace of its own (kubelet's default) and a read-only
    // rootfs: its PID 1 is its own process, in the same user namespace.
    let mut ns = ns_options(Some(pod_userns()));
    ns.pid = proto::NamespaceMode::Container as i32;
    let mut config = env.container_config("own-pid", ns, Vec::new());
    if let Some(sc) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.readonly_rootfs = true;
    }
    let own = env.create(pod, pod_config, config).await?;
    env.start(&own).await?;
    ensure!(
        env.sh(&own, "cat /proc/1/cmdline | tr '\\0' ' '").await? == "sleep 3600",
        "PID 1 of a container's own PID namespace"
    );
    let uid_map = env.sh(&own, "cat /proc/1/uid_map").await?;
    ensure!(
        map_lines(&uid_map) == expected,
        "own PID namespace: {uid_map:?}"
    );
    let (code, _, err) = env.exec(&own, "touch /x").await?;
    ensure!(
        code != 0 && err.contains("Read-only"),
        "a read-only rootfs: {code} {err:?}"
    );

    // A corrald restart: the container and its pinned namespace live on, and exec still
    // enters the user namespace.
    env.daemon.restart().await?;
    env.cri = env.daemon.client().await?;
    let uid_map = env.sh(&id, "cat /proc/self/uid_map").await?;
    ensure!(
        map_lines(&uid_map) == expected,
        "uid_map after a restart: {uid_map:?}"
    );
    ensure!(env.sh(&id, "id -u").await? == "0", "uid after a restart");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn userns_bad_requests_name_the_field() -> Result<()> {
    let Some(mut env) = setup("userns_bad_requests_name_the_field", 1).await? else {
        return Ok(());
    };
    if let Err(why) = env.userns_supported().await? {
        bail!(
            "this kernel supports idmapped overlays, yet user namespaces are not advertised: {why}"
        );
    }
    let userns = |uids: Vec<proto::IdMapping>, gids: Vec<proto::IdMapping>| proto::UserNamespace {
        mode: proto::NamespaceMode::Pod as i32,
        uids,
        gids,
    };
    let good = || vec![mapping(0, HOST_ID, LENGTH)];
    let cases: Vec<(&str, proto::NamespaceOption, &str)> = vec![
        (
            "two-mappings",
            ns_options(Some(userns(
                vec![mapping(0, 1000, 100_000), mapping(0, 2000, 100_000)],
                vec![mapping(0, 1000, 100_000), mapping(0, 2000, 100_000)],
            ))),
            "userns_options.uids",
        ),
        (
            "no-root",
            ns_options(Some(userns(vec![mapping(1, 1000, 100_000)], good()))),
            "userns_options.uids",
        ),
        (
            "gid-no-root",
            ns_options(Some(userns(good(), vec![mapping(1, 1000, 100_000)]))),
            "userns_options.gids",
        ),
        (
            "host-root",
            ns_options(Some(userns(vec![mapping(0, 0, LENGTH)], good()))),
            "userns_options.uids",
        ),
        (
            "container-mode",
            ns_options(Some(proto::UserNamespace {
                mode: proto::NamespaceMode::Container as i32,
                ..Default::default()
            })),
            "userns_options.mode",
        ),
        (
            "target-mode",
            ns_options(Some(proto::UserNamespace {
                mode: proto::NamespaceMode::Target as i32,
                ..Default::default()
            })),
            "userns_options.mode",
        ),
        (
            "host-network",
            proto::NamespaceOption {
                network: proto::NamespaceMode::Node as i32,
                userns_options: Some(pod_userns()),
                ..Default::default()
            },
            "namespace_options.network",
        ),
    ];
    for (name, ns, field) in cases {
        let config = env.pod_config(name, ns);
        match env.run_pod(&config).await {
            Ok(id) => {
                let _ = env.remove_pod(&id).await;
                bail!("{name}: accepted");
            }
            Err(e) => ensure!(
                e.code() == Code::InvalidArgument && e.message().contains(field),
                "{name}: want InvalidArgument naming {field}, got {e:?}"
            ),
        }
    }
    // Nothing was made for them.
    let pods = env
        .cri
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    ensure!(pods.is_empty(), "pods left: {pods:?}");
    let left: Vec<_> = std::fs::read_dir(env.daemon.state.join("pods"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    ensure!(left.is_empty(), "pod dirs left: {left:?}");

    // NODE is today's behaviour: the host's user namespace.
    let config = env.pod_config(
        "node-mode",
        ns_options(Some(proto::UserNamespace {
            mode: proto::NamespaceMode::Node as i32,
            ..Default::default()
        })),
    );
    let pod = env.run_pod(&config).await?;
    let checked = async {
        let c = env.container_config(
            "app",
            ns_options(Some(proto::UserNamespace {
                mode: proto::NamespaceMode::Node as i32,
                ..Default::default()
            })),
            Vec::new(),
        );
        let id = env.create(&pod, &config, c).await?;
        env.start(&id).await?;
        let host = std::fs::read_to_string("/proc/self/uid_map")?;
        let inside = env.sh(&id, "cat /proc/self/uid_map").await?;
        ensure!(
            map_lines(&inside) == map_lines(&host),
            "NODE: {inside:?} vs the host's {host:?}"
        );
        Ok(())
    }
    .await;
    env.remove_pod(&pod).await?;
    checked
}
